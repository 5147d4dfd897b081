"""Task threads: each task of a plan runs its own compiled graph on its own checkpointed thread.

A task's thread id is derived from the run's thread, the plan version and the task id, so it
is stable across restarts. What a thread says about its task (not started, resumable,
waiting for a person, finished) is read from its checkpoint, never kept elsewhere: the run's
task records are derived from the threads, and ``records`` is the one place that does it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.pregel import Pregel

from oldnew.graph.state import TaskRecord
from oldnew.schemas import Plan
from oldnew.tracing import task_trace

_NAMESPACE = uuid.UUID("5b0c1b56-6a43-4c5e-9d0b-0e1d6f0a7c11")
TaskGraph = Pregel[Any, Any, Any, Any]

Stage = Literal["new", "incomplete", "waiting", "finished"]
"""Where a task's thread stands: no checkpoint, resumable, interrupted, or at its end."""


def task_thread_id(run_thread: str, plan_version: int, task_id: str) -> str:
    """Return the thread id of a task's own graph (stable across restarts)."""
    return str(uuid.uuid5(_NAMESPACE, f"{run_thread}/plan-{plan_version}/{task_id}"))


@dataclass
class TaskView:
    """What a task's thread says about it."""

    stage: Stage
    values: dict[str, Any] = field(default_factory=dict)
    question: dict[str, Any] | None = None

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
        plan_version: int,
        saver: BaseCheckpointSaver[Any],
    ) -> None:
        """Address the threads of ``run_thread``'s plan ``plan_version`` on ``saver``."""
        if task_graph.checkpointer is not saver:
            task_graph = task_graph.copy(update={"checkpointer": saver})
        self.graph = task_graph
        self.run_thread, self.plan_version = run_thread, plan_version

    def config(self, task_id: str) -> RunnableConfig:
        """Return the config that runs (or inspects) one task's thread."""
        tid = task_thread_id(self.run_thread, self.plan_version, task_id)
        return task_trace({"configurable": {"thread_id": tid}, "recursion_limit": 200}, task_id)

    async def inspect(self, task_id: str) -> TaskView:
        """Read a task's thread: not started, incomplete, waiting on a question, or finished."""
        snap = await self.graph.aget_state(self.config(task_id))
        if not snap.values:
            return TaskView("new")
        if snap.interrupts:
            question = snap.interrupts[0].value
            return TaskView(
                "waiting",
                dict(snap.values),
                question if isinstance(question, dict) else {"title": str(question)},
            )
        if not snap.tasks:
            return TaskView("finished", dict(snap.values))
        return TaskView("incomplete", dict(snap.values))

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
