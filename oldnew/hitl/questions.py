"""Every question a run asks a person is built here, from one set of options.

Each option key means one thing wherever it is offered:

- ``retry``: do the step again, with the answer as guidance (its label says what the step is,
  from the question kind's row in ``recovery.policy``);
- ``skip``: leave the task undone. On a task that is not critical it is recorded as a known
  limitation (its partial work kept on ``oldnew/partial/<task>``) and the run delivers the
  rest; on a critical task the label says plainly that the task and its dependents end blocked;
- ``mock`` / ``other``: build against a stand-in / another service named in the answer;
- ``abort``: stop the run and write the report (only where the run cannot go on without it);
- ``drop``: drop a feedback item; ``read_all``: read an over-long scope anyway;
- ``approve`` / ``reject``: an approval gate;
- ``without`` / ``instead``: new packages a task wants: do without them / use another package
  (named in the answer);
- ``build``: packages that publish no wheel: allow a source build of them (in the sandbox,
  without network; offered only on that question);
- ``keep`` / ``revise``: an acceptance test a fixer contests: it stands, the code must meet it
  / take the tester's revision of it (offered only when the tester revised it).

What a kind offers by default (options, the recommended one, whether free text is accepted)
is its row in ``recovery.policy.KINDS``; a failure's title is its class's row in ``CLASSES``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from oldnew.deps.errors import DependencyError
from oldnew.deps.manifest import Dependency
from oldnew.feedback.items import DROP
from oldnew.graph.state import TaskState, next_question_id
from oldnew.recovery import policy
from oldnew.recovery.retry import ClassifiedFailure
from oldnew.schemas import AskHuman, Option, Question

RETRY, SKIP, ABORT, READ_ALL = "retry", "skip", "abort", "read_all"
APPROVE, REJECT = "approve", "reject"
WITHOUT, INSTEAD, MOCK = "without", "instead", "mock"
BUILD = "build"
KEEP, REVISE = "keep", "revise"
RUN_STEP = (RETRY, ABORT)
"""The options of a run-wide step (scoping, planning): it cannot be skipped."""
SKIP_TO_LIMITATION = (
    "Skip this task: keep its partial work on a branch and deliver the rest, with this task "
    "listed as a known limitation"
)
SKIP_BLOCKS = (
    "Skip this task: it is critical, so it and every task that depends on it end blocked, "
    "and so does the run"
)
_LABELS = {
    ABORT: "Stop the run and write the report",
    MOCK: "Build against a mock of the service for now (reported as a known limitation)",
    "other": "Use another service (name it in your answer)",
    DROP: "Drop this feedback; change nothing",
    READ_ALL: "Read every section anyway",
    APPROVE: "Approve and go on",
    REJECT: "Reject: stop the run and write the report",
    WITHOUT: "Reject: the coder does it without these packages",
    INSTEAD: "Use another package instead (name it in your answer)",
    BUILD: "Allow a source build of these packages: built in the sandbox, without network",
    KEEP: "Keep the test: it stands, and the fixer must make the code pass it",
    REVISE: "Take the tester's revision of the test (committed to main as the tester's)",
}


def label(key: str, kind: str, *, critical: bool = True) -> str:
    """Return what option ``key`` says on a question of ``kind`` (for a critical task or not)."""
    if key == RETRY:
        return policy.kind(kind).retry_label
    if key == SKIP:
        return SKIP_BLOCKS if critical else SKIP_TO_LIMITATION
    return _LABELS[key]


def question(
    kind: str,
    qid: str,
    title: str,
    detail: str = "",
    *,
    keys: Sequence[str] | None = None,
    choices: Sequence[str] | None = None,
    recommended: str | None = None,
    free_text: bool | None = None,
    critical: bool = True,
    **fields: Any,
) -> Question:
    """Return a question of ``kind``; what is not given comes from the kind's policy row.

    ``keys`` are option keys from this module's set (the kind's by default); ``choices`` are
    answers offered as they are (a model's or a scope's own options), instead. The recommended
    answer is dropped unless it is offered. ``fields`` are further ``Question`` fields
    (``task_id``, ``gate``, ``status``, ``answer``, ...).
    """
    row = policy.kind(kind)
    if choices is not None:
        options = [Option(key=c, label=c) for c in choices]
    else:
        options = [
            Option(key=k, label=label(k, kind, critical=critical))
            for k in (row.options if keys is None else keys)
        ]
    pick = row.recommended if recommended is None else recommended
    return Question(
        id=qid,
        kind=kind,
        title=title,
        detail=detail,
        options=options,
        recommended=pick if any(o.key == pick for o in options) else None,
        free_text=row.free_text if free_text is None else free_text,
        **fields,
    )


def task_question(
    state: TaskState, kind: str, title: str, detail: str = "", **how: Any
) -> Question:
    """Return task ``state``'s next question of ``kind`` (see :func:`question` for ``how``).

    Its skip option is worded by whether the task is critical (unknown counts as critical).
    """
    return question(
        kind,
        next_question_id(state),
        title,
        detail,
        task_id=state["task"]["id"],
        critical=state.get("critical", True),
        **how,
    )


def what_task(state: TaskState) -> str:
    """Return how a task's questions name it: ``Task T3 (title)``."""
    task = state["task"]
    return f"Task {task['id']} ({task['title']})"


def _failure_detail(failure: ClassifiedFailure) -> str:
    c = failure.classification
    detail = f"{c.reason} (after {failure.attempts} attempt(s))."
    return f"{detail}\n{c.detail[:1500]}" if c.detail else detail


def failure_question(state: TaskState, failure: ClassifiedFailure) -> Question:
    """Return the question a task's classified failure raises, by its class's policy row."""
    c = failure.classification
    row = policy.failure(c.cls)
    title = row.title.format(what=what_task(state), reason=c.reason)
    return task_question(
        state, row.kind, title, _failure_detail(failure), recommended=row.recommended
    )


def run_failure_question(qid: str, what: str, failure: ClassifiedFailure) -> Question:
    """Return the question for a classified failure of a run-wide step (scoping, planning)."""
    c = failure.classification
    row = policy.failure(c.cls)
    title = row.title.format(what=what, reason=c.reason)
    return question(
        row.kind, qid, title, _failure_detail(failure), keys=RUN_STEP, recommended=RETRY
    )


def output_question(qid: str, what: str, error: Exception) -> Question:
    """Return the question for a run-wide step whose model output stayed unusable."""
    return question(
        "model_output",
        qid,
        f"The model's {what} could not be used",
        str(error)[:2000],
        keys=RUN_STEP,
    )


def task_output_question(state: TaskState, error: Exception) -> Question:
    """Return the question for a task whose model output stayed unusable."""
    return task_question(
        state,
        "model_output",
        f"The model's code for task {state['task']['id']} could not be used",
        str(error)[:2000],
    )


def asked_question(state: TaskState, ask: AskHuman) -> Question:
    """Return the question the coder asked (its kind and answers) on a task's behalf."""
    task = state["task"]
    return task_question(
        state,
        ask.kind,
        ask.question,
        f"Asked by the coder of task {task['id']} ({task['title']}).",
        choices=ask.options,
        recommended=ask.recommended or "",  # None would take the kind's own
        free_text=True,
    )


def contradiction_question(
    state: TaskState, ask: AskHuman, review: Mapping[str, Any] | None, problem: str = ""
) -> Question:
    """Return the question on an acceptance test the coder (fixer) says contradicts its requirement.

    Its detail shows the claim, the tester's verdict and reason, and the revision's diff;
    ``revise`` is offered only when the tester revised the test, and recommended then.
    """
    what = f"{what_task(state)}: an acceptance test is contested"
    lines = [f"The claim (the coder of task {state['task']['id']}): {ask.question}"]
    if review is None:
        lines.append(problem or "No acceptance test of this task's requirements is on main.")
        return task_question(state, "test_contradiction", what, "\n".join(lines), keys=(KEEP,))
    verdict = "the test is right" if review["verdict"] == "test_right" else "the test is wrong"
    lines += [
        f"Test file: {review['file']} (requirement {review['requirement']})",
        f"The tester's verdict: {verdict}. {review['reason']}",
    ]
    if review.get("diff"):
        lines += ["The tester's revision:", str(review["diff"])]
    revised = bool(review.get("revision"))
    return task_question(
        state,
        "test_contradiction",
        what,
        "\n".join(lines),
        keys=(KEEP, REVISE) if revised else (KEEP,),
        recommended=REVISE if revised else KEEP,
    )


def limitation_of(question: Mapping[str, Any], reason: str) -> dict[str, Any]:
    """Return the known-limitation record of a task given up on ``question`` (a dump).

    Its options are what could still be done about it; skipping is what was done.
    """
    return {
        "kind": question.get("kind"),
        "reason": reason,
        "detail": str(question.get("detail", ""))[:1500],
        "options": [o["label"] for o in question.get("options", []) if o["key"] != SKIP],
    }


def _package_line(dep: Dependency, versions: Mapping[str, str], task: str) -> str:
    version = versions.get(dep.key, "?")
    group = "" if dep.group == "main" else f", {dep.group} group"
    why = f": {dep.why}" if dep.why else ""
    return (
        f"- {dep.name} {dep.spec or '(any version)'} -> {version} ({dep.ecosystem}{group}), "
        f"wanted by {task}{why}"
    )


def dependency_question(
    state: TaskState, deps: Sequence[Dependency], versions: Mapping[str, str]
) -> Question:
    """Return the approval question for new packages a task declares (``--deps ask``)."""
    names = ", ".join(d.name for d in deps)
    lines = [_package_line(d, versions, what_task(state)) for d in deps]
    detail = (
        "The scope does not name these packages; the task declares them:\n"
        + "\n".join(lines)
        + "\nAnswer 'approve' to install them, 'without' to have the coder do without them, "
        "or the name of another package to use instead."
    )
    return task_question(
        state,
        "dependency",
        f"{what_task(state)} wants {len(deps)} new package{'' if len(deps) == 1 else 's'}: {names}",
        detail,
        packages=[d.key for d in deps],
    )


def dependency_blocked_question(state: TaskState, error: DependencyError) -> Question:
    """Return the question for dependencies only a person can unblock (index, wheels, caps)."""
    titles = {
        "unreachable": "cannot fetch its packages: the package index does not answer",
        "source_only": "needs packages that publish no wheel",
        "caps": "needs more packages than the run allows",
        "install": "could not install its packages",
    }
    # Only packages with no wheel can be built; the kind's other options stay in its order.
    keys = policy.kind("dependency_blocked").options
    if error.kind == "source_only":
        keys = (*keys[:1], BUILD, *keys[1:])
    return task_question(
        state,
        "dependency_blocked",
        f"{what_task(state)} {titles.get(error.kind, 'could not install its packages')}",
        error.message[:2500],
        keys=keys,
        packages=list(error.packages),
    )
