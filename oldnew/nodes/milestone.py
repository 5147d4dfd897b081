"""The milestone node: check main as a whole when a phase is done; tag it, preview it, or fix it.

Which milestone is due, and what its fix task is, ``oldnew.milestones`` says. Here the gates
run on main (for a web app with the milestone set: the app started, browser tests,
accessibility, Lighthouse, load), the result is kept as evidence, and then:

- passed: main is tagged with the milestone's name, a web app's preview (re)starts on it, and
  its URL goes to the progress output, ``status``, the notification hook and the report;
- failed with findings the code can fix: a fix task of that phase joins the plan (at most
  ``milestone_fixes`` per milestone), validated with the same gate set;
- failed past that, or gates that could not run (a tool is missing): the milestone is
  recorded as failed or not checked, with why, and the run goes on (delivery reports it).
"""

from __future__ import annotations

import asyncio
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.runtime import Runtime

from oldnew import milestones
from oldnew.context import Context
from oldnew.graph.state import RunState
from oldnew.nodes.checks import environment_blockers, fixer_diagnostics, record_evidence, run_gates
from oldnew.nodes.common import (
    aemit,
    arun_workspace,
    evidence_extras,
    scope_toolchains,
    serve_preview,
    web_gate_options,
)
from oldnew.schemas import Plan
from oldnew.workspace import Workspace

MAX_FIX_FILES = 12


def _fix_files(ws: Workspace, result_files: list[str], plan: Plan, ids: list[str]) -> list[str]:
    """Return the files the fix task should change: those the findings name, else the phase's."""
    named = [
        f for f in dict.fromkeys(result_files) if f not in ("", ".") and (ws.root / f).is_file()
    ]
    if named:
        return named[:MAX_FIX_FILES]
    owned = [f for t in plan.tasks if t.id in ids for f in t.files]
    return list(dict.fromkeys(owned))[:MAX_FIX_FILES]


def _check(state: RunState, ctx: Context, ws: Workspace, name: str) -> dict[str, Any]:
    """Run the milestone's gates on main and settle it (blocking: run it in a thread)."""
    plan = Plan.model_validate(state["plan"])
    ids = dict(milestones.milestones_of(plan, state))[name]
    done, unfinished = milestones.ended(state, ids) or ([], [])
    record = dict((state.get("milestones") or {}).get(name) or {})
    rounds = int(record.get("fix_rounds", 0))
    head = ws.head()
    out: dict[str, Any] = dict.fromkeys(milestones.RECORD_FIELDS, "")
    out |= {"tasks": sorted(ids), "done": done, "commit": head, "fix_rounds": rounds}
    if unfinished:
        # Nothing to check: the milestone cannot be reached; what waits for it goes on.
        why = ", ".join(unfinished)
        out |= {"status": "failed", "reason": f"not every task of it was done: {why}"}
        out |= {"evidence": "", "checks": {}}
        return {"milestones": {name: out}}
    label = f"milestone-{name}-{rounds + 1}"
    options = web_gate_options(state, ws, label)
    result = run_gates(ctx, ws.root, scope_toolchains(state), ws, **options)
    extras = evidence_extras(options)
    evidence = record_evidence(ws, label, result, tree="main", head=head, milestone=name, **extras)
    out |= {"evidence": evidence, "checks": {c.name: c.status for c in result.checks}}
    update: dict[str, Any] = {}
    if result.passed:
        out |= {"status": "reached", "tag": record.get("tag") or ws.tag(name)}
        out |= serve_preview(ws, ctx, head)
    elif not result.failures():
        why = "; ".join(f"{c.name}: {c.summary}" for c in environment_blockers(result))
        out |= {"status": "not_checked", "reason": why or "gates did not run"}
    elif rounds < ctx.milestone_fixes:
        findings = fixer_diagnostics(result)
        files = _fix_files(ws, [d.file for d in result.diagnostics], plan, ids)
        task = milestones.fix_task(plan, name, ids, rounds + 1, findings, files)
        plan = plan.model_copy(update={"tasks": [*plan.tasks, task]})
        out |= {"status": "fixing", "fix_rounds": rounds + 1, "fix_task": task.id}
        update["plan"] = plan.model_dump()
    else:
        failing = ", ".join(c.name for c in result.failures())
        out |= {
            "status": "failed",
            "reason": f"gates still failing after {rounds} fix task(s): {failing}",
        }
    return {**update, "milestones": {name: out}}


async def milestone(
    state: RunState, runtime: Runtime[Context], config: RunnableConfig
) -> dict[str, Any]:
    """Check the milestone that is due on main; tag and preview it, or plan its fix."""
    ctx = runtime.context or Context()
    ws = await arun_workspace(ctx, config)
    name = milestones.due(state)
    if name is None:  # nothing due (routing sends no run here then; kept safe on resume)
        return {}
    await aemit(ws, node="milestone", event="milestone_checking", milestone=name)
    update = await asyncio.to_thread(_check, state, ctx, ws, name)
    out = update["milestones"][name]
    fields = {k: out[k] for k in milestones.RECORD_FIELDS if out.get(k)}
    await aemit(
        ws,
        node="milestone",
        event=f"milestone_{out['status']}",
        milestone=name,
        commit=out["commit"],
        evidence=out["evidence"],
        **fields,
    )
    return update
