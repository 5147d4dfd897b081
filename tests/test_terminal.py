"""The terminal: the live display's state from events, JSON event lines, help and flags,
SIGTERM, an interrupted run's status, a closed pipe, full paths, progress of plan and verify."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from oldnew import cli, terminal
from oldnew.cli import app
from oldnew.display import LiveDisplay, RunView, render, seen
from oldnew.recovery.classify import Classification
from oldnew.recovery.retry import ClassifiedFailure
from oldnew.runs import RunOutcome
from oldnew.workspace import Workspace

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "todo"
OLDNEW = [sys.executable, "-m", "oldnew"]


def _at(second: float, **event: Any) -> dict[str, Any]:
    """Return an event as events.jsonl records it, ``second`` seconds into the run."""
    minute, sec = divmod(second, 60)
    return {"ts": f"2026-12-02T00:{int(minute):02d}:{sec:06.3f}+00:00", **event}


RECORDED = [
    _at(0, node="scope", event="started", chars=535),
    _at(1, node="plan", event="done", tasks=["T1", "T2", "T3"], calls=1),
    _at(2, task="T1", node="execute", event="task_started"),
    _at(2, task="T2", node="execute", event="task_started"),
    _at(3, task="T1", node="code", event="started"),
    _at(4, task="T2", node="validate", event="failed"),
    _at(5, task="T2", node="fix", event="started", round=1),
    _at(12, task="T1", node="execute", event="task_done", commit="c8d193b"),
]


def test_a_resumed_runs_view_starts_from_its_logged_events(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    ws.meta.mkdir(parents=True)
    log = ws.meta / "events.jsonl"
    log.write_text("".join(json.dumps(e) + "\n" for e in RECORDED) + "not json\n")
    view = RunView()
    seen(view, ws.events())  # what 'oldnew answer' shows first: the plan's tasks, one done
    assert (view.done, view.total) == (1, 3) and view.tasks["T1"].node == "done"
    seen(view, Workspace(tmp_path / "missing").events())  # no log yet: the view stays
    assert view.total == 3


def test_the_view_follows_the_events_and_its_rendering_shows_them() -> None:
    view = RunView()
    for event in RECORDED[:6]:
        view.take(event)
    assert (view.done, view.total, view.active) == (0, 3, 2)
    assert view.tasks["T2"].node == "fix" and view.tasks["T3"].status == "pending"  # it failed
    assert view.eta() is None  # no task finished yet: "ETA -"
    for event in RECORDED[6:]:
        view.take(event)
    assert (view.done, view.active, view.elapsed) == (1, 1, 12.0)
    assert view.tasks["T1"].seconds == 10.0 and view.tasks["T2"].node == "fix"
    assert view.tasks["T1"].node == "done"
    view.take(_at(12, task="T2", node="fix", event="wrote"))
    assert view.tasks["T2"].node == "validate"  # the fix is written: it is validated next
    # T1 took 10 s; T2 and T3 are left, T2 has run 10 s already, two agents ran at once
    assert view.eta() == pytest.approx((10 * 2 - 10) / 2)
    view.take(_at(13, task="T3", node="execute", event="task_started"))
    view.take(_at(14, task="T3", node="code", event="escalated", question="T3-q1"))
    view.take(_at(14, task="T3", node="execute", event="task_waiting"))
    view.take(_at(15, node="milestone", event="preview", preview="http://localhost:3000"))
    view.spend({"tokens": 23507, "cost_usd": 0.0123, "work_seconds": 14.8}, {"tokens": 100000})
    assert view.questions == {"T3-q1": "T3"} and view.preview == "http://localhost:3000"
    assert view.tasks["T3"].status == "waiting"
    view.take(_at(16, task="T2", node="execute", event="task_done"))
    assert view.eta() is None  # all that is left waits for a person

    screen = Console(record=True, width=100)
    screen.print(render(view, "oldnew /tmp/ws"))
    text = screen.export_text()
    assert "tasks 2/3 done, 0 active" in text and "ETA -" in text
    assert "tokens 23,507 of 100,000" in text and "cost $0.0123 (no cap)" in text
    assert "preview: http://localhost:3000" in text and "question T3-q1 (holds up T3)" in text
    assert "T2" in text and "waiting" in text and "0:10" in text

    # the task resumes with its answer: its question is no longer pending
    view.take(_at(20, task="T3", node="execute", event="task_started"))
    assert view.questions == {}


def test_help_version_and_flags() -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["-h"]).exit_code == 0
    shown = runner.invoke(app, ["status", "-h"])
    assert shown.exit_code == 0 and "--json" in shown.output and "<bool>" not in shown.output
    assert "-h" in shown.output
    got = runner.invoke(app, ["--version"])
    assert got.exit_code == 0 and got.output.strip() == f"oldnew {version('oldnew')}"
    for command in ("run", "resume", "answer", "approve", "feedback"):
        assert "--json" in runner.invoke(app, [command, "-h"]).output, command
    bad = runner.invoke(app, ["status", "-w", ".", "--json", "true"])
    assert bad.exit_code == 2  # a flag takes no value


def test_paths_are_whole_in_output_that_is_no_terminal(tmp_path: Path) -> None:
    deep = tmp_path.joinpath(*(["a-long-folder-name"] * 6))
    out = RunOutcome(
        status="interrupted",
        run_id="r1",
        workspace=str(deep),
        tasks=[{"id": "T1", "title": "x " * 60, "status": "done", "commit": "c" * 40}],
        report=str(deep / ".oldnew" / "report.json"),
    )
    assert cli.console.width >= terminal.WIDE  # pytest's stdout is no terminal
    with cli.console.capture() as captured:
        cli.show_outcome(out)
    text = captured.get()
    assert f"report: {deep / '.oldnew' / 'report.md'}" in text
    assert ("x " * 60).strip() in text  # the title's cell is not cut
    assert len(str(deep)) > 80


def test_plan_prints_progress_and_a_model_failure_as_an_error(
    monkeypatch: pytest.MonkeyPatch, example_model: str
) -> None:
    runner = CliRunner()
    planned = runner.invoke(app, ["plan", str(EXAMPLE / "scope.md"), "-m", example_model])
    assert planned.exit_code == 0, planned.output
    assert "scope: started" in planned.output and "plan: done tasks=['T1', 'T2', 'T3']" in (
        planned.output
    )

    async def fails(*args: Any, **kwargs: Any) -> None:
        cls = Classification("transient", "connection failed (OpenAIConnectionError)", "exception")
        raise ClassifiedFailure(cls, 5)

    monkeypatch.setattr("oldnew.planning.preview.preview_plan", fails)
    failed = runner.invoke(app, ["plan", str(EXAMPLE / "scope.md"), "-m", example_model])
    assert failed.exit_code == 2, failed.output
    assert "error:" in failed.output and "connection failed" in failed.output
    assert "Traceback" not in failed.output


def _lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.mark.usefixtures("smoke_gates")  # the terminal's output, not the gates
def test_json_lines_then_a_closed_pipe_never_stops_the_run(
    tmp_path: Path, example_model: str
) -> None:
    ws = tmp_path / "ws"
    runner = CliRunner()
    got = runner.invoke(
        app, ["run", str(EXAMPLE / "scope.md"), "-w", str(ws), "-m", example_model, "--json"]
    )
    assert got.exit_code == 3, got.output
    lines = _lines(got.stdout)
    events, outcome = lines[:-1], lines[-1]
    assert any(e.get("event") == "task_done" and e.get("task") == "T1" for e in events)
    assert all("event" in e for e in events) and "status" not in events[-1]
    assert outcome["status"] == "waiting" and outcome["questions"][0]["id"] == "T3-q1"
    assert set(outcome) == set(RunOutcome("x", "r", "w").to_dict())

    # The reader leaves after one line (as '| head -1' does): the answered run still delivers.
    answer = subprocess.Popen(
        [*OLDNEW, "answer", "-w", str(ws), "T3-q1", "1", "--model", example_model],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert answer.stdout is not None and answer.stdout.readline()
    answer.stdout.close()
    _, errors = answer.communicate(timeout=600)
    assert answer.returncode == 0, errors
    assert (ws / ".oldnew" / "report.md").is_file()
    assert "Traceback" not in errors and "BrokenPipe" not in errors

    verified = runner.invoke(app, ["verify", "-w", str(ws)])
    assert "gate pytest: started" in verified.output and "gate pytest: passed" in verified.output


def _started(ws: Path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    log = ws / ".oldnew" / "events.jsonl"
    while time.monotonic() < deadline:
        if log.is_file() and '"task_started"' in log.read_text(encoding="utf-8"):
            return
        time.sleep(0.2)
    raise AssertionError("the run never started a task")


@pytest.mark.usefixtures("smoke_gates")
def test_sigterm_stops_a_run_that_status_then_calls_interrupted_and_resume_continues(
    tmp_path: Path, example_model: str
) -> None:
    ws = tmp_path / "ws"
    run = subprocess.Popen(
        [*OLDNEW, "run", str(EXAMPLE / "scope.md"), "-w", str(ws), "-m", example_model],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # a script's background job: SIGINT ignored, SIGTERM must still stop it cleanly
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        _started(ws)
        run.send_signal(signal.SIGTERM)
        _, errors = run.communicate(timeout=300)
    finally:
        run.kill() if run.poll() is None else None
    assert run.returncode == 5, errors
    assert "resumable" in errors and f"oldnew resume --workspace {ws.resolve()}" in errors

    runner = CliRunner()
    status = runner.invoke(app, ["status", "-w", str(ws)])
    assert status.exit_code == 5, status.output
    assert ": interrupted" in status.output and "no oldnew process is working" in status.output
    assert f"oldnew resume --workspace {ws.resolve()}" in status.output
    assert json.loads(runner.invoke(app, ["status", "-w", str(ws), "--json"]).stdout)["status"] == (
        "interrupted"
    )

    resumed = runner.invoke(app, ["resume", "-w", str(ws), "-m", example_model, "--json"])
    assert resumed.exit_code == 3, resumed.output
    assert _lines(resumed.stdout)[-1]["status"] == "waiting"
    assert {t["id"]: t["status"] for t in _lines(resumed.stdout)[-1]["tasks"]} == {
        "T1": "done",
        "T2": "done",
        "T3": "waiting",
    }
    assert os.path.isfile(ws / ".oldnew" / "checkpoints.sqlite")


def test_the_live_display_prints_each_event_above_the_view(tmp_path: Path) -> None:
    screen = Console(record=True, width=100, force_terminal=True)
    lines: list[str] = []
    usage = tmp_path / ".oldnew" / "usage.jsonl"
    usage.parent.mkdir()
    call = {"kind": "call", "input_tokens": 1000, "output_tokens": 234, "cost_usd": 0.5}
    usage.write_text(json.dumps(call) + "\n")
    live = LiveDisplay(
        screen,
        tmp_path,
        line=lambda e: lines.append(str(e.get("event"))),
        caps=lambda: {"tokens": 5000, "cost": 2.0},
    )
    with live:
        for event in RECORDED:
            live.on_event(event)
    assert lines == [str(e["event"]) for e in RECORDED]
    assert (live.view.tokens, live.view.cost, live.view.caps["tokens"]) == (1234, 0.5, 5000)
    assert "tokens 1,234 of 5,000" in screen.export_text()
