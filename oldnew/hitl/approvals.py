"""Approvals: a person approves, asks for changes to, or rejects an artifact of the run.

A person decides an approval; code passes a quality gate (``oldnew.gates``: ruff, pytest...).
Four approvals, each off unless the run's context lists it (``approvals="scope,design"``;
``--yes`` gives every approval that is on without a pause and records that it did):

- ``scope``: the structured scope, before planning; changes re-read the scope with them.
- ``design``: the accepted plan and its design decisions, before any code; changes re-plan.
- ``mvp``: once every task of the MVP phase is done, before the later phases start.
- ``final``: once every task is done, before delivery.

An approval is asked as a ``Question`` of kind ``approval`` whose ``gate`` field names it: it
travels with the other questions through the one pause, and is answered like them
(``approve``, ``reject``, or the changes wanted as free text). ``RunState.approvals`` holds,
per approval, the question that approved the current artifact; whatever changes the artifact
clears it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from oldnew.errors import ConfigurationError
from oldnew.hitl import questions
from oldnew.milestones import preview_url
from oldnew.schemas import Plan, Question

APPROVALS = ("scope", "design", "mvp", "final")
APPROVE, REJECT = questions.APPROVE, questions.REJECT
_TITLES = {
    "scope": "Scope review: is this what should be built?",
    "design": "Design review: approve the plan before any code is written?",
    "mvp": "MVP preview: the MVP phase is done; go on with the later phases?",
    "final": "Final review: every task is done; deliver?",
}


def enabled(spec: str) -> set[str]:
    """Return the approvals named in ``spec`` (comma-separated); raise on an unknown name."""
    names = {part.strip() for part in spec.split(",") if part.strip()}
    if "all" in names:
        return set(APPROVALS)
    unknown = sorted(names - set(APPROVALS))
    if unknown:
        raise ConfigurationError(
            f"unknown approval gate(s) {', '.join(unknown)}: choose from {', '.join(APPROVALS)} "
            "or 'all'"
        )
    return names


def approval_question(name: str, number: int, artifact: str) -> Question:
    """Return the question that asks for approval ``name``, showing ``artifact``."""
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


def ask(name: str, spec: str, yes: bool, state: dict[str, Any], artifact: str) -> dict[str, Any]:
    """Return the state update that asks for approval ``name``, or {} when it is off or given.

    ``spec`` is the run's ``approvals`` setting. With ``yes`` the approval is given on the spot,
    and recorded as a decision.
    """
    if name not in enabled(spec) or (state.get("approvals") or {}).get(name):
        return {}
    known = state.get("questions") or {}
    asked = [q for q in known.values() if q.get("gate") == name]
    if any(q["status"] == "pending" for q in asked):
        return {}
    q = approval_question(name, len(asked) + 1, artifact)
    if not yes:
        return {"questions": {q.id: q.model_dump()}}
    done = q.model_copy(update={"status": "answered", "answer": APPROVE, "decided_by": "yes"})
    return {"questions": {q.id: done.model_dump()}, "approvals": {name: q.id}}


def due_review(
    state: Mapping[str, Any],
    plan: Plan,
    done: Mapping[str, str | None],
    *,
    spec: str,
    yes: bool,
    hold_for_mvp: bool,
    settled: bool,
) -> dict[str, Any]:
    """Open the MVP preview or the final review when its moment has come ({} otherwise).

    ``spec`` names the approvals that are on; ``done`` maps each finished task to its
    commit; ``hold_for_mvp`` says later phases wait
    for the MVP preview; ``settled`` that nothing is left for the planner.
    """
    titles = {t.id: t.title for t in plan.tasks}

    def lines(ids: list[str]) -> list[str]:
        return [f"- {t} {titles[t]}: commit {(done.get(t) or '')[:12]}" for t in ids]

    if hold_for_mvp:
        mvp = [t.id for t in plan.tasks if t.phase == "mvp"]
        if all(t in done for t in mvp):
            milestone = next((p.milestone for p in plan.phases if p.name == "mvp"), "")
            url = preview_url(state)
            shown = [f"Preview: {url}"] if url else []
            artifact = "\n".join([f"MVP milestone: {milestone}", *shown, *lines(mvp)])
            return ask("mvp", spec, yes, dict(state), artifact)
    elif set(done) == set(titles) and settled:
        artifact = "\n".join(["Delivered tasks:", *lines(list(titles))])
        return ask("final", spec, yes, dict(state), artifact)
    return {}


def holds_for_mvp(state: Mapping[str, Any], plan: Plan, spec: str) -> bool:
    """Say whether the plan's later phases wait for the MVP preview gate."""
    phases = {t.phase for t in plan.tasks}
    return (
        "mvp" in enabled(spec)
        and not (state.get("approvals") or {}).get("mvp")
        and "mvp" in phases
        and len(phases) > 1
    )
