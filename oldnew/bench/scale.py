"""The scale benchmark: a synthetic DAG of N tasks through the real graph, at simulated speed.

``oldnew bench scale --tasks 200 --agents 8 --latency-median 0.3 --gate-seconds 0.5`` seeds a
random layered DAG of N tasks (each writes its own module and test: disjoint files) as the
plan, and runs it through execute, merge and delivery with a model that sleeps a log-normal
time per call (``bench.simulated.LatencyModel``) and gates that sleep G seconds
(``SimulatedGates``). Nothing but the graph costs time, so the figures measure the graph:

- makespan (first task started to last task landed, from the event log) against the lower
  bound max(critical path, total work / agents), a task's work being its recorded model
  latencies plus one validation (G);
- CPU per task, of this process and of its children (git), checkpoint bytes per task, peak
  RSS, model calls in flight, and the seconds main's merge lock was held.
"""

from __future__ import annotations

import asyncio
import random
import resource
import shutil
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from oldnew.bench.faults import synthetic_plan
from oldnew.bench.simulated import LatencyModel, SimulatedGates
from oldnew.budget import ledger_of
from oldnew.context import Context
from oldnew.execution.queue import stats_of
from oldnew.runs import open_graph, outcome_of, run_config, stream
from oldnew.workspace import Workspace

Dag = dict[str, list[str]]
"""Task id -> the ids of its prerequisites (``T1``..``TN``, prerequisites in lower layers)."""

FIGURES = {
    "delivered": "tasks delivered",
    "makespan_s": "makespan (first task started to last landed), s",
    "lower_bound_s": "lower bound max(critical path, work / agents), s",
    "makespan_over_bound": "makespan / lower bound",
    "critical_path_s": "critical path (model latencies + one validation), s",
    "work_s": "total work, s",
    "calls_in_flight_mean": "model calls in flight, time-weighted mean",
    "calls_in_flight_max": "model calls in flight, max",
    "gate_runs": "validations run",
    "gate_runs_at_once_max": "validations at once, max",
    "queue_validations": "merge queue: validations of tasks built on others",
    "queue_restarts": "merge queue: rebuilt after a change ahead",
    "merge_lock_held_s": "merge lock held (main moving), s",
    "merge_lock_share": "merge lock held / makespan",
    "cpu_ms_per_task": "own-process CPU per task, ms",
    "child_cpu_ms_per_task": "child-process CPU per task (git...), ms",
    "checkpoint_bytes_per_task": "checkpoint contents per task, bytes",
    "checkpoint_file_bytes_per_task": "checkpoint file per task, bytes",
    "peak_rss_mb": "peak RSS, MB",
    "wall_s": "wall time of the whole run, s",
}
"""The figures the table shows, and what each means (``--json`` prints them all)."""

HEARTBEAT_S = 10.0
"""Say how far the run is at least this often, even when no task lands."""


def layered_dag(tasks: int, seed: int, edges: float = 0.04, layers: int | None = None) -> Dag:
    """Return a random layered DAG of ``tasks`` tasks, determined by ``seed``.

    The tasks are spread over ``layers`` layers (default: the square root of N, each layer
    at least one task, ids in layer order); each pair of tasks in different layers is an
    edge, from the lower layer to the higher, with probability ``edges``.
    """
    count = max(1, min(tasks, layers if layers else round(tasks**0.5)))
    rng = random.Random(f"scale-dag|{seed}")
    level = sorted(list(range(count)) + [rng.randrange(count) for _ in range(tasks - count)])
    ids = [f"T{i}" for i in range(1, tasks + 1)]
    dag: Dag = {tid: [] for tid in ids}
    for b in range(tasks):
        for a in range(b):
            if level[a] < level[b] and rng.random() < edges:
                dag[ids[b]].append(ids[a])
    return dag


def critical_path(dag: Mapping[str, list[str]], work: Mapping[str, float]) -> float:
    """Return the longest chain of work through ``dag`` (its ids in topological order)."""
    finish: dict[str, float] = {}
    for tid, deps in dag.items():
        finish[tid] = max((finish[d] for d in deps), default=0.0) + work.get(tid, 0.0)
    return max(finish.values(), default=0.0)


def checkpoint_bytes(path: Path) -> dict[str, int]:
    """Return the bytes of a SQLite file's contents (text and blob values) and of the file.

    Every table counts, whatever saver made it: ``contents`` is what the rows hold,
    ``file`` the database with its WAL, as it is on disk.
    """
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        contents = 0
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            cols = [r[1] for r in con.execute(f'PRAGMA table_info("{table}")')]
            if cols:
                summed = " + ".join(
                    f"COALESCE(SUM(CASE WHEN typeof(\"{c}\") IN ('text', 'blob') "
                    f'THEN length(CAST("{c}" AS BLOB)) END), 0)'
                    for c in cols
                )
                contents += int(con.execute(f'SELECT {summed} FROM "{table}"').fetchone()[0])
    finally:
        con.close()
    wal = path.with_name(path.name + "-wal")
    size = path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
    return {"contents": contents, "file": size}


def _when(event: Mapping[str, Any]) -> float:
    return datetime.fromisoformat(str(event["ts"])).timestamp()


def execute_window(events: list[dict[str, Any]]) -> tuple[float, float]:
    """Return (first task started, last task landed) as wall-clock times, from the events."""
    started = [_when(e) for e in events if e.get("event") == "task_started"]
    landed = [
        _when(e) for e in events if e.get("node") == "commit" and e.get("event") == "committed"
    ]
    if not started or not landed:
        return 0.0, 0.0
    return min(started), max(landed)


class _Progress:
    """Say on each landing (at most once a second) and every ``HEARTBEAT_S`` how far it is."""

    def __init__(self, tasks: int, say: Callable[[str], None]) -> None:
        self.tasks, self.say = tasks, say
        self.landed, self.start, self.last = 0, time.monotonic(), 0.0

    def line(self) -> None:
        self.last = time.monotonic()
        elapsed = self.last - self.start
        self.say(f"landed {self.landed}/{self.tasks} tasks, {elapsed:.1f} s")

    def on_event(self, event: dict[str, Any]) -> None:
        if event.get("node") == "commit" and event.get("event") == "committed":
            self.landed += 1
            if time.monotonic() - self.last >= 1.0 or self.landed == self.tasks:
                self.line()

    async def heartbeat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            if time.monotonic() - self.last >= HEARTBEAT_S:
                self.line()


def _queue_figures(ws: Workspace) -> dict[str, Any]:
    """Return what the merge queue did: validations, those it needed none, restarts, most."""
    stats = stats_of(ws.root)
    if stats is None:
        return {}
    return {
        "queue_validations": stats.validations,
        "queue_landed_unvalidated": stats.skipped,
        "queue_restarts": stats.restarts,
        "queue_rejected": stats.rejected,
        "queue_most_waiting": stats.most_waiting,
    }


def _cpu(usage: resource.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


async def run_scale_bench(
    *,
    tasks: int,
    agents: int,
    latency_median: float,
    gate_seconds: float,
    seed: int,
    sigma: float = 0.5,
    edges: float = 0.04,
    layers: int | None = None,
    gate_slots: int = 0,
    workdir: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the benchmark and return its figures as one JSON-ready dict.

    The workspace is made in ``workdir`` and kept there; without it, in a temporary folder
    removed at the end. ``progress`` is told how far the run is, now and then.
    ``gate_slots`` is the run's (validations at once); 0: two per agent, since the
    simulated gates take no CPU (real ones get one per CPU by default).
    """
    dag = await asyncio.to_thread(layered_dag, tasks, seed, edges, layers)
    root = workdir or Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="oldnew-scale-"))
    run_id = str(uuid.uuid4())
    try:
        ws = await asyncio.to_thread(
            Workspace.create, root / "ws", run_id, {"context": {"bench": "scale"}}
        )
        model = LatencyModel(seed=seed, median=latency_median, sigma=sigma)
        gates = SimulatedGates(gate_seconds)
        slots = gate_slots or 2 * agents
        ctx = Context(
            workspace=str(ws.root),
            max_agents=agents,
            gate_slots=slots,
            memory_path="off",
            retry_base_delay=0.0,
        )
        config = run_config(run_id)
        shown = _Progress(tasks, progress or (lambda line: None))
        beat = asyncio.create_task(shown.heartbeat()) if progress else None
        self0, children0 = resource.getrusage(resource.RUSAGE_SELF), _children()
        start = time.monotonic()
        try:
            with ws.lock():
                async with open_graph(ws, models=model, gates=gates) as graph:
                    await graph.aupdate_state(config, synthetic_plan(tasks, dag), as_node="plan")
                    await stream(graph, None, config, ctx, shown.on_event)
                    outcome = await outcome_of(graph, ws, run_id)
        finally:
            if beat is not None:
                beat.cancel()
        wall = time.monotonic() - start
        self1, children1 = resource.getrusage(resource.RUSAGE_SELF), _children()
        events = await asyncio.to_thread(ws.events)
        stored = await asyncio.to_thread(checkpoint_bytes, ws.checkpoints)
        metered = await asyncio.to_thread(_metered_calls, ws.root)
        figures: dict[str, Any] = {
            "tasks": tasks,
            "agents": agents,
            "seed": seed,
            "latency_median_s": latency_median,
            "latency_sigma": sigma,
            "gate_seconds": gate_seconds,
            "edges": sum(len(d) for d in dag.values()),
            "edge_rate": edges,
            "longest_chain": round(critical_path(dag, dict.fromkeys(dag, 1.0))),
            "status": outcome.status,
            "delivered": sum(1 for t in outcome.tasks if t["status"] == "done"),
            "model_calls": model.log.calls(),
            "model_calls_metered": metered,
            "gate_slots": slots,
            "gate_runs": gates.runs,
            "gate_runs_at_once_max": gates.peak,
        }
        figures |= _timing(dag, model, gates, events, agents)
        figures |= {
            "cpu_ms_per_task": round(1000 * (_cpu(self1) - _cpu(self0)) / tasks, 1),
            "child_cpu_ms_per_task": round(1000 * (children1 - children0) / tasks, 1),
            "checkpoint_bytes_per_task": round(stored["contents"] / tasks),
            "checkpoint_file_bytes_per_task": round(stored["file"] / tasks),
            "peak_rss_mb": round(self1.ru_maxrss / 1024, 1),
            "merge_lock_held_s": round(ws.merge_held(), 2),
            "merge_lock_share": _share(ws.merge_held(), figures["makespan_s"]),
            **_queue_figures(ws),
            "wall_s": round(wall, 2),
        }
        return figures
    finally:
        if workdir is None:
            await asyncio.to_thread(shutil.rmtree, root, True)


def _share(part: float, whole: float) -> float | None:
    return round(part / whole, 3) if whole else None


def _children() -> float:
    return _cpu(resource.getrusage(resource.RUSAGE_CHILDREN))


def _metered_calls(root: Path) -> int:
    return int(ledger_of(root).spend()["calls"])


def _timing(
    dag: Dag,
    model: LatencyModel,
    gates: SimulatedGates,
    events: list[dict[str, Any]],
    agents: int,
) -> dict[str, Any]:
    """Return the makespan, the lower bound from the recorded work, and calls in flight."""
    work = {t: sum(model.log.latencies.get(t, [])) + gates.seconds for t in dag}
    path = critical_path(dag, work)
    bound = max(path, sum(work.values()) / agents)
    first, last = execute_window(events)
    makespan = last - first
    mean, peak = model.log.in_flight(first, last)
    return {
        "makespan_s": round(makespan, 2),
        "critical_path_s": round(path, 2),
        "work_s": round(sum(work.values()), 2),
        "lower_bound_s": round(bound, 2),
        "makespan_over_bound": round(makespan / bound, 2) if bound else None,
        "calls_in_flight_mean": round(mean, 2),
        "calls_in_flight_max": peak,
    }
