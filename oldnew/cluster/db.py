"""oldnew's own tables beside the checkpoints and procrastinate's jobs, in one database.

- ``oldnew_runs``: each run handed to the workers: its record (what a worker's clone needs),
  the oldnew version it was started with, where it stands.
- ``oldnew_tasks``: per task of a run, which worker works on it now, its latest snapshot
  (``cluster.central``) and the job that advances it.
- ``oldnew_workers``: each worker's heartbeat and load, for ``oldnew workers``.
- ``oldnew_letters``: answers and feedback given from any machine, for the run's holder.
- ``oldnew_leases`` and the fence: one writer per thread. Whoever advances a thread takes
  its lease first (the epoch goes up by one) and writes every checkpoint with that epoch in
  its metadata; a trigger refuses a checkpoint whose epoch is not the thread's current one.
  A worker that was given up for dead (no heartbeat) but still runs can then never fork a
  thread another worker has taken over: its next checkpoint fails.
"""

from __future__ import annotations

import json
import socket
from contextvars import ContextVar
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import DictRow
from psycopg_pool import AsyncConnectionPool

from oldnew.errors import OldnewError

Pool = AsyncConnectionPool[AsyncConnection[DictRow]]

LEASE_KEY = "oldnew_lease"
"""The checkpoint metadata key that carries the writer's lease epoch."""
GOING = ("queued", "running", "retrying")
"""Where a run stands while its jobs wait for (or are on) a worker: it has not ended."""
RUN_LEASE: ContextVar[int | None] = ContextVar("oldnew_run_lease", default=None)
"""The lease epoch the run's holder writes the run's own thread with (``runs.run_config``)."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS oldnew_runs (
    run_id text PRIMARY KEY,
    record jsonb NOT NULL,
    files jsonb NOT NULL DEFAULT '{}',
    version text NOT NULL,
    status text NOT NULL DEFAULT 'queued',
    summary jsonb NOT NULL DEFAULT '{}',
    holder text,
    usage text NOT NULL DEFAULT '',
    created timestamptz NOT NULL DEFAULT now(),
    updated timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS oldnew_tasks (
    run_id text NOT NULL,
    task_id text NOT NULL,
    thread_id text NOT NULL,
    worker text,
    last_worker text,
    state text NOT NULL DEFAULT 'queued',
    snapshot text,
    job_id bigint,
    error text,
    usage jsonb,
    updated timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, task_id)
);
CREATE TABLE IF NOT EXISTS oldnew_workers (
    name text PRIMARY KEY,
    host text NOT NULL,
    pid integer NOT NULL,
    version text NOT NULL,
    concurrency integer NOT NULL,
    running integer NOT NULL DEFAULT 0,
    stall double precision NOT NULL DEFAULT 30,
    started timestamptz NOT NULL DEFAULT now(),
    heartbeat timestamptz NOT NULL DEFAULT now(),
    stopped timestamptz
);
CREATE TABLE IF NOT EXISTS oldnew_letters (
    id bigserial PRIMARY KEY,
    run_id text NOT NULL,
    answers jsonb NOT NULL DEFAULT '{}',
    feedback text,
    taken boolean NOT NULL DEFAULT false,
    created timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS oldnew_leases (
    thread_id text PRIMARY KEY,
    epoch bigint NOT NULL,
    holder text NOT NULL,
    taken timestamptz NOT NULL DEFAULT now()
);
CREATE OR REPLACE FUNCTION oldnew_fence() RETURNS trigger AS $$
DECLARE
    mine bigint := (NEW.metadata ->> 'oldnew_lease')::bigint;
    now_held bigint;
BEGIN
    IF mine IS NULL THEN
        RETURN NEW;
    END IF;
    SELECT epoch INTO now_held FROM oldnew_leases WHERE thread_id = NEW.thread_id;
    IF now_held IS DISTINCT FROM mine THEN
        RAISE EXCEPTION 'oldnew: stale writer: thread % is held under lease %, not %',
            NEW.thread_id, now_held, mine USING ERRCODE = 'OLD01';
    END IF;
    RETURN NEW;
END
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS oldnew_fence ON checkpoints;
CREATE TRIGGER oldnew_fence BEFORE INSERT OR UPDATE ON checkpoints
    FOR EACH ROW EXECUTE FUNCTION oldnew_fence();
"""
"""Applied after the checkpointer's own tables exist (the fence is a trigger on them)."""


def host() -> str:
    """Return this machine's name, as workers and holders are shown."""
    return socket.gethostname()


class StaleWriter(OldnewError):
    """A writer given up for dead found its thread taken over: what it does now is void."""


class ClusterDB:
    """The rows of oldnew's own in the shared database, through one pool."""

    def __init__(self, pool: Pool) -> None:
        """Use ``pool`` (autocommit, dict rows: ``cluster.state.open_state``'s)."""
        self.pool = pool

    async def _all(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(sql, args)
            return list(await cur.fetchall()) if cur.description else []

    async def _one(self, sql: str, *args: Any) -> dict[str, Any] | None:
        rows = await self._all(sql, *args)
        return rows[0] if rows else None

    async def apply_schema(self) -> None:
        """Create oldnew's tables and the fence (idempotent)."""
        async with self.pool.connection() as conn:
            await _locked_ddl(conn, SCHEMA)

    # -- leases ------------------------------------------------------------------------------

    async def take_lease(
        self,
        thread_id: str,
        holder: str,
        *,
        job: tuple[int, int] | None = None,
        under: tuple[str, int] | None = None,
    ) -> int:
        """Take the thread's lease for ``holder``; return the new epoch.

        Only a writer still entitled to it may: with ``job`` (id, attempts), while that try
        of the job is the one running; with ``under`` (thread, epoch), while that lease (the
        run's holder's) is the current one. A writer given up for dead that wakes up late
        can so never take a thread back from its successor.

        Raises:
            StaleWriter: the job was handed to another worker, or the run to another holder.

        """
        entitled = "true"
        args: list[Any] = [thread_id, holder]
        if job is not None:
            entitled = (
                "EXISTS (SELECT 1 FROM procrastinate_jobs WHERE id = %s AND attempts = %s "
                "AND status = 'doing')"
            )
            args += list(job)
        elif under is not None:
            entitled = "EXISTS (SELECT 1 FROM oldnew_leases WHERE thread_id = %s AND epoch = %s)"
            args += list(under)
        row = await self._one(
            "INSERT INTO oldnew_leases (thread_id, epoch, holder) "  # nosec B608 - fixed text
            f"SELECT %s, 1, %s WHERE {entitled} "
            "ON CONFLICT (thread_id) DO UPDATE SET epoch = oldnew_leases.epoch + 1, "
            "holder = EXCLUDED.holder, taken = now() RETURNING epoch",
            *args,
        )
        if row is None:
            raise StaleWriter(
                f"{holder} may no longer write thread {thread_id}: its work was handed to "
                "another worker while it was silent"
            )
        return int(row["epoch"])

    async def set_snapshot(
        self,
        run_id: str,
        task_id: str,
        thread_id: str,
        epoch: int,
        snapshot: str,
        state: str,
        usage: list[dict[str, Any]] | None = None,
    ) -> bool:
        """Name the task's latest snapshot, if ``epoch`` still holds the thread; whether it did.

        ``usage``: the model calls the step made (the holder adds them to the run's ledger).
        """
        row = await self._one(
            "UPDATE oldnew_tasks SET snapshot = %s, state = %s, usage = %s, worker = NULL, "
            "error = NULL, updated = now() WHERE run_id = %s AND task_id = %s AND %s = "
            "(SELECT epoch FROM oldnew_leases WHERE thread_id = %s) RETURNING task_id",
            snapshot,
            state,
            json.dumps(usage or [], default=str),
            run_id,
            task_id,
            epoch,
            thread_id,
        )
        return row is not None

    async def fail_step(
        self, run_id: str, task_id: str, thread_id: str, epoch: int, error: str, *, final: bool
    ) -> None:
        """Record a step's error under the lease: ``failed`` on its last try, else ``retrying``."""
        await self._all(
            "UPDATE oldnew_tasks SET error = %s, state = %s, updated = now() "
            "WHERE run_id = %s AND task_id = %s AND %s = "
            "(SELECT epoch FROM oldnew_leases WHERE thread_id = %s)",
            error,
            "failed" if final else "retrying",
            run_id,
            task_id,
            epoch,
            thread_id,
        )

    async def lease_alive(self, thread_id: str, stall: float) -> bool:
        """Say whether the thread's lease holder is a worker that beat in the last ``stall`` s."""
        row = await self._one(
            "SELECT 1 AS alive FROM oldnew_leases l JOIN oldnew_workers w ON w.name = l.holder "
            "WHERE l.thread_id = %s AND w.stopped IS NULL "
            "AND w.heartbeat > now() - make_interval(secs => %s)",
            thread_id,
            stall,
        )
        return row is not None

    # -- runs --------------------------------------------------------------------------------

    async def add_run(
        self, run_id: str, record: dict[str, Any], files: dict[str, str], version: str
    ) -> None:
        """Record a run handed to the workers."""
        await self._all(
            "INSERT INTO oldnew_runs (run_id, record, files, version) VALUES (%s, %s, %s, %s)",
            run_id,
            json.dumps(record, default=str),
            json.dumps(files),
            version,
        )

    async def run(self, run_id: str) -> dict[str, Any] | None:
        """Return a run's row, or None."""
        return await self._one("SELECT * FROM oldnew_runs WHERE run_id = %s", run_id)

    async def runs(self) -> list[dict[str, Any]]:
        """Return every run's row, the newest first."""
        return await self._all("SELECT * FROM oldnew_runs ORDER BY created DESC")

    async def set_run(
        self, run_id: str, status: str, summary: dict[str, Any] | None = None, holder: str = ""
    ) -> None:
        """Say where a run stands (and who holds it, while it is held)."""
        await self._all(
            "UPDATE oldnew_runs SET status = %s, summary = COALESCE(%s, summary), "
            "holder = NULLIF(%s, ''), updated = now() WHERE run_id = %s",
            status,
            json.dumps(summary, default=str) if summary is not None else None,
            holder,
            run_id,
        )

    async def requeued(self, run_id: str) -> None:
        """Say that a run at rest (blocked, waiting, interrupted) is queued again."""
        await self._all(
            "UPDATE oldnew_runs SET status = 'queued', updated = now() "
            "WHERE run_id = %s AND status <> ALL(%s)",
            run_id,
            list(GOING),
        )

    async def save_usage(self, run_id: str, text: str) -> None:
        """Keep the holder's usage ledger (``budget.ledger``): the next holder goes on from it."""
        await self._all("UPDATE oldnew_runs SET usage = %s WHERE run_id = %s", text, run_id)

    # -- tasks -------------------------------------------------------------------------------

    async def task(self, run_id: str, task_id: str) -> dict[str, Any] | None:
        """Return a task's row, or None before its first step was handed out."""
        return await self._one(
            "SELECT * FROM oldnew_tasks WHERE run_id = %s AND task_id = %s", run_id, task_id
        )

    async def tasks(self, run_id: str) -> list[dict[str, Any]]:
        """Return the rows of a run's tasks."""
        return await self._all(
            "SELECT * FROM oldnew_tasks WHERE run_id = %s ORDER BY task_id", run_id
        )

    async def set_task(self, run_id: str, task_id: str, thread_id: str, **fields: Any) -> None:
        """Upsert a task's row with ``fields`` (worker, state, snapshot, job_id, error)."""
        if fields.get("worker"):
            fields["last_worker"] = fields["worker"]  # who worked on it last, for the record
        names = sorted(fields)
        cols = ", ".join(["run_id", "task_id", "thread_id", *names])
        marks = ", ".join(["%s"] * (3 + len(names)))
        updates = ", ".join([f"{n} = EXCLUDED.{n}" for n in names] + ["updated = now()"])
        await self._all(
            f"INSERT INTO oldnew_tasks ({cols}) VALUES ({marks}) "  # nosec B608 - fixed names
            f"ON CONFLICT (run_id, task_id) DO UPDATE SET {updates}",
            run_id,
            task_id,
            thread_id,
            *(fields[n] for n in names),
        )

    async def settle_tasks(self, run_id: str, states: dict[str, str]) -> None:
        """Bring the rows of tasks that ended up to ``states`` (task -> its status).

        A task whose holder was lost after it ended is not handed out again: its row would
        go on saying where that holder left it.
        """
        await self._all(
            "UPDATE oldnew_tasks t SET state = s.state, worker = NULL, updated = now() "
            "FROM jsonb_each_text(%s::jsonb) AS s(task_id, state) "
            "WHERE t.run_id = %s AND t.task_id = s.task_id AND t.state <> s.state",
            json.dumps(states),
            run_id,
        )

    # -- workers -----------------------------------------------------------------------------

    async def beat(
        self, name: str, pid: int, version: str, concurrency: int, running: int, stall: float
    ) -> None:
        """Record a worker's heartbeat, load and stall timeout (when it counts as dead)."""
        await self._all(
            "INSERT INTO oldnew_workers (name, host, pid, version, concurrency, running, stall) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (name) DO UPDATE SET "
            "host = EXCLUDED.host, pid = EXCLUDED.pid, version = EXCLUDED.version, "
            "concurrency = EXCLUDED.concurrency, running = EXCLUDED.running, "
            "stall = EXCLUDED.stall, heartbeat = now(), stopped = NULL",
            name,
            host(),
            pid,
            version,
            concurrency,
            running,
            stall,
        )

    async def stopped(self, name: str) -> None:
        """Record that a worker stopped cleanly."""
        await self._all(
            "UPDATE oldnew_workers SET stopped = now(), running = 0 WHERE name = %s", name
        )

    async def workers(self) -> list[dict[str, Any]]:
        """Return every worker's row, with the seconds since its heartbeat."""
        return await self._all(
            "SELECT *, EXTRACT(EPOCH FROM now() - heartbeat)::float AS silent_s "
            "FROM oldnew_workers ORDER BY name"
        )

    # -- letters -----------------------------------------------------------------------------

    async def post(self, run_id: str, answers: dict[str, str], feedback: str | None) -> None:
        """Leave answers or feedback for the run's holder."""
        await self._all(
            "INSERT INTO oldnew_letters (run_id, answers, feedback) VALUES (%s, %s, %s)",
            run_id,
            json.dumps(answers),
            feedback,
        )

    async def take_letters(self, run_id: str) -> list[dict[str, Any]]:
        """Return the run's letters not taken yet, marking them taken."""
        return await self._all(
            "UPDATE oldnew_letters SET taken = true WHERE run_id = %s AND NOT taken "
            "RETURNING answers, feedback",
            run_id,
        )


async def _locked_ddl(conn: AsyncConnection[DictRow], sql: str) -> None:
    """Run DDL under an advisory lock: two processes setting up at once do not collide."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(7220431)")
        await conn.execute(sql, prepare=False)  # several statements: never prepared
