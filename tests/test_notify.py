"""The notification hook: a local webhook and a command get 'needs_person' then 'finished',
once per pause; a hook that fails leaves the run as it was, with a notice."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from pathlib import Path
from typing import Any

import pytest
from synthetic import greet_transcript
from typer.testing import CliRunner

from oldnew.cli import app
from oldnew.context import Context
from oldnew.errors import UsageError
from oldnew.notify import NotifyFailed, describe, notify_outcome, send
from oldnew.runs import RunOutcome, resume_run, run_status, start_run
from oldnew.workspace import Workspace

pytestmark = pytest.mark.usefixtures("smoke_gates")  # graph logic, not the gates


def _model(tmp_path: Path) -> str:
    """A scripted run whose scope asks two high-priority clarifications, then delivers."""
    ask = [
        {
            "question": f"Question {n}?",
            "options": ["yes", "no"],
            "default": "yes",
            "priority": "high",
        }
        for n in (1, 2)
    ]
    return greet_transcript(tmp_path, ask)


def _scope(tmp_path: Path) -> Path:
    path = tmp_path / "scope.md"
    path.write_text("Build a friendly greeter.\n")
    return path


def _events(ws: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (ws / ".oldnew" / "events.jsonl").read_text().splitlines()]


def _pause_answer_deliver(tmp_path: Path, notify: str) -> Path:
    """Run to the pause, check status, answer one then the other question, deliver."""
    ws = tmp_path / "ws"
    context = {"model": _model(tmp_path), "notify": notify}
    out = asyncio.run(start_run(_scope(tmp_path), ws, context=context))
    assert out.status == "waiting" and len(out.questions) == 2 and not out.notices
    assert asyncio.run(run_status(ws)).status == "waiting"  # status never notifies
    out = asyncio.run(resume_run(ws, answers={"clarify-1": "no"}))
    assert out.status == "waiting" and [q["id"] for q in out.questions] == ["clarify-2"]
    out = asyncio.run(resume_run(ws, answers={"clarify-2": "yes"}))
    assert out.status == "delivered", out
    return ws


def _check_sequence(got: list[dict[str, Any]], ws: Path) -> None:
    assert [g["event"] for g in got] == ["needs_person", "finished"]
    person, finished = got
    assert person["workspace"] == str(ws) and person["run_id"]
    assert [q["id"] for q in person["questions"]] == ["clarify-1", "clarify-2"]
    assert person["questions"][0]["options"] == [
        {"key": "yes", "label": "yes"},
        {"key": "no", "label": "no"},
    ]
    assert person["questions"][0]["recommended"] == "yes"
    assert person["questions"][0]["answer_command"] == (
        f"oldnew answer --workspace {ws} clarify-1 ANSWER"
    )
    assert finished["status"] == "delivered" and finished["run_id"] == person["run_id"]
    assert Path(finished["report"]).is_file() and Path(finished["report_markdown"]).is_file()
    assert finished["tasks"] == {"done": 1, "not_done": 0}


def test_webhook_gets_needs_person_then_finished_once_each(
    tmp_path: Path, webhook: tuple[str, list[dict[str, Any]]]
) -> None:
    url, received = webhook
    ws = _pause_answer_deliver(tmp_path, url)
    _check_sequence(received, ws)
    assert [r["header"] for r in received] == ["needs_person", "finished"]
    sent = [e for e in _events(ws) if e.get("node") == "notify"]
    assert [e["event"] for e in sent] == ["sent", "sent"]
    assert all(e["hook"] == url.split("/hook")[0] for e in sent)  # no token in the log
    # The same finish (same status, same report) is not announced twice.
    done = asyncio.run(run_status(ws))
    assert asyncio.run(notify_outcome(Workspace.open(ws), Context(notify=url), done)) == []
    assert len(received) == 2


def test_command_hook_gets_the_same_on_stdin(tmp_path: Path) -> None:
    script = tmp_path / "hook.py"
    script.write_text(
        "import json, os, sys\n"
        "payload = json.load(sys.stdin)\n"
        "payload['env_event'] = os.environ['OLDNEW_NOTIFY_EVENT']\n"
        "with open(sys.argv[1], 'a') as fh:\n"
        "    fh.write(json.dumps(payload) + '\\n')\n"
    )
    log = tmp_path / "hook log.jsonl"
    command = f"{sys.executable} {script} '{log}'"
    ws = _pause_answer_deliver(tmp_path, command)
    got = [json.loads(x) for x in log.read_text().splitlines()]
    _check_sequence(got, ws)
    assert [g["env_event"] for g in got] == ["needs_person", "finished"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_refused_webhook_leaves_the_run_delivered_with_a_notice(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_free_port()}/hook"
    res = CliRunner().invoke(
        app,
        [
            "run",
            str(_scope(tmp_path)),
            "-w",
            str(tmp_path / "ws"),
            "-m",
            _model(tmp_path),
            "--defaults",
            "auto",
            "--notify",
            url,
        ],
    )
    assert res.exit_code == 0, res.output
    assert "notification hook" in res.output and "failed for 'finished'" in res.output
    failed = [e for e in _events(tmp_path / "ws") if e.get("node") == "notify"]
    assert failed and failed[0]["event"] == "failed" and "Connect" in failed[0]["error"]


def test_failing_hook_is_retried_at_the_next_stop_not_recorded(tmp_path: Path) -> None:
    ws = Workspace.create(tmp_path / "ws", "run-1", {"context": {}})
    out = RunOutcome(
        status="waiting",
        run_id="run-1",
        workspace=str(ws.root),
        questions=[{"id": "q1", "title": "Port?", "options": []}],
    )
    flag = tmp_path / "ok"
    script = tmp_path / "hook.py"
    script.write_text(
        f"import pathlib, sys\nsys.exit(0 if pathlib.Path({str(flag)!r}).exists() else 3)\n"
    )
    ctx = Context(notify=f"{sys.executable} {script}")
    notices = asyncio.run(notify_outcome(ws, ctx, out))
    assert len(notices) == 1 and "exited with 3" in notices[0]
    flag.touch()
    assert asyncio.run(notify_outcome(ws, ctx, out)) == []
    flag.unlink()  # would fail again, but this pause was announced: the hook is not called
    assert asyncio.run(notify_outcome(ws, ctx, out)) == []
    events = [e["event"] for e in ws.events() if e.get("node") == "notify"]
    assert events == ["failed", "sent"]


def test_send_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(NotifyFailed, match="longer than 0.5 s"):
        send(f"{sys.executable} -c 'import time; time.sleep(10)'", "finished", {}, 0.5)
    with pytest.raises(NotifyFailed, match="cannot run"):
        send(str(tmp_path / "no-such-hook"), "finished", {}, 5)
    with pytest.raises(NotifyFailed, match="empty"):
        send("  ", "finished", {}, 5)
    assert describe("https://hooks.example.com/services/T0/B0/xyz?k=1") == (
        "https://hooks.example.com"
    )
    assert describe("/usr/bin/notify-send --urgency high") == "/usr/bin/notify-send"
    with pytest.raises(UsageError, match="http"):
        Context(notify="ftp://example.com/x")
