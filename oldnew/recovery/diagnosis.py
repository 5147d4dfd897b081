"""Where a failed validation goes: by failure class first, then by whether fixing still helps.

``validate`` hands every failed validation here. The order:

1. The diagnostics' class (``classify_diagnostics``), by its row in ``recovery.policy``: a
   class routed to a person (a missing third-party package or an unreachable service, a missing
   environment variable) asks at once, with alternatives or instructions; no fix round is spent
   on what no code change cures. A class routed to the planner (a circular dependency) raises a
   question whose kind the scheduler hands to the planner.
2. Everything else the model can fix, unless the task is stuck (``recovery.stall``: two fix
   rounds in a row repeat the failure before them) or its fix rounds ran out: then ONE fresh
   regeneration from scratch, with its own fix rounds, and after that a fix_limit question.

A question for a task that cannot be finished goes through :func:`decide`: a critical task
escalates, any other becomes a known limitation (``nodes.limitation``) and the run goes on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oldnew.gates import ValidationResult
from oldnew.graph.state import TaskState
from oldnew.hitl.questions import failure_question, limitation_of, task_question, what_task
from oldnew.recovery import policy
from oldnew.recovery.classify import Classification, classify_diagnostics
from oldnew.recovery.retry import ClassifiedFailure
from oldnew.recovery.stall import REGENERATIONS, Round, error_fingerprint, fresh_start_note
from oldnew.recovery.stall import stuck_reason as _stuck_reason
from oldnew.schemas import Question

STUCK_AFTER = 2
"""Fix rounds in a row that repeat the failure before them (same errors, or no change to a
validated file) after which a task is stuck: a random slip is fixed, a loop is not."""


@dataclass
class Diagnosis:
    """What ``validate`` adds to its update, and the event that says why."""

    update: dict[str, Any]
    event: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)


def project_modules(tree: Path, planned: list[str]) -> set[str]:
    """Return the top-level import names the project itself provides (or plans to)."""
    names = {Path(p).parts[0].removesuffix(".py") for p in planned if Path(p).parts}
    for entry in tree.iterdir() if tree.is_dir() else []:
        if entry.name.startswith("."):
            continue
        if entry.is_dir() or entry.suffix == ".py":
            names.add(entry.name.removesuffix(".py"))
    return names


def _where(diagnostics: list[str], needle: str, limit: int = 5) -> list[str]:
    """Return the ``file:line`` of each diagnostic that mentions ``needle``."""
    out = []
    for line in diagnostics:
        if needle and needle in line:
            out.append(":".join(line.split(":", 2)[:2]))
    return out[:limit]


def diagnostic_question(
    state: TaskState, c: Classification, diagnostics: list[str], evidence: str
) -> Question:
    """Return the question for a failure no fix round can cure, with what to do about it."""
    q = failure_question(state, ClassifiedFailure(c, 1))
    if policy.failure(c.cls).route == "planner":
        shown = "\n".join(diagnostics[:5])
        detail = f"The checks show a structural problem:\n{shown}\nEvidence: {evidence}"
        return q.model_copy(update={"detail": detail})
    where = ", ".join(_where(diagnostics, c.detail)) or "see the evidence"
    extra = policy.failure(c.cls).advice.format(detail=c.detail, where=where)
    return q.model_copy(update={"detail": f"{q.detail}\n{extra}\nEvidence: {evidence}"})


def fix_limit_question(state: TaskState, rounds: int, why: str) -> Question:
    """Return the question for a task that fixing and a fresh start did not cure."""
    shown = "\n".join(state.get("diagnostics", [])[:10])
    return task_question(
        state,
        "fix_limit",
        f"{what_task(state)} still fails after {rounds} fix "
        f"round{'' if rounds == 1 else 's'} and a fresh start: {why}",
        f"Last diagnostics:\n{shown}\nEvidence: {(state.get('evidence') or ['-'])[-1]}",
    )


def wait(state: TaskState, question: Question) -> dict[str, Any]:
    """Return the update for a task that waits on ``question``."""
    return {
        "status": "waiting",
        "question": question.model_dump(),
        "questions_asked": state.get("questions_asked", 0) + 1,
    }


def decide(state: TaskState, question: Question) -> dict[str, Any]:
    """Return the update for a task that cannot go on alone: escalate, or a known limitation.

    A critical task (on the critical path or serving an MVP or must requirement; unknown
    counts as critical) asks a person. Any other task records a known limitation with the
    question's options, and nobody waits for it.
    """
    if state.get("critical", True):
        return wait(state, question)
    limitation = limitation_of(question.model_dump(), question.title)
    return {"status": "limiting", "question": None, "limitation": limitation}


def diagnose(
    state: TaskState,
    result: ValidationResult,
    diagnostics: list[str],
    evidence: str,
    *,
    max_fix_rounds: int,
    modules: set[str],
) -> Diagnosis:
    """Decide where a failed validation goes; see the module docstring for the order."""
    failed = [c.name for c in result.checks if c.status == "failed"]
    current = Round(error_fingerprint(diagnostics, failed), result.fingerprint)
    previous = state.get("last_failure")
    repeat = _stuck_reason(previous, current)
    repeats = int((previous or {}).get("repeats", 0)) + 1 if repeat else 0
    base: dict[str, Any] = {"last_failure": {**current.to_dict(), "repeats": repeats}}
    view: TaskState = {
        **state,
        "diagnostics": diagnostics,
        "evidence": [*(state.get("evidence") or []), evidence],
    }
    c = classify_diagnostics(diagnostics, modules)
    route = policy.failure(c.cls).route if c is not None else "model"
    if c is not None and route != "model":
        question = diagnostic_question(view, c, diagnostics, evidence)
        # A question for the planner waits whatever the task's criticality: the scheduler
        # hands it to the planner, and asks a person only once the re-plans ran out.
        update = base | (wait(view, question) if route == "planner" else decide(view, question))
        return _outcome(update, {"failure": c.cls, "reason": c.reason})
    rounds = state.get("fix_round", 0)
    stuck = repeat if repeats >= STUCK_AFTER else None
    if stuck is None and rounds < max_fix_rounds:
        return Diagnosis(base)
    why = stuck or f"{rounds} fix rounds did not make it pass"
    done = state.get("regenerations", 0)
    if done < REGENERATIONS:
        update = {
            "last_failure": None,  # the new approach is judged on its own rounds
            "fix_round": 0,
            "status": "coding",
            "regenerations": done + 1,
            "fresh_start": fresh_start_note(f"The last approach failed: {why}", diagnostics),
        }
        return _outcome(update, {"failure": "recoverable", "reason": why, "stuck": bool(stuck)})
    question = fix_limit_question(view, rounds, why)
    update = base | decide(view, question)
    return _outcome(update, {"failure": "recoverable", "reason": why, "stuck": bool(stuck)})


def _outcome(update: dict[str, Any], fields: dict[str, Any]) -> Diagnosis:
    """Name the event for ``update``: escalated, limited (known limitation) or regenerate."""
    event = {"waiting": "escalated", "limiting": "limited", "coding": "regenerate"}
    question = (update.get("question") or {}).get("id")
    return Diagnosis(update, event[update["status"]], {**fields, "question": question})
