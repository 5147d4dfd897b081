"""A worker: takes runs to hold and task steps to run, on any machine that reaches the database.

``oldnew worker --state URL --repo URL-OR-PATH [--concurrency N]`` starts one. It keeps a
clone of the central repository per run it works on, under its own folder (``--dir``), and
runs procrastinate's worker on two queues of its version: up to N task steps at once, and up
to ``runs`` runs held at once (a run's holder waits on the steps it hands out, so it has
slots of its own: a worker never waits for itself).

Beside the jobs it beats (``oldnew_workers``: heartbeat, load) and sweeps for the jobs of
workers that went silent (``jobs.retry_stalled``).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableConfig

from oldnew.budget.ledger import ledger_at
from oldnew.cluster import central
from oldnew.cluster.db import RUN_LEASE, ClusterDB, StaleWriter, host
from oldnew.cluster.jobs import (
    STALL_SECONDS,
    STEP_ATTEMPTS,
    apply_schema,
    make_app,
    retry_stalled,
    runs_queue,
    tasks_queue,
    transient,
)
from oldnew.cluster.jobs import version as oldnew_version
from oldnew.cluster.remote import HOLDER_NODES, RemoteTasks, with_lease
from oldnew.cluster.state import State, open_state
from oldnew.context import Context
from oldnew.errors import UsageError, WorkspaceError
from oldnew.execution.pools import GIT, offload
from oldnew.execution.threads import TaskGraph
from oldnew.graph.build import build_task_graph
from oldnew.hitl import inbox
from oldnew.nodes.common import WORKSPACE_HERE
from oldnew.workspace import Workspace

log = logging.getLogger(__name__)

LETTERS_POLL = 1.0
SETTLED = ("done", "blocked")
"""The statuses of a task that ended (its row is brought up to them at the hold's end)."""
STOP_GRACE = 5.0
"""Seconds a stopped worker lets its jobs finish before it aborts them (they are retried)."""


def load_build(spec: str | None) -> dict[str, Any]:
    """Return ``build_graph``'s keyword arguments from ``module:function`` (None: none).

    The function returns a mapping with any of ``models`` and ``gates``: how a test or a
    benchmark gives every worker the same stand-ins.
    """
    if not spec:
        return {}
    module, _, name = spec.partition(":")
    try:
        made = getattr(importlib.import_module(module), name)()
    except (ImportError, AttributeError, ValueError) as exc:
        raise UsageError(f"--build {spec}: cannot load it ({exc}); give module:function") from exc
    if not isinstance(made, Mapping):
        raise UsageError(f"--build {spec} returned {type(made).__name__}, not a mapping")
    return dict(made)


class Home:
    """What one worker process works with: the database, the central repository, its clones."""

    def __init__(
        self,
        *,
        url: str,
        repo: str,
        root: Path,
        name: str,
        concurrency: int,
        runs: int,
        stall: float,
        build: Mapping[str, Any],
    ) -> None:
        """Prepare a worker called ``name`` (open it with :meth:`opened`)."""
        self.url, self.repo, self.root, self.name = url, repo, root, name
        self.concurrency, self.runs, self.stall = concurrency, runs, stall
        self.build = dict(build)
        self.app = make_app(url)
        self.running = 0
        self._clones: dict[str, Workspace] = {}
        self._clone_lock = asyncio.Lock()
        self._state: State | None = None
        self._graph: TaskGraph | None = None
        self._db: ClusterDB | None = None

    @property
    def db(self) -> ClusterDB:
        """The rows of oldnew's own in the database."""
        assert self._db is not None, "open the home first (Home.opened)"
        return self._db

    @property
    def task_graph(self) -> TaskGraph:
        """The task graph, compiled on the database's checkpointer and store."""
        assert self._graph is not None, "open the home first (Home.opened)"
        return self._graph

    @asynccontextmanager
    async def opened(self) -> AsyncIterator[Home]:
        """Open the database (checking and setting up its schema) and the job queue."""
        async with AsyncExitStack() as stack:
            self._state = await stack.enter_async_context(
                open_state(self.url, application_name=f"oldnew-worker {self.name}")
            )
            self._db = ClusterDB(self._state.pool)
            await self._db.apply_schema()
            await stack.enter_async_context(self.app.open_async())
            await apply_schema(self.app)
            graph = await asyncio.to_thread(
                build_task_graph, models=self.build.get("models"), gates=self.build.get("gates")
            )
            self._graph = graph.copy(
                update={"checkpointer": self._state.saver, "store": self._state.store}
            )
            yield self

    # -- clones ------------------------------------------------------------------------------

    async def workspace(self, run_id: str, *, fresh: bool = False) -> Workspace:
        """Return this worker's clone of the run, made on first use.

        ``fresh``: main brought up to the central one first (a step's start, a hold's).
        """
        async with self._clone_lock:
            ws = self._clones.get(run_id)
            if ws is None:
                row = await self.db.run(run_id)
                if row is None:
                    raise WorkspaceError(f"run {run_id} is not in the database {self.url}")
                ws = await asyncio.to_thread(
                    Workspace.clone, self.root / run_id, self.repo, row["record"], row["files"]
                )
                # a clone this machine had before: what a kill of its worker left in git
                await asyncio.to_thread(ws.recover)
                self._clones[run_id] = ws
                return ws
        if fresh:
            await offload(GIT, ws.sync_main)
        return ws

    # -- jobs ----------------------------------------------------------------------------------

    async def drive(self, run_id: str, job: tuple[int, int], last_try: bool = True) -> None:
        """Hold the run: its graph, on this clone, until it ends or waits for a person.

        A failure is ``retrying`` (the job is tried again) until the ``last_try``, which
        leaves the run ``interrupted``, resumable with ``oldnew resume --run``; a lost
        database is always ``retrying`` (``jobs.transient``).
        """
        from oldnew.runs.commands import resume_run, submit_feedback  # (they import the cluster)

        def failed(exc: BaseException) -> str:
            return "interrupted" if last_try and not transient(exc) else "retrying"

        try:
            ws = await self.workspace(run_id, fresh=True)
        except Exception as exc:
            await self.db.set_run(run_id, failed(exc), summary=_failure(exc))
            raise
        await self.db.set_run(run_id, "running", holder=self.name)
        lease = RUN_LEASE.set(await self.db.take_lease(run_id, self.name, job=job))
        ledger = ledger_at(ws.meta)  # the run's spend so far, as its last holder left it
        await asyncio.to_thread(ledger.take_over, str((await self.db.run(run_id) or {})["usage"]))
        letters = asyncio.create_task(self._letters(run_id, ws))
        token = WORKSPACE_HERE.set(str(ws.root))
        self.running += 1
        build = {"gates": self.build.get("gates"), "runner": RemoteTasks(self, run_id)}
        models = self.build.get("models")
        try:
            outcome = None
            for text in await self._letters_once(run_id, ws, feedback_here=False):
                outcome = await submit_feedback(  # a run at rest: feedback reopens its work
                    ws.root, text, models=models, state=self.url, build=build
                )
            if outcome is None or outcome.status in ("running", "interrupted"):
                outcome = await resume_run(ws.root, models=models, state=self.url, build=build)
            await offload(GIT, ws.publish_head)  # what the holder committed itself
        except Exception as exc:
            await self.db.set_run(run_id, failed(exc), summary=_failure(exc))
            raise
        finally:
            self.running -= 1
            WORKSPACE_HERE.reset(token)
            RUN_LEASE.reset(lease)
            letters.cancel()
            await self.db.save_usage(run_id, await asyncio.to_thread(ledger.text))
        ended = {
            str(t["id"]): str(t["status"]) for t in outcome.tasks if t.get("status") in SETTLED
        }
        await self.db.settle_tasks(run_id, ended)
        await self.db.set_run(run_id, outcome.status, summary=outcome.to_dict())

    async def _letters(self, run_id: str, ws: Workspace) -> None:
        """Bring answers and feedback given from any machine into the run's inbox here.

        And keep the run's spend in the database every few polls, so that a holder killed
        mid-run loses little of it.
        """
        polls = 0
        while True:
            await asyncio.sleep(LETTERS_POLL)
            polls += 1
            try:
                await self._letters_once(run_id, ws)
                if polls % 5 == 0:
                    text = await asyncio.to_thread(ledger_at(ws.meta).text)
                    await self.db.save_usage(run_id, text)
            except Exception as exc:  # noqa: BLE001 - the next poll tries again
                log.warning("could not read the letters of run %s: %s", run_id, exc)

    async def _letters_once(
        self, run_id: str, ws: Workspace, *, feedback_here: bool = True
    ) -> list[str]:
        """Post the run's new letters to its inbox here; return the feedback not posted.

        ``feedback_here`` False (a hold's start): feedback is returned, to be handed to the
        run as ``oldnew feedback`` hands it (a run at rest takes it only so).
        """
        kept: list[str] = []
        for letter in await self.db.take_letters(run_id):
            answers = {str(k): str(v) for k, v in (letter["answers"] or {}).items()}
            feedback = letter["feedback"]
            if feedback and not feedback_here:
                kept.append(str(feedback))
                feedback = None
            if answers or feedback:
                await asyncio.to_thread(inbox.post, ws, answers, feedback)
        return kept

    async def advance(
        self,
        *,
        job_id: int,
        attempts: int,
        thread_id: str,
        run_id: str,
        task_id: str,
        start: str | None,
        snapshot: str | None,
        inp: Any,
        configurable: dict[str, Any],
        run_context: dict[str, Any],
    ) -> None:
        """Run one stretch of a task, from where the holder handed it out, up to its merge."""
        ws = await self.workspace(run_id, fresh=True)
        epoch = await self.db.take_lease(thread_id, self.name, job=(job_id, attempts))
        await self.db.set_task(
            run_id, task_id, thread_id, worker=self.name, state="running", job_id=job_id
        )
        self.running += 1
        token = WORKSPACE_HERE.set(str(ws.root))
        ledger = ledger_at(ws.meta)
        mark = await asyncio.to_thread(ledger.mark)
        try:
            await offload(GIT, central.load_task, ws, run_id, task_id, snapshot)
            config, inp = await self._from(thread_id, start, inp, configurable)
            ctx = Context(**run_context, workspace=str(ws.root))
            stream = self.task_graph.astream(
                inp,
                with_lease(config, epoch),
                context=ctx,
                stream_mode=["custom"],
                interrupt_before=sorted(HOLDER_NODES),
            )
            async for _ in stream:
                pass
            saved = await offload(GIT, central.save_task, ws, run_id, task_id)
            usage = await asyncio.to_thread(ledger.calls_since, mark, task_id)
            stepped = await self.db.set_snapshot(
                run_id, task_id, thread_id, epoch, saved, "stepped", usage
            )
            if not stepped:
                raise StaleWriter(f"task {task_id}'s thread was taken over while {self.name} ran")
        except StaleWriter:
            raise  # its successor owns the task's row now
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:2000]
            final = attempts + 1 >= STEP_ATTEMPTS and not transient(exc)
            await self.db.fail_step(run_id, task_id, thread_id, epoch, error, final=final)
            raise
        finally:
            self.running -= 1
            WORKSPACE_HERE.reset(token)

    async def _from(
        self, thread_id: str, start: str | None, inp: Any, configurable: dict[str, Any]
    ) -> tuple[RunnableConfig, Any]:
        """Return where a stretch starts: its checkpoint, so that a try again redoes it.

        A new task's first try has no checkpoint to start from; a later try of it starts
        from the thread's input checkpoint, which the first try wrote.
        """
        configurable = {**configurable, "thread_id": thread_id}
        configurable.pop("checkpoint_id", None)
        if start is None:
            first = await self._input_checkpoint(thread_id)
            if first is not None:
                start, inp = first, None
        if start is not None:
            configurable["checkpoint_id"] = start
        return {"configurable": configurable, "recursion_limit": 200}, inp

    async def _input_checkpoint(self, thread_id: str) -> str | None:
        assert self._state is not None
        found: str | None = None
        async for item in self._state.saver.alist({"configurable": {"thread_id": thread_id}}):
            if (item.metadata or {}).get("source") == "input":
                found = str(item.config["configurable"]["checkpoint_id"])
        return found

    # -- the worker's life ---------------------------------------------------------------------

    async def serve(self, stop: asyncio.Event) -> None:
        """Take jobs until ``stop`` is set; beat and sweep meanwhile."""
        from oldnew.cluster.runs import waiting_elsewhere  # it imports this module

        for line in await waiting_elsewhere(self.db, oldnew_version()):
            log.warning("worker %s: %s", self.name, line)  # once, at its start
        workers = [
            asyncio.create_task(self._queue(stop, tasks_queue(), self.concurrency, "tasks")),
            asyncio.create_task(self._queue(stop, runs_queue(), self.runs, "runs")),
        ]
        keeper = asyncio.create_task(self._keep(stop))
        await stop.wait()
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        keeper.cancel()
        await asyncio.gather(keeper, return_exceptions=True)
        await self.db.stopped(self.name)

    async def _queue(self, stop: asyncio.Event, queue: str, concurrency: int, kind: str) -> None:
        """Take the jobs of ``queue`` until ``stop``; start again when procrastinate stops.

        procrastinate's worker stops itself when its heartbeat or its listener loses the
        database; this process would then beat on and take nothing. It starts it again,
        every quarter stall timeout while the database stays away.
        """
        while not stop.is_set():
            try:
                await self.app.run_worker_async(
                    queues=[queue],
                    concurrency=concurrency,
                    name=f"{self.name}/{kind}",
                    additional_context={"home": self},
                    install_signal_handlers=False,
                    fetch_job_polling_interval=1.0,
                    update_heartbeat_interval=self.stall / 4,
                    # pruned (its jobs then count as stalled at once) only well after it went
                    # silent
                    stalled_worker_timeout=2 * self.stall,
                    # stopped: jobs still running after this are aborted, to be retried
                    # elsewhere
                    shutdown_graceful_timeout=STOP_GRACE,
                )
                why = "it stopped (its database connection was lost)"
            except Exception as exc:  # noqa: BLE001 - the database is away: try again
                cause = exc.__cause__ or exc  # procrastinate's ConnectorException says little
                why = f"it failed ({type(cause).__name__}: {' '.join(str(cause).split())})"
            if stop.is_set():
                return
            log.warning(
                "worker %s: the %s queue's worker is started again: %s", self.name, kind, why
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.stall / 4)

    async def _keep(self, stop: asyncio.Event) -> None:
        """Beat (``oldnew_workers``) and sweep for stalled jobs, every quarter stall timeout."""
        while not stop.is_set():
            try:
                await self.db.beat(
                    self.name,
                    os.getpid(),
                    oldnew_version(),
                    self.concurrency,
                    self.running,
                    self.stall,
                )
                again = await retry_stalled(self.app, self.stall)
                if again:
                    log.warning("jobs of silent workers queued again: %s", again)
            except Exception as exc:  # noqa: BLE001 - a dropped connection: try next beat
                log.warning("worker %s could not beat: %s", self.name, exc)
            await asyncio.sleep(self.stall / 4)


def _failure(exc: BaseException) -> dict[str, Any]:
    """Return what a run's row says of the error that stopped its holder (it is retried)."""
    return {"error": f"{type(exc).__name__}: {exc}"[:2000]}


def _dump_tasks() -> None:
    """Print where every task of the worker's event loop waits (``kill -USR1 PID``)."""
    for task in asyncio.all_tasks():
        print(f"--- {task.get_name()}", file=sys.stderr)
        task.print_stack(limit=12, file=sys.stderr)
    sys.stderr.flush()


def default_name() -> str:
    """Return a worker's name when none is given: this machine's name and the process id."""
    return f"{host()}-{os.getpid()}"


async def run_worker(
    *,
    url: str,
    repo: str,
    root: Path,
    name: str | None = None,
    concurrency: int = 2,
    runs: int = 2,
    stall: float = STALL_SECONDS,
    build: Mapping[str, Any] | None = None,
    ready: Callable[[Home], None] | None = None,
) -> None:
    """Serve as a worker until SIGTERM or SIGINT (finishing nothing half-way: jobs retry)."""
    home = Home(
        url=url,
        repo=repo,
        root=root,
        name=name or default_name(),
        concurrency=concurrency,
        runs=runs,
        stall=stall,
        build=build or {},
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, _dump_tasks)
    async with home.opened():
        if ready is not None:
            ready(home)
        await home.serve(stop)
