"""End to end through the real ``langgraph dev`` server, driven by langgraph_sdk.

The bundled example runs on its scripted transcript: the run pauses once with T3's question,
is resumed with an answer over the API, and delivers three commits and a report. One run is
then forked twice (time travel): after the plan, and at T3's pause with the other answer.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from langgraph_sdk import get_client

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "todo"
READY_TIMEOUT = 60.0
RUN_TIMEOUT = 150.0
# langgraph dev fails a run on any blocking call made on the event loop (blockbuster); oldnew's
# nodes run their file and git work in threads, so the check stays on.
ALLOW_BLOCKING = False


@dataclass
class Server:
    url: str
    log: Path

    def tail(self, lines: int = 60) -> str:
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            return f"(no server log: {exc})"
        return "\n".join(text.splitlines()[-lines:])


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _is_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/ok", timeout=2) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=15)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Run ``langgraph dev`` from a temporary directory on a free loopback port (one a module)."""
    home = tmp_path_factory.mktemp("server")
    served = ROOT / "oldnew" / "graph" / "server.py"
    config = {
        "dependencies": [str(ROOT)],
        "graphs": {"oldnew": f"{served}:graph", "task": f"{served}:task_graph"},
        "env": {},
    }
    (home / "langgraph.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        # The module's runs share the server: none may learn from another (nor use ~/.oldnew).
        "OLDNEW_MEMORY_PATH": "off",
        "LANGGRAPH_CLI_NO_ANALYTICS": "1",
        "LANGSMITH_TRACING": "false",
        "LANGCHAIN_TRACING_V2": "false",
        "PYTHONUNBUFFERED": "1",
        # The server API is under test, not the gates (tests/test_gates.py runs the example
        # through every gate): the runs it serves validate with the smoke profile.
        "OLDNEW_QUALITY": os.environ.get("OLDNEW_TEST_QUALITY", "smoke"),
    }
    cli = Path(sys.executable).parent / "langgraph"
    cmd = [
        str(cli),
        "dev",
        "--config",
        str(home / "langgraph.json"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-browser",
        "--no-reload",
    ]
    if ALLOW_BLOCKING:
        cmd.append("--allow-blocking")
    log = home / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=home,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    srv = Server(url=url, log=log)
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while not _is_ready(url):
            if proc.poll() is not None:
                pytest.fail(f"langgraph dev exited with {proc.returncode}:\n{srv.tail()}")
            if time.monotonic() > deadline:
                pytest.fail(f"langgraph dev not ready after {READY_TIMEOUT:.0f}s:\n{srv.tail()}")
            time.sleep(0.5)
        yield srv
    finally:
        _stop(proc)


def _trailer_commits(ws: Path) -> list[str]:
    out = subprocess.run(
        ["git", "-C", str(ws), "log", "--format=%(trailers:key=Oldnew-Task,valueonly)%x00"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [chunk.strip() for chunk in out.split("\0") if chunk.strip()]


async def _drive(url: str, scope_text: str, context: dict[str, Any]) -> dict[str, Any]:
    async with get_client(url=url) as client:
        return await _drive_with(client, scope_text, context)


async def _drive_with(client: Any, scope_text: str, context: dict[str, Any]) -> dict[str, Any]:
    thread = await client.threads.create()
    tid = thread["thread_id"]
    await asyncio.wait_for(
        client.runs.wait(tid, "oldnew", input={"scope_text": scope_text}, context=context),
        RUN_TIMEOUT,
    )
    gate = await client.threads.get_state(tid)  # the design review, before any code
    await asyncio.wait_for(
        client.runs.wait(
            tid, "oldnew", command={"resume": {"gate-design": "approve"}}, context=context
        ),
        RUN_TIMEOUT,
    )
    paused = await client.threads.get_state(tid)
    await asyncio.wait_for(
        client.runs.wait(
            tid, "oldnew", command={"resume": {"T3-q1": "~/.todo.json"}}, context=context
        ),
        RUN_TIMEOUT,
    )
    final = await client.threads.get_state(tid)
    runs = await client.runs.list(tid)
    return {"gate": gate, "paused": paused, "final": final, "runs": runs}


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_todo_example_through_langgraph_dev(
    server: Server, tmp_path: Path, webhook: tuple[str, list[dict[str, Any]]]
) -> None:
    ws = tmp_path / "ws"
    hook, received = webhook
    context = {
        "model": f"scripted:{EXAMPLE / 'transcript.toml'}",
        "workspace": str(ws),
        "approvals": "design",
        "notify": hook,
    }
    scope_text = (EXAMPLE / "scope.md").read_text(encoding="utf-8")
    try:
        result = asyncio.run(_drive(server.url, scope_text, context))
    except Exception as exc:  # the server's side of the story is in its log
        pytest.fail(f"driving the server failed: {exc!r}\n--- server log ---\n{server.tail()}")

    def why(msg: str) -> str:
        return f"{msg}\n--- server log ---\n{server.tail()}"

    (gate,) = result["gate"]["interrupts"][0]["value"]["questions"]
    assert gate["id"] == "gate-design" and gate["kind"] == "approval", why(f"gate: {gate!r}")
    assert "T3 Command-line interface (after T1, T2)" in gate["detail"], why(gate["detail"])

    paused = result["paused"]
    interrupts = paused["interrupts"]
    assert len(interrupts) == 1, why(f"expected one interrupt, got {paused!r}")
    questions = interrupts[0]["value"]["questions"]
    assert "T3-q1" in [q["id"] for q in questions], why(f"questions: {questions!r}")
    record = next(q for q in questions if q["id"] == "T3-q1")
    assert record["blocks"] == ["T3"] and record["type"] == "configuration", why(f"{record!r}")
    assert paused["next"], why(f"paused thread has nothing next: {paused!r}")
    assert paused["values"]["status"] == "waiting", why("a paused run's status, as the CLI's")

    final = result["final"]
    values = final["values"]
    assert isinstance(values, dict), why(f"final values: {values!r}")
    assert values.get("status") == "delivered", why(f"final values: {values!r}")
    assert not final["interrupts"], why(f"still interrupted: {final['interrupts']!r}")
    assert [r["status"] for r in result["runs"]] == ["success"] * 3, why(
        f"runs: {result['runs']!r}"
    )

    assert (ws / ".git").exists(), why(f"{ws} is not a git repository")
    trailers = _trailer_commits(ws)
    assert sorted(trailers) == ["T1", "T2", "T3", "acceptance-1"], why(
        f"Oldnew-Task trailers: {trailers!r}"
    )
    report_file = ws / ".oldnew" / "report.json"
    assert report_file.is_file(), why(f"no {report_file}")
    report = json.loads(report_file.read_text(encoding="utf-8"))
    assert report["status"] == "delivered", why(f"report status: {report.get('status')!r}")
    # The hook hears of both pauses and of the delivery from the server's own process.
    told = [(r["event"], [q["id"] for q in r.get("questions", [])]) for r in received]
    assert told == [
        ("needs_person", ["gate-design"]),
        ("needs_person", ["T3-q1"]),
        ("finished", []),
    ], why(f"hook calls: {told!r}")


async def _feedback_with(client: Any, context: dict[str, Any], scope_text: str) -> dict[str, Any]:
    """Deliver the example, then send feedback the graph-native way: as the next run's input."""
    thread = await client.threads.create()
    tid = thread["thread_id"]
    await asyncio.wait_for(
        client.runs.wait(tid, "oldnew", input={"scope_text": scope_text}, context=context),
        RUN_TIMEOUT,
    )
    await asyncio.wait_for(
        client.runs.wait(tid, "oldnew", command={"resume": {"T3-q1": "2"}}, context=context),
        RUN_TIMEOUT,
    )
    item = {"id": "fb1", "text": "Dates are ISO 8601 in UTC.", "received": "2025-01-01T00:00:00"}
    feedback = {"feedback": {"fb1": item}}
    await asyncio.wait_for(
        client.runs.wait(tid, "oldnew", input=feedback, context=context), RUN_TIMEOUT
    )
    return dict(await client.threads.get_state(tid))


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_feedback_through_langgraph_dev(server: Server, tmp_path: Path) -> None:
    replies = tomllib.loads((EXAMPLE / "transcript.toml").read_text(encoding="utf-8"))["reply"]
    triage = {"kind": "clarification", "summary": "dates are ISO 8601 in UTC"}
    replies.insert(0, {"role": "planner", "when": ["FEEDBACK fb1"], "structured": triage})
    transcript = tmp_path / "transcript.json"
    transcript.write_text(json.dumps({"reply": replies}), encoding="utf-8")
    ws = tmp_path / "ws"
    context = {"model": f"scripted:{transcript}", "workspace": str(ws)}
    scope_text = (EXAMPLE / "scope.md").read_text(encoding="utf-8")

    async def drive() -> dict[str, Any]:
        async with get_client(url=server.url) as client:
            return await _feedback_with(client, context, scope_text)

    try:
        final = asyncio.run(drive())
    except Exception as exc:  # the server's side of the story is in its log
        pytest.fail(f"driving the server failed: {exc!r}\n--- server log ---\n{server.tail()}")
    values = final["values"]
    assert values.get("status") == "delivered", f"{values!r}\n{server.tail()}"
    assert values["feedback"] == {}
    assert [(e["id"], e["kind"]) for e in values["feedback_log"]] == [("fb1", "clarification")]
    assert values["questions"]["fb1"]["answer"] == "Dates are ISO 8601 in UTC."
    assert sorted(_trailer_commits(ws)) == ["T1", "T2", "T3", "acceptance-1"]  # nothing re-ran
    report = json.loads((ws / ".oldnew" / "report.json").read_text(encoding="utf-8"))
    assert report["feedback"][0]["decision"] == "dates are ISO 8601 in UTC"


# -- forks and task progress ---------------------------------------------------------------


def _git(ws: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(ws), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def _tasks(state: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(state["values"]["tasks"])


async def _forks_with(client: Any, scope_text: str, context: dict[str, Any]) -> dict[str, Any]:
    """Run the example (streamed), then fork it after the plan and at T3's pause."""
    tid = (await client.threads.create())["thread_id"]
    seen: list[tuple[str, Any]] = []
    stream = client.runs.stream(
        tid,
        "oldnew",
        input={"scope_text": scope_text},
        context=context,
        stream_mode=["updates", "custom"],
        stream_subgraphs=True,
    )
    async for part in stream:
        seen.append((part.event, part.data))
    paused = await client.threads.get_state(tid)
    await client.runs.wait(tid, "oldnew", command={"resume": {"T3-q1": "1"}}, context=context)
    first = await client.threads.get_state(tid)
    history = await client.threads.get_history(tid, limit=100)
    after_plan = next(h for h in history if h["next"] == ["acceptance"])
    at_pause = next(h for h in history if h["next"] == ["human"] and h["interrupts"])
    ws = Path(context["workspace"])
    out: dict[str, Any] = {"seen": seen, "paused": paused, "first": first}
    (task,) = await client.assistants.search(graph_id="task")
    out["task_graph"] = await client.assistants.get_graph(task["assistant_id"])
    out["first_main"] = await asyncio.to_thread(_git, ws, "rev-parse", "main")
    # Fork 1: from the checkpoint after the plan (no input: the run goes on from there).
    fork = after_plan["checkpoint"]["checkpoint_id"]
    await client.runs.wait(tid, "oldnew", checkpoint_id=fork, context=context)
    out["replanned"] = await client.threads.get_state(tid)
    out["replanned_main"] = (await asyncio.to_thread(_git, ws, "rev-list", "main")).split()
    # Fork 2: at T3's pause, with the other answer: a replay of the pause asks again.
    again = at_pause["checkpoint"]["checkpoint_id"]
    await client.runs.wait(tid, "oldnew", checkpoint_id=again, context=context)
    out["asked_again"] = await client.threads.get_state(tid)
    await client.runs.wait(tid, "oldnew", command={"resume": {"T3-q1": "2"}}, context=context)
    out["answered_2"] = await client.threads.get_state(tid)
    return out


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_forks_and_task_progress_through_langgraph_dev(server: Server, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    context = {"model": f"scripted:{EXAMPLE / 'transcript.toml'}", "workspace": str(ws)}
    scope_text = (EXAMPLE / "scope.md").read_text(encoding="utf-8")

    async def drive() -> dict[str, Any]:
        async with get_client(url=server.url) as client:
            return await asyncio.wait_for(_forks_with(client, scope_text, context), 270)

    try:
        out = asyncio.run(drive())
    except Exception as exc:  # the server's side of the story is in its log
        pytest.fail(f"driving the server failed: {exc!r}\n--- server log ---\n{server.tail()}")

    def why(msg: str) -> str:
        return f"{msg}\n--- server log ---\n{server.tail()}"

    # Studio draws the task pipeline from its own registered graph.
    drawn = {n["id"] for n in out["task_graph"]["nodes"]}
    assert {"code", "validate", "fix", "commit", "escalate"} <= drawn, why(f"{drawn!r}")
    # Each task's own updates reach the stream while tasks run, before execute's update.
    events = [event for event, _ in out["seen"]]
    first_execute = next(
        i for i, (e, d) in enumerate(out["seen"]) if e == "updates" and "execute" in (d or {})
    )
    task_updates = [
        (i, e, d)
        for i, (e, d) in enumerate(out["seen"])
        if e.startswith("updates|") and "|task:" in e
    ]
    assert task_updates and task_updates[0][0] < first_execute, why(f"events: {events!r}")
    assert {e.rsplit("|task:", 1)[1] for _, e, _ in task_updates} == {"T1", "T2", "T3"}
    assert any("commit" in d for _, e, d in task_updates if e.endswith("|task:T1")), why(
        f"T1's updates: {[d for _, e, d in task_updates if e.endswith('|task:T1')]!r}"
    )
    custom = [d for e, d in out["seen"] if e.startswith("custom") and isinstance(d, dict)]
    assert any(d.get("task") == "T2" and d.get("node") == "validate" for d in custom), why(
        f"custom events: {custom[:20]!r}"
    )
    # The run's state shows each task's thread, head and node; T3 waits in escalate.
    paused = _tasks(out["paused"])
    assert paused["T3"]["status"] == "waiting" and paused["T3"]["node"] == "escalate", why(
        f"{paused['T3']!r}"
    )
    first = _tasks(out["first"])
    assert out["first"]["values"]["status"] == "delivered", why(f"{out['first']['values']!r}")
    assert all(r["thread"] and r["head"] for r in first.values()), why(f"{first!r}")

    # Fork after the plan: every task ran again on threads of its own, onto main reset to
    # where the plan left it; the first run's main is kept on a branch.
    replanned = _tasks(out["replanned"])
    assert out["replanned"]["next"] == ["human"], why(f"fork 1: {out['replanned']!r}")
    assert {t: r["status"] for t, r in replanned.items()} == {
        "T1": "done",
        "T2": "done",
        "T3": "waiting",
    }, why(f"{replanned!r}")
    for t in ("T1", "T2", "T3"):
        assert replanned[t]["thread"] != first[t]["thread"], why(f"{t} shares its thread")
    for t in ("T1", "T2"):
        assert replanned[t]["commit"] != first[t]["commit"], why(f"{t} was not re-run")
        assert replanned[t]["commit"] in out["replanned_main"], why(f"{t} is not on main")
        assert first[t]["commit"] not in out["replanned_main"], why(f"{t}: main not reset")
    kept = f"oldnew/fork/{out['first_main'][:12]}"
    assert _git(ws, "rev-parse", kept) == out["first_main"], why(_git(ws, "branch", "-a"))

    # Fork at T3's pause, answered 2 this time: T3 goes on from its pause on its own thread
    # (a branch of it), and the code has the other choice.
    assert out["asked_again"]["next"] == ["human"], why(f"{out['asked_again']!r}")
    final = out["answered_2"]
    assert final["values"]["status"] == "delivered", why(f"{final['values']!r}")
    done = _tasks(final)
    assert [done[t]["thread"] for t in "T1 T2 T3".split()] == [
        first[t]["thread"] for t in "T1 T2 T3".split()
    ]
    assert done["T1"]["commit"] == first["T1"]["commit"] and done["T3"]["commit"] not in (
        first["T3"]["commit"],
        replanned["T3"]["commit"],
    )
    cli = _git(ws, "show", "main:todo/cli.py")
    assert 'DEFAULT_FILE = "./todo.json"' in cli, why(cli)
    assert 'DEFAULT_FILE = "~/.todo.json"' in _git(ws, "show", f"{kept}:todo/cli.py")
