"""The failure policy: one row per failure class and one per question kind.

A failure class (``CLASSES``) says how a call that fails so is retried, where a failed
validation of that class goes, and which question it raises once nothing else helps. A question
kind (``KINDS``) says what a person is offered (options, the recommended one, whether free text
is accepted), what type of escalation they see, how severe it is at least, where the task goes
on with the answer, and whether the scheduler hands a task waiting on it to the planner instead.

The retry loop (``recovery.retry``), the diagnosis of failed validations
(``recovery.diagnosis``), the coder's shrink-once (``nodes.coding``), the question builder
(``hitl.questions``), ``schemas.Question``, the escalation records (``hitl.records``), the
escalate node and the scheduler's review (``execution.scheduler``) read these tables; none keeps a
list of its own. Adding a failure class is a row here (and its ``FailureClass`` member, which
a test checks against the rows), its rule in ``recovery.classify.RULES``, and a test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FailureClass = Literal[
    "transient",
    "recoverable",
    "configuration",
    "design_flaw",
    "external_blocker",
    "context_overflow",
]
"""The failure classes, for type checking; ``CLASSES`` holds one row for each."""
Retry = Literal["backoff", "shrink", "none"]
Route = Literal["model", "person", "planner"]
Handoff = Literal["design_flaw", "split"]
Resume = Literal["code", "fix", "dependencies"]
Severity = Literal["low", "medium", "high", "critical"]
EscalationType = Literal[
    "configuration", "design_decision", "external_service", "unclear_requirement", "approval"
]
SEVERITIES: tuple[Severity, ...] = ("low", "medium", "high", "critical")


@dataclass(frozen=True)
class FailurePolicy:
    """What happens to one failure class."""

    retry: Retry
    """How a call that fails so is retried: ``backoff`` (jittered, up to the run's cap),
    ``shrink`` (once, with a smaller prompt; never unchanged), or ``none``."""
    route: Route
    """Where a failed validation of this class goes: back to the ``model`` (fix rounds), to a
    ``person`` at once (a task that is not critical becomes a known limitation instead), or to
    the ``planner`` at once (through a question of a kind the scheduler hands over)."""
    kind: str
    """The kind (a row of ``KINDS``) of the question it raises once retrying is spent."""
    title: str
    """The question's title: ``{what}`` names the task or step, ``{reason}`` says why."""
    advice: str = "Found at: {where}."
    """What a person is told about a failed validation of this class: ``{detail}`` is what
    the classifier singled out (a variable, a package), ``{where}`` the files that mention it."""
    recommended: str | None = None
    """The option recommended, when not the kind's."""


@dataclass(frozen=True)
class KindPolicy:
    """What a question of one kind offers a person, and how it is treated."""

    type: EscalationType
    """The escalation's type, as a person sees it."""
    options: tuple[str, ...] = ()
    """Option keys offered on a task's question (``hitl.questions`` words them)."""
    recommended: str | None = None
    free_text: bool = True
    """Whether an answer outside the options is accepted (guidance for the model)."""
    retry_label: str = "Try again"
    """What the ``retry`` option does for this kind, in a person's words."""
    severity: Severity = "low"
    """The least severity its escalation record gets, wherever its task is in the plan:
    ``high`` for what only a person can supply (a setting, a key, a service)."""
    resume: Resume = "code"
    """Where the task goes on with an answer other than skip: the coder codes it again with
    the answer, the fixer gets a fresh set of rounds (free text is its guidance), or the
    dependencies step runs again (an approval recorded, or a cause fixed outside)."""
    handoff: Handoff | None = None
    """The request the scheduler hands to the planner for a task waiting on such a question
    (``design_flaw``: re-plan around it; ``split``: split the task), instead of a person."""


CLASSES: dict[str, FailurePolicy] = {
    "transient": FailurePolicy(
        retry="backoff",
        route="person",
        kind="external_service",
        title="{what} is blocked by an unavailable service: {reason}",
    ),
    "recoverable": FailurePolicy(
        retry="none", route="model", kind="model_output", title="{what} failed: {reason}"
    ),
    "configuration": FailurePolicy(
        retry="none",
        route="person",
        kind="configuration",
        title="{what} needs configuration: {reason}",
        advice="Variable: {detail}. Read at: {where}. The checks run in a sandbox that passes "
        "no secrets and no environment of yours: answer how the code should get it (a default, "
        "or a fake value the tests set), or 'skip'.",
    ),
    "design_flaw": FailurePolicy(
        retry="none",
        route="planner",
        kind="design_flaw",
        title="{what} cannot work as planned: {reason}",
    ),
    "external_blocker": FailurePolicy(
        retry="none",
        route="person",
        kind="external_service",
        title="{what} is blocked by an unavailable service: {reason}",
        advice="Needed by: {where}. Nothing can be installed or reached from the sandbox: "
        "'mock' builds against a stand-in, 'other' names a replacement, 'skip' leaves it out "
        "of this delivery.",
    ),
    "context_overflow": FailurePolicy(
        retry="shrink",
        route="person",
        kind="model_output",
        title="{what} does not fit the model's context even when shrunk",
        recommended="skip",
    ),
}
"""Failure class -> its policy."""

_TASK = ("retry", "skip")
KINDS: dict[str, KindPolicy] = {
    "configuration": KindPolicy(
        "configuration",
        _TASK,
        "retry",
        retry_label="Try again (after fixing the cause)",
        severity="high",
    ),
    "external_service": KindPolicy(
        "external_service",
        ("retry", "mock", "other", "skip"),
        "retry",
        retry_label="Try again (after fixing the cause)",
        severity="high",
    ),
    "model_output": KindPolicy(
        "design_decision", _TASK, "retry", free_text=False, retry_label="Ask the model again"
    ),
    "fix_limit": KindPolicy(
        "design_decision",
        _TASK,
        "retry",
        retry_label="Give the fixer another set of rounds",
        resume="fix",
        handoff="split",
    ),
    "design_flaw": KindPolicy(
        "design_decision",
        _TASK,
        "retry",
        retry_label="Code it again, avoiding the flaw",
        handoff="design_flaw",
    ),
    "timeout": KindPolicy(
        "design_decision", _TASK, "retry", retry_label="Run it again with a fresh time budget"
    ),
    "design_decision": KindPolicy("design_decision"),
    "plan_invalid": KindPolicy(
        "design_decision",
        ("retry", "abort"),
        "retry",
        free_text=False,
        retry_label="Ask the model again",
    ),
    "scope_unclear": KindPolicy("unclear_requirement", ("abort",)),
    "clarification": KindPolicy("unclear_requirement"),
    "approval": KindPolicy("approval", ("approve", "reject"), "approve"),
    "dependency": KindPolicy("approval", ("approve", "without"), "approve", resume="dependencies"),
    "test_contradiction": KindPolicy(
        "unclear_requirement", ("keep", "revise"), "keep", severity="medium", resume="fix"
    ),
    "dependency_blocked": KindPolicy(
        "external_service",
        ("retry", "instead", "skip"),
        "retry",
        free_text=False,
        retry_label="Try the install again (after fixing the cause named above)",
        severity="high",
        resume="dependencies",
    ),
}
"""Question kind -> its policy; every question a run raises has one of these kinds."""


def failure(cls: str) -> FailurePolicy:
    """Return the policy of failure class ``cls``; raise KeyError naming the known ones."""
    try:
        return CLASSES[cls]
    except KeyError:
        raise KeyError(f"no policy for failure class {cls!r}: add a row to CLASSES") from None


def kind(name: str) -> KindPolicy:
    """Return the policy of question kind ``name``; raise KeyError naming the fix."""
    try:
        return KINDS[name]
    except KeyError:
        raise KeyError(f"no policy for question kind {name!r}: add a row to KINDS") from None


def handoff(name: str | None) -> Handoff | None:
    """Return what the planner is asked for a task waiting on a question of kind ``name``."""
    row = KINDS.get(name or "")
    return row.handoff if row else None


def resume(name: str | None) -> Resume:
    """Return where a task goes on after a question of kind ``name`` is answered."""
    row = KINDS.get(name or "")
    return row.resume if row else "code"


def at_least(severity: Severity, kind_name: str | None) -> Severity:
    """Return ``severity`` raised to the least severity of question kind ``kind_name``."""
    row = KINDS.get(kind_name or "")
    floor = row.severity if row else "low"
    return max(severity, floor, key=SEVERITIES.index)
