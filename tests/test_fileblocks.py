"""File blocks that hold fences of their own: delivered whole, or refused and asked again.

A README fenced with ``` whose code examples have ``` fences of their own used to end at the
first inner fence, the rest of the file dropped with no word; now a longer fence keeps it whole,
and a block that ended early is an output error the coder is asked again about.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from oldnew.errors import ModelOutputError
from oldnew.fileblocks import fence_for, fenced, parse_file_blocks
from oldnew.prompts import render
from oldnew.runs import start_run

README = """# calc

Install:

```bash
pip install calc
```

Use:

```python
from calc import add
add(1, 2)
```

That is all.
"""


def test_a_longer_fence_keeps_a_file_with_fences_whole() -> None:
    answer = f"Here it is.\n\nFILE: README.md\n````markdown\n{README}````\n\nDone.\n"
    assert parse_file_blocks(answer) == {"README.md": README}


def test_a_block_an_inner_fence_closed_is_refused_with_the_fix() -> None:
    answer = f"FILE: README.md\n```markdown\n{README}```\nFILE: calc.py\n```python\nx = 1\n```\n"
    with pytest.raises(ModelOutputError) as caught:
        parse_file_blocks(answer)
    message = str(caught.value)
    assert "README.md ended early" in message and "(````)" in message
    # The same with the file last: what its real closing fence leaves is caught too.
    with pytest.raises(ModelOutputError, match="ended early"):
        parse_file_blocks(f"FILE: README.md\n```\n{README}```\n")


def test_prose_between_blocks_is_no_problem() -> None:
    answer = "FILE: a.py\n```python\nx = 1\n```\nAnd its test:\n\nFILE: b.py\n```\ny = 2\n```\n"
    assert parse_file_blocks(answer) == {"a.py": "x = 1\n", "b.py": "y = 2\n"}


def test_files_are_shown_to_the_model_in_a_fence_nothing_inside_closes() -> None:
    assert fence_for("x = 1\n") == "```"
    assert fence_for(README) == "````"
    assert fence_for("`````\n") == "``````"
    for text in (README, "plain\n", "  ````\ninner\n  ````\n"):
        assert parse_file_blocks(f"FILE: f.md\n{fenced(text)}\n") == {"f.md": text}
    shown = render(
        "supporting", files=[{"path": "README.md", "type": "text", "size": 1, "text": README}]
    )
    assert "(text, 1 bytes)\n````\n# calc" in shown and shown.count("````") == 2


def test_the_coder_is_told_the_rule_and_asked_again_when_a_block_ends_early(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLDNEW_QUALITY", "smoke")
    module = "FILE: calc.py\n```python\ndef add(a: int, b: int) -> int:\n    return a + b\n```\n"
    test = (
        "FILE: tests/test_calc.py\n```python\nfrom calc import add\n\n\n"
        "def test_add() -> None:\n    assert add(1, 2) == 3\n```\n"
    )
    broken = f"FILE: README.md\n```markdown\n{README}```\n{module}{test}"
    whole = f"FILE: README.md\n````markdown\n{README}````\n{module}{test}"
    other = "FILE: two.py\n```python\nTWO = 2\n```\n"
    other += "FILE: tests/test_two.py\n```python\nfrom two import TWO\n\n\n"
    other += "def test_two() -> None:\n    assert TWO == 2\n```\n"
    scope = {"title": "calc", "summary": "s", "features": [{"id": "F1", "title": "add"}]}
    tasks = [
        {
            "id": "T1",
            "title": "calc",
            "description": "calc.py, README.md",
            "requirement_ids": ["F1"],
        },
        {"id": "T2", "title": "two", "description": "two.py", "requirement_ids": ["F1"]},
    ]
    replies = [
        {"role": "planner", "when": ["return a Scope"], "structured": scope},
        {"role": "planner", "when": ["into a Plan"], "structured": {"tasks": tasks}},
        # Asked again with the problem: the coder fences the README with a longer fence.
        {"role": "coder", "when": ["TASK T1:", "README.md ended early"], "text": whole},
        {"role": "coder", "when": ["TASK T1:", "a longer fence, ```` or more"], "text": broken},
        {"role": "coder", "when": ["TASK T2:"], "text": other},
    ]
    path = tmp_path / "transcript.json"
    path.write_text(json.dumps({"reply": replies}))
    scope_file = tmp_path / "scope.md"
    scope_file.write_text("A calculator library.\n")
    ws = tmp_path / "ws"
    out = asyncio.run(start_run(scope_file, ws, context={"model": f"scripted:{path}"}))
    assert out.status == "delivered", out
    assert (ws / "README.md").read_text() == README
