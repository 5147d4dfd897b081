"""Where a run stands, read from its checkpoints: the run's thread and its task threads."""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass, field
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver

from oldnew.budget import budget_summary
from oldnew.execution.lineage import lineage_key
from oldnew.execution.threads import TaskThreads, started_threads
from oldnew.execution.threads import records as task_records
from oldnew.graph.build import build_task_graph
from oldnew.graph.state import PAUSED
from oldnew.planning.trace import acceptance_line
from oldnew.runs.session import RunGraph, run_config, run_context
from oldnew.schemas import Plan
from oldnew.web.preview import preview_status
from oldnew.workspace import Workspace


@dataclass
class RunOutcome:
    """Where a run stands after a call returns."""

    status: str
    """delivered, waiting (for a person: ``graph.state.PAUSED``, the name the run's state
    carries too), blocked, aborted, stopped (by the budget), running (not finished), or
    interrupted (not finished, and no process works on it: ``run_status``)."""
    run_id: str
    workspace: str
    tasks: list[dict[str, Any]] = field(default_factory=list)
    questions: list[dict[str, Any]] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    report: str | None = None
    queued: dict[str, str] = field(default_factory=dict)
    """Answers left in the inbox of a busy run (its process applies them between tasks)."""
    budget: dict[str, Any] = field(default_factory=dict)
    """Spend against the caps: tokens, cost, working time, per phase, top tasks, stops."""
    milestones: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Milestone -> how its check on main went: status, tag, commit, preview URL."""
    preview: str | None = None
    """The URL the web app's preview serves on now (None: not serving)."""
    acceptance: str = ""
    """How the acceptance suite does: N of M criteria passing on main ("": no suite)."""
    agents: dict[str, Any] = field(default_factory=dict)
    """While it runs: how many agents work now and why (``{"agents": N, "reason": ...}``)."""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (what ``status --json`` prints)."""
        return asdict(self)


async def outcome_of(graph: RunGraph, ws: Workspace, run_id: str) -> RunOutcome:
    """Read where the run stands from its checkpoints (task records live from task threads)."""
    config = run_config(run_id)
    snap = await graph.aget_state(config)
    values = dict(snap.values or {})
    tasks: list[dict[str, Any]] = []
    asked: list[dict[str, Any]] = []
    if values.get("plan"):
        plan = Plan.model_validate(values["plan"])
        saver = graph.checkpointer
        assert isinstance(saver, BaseCheckpointSaver), "open_graph compiles with a saver"
        at = str((snap.config.get("configurable") or {}).get("checkpoint_id") or "")
        key = lineage_key(values, at)
        threads = TaskThreads(
            await asyncio.to_thread(build_task_graph),  # compiling: off the event loop
            run_id,
            key,
            saver,
            at=at,
            started=started_threads(values, key),
        )
        views, records = await task_records(threads, plan, values.get("tasks") or {})
        tasks = [dict(r) for r in records.values()]
        known = values.get("questions") or {}
        for view in views.values():
            if view.question_id and view.question:
                asked.append(known.get(view.question_id) or view.question)
    questions: list[dict[str, Any]] = []
    notices: list[str] = []
    status: str
    if snap.interrupts:
        payload = snap.interrupts[0].value
        questions = list(payload.get("questions", []))
        notices = list(payload.get("notices", []))
        status = PAUSED  # also for a checkpoint an older version saved (status "executing")
    elif not snap.tasks and values.get("report"):
        status = str(values.get("status"))
        notices = list(values.get("notices") or [])  # the hook's, when it failed at the end
    else:
        status = "running" if values else "not started"
        # A busy run: tasks that wait for a person while others work can be answered now.
        questions = [q for q in asked if q.get("status", "pending") == "pending"]
    live = preview_status(ws.root)
    return RunOutcome(
        status=status,
        run_id=run_id,
        workspace=str(ws.root),
        tasks=tasks,
        questions=questions,
        notices=notices,
        report=values.get("report"),
        budget=budget_summary(ws, run_context(ws, {}), values.get("budget_stops")),
        milestones=dict(values.get("milestones") or {}),
        preview=live.url if live is not None else None,
        acceptance=acceptance_line(values),
    )
