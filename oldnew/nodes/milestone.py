"""The milestone node: check main as a whole when a phase is done; tag it, preview it, or fix it.

Which milestone is due, and what its fix task is, ``oldnew.milestones`` says. Here the gates
run on main (for a web app with the milestone set: the app started, browser tests,
accessibility, Lighthouse, load; with an acceptance suite, the acceptance gate for the
requirements the milestone completes), the result is kept as evidence, each acceptance test's
result goes to ``RunState.acceptance`` (``results``, ``checked``: the commit), and then:

- passed: main is tagged with the milestone's name, a web app's preview (re)starts on it, and
  its URL goes to the progress output, ``status``, the notification hook and the report;
- failed with findings the code can fix: a fix task of that phase joins the plan (at most
  ``milestone_fixes`` per milestone), validated with the same gate set; when only acceptance
  tests fail, one routed to the tasks that serve the failing requirements;
- acceptance tests that cannot run (the tester's): recorded as ``suite_errors``, never a
  coder's task; the tester repairs them (``oldnew.acceptance.review.repair_suite``) and the
  milestone is checked again; without that step, the milestone fails, saying why;
- failed past that, or gates that could not run (a tool is missing): the milestone is
  recorded as failed or not checked, with why, and the run goes on (delivery reports it).
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Awaitable, Callable
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.runtime import Runtime

from oldnew import milestones
from oldnew.acceptance import is_suite_path
from oldnew.context import Context
from oldnew.gates import Check, ValidationResult
from oldnew.gates.acceptance import NAME as ACCEPTANCE
from oldnew.gates.acceptance import AcceptanceSuite
from oldnew.graph.state import RunState
from oldnew.host import context_of
from oldnew.models import ModelOverrides
from oldnew.nodes.checks import (
    Gates,
    environment_blockers,
    fixer_diagnostics,
    record_evidence,
    run_gates,
)
from oldnew.nodes.common import (
    aemit,
    arun_workspace,
    evidence_extras,
    scope_toolchains,
    serve_preview,
    web_gate_options,
)
from oldnew.schemas import Plan, PlannedTask, Scope
from oldnew.workspace import Workspace

MAX_FIX_FILES = 12
Repair = Callable[..., Awaitable[dict[str, Any]]]


def _repair_hook() -> Repair | None:
    """Return the tester's repair step for tests that do not run, if this oldnew has one."""
    try:
        module = importlib.import_module("oldnew.acceptance.review")
    except ImportError:
        return None
    hook: Repair | None = getattr(module, "repair_suite", None)
    return hook


def _fix_files(ws: Workspace, result_files: list[str], plan: Plan, ids: list[str]) -> list[str]:
    """Return the files the fix task should change: those the findings name, else the phase's."""
    named = [
        f
        for f in dict.fromkeys(result_files)
        if f not in ("", ".") and not is_suite_path(f) and (ws.root / f).is_file()
    ]
    if named:
        return named[:MAX_FIX_FILES]
    owned = [f for t in plan.tasks if t.id in ids for f in t.files]
    return list(dict.fromkeys(owned))[:MAX_FIX_FILES]


def _check(state: RunState, ctx: Context, ws: Workspace, name: str, gates: Gates) -> dict[str, Any]:
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
    wanted = milestones.acceptance_requirements(plan, state, name)
    suite = AcceptanceSuite.on_main(ws, wanted, state.get("acceptance")) if wanted else None
    if suite is not None:
        options["acceptance"] = suite
    result = gates(ctx, ws.root, scope_toolchains(state), ws, **options)
    extras = evidence_extras(options)
    evidence = record_evidence(ws, label, result, tree="main", head=head, milestone=name, **extras)
    out |= {"evidence": evidence, "checks": {c.name: c.status for c in result.checks}}
    update: dict[str, Any] = {}
    accepted = result.check(ACCEPTANCE)
    if accepted is not None and accepted.metrics.get("results"):
        update["acceptance"] = _results(state, accepted, head)
        messages = accepted.metrics.get("messages", {})
        tester = accepted.metrics.get("tester", [])
        out["suite_errors"] = {k: str(messages.get(k, "")) for k in tester} or ""
    if result.passed:
        out |= {"status": "reached", "tag": record.get("tag") or ws.tag(name)}
        out |= serve_preview(ws, ctx, head) if milestones.is_web(state) else {}
    elif not result.failures():
        why = "; ".join(f"{c.name}: {c.summary}" for c in environment_blockers(result))
        out |= {"status": "not_checked", "reason": why or "gates did not run"}
    elif rounds < ctx.milestone_fixes:
        task = _fix_task(ws, plan, name, ids, rounds + 1, result, accepted, wanted, state)
        out |= {"status": "fixing", "fix_rounds": rounds + 1}
        if task is not None:
            out["fix_task"] = task.id
            update["plan"] = plan.model_copy(update={"tasks": [*plan.tasks, task]}).model_dump()
        if out["suite_errors"]:
            out["reason"] = _suite_errors_reason(out["suite_errors"])
            if _repair_hook() is None and task is None:  # nobody can act in this run
                out |= {"status": "failed", "fix_rounds": rounds}
    else:
        failing = ", ".join(c.name for c in result.failures())
        why = f"gates still failing after {rounds} fix task(s): {failing}"
        errors = out["suite_errors"]
        out |= {"status": "failed", "reason": why}
        out["reason"] += f"; {_suite_errors_reason(errors)}" if errors else ""
    return {**update, "milestones": {name: out}}


def _suite_errors_reason(errors: dict[str, str]) -> str:
    """Return why a milestone waits for the tester: which tests do not run, and why."""
    shown = "; ".join(f"{k}: {v}" for k, v in list(errors.items())[:5])
    return f"the tester's tests do not run: {shown}"


def _results(state: RunState, check: Check, head: str) -> dict[str, Any]:
    """Return the run's acceptance record updated with the tests this check ran, on ``head``.

    The results of files this check did not run (a later phase's requirements) are kept.
    """
    old = dict((state.get("acceptance") or {}).get("results") or {})
    new: dict[str, str] = dict(check.metrics["results"])
    files = {k.partition("::")[0] for k in new}
    kept = {k: v for k, v in old.items() if k.partition("::")[0] not in files}
    return {"results": {**kept, **new}, "checked": head}


def _fix_task(
    ws: Workspace,
    plan: Plan,
    name: str,
    ids: list[str],
    round_no: int,
    result: ValidationResult,
    accepted: Check | None,
    wanted: list[str],
    state: RunState,
) -> PlannedTask | None:
    """Return the coder's fix task for what the milestone found, or None (only the tester's).

    Other gates failing: the milestone's fix task, told every finding but the tester's.
    Only acceptance tests failing: the task of the tasks that serve the failing requirements.
    """
    others = [c for c in result.failures() if c.name != ACCEPTANCE]
    code = list(accepted.metrics.get("failed", [])) if accepted is not None else []
    if others:
        findings = [
            line
            for line in fixer_diagnostics(result)
            if "the tester's test does not run" not in line
        ]
        files = _fix_files(ws, [d.file for d in result.diagnostics], plan, ids)
        return milestones.fix_task(plan, name, ids, round_no, findings, files, wanted or None)
    if not code or accepted is None:
        return None
    record = state.get("acceptance") or {}
    by_file = {
        str(info.get("file")): rid
        for rid, info in (record.get("requirements") or {}).items()
        if isinstance(info, dict)
    }
    tests = {
        str(t): str(c)
        for info in (record.get("requirements") or {}).values()
        if isinstance(info, dict)
        for t, c in (info.get("tests") or {}).items()
    }
    messages = accepted.metrics.get("messages", {})
    failing = {k: str(messages.get(k, "")) for k in code}
    reqs = sorted({by_file[k.partition("::")[0]] for k in code if k.partition("::")[0] in by_file})
    scope = state.get("scope")
    sentences = milestones.criterion_sentences(Scope.model_validate(scope)) if scope else {}
    findings = milestones.acceptance_findings(failing, tests, sentences)
    return milestones.acceptance_fix_task(plan, name, round_no, reqs or wanted, findings)


async def milestone(
    state: RunState,
    runtime: Runtime[Context],
    config: RunnableConfig,
    *,
    models: ModelOverrides = None,
    gates: Gates | None = None,
) -> dict[str, Any]:
    """Check the milestone that is due on main; tag and preview it, or plan its fix.

    ``models`` are the run's model overrides, for the tester's repair of tests that do not run.
    """
    ctx = context_of(runtime.context)
    ws = await arun_workspace(ctx, config)
    name = milestones.due(state)
    if name is None:  # nothing due (routing sends no run here then; kept safe on resume)
        return {}
    await aemit(ws, node="milestone", event="milestone_checking", milestone=name)
    update = await asyncio.to_thread(_check, state, ctx, ws, name, gates or run_gates)
    out = update["milestones"][name]
    hook = _repair_hook()
    if out.get("suite_errors") and out["status"] == "fixing" and hook is not None:
        scope = Scope.model_validate(state["scope"])
        plan = Plan.model_validate(update.get("plan") or state["plan"])
        record = {**(state.get("acceptance") or {}), **update.get("acceptance", {})}
        repaired = await hook(ws, ctx, scope, plan, record, out["suite_errors"], models)
        acceptance = {**update.get("acceptance", {}), **(repaired.pop("acceptance", None) or {})}
        update = {**repaired, **update} | ({"acceptance": acceptance} if acceptance else {})
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
