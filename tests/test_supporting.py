"""Supporting files (``--with``): the run's first commit, listed in the prompts, read by tests."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from synthetic import planned_run
from typer.testing import CliRunner

from oldnew import supporting
from oldnew.cli import app
from oldnew.errors import UsageError
from oldnew.runs import start_run
from oldnew.safegit import run_git
from oldnew.testing import prompt_text

SCOPE = {"title": "counter", "summary": "s", "features": [{"id": "F1", "title": "count words"}]}
PLAN = {
    "tasks": [
        {
            "id": "T1",
            "title": "word counter",
            "description": "count.py: words(path); its tests read the files in samples/",
            "files": ["count.py", "tests/test_count.py"],
            "requirement_ids": ["F1"],
        }
    ]
}
CODE = (
    "FILE: count.py\n```python\nfrom pathlib import Path\n\n\ndef words(path: str) -> int:\n"
    "    return len(Path(path).read_text().split())\n```\n"
    "FILE: tests/test_count.py\n```python\nfrom pathlib import Path\n\nfrom count import words\n"
    "\nROOT = Path(__file__).resolve().parent.parent\n\n\ndef test_the_real_sample() -> None:\n"
    "    assert words(str(ROOT / 'samples' / 'hello.txt')) == 3\n```\n"
)


def _samples(tmp_path: Path) -> Path:
    folder = tmp_path / "given" / "samples"
    (folder / "deep").mkdir(parents=True)
    (folder / "hello.txt").write_text("three small words\n")
    (folder / "deep" / "page.html").write_text("<p>hi</p>\n")
    (folder / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0binary")
    (folder / ".git").mkdir()
    (folder / ".git" / "config").write_text("[core]\n")  # left out
    return folder


def _scope_file(tmp_path: Path) -> Path:
    path = tmp_path / "scope.md"
    path.write_text("Count the words of the sample files.\n")
    return path


@pytest.mark.usefixtures("smoke_gates")
def test_supporting_files_are_the_first_commit_shown_to_prompts_and_read_by_tests(
    tmp_path: Path,
) -> None:
    models = planned_run(SCOPE, PLAN, code={"T1": CODE})
    ws = tmp_path / "ws"
    samples = _samples(tmp_path)
    out = asyncio.run(start_run(_scope_file(tmp_path), ws, models=models, with_paths=[samples]))
    assert out.status == "delivered", out
    log = run_git("log", "--format=%s", cwd=ws).stdout.splitlines()
    assert log[-2] == "Supporting files: 3 (--with)"  # right after the start commit
    shown = run_git("show", "--name-only", "--format=", "HEAD~" + str(len(log) - 2), cwd=ws)
    assert sorted(str(shown.stdout).split()) == [
        "samples/deep/page.html",
        "samples/hello.txt",
        "samples/logo.png",
    ]
    calls = models["planner"].log.calls
    scoping = prompt_text(calls[0].messages)
    assert "SUPPORTING FILES" in scoping and "three small words" in scoping
    assert "samples/logo.png (binary" in scoping and "PNG" not in scoping
    planning = prompt_text(calls[1].messages)
    assert "samples/hello.txt (text, 18 bytes)" in planning
    (coder,) = models["coder"].log.of(role="coder", task="T1")
    text = prompt_text(coder.messages)
    assert "FILE: samples/hello.txt" in text and "three small words" in text
    assert "binary supporting file" in text and "<p>hi</p>" in text


def test_bad_supporting_paths_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    outside = tmp_path / "secret.txt"
    outside.write_text("no")
    leaky = tmp_path / "leaky"
    leaky.mkdir()
    (leaky / "link.txt").symlink_to(outside)
    cases = {
        tmp_path / "absent": "no such file or folder",
        leaky: "a link that leads out of",
    }
    for path, words in cases.items():
        with pytest.raises(UsageError, match=words):
            supporting.collect([path], ws)
    ws.mkdir()
    (ws / "inner").mkdir()
    with pytest.raises(UsageError, match="inside the workspace"):
        supporting.collect([ws / "inner"], ws)
    res = CliRunner().invoke(
        app, ["run", str(_scope_file(tmp_path)), "-w", str(tmp_path / "w2"), "--with", str(leaky)]
    )
    assert res.exit_code == 2 and "leads out of" in res.output
    assert not (tmp_path / "w2").exists()


def test_a_supporting_file_over_the_cap_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(supporting, "MAX_FILE_BYTES", 10)
    big = tmp_path / "big.csv"
    big.write_text("a,b\n" * 10)
    with pytest.raises(UsageError, match="over the cap"):
        supporting.collect([big], tmp_path / "ws")
    twice = [tmp_path / "x" / "big.csv", tmp_path / "y" / "big.csv"]
    monkeypatch.setattr(supporting, "MAX_FILE_BYTES", 1000)
    for path in twice:
        path.parent.mkdir()
        path.write_text("1\n")
    with pytest.raises(UsageError, match="would both be 'big.csv'"):
        supporting.collect(twice, tmp_path / "ws")


@pytest.mark.usefixtures("smoke_gates")
def test_an_embedded_or_server_run_takes_supporting_files_as_input(tmp_path: Path) -> None:
    import uuid

    from langgraph.checkpoint.memory import InMemorySaver

    from oldnew import build_graph

    models = planned_run(SCOPE, PLAN, code={"T1": CODE})
    graph = build_graph(models=models, checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": str(uuid.uuid4())}}
    ws = tmp_path / "ws"
    inp = {"scope_text": "Count the words of the samples.", "supporting": [str(_samples(tmp_path))]}
    out = asyncio.run(
        graph.ainvoke(inp, config, context={"workspace": str(ws)})  # type: ignore[arg-type]
    )
    assert out["status"] == "delivered", out
    assert (ws / "samples" / "hello.txt").read_text() == "three small words\n"
    log = run_git("log", "--format=%s", cwd=ws).stdout.splitlines()
    assert "Supporting files: 3 (--with)" in log
    # A bad path is the caller's error, and nothing is made.
    bad = {"scope_text": "x", "supporting": [str(tmp_path / "absent")]}
    other = {"configurable": {"thread_id": str(uuid.uuid4())}}
    with pytest.raises(UsageError, match="no such file or folder"):
        asyncio.run(
            graph.ainvoke(bad, other, context={"workspace": str(tmp_path / "w3")})  # type: ignore[arg-type]
        )
    assert not (tmp_path / "w3").exists()
