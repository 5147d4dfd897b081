"""Approval gates: a person approves, asks for changes to, or rejects an artifact of the run.

Four gates, each off unless the run's context lists it (``gates="scope,design"``; ``--yes``
approves every gate on without a pause and records that it did):

- ``scope``: the structured scope, before planning; changes re-read the scope with them.
- ``design``: the accepted plan and its design decisions, before any code; changes re-plan.
- ``mvp``: once every task of the MVP phase is done, before the later phases start.
- ``final``: once every task is done, before delivery.

A gate is a ``Question`` of kind ``approval`` with its ``gate`` set: it travels with the other
questions through the one pause, and is answered like them (``approve``, ``reject``, or the
changes wanted as free text). ``RunState.approvals`` holds, per gate, the question that
approved the current artifact; whatever changes the artifact clears it.
"""

from __future__ import annotations

from typing import Any

from oldnew.errors import ConfigurationError
from oldnew.hitl import questions
from oldnew.schemas import Question

GATES = ("scope", "design", "mvp", "final")
APPROVE, REJECT = questions.APPROVE, questions.REJECT
_TITLES = {
    "scope": "Scope review: is this what should be built?",
    "design": "Design review: approve the plan before any code is written?",
    "mvp": "MVP preview: the MVP phase is done; go on with the later phases?",
    "final": "Final review: every task is done; deliver?",
}


def enabled(spec: str) -> set[str]:
    """Return the gates named in ``spec`` (comma-separated); raise on an unknown name."""
    names = {part.strip() for part in spec.split(",") if part.strip()}
    if "all" in names:
        return set(GATES)
    unknown = sorted(names - set(GATES))
    if unknown:
        raise ConfigurationError(
            f"unknown approval gate(s) {', '.join(unknown)}: choose from {', '.join(GATES)} "
            "or 'all'"
        )
    return names


def gate_question(name: str, number: int, artifact: str) -> Question:
    """Return the approval question of gate ``name`` showing ``artifact``."""
    return questions.question(
        "approval",
        f"gate-{name}" if number == 1 else f"gate-{name}-{number}",
        _TITLES[name],
        f"{artifact.rstrip()}\n\nAnswer 'approve', 'reject' (the run stops with its "
        "report), or write the changes you want.",
        gate=name,
        severity="critical",
        can_continue=False,
    )


def ask(name: str, gates: str, yes: bool, state: dict[str, Any], artifact: str) -> dict[str, Any]:
    """Return the state update that opens gate ``name``, or {} when it is off or passed.

    With ``yes`` the gate is approved on the spot, and the approval recorded as a decision.
    """
    if name not in enabled(gates) or (state.get("approvals") or {}).get(name):
        return {}
    questions = state.get("questions") or {}
    asked = [q for q in questions.values() if q.get("gate") == name]
    if any(q["status"] == "pending" for q in asked):
        return {}
    q = gate_question(name, len(asked) + 1, artifact)
    if not yes:
        return {"questions": {q.id: q.model_dump()}}
    done = q.model_copy(update={"status": "answered", "answer": APPROVE, "decided_by": "yes"})
    return {"questions": {q.id: done.model_dump()}, "approvals": {name: q.id}}


def changes_asked(question: dict[str, Any], answer: str) -> str | None:
    """Return the changes a person asked for at a gate, or None for approve and reject."""
    if question.get("kind") != "approval" or answer in (APPROVE, REJECT):
        return None
    return answer
