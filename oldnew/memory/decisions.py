"""Decisions a person made during a run, handed to every task that starts afterwards."""

from __future__ import annotations

from typing import Any

DECISION_KINDS = ("configuration", "design_decision", "clarification")


def decisions_from(questions: dict[str, dict[str, Any]]) -> list[str]:
    """Return the run's answered configuration, design and clarification questions as lines."""
    return [
        f"{q['title']} -> {q['answer']}"
        for q in questions.values()
        if q.get("status") == "answered" and q.get("kind") in DECISION_KINDS
    ]
