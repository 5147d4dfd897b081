"""``oldnew bench workers``: one run's tasks spread over 1, 2, 3 worker processes.

Each worker is a process of its own with its own clone folder, as separate machines would
have, on one PostgreSQL database (a private server the benchmark starts, or ``--state``)
and one central bare repository. The run is the synthetic plan of ``bench.faults``
(task i writes its own module and test) seeded into the run, its model a stand-in with a
seeded latency and its gates a fixed sleep (``bench.simulated``): the gates dominate, and
sleeping lets a 2-core machine show what more machines would give. The figure is the
makespan from the run's queueing to its delivery, and the speed-up over one worker.

Workers load the stand-ins with ``--build oldnew.bench.workers:build``, which reads
``OLDNEW_BENCH_GATE_SECONDS`` and ``OLDNEW_BENCH_LATENCY`` from their environment.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from oldnew.bench.faults import synthetic_plan
from oldnew.bench.simulated import LatencyModel, SimulatedGates

BUILD = "oldnew.bench.workers:build"
GATE_ENV = "OLDNEW_BENCH_GATE_SECONDS"
LATENCY_ENV = "OLDNEW_BENCH_LATENCY"


def build() -> dict[str, Any]:
    """Return the stand-ins every worker of the benchmark runs with (``--build``)."""
    gate = float(os.environ.get(GATE_ENV, "1.0"))
    latency = float(os.environ.get(LATENCY_ENV, "0.05"))
    return {
        "models": LatencyModel(seed=1, median=latency, sigma=0.3),
        "gates": SimulatedGates(gate),
    }


def init_central(path: Path) -> str:
    """Make an empty bare repository at ``path``; return it (what ``--repo`` takes)."""
    subprocess.run(  # nosec B603 B607 - fixed argv
        ["git", "init", "-q", "--bare", "-b", "main", str(path)], check=True
    )
    return str(path)


class Workers:
    """Worker processes started with ``python -m oldnew worker``, each with its own folder."""

    def __init__(
        self,
        url: str,
        repo: str,
        root: Path,
        *,
        env: dict[str, str] | None = None,
        stall: float = 30.0,
        concurrency: int = 1,
        build: str | None = BUILD,
    ) -> None:
        """Prepare workers on ``url`` and ``repo``, their folders and logs under ``root``."""
        self.url, self.repo, self.root = url, repo, root
        self.env = {**os.environ, **(env or {})}
        self.stall, self.concurrency, self.build = stall, concurrency, build
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str) -> subprocess.Popen[bytes]:
        """Start the worker ``name`` (its clones in ``root/name``, its log in ``root/name.log``)."""
        argv = [
            *(sys.executable, "-m", "oldnew", "worker", "--state", self.url),
            *("--repo", self.repo, "--dir", str(self.root / name), "--name", name),
            *("--concurrency", str(self.concurrency), "--stall-timeout", str(self.stall)),
            *(("--build", self.build) if self.build else ()),
        ]
        with (self.root / f"{name}.log").open("ab") as log:  # the child keeps its own copy
            proc = subprocess.Popen(  # nosec B603 - our own interpreter and module
                argv, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
            )
        self.procs[name] = proc
        return proc

    def kill(self, name: str) -> None:
        """SIGKILL the worker ``name`` (a machine lost: nothing it held is handed back)."""
        proc = self.procs.pop(name)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def stop(self) -> None:
        """Stop every worker still running (SIGTERM, then SIGKILL after 10 s)."""
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.procs.clear()

    def log(self, name: str) -> str:
        """Return what the worker ``name`` printed."""
        path = self.root / f"{name}.log"
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""


@contextmanager
def workers(url: str, repo: str, root: Path, **options: Any) -> Iterator[Workers]:
    """Yield :class:`Workers`, every one stopped at the end."""
    pool = Workers(url, repo, root, **options)
    try:
        yield pool
    finally:
        pool.stop()


async def queue_synthetic(
    url: str, repo: str, root: Path, tasks: int, context: dict[str, Any] | None = None
) -> str:
    """Hand a run of the synthetic plan of ``tasks`` tasks to the workers; return its id.

    ``context`` adds to (or replaces) the run's settings: approvals, say.
    """
    from oldnew.cluster.runs import submit_run

    scope = root / "scope.md"
    scope.write_text("A synthetic project: one module per task.\n", encoding="utf-8")
    model = LatencyModel(seed=1, median=0.0)
    return await submit_run(
        scope,
        root / "submitted",
        url=url,
        repo=repo,
        # Sleeping gates take no CPU: as many at once as the holder is asked for (the
        # merge queue validates on its machine; real gates would use one slot per CPU).
        context={
            "memory_path": "off",
            "retry_base_delay": 0.0,
            "max_agents": 3 * tasks,
            "gate_slots": 2 * tasks,
            **(context or {}),
        },
        models=model,
        plan=synthetic_plan(tasks),
    )


async def wait_run(
    url: str, run_id: str, timeout: float, poll: float = 0.5, until: Sequence[str] = ()
) -> dict[str, Any]:
    """Wait until the run is no longer queued, running or retrying (or reaches ``until``)."""
    from oldnew.cluster.runs import cluster_status

    end = time.monotonic() + timeout
    while True:
        found = await cluster_status(url, run_id)
        status = found["run"]["status"]
        if status in until or (not until and status not in ("queued", "running", "retrying")):
            return found
        if time.monotonic() > end:
            raise TimeoutError(f"run {run_id} still {status} after {timeout:.0f} s")
        await asyncio.sleep(poll)


async def run_workers_bench(
    *,
    url: str,
    counts: Sequence[int],
    tasks: int,
    gate_seconds: float,
    latency: float,
    concurrency: int = 1,
    timeout: float = 900.0,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the synthetic plan with each number of workers in ``counts``; return the figures."""
    say = progress or (lambda line: None)
    env = {GATE_ENV: str(gate_seconds), LATENCY_ENV: str(latency)}
    rows: list[dict[str, Any]] = []
    for count in counts:
        with tempfile.TemporaryDirectory(prefix="oldnew-workers-") as tmp:
            root = Path(tmp)
            repo = init_central(root / "central.git")
            with workers(url, repo, root, env=env, concurrency=concurrency) as pool:
                for i in range(count):
                    pool.start(f"w{i + 1}")
                start = time.monotonic()
                run_id = await queue_synthetic(url, repo, root, tasks)
                found = await wait_run(url, run_id, timeout)
                makespan = time.monotonic() - start
            done = sum(1 for t in found["tasks"] if t["state"] == "done")
            by = sorted({t.get("last_worker") or "" for t in found["tasks"]})
            rows.append(
                {
                    "workers": count,
                    "status": found["run"]["status"],
                    "tasks_done": done,
                    "makespan_s": round(makespan, 2),
                    "worked_on_by": [b for b in by if b],
                    "not_done": [
                        {k: t.get(k) for k in ("task_id", "state", "error")}
                        for t in found["tasks"]
                        if t["state"] != "done"
                    ],
                    "blockers": [
                        {k: t.get(k) for k in ("id", "status", "blocker")}
                        for t in (found["run"].get("summary") or {}).get("tasks") or []
                        if t.get("status") != "done"
                    ],
                }
            )
            say(f"{count} worker(s): {found['run']['status']}, {makespan:.1f} s")
    base = rows[0]["makespan_s"] if rows else 0.0
    for row in rows:
        row["speedup"] = round(base / row["makespan_s"], 2) if row["makespan_s"] else None
    return {
        "tasks": tasks,
        "gate_seconds": gate_seconds,
        "latency_s": latency,
        "concurrency": concurrency,
        "runs": rows,
    }
