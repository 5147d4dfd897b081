"""Spend against budget, for the report, ``oldnew status`` and the resume plan."""

from __future__ import annotations

import math
from typing import Any

from oldnew.budget.meter import Caps, ledger_of
from oldnew.context import Context
from oldnew.workspace import Workspace

BUDGET_FIELDS = ("budget_tokens", "budget_cost", "budget_task_tokens", "budget_seconds", "prices")
"""Context fields a resume may change for good (a raised cap holds for later resumes)."""
_CAP_FLAGS = {
    "--budget-tokens": "tokens",
    "--budget-cost": "cost",
    "--budget-task-tokens": "task_tokens",
    "--budget-seconds": "seconds",
}
TOP_TASKS = 5


def save_budget(ws: Workspace, overrides: dict[str, Any]) -> dict[str, Any]:
    """Keep the budget fields among ``overrides`` in run.json; return what changed."""
    changed = {k: overrides[k] for k in BUDGET_FIELDS if overrides.get(k) is not None}
    info = ws.run_info()
    if changed and info is not None:
        info["context"] = {**info.get("context", {}), **changed}
        ws.write_json("run.json", info)
    return changed


def _raised(flag: str, spent: float, cap: float) -> str:
    """Return a raised cap for ``flag``: double the cap, and at least twice what was spent."""
    value = max(cap * 2, spent * 2, 1)
    if flag == "--budget-cost":
        return f"{math.ceil(value * 100) / 100:g}"
    return str(math.ceil(value))


def resume_command(ws: Workspace, stops: dict[str, dict[str, Any]]) -> str:
    """Return the exact command that resumes a run the budget stopped, with raised caps."""
    flags: dict[str, str] = {}
    for stop in stops.values():
        flag = str(stop["flag"])
        raised = _raised(flag, float(stop["spent"]), float(stop["cap"]))
        if flag not in flags or float(raised) > float(flags[flag]):
            flags[flag] = raised
    options = " ".join(f"{flag} {value}" for flag, value in sorted(flags.items()))
    return f"oldnew resume --workspace {ws.root} {options}".rstrip()


def budget_summary(
    ws: Workspace, ctx: Context, stops: dict[str, dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Return spend against the caps, the budget stops, and how to resume after them."""
    spend = ledger_of(ws.root).spend()
    caps = Caps.of(ctx)
    top = sorted(spend["by_task"].items(), key=lambda kv: -int(kv[1]["tokens"]))[:TOP_TASKS]
    stops = dict(stops or {})
    return {
        "spend": spend,
        "caps": caps.to_dict(),
        "top_tasks": [{"task": t, **row} for t, row in top],
        "stopped": stops.get("run"),
        "tasks_stopped": {k: v for k, v in stops.items() if k != "run"},
        "resume": resume_command(ws, stops) if stops else None,
    }


def _against(spent: str, cap: float, unit: str = "") -> str:
    limit = f"{cap:,.4f}" if unit == "$" else f"{cap:,.0f}"
    return f"{spent} of {unit}{limit}" if cap else f"{spent} (no cap)"


def budget_lines(budget: dict[str, Any]) -> list[str]:
    """Return the budget as short lines for a person: spend vs caps, activities, top tasks."""
    spend, caps = budget["spend"], budget["caps"]
    tokens = f"{spend['tokens']:,}"
    cost = f"${spend['cost_usd']:.4f}"
    seconds = f"{spend['work_seconds']:.1f} s"
    unpriced = ", ".join(spend["unpriced_models"])
    lines = [
        f"tokens: {_against(tokens, caps['tokens'])} ({spend['input_tokens']:,} in, "
        f"{spend['output_tokens']:,} out, {spend['calls']} calls)",
        f"cost: {_against(cost, caps['cost'], '$')}"
        + (f"; unpriced models (counted as $0): {unpriced}" if unpriced else ""),
        f"working time: {_against(seconds, caps['seconds'])}",
    ]
    if caps["task_tokens"]:
        lines.append(f"per-task cap: {caps['task_tokens']:,} tokens")
    if spend["calls_without_usage"]:
        lines.append(
            f"{spend['calls_without_usage']} calls reported no usage (counted as 0 tokens)"
        )
    activities = spend["by_activity"].items()
    if activities:
        lines.append(
            "by activity: "
            + ", ".join(f"{a} {r['tokens']:,} tok ${r['cost_usd']:.4f}" for a, r in activities)
        )
    if budget["top_tasks"]:
        lines.append(
            "top tasks: "
            + ", ".join(f"{t['task']} {t['tokens']:,} tok" for t in budget["top_tasks"])
        )
    if budget.get("stopped"):
        lines.append(f"stopped by the budget: {budget['stopped']['detail']}")
    for tid, stop in budget.get("tasks_stopped", {}).items():
        lines.append(f"task {tid} stopped by its budget: {stop['detail']}")
    return lines


def budget_markdown(budget: dict[str, Any]) -> list[str]:
    """Return the report's budget section as Markdown lines."""
    lines = ["## Budget", ""]
    lines += [f"- {line}" for line in budget_lines(budget)]
    if budget.get("resume"):
        lines += ["", f"To go on with raised caps: `{budget['resume']}`"]
    return lines
