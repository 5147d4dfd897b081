"""File blocks that hold fences of their own: delivered whole, or refused and asked again.

A README fenced with ``` whose code examples have ``` fences of their own used to end at the
first inner fence, the rest of the file dropped with no word; now a longer fence keeps it whole,
and a block that ended early is an output error the coder is asked again about.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path

import pytest

from oldnew.errors import ModelOutputError
from oldnew.fileblocks import fence_for, fenced, parse_answer, parse_file_blocks
from oldnew.prompts import render
from oldnew.runs import start_run
from oldnew.workspace import Workspace

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


def test_an_executable_bit_is_asked_for_in_the_header() -> None:
    answer = (
        "FILE: scripts/run.sh (executable)\n```bash\n#!/bin/sh\necho hi\n```\n"
        "**FILE: `bin/tool` (Executable)**\n```\n#!/bin/sh\n```\n"
        "FILE: lib.py\n```python\nX = 1\n```\n"
    )
    parsed = parse_answer(answer)
    assert parsed.executable == {"scripts/run.sh", "bin/tool"}
    assert set(parsed.files) == {"scripts/run.sh", "bin/tool", "lib.py"}
    assert parsed.files["scripts/run.sh"] == "#!/bin/sh\necho hi\n"
    with pytest.raises(ModelOutputError, match="a deleted file has no mode"):
        parse_answer("DELETE: old.sh (executable)\n")


@pytest.mark.parametrize(
    "header",
    [
        "FILE: `run.sh (executable)`",
        "FILE: run.sh(executable)",
        "FILE: run.sh (executable):",
        "FILE: `run.sh` (executable)",
        "FILE: **run.sh** (executable)",
        "FILE: **run.sh (executable)**",
        "### FILE: run.sh (EXECUTABLE)",
    ],
)
def test_the_executable_mark_is_read_however_the_header_is_dressed(header: str) -> None:
    parsed = parse_answer(f"{header}\n```bash\necho hi\n```\n\nFILE: a.py\n```\nx = 1\n```\n")
    assert parsed.files == {"run.sh": "echo hi\n", "a.py": "x = 1\n"}
    assert parsed.executable == {"run.sh"}


@pytest.mark.parametrize(
    "header", ["FILE: run.sh (exec)", "FILE: notes (executable).md", "FILE: *run.sh", "FILE: ``"]
)
def test_a_path_made_of_decoration_is_refused_with_the_header_quoted(header: str) -> None:
    with pytest.raises(ModelOutputError) as caught:
        parse_answer(f"FILE: a.py\n```\nx = 1\n```\n{header}\n```bash\necho hi\n```\n")
    assert repr(header) in str(caught.value) and "names no usable path" in str(caught.value)


def test_a_block_before_any_header_it_understands_is_refused_quoting_the_lines() -> None:
    answer = "FILE - run.sh\n```bash\necho hi\n```\n\nFILE: a.py\n```python\nx = 1\n```\n"
    with pytest.raises(ModelOutputError) as caught:
        parse_answer(answer)
    message = str(caught.value)
    assert "line 2 of the answer ('```bash')" in message and "'FILE - run.sh'" in message
    # Prose before the first header is fine, as between blocks.
    assert parse_answer("Here:\n\nFILE: a.py\n```\nx = 1\n```\n").files == {"a.py": "x = 1\n"}


def _git(tree: Path, *args: str) -> str:
    out = subprocess.run(["git", *args], cwd=tree, capture_output=True, text=True, check=True)
    return out.stdout


def test_an_executable_file_is_written_and_staged_as_mode_100755(tmp_path: Path) -> None:
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "config", "core.fileMode", "false")  # git would not see the bit itself
    files = {"run.sh": "#!/bin/sh\n", "lib.py": "X = 1\n"}
    Workspace.write_files(tmp_path, files, executable={"run.sh"})
    assert os.access(tmp_path / "run.sh", os.X_OK)
    assert not os.access(tmp_path / "lib.py", os.X_OK)
    listed = _git(tmp_path, "ls-files", "-s").splitlines()
    staged = {line.split("\t")[1]: line.split()[0] for line in listed}
    assert staged == {"run.sh": "100755", "lib.py": "100644"}
    # Rewritten without the mark, a file keeps its mode.
    Workspace.write_files(tmp_path, {"run.sh": "#!/bin/sh\necho 2\n"})
    assert os.access(tmp_path / "run.sh", os.X_OK)


def test_a_script_asked_executable_is_delivered_executable_after_an_unbalanced_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLDNEW_QUALITY", "smoke")
    good = (
        "FILE: calc.py\n```python\ndef add(a: int, b: int) -> int:\n    return a + b\n```\n"
        "FILE: tests/test_calc.py\n```python\nfrom calc import add\n\n\n"
        "def test_add() -> None:\n    assert add(1, 2) == 3\n```\n"
        "FILE: scripts/check.sh (executable)\n```sh\n#!/bin/sh\ntest -f calc.py\n```\n"
        # The project's own test command runs the script: it must be executable there too.
        'FILE: pyproject.toml\n```toml\n[project]\nname = "calc"\nversion = "0.1.0"\n\n'
        '[tool.oldnew]\ntest = "./scripts/check.sh"\n```\n'
    )
    unbalanced = good.rsplit("```", 1)[0]  # the last block is never closed
    scope = {"title": "calc", "summary": "s", "features": [{"id": "F1", "title": "add"}]}
    task = {"id": "T1", "title": "calc", "description": "calc.py", "requirement_ids": ["F1"]}
    replies = [
        {"role": "planner", "when": ["return a Scope"], "structured": scope},
        {"role": "planner", "when": ["into a Plan"], "structured": {"tasks": [task]}},
        # Asked again with the exact problem: the block that was not closed.
        {"role": "coder", "when": ["TASK T1:", "pyproject.toml is not closed"], "text": good},
        {"role": "coder", "when": ["TASK T1:"], "text": unbalanced},
    ]
    path = tmp_path / "transcript.json"
    path.write_text(json.dumps({"reply": replies}))
    scope_file = tmp_path / "scope.md"
    scope_file.write_text("A calculator library.\n")
    ws = tmp_path / "ws"
    out = asyncio.run(start_run(scope_file, ws, context={"model": f"scripted:{path}"}))
    assert out.status == "delivered", out
    assert os.access(ws / "scripts" / "check.sh", os.X_OK)
    assert _git(ws, "ls-files", "-s", "scripts/check.sh").startswith("100755 ")
    evidence = sorted((ws / ".oldnew" / "evidence").glob("T1-*.json"))[-1]
    checks = {c["name"]: c for c in json.loads(evidence.read_text())["checks"]}
    assert checks["project-tests"]["status"] == "passed", checks["project-tests"]
