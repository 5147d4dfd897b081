"""Planning: turn the Scope into a validated task graph, and change it when execution asks.

A first plan is sized to the scope's complexity class (one call, or epic by epic for a phased
class); a rejected plan goes back with its problems. Later, ``execute`` may ask for a task to be
split or for the open work to be re-planned around a design flaw; finished tasks always stay.
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.runtime import Runtime

from oldnew import acceptance
from oldnew.budget import metered
from oldnew.context import Context
from oldnew.errors import BudgetExceeded, ModelOutputError
from oldnew.feedback.apply import apply_feedback
from oldnew.feedback.items import malformed_feedback, ready_feedback
from oldnew.graph.state import RunState, TaskRecord
from oldnew.hitl import approvals
from oldnew.hitl.questions import output_question, question, run_failure_question
from oldnew.host import context_of
from oldnew.memory.learning import memory_of, remember_scope_and_plan
from oldnew.models import ModelOverrides, aresolve_model
from oldnew.nodes.common import aemit, arun_workspace
from oldnew.planning import Asker, Planner, PlanningFailed, assess, plan_problems
from oldnew.planning.clarify import settle
from oldnew.planning.graphops import replace_tasks
from oldnew.planning.llm import Emit
from oldnew.planning.revise import replan, split_long_tasks, split_task
from oldnew.recovery.retry import ClassifiedFailure
from oldnew.schemas import Plan, PlannedTask, Scope
from oldnew.workspace import Workspace

__all__ = ["plan", "plan_problems"]


def _pending(tasks: list[PlannedTask]) -> dict[str, TaskRecord]:
    return {
        t.id: {"id": t.id, "title": t.title, "status": "pending", "commit": None} for t in tasks
    }


async def _first_plan(state: RunState, planner: Planner, emit: Emit) -> dict[str, Any]:
    """Ask for the plan, check it, and accept it or send it back with its problems."""
    ctx, size = planner.ask.ctx, planner.complexity
    problems = state.get("plan_problems") or []
    attempts = state.get("plan_attempts", 0)
    await emit(event="started", attempt=attempts + 1, complexity=size.cls, phased=size.phased)
    n_questions = len(state.get("questions") or {})
    try:
        result = await planner.propose(problems)
        found = planner.check(result)
    except ModelOutputError as exc:
        q = output_question(f"plan-{n_questions + 1}", "plan", exc)
        await emit(event="escalated", question=q.id)
        return {"questions": {q.id: q.model_dump()}}
    except ClassifiedFailure as exc:
        q = run_failure_question(f"plan-{n_questions + 1}", "Planning", exc)
        await emit(event="escalated", question=q.id, failure=exc.classification.cls)
        return {"questions": {q.id: q.model_dump()}}
    except PlanningFailed as exc:
        found = exc.problems
    if found:
        await emit(event="rejected", problems=found)
        if attempts + 1 > ctx.max_plan_repairs:
            q = question(
                "plan_invalid",
                f"plan-{n_questions + 1}",
                f"The planner could not produce a valid plan in {attempts + 1} tries",
                "\n".join(found)[:4000],
            )
            return {"questions": {q.id: q.model_dump()}, "plan_problems": found, "plan_attempts": 0}
        return {"plan_problems": found, "plan_attempts": attempts + 1}
    shortened = await split_long_tasks(planner, result)
    for tid, pieces in shortened.split.items():
        await emit(event="split", task=tid, into=pieces, reason="long description")
    for tid, why in shortened.kept.items():
        await emit(event="kept_whole", task=tid, reason=why)
    final = shortened.plan
    await emit(event="done", tasks=[t.id for t in final.tasks], calls=planner.ask.calls)
    return {
        "plan": final.model_dump(),
        "plan_problems": [],
        "plan_attempts": 0,
        "plan_version": state.get("plan_version", 0) + 1,
        "tasks": _pending(final.tasks),
        "complexity": planner.complexity.to_dict(),
        "split_from": {p: t for t, pieces in shortened.split.items() for p in pieces},
        "replan": [],
        "status": "executing",
    }


async def _split_all(
    planner: Planner, plan: Plan, requests: list[dict[str, Any]]
) -> tuple[Plan, dict[str, str], dict[str, str]]:
    """Split each requested task; return the plan, piece -> task, and task -> why it failed."""
    live = {t.id: t for t in plan.tasks}
    wanted = [r for r in requests if r["task"] in live]
    results = await asyncio.gather(
        *(split_task(planner, plan, live[r["task"]], r["reason"]) for r in wanted),
        return_exceptions=True,
    )
    split_from: dict[str, str] = {}
    base = set(live)
    failed: dict[str, str] = {r["task"]: "it is no longer in the plan" for r in requests}
    for r, result in zip(wanted, results, strict=True):
        tid = r["task"]
        if isinstance(result, BaseException):
            if not isinstance(result, Exception) or isinstance(result, BudgetExceeded):
                raise result
            failed[tid] = str(result)
            continue
        pieces = [t for t in result.tasks if t.id not in base]
        candidate = replace_tasks(plan, {tid}, pieces, inherit_deps=True)
        problems = planner.check(candidate, sized=False)
        if problems:
            failed[tid] = "; ".join(problems[:3])
            continue
        plan = candidate
        split_from |= {p.id: tid for p in pieces}
        failed.pop(tid)
    return plan, split_from, failed


async def _revise(state: RunState, planner: Planner, ws: Workspace, emit: Emit) -> dict[str, Any]:
    """Split tasks and re-plan around design flaws, as ``execute`` asked; keep finished work."""
    requests = state.get("replan") or []
    old = Plan.model_validate(state["plan"])
    statuses = {tid: str(r.get("status")) for tid, r in (state.get("tasks") or {}).items()}
    update: dict[str, Any] = {"replan": [], "plan_problems": [], "plan_attempts": 0}
    failed: dict[str, str] = {}
    removed: set[str] = set()
    plan = old
    flaws = [r for r in requests if r["kind"] == "design_flaw"]
    if flaws:
        update["replans"] = state.get("replans", 0) + 1
        open_ids = {t for r in flaws for t in r.get("open", [])}
        try:
            out = await replan(planner, plan, flaws, statuses, open_ids, update["replans"])
        except (PlanningFailed, ModelOutputError, ClassifiedFailure) as exc:
            failed |= {r["task"]: str(exc) for r in flaws}
        else:
            plan, removed = out.plan, removed | out.removed
            await emit(event="replanned", removed=sorted(out.removed), renamed=out.renamed)
    splits = [r for r in requests if r["kind"] == "split" and r["task"] not in removed]
    plan, split_from, split_failed = await _split_all(planner, plan, splits)
    removed |= set(split_from.values())
    failed |= split_failed
    for tid, pieces in _group(split_from).items():
        await emit(event="split", task=tid, into=pieces, reason=_reason(requests, tid))
    questions: dict[str, Any] = {}
    for r in requests:
        if r["task"] in failed and r.get("question"):
            questions[r["question"]["id"]] = r["question"]  # a person decides instead
    notices = [f"could not {_verb(requests, t)} task {t}: {why[:500]}" for t, why in failed.items()]
    for note in notices:
        await emit(event="revision_failed", detail=note)
    update |= {
        "questions": questions,
        "notices": notices,
        "revision_refused": sorted({*(state.get("revision_refused") or []), *failed}),
    }
    if plan is old:
        return update
    new_ids = {t.id for t in plan.tasks} - {t.id for t in old.tasks}
    await asyncio.to_thread(_drop_worktrees, ws, removed)
    return update | {
        "plan": plan.model_dump(),
        "tasks": {**dict.fromkeys(removed), **_pending([t for t in plan.tasks if t.id in new_ids])},
        "split_from": {**(state.get("split_from") or {}), **split_from},
    }


def design_artifact(plan: Plan) -> str:
    """Return the plan as a person reviews it at the design gate."""
    lines = [f"{len(plan.tasks)} tasks:"]
    for t in plan.tasks:
        after = f" (after {', '.join(t.depends_on)})" if t.depends_on else ""
        lines.append(f"- {t.id} {t.title}{after}: {', '.join(t.files) or 'files not named'}")
    if plan.decisions:
        lines += ["", "Design decisions:"]
        lines += [
            f"- {d.decision}" + (f" ({d.reason})" if d.reason else "") for d in plan.decisions
        ]
    return "\n".join(lines)


def design_review_artifact(plan: Plan, scope: Scope, record: dict[str, Any]) -> str:
    """Return what a person reviews at the design gate: the plan, criteria, acceptance tests.

    Each requirement is shown with its criteria and the names of its acceptance tests (or
    why it has none).

    ``record`` is the run's acceptance record (``RunState.acceptance``); without a suite the
    criteria are shown with how it stands (off, none).
    """
    lines = [design_artifact(plan)]
    written = record.get("requirements") or {}
    shown = [(k, f) for k, f in scope.requirements() if f.criteria or f.id in written]
    if not shown:
        return lines[0]
    status = record.get("status")
    lines += ["", "Acceptance criteria and tests:"]
    if status in ("off", "none"):
        why = "acceptance tests are off" if status == "off" else "no suite is written"
        lines.append(f"({why}: the criteria are checked by the tasks' own tests)")
    for _, f in shown:
        entry = written.get(f.id) or {}
        lines.append(f"- {f.id} {f.title}:")
        lines += [f"  - {c.sentence()}" for c in f.criteria]
        if entry.get("file"):
            lines.append(f"  tests ({entry['file']}):")
            lines += [f"  - {name} ({crit})" for name, crit in sorted(entry["tests"].items())]
        elif entry.get("untestable"):
            lines.append(f"  no acceptance test: {entry['untestable']}")
    return "\n".join(lines)


def _group(split_from: dict[str, str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for piece, tid in split_from.items():
        out.setdefault(tid, []).append(piece)
    return out


def _reason(requests: list[dict[str, Any]], tid: str) -> str:
    return next((str(r["reason"]) for r in requests if r["task"] == tid), "")


def _verb(requests: list[dict[str, Any]], tid: str) -> str:
    kinds = {r["kind"] for r in requests if r["task"] == tid}
    return "re-plan around" if "design_flaw" in kinds else "split"


def _drop_worktrees(ws: Workspace, task_ids: set[str]) -> None:
    """Remove the checkouts of tasks the plan no longer has (their work was never accepted)."""
    for tid in task_ids:
        if (ws.meta / "worktrees" / tid).exists():
            ws.remove_worktree(tid)


async def plan(
    state: RunState,
    runtime: Runtime[Context],
    config: RunnableConfig,
    *,
    models: ModelOverrides = None,
) -> dict[str, Any]:
    """Plan the scope, or change the accepted plan as ``execute`` or a person's feedback asked."""
    ctx = context_of(runtime.context)
    ws = await arun_workspace(ctx, config)
    scope_obj = settle(Scope.model_validate(state["scope"]), state.get("questions") or {})
    size = assess(scope_obj, ctx)
    emit = partial(aemit, ws, node="plan")
    activity = "replan" if state.get("replan") and state.get("plan") else "plan"
    model = await aresolve_model("planner", ctx, models)
    ask = Asker(metered(model, ctx, ws.root, role="planner", activity=activity), ctx, emit)
    words = state.get("scope_text") or ""
    planner = Planner(ask, scope_obj, size, ctx.max_agents or size.agents, text=words)
    if state.get("plan") and (ready_feedback(state) or malformed_feedback(state)):
        memory = memory_of(runtime, str(config.get("configurable", {}).get("thread_id", "")))
        return await apply_feedback(state, planner, emit, memory)
    if state.get("replan") and state.get("plan"):
        return await _revise(state, planner, ws, emit)
    update = await _first_plan(state, planner, emit)
    if update.get("plan"):
        if not acceptance.due({**state, **update}):  # else the acceptance node asks it
            shown = design_review_artifact(
                Plan.model_validate(update["plan"]), scope_obj, state.get("acceptance") or {}
            )
            update |= approvals.ask("design", ctx.approvals, ctx.yes, dict(state), shown)
        memory = memory_of(runtime, str(config.get("configurable", {}).get("thread_id", "")))
        remembered = await remember_scope_and_plan(memory, scope_obj.model_dump(), update["plan"])
        await emit(event="remembered", entries=remembered, problems=memory.problems[:5])
    return update
