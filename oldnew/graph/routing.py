"""Routing functions: each returns a Literal, so the diagram shows every way out."""

from __future__ import annotations

from typing import Literal

from oldnew.graph.state import RunState, TaskState


def after_scope(state: RunState) -> Literal["plan", "human", "deliver"]:
    """Plan once the scope parsed; ask a person when it did not; report when they stopped it."""
    if state.get("status") == "aborted":
        return "deliver"
    return "plan" if state.get("scope") else "human"


def after_plan(state: RunState) -> Literal["execute", "plan", "human"]:
    """Execute a valid plan; send a rejected one back; ask a person when repairs ran out."""
    if state.get("plan") and not state.get("plan_problems"):
        return "execute"
    pending = [q for q in (state.get("questions") or {}).values() if q["status"] == "pending"]
    return "human" if pending else "plan"


def after_execute(state: RunState) -> Literal["plan", "human", "deliver"]:
    """Re-plan when a task proved too big or flawed; pause for a person; otherwise deliver."""
    if state.get("replan"):
        return "plan"
    pending = [q for q in (state.get("questions") or {}).values() if q["status"] == "pending"]
    return "human" if pending else "deliver"


def after_human(state: RunState) -> Literal["scope", "plan", "execute", "deliver"]:
    """Go back to the step that asked, or deliver when the person chose to stop."""
    if state.get("status") == "aborted":
        return "deliver"
    if not state.get("scope"):
        return "scope"
    if not state.get("plan"):
        return "plan"
    return "execute"


def after_code(state: TaskState) -> Literal["validate", "escalate"]:
    """Validate what the coder wrote, or escalate its question."""
    return "escalate" if state.get("status") == "waiting" else "validate"


def after_validate(
    state: TaskState,
) -> Literal["commit", "fix", "code", "escalate", "record_limitation"]:
    """Commit passing code, fix failing code, start over once when stuck, else give up.

    Giving up escalates a critical task and records any other as a known limitation.
    """
    status = state.get("status")
    if status == "waiting":
        return "escalate"
    if status == "limiting":
        return "record_limitation"
    if status == "coding":
        return "code"
    return "fix" if status == "fixing" else "commit"


def after_fix(state: TaskState) -> Literal["validate", "escalate"]:
    """Validate the fixer's files, or escalate when its output stayed unusable."""
    return "escalate" if state.get("status") == "waiting" else "validate"


def after_commit(state: TaskState) -> Literal["fix", "__end__"]:
    """Finish when the commit landed; fix when integration with main failed."""
    return "__end__" if state.get("status") == "done" else "fix"


def after_escalate(state: TaskState) -> Literal["code", "fix", "__end__"]:
    """Recode with the answer, fix with the guidance, or stop a skipped task."""
    status = state.get("status")
    if status == "blocked":
        return "__end__"
    return "fix" if status == "fixing" else "code"
