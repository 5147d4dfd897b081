"""The jobs workers take, on procrastinate (a task queue on the same PostgreSQL database).

Two kinds, each on a queue of its own named by oldnew's version (a worker of another version
never takes them):

- ``drive``: hold one run: run its graph (scope, plan, the scheduler, the merge queue,
  deliver) on the worker's clone until it is delivered or waits for a person. procrastinate's
  lock ``run:<id>`` lets one process hold a run at a time.
- ``advance``: one step of one task on its thread (code, dependencies, validate, fix, up to
  the merge queue), locked by the thread's id: one worker per thread at a time.

A worker that stops beating (killed, cut off) leaves its jobs ``doing``; every worker sweeps
for such stalled jobs and puts them back in the queue (``retry_stalled``), where another
worker takes them after the stall timeout. A step is idempotent: it runs again from the
checkpoint and the snapshot it started from.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import psycopg
from langgraph.types import Command
from procrastinate import App, Blueprint, JobContext, PsycopgConnector, RetryStrategy
from procrastinate.exceptions import AlreadyEnqueued, ConnectorException
from procrastinate.jobs import Job, Status
from procrastinate.retry import RetryDecision
from psycopg_pool import PoolTimeout

import oldnew
from oldnew.cluster.db import StaleWriter
from oldnew.errors import StateError

if TYPE_CHECKING:
    from oldnew.cluster.worker import Home

log = logging.getLogger(__name__)

jobs = Blueprint()
DRIVE = "oldnew:drive"
ADVANCE = "oldnew:advance"
STALL_SECONDS = 30.0
"""A worker silent this long is taken for dead: its jobs go to another worker."""
STEP_ATTEMPTS = 5
"""Tries of one step (a dropped connection, a lost network) before the task is blocked."""


def version() -> str:
    """Return the oldnew version jobs are made and taken by."""
    return oldnew.__version__


def runs_queue(of: str | None = None) -> str:
    """Return the queue of the ``drive`` jobs of version ``of`` (this one by default)."""
    return f"oldnew-runs-{of or version()}"


def tasks_queue(of: str | None = None) -> str:
    """Return the queue of the ``advance`` jobs of version ``of``."""
    return f"oldnew-tasks-{of or version()}"


def make_app(url: str) -> App:
    """Return the procrastinate app on ``url`` with oldnew's jobs."""
    app = App(connector=PsycopgConnector(conninfo=url))
    app.add_tasks_from(jobs, namespace="oldnew")
    return app


async def apply_schema(app: App) -> None:
    """Create procrastinate's tables unless they exist (idempotent, safe to race)."""
    connector = app.connector
    rows = await connector.execute_query_all_async(
        "SELECT to_regclass('procrastinate_jobs') IS NOT NULL AS made"
    )
    if rows and rows[0]["made"]:
        return
    try:
        await app.schema_manager.apply_schema_async()
    except Exception:  # noqa: BLE001 - another process made it meanwhile: check again
        rows = await connector.execute_query_all_async(
            "SELECT to_regclass('procrastinate_jobs') IS NOT NULL AS made"
        )
        if not (rows and rows[0]["made"]):
            raise


def encode_input(inp: Any) -> dict[str, Any] | None:
    """Return a task run's input as JSON: a first state, an answer to resume with, or None."""
    if inp is None:
        return None
    if isinstance(inp, Command):
        return {"resume": inp.resume}
    return {"state": dict(inp)}


def decode_input(data: dict[str, Any] | None) -> Any:
    """Return the input :func:`encode_input` encoded."""
    if data is None:
        return None
    if "resume" in data:
        return Command(resume=data["resume"])
    return data["state"]


async def defer_drive(app: App, run_id: str, of: str | None = None) -> int | None:
    """Queue a ``drive`` of the run; None when one is queued already (it will see the news)."""
    task = app.configure_task(
        DRIVE, lock=f"run:{run_id}", queueing_lock=f"run:{run_id}", queue=runs_queue(of)
    )
    try:
        return int(await task.defer_async(run_id=run_id))
    except AlreadyEnqueued:
        return None


async def defer_advance(app: App, thread_id: str, **args: Any) -> int:
    """Queue one step of a task's thread (locked by the thread: one worker at a time)."""
    task = app.configure_task(ADVANCE, lock=thread_id, queue=tasks_queue())
    return int(await task.defer_async(thread_id=thread_id, **args))


async def open_job(app: App, thread_id: str) -> int | None:
    """Return the id of a step of ``thread_id`` still queued or running, if there is one."""
    for status in ("doing", "todo"):
        found = await app.job_manager.list_jobs_async(lock=thread_id, status=status)
        for job in found:
            if job.id is not None:
                return int(job.id)
    return None


STALLED = """
SELECT job.id, status, task_name, priority, lock, queueing_lock, args, scheduled_at,
       queue_name, attempts, job.worker_id
  FROM procrastinate_jobs job
  LEFT JOIN procrastinate_workers w ON w.id = job.worker_id
 WHERE job.status = 'doing'
   AND ((w.id IS NOT NULL AND w.last_heartbeat < NOW() - make_interval(secs => %(stall)s))
        OR (job.worker_id IS NULL AND NOT EXISTS (
            SELECT 1 FROM procrastinate_events e
             WHERE e.job_id = job.id AND e.at > NOW() - make_interval(secs => 3 * %(stall)s))))
"""
"""The jobs of workers silent for ``stall`` seconds. A job whose worker is gone from the
table is one only long after: a worker stopping cleanly leaves the table first and ends
(retries) its own jobs within its grace period; a silent one is pruned at twice the stall."""


async def retry_stalled(app: App, stall: float) -> list[int]:
    """Put back in the queue the jobs of workers silent for ``stall`` seconds; their ids."""
    again: list[int] = []
    rows = await app.connector.execute_query_all_async(STALLED, stall=stall)
    for job in (Job.from_row(row) for row in rows):
        try:
            await app.job_manager.retry_job(job)
        except Exception as exc:  # noqa: BLE001 - retried by another worker, or a twin waits
            log.debug("stalled job %s not retried here: %s", job.id, exc)
            await _give_up(app, job)
            continue
        if job.id is not None:
            again.append(int(job.id))
    return again


async def _give_up(app: App, job: Job) -> None:
    """End a stalled job that cannot go back in the queue, so that its lock is freed.

    A ``drive`` queued meanwhile (an answer given) holds the run's queueing lock: the
    stalled one cannot become ``todo`` beside it, and that one takes its place.
    """
    if job.id is None:
        return
    try:
        status = await app.job_manager.get_job_status_async(job.id)
        if status == Status.DOING:
            await app.job_manager.finish_job_by_id_async(
                job.id, status=Status.FAILED, delete_job=False
            )
    except Exception as exc:  # noqa: BLE001 - the next sweep tries again
        log.debug("stalled job %s not ended: %s", job.id, exc)


LOST_DATABASE = (psycopg.OperationalError, PoolTimeout, ConnectorException)
"""What the database's connection, pool or job queue raise when the database went away."""
TRANSIENT = (StateError, *LOST_DATABASE, asyncio.CancelledError)
"""What a job can meet that says nothing of the job: the database went away, or the worker
stopped (its jobs are cancelled, to be retried elsewhere)."""
MOST_WAIT = 30
"""Seconds at most between tries of a job the database's absence stopped."""


def transient(exc: BaseException) -> bool:
    """Say whether ``exc`` (or its cause) is :data:`TRANSIENT`: the job is tried again."""
    return isinstance(exc, TRANSIENT) or isinstance(exc.__cause__, TRANSIENT)


class Retry(RetryStrategy):
    """procrastinate's retries, with two exceptions.

    A try whose writer was given up for dead is never retried: its successor runs on the
    same job row, and a retry (or a failure) of the stale try would change the row under
    it. Its end still does (procrastinate marks the row); the holder therefore trusts the
    task's row, written under the lease, more than the job's status.

    A try the database's absence (or the worker's stop) ended is always retried, its waits
    growing to :data:`MOST_WAIT`: the tries a job has are for its own errors, and the
    retries of a stalled worker's jobs already count among its attempts.
    """

    def get_retry_decision(self, *, exception: BaseException, job: Job) -> Any:
        """Retry unless ``exception`` says the writer is stale; always after a lost database."""
        if isinstance(exception, StaleWriter):
            return None
        if transient(exception):
            return RetryDecision(retry_in={"seconds": min(MOST_WAIT, 2 ** min(job.attempts, 5))})
        return super().get_retry_decision(exception=exception, job=job)


DRIVE_ATTEMPTS = 5
"""Tries of holding a run (a dropped connection, a lost network) before it is interrupted."""


@jobs.task(name="drive", pass_context=True, retry=Retry(max_attempts=DRIVE_ATTEMPTS, wait=1))
async def drive(context: JobContext, run_id: str) -> None:
    """Hold the run ``run_id`` on this worker until it ends or waits for a person."""
    home: Home = context.additional_context["home"]
    job = (int(context.job.id or 0), context.job.attempts)
    await home.drive(run_id, job, last_try=context.job.attempts + 1 >= DRIVE_ATTEMPTS)


@jobs.task(name="advance", pass_context=True, retry=Retry(max_attempts=STEP_ATTEMPTS, wait=1))
async def advance(
    context: JobContext,
    thread_id: str,
    run_id: str,
    task_id: str,
    start: str | None,
    snapshot: str | None,
    inp: dict[str, Any] | None,
    configurable: dict[str, Any],
    run_context: dict[str, Any],
) -> None:
    """Run one step of a task on this worker: from ``start`` and ``snapshot`` to the queue."""
    home: Home = context.additional_context["home"]
    job_id = int(context.job.id) if context.job.id is not None else 0
    await home.advance(
        job_id=job_id,
        attempts=context.job.attempts,
        thread_id=thread_id,
        run_id=run_id,
        task_id=task_id,
        start=start,
        snapshot=snapshot,
        inp=decode_input(inp),
        configurable=configurable,
        run_context=run_context,
    )
