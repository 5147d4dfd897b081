"""The planner's handling of feedback: triage each pending item, apply it, log what it did.

Called by the ``plan`` node when a run holds feedback (see ``feedback/items.py``). Items are
taken one after the other, each on the plan the previous one left. A model failure never ends
the run: the item stays pending with a question (retry, or drop it).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from oldnew.errors import ModelOutputError
from oldnew.feedback.items import (
    DROP,
    FeedbackItem,
    FeedbackRecord,
    malformed_feedback,
    ready_feedback,
)
from oldnew.feedback.triage import Applied, RunView, run_view, triage_feedback
from oldnew.graph.state import RunState, merge
from oldnew.hitl.questions import RETRY, question
from oldnew.memory.store import Memory
from oldnew.planning import Planner, PlanningFailed
from oldnew.planning.llm import Emit
from oldnew.recovery.retry import ClassifiedFailure
from oldnew.schemas import Plan, Question


def failed_question(item: FeedbackItem, exc: Exception) -> Question:
    """Return the question a person gets when feedback could not be triaged."""
    return question(
        "model_output",
        f"{item.id}-q{item.attempts + 1}",
        f"Feedback {item.id} could not be applied to the plan",
        f"{type(exc).__name__}: {exc}"[:2000] + f"\nFeedback: {item.text[:1000]}",
        keys=(RETRY, DROP),
    )


def _record(item: FeedbackItem, applied: Applied, view: RunView) -> FeedbackRecord:
    decision = applied.triage.summary if applied.triage.kind == "clarification" else None
    return FeedbackRecord(
        id=item.id,
        text=item.text,
        received=item.received,
        kind=applied.triage.kind,
        summary=applied.triage.summary,
        opened=applied.opened,
        amended=applied.amended,
        superseded={
            old: {"by": new, "commit": view.commits.get(old)}
            for old, new in applied.superseded.items()
        },
        decision=decision,
        notes=applied.notes,
    )


def clarification_question(item: FeedbackItem, applied: Applied) -> Question:
    """Return a clarification as an answered question: a decision for the work to come."""
    return question(
        "clarification",
        item.id,
        f"Clarification ({item.id}): {applied.triage.summary}",
        item.text,
        status="answered",
        answer=item.text,
    )


class _Run:
    """The plan, scope and updates as the items are applied one after the other."""

    def __init__(self, state: RunState, planner: Planner) -> None:
        self.state, self.planner = state, planner
        self.plan = Plan.model_validate(state["plan"])
        self.scope = planner.scope
        self.tasks: dict[str, Any] = {}
        self.questions: dict[str, dict[str, Any]] = {}
        self.feedback: dict[str, Any] = {}
        self.log: list[dict[str, Any]] = []
        self.notices: list[str] = []
        self.changed = False

    def view(self) -> RunView:
        """Return the run as the items applied so far left it."""
        merged = merge(self.state.get("tasks") or {}, dict(self.tasks))
        return run_view({**self.state, "tasks": merged, "plan": self.plan.model_dump()})


async def _apply_one(run: _Run, item: FeedbackItem, emit: Emit, memory: Memory) -> None:
    answer = (run.state.get("questions") or {}).get(item.question or "", {}).get("answer")
    if answer == DROP:
        rec = FeedbackRecord(id=item.id, text=item.text, received=item.received, outcome="dropped")
        run.log.append(rec.model_dump())
        run.feedback[item.id] = None
        await emit(event="feedback_dropped", feedback=item.id)
        return
    view = run.view()
    planner = replace(run.planner, scope=run.scope)
    try:
        applied = await triage_feedback(planner, run.plan, item.id, item.text, view)
    except (ModelOutputError, ClassifiedFailure, PlanningFailed) as exc:
        q = failed_question(item, exc)
        run.questions[q.id] = q.model_dump()
        run.feedback[item.id] = {"question": q.id, "attempts": item.attempts + 1}
        await emit(event="feedback_escalated", feedback=item.id, question=q.id, error=str(exc))
        return
    if applied.opened or applied.amended or applied.scope is not run.scope:
        run.changed = True
    run.plan, run.scope = applied.plan, applied.scope
    for tid in applied.opened:
        title = next(t.title for t in applied.plan.tasks if t.id == tid)
        run.tasks[tid] = {"id": tid, "title": title, "status": "pending", "commit": None}
    for old, new in applied.superseded.items():
        run.tasks[old] = {"superseded_by": new}
    if applied.triage.kind == "clarification":
        q = clarification_question(item, applied)
        run.questions[q.id] = q.model_dump()
        # Tie the decision to the work it bears on, so that memory offers it to those tasks.
        named = set(applied.triage.affected_tasks)
        bears = [
            t
            for t in run.plan.tasks
            if t.id in named or (not named and view.statuses.get(t.id, "pending") == "pending")
        ]
        await memory.remember(
            "decision",
            f"{q.title} -> {q.answer}",
            reason=f"a person's feedback {item.id}",
            files=[f for t in bears for f in t.files],
            requirement_ids=[r for t in bears for r in t.requirement_ids],
        )
    record = _record(item, applied, view)
    run.log.append(record.model_dump())
    run.feedback[item.id] = None
    run.notices += [f"feedback {item.id}: {n}" for n in applied.notes]
    await emit(
        event="feedback_applied",
        feedback=item.id,
        kind=applied.triage.kind,
        opened=applied.opened,
        superseded=applied.superseded,
        amended=applied.amended,
    )


async def apply_feedback(
    state: RunState, planner: Planner, emit: Emit, memory: Memory
) -> dict[str, Any]:
    """Triage and apply every feedback item that is ready; return the state update."""
    run = _Run(state, planner)
    for fid, why in malformed_feedback(state).items():
        run.feedback[fid] = None
        run.notices.append(f"feedback {fid} was not valid and was dropped: {why}")
        await emit(event="feedback_invalid", feedback=fid, problem=why)
    for item in ready_feedback(state):
        await _apply_one(run, item, emit, memory)
    update: dict[str, Any] = {
        "feedback": run.feedback,
        "feedback_log": run.log,
        "questions": run.questions,
        "notices": run.notices,
        "tasks": run.tasks,
    }
    if not run.changed:
        return update
    return update | {
        "plan": run.plan.model_dump(),
        "scope": run.scope.model_dump(),
        "status": "executing",
        "approvals": {"final": None},  # new work: the final review, if on, is asked again
    }
