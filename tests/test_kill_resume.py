"""SIGKILL the run's process at many points and resume it each time.

The run must end with the same delivered project as an uninterrupted run, one commit per
task, and no task executed again after its commit.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import EXAMPLE

OLDNEW = [sys.executable, "-m", "oldnew"]


def _events(ws: Path) -> list[dict]:
    path = ws / ".oldnew" / "events.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return out


PROGRESS = {"wrote", "passed", "failed", "committed", "escalated", "done", "answers"}


def _progress(ws: Path) -> int:
    """Count the events that mark work done (so every resume gets some work done)."""
    return sum(1 for e in _events(ws) if e.get("event") in PROGRESS)


def _run_and_kill(argv: list[str], ws: Path, kill_after: int | None) -> int | None:
    """Start ``argv``; SIGKILL it once ``kill_after`` progress events are logged.

    Returns the exit code, or None when the process was killed.
    """
    with open(ws.parent / f"{ws.name}.log", "ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=log, start_new_session=True)
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if kill_after is not None and _progress(ws) >= kill_after:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return None
        time.sleep(0.005)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("the run hung for 120 s")
    return proc.returncode


def _task_commits(ws: Path) -> list[str]:
    out = subprocess.run(
        ["git", "log", "--format=%(trailers:key=Oldnew-Task,valueonly)"],
        cwd=ws,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sorted(line.strip() for line in out.splitlines() if line.strip())


def _tree(ws: Path) -> str:
    return subprocess.run(
        ["git", "rev-parse", "HEAD^{tree}"], cwd=ws, capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.usefixtures("smoke_gates")  # kills and resumes are under test, not the gates
def test_sigkill_at_many_points_then_resume(tmp_path: Path, example_model: str) -> None:
    # The reference: one uninterrupted run (answering the one question).
    ref = tmp_path / "ref"
    run = [*OLDNEW, "run", str(EXAMPLE / "scope.md"), "--workspace"]
    assert _run_and_kill([*run, str(ref), "--model", example_model], ref, None) == 3
    answer = [*OLDNEW, "answer", "--workspace"]
    assert _run_and_kill([*answer, str(ref), "T3-q1", "~/.todo.json"], ref, None) == 0
    total = len(_events(ref))

    ws = tmp_path / "ws"
    kills = 0
    code = _run_and_kill([*run, str(ws), "--model", example_model], ws, 2)
    kills += code is None
    step = 2
    resume = [*OLDNEW, "resume", "--workspace", str(ws)]
    answered = False
    for _ in range(60):
        if code is None:
            code = _run_and_kill(resume, ws, _progress(ws) + step)
            kills += code is None
            step = step % 3 + 2  # 2, 3, 4 steps of work between kills, round and round
            continue
        if code == 3 and not answered:
            answered = True
            code = _run_and_kill(
                [*answer, str(ws), "T3-q1", "~/.todo.json"], ws, len(_events(ws)) + 3
            )
            kills += code is None
            continue
        break
    log = (tmp_path / "ws.log").read_text(errors="replace")
    assert code == 0, f"run ended with exit code {code}:\n{log[-3000:]}"
    assert kills >= 5, f"only {kills} kills landed mid-run (of {total} events)"

    # The same delivered project, one commit per task.
    assert _task_commits(ws) == ["T1", "T2", "T3", "acceptance-1"]  # each once
    assert _tree(ws) == _tree(ref)
    report = json.loads((ws / ".oldnew" / "report.json").read_text())
    assert report["status"] == "delivered"
    assert report["final_validation"]["passed"] is True

    # No task did any work after its commit landed.
    committed: set[str] = set()
    for event in _events(ws):
        task = event.get("task")
        if event.get("event") == "committed":
            # A commit node killed after its commit re-runs once and finds the commit
            # (at-least-once per node); it must never make a second one.
            assert task not in committed or event["reconciled"], f"{task} committed twice"
            committed.add(task)
        elif task in committed and event.get("node") in ("code", "validate", "fix", "commit"):
            pytest.fail(f"{task} ran {event['node']} after its commit: {event}")
    assert committed == {"T1", "T2", "T3"}


def _descendants(root: int) -> dict[int, str]:
    """Return pid -> command line of every living process below ``root``."""
    parents: dict[int, int] = {}
    cmdlines: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        cmdlines[int(entry.name)] = cmd
    found: dict[int, str] = {}
    frontier = [root]
    while frontier:
        pid = frontier.pop()
        for child, parent in parents.items():
            if parent == pid and child not in found:
                found[child] = cmdlines[child]
                frontier.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sigkill_of_oldnew_during_a_gate_leaves_no_sandbox_process(
    tmp_path: Path, example_model: str
) -> None:
    # Only oldnew's own process is killed (not its group): whatever it started must go too.
    ws = tmp_path / "ws"
    argv = [*OLDNEW, "run", str(EXAMPLE / "scope.md"), "--workspace", str(ws)]
    with open(tmp_path / "ws.log", "ab") as log:
        proc = subprocess.Popen([*argv, "--model", example_model], stdout=log, stderr=log)
    seen: dict[int, str] = {}
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            below = _descendants(proc.pid)
            if any("--junitxml=" in cmd for cmd in below.values()):  # the tests' gate runs
                seen = below
                break
            time.sleep(0.005)
        assert seen, "no gate ran the project's tests within 120 s"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        end = time.monotonic() + 10
        while time.monotonic() < end and any(_alive(pid) for pid in seen):
            time.sleep(0.05)
        left = {pid: cmd for pid, cmd in seen.items() if _alive(pid)}
        assert left == {}, f"processes outlived oldnew: {left}"
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in seen:  # never leave them to the next test
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
