"""Delivery: run every quality gate on main once more and write report.json and report.md.

The run ends delivered (every task done, main passes), delivered_with_limitations (every
critical task done, main passes, only known limitations left) or blocked (a plan of every
blocker, its options, what was delivered and how to resume). A requirement whose acceptance
tests did not pass on main's last check is not delivered: the run is blocked by it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.runtime import Runtime

from oldnew import milestones
from oldnew.budget import budget_summary
from oldnew.context import Context
from oldnew.gates.acceptance import NAME as ACCEPTANCE
from oldnew.gates.acceptance import AcceptanceSuite
from oldnew.gates.model import ValidationResult
from oldnew.graph.state import RunState
from oldnew.handover import hand_over
from oldnew.host import context_of
from oldnew.milestones import is_web
from oldnew.nodes.checks import Gates, record_evidence, run_gates
from oldnew.nodes.common import (
    aemit,
    arun_workspace,
    evidence_extras,
    scope_toolchains,
    serve_preview,
    web_gate_options,
)
from oldnew.notify import Stop, notify_outcome
from oldnew.planning.trace import run_traceability, unaccepted
from oldnew.report import build_report, render_markdown
from oldnew.web.preview import preview_status
from oldnew.workspace import Workspace


def _write_report(
    state: dict[str, Any], ws: Workspace, final: dict[str, Any], ctx: Context
) -> Path:
    """Build the report and write report.json and report.md (blocking: run it in a thread)."""
    report = build_report(state, ws, final)
    report["budget"] = budget_summary(ws, ctx, state.get("budget_stops"))
    if report["budget"]["resume"]:
        report["resume"] = (
            f"The budget stopped this run; go on with raised caps: {report['budget']['resume']}"
            + (f". Then: {report['resume']}" if report["pending_questions"] else "")
        )
    for rid, tests in unaccepted(report["traceability"]).items():
        report["blocked"].append(
            {
                "task": rid,
                "title": f"acceptance tests of {rid} on main",
                "status": "failed",
                "reason": "the tester's acceptance tests did not pass: " + ", ".join(tests),
                "options": [],
                "depends_on": [],
            }
        )
    if state["status"] in ("blocked", "stopped") and final.get("passed") is False:
        report["blocked"].append(
            {
                "task": "-",
                "title": "final validation of main",
                "status": "failed",
                "reason": "gates that did not pass on main: "
                + ", ".join(
                    c["name"]
                    for c in final.get("checks", [])
                    if not c.get("excused")
                    and (c["status"] == "failed" or (c["status"] == "not_run" and c["required"]))
                )
                + f" (evidence {final.get('evidence', '-')})",
                "options": [],
                "depends_on": [],
            }
        )
    path = ws.write_json("report.json", report)
    (ws.meta / "report.md").write_text(render_markdown(report), encoding="utf-8")
    return path


def only_limitations(tasks: dict[str, Any]) -> bool:
    """Say whether some task is done and every unfinished one is a known limitation."""
    unfinished = [t for t in tasks.values() if t["status"] != "done"]
    done = len(unfinished) < len(tasks)
    return done and all(t.get("limitation") for t in unfinished)


def _final_options(state: RunState, ws: Workspace) -> dict[str, Any]:
    """Return ``run_gates``' keywords for the check of what is handed over (blocking).

    A web app's milestone gates, and the tester's suite: it judges the commit handed over too.
    """
    options = web_gate_options(state, ws, "final")
    wanted = milestones.suite_requirements(state)
    suite = AcceptanceSuite.on_main(ws, wanted, state.get("acceptance")) if wanted else None
    return options | ({"acceptance": suite} if suite is not None else {})


def _check_main(
    state: RunState, ctx: Context, ws: Workspace, handing: bool, gates: Gates
) -> tuple[ValidationResult, dict[str, Any], dict[str, Any]]:
    """Run the gates on main and keep the evidence (blocking); also the suite's new results.

    Judged against the baseline: what failed where the run started is reported apart. The
    tester's suite runs when the project is handed over (a stopped or blocked run's unfinished
    work would fail it for what is not built yet: its milestone says so when it is).
    """
    options = _final_options(state, ws)
    if not handing:
        options.pop("acceptance", None)
    result = gates(ctx, ws.root, scope_toolchains(state), ws, **options)
    extras = evidence_extras(options)
    head = ws.head()
    evidence = record_evidence(ws, "final", result, tree="main", head=head, **extras)
    return result, {**result.to_dict(), "evidence": evidence}, _acceptance_checked(result, head)


def _acceptance_checked(result: ValidationResult, head: str) -> dict[str, Any]:
    """Return the acceptance record's results of ``result``'s suite run on ``head``, if any."""
    check = next((c for c in result.checks if c.name == ACCEPTANCE), None)
    results = (check.metrics.get("results") if check is not None else None) or {}
    return {"results": dict(results), "checked": head} if results else {}


def _status(state: RunState) -> str:
    """Return the run's status from its tasks, before main's final check.

    A requirement is delivered only when its acceptance tests pass on main.
    """
    tasks = state.get("tasks") or {}
    if state.get("status") == "aborted":
        return "aborted"
    if (state.get("budget_stops") or {}).get("run"):
        return "stopped"
    if tasks and all(t["status"] == "done" for t in tasks.values()):
        stand_ins = any(t.get("stand_in") for t in tasks.values())
        status = "delivered_with_limitations" if stand_ins else "delivered"
    elif only_limitations(tasks):
        status = "delivered_with_limitations"
    else:
        return "blocked"
    return "blocked" if unaccepted(run_traceability(state)) else status


async def deliver(
    state: RunState,
    runtime: Runtime[Context],
    config: RunnableConfig,
    *,
    gates: Gates | None = None,
) -> dict[str, Any]:
    """Check the delivered project as a whole and write the report."""
    ctx = context_of(runtime.context)
    ws = await arun_workspace(ctx, config)
    tasks = state.get("tasks") or {}
    status = _status(state)
    final: dict[str, Any] = {"checks": []}
    update: dict[str, Any] = {}
    problems: list[str] = []
    if any(t["status"] == "done" for t in tasks.values()):
        scope = state.get("scope") or {}
        title, summary = str(scope.get("title", "")), str(scope.get("summary", ""))
        # Only a project that is handed over gets them: a stopped or blocked run goes on later.
        handing = status in ("delivered", "delivered_with_limitations")
        written = await asyncio.to_thread(hand_over, ws, title, summary) if handing else []
        if written:
            await aemit(ws, node="deliver", event="handed_over", files=written)
        result, final, checked = await asyncio.to_thread(
            _check_main, state, ctx, ws, handing, gates or run_gates
        )
        if checked:  # the report traces the commit handed over, not an earlier check
            update["acceptance"] = checked
            state = {**state, "acceptance": {**(state.get("acceptance") or {}), **checked}}
        missing = result.degraded_layers()
        if missing:
            await aemit(ws, node="deliver", event="sandbox_degraded", layers=missing)
        if not result.passed and status != "stopped":
            status = "blocked"
        if handing and result.passed and is_web(state):
            # The delivered app is what the preview serves from now on.
            served = await asyncio.to_thread(serve_preview, ws, ctx, ws.head())
            await aemit(ws, node="deliver", event="preview", **served)
            if served.get("preview_error"):
                problems.append(f"the preview did not start: {served['preview_error']}")
    path = await asyncio.to_thread(_write_report, {**state, "status": status}, ws, final, ctx)
    await aemit(ws, node="deliver", event=status, report=str(path))
    run_id = str(config.get("configurable", {}).get("thread_id", ""))
    records = [dict(t) for t in tasks.values()]
    live = preview_status(ws.root)
    url = live.url if live is not None else None
    stop = Stop(status, run_id, str(ws.root), records, report=str(path), preview=url)
    notices = [*problems, *await notify_outcome(ws, ctx, stop)]
    return {**update, "status": status, "report": str(path), "notices": notices}
