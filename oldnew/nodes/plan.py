"""Planning: turn the Scope into a validated task graph."""

from __future__ import annotations

from graphlib import CycleError, TopologicalSorter
from typing import Any

from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig
from langgraph.runtime import Runtime

from oldnew.context import Context
from oldnew.errors import ModelOutputError, PathViolation
from oldnew.graph.state import RunState, TaskRecord
from oldnew.models import ModelOverrides, ainvoke_structured, aresolve_model
from oldnew.nodes.common import aemit, arun_workspace
from oldnew.nodes.scope import RETRY_OR_ABORT, output_question
from oldnew.prompts import render
from oldnew.schemas import Plan, Question, Scope
from oldnew.workspace import check_relative_path


def _ancestors(plan: Plan) -> dict[str, set[str]]:
    deps = {t.id: set(t.depends_on) for t in plan.tasks}
    memo: dict[str, set[str]] = {}

    def walk(tid: str) -> set[str]:
        if tid not in memo:
            memo[tid] = set()
            for dep in deps.get(tid, ()):
                memo[tid] |= {dep} | walk(dep)
        return memo[tid]

    for tid in deps:
        walk(tid)
    return memo


def _shape_problems(plan: Plan) -> list[str]:
    problems: list[str] = []
    ids = [t.id for t in plan.tasks]
    for tid in sorted({i for i in ids if ids.count(i) > 1}):
        problems.append(f"task id {tid} is used by more than one task")
    known = set(ids)
    for t in plan.tasks:
        if not t.id.strip() or not t.title.strip():
            problems.append(f"task {t.id!r} has an empty id or title")
        for dep in t.depends_on:
            if dep == t.id:
                problems.append(f"task {t.id} depends on itself")
            elif dep not in known:
                problems.append(f"task {t.id} depends on {dep}, which is not in the plan")
        for path in t.files:
            try:
                check_relative_path(path)
            except PathViolation as exc:
                problems.append(f"task {t.id}: {exc}")
    return problems


def _cycle(plan: Plan) -> str | None:
    known = {t.id for t in plan.tasks}
    try:
        TopologicalSorter({t.id: set(t.depends_on) & known for t in plan.tasks}).prepare()
    except CycleError as exc:
        return " -> ".join(exc.args[1])
    return None


def _ownership_problems(plan: Plan) -> list[str]:
    ancestors = _ancestors(plan)
    owners: dict[str, list[str]] = {}
    for t in plan.tasks:
        for path in t.files:
            owners.setdefault(path, []).append(t.id)
    return [
        f"tasks {a} and {b} both change {path} but neither depends on the other"
        for path, tids in sorted(owners.items())
        for i, a in enumerate(tids)
        for b in tids[i + 1 :]
        if a not in ancestors[b] and b not in ancestors[a]
    ]


def plan_problems(plan: Plan, scope: Scope) -> list[str]:
    """Return every reason the plan cannot be executed as it stands (empty when it can)."""
    problems = _shape_problems(plan)
    cycle = _cycle(plan)
    if cycle:
        return [*problems, f"the dependencies form a cycle: {cycle}"]
    covered = {r for t in plan.tasks for r in t.requirement_ids}
    problems += [
        f"feature {f.id} ({f.title}) is served by no task"
        for f in scope.features
        if f.id not in covered
    ]
    return problems + _ownership_problems(plan)


async def plan(
    state: RunState,
    runtime: Runtime[Context],
    config: RunnableConfig,
    *,
    models: ModelOverrides = None,
) -> dict[str, Any]:
    """Ask the planner for a Plan and check it; a rejected plan goes back with its problems."""
    ctx = runtime.context or Context()
    ws = await arun_workspace(ctx, config)
    scope_obj = Scope.model_validate(state["scope"])
    problems = state.get("plan_problems") or []
    attempts = state.get("plan_attempts", 0)
    await aemit(ws, node="plan", event="started", attempt=attempts + 1)
    messages = [
        SystemMessage(render("plan_system")),
        HumanMessage(render("plan_user", scope=scope_obj, problems=problems)),
    ]
    n_questions = len(state.get("questions") or {})
    try:
        result = await ainvoke_structured(
            await aresolve_model("planner", ctx, models),
            Plan,
            messages,
            method=ctx.structured_output_method,
            retries=ctx.max_output_retries,
        )
    except ModelOutputError as exc:
        q = output_question(f"plan-{n_questions + 1}", "plan", exc)
        await aemit(ws, node="plan", event="escalated", question=q.id)
        return {"questions": {q.id: q.model_dump()}}
    found = plan_problems(result, scope_obj)
    if found:
        await aemit(ws, node="plan", event="rejected", problems=found)
        if attempts + 1 > ctx.max_plan_repairs:
            q = Question(
                id=f"plan-{n_questions + 1}",
                kind="plan_invalid",
                title=f"The planner could not produce a valid plan in {attempts + 1} tries",
                detail="\n".join(found),
                options=RETRY_OR_ABORT,
                recommended="retry",
                free_text=False,
            )
            return {"questions": {q.id: q.model_dump()}, "plan_problems": found, "plan_attempts": 0}
        return {"plan_problems": found, "plan_attempts": attempts + 1}
    tasks: dict[str, TaskRecord] = {
        t.id: {"id": t.id, "title": t.title, "status": "pending", "commit": None}
        for t in result.tasks
    }
    await aemit(ws, node="plan", event="done", tasks=[t.id for t in result.tasks])
    return {
        "plan": result.model_dump(),
        "plan_problems": [],
        "plan_attempts": 0,
        "plan_version": state.get("plan_version", 0) + 1,
        "tasks": tasks,
        "status": "executing",
    }
