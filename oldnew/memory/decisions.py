"""Decisions a person made during a run, handed to every task that starts afterwards."""

from __future__ import annotations

from typing import Any

DECISION_KINDS = ("configuration", "design_decision")
"""Kinds of a task's questions whose answers are remembered as decisions when answered."""
RUN_DECISION_KINDS = (*DECISION_KINDS, "clarification")
"""Kinds whose answers every later task gets (clarifications are remembered at planning)."""


def decisions_from(questions: dict[str, dict[str, Any]]) -> list[str]:
    """Return the run's answered configuration, design and scope questions as decision lines."""
    return [
        f"{q['title']} -> {q['answer']}"
        + (" (taken by default)" if q.get("decided_by") == "default" else "")
        for q in questions.values()
        if q.get("status") == "answered" and q.get("kind") in RUN_DECISION_KINDS
    ]
