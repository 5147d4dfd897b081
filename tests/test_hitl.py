"""People in the loop: one pause for every question, answers from another process, answers
while the run is busy, approval gates, and the errors a person gets for bad answers."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from oldnew.cli import app
from oldnew.context import Context
from oldnew.runs import (
    answer_run,
    approve_gate,
    resume_run,
    run_status,
    start_run,
    submit_feedback,
)

pytestmark = pytest.mark.usefixtures("smoke_gates")  # graph logic, not the gates

OLDNEW = [sys.executable, "-m", "oldnew"]


def _code(name: str, wait: float = 0, until: str = "") -> str:
    """Return coder output for a module ``name`` with one function and a passing test
    (which first sleeps ``wait`` seconds, while module ``until``'s test is not beside it).

    ``until`` names a module that lands while this task is busy: the task's own validation
    sleeps, the later runs of its test (re-validation, milestone, delivery) do not.
    """
    sleeps = f"time.sleep({wait})"
    if until:
        sleeps = f"if not (Path(__file__).parent / 'test_{until}.py').exists():\n        {sleeps}"
    return (
        f"FILE: {name}.py\n```python\ndef {name}() -> str:\n    return {name!r}\n```\n"
        f"FILE: tests/test_{name}.py\n```python\nimport time\nfrom pathlib import Path\n\n"
        f"from {name} import {name}\n\n\n"
        f"def test_{name}() -> None:\n    {sleeps}\n"
        f"    assert {name}() == {name!r}\n```\n"
    )


def _task(tid: str, deps: list[str] | None = None) -> dict[str, Any]:
    name = tid.lower()
    return {
        "id": tid,
        "title": f"module {name}",
        "description": f"{name}.py with {name}() returning its name; a test",
        "depends_on": deps or [],
        "files": [f"{name}.py", f"tests/test_{name}.py"],
        "requirement_ids": ["F1"],
    }


def _asks(tid: str, question: str, kind: str = "design_decision") -> list[dict[str, Any]]:
    """Replies for a task whose coder asks first and codes once it has an answer."""
    return [
        {"role": "coder", "when": [f"TASK {tid}:", "Answer: "], "text": _code(tid.lower())},
        {
            "role": "coder",
            "when": [f"TASK {tid}:"],
            "tool": "AskHuman",
            "args": {
                "kind": kind,
                "question": question,
                "options": ["yes", "no"],
                "recommended": "yes",
            },
        },
    ]


def _transcript(tmp_path: Path, tasks: list[dict[str, Any]], replies: list[Any]) -> str:
    scope = {"title": "mods", "summary": "s", "features": [{"id": "F1", "title": "modules"}]}
    head = [
        {"role": "planner", "when": ["return a Scope"], "structured": scope},
        {"role": "planner", "when": ["into a Plan"], "structured": {"tasks": tasks}},
    ]
    path = tmp_path / "transcript.json"
    path.write_text(json.dumps({"reply": head + replies}))
    return f"scripted:{path}"


def _scope(tmp_path: Path) -> Path:
    path = tmp_path / "scope.md"
    path.write_text("Build a few small modules.\n")
    return path


def _events(ws: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (ws / ".oldnew" / "events.jsonl").read_text().splitlines()]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*OLDNEW, *args], capture_output=True, text=True, timeout=600, env={**os.environ}
    )


def test_three_escalations_pause_once_and_a_new_process_answers(tmp_path: Path) -> None:
    tasks = [_task("A"), _task("A2", ["A"]), _task("B"), _task("C"), _task("D"), _task("E")]
    replies = [
        *_asks("A", "Which API key variable?", "configuration"),
        *_asks("B", "Use the EU or US region?"),
        *_asks("C", "Keep the legacy format?"),
        *({"role": "coder", "when": [f"TASK {t}:"], "text": _code(t.lower())} for t in "DE"),
        {"role": "coder", "when": ["TASK A2:"], "text": _code("a2")},
    ]
    model = _transcript(tmp_path, tasks, replies)
    ws = tmp_path / "ws"
    out = asyncio.run(start_run(_scope(tmp_path), ws, context={"model": model, "max_agents": 2}))
    assert out.status == "waiting"
    status = {t["id"]: t["status"] for t in out.tasks}
    # Every task that does not wait on an answer finished before the one pause.
    assert status == {
        "A": "waiting",
        "A2": "pending",
        "B": "waiting",
        "C": "waiting",
        "D": "done",
        "E": "done",
    }
    questions = {q["id"]: q for q in out.questions}
    assert sorted(questions) == ["A-q1", "B-q1", "C-q1"]
    assert questions["A-q1"]["blocks"] == ["A", "A2"]
    assert questions["B-q1"]["blocks"] == ["B"]
    assert questions["A-q1"]["severity"] == "high"  # on the critical path A -> A2
    assert questions["B-q1"]["severity"] == "low"  # nothing else waits on it
    assert all(q["status"] == "pending" and q["type"] for q in questions.values())
    pauses = [e for e in _events(ws) if e.get("node") == "execute" and e["event"] == "task_waiting"]
    assert len(pauses) == 3

    # `status` from another process shows each question with its options and how to answer.
    shown = _cli("status", "--workspace", str(ws))
    assert shown.returncode == 3, shown.stderr
    assert "A-q1 [high]" in shown.stdout and "1. yes: yes (recommended)" in shown.stdout
    assert "waiting on it: A, A2" in shown.stdout

    done = _cli("answer", "--workspace", str(ws), "A-q1", "yes", "B-q1", "2", "C-q1", "yes")
    assert done.returncode == 0, done.stdout + done.stderr
    final = asyncio.run(run_status(ws))
    assert final.status == "delivered"
    assert {t["status"] for t in final.tasks} == {"done"}
    report = json.loads((ws / ".oldnew" / "report.json").read_text())
    assert {d["answer"] for d in report["decisions"]} == {"yes", "no"}
    answered = [e for e in _events(ws) if e.get("node") == "human" and e["event"] == "answers"]
    assert len(answered) == 1 and answered[0]["accepted"] == ["A-q1", "B-q1", "C-q1"]


def test_answer_while_busy_unblocks_its_task_without_a_pause(tmp_path: Path) -> None:
    tasks = [_task("A"), _task("A2", ["A"]), _task("S")]
    replies = [
        *_asks("A", "Which region?"),
        {"role": "coder", "when": ["TASK A2:"], "text": _code("a2")},
        # S's test sleeps: the run is still busy with it when the person answers A.
        {"role": "coder", "when": ["TASK S:"], "text": _code("s", wait=6, until="a")},
    ]
    ws, run = _busy_run(tmp_path, _transcript(tmp_path, tasks, replies))
    try:
        now = _wait_for(ws, lambda o: [q["id"] for q in o.questions] == ["A-q1"])
        assert now.status == "running"
        # A wrong answer to a busy run is refused at once, and nothing is queued.
        refused = CliRunner().invoke(app, ["answer", "-w", str(ws), "A-q1", ""])
        assert refused.exit_code == 2 and "empty" in refused.output
        queued = asyncio.run(answer_run(ws, {"A-q1": "1"}))
        assert queued.queued == {"A-q1": "1"} and "queued" in queued.notices[-1]
        output, _ = run.communicate(timeout=600)
    finally:
        run.kill()
    assert run.returncode == 0, output
    events = _events(ws)
    assert not [e for e in events if e.get("node") == "human"], "the run paused"
    picked = [e for e in events if e.get("event") == "answer_received"]
    assert [e["question"] for e in picked] == ["A-q1"]
    slow_done = next(
        i for i, e in enumerate(events) if e.get("task") == "S" and e["event"] == "task_done"
    )
    answer_at = events.index(picked[0])
    assert answer_at < slow_done, "the answer was only taken after the busy task ended"
    final = asyncio.run(run_status(ws))
    assert final.status == "delivered"
    report = json.loads((ws / ".oldnew" / "report.json").read_text())
    assert [(d["question"], d["answer"], d["decided_by"]) for d in report["decisions"]] == [
        ("Which region?", "yes", "person")
    ]


def _gate_model(tmp_path: Path) -> str:
    tasks = [_task("A"), _task("B", ["A"])]
    replies = [{"role": "coder", "when": [f"TASK {t}:"], "text": _code(t.lower())} for t in "AB"]
    return _transcript(tmp_path, tasks, replies)


def test_reject_at_the_design_gate_ends_with_a_report(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ctx = {"model": _gate_model(tmp_path), "approvals": "design"}
    out = asyncio.run(start_run(_scope(tmp_path), ws, context=ctx))
    assert out.status == "waiting"
    (gate,) = out.questions
    assert gate["id"] == "gate-design" and gate["kind"] == "approval"
    assert "- A module a" in gate["detail"] and "- B module b (after A)" in gate["detail"]
    assert not list((ws / ".oldnew").glob("worktrees/*")), "code was written before approval"
    result = CliRunner().invoke(app, ["approve", "-w", str(ws), "--reject"])
    assert result.exit_code == 4, result.output
    report = json.loads((ws / ".oldnew" / "report.json").read_text())
    assert report["status"] == "aborted"
    assert report["stop_reason"] == "rejected at the design gate by a person"
    assert report["delivered"] == []
    md = (ws / ".oldnew" / "report.md").read_text()
    assert "rejected at the design gate" in md
    # A closed run takes no more answers.
    again = CliRunner().invoke(app, ["approve", "-w", str(ws)])
    assert again.exit_code == 2 and "not waiting at an approval gate" in again.output


def test_approvals_approve_changes_and_yes(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ctx = {"model": _gate_model(tmp_path), "approvals": "design,final"}
    out = asyncio.run(start_run(_scope(tmp_path), ws, context=ctx))
    assert [q["id"] for q in out.questions] == ["gate-design"]
    # Changes at the design gate re-plan with them, and the new plan is reviewed again.
    out = asyncio.run(approve_gate(ws, None, "put A and B in one package"))
    assert [q["id"] for q in out.questions] == ["gate-design-2"]
    plans = [e for e in _events(ws) if e.get("node") == "plan" and e["event"] == "started"]
    assert len(plans) == 2
    out = asyncio.run(approve_gate(ws, "design", "approve"))
    assert [q["id"] for q in out.questions] == ["gate-final"]
    assert {t["status"] for t in out.tasks} == {"done"}
    bad = asyncio.run(_refused(ws, {"gate-design": "approve"}))
    assert "no pending question 'gate-design'" in bad
    out = asyncio.run(approve_gate(ws, None, "approve"))
    assert out.status == "delivered"

    # --yes approves every gate without a pause and says so in the decisions.
    ws2 = tmp_path / "ws2"
    ctx = {"model": _gate_model(tmp_path), "approvals": "all", "yes": True}
    out = asyncio.run(start_run(_scope(tmp_path), ws2, context=ctx))
    assert out.status == "delivered"
    report = json.loads((ws2 / ".oldnew" / "report.json").read_text())
    approvals = [d for d in report["decisions"] if d["answer"] == "approve"]
    assert len(approvals) == 3  # scope, design, final (this plan has no MVP phase)
    assert not [e for e in _events(ws2) if e.get("node") == "human"]


async def _refused(ws: Path, answers: dict[str, str]) -> str:
    try:
        await resume_run(ws, answers=answers)
    except Exception as exc:  # noqa: BLE001 - the message is what the test reads
        return str(exc)
    return ""


def test_bad_gate_configuration_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["run", str(_scope(tmp_path)), "-w", str(tmp_path / "ws"), "--gates", "design,launch"],
    )
    assert result.exit_code == 2
    assert "unknown approval gate(s) launch" in result.output
    assert not (tmp_path / "ws").exists() or not any((tmp_path / "ws").iterdir())


def test_gates_is_the_former_name_of_approvals(tmp_path: Path, monkeypatch: Any) -> None:
    assert Context(gates="design").approvals == "design"
    assert Context(gates="design", approvals="final").approvals == "final"
    monkeypatch.setenv("OLDNEW_GATES", "mvp")
    assert Context().approvals == "mvp"
    monkeypatch.setenv("OLDNEW_APPROVALS", "scope")
    assert Context().approvals == "scope"
    monkeypatch.delenv("OLDNEW_GATES")
    monkeypatch.delenv("OLDNEW_APPROVALS")
    result = CliRunner().invoke(
        app, ["run", str(_scope(tmp_path)), "-w", str(tmp_path / "ws0"), "--approvals", "x"]
    )
    assert result.exit_code == 2 and "unknown approval gate(s) x" in result.output
    # A workspace an older version saved: run.json holds the setting under "gates".
    ws = tmp_path / "ws"
    ctx = {"model": _gate_model(tmp_path), "approvals": "scope,design"}
    out = asyncio.run(start_run(_scope(tmp_path), ws, context=ctx))
    assert [q["id"] for q in out.questions] == ["gate-scope"]
    info_path = ws / ".oldnew" / "run.json"
    info = json.loads(info_path.read_text())
    info["context"]["gates"] = info["context"].pop("approvals")
    info_path.write_text(json.dumps(info))
    out = asyncio.run(approve_gate(ws, None, "approve"))
    assert [q["id"] for q in out.questions] == ["gate-design"]


def _busy_run(tmp_path: Path, model: str) -> tuple[Path, subprocess.Popen[str]]:
    ws = tmp_path / "ws"
    run = subprocess.Popen(
        [*OLDNEW, "run", str(_scope(tmp_path)), "--workspace", str(ws), "--model", model],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return ws, run


def _wait_for(ws: Path, check: Any, timeout: float = 300) -> Any:
    deadline = time.monotonic() + timeout
    now = None
    while time.monotonic() < deadline:
        time.sleep(0.3)
        if not (ws / ".oldnew" / "checkpoints.sqlite").exists():
            continue
        try:
            now = asyncio.run(run_status(ws))
        except Exception:  # noqa: BLE001 - the run may be creating its files
            continue
        if check(now):
            return now
    raise AssertionError(f"the run never reached the expected state: {now!r}")


def test_feedback_while_busy_is_taken_between_tasks(tmp_path: Path) -> None:
    feature = "Also add a module n with n() returning its name."
    tasks = [_task("A"), _task("S")]
    replies = [
        {"role": "coder", "when": ["TASK A:"], "text": _code("a")},
        {"role": "coder", "when": ["TASK S:"], "text": _code("s", wait=6, until="n")},
        {
            "role": "planner",
            "when": ["FEEDBACK fb1", feature],
            "structured": {
                "kind": "feature",
                "summary": "module n",
                "tasks": [{**_task("N"), "requirement_ids": ["F1"]}],
            },
        },
        {"role": "coder", "when": ["TASK N:"], "text": _code("n")},
    ]
    ws, run = _busy_run(tmp_path, _transcript(tmp_path, tasks, replies))
    try:
        now = _wait_for(ws, lambda o: {t["id"]: t["status"] for t in o.tasks}.get("S") == "running")
        queued = asyncio.run(submit_feedback(ws, feature))
        assert queued.queued == {"feedback": feature} and "queued" in queued.notices[-1]
        output, _ = run.communicate(timeout=600)
    finally:
        run.kill()
    assert now.status == "running"
    assert run.returncode == 0, output
    events = _events(ws)
    assert not [e for e in events if e.get("node") == "human"], "the run paused"
    received = next(i for i, e in enumerate(events) if e.get("event") == "feedback_received")
    n_started = next(
        i for i, e in enumerate(events) if e.get("task") == "N" and e["event"] == "task_started"
    )
    assert received < n_started
    final = asyncio.run(run_status(ws))
    assert final.status == "delivered"
    assert {t["id"]: t["status"] for t in final.tasks} == {"A": "done", "S": "done", "N": "done"}
    report = json.loads((ws / ".oldnew" / "report.json").read_text())
    assert [f["id"] for f in report["feedback"]] == ["fb1"]


def test_mvp_preview_waits_for_later_phases_and_changes_become_feedback(tmp_path: Path) -> None:
    addition = "Also add a module n to the MVP."
    tasks = [
        {**_task("M"), "phase": "mvp"},
        {**_task("E", ["M"]), "phase": "enhanced"},
    ]
    plan_phases = [
        {"name": "mvp", "milestone": "m() works"},
        {"name": "enhanced", "milestone": "e() works"},
    ]
    replies = [
        *({"role": "coder", "when": [f"TASK {t}:"], "text": _code(t.lower())} for t in "MEN"),
        {
            "role": "planner",
            "when": ["FEEDBACK fb1", addition],
            "structured": {
                "kind": "feature",
                "summary": "module n",
                "tasks": [{**_task("N"), "phase": "mvp"}],
            },
        },
    ]
    model = _transcript(tmp_path, tasks, replies)
    plan_path = Path(model.removeprefix("scripted:"))
    data = json.loads(plan_path.read_text())
    data["reply"][1]["structured"]["phases"] = plan_phases
    plan_path.write_text(json.dumps(data))
    ws = tmp_path / "ws"
    out = asyncio.run(start_run(_scope(tmp_path), ws, context={"model": model, "approvals": "mvp"}))
    assert [q["id"] for q in out.questions] == ["gate-mvp"]
    assert {t["id"]: t["status"] for t in out.tasks} == {"M": "done", "E": "pending"}
    assert "MVP milestone: m() works" in out.questions[0]["detail"]
    # Changes at the MVP preview are feedback: the planner adds N to the MVP, which is shown
    # again once N is done; E still waits.
    out = asyncio.run(approve_gate(ws, "mvp", addition))
    assert [q["id"] for q in out.questions] == ["gate-mvp-2"]
    assert {t["id"]: t["status"] for t in out.tasks} == {"M": "done", "E": "pending", "N": "done"}
    out = asyncio.run(approve_gate(ws, None, "approve"))
    assert out.status == "delivered"
    assert {t["status"] for t in out.tasks} == {"done"}
