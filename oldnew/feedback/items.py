"""Feedback on a run, during or after it: the items a person submits and what became of them.

Feedback enters the run as its input (``{"feedback": {id: item}}``, see ``InputState``): the
graph's entry then sends the run to ``plan``, whose planner triages each item (change request,
bug report, feature, clarification) and applies it to the plan (``feedback/apply.py``). What
was done with it is kept in ``feedback_log`` and shown in the report.

This works the same through the LangGraph server API: a run on the thread with
``input={"feedback": {id: item}}``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from oldnew.errors import UsageError

MAX_FEEDBACK_CHARS = 20_000
DROP = "drop"
"""The answer that discards a feedback item the planner could not triage."""


class FeedbackItem(BaseModel):
    """One piece of feedback waiting for the planner."""

    id: str = Field(min_length=1, description="Stable id: fb1, fb2, ...")
    text: str = Field(min_length=1, max_length=MAX_FEEDBACK_CHARS)
    received: str = Field(description="When it was submitted (ISO 8601, UTC).")
    question: str | None = Field(
        default=None, description="The question raised when it could not be triaged."
    )
    attempts: int = Field(default=0, description="Triage attempts that failed so far.")


class FeedbackRecord(BaseModel):
    """What the planner did with one feedback item (an entry of ``feedback_log``)."""

    id: str
    text: str
    received: str
    outcome: Literal["applied", "dropped"] = "applied"
    kind: str | None = Field(default=None, description="How it was classified.")
    summary: str = ""
    opened: list[str] = Field(default_factory=list, description="Tasks it added to the plan.")
    amended: list[str] = Field(
        default_factory=list, description="Tasks not started yet whose description took it."
    )
    superseded: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Finished task -> {by: its revision, commit: the commit it superseded}.",
    )
    decision: str | None = Field(default=None, description="The decision a clarification made.")
    notes: list[str] = Field(default_factory=list, description="What could not be applied.")


def check_text(text: str) -> str:
    """Return the feedback text stripped, or raise UsageError saying what is wrong with it."""
    cleaned = (text or "").strip()
    if not cleaned:
        raise UsageError("the feedback is empty; say what to change, fix, add or clarify")
    if len(cleaned) > MAX_FEEDBACK_CHARS:
        raise UsageError(
            f"the feedback is {len(cleaned)} characters; the limit is {MAX_FEEDBACK_CHARS} "
            "(send it as several pieces)"
        )
    return cleaned


def new_item(text: str, values: dict[str, Any]) -> FeedbackItem:
    """Return a new feedback item for a run whose state values are ``values``."""
    known = {*(values.get("feedback") or {}), *(r["id"] for r in values.get("feedback_log") or [])}
    n = len(known) + 1
    while f"fb{n}" in known:
        n += 1
    return FeedbackItem(
        id=f"fb{n}",
        text=check_text(text),
        received=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def refusal(values: dict[str, Any]) -> str | None:
    """Return why a run in this state cannot take feedback, or None when it can."""
    if not values:
        return "this run has not started yet; start it with 'oldnew resume' first"
    if values.get("status") == "aborted":
        return (
            "this run was stopped at a person's request and is closed; its state was left "
            "as it is: start a new run with 'oldnew run' for further work"
        )
    if not values.get("plan"):
        return (
            "this run has no plan yet, so there is nothing to apply feedback to: answer its "
            "pending questions ('oldnew status') and send the feedback once it is planned"
        )
    return None


def ready_feedback(state: Any) -> list[FeedbackItem]:
    """Return the pending items the planner can take now (none waiting on a question)."""
    questions = state.get("questions") or {}
    out: list[FeedbackItem] = []
    for raw in (state.get("feedback") or {}).values():
        try:
            item = FeedbackItem.model_validate(raw)
        except ValidationError:
            continue  # a malformed item (from an API caller) is dropped by the planner
        if item.question is None or (questions.get(item.question) or {}).get("status") == (
            "answered"
        ):
            out.append(item)
    return out


def malformed_feedback(state: Any) -> dict[str, str]:
    """Return id -> why, for pending items that are not valid feedback items."""
    out: dict[str, str] = {}
    for fid, raw in (state.get("feedback") or {}).items():
        try:
            FeedbackItem.model_validate(raw)
        except ValidationError as exc:
            found = (f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            out[str(fid)] = "; ".join(found)[:500]
    return out


def report_section(state: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the report's feedback entries: what was asked and what it opened."""
    return [FeedbackRecord.model_validate(r).model_dump() for r in state.get("feedback_log") or []]


def render_feedback(entries: list[dict[str, Any]]) -> list[str]:
    """Return the report's Markdown lines for its feedback entries (none when there are none)."""
    if not entries:
        return []
    lines = ["", "## Feedback", ""]
    for e in entries:
        text = " ".join(e["text"].split())
        shown = text if len(text) <= 300 else text[:297] + "..."
        if e["outcome"] == "dropped":
            lines.append(f'- {e["id"]} ({e["received"]}): "{shown}": dropped by a person')
            continue
        lines.append(f'- {e["id"]} ({e["received"]}): "{shown}"')
        lines.append(f"  - classified as **{e['kind']}**: {e['summary']}")
        if e["opened"]:
            lines.append(f"  - opened tasks: {', '.join(e['opened'])}")
        if e["amended"]:
            lines.append(f"  - changed tasks not started yet: {', '.join(e['amended'])}")
        for tid, sup in e["superseded"].items():
            commit = (sup.get("commit") or "")[:12] or "-"
            lines.append(f"  - {tid} superseded by {sup['by']} (commit `{commit}` kept in history)")
        if e["decision"]:
            lines.append(f"  - decision for the work still to do: {e['decision']}")
        lines += [f"  - note: {n}" for n in e["notes"]]
    return lines
