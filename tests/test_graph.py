"""The graph's shape and its ways out: diagram snapshot, escalations, blockers, bad input."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLE
from langchain_core.messages import BaseMessage
from synthetic import planned_run
from typer.testing import CliRunner

from oldnew import build_graph, build_task_graph
from oldnew.cli import app
from oldnew.runs import resume_run, start_run
from oldnew.testing import CallInfo

SCOPE = {"title": "calc", "summary": "s", "features": [{"id": "F1", "title": "add"}]}
PLAN = {
    "tasks": [
        {
            "id": "T1",
            "title": "adder",
            "description": "calc.py with add()",
            "files": ["calc.py"],
            "requirement_ids": ["F1"],
        },
        {
            "id": "T2",
            "title": "docs",
            "description": "README",
            "depends_on": ["T1"],
            "requirement_ids": ["F1"],
        },
    ]
}
FAILING = (
    "FILE: calc.py\n```python\ndef add(a, b):\n    return a - b\n```\n"
    "FILE: tests/test_calc.py\n```python\nfrom calc import add\n\n\n"
    "def test_add():\n    assert add(2, 2) == 4\n```\n"
)


# test_gates_hostile builds its hostile run on this transcript.
def _transcript(
    tmp_path: Path,
    coder_t1: dict[str, Any],
    fixer: str | None = None,
    fixer_by_round: dict[int, str] | None = None,
) -> str:
    replies = [
        {"role": "planner", "when": ["return a Scope"], "structured": SCOPE},
        {"role": "planner", "when": ["into a Plan"], "structured": PLAN},
        {"role": "coder", "when": ["TASK T1:"], **coder_t1},
    ]
    for n, text in (fixer_by_round or {}).items():
        replies.append({"role": "fixer", "when": ["TASK T1:", f"(round {n} of"], "text": text})
    if fixer is not None:
        replies.append({"role": "fixer", "when": ["TASK T1:"], "text": fixer})
    path = tmp_path / "transcript.json"
    path.write_text(json.dumps({"reply": replies}))
    return f"scripted:{path}"


def _scope_file(tmp_path: Path) -> Path:
    path = tmp_path / "scope.md"
    path.write_text("Build calc: a function add(a, b).\n")
    return path


def test_mermaid_diagrams(snapshot: Any) -> None:
    assert build_graph().get_graph().draw_mermaid() == snapshot(name="run")
    assert build_task_graph().get_graph().draw_mermaid() == snapshot(name="task")


@pytest.mark.usefixtures("smoke_gates")
def test_unusable_code_is_retried_then_escalated_then_blocked(tmp_path: Path) -> None:
    models = planned_run(SCOPE, PLAN, code={"T1": '{"calc.py": "def add(a, b): return a + b"}'})
    ws = tmp_path / "ws"
    out = asyncio.run(start_run(_scope_file(tmp_path), ws, models=models))
    assert out.status == "waiting"
    (q,) = out.questions
    assert q["id"] == "T1-q1" and q["kind"] == "model_output"
    assert "no file blocks" in q["detail"]
    assert [o["key"] for o in q["options"]] == ["retry", "skip"]
    out = asyncio.run(resume_run(ws, answers={"T1-q1": "skip"}, models=models))
    assert out.status == "blocked"
    status = {t["id"]: (t["status"], t["blocker"]) for t in out.tasks}
    assert status["T1"][0] == "blocked" and "skipped by a person" in status["T1"][1]
    assert status["T2"] == ("blocked", "depends on T1, which is blocked")
    report = json.loads((ws / ".oldnew" / "report.json").read_text())
    assert report["status"] == "blocked"
    assert {b["task"] for b in report["blocked"]} == {"T1", "T2"}
    assert "oldnew resume" in report["resume"]
    calls = [e for e in _events(ws) if e.get("task") == "T1" and e.get("node") == "code"]
    assert [e["event"] for e in calls] == ["started", "context", "escalated"]


def _events(ws: Path) -> list[dict[str, Any]]:
    lines = (ws / ".oldnew" / "events.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def _failing(body: str) -> str:
    return FAILING.replace("return a - b", body)


@pytest.mark.usefixtures("smoke_gates")
def test_fix_cap_escalates_with_diagnostics(tmp_path: Path) -> None:
    # Each fix fails differently (no stall): the cap ends the fixing, one fresh start follows
    # with fix rounds of its own, then a person is asked.
    replies = (_failing("return a + c"), _failing('return a + "b"'))

    def fix_t1(messages: list[BaseMessage], info: CallInfo) -> str:
        return replies[len(models["fixer"].log.of(role="fixer", task="T1")) % 2]

    models = planned_run(SCOPE, PLAN, code={"T1": FAILING}, fix={"T1": fix_t1})
    ws = tmp_path / "ws"
    out = asyncio.run(
        start_run(_scope_file(tmp_path), ws, context={"max_fix_rounds": 2}, models=models)
    )
    assert out.status == "waiting"
    (q,) = out.questions
    assert q["kind"] == "fix_limit" and "after 2 fix rounds and a fresh start" in q["title"]
    assert "calc.py:2" in q["detail"] and "TypeError" in q["detail"]
    fixes = [e for e in _events(ws) if e.get("node") == "fix" and e["event"] == "started"]
    assert [e["round"] for e in fixes] == [1, 2, 1, 2]
    regen = [e for e in _events(ws) if e.get("node") == "validate" and e["event"] == "regenerate"]
    assert len(regen) == 1 and regen[0]["reason"] == "2 fix rounds did not make it pass"
    evidence = json.loads((ws / ".oldnew" / "evidence" / "T1-01.json").read_text())
    pytest_check = next(c for c in evidence["checks"] if c["name"] == "pytest")
    assert pytest_check["status"] == "failed" and pytest_check["exit_code"] == 1
    # A free-text answer is guidance for another set of fix rounds.
    out = asyncio.run(resume_run(ws, answers={"T1-q1": "add must return a + b"}, models=models))
    assert out.status == "waiting" and out.questions[0]["id"] == "T1-q2"
    fixer_prompts = [e for e in _events(ws) if e.get("node") == "fix" and e["event"] == "started"]
    assert len(fixer_prompts) == 6


def test_cli_bad_input_gets_clear_errors(
    tmp_path: Path, example_model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL")  # a loopback base URL needs no key
    runner = CliRunner()
    empty = tmp_path / "empty.md"
    empty.write_text("  \n")
    res = runner.invoke(app, ["run", str(empty), "-w", str(tmp_path / "a"), "-m", example_model])
    assert res.exit_code == 2 and "is empty" in res.output
    res = runner.invoke(app, ["run", str(tmp_path / "nope.md"), "-w", str(tmp_path / "a")])
    assert res.exit_code == 2 and "cannot read scope file" in res.output
    scope = EXAMPLE / "scope.md"
    res = runner.invoke(app, ["run", str(scope), "-w", str(tmp_path / "a"), "-m", "llama3:8b"])
    assert res.exit_code == 2 and "cannot tell the provider of model 'llama3:8b'" in res.output
    res = runner.invoke(app, ["run", str(scope), "-w", str(tmp_path / "a"), "-m", "openai:gpt-4o"])
    assert res.exit_code == 2 and "OPENAI_API_KEY" in res.output
    res = runner.invoke(app, ["run", str(scope), "-w", str(tmp_path / "a")])
    assert res.exit_code == 2 and "no model is set" in res.output
    assert not (tmp_path / "a").exists()
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("precious")
    res = runner.invoke(app, ["run", str(scope), "-w", str(busy), "-m", example_model])
    assert res.exit_code == 2 and "is not empty" in res.output
    assert (busy / "keep.txt").read_text() == "precious"
    res = runner.invoke(app, ["status", "-w", str(busy)])
    assert res.exit_code == 2 and "holds no oldnew run" in res.output


@pytest.mark.usefixtures("smoke_gates")  # the CLI's run, status and answer; test_gates: gates
def test_example_run_status_json_and_foreign_workspace(tmp_path: Path, example_model: str) -> None:
    runner = CliRunner()
    ws = tmp_path / "ws"
    res = runner.invoke(app, ["run", str(EXAMPLE / "scope.md"), "-w", str(ws), "-m", example_model])
    assert res.exit_code == 3, res.output
    res = runner.invoke(app, ["status", "-w", str(ws), "--json"])
    assert res.exit_code == 3
    data = json.loads(res.output)
    assert data["status"] == "waiting"
    assert {t["id"]: t["status"] for t in data["tasks"]} == {
        "T1": "done",
        "T2": "done",
        "T3": "waiting",
    }
    assert all(len(t["commit"]) == 40 for t in data["tasks"] if t["status"] == "done")
    assert [q["id"] for q in data["questions"]] == ["T3-q1"]
    res = runner.invoke(app, ["answer", "-w", str(ws), "T3-q7", "x"])
    assert res.exit_code == 2 and "pending: T3-q1" in res.output
    res = runner.invoke(app, ["run", str(EXAMPLE / "scope.md"), "-w", str(ws), "-m", example_model])
    assert res.exit_code == 2 and "oldnew resume" in res.output
    res = runner.invoke(app, ["answer", "-w", str(ws), "T3-q1", "2"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["status", "-w", str(ws), "--json"])
    data = json.loads(res.output)
    assert data["status"] == "delivered" and res.exit_code == 0
    log = subprocess.run(
        ["git", "log", "--format=%s"], cwd=ws, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert len(log) == 6  # the start commit, the suite, one per task, and the hand-over
    assert log[-2] == "Acceptance suite written by the tester (F1, F2, F3, F4)"
    assert log[0] == "Hand-over: how to install, test and run the project"
    cli = (ws / "todo" / "cli.py").read_text()
    assert 'DEFAULT_FILE = "./todo.json"' in cli  # the person's answer reached the code
    tests = subprocess.run(
        ["python", "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=ws,
        capture_output=True,
        text=True,
    )
    assert tests.returncode == 0, tests.stdout
