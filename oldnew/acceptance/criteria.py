"""Which requirements the tester writes tests for, and the questions for those it cannot.

Scoping gives each requirement given / when / then criteria. A requirement with none (or one
the scope model marked ``untestable``) is asked about as a clarification through the run's
``defaults`` policy, like any open point, whose default is to have no acceptance test for it
(its tasks' own tests check it); a person may instead describe what a test should check, and
that description becomes its one criterion. A scope with no criteria at all asks nothing: no
suite is written, and the run says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from oldnew.planning.clarify import decision_text
from oldnew.schemas import Clarification, Criterion, Feature, Scope

NO_TEST = "No acceptance test for {rid}: its tasks' own tests check it"
"""The default answer to a requirement's untestable question (``{rid}``: its id)."""
DESCRIBE = "Describe what a test should check (write it as your answer)"
"""The option that says a free-text answer describes the test."""
NO_CRITERIA = (
    "the scope gave no acceptance criteria for any requirement, so no acceptance suite is "
    "written: each task's own tests are the only check"
)
_QUESTION = "How should an acceptance test check {rid} ({title})?"


def untestable_question(feature: Feature) -> str:
    """Return the text of the clarification that asks how ``feature`` can be tested."""
    return _QUESTION.format(rid=feature.id, title=feature.title)


def has_criteria(scope: Scope) -> bool:
    """Say whether any requirement of ``scope`` has acceptance criteria."""
    return any(f.criteria for _, f in scope.requirements())


def untestable_clarifications(scope: Scope) -> list[Clarification]:
    """Return one clarification per requirement with no criteria (or marked untestable).

    None when no requirement has criteria (the scope gave none at all: nothing is asked, see
    :data:`NO_CRITERIA`). The caller checks the ``acceptance`` setting.
    """
    if not has_criteria(scope):
        return []
    out = []
    for _, f in scope.requirements():
        if f.criteria and not f.untestable:
            continue
        why = f.untestable or "the scope gives no checkable example of it"
        default = NO_TEST.format(rid=f.id)
        out.append(
            Clarification(
                question=untestable_question(f),
                options=[default, DESCRIBE],
                default=default,
                priority="medium",
                kind="missing_detail",
                phrase=f"{f.id}: {why}",
            )
        )
    return out


def described_test(feature: Feature, answer: str) -> Criterion | None:
    """Return the criterion a person's answer to ``feature``'s question describes, or None.

    The default answer, the "describe" option itself and an empty answer describe nothing.
    """
    text = answer.strip()
    if not text or text in (NO_TEST.format(rid=feature.id), DESCRIBE):
        return None
    return Criterion(
        id=f"{feature.id}.1",
        given="the requirement as the scope states it",
        when="it is used as the person describes",
        then=text,
    )


def testable(scope: Scope, questions: Mapping[str, Mapping[str, Any]]) -> dict[str, Feature]:
    """Return requirement id -> the requirement with the criteria the tester writes tests for.

    A requirement keeps its own criteria (unless marked untestable); one without gets the
    criterion a person described in answer to its question, if any; the rest are left out.
    """
    answers = {
        str(q.get("title")): str(q.get("answer") or "")
        for q in questions.values()
        if q.get("kind") == "clarification" and q.get("status") == "answered"
    }
    out: dict[str, Feature] = {}
    for _, f in scope.requirements():
        if f.criteria and not f.untestable:
            out[f.id] = f
            continue
        described = described_test(f, answers.get(untestable_question(f), ""))
        if described is not None:
            out[f.id] = f.model_copy(update={"criteria": [described], "untestable": ""})
    return out


def untestable_reasons(scope: Scope, questions: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """Return requirement id -> why it has no acceptance test, for those left without one."""
    kept = testable(scope, questions)
    return {
        f.id: f.untestable or "the scope gives no checkable example of it"
        for _, f in scope.requirements()
        if f.id not in kept
    }


def answers_for(scope: Scope, feature: Feature) -> list[str]:
    """Return the answered clarifications that concern ``feature``'s criteria, one line each."""
    ids = {c.id for c in feature.criteria}
    return [
        decision_text(c.question, c.answer, c.decided_by)
        for c in scope.clarifications
        if c.answer and (ids & set(c.criteria) or c.question == untestable_question(feature))
    ]
