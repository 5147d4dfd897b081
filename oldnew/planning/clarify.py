"""Clarifications: keep the model's few best questions, ask them or take their defaults.

The scope model proposes at most three specific questions, each with a default. The run's
``defaults`` policy decides which a person is asked ("ask": all; "high": the high-priority ones;
"auto": none); the others are answered with their default at once and recorded as decisions a
person can revisit. The planner sees every answer (``settle``).
"""

from __future__ import annotations

from typing import Any, Literal

from oldnew.hitl.questions import question
from oldnew.planning.content import answer_says_nothing, clarification_problem
from oldnew.schemas import Clarification, Question, Scope

DefaultsPolicy = Literal["ask", "high", "auto"]
DEFAULTS_POLICIES: tuple[DefaultsPolicy, ...] = ("ask", "high", "auto")
MAX_CLARIFICATIONS = 3
QUESTION_PREFIX = "clarify-"
_RANK = {"high": 0, "medium": 1, "low": 2}


def tidy_clarifications(scope: Scope, dropped: list[str] | None = None) -> tuple[Scope, list[str]]:
    """Return the scope with at most three distinct clarifications, high priority first.

    ``dropped`` holds notes on clarifications that did not validate; the returned notes add
    those that say nothing (a placeholder question or default), the duplicates and those over
    the cap. Options that say nothing are left out. An ``answer`` the model filled in is
    cleared: only the run decides answers.
    """
    notes = list(scope.dropped_clarifications if dropped is None else dropped)
    kept: list[Clarification] = []
    seen: set[str] = set()
    for c in scope.clarifications:
        key = " ".join(c.question.lower().split())
        empty = clarification_problem(c)
        if empty:
            notes.append(empty)
            continue
        c = c.model_copy(update={"options": [o for o in c.options if not answer_says_nothing(o)]})
        if key in seen:
            notes.append(f"duplicate clarification dropped: {c.question[:200]}")
            continue
        seen.add(key)
        kept.append(c.model_copy(update={"answer": None, "decided_by": None}))
    kept.sort(key=lambda c: _RANK[c.priority])
    for c in kept[MAX_CLARIFICATIONS:]:
        notes.append(
            f"clarification over the cap of {MAX_CLARIFICATIONS} dropped: {c.question[:200]}"
        )
    return scope.model_copy(update={"clarifications": kept[:MAX_CLARIFICATIONS]}), notes


def is_asked(clarification: Clarification, policy: DefaultsPolicy) -> bool:
    """Return whether ``policy`` asks a person this clarification (else its default is taken)."""
    if policy not in DEFAULTS_POLICIES:
        raise ValueError(f"defaults policy must be one of {', '.join(DEFAULTS_POLICIES)}")
    return policy == "ask" or (policy == "high" and clarification.priority == "high")


def _detail(c: Clarification) -> str:
    about = f'The scope says "{c.phrase}" ({c.kind.replace("_", " ")}). ' if c.phrase else ""
    return f"{about}Priority {c.priority}. Proposed default: {c.default}."


def clarification_questions(
    scope: Scope, policy: DefaultsPolicy, *, first: int = 1
) -> list[Question]:
    """Return one Question per clarification: pending when asked, else answered by default.

    Ids run ``clarify-<first>``, ``clarify-<first+1>``, ... The default is always an option
    (added when the model gave it as free text) and the recommended one; any other free-text
    answer is accepted too.
    """
    out = []
    for i, c in enumerate(scope.clarifications, start=first):
        labels = c.options if c.default in c.options else [*c.options, c.default]
        q = question(
            "clarification",
            f"{QUESTION_PREFIX}{i}",
            c.question,
            _detail(c),
            choices=labels,
            recommended=c.default,
            free_text=True,
        )
        if not is_asked(c, policy):
            q = q.model_copy(update={"status": "answered", "answer": c.default})
            q.decided_by = "default"
        out.append(q)
    return out


def settle(scope: Scope, questions: dict[str, dict[str, Any]]) -> Scope:
    """Return the scope with each clarification's answer, from the run's answered questions."""
    answered = {
        q["title"]: q
        for q in questions.values()
        if q.get("kind") == "clarification" and q.get("status") == "answered"
    }
    settled = []
    for c in scope.clarifications:
        q = answered.get(c.question)
        if q is None:
            settled.append(c)
            continue
        by = "default" if q.get("decided_by") == "default" else "person"
        settled.append(c.model_copy(update={"answer": q.get("answer"), "decided_by": by}))
    return scope.model_copy(update={"clarifications": settled})


def decision_text(question: str, answer: str, decided_by: str | None) -> str:
    """Return a clarification's answer as one decision line for prompts and memory."""
    taken = " (taken by default)" if decided_by == "default" else ""
    return f"{question} -> {answer}{taken}"
