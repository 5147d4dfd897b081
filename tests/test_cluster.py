"""Many machines: a run's tasks on worker processes, and what survives their faults.

Workers are real processes (``python -m oldnew worker``), each with its own clone folder, on a
private PostgreSQL server and one bare central repository; the model and the gates are the
benchmark's stand-ins (``oldnew.bench.workers:build``: a latency, a sleep).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import psycopg
import pytest

from oldnew.bench.workers import (
    GATE_ENV,
    LATENCY_ENV,
    init_central,
    queue_synthetic,
    wait_run,
    workers,
)
from oldnew.cluster.db import LEASE_KEY, ClusterDB, StaleWriter
from oldnew.cluster.remote import with_lease
from oldnew.cluster.runs import cluster_status
from oldnew.cluster.state import open_state

pytestmark = pytest.mark.slow

STALL = 3.0


def _main_tasks(repo: str) -> list[str]:
    """Return the Oldnew-Task trailer of every commit on the central main, oldest first."""
    out = subprocess.run(
        ["git", "log", "--reverse", "--format=%(trailers:key=Oldnew-Task,valueonly)", "main"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [line.strip() for line in out.splitlines() if line.strip()]


def _checkout(repo: str, into: Path) -> Path:
    subprocess.run(["git", "clone", "-q", repo, str(into)], check=True)
    return into


async def _until(url: str, run_id: str, check: Any, timeout: float = 60.0) -> dict[str, Any]:
    """Poll the run's status until ``check(status)`` holds; return that status."""
    end = time.monotonic() + timeout
    while True:
        found = await cluster_status(url, run_id)
        if check(found):
            return found
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting; last status: {json.dumps(found)[:3000]}")
        await asyncio.sleep(0.2)


async def _ended(url: str, run_id: str) -> dict[str, Any]:
    """Return the run once it ended, or as it stands after three minutes (the test says why)."""
    try:
        return await wait_run(url, run_id, timeout=180)
    except TimeoutError:
        return await cluster_status(url, run_id)


def _epochs_by_thread(url: str) -> dict[str, list[int]]:
    """Return each thread's writer epochs in the order its checkpoints were written."""
    seen: dict[str, list[int]] = defaultdict(list)
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT thread_id, (metadata ->> %s)::bigint FROM checkpoints "
            "WHERE metadata ? %s ORDER BY thread_id, checkpoint_id",
            (LEASE_KEY, LEASE_KEY),
        ).fetchall()
    for thread, epoch in rows:
        seen[thread].append(int(epoch))
    return seen


def test_killed_workers_holder_and_connections_lose_nothing(
    postgres_server: Any, postgres_url: str, tmp_path: Path
) -> None:
    """SIGKILL a worker mid-task, then the run's holder, and cut every database connection.

    The run still delivers: every task once on main (none redone, none lost), main's tests
    pass, and no thread was advanced by an older writer after a newer one took it over.
    """
    url, tasks = postgres_url, 8
    repo = init_central(tmp_path / "central.git")
    env = {GATE_ENV: "1.0", LATENCY_ENV: "0.02"}

    async def scenario() -> dict[str, Any]:
        with workers(url, repo, tmp_path, env=env, stall=STALL) as pool:
            for name in ("w1", "w2", "w3"):
                pool.start(name)
            run_id = await queue_synthetic(url, repo, tmp_path, tasks)
            held = await _until(url, run_id, lambda s: s["run"].get("holder"))
            holder = held["run"]["holder"]
            # 1. a worker in the middle of a task step (not the holder)
            busy = await _until(
                url,
                run_id,
                lambda s: any(
                    t["state"] == "running" and t.get("worker") not in (None, holder)
                    for t in s["tasks"]
                ),
            )
            victim = next(
                t["worker"]
                for t in busy["tasks"]
                if t["state"] == "running" and t.get("worker") not in (None, holder)
            )
            pool.kill(victim)
            pool.start("w4")
            # 2. the holder, once a task is in its merge queue
            await _until(url, run_id, lambda s: any(t["state"] == "merging" for t in s["tasks"]))
            pool.kill(holder)
            pool.start("w5")
            # 3. every connection to the database, once a new holder works
            await _until(
                url,
                run_id,
                lambda s: (
                    s["run"].get("holder") not in (None, holder) and s["run"]["status"] == "running"
                ),
                timeout=60,
            )
            cut = postgres_server.terminate(database=url.rsplit("/", 1)[1])
            assert cut > 0
            found = await _ended(url, run_id)
            logs = {name: pool.log(name) for name in ("w1", "w2", "w3", "w4", "w5")}
        return {"found": found, "logs": logs, "victims": [victim, holder], "run_id": run_id}

    out = asyncio.run(scenario())
    found = out["found"]
    summary = found["run"].get("summary") or {}
    why = {
        "status": found["run"]["status"],
        "questions": summary.get("questions"),
        "not done": [t for t in summary.get("tasks") or [] if t.get("status") != "done"],
        "rows": found["tasks"],
        "logs": {name: log[-1500:] for name, log in out["logs"].items()},
    }
    assert found["run"]["status"] == "delivered", json.dumps(why, default=str)[:8000]
    assert {t["task_id"] for t in found["tasks"] if t["state"] == "done"} == {
        f"T{i}" for i in range(1, tasks + 1)
    }
    on_main = _main_tasks(repo)
    assert sorted(on_main) == sorted(f"T{i}" for i in range(1, tasks + 1)), on_main  # once each
    tree = _checkout(repo, tmp_path / "check")
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=tree,
        capture_output=True,
        text=True,
    )
    assert tests.returncode == 0, tests.stdout[-2000:]
    written = _epochs_by_thread(url)
    assert len(written) >= tasks + 1  # the run's thread and every task's carry their lease
    assert any(len(set(epochs)) > 1 for epochs in written.values())  # threads changed hands
    for thread, epochs in written.items():
        assert epochs == sorted(epochs), f"thread {thread} written by an older writer: {epochs}"
    workers_seen = {t.get("last_worker") for t in found["tasks"]}
    assert len(workers_seen - {None}) >= 2  # the tasks really were spread


def test_an_older_writer_cannot_advance_a_thread_taken_over(postgres_url: str) -> None:
    """Two writers of one thread: once the second takes its lease, the first's writes fail."""
    from typing import TypedDict

    from langgraph.graph import END, START, StateGraph

    class S(TypedDict):
        n: int

    g = StateGraph(S)
    g.add_node("step", lambda s: {"n": s["n"] + 1})
    g.add_edge(START, "step")
    g.add_edge("step", END)

    async def scenario() -> None:
        async with open_state(postgres_url) as state:
            db = ClusterDB(state.pool)
            await db.apply_schema()
            graph = g.compile(checkpointer=state.saver)
            config = {"configurable": {"thread_id": "task-thread"}}
            first = await db.take_lease("task-thread", "worker-a")
            await graph.ainvoke({"n": 0}, with_lease(config, first))
            second = await db.take_lease("task-thread", "worker-b")
            assert second == first + 1
            with pytest.raises(psycopg.Error, match="stale writer"):
                await graph.ainvoke({"n": 10}, with_lease(config, first))
            done = await graph.ainvoke({"n": 20}, with_lease(config, second))
            assert done["n"] == 21
            latest = await graph.aget_state(config)
            assert latest.values["n"] == 21
            assert latest.metadata[LEASE_KEY] == second
            # a run's holder given up for dead may not take a task back from its successor
            old_holder = await db.take_lease("run-thread", "holder-a")
            await db.take_lease("run-thread", "holder-b")
            with pytest.raises(StaleWriter):
                await db.take_lease("task-thread", "holder-a", under=("run-thread", old_holder))
            assert (await graph.aget_state(config)).metadata[LEASE_KEY] == second

    asyncio.run(scenario())


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "oldnew", *args], capture_output=True, text=True, timeout=60
    )


def test_a_paused_run_is_followed_and_approved_from_another_machine(
    postgres_url: str, tmp_path: Path
) -> None:
    """A run on workers that waits for a person is shown and approved by URL and run id."""
    url = postgres_url
    repo = init_central(tmp_path / "central.git")
    env = {GATE_ENV: "0.1", LATENCY_ENV: "0.01"}

    async def scenario() -> tuple[str, dict[str, Any], dict[str, Any]]:
        with workers(url, repo, tmp_path, env=env, stall=STALL) as pool:
            pool.start("w1")
            pool.start("w2")
            run_id = await queue_synthetic(url, repo, tmp_path, 3, context={"approvals": "final"})
            paused = await wait_run(url, run_id, timeout=60)
            shown = _cli("status", "-w", str(tmp_path / "submitted"), "--state", url)
            assert shown.returncode == 0, shown.stderr
            assert "waiting" in shown.stdout and "gate-final" in shown.stdout
            listed = _cli("workers", "--state", url, "--json")
            assert {w["name"] for w in json.loads(listed.stdout)} == {"w1", "w2"}
            approved = _cli("approve", "--run", run_id, "--state", url)
            assert approved.returncode == 0, approved.stderr
            done = await wait_run(url, run_id, timeout=60, until=("delivered", "interrupted"))
        return run_id, paused, done

    run_id, paused, done = asyncio.run(scenario())
    assert paused["run"]["status"] == "waiting"
    assert done["run"]["status"] == "delivered", done["run"]
    assert sorted(_main_tasks(repo)) == ["T1", "T2", "T3"]
    spend = done["run"]["summary"]["budget"]["spend"]  # the workers' model calls count
    assert set(spend["by_task"]) == {"T1", "T2", "T3"}
    assert spend["by_activity"]["code"]["calls"] >= 3
    unknown = _cli("status", "--run", "no-such-run", "--state", url)
    assert unknown.returncode == 2 and "no run no-such-run" in unknown.stderr
    nowhere = _cli("status", "--run", run_id)
    assert nowhere.returncode == 2 and "--state" in nowhere.stderr
