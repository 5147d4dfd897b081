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
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from oldnew.bench.faults import synthetic_plan
from oldnew.bench.simulated import LatencyModel, SimulatedGates
from oldnew.cluster.db import GOING
from oldnew.cluster.state import connect_error, redact, server_of
from oldnew.errors import ConfigurationError, StateError
from oldnew.safegit import run_git

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
    path.parent.mkdir(parents=True, exist_ok=True)
    proc = run_git("init", "-q", "--bare", "-b", "main", str(path), cwd=path.parent)
    if proc.returncode != 0:
        raise OSError(f"git init --bare {path} failed: {proc.stderr.strip()}")
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
        if status in until or (not until and status not in GOING):
            return found
        if time.monotonic() > end:
            raise TimeoutError(f"run {run_id} still {status} after {timeout:.0f} s")
        await asyncio.sleep(poll)


@contextmanager
def private_server(say: Callable[[str], None]) -> Iterator[str]:
    """Start a throw-away PostgreSQL server in a temporary folder; yield its URL; stop it."""
    from oldnew.cluster.postgres import PrivateServer

    root = Path(tempfile.mkdtemp(prefix="oldnew-bench-pg-"))
    root.chmod(0o755)  # as root the server runs as ``postgres``, who must reach its folder
    try:
        with PrivateServer(root / "data") as server:
            say(f"started a private PostgreSQL server on 127.0.0.1:{server.port} (in {root})")
            yield server.url
        say("stopped the private PostgreSQL server")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def fresh_database(url: str, name: str) -> str:
    """Make the empty database ``name`` on the server of ``url``; return its URL.

    Raises:
        StateError: the server cannot be reached, or the URL's role may not create databases.

    """
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.errors.InsufficientPrivilege as exc:
        raise StateError(
            f"the role of {redact(url)} may not create databases on {server_of(url)}: the "
            "benchmark runs each number of workers on an empty database of its own; give a "
            "role that may (ALTER ROLE ... CREATEDB), or leave --state out and the benchmark "
            "starts a private PostgreSQL server"
        ) from exc
    except psycopg.OperationalError as exc:
        raise connect_error(url, exc) from exc
    return urlunsplit(urlsplit(url)._replace(path=f"/{quote(name)}"))


def drop_database(url: str, name: str) -> None:
    """Drop the database ``name`` on the server of ``url`` (its connections cut)."""
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


JOB_TIMES = """
SELECT j.task_name AS kind,
       count(*) AS jobs,
       sum(extract(epoch FROM e.started - e.deferred)) AS wait_s,
       sum(extract(epoch FROM e.ended - e.started)) AS run_s,
       max(extract(epoch FROM e.started - e.deferred)) AS max_wait_s
FROM procrastinate_jobs j
JOIN (
    SELECT job_id,
           min(at) FILTER (WHERE type = 'deferred') AS deferred,
           max(at) FILTER (WHERE type = 'started') AS started,
           max(at) FILTER (WHERE type IN ('succeeded', 'failed', 'aborted')) AS ended
    FROM procrastinate_events GROUP BY job_id
) e ON e.job_id = j.id
GROUP BY j.task_name
"""
"""Per kind of job (``oldnew:drive``, ``oldnew:advance``): how many, their wait, their run time."""


async def job_times(url: str) -> dict[str, dict[str, float]]:
    """Return where the jobs of the database's runs spent their time (procrastinate's events).

    ``wait_s`` is the time from a job's queueing to a worker taking it (summed over jobs),
    ``run_s`` the time it ran: the steps' sums against the workers' slots say how busy they were.
    """
    async with await psycopg.AsyncConnection.connect(url, row_factory=dict_row) as conn:
        rows = await (await conn.execute(JOB_TIMES)).fetchall()
    return {
        str(row["kind"]).rsplit(":", 1)[-1]: {
            "jobs": int(row["jobs"]),
            "wait_s": round(float(row["wait_s"] or 0), 2),
            "max_wait_s": round(float(row["max_wait_s"] or 0), 2),
            "run_s": round(float(row["run_s"] or 0), 2),
        }
        for row in rows
    }


def _tail(text: str, lines: int = 8) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _exited(pool: Workers) -> list[str]:
    return [name for name, proc in pool.procs.items() if proc.poll() is not None]


async def wait_ready(url: str, pool: Workers, timeout: float, poll: float = 0.2) -> None:
    """Wait until every worker of ``pool`` has said it is up (its row in the database).

    Raises:
        ConfigurationError: one of them exited, or is not up after ``timeout`` seconds
            (with what it printed).

    """
    from oldnew.cluster.runs import list_workers

    end = time.monotonic() + timeout
    while True:
        late = sorted(set(pool.procs) - {w["name"] for w in await list_workers(url)})
        if not late:
            return
        exited = _exited(pool)
        if exited or time.monotonic() > end:
            name = (exited or late)[0]
            what = "exited at its start" if exited else f"is not up after {timeout:.0f} s"
            raise ConfigurationError(
                f"benchmark worker {name} {what}; it printed: {_tail(pool.log(name)) or '-'}"
            )
        await asyncio.sleep(poll)


async def follow_run(
    url: str,
    pool: Workers,
    run_id: str,
    *,
    timeout: float,
    say: Callable[[str], None],
    label: str,
    tasks: int,
    poll: float = 0.2,
) -> tuple[dict[str, Any], str | None]:
    """Wait for the run to end, saying how far it is; return its status and what went wrong.

    The second value is None when the run ended (delivered or not), else why it is given up:
    not finished within ``timeout``, or every worker exited.
    """
    from oldnew.cluster.runs import cluster_status

    start = time.monotonic()
    said, last = start, (-1, "")
    while True:
        found = await cluster_status(url, run_id)
        status = found["run"]["status"]
        if status not in GOING:
            return found, None
        now = time.monotonic()
        done = sum(1 for t in found["tasks"] if t["state"] == "done")
        if (done, status) != last and now - said >= 5 or now - said >= 15:
            say(f"{label}: {status}, {done}/{tasks} tasks done, {now - start:.0f} s")
            said, last = now, (done, status)
        if len(_exited(pool)) == len(pool.procs):
            return found, "every worker exited"
        if now - start > timeout:
            return found, f"not finished after {timeout:.0f} s (--timeout)"
        await asyncio.sleep(poll)


async def bench_count(
    url: str,
    count: int,
    *,
    tasks: int,
    env: dict[str, str],
    concurrency: int,
    timeout: float,
    say: Callable[[str], None],
    workdir: Path | None = None,
) -> dict[str, Any]:
    """Run the synthetic plan on ``count`` new workers on the (empty) database ``url``.

    The workers' clones, their logs and the central repository go in a temporary folder,
    or in ``workdir`` (kept, to read the holder's events after).
    """
    label = f"{count} worker(s)"
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="oldnew-workers-") as tmp:
        root = Path(tmp) if workdir is None else workdir
        repo = init_central(root / "central.git")
        with workers(url, repo, root, env=env, concurrency=concurrency) as pool:
            for i in range(count):
                pool.start(f"w{i + 1}")
            await wait_ready(url, pool, timeout=120)
            say(f"{label}: up; queueing {tasks} tasks")
            start = time.monotonic()
            run_id = await queue_synthetic(url, repo, root, tasks)
            found, problem = await follow_run(
                url, pool, run_id, timeout=timeout, say=say, label=label, tasks=tasks
            )
            makespan = time.monotonic() - start
            logs = {name: _tail(pool.log(name)) for name in pool.procs} if problem else {}
    done = sum(1 for t in found["tasks"] if t["state"] == "done")
    status = found["run"]["status"]
    steps = await job_times(url)
    advance = steps.get("advance", {})
    row = {
        "workers": count,
        "run_id": run_id,
        "status": status,
        "delivered": problem is None and status == "delivered" and done == tasks,
        "problem": problem,
        "tasks_done": done,
        "makespan_s": round(makespan, 2),
        "worked_on_by": sorted({t["last_worker"] for t in found["tasks"] if t.get("last_worker")}),
        "steps": steps,
        "slot_use": round(advance.get("run_s", 0.0) / (count * concurrency * makespan), 2),
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
        "worker_logs": logs,
    }
    say(
        f"{label}: {status}, {done}/{tasks} tasks done, {makespan:.1f} s"
        + (f": {problem}" if problem else "")
    )
    return row


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
    workdir: Path | None = None,
) -> dict[str, Any]:
    """Run the synthetic plan with each number of workers in ``counts``; return the figures.

    Each number runs on an empty database of its own, made on the server of ``url`` (its
    role must be allowed to create databases) and dropped after, so no run sees another's
    workers or jobs. The speed-up is over the first number's makespan. With ``workdir`` the
    folders of each number are kept in ``workdir/w<N>``.
    """
    say = progress or (lambda line: None)
    env = {GATE_ENV: str(gate_seconds), LATENCY_ENV: str(latency)}
    token = secrets.token_hex(4)
    rows: list[dict[str, Any]] = []
    for count in counts:
        name = f"oldnew_bench_{token}_w{count}"
        db = fresh_database(url, name)
        try:
            rows.append(
                await bench_count(
                    db,
                    count,
                    tasks=tasks,
                    env=env,
                    concurrency=concurrency,
                    timeout=timeout,
                    say=say,
                    workdir=None if workdir is None else workdir / f"w{count}",
                )
            )
        finally:
            drop_database(url, name)
    base = rows[0]["makespan_s"] if rows and rows[0]["delivered"] else None
    for row in rows:
        row["speedup"] = round(base / row["makespan_s"], 2) if base and row["delivered"] else None
    return {
        "tasks": tasks,
        "gate_seconds": gate_seconds,
        "latency_s": latency,
        "concurrency": concurrency,
        "speedup_over": rows[0]["workers"] if rows else None,
        "delivered": all(row["delivered"] for row in rows),
        "runs": rows,
    }
