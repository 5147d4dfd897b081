"""Execution: an event-driven scheduler over per-task graphs, each on its own thread.

LangGraph's supersteps are a barrier: with ``Send``, a task's successor waits for the slowest
sibling. Here each task is its own compiled graph, run on its own checkpointed thread, and a
task starts the moment its own dependencies are done (at most ``max_agents`` at once).

The node is idempotent: on every entry it rebuilds its view from the task threads (no
checkpoint: not started; interrupted: waiting for a person; no next tasks: finished; else:
resume where it stopped), so a run killed at any point resumes without redoing finished work.
"""

from __future__ import annotations

import asyncio
import traceback
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from langchain_core.runnables import RunnableConfig
from langgraph.config import get_stream_writer
from langgraph.pregel import Pregel
from langgraph.runtime import Runtime
from langgraph.types import Command

from oldnew.context import Context
from oldnew.errors import ConfigurationError
from oldnew.graph.state import RunState, TaskRecord, TaskState
from oldnew.nodes.common import emit, run_workspace
from oldnew.schemas import Plan, Question

_NAMESPACE = uuid.UUID("5b0c1b56-6a43-4c5e-9d0b-0e1d6f0a7c11")
CHECKPOINTER_KEY = "__pregel_checkpointer"

Phase = Literal["new", "incomplete", "waiting", "finished"]


def task_thread_id(run_thread: str, plan_version: int, task_id: str) -> str:
    """Return the thread id of a task's own graph (stable across restarts)."""
    return str(uuid.uuid5(_NAMESPACE, f"{run_thread}/plan-{plan_version}/{task_id}"))


def task_config(saver: Any, run_thread: str, plan_version: int, task_id: str) -> RunnableConfig:
    """Return the config that runs (or inspects) one task's thread on the run's saver."""
    return {
        "configurable": {
            "thread_id": task_thread_id(run_thread, plan_version, task_id),
            CHECKPOINTER_KEY: saver,
        },
        "recursion_limit": 200,
    }


@dataclass
class TaskView:
    """What a task's thread says about it."""

    phase: Phase
    values: dict[str, Any] = field(default_factory=dict)
    question: dict[str, Any] | None = None


async def inspect_task(task_graph: Pregel, config: RunnableConfig) -> TaskView:
    """Read a task's thread: not started, incomplete, waiting on a question, or finished."""
    snap = await task_graph.aget_state(config)
    if not snap.values:
        return TaskView("new")
    if snap.interrupts:
        question = snap.interrupts[0].value
        return TaskView("waiting", dict(snap.values), question if isinstance(question, dict)
                        else {"title": str(question)})
    if not snap.tasks:
        return TaskView("finished", dict(snap.values))
    return TaskView("incomplete", dict(snap.values))


def record_of(task_id: str, title: str, view: TaskView) -> TaskRecord:
    """Summarise a task's thread as the run's record of it."""
    v = view.values
    status = {"new": "pending", "incomplete": "running", "waiting": "waiting"}.get(view.phase)
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
        "question": (view.question or {}).get("id") if view.phase == "waiting" else None,
    }


def decisions_from(questions: dict[str, dict[str, Any]]) -> list[str]:
    """Return the answered questions of the run as short decision lines for the coder."""
    return [
        f"{q['title']} -> {q['answer']}"
        for q in questions.values()
        if q.get("status") == "answered" and q.get("kind") in ("configuration", "design_decision")
    ]


async def execute(
    state: RunState, runtime: Runtime[Context], config: RunnableConfig, *, task_graph: Pregel
) -> dict[str, Any]:
    """Run every task whose dependencies are done, up to max_agents at once."""
    ctx = runtime.context or Context()
    ws = run_workspace(ctx, config)
    saver = config.get("configurable", {}).get(CHECKPOINTER_KEY)
    if saver is None:
        raise ConfigurationError(
            "oldnew's graph needs a checkpointer: compile it with build_graph(checkpointer=...) "
            "or run it inside a LangGraph server"
        )
    run_thread = str(config["configurable"]["thread_id"])
    version = state.get("plan_version", 1)
    plan = Plan.model_validate(state["plan"])
    questions = state.get("questions") or {}
    writer = get_stream_writer()
    titles = {t.id: t.title for t in plan.tasks}
    deps = {t.id: set(t.depends_on) for t in plan.tasks}
    cfgs = {t.id: task_config(saver, run_thread, version, t.id) for t in plan.tasks}
    views = {t.id: await inspect_task(task_graph, cfgs[t.id]) for t in plan.tasks}
    records: dict[str, TaskRecord] = {tid: record_of(tid, titles[tid], v)
                                      for tid, v in views.items()}

    def start_input(tid: str) -> Any:
        view = views[tid]
        if view.phase == "incomplete":
            return None
        if view.phase == "waiting":
            q = questions.get((view.question or {}).get("id", ""))
            return Command(resume=q["answer"]) if q and q["status"] == "answered" else False
        if view.phase == "new" and all(records[d]["status"] == "done" for d in deps[tid]):
            task = next(t for t in plan.tasks if t.id == tid)
            initial: TaskState = {
                "task": task.model_dump(), "workspace": str(ws.root),
                "project": (state.get("scope") or {}).get("title", ""),
                "decisions": decisions_from(questions), "status": "coding",
                "fix_round": 0, "questions_asked": 0,
            }
            return initial
        return False

    async def drive(tid: str, inp: Any) -> TaskView:
        emit(ws, task=tid, node="execute", event="task_started")
        async for chunk in task_graph.astream(inp, cfgs[tid], stream_mode="custom",
                                              context=ctx):
            writer(chunk)
        return await inspect_task(task_graph, cfgs[tid])

    running: dict[asyncio.Task[TaskView], str] = {}
    started: set[str] = set()
    while True:
        for tid in titles:
            if tid in started or len(running) >= ctx.max_agents:
                continue
            blocked_dep = next((d for d in deps[tid] if records[d]["status"] == "blocked"), None)
            if blocked_dep and views[tid].phase == "new":
                records[tid] |= {"status": "blocked",
                                 "blocker": f"depends on {blocked_dep}, which is blocked"}
                started.add(tid)
                continue
            inp = start_input(tid)
            if inp is False:
                continue
            started.add(tid)
            records[tid]["status"] = "running"
            running[asyncio.create_task(drive(tid, inp))] = tid
        if not running:
            break
        finished, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
        for fut in finished:
            tid = running.pop(fut)
            try:
                views[tid] = fut.result()
                records[tid] = record_of(tid, titles[tid], views[tid])
            except Exception as exc:  # noqa: BLE001 - one task's failure must not end the run
                records[tid] |= {"status": "blocked",
                                 "blocker": f"{type(exc).__name__}: {exc}"[:2000]}
                emit(ws, task=tid, node="execute", event="task_failed",
                     error=f"{type(exc).__name__}: {exc}",
                     traceback=traceback.format_exc()[-4000:])
                continue
            emit(ws, task=tid, node="execute", event=f"task_{records[tid]['status']}",
                 commit=records[tid].get("commit"))
    new_questions = {}
    for tid, view in views.items():
        if view.phase == "waiting" and view.question:
            q = Question.model_validate(view.question)
            if q.id not in questions or questions[q.id]["status"] == "pending":
                new_questions[q.id] = q.model_dump()
    return {"tasks": records, "questions": new_questions}
