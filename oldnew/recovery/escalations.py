"""Questions for a person, one kind per failure class that no retry or model can cure."""

from __future__ import annotations

from oldnew.recovery.retry import ClassifiedFailure
from oldnew.schemas import Option, Question

_SKIP = Option(key="skip", label="Leave the task undone and record it as a known limitation")
_RETRY = Option(key="retry", label="Try again (after fixing the cause)")


def failure_question(
    qid: str, task_id: str | None, what: str, failure: ClassifiedFailure
) -> Question:
    """Return the question a failure of class configuration, external or other raises."""
    c = failure.classification
    detail = f"{c.reason} (after {failure.attempts} attempt(s))."
    if c.detail:
        detail += f"\n{c.detail[:1500]}"
    if c.cls == "configuration":
        return Question(
            id=qid,
            kind="configuration",
            task_id=task_id,
            title=f"{what} needs configuration: {c.reason}",
            detail=detail,
            options=[_RETRY, _SKIP],
            recommended="retry",
            free_text=True,
        )
    if c.cls in ("transient", "external_blocker"):
        options = [
            _RETRY,
            Option(key="mock", label="Build against a mock of the service for now"),
            Option(key="other", label="Use another service (name it in your answer)"),
            _SKIP,
        ]
        return Question(
            id=qid,
            kind="external_service",
            task_id=task_id,
            title=f"{what} is blocked by an unavailable service: {c.reason}",
            detail=detail,
            options=options,
            recommended="retry",
            free_text=True,
        )
    if c.cls == "context_overflow":
        return Question(
            id=qid,
            kind="model_output",
            task_id=task_id,
            title=f"{what} does not fit the model's context even when shrunk",
            detail=detail,
            options=[_RETRY, _SKIP],
            recommended="skip",
            free_text=False,
        )
    return Question(
        id=qid,
        kind="model_output",
        task_id=task_id,
        title=f"{what} failed: {c.reason}",
        detail=detail,
        options=[_RETRY, _SKIP],
        recommended="retry",
        free_text=False,
    )


_ABORT = Option(key="abort", label="Stop the run and write the report")


def run_failure_question(qid: str, what: str, failure: ClassifiedFailure) -> Question:
    """Return the question for a failure of a run-wide step (scoping, planning)."""
    q = failure_question(qid, None, what, failure)
    return q.model_copy(update={"options": [_RETRY, _ABORT], "recommended": "retry"})
