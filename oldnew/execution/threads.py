"""Task threads: each task of a plan runs its own compiled graph on its own checkpointed thread.

A task's thread id is derived from the run's thread, the plan's lineage key
(``execution.lineage``: the run checkpoint the plan's first ``execute`` ran from) and the task
id, so it is stable across restarts, new for a fork of the run, and never shared by two runs
on one thread. What a thread says about its task (not started, resumable, waiting for a
person, finished) is read from its checkpoint, never kept elsewhere: the run's task records
are derived from the threads, and ``records`` is the one place that does it.

A fork of the run at a point a task's thread has moved past (a pause answered differently)
resumes that task from the checkpoint the run had left it at (``forks``): LangGraph branches
the task's thread there.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.pregel import Pregel
from langgraph.types import StreamMode

from oldnew.graph.state import TaskRecord
from oldnew.schemas import Plan
from oldnew.tracing import task_trace

_NAMESPACE = uuid.UUID("5b0c1b56-6a43-4c5e-9d0b-0e1d6f0a7c11")
TaskGraph = Pregel[Any, Any, Any, Any]

Stage = Literal["new", "incomplete", "waiting", "finished"]
"""Where a task's thread stands: no checkpoint, resumable, interrupted, or at its end."""


STEP_KEY = "oldnew_step"
"""The configurable key (kept in each task checkpoint's metadata) naming the run checkpoint
whose ``execute`` drove the task: a re-run of that step goes on, a fork branches."""


LEGACY = "plan-"
"""The lineage keys of runs saved before lineages (``plan-<version>``): their task threads
keep the ids they were given then."""


OnChunk = Callable[[str, Any], None]
"""Told each (stream mode, chunk) a task's run streams: ``custom`` events and ``updates``."""


class TaskRunner(Protocol):
    """What advances a task's thread from ``inp`` until it finishes or waits.

    :func:`run_here` runs it in this process; ``oldnew.cluster.remote`` hands its steps to
    workers on other machines.
    """

    def __call__(
        self,
        graph: TaskGraph,
        task_id: str,
        inp: Any,
        config: RunnableConfig,
        context: Any,
        on_chunk: OnChunk,
        modes: list[StreamMode],
    ) -> Awaitable[None]:
        """Advance ``task_id``'s thread (``config``) from ``inp``, streaming ``modes``."""
        ...


async def run_here(
    graph: TaskGraph,
    task_id: str,
    inp: Any,
    config: RunnableConfig,
    context: Any,
    on_chunk: OnChunk,
    modes: list[StreamMode],
) -> None:
    """Run the task's graph in this process, streaming its events to ``on_chunk``."""
    async for mode, chunk in graph.astream(inp, config, stream_mode=modes, context=context):
        on_chunk(mode, chunk)


def task_thread_id(run_thread: str, lineage: str, task_id: str, start: str = "") -> str:
    """Return the thread id of a task's own graph (stable across restarts of one lineage).

    ``start`` is the run checkpoint whose ``execute`` first started the task: a fork of the
    run at a point the task had not started yet gives it a thread of its own, not the one
    another branch of the run finished it on.
    """
    name = task_id if not start or lineage.startswith(LEGACY) else f"{task_id}@{start}"
    return str(uuid.uuid5(_NAMESPACE, f"{run_thread}/{lineage}/{name}"))


def started_threads(values: Mapping[str, Any], lineage: str) -> dict[str, str]:
    """Return task id -> thread of the tasks a run's state says started on ``lineage``."""
    known: Mapping[str, Any] = values.get("lineage") or {}
    if known.get("key") != lineage:
        return {}
    tasks: Mapping[str, Mapping[str, Any]] = values.get("tasks") or {}
    return {t: str(r["thread"]) for t, r in tasks.items() if r.get("head") and r.get("thread")}


@dataclass
class TaskView:
    """What a task's thread says about it."""

    stage: Stage
    values: dict[str, Any] = field(default_factory=dict)
    question: dict[str, Any] | None = None
    thread: str = ""
    head: str | None = None
    """The checkpoint the thread stands at (None: no checkpoint yet)."""
    next: tuple[str, ...] = ()

    @property
    def question_id(self) -> str | None:
        """Return the id of the question the task waits on, if it waits."""
        return (self.question or {}).get("id") if self.stage == "waiting" else None


class TaskThreads:
    """The task threads of one run's plan, on one saver (passed explicitly, never borrowed)."""

    def __init__(
        self,
        task_graph: TaskGraph,
        run_thread: str,
        lineage: str,
        saver: BaseCheckpointSaver[Any],
        *,
        step: str = "",
        at: str = "",
        started: Mapping[str, str] | None = None,
    ) -> None:
        """Address the threads of ``run_thread``'s plan of lineage ``lineage`` on ``saver``.

        ``step`` is the run checkpoint the caller runs from (``execute``'s), kept in the
        metadata of every checkpoint a task writes; "" when it only reads, from the run's
        checkpoint ``at``. ``started`` are the threads of the tasks the run's state says
        started (``started_threads``); any other task is named by the step that starts it.
        """
        if task_graph.checkpointer is not saver:
            task_graph = task_graph.copy(update={"checkpointer": saver})
        self.graph = task_graph
        self.run_thread, self.lineage, self.step = run_thread, lineage, step
        self.start = step or at
        self.started = dict(started or {})
        self.forks: dict[str, str] = {}
        """Task id -> the checkpoint its next run starts from (a fork of its thread)."""

    def thread_id(self, task_id: str) -> str:
        """Return the id of one task's thread."""
        known = self.started.get(task_id)
        return known or task_thread_id(self.run_thread, self.lineage, task_id, self.start)

    def config(self, task_id: str) -> RunnableConfig:
        """Return the config that runs (or inspects) one task's thread."""
        configurable: dict[str, Any] = {"thread_id": self.thread_id(task_id)}
        if self.step:
            configurable[STEP_KEY] = self.step
        if task_id in self.forks:
            configurable["checkpoint_id"] = self.forks[task_id]
        return task_trace({"configurable": configurable, "recursion_limit": 200}, task_id)

    async def fork_moved(self, task_id: str, head: str | None) -> bool:
        """Resume ``task_id`` from ``head`` if a later step of another lineage moved its thread.

        The thread's latest checkpoint differs from ``head`` (where the run's state left it)
        when the run was forked at a point the task has moved past since, or when this very
        step ran before and stopped (a crash): only the first is branched. Returns whether the
        task now runs from ``head``.
        """
        if not head or task_id in self.forks:
            return task_id in self.forks
        thread: RunnableConfig = {"configurable": {"thread_id": self.thread_id(task_id)}}
        latest = await self.graph.aget_state(thread)
        at = (latest.config.get("configurable") or {}).get("checkpoint_id")
        if at in (None, head) or (latest.metadata or {}).get(STEP_KEY) == self.step:
            return False
        self.forks[task_id] = head
        return True

    async def inspect(self, task_id: str) -> TaskView:
        """Read a task's thread: not started, incomplete, waiting on a question, or finished."""
        snap = await self.graph.aget_state(self.config(task_id))
        thread = self.thread_id(task_id)
        if not snap.values:
            return TaskView("new", thread=thread)
        head = (snap.config.get("configurable") or {}).get("checkpoint_id")
        values, question = dict(snap.values), None
        stage: Stage = "incomplete"
        if snap.interrupts:
            asked = snap.interrupts[0].value
            stage, question = "waiting", asked if isinstance(asked, dict) else {"title": str(asked)}
        elif not snap.tasks:
            stage = "finished"
        return TaskView(stage, values, question, thread, head, tuple(snap.next))

    async def next_nodes(self, task_id: str) -> tuple[str, ...]:
        """Return the nodes a task's thread runs next (empty when it is not running)."""
        return tuple((await self.graph.aget_state(self.config(task_id))).next)


def record_of(task_id: str, title: str, view: TaskView) -> TaskRecord:
    """Summarise a task's thread as the run's record of it."""
    v = view.values
    status = {"new": "pending", "incomplete": "running", "waiting": "waiting"}.get(view.stage)
    if status is None:
        status = "done" if v.get("status") == "done" else "blocked"
    evidence = v.get("evidence") or [None]
    return {
        "id": task_id,
        "title": title,
        "status": status,  # type: ignore[typeddict-item]
        "commit": v.get("commit"),
        "fix_rounds": v.get("fix_rounds_total", 0),
        "evidence": evidence[-1],
        "blocker": v.get("blocker"),
        "question": view.question_id,
        "limitation": v.get("limitation"),
        "stand_in": v.get("stand_in"),
        "files": list(v.get("files") or []),
        "thread": view.thread,
        "head": view.head,
        "node": view.next[0] if view.next and status in ("running", "waiting") else None,
    }


def reconcile(task_id: str, title: str, view: TaskView, known: Mapping[str, Any]) -> TaskRecord:
    """Return a task's record: its thread's word, completed by what only the run knows.

    The run's own record (``known``) says why a task that never ran, or whose thread stopped
    on an error it does not record, is blocked (a blocked dependency, a budget stop, a crash),
    and which revision superseded it after a change request.
    """
    record = record_of(task_id, title, view)
    if view.stage in ("new", "incomplete") and known.get("status") == "blocked":
        record |= {
            "status": "blocked",
            "blocker": known.get("blocker"),
            "limitation": known.get("limitation"),
        }
    if known.get("superseded_by"):
        record["superseded_by"] = known["superseded_by"]
    return record


async def records(
    threads: TaskThreads, plan: Plan, known: Mapping[str, Mapping[str, Any]]
) -> tuple[dict[str, TaskView], dict[str, TaskRecord]]:
    """Read every task's thread; return the views and the reconciled records."""
    views: dict[str, TaskView] = {}
    out: dict[str, TaskRecord] = {}
    for t in plan.tasks:
        views[t.id] = await threads.inspect(t.id)
        out[t.id] = reconcile(t.id, t.title, views[t.id], known.get(t.id) or {})
    return views, out
