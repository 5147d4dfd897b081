"""Delivery: validate main once more and write report.json and report.md."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.runtime import Runtime

from oldnew.context import Context
from oldnew.graph.state import RunState
from oldnew.nodes.checks import record_evidence
from oldnew.nodes.common import aemit, arun_workspace
from oldnew.report import build_report, render_markdown
from oldnew.validation import validate_tree
from oldnew.workspace import Workspace


def _write_report(state: dict[str, Any], ws: Workspace, final: dict[str, Any]) -> Path:
    """Build the report and write report.json and report.md (blocking: run it in a thread)."""
    report = build_report(state, ws, final)
    if state["status"] == "blocked" and final.get("passed") is False:
        report["blocked"].append(
            {
                "task": "-",
                "title": "final validation of main",
                "status": "failed",
                "reason": "see final_validation",
                "options": [],
                "depends_on": [],
            }
        )
    path = ws.write_json("report.json", report)
    (ws.meta / "report.md").write_text(render_markdown(report), encoding="utf-8")
    return path


async def deliver(
    state: RunState, runtime: Runtime[Context], config: RunnableConfig
) -> dict[str, Any]:
    """Check the delivered project as a whole and write the report."""
    ctx = runtime.context or Context()
    ws = await arun_workspace(ctx, config)
    tasks = state.get("tasks") or {}
    if state.get("status") == "aborted":
        status = "aborted"
    elif tasks and all(t["status"] == "done" for t in tasks.values()):
        status = "delivered"
    else:
        status = "blocked"
    final: dict[str, Any] = {"checks": []}
    if any(t["status"] == "done" for t in tasks.values()):
        result = await asyncio.to_thread(validate_tree, ws.root, timeout=ctx.test_timeout)
        evidence = await asyncio.to_thread(
            lambda: record_evidence(ws, "final", result, tree="main", head=ws.head())
        )
        final = {**result.to_dict(), "evidence": evidence}
        if not result.passed:
            status = "blocked"
    path = await asyncio.to_thread(_write_report, {**state, "status": status}, ws, final)
    await aemit(ws, node="deliver", event=status, report=str(path))
    return {"status": status, "report": str(path)}
