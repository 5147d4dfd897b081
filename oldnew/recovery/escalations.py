"""Questions for a person, one kind per failure class that no retry or model can cure."""

from __future__ import annotations

from oldnew.recovery.retry import ClassifiedFailure
from oldnew.schemas import Option, Question

_SKIP = Option(key="skip", label="Leave the task undone and record it as a known limitation")
_RETRY = Option(key="retry", label="Try again (after fixing the cause)")
_ABORT = Option(key="abort", label="Stop the run and write the report")
_SERVICE = [
    _RETRY,
    Option(key="mock", label="Build against a mock of the service for now"),
    Option(key="other", label="Use another service (name it in your answer)"),
    _SKIP,
]

# failure class -> (question kind, title, options, recommended, free text accepted)
_BY_CLASS: dict[str, tuple[str, str, list[Option], str, bool]] = {
    "configuration": (
        "configuration",
        "{what} needs configuration: {reason}",
        [_RETRY, _SKIP],
        "retry",
        True,
    ),
    "transient": (
        "external_service",
        "{what} is blocked by an unavailable service: {reason}",
        _SERVICE,
        "retry",
        True,
    ),
    "external_blocker": (
        "external_service",
        "{what} is blocked by an unavailable service: {reason}",
        _SERVICE,
        "retry",
        True,
    ),
    "context_overflow": (
        "model_output",
        "{what} does not fit the model's context even when shrunk",
        [_RETRY, _SKIP],
        "skip",
        False,
    ),
}
_OTHER = ("model_output", "{what} failed: {reason}", [_RETRY, _SKIP], "retry", False)


def retry_or_skip(
    qid: str, kind: str, task_id: str, title: str, detail: str, retry: str
) -> Question:
    """Return a task's question whose answers are ``retry`` (labelled ``retry``) or skip.

    Free text is accepted too: it reaches the coder or fixer as guidance.
    """
    return Question.model_validate(
        {
            "id": qid,
            "kind": kind,
            "task_id": task_id,
            "title": title,
            "detail": detail,
            "options": [
                {"key": "retry", "label": retry},
                {"key": "skip", "label": "Leave the task undone and record it as a blocker"},
            ],
            "recommended": "retry",
            "free_text": True,
        }
    )


def failure_question(
    qid: str, task_id: str | None, what: str, failure: ClassifiedFailure
) -> Question:
    """Return the question a failure raises, with options that fit its class."""
    c = failure.classification
    detail = f"{c.reason} (after {failure.attempts} attempt(s))."
    if c.detail:
        detail += f"\n{c.detail[:1500]}"
    kind, title, options, recommended, free_text = _BY_CLASS.get(c.cls, _OTHER)
    return Question.model_validate(
        {
            "id": qid,
            "kind": kind,
            "task_id": task_id,
            "detail": detail,
            "title": title.format(what=what, reason=c.reason),
            "options": [o.model_dump() for o in options],
            "recommended": recommended,
            "free_text": free_text,
        }
    )


def run_failure_question(qid: str, what: str, failure: ClassifiedFailure) -> Question:
    """Return the question for a failure of a run-wide step (scoping, planning)."""
    q = failure_question(qid, None, what, failure)
    return q.model_copy(update={"options": [_RETRY, _ABORT], "recommended": "retry"})
