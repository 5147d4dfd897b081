"""Execution: run every task of the plan on its own thread (``oldnew.execution``).

An adapter between the run's graph and the scheduler: it opens the task threads on the run's
saver, runs the scheduler, and turns what happened into the run's state update (task records,
questions, approvals due, requests for the planner, budget stops, feedback).
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.runtime import Runtime

from oldnew import milestones
from oldnew.checkpoints import CheckpointSaver
from oldnew.context import Context
from oldnew.execution import pools
from oldnew.execution.lineage import lineage_of, step_of
from oldnew.execution.scheduler import DEFAULT_AGENT_CAP, Scheduler
from oldnew.execution.threads import TaskGraph, TaskRunner, TaskThreads, run_here, started_threads
from oldnew.graph.state import RunState
from oldnew.hitl import approvals
from oldnew.hitl.reconcile import questions_update
from oldnew.host import context_of
from oldnew.nodes.common import arun_workspace
from oldnew.nodes.human import remember_answers
from oldnew.recovery.degrade import critical_tasks
from oldnew.schemas import Plan, Scope
from oldnew.workspace import Workspace


async def execute(
    state: RunState,
    runtime: Runtime[Context],
    config: RunnableConfig,
    *,
    task_graph: TaskGraph,
    saver: BaseCheckpointSaver[Any] | None = None,
    runner: TaskRunner = run_here,
) -> dict[str, Any]:
    """Run every task whose dependencies are done, up to max_agents at once.

    ``runner`` advances each task's thread: in this process, or on workers.

    ``saver`` is the checkpointer the graph was built with. A graph built without one (a
    LangGraph server or a host graph supplies the run's) keeps its task threads in the
    workspace's own SQLite file: LangGraph lends a nested run its parent's saver, but not to
    the state reads that tell where each task stands.
    """
    ctx = context_of(runtime.context)
    ws = await arun_workspace(ctx, config)
    pools.configure(ctx.gate_slots)
    async with AsyncExitStack() as stack:
        own: BaseCheckpointSaver[Any] = (
            saver
            if saver is not None
            else await stack.enter_async_context(
                CheckpointSaver.from_conn_string(str(ws.checkpoints))
            )
        )
        return await _execute(state, runtime, config, ctx, ws, task_graph, own, runner)


async def _execute(
    state: RunState,
    runtime: Runtime[Context],
    config: RunnableConfig,
    ctx: Context,
    ws: Workspace,
    task_graph: TaskGraph,
    saver: BaseCheckpointSaver[Any],
    runner: TaskRunner,
) -> dict[str, Any]:
    if runtime.store is not None and task_graph.store is not runtime.store:
        # Task threads are separate runs: lend them the run's store (memory) explicitly.
        task_graph = task_graph.copy(update={"store": runtime.store})
    plan = Plan.model_validate(state["plan"])
    run_thread = str(config["configurable"]["thread_id"])
    lineage = lineage_of(state, runtime)
    started = started_threads(state, lineage["key"])
    threads = TaskThreads(
        task_graph, run_thread, lineage["key"], saver, step=step_of(runtime), started=started
    )
    scope = Scope.model_validate(state["scope"]) if state.get("scope") else None
    # Later phases wait for the MVP: its milestone checked on main, then a person's preview.
    milestone_hold = milestones.holds_later_phases(state, plan)
    approval_hold = approvals.holds_for_mvp(state, plan, ctx.approvals)
    scheduler = Scheduler(
        state,
        plan,
        threads,
        ctx,
        ws,
        agents=ctx.max_agents
        or int((state.get("complexity") or {}).get("agents") or DEFAULT_AGENT_CAP),
        critical=critical_tasks(plan, scope),
        hold_for_mvp=milestone_hold or approval_hold,
        runner=runner,
    )
    await scheduler.load()
    await scheduler.run()
    if scheduler.answered_now:
        answered = {q: {"answer": v["answer"]} for q, v in scheduler.answered_now.items()}
        await remember_answers(state, runtime, config, scheduler.answered_now, answered)
    statuses = {t: str(r["status"]) for t, r in scheduler.records.items()}
    done = {t: r.get("commit") for t, r in scheduler.records.items() if r["status"] == "done"}
    review = approvals.due_review(
        {**state, "questions": scheduler.questions},
        plan,
        done,
        spec=ctx.approvals,
        yes=ctx.yes,
        hold_for_mvp=approval_hold and not milestone_hold,
        settled=not scheduler.requests,
    )
    questions = questions_update(
        plan,
        scheduler.views,
        statuses,
        scheduler.questions,
        answered_now=scheduler.answered_now,
        with_planner=set(scheduler.requests),
    )
    return {
        "lineage": lineage,
        "tasks": scheduler.records,
        "questions": {**questions, **review.get("questions", {})},
        "approvals": review.get("approvals", {}),
        "replan": scheduler.replan_requests(),
        "notices": scheduler.notices,
        "budget_stops": scheduler.stops,
        "feedback": scheduler.feedback,
    }
