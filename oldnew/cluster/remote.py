"""The run's holder hands each task's steps to the workers (a ``TaskRunner``).

A task's graph runs in two kinds of place. Its work (code, dependencies, validate, fix,
escalate) runs on whichever worker is free, one ``advance`` job per stretch, up to the
merge queue. Its ``commit`` (the merge queue that keeps main green) runs in the process that
holds the run, on its clone, which publishes main to the central repository. Between the
two, the task's files move as a snapshot through the central repository
(``cluster.central``) and its state through the thread's checkpoints in PostgreSQL.

The stretches follow one another on the thread: the holder waits for a worker's job to end
before it reads the thread, and each writer takes the thread's lease before it writes
(``cluster.db``), so two processes never advance one thread.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from langchain_core.runnables import RunnableConfig
from langgraph.types import StreamMode
from procrastinate.jobs import Status

from oldnew.budget.ledger import ledger_at
from oldnew.cluster import central
from oldnew.cluster.db import LEASE_KEY, RUN_LEASE
from oldnew.cluster.jobs import LOST_DATABASE, defer_advance, encode_input, open_job
from oldnew.cluster.state import lost_connection, redact
from oldnew.errors import OldnewError
from oldnew.execution.pools import GIT, offload
from oldnew.execution.threads import OnChunk, TaskGraph

if TYPE_CHECKING:
    from oldnew.cluster.worker import Home

HOLDER_NODES = frozenset({"commit"})
"""The task nodes the run's holder runs itself: the merge queue."""
MAX_STRETCHES = 200
"""Stretches of one task in one call at most: more means two sides hand it back and forth."""


ENDED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED, Status.ABORTED)
POLL = 0.2
"""Seconds between looks at a step's row while a worker runs it."""


class StepLost(OldnewError):
    """A worker's step ended without a word in its row (its worker vanished): hand it again."""


class StepFailed(OldnewError):
    """A worker's step of a task failed every try (its error is in the task's row)."""


def worker_nodes(graph: TaskGraph) -> list[str]:
    """Return the task graph's nodes that run on workers (all but :data:`HOLDER_NODES`)."""
    return [n for n in graph.nodes if not n.startswith("__") and n not in HOLDER_NODES]


def with_lease(config: RunnableConfig, epoch: int) -> RunnableConfig:
    """Return ``config`` whose checkpoints carry the writer's lease ``epoch`` (the fence)."""
    return {**config, "metadata": {**(config.get("metadata") or {}), LEASE_KEY: epoch}}


class RemoteTasks:
    """Advance task threads on workers; run their merge-queue step here."""

    def __init__(self, home: Home, run_id: str) -> None:
        """Hand the tasks of ``run_id`` to the workers ``home`` reaches."""
        self.home, self.run_id = home, run_id

    async def __call__(
        self,
        graph: TaskGraph,
        task_id: str,
        inp: Any,
        config: RunnableConfig,
        context: Any,
        on_chunk: OnChunk,
        modes: list[StreamMode],
    ) -> None:
        """Advance the task until it finishes or waits for a person.

        Raises:
            StateUnreachable: the database stopped answering meanwhile (the run stops, and
                its hold is tried again once the database answers).

        """
        with self._database_named():
            thread = str(config["configurable"]["thread_id"])
            for _ in range(MAX_STRETCHES):
                snap = await graph.aget_state(config)
                if snap.values and inp is None and (not snap.next or snap.interrupts):
                    await self._settled(task_id, thread, snap.values, bool(snap.interrupts))
                    return
                if inp is None and snap.next and snap.next[0] in HOLDER_NODES:
                    await self._hold(graph, task_id, thread, config, context, on_chunk, modes)
                else:
                    start = (snap.config.get("configurable") or {}).get("checkpoint_id")
                    try:
                        await self._hand_out(task_id, thread, inp, config, context, start)
                    except StepLost:
                        continue  # from the thread as it stands now, with the same input
                inp = None
                configurable = dict(config["configurable"])
                configurable.pop("checkpoint_id", None)  # from now on: the thread's latest
                config = {**config, "configurable": configurable}
            raise StepFailed(f"task {task_id} went back and forth {MAX_STRETCHES} times: stopped")

    @contextmanager
    def _database_named(self) -> Iterator[None]:
        """Turn a lost connection to the database into the error that names it."""
        try:
            yield
        except LOST_DATABASE as exc:
            raise lost_connection(redact(self.home.url), exc.__cause__ or exc) from exc

    async def _settled(
        self, task_id: str, thread: str, values: Mapping[str, Any], waiting: bool
    ) -> None:
        state = "waiting" if waiting else str(values.get("status") or "finished")
        await self.home.db.set_task(self.run_id, task_id, thread, state=state, worker=None)

    async def _hand_out(
        self,
        task_id: str,
        thread: str,
        inp: Any,
        config: RunnableConfig,
        context: Any,
        start: str | None,
    ) -> None:
        """Queue the task's next stretch for a worker (or join the one queued) and wait."""
        home = self.home
        job = await open_job(home.app, thread)
        if job is None:
            row = await home.db.task(self.run_id, task_id)
            configurable = {
                k: v for k, v in config["configurable"].items() if isinstance(v, str | int)
            }
            job = await defer_advance(
                home.app,
                thread,
                run_id=self.run_id,
                task_id=task_id,
                start=start,
                snapshot=(row or {}).get("snapshot"),
                inp=encode_input(inp),
                configurable=configurable,
                run_context={k: v for k, v in asdict(context).items() if k != "workspace"},
            )
            await home.db.set_task(self.run_id, task_id, thread, state="queued", job_id=job)
        await self._wait_step(task_id, thread, job)

    async def _wait_step(self, task_id: str, thread: str, job: int) -> None:
        """Wait for the step ``job``: its row, written under the lease, says how it ended.

        The job's own status can be changed by a try given up for dead (procrastinate marks
        the row it shares with its successor): it is trusted once the thread's lease holder
        is silent too, or has said nothing of the step for a stall timeout after it ended (a
        try that ended without a word: cancelled, or its last write lost with the database).
        Then the step is lost, and handed out again.
        """
        home = self.home
        ended: float | None = None
        while True:
            row = await home.db.task(self.run_id, task_id) or {}
            if row.get("job_id") == job and row.get("state") == "stepped":
                ws = await home.workspace(self.run_id)  # its model calls count for the run
                await asyncio.to_thread(ledger_at(ws.meta).add_calls, row.get("usage") or [])
                return
            if row.get("job_id") == job and row.get("state") == "failed":
                raise StepFailed(f"task {task_id}'s step on a worker failed: {row.get('error')}")
            status = await home.app.job_manager.get_job_status_async(job)
            ended = (ended or time.monotonic()) if status in ENDED else None
            if ended is not None and (
                time.monotonic() - ended > home.stall
                or not await home.db.lease_alive(thread, home.stall)
            ):
                if status == Status.FAILED:
                    error = row.get("error") or f"its job {job} failed"
                    await home.db.set_task(self.run_id, task_id, thread, state="failed")
                    raise StepFailed(f"task {task_id}'s step on a worker failed: {error}")
                raise StepLost(f"task {task_id}'s step {job} ended {status.value} unrecorded")
            await asyncio.sleep(POLL)

    async def _hold(
        self,
        graph: TaskGraph,
        task_id: str,
        thread: str,
        config: RunnableConfig,
        context: Any,
        on_chunk: OnChunk,
        modes: list[StreamMode],
    ) -> None:
        """Run the task's merge-queue step in this process, on the snapshot a worker left."""
        home, ws = self.home, await self.home.workspace(self.run_id)
        row = await home.db.task(self.run_id, task_id)
        await offload(GIT, central.load_task, ws, self.run_id, task_id, (row or {}).get("snapshot"))
        run_lease = RUN_LEASE.get()
        under = (self.run_id, run_lease) if run_lease is not None else None
        epoch = await home.db.take_lease(thread, home.name, under=under)
        await home.db.set_task(self.run_id, task_id, thread, state="merging")
        stream = graph.astream(
            None,
            with_lease(config, epoch),
            stream_mode=modes,
            context=context,
            interrupt_before=worker_nodes(graph),
        )
        async for mode, chunk in stream:
            on_chunk(mode, chunk)
        if (await graph.aget_state(config)).next:  # back to its fixer: its files go along
            snapshot = await offload(GIT, central.save_task, ws, self.run_id, task_id)
            if not await home.db.set_snapshot(
                self.run_id, task_id, thread, epoch, snapshot, "returned"
            ):
                raise StepFailed(f"task {task_id}'s thread was taken over by another holder")
