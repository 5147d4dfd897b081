"""Routing functions: each returns a Literal, so the diagram shows every way out."""

from __future__ import annotations

from typing import Literal, cast

from oldnew import acceptance, milestones
from oldnew.feedback.items import malformed_feedback, ready_feedback
from oldnew.graph.state import RunState, TaskState


def _pending(state: RunState, kind: str | None = None) -> bool:
    return any(
        q["status"] == "pending" and kind in (None, q.get("kind"))
        for q in (state.get("questions") or {}).values()
    )


def _stopped(state: RunState) -> bool:
    """Say whether a run cap of the budget stopped the run (it goes to deliver)."""
    return bool((state.get("budget_stops") or {}).get("run"))


def after_scope(state: RunState) -> Literal["plan", "ask", "deliver"]:
    """Plan once the scope parsed and nothing is asked; else ask; report when stopped."""
    if state.get("status") == "aborted" or _stopped(state):
        return "deliver"
    return "plan" if state.get("scope") and not _pending(state) else "ask"


def _to_work(state: RunState) -> Literal["baseline", "execute"]:
    """Execute the plan, once the baseline is taken (what already fails before any task).

    A run the budget stopped goes to execute, which says so at once: no gates run for it.
    """
    return "execute" if state.get("baseline") is not None or _stopped(state) else "baseline"


def _tester_asks(state: RunState) -> bool:
    """Say whether a question of the tester (``acceptance-<rid>-<n>``) waits for a person."""
    return any(
        qid.startswith("acceptance-") and q["status"] == "pending"
        for qid, q in (state.get("questions") or {}).items()
    )


def after_plan(
    state: RunState,
) -> Literal["acceptance", "baseline", "execute", "plan", "ask", "deliver"]:
    """Pause at the design gate; write the suite; execute a valid plan; send a bad one back.

    A valid plan whose requirements have criteria without tests goes to the tester first
    (which then asks the design gate). Before the first task, the run's baseline is taken.
    Other pending questions do not stop a valid plan: independent tasks run meanwhile. When
    repairs ran out and there is no plan, a person is asked. A run the budget stopped goes to
    deliver (report and resume plan).
    """
    if _stopped(state):
        return "deliver"
    if _pending(state, "approval"):
        return "ask"
    if state.get("plan") and not state.get("plan_problems"):
        if acceptance.due(state) and not _tester_asks(state):
            return "acceptance"
        return _to_work(state)
    return "ask" if _pending(state) else "plan"


def after_acceptance(state: RunState) -> Literal["ask", "baseline", "execute", "deliver"]:
    """Pause for the design gate or the tester's question; else go on to the work.

    A run the budget stopped goes to deliver.
    """
    if _stopped(state):
        return "deliver"
    if _pending(state, "approval") or _tester_asks(state):
        return "ask"
    return _to_work(state)


def after_baseline(state: RunState) -> Literal["execute", "deliver"]:
    """Execute the plan; a run the budget stopped goes to deliver."""
    return "deliver" if _stopped(state) else "execute"


def after_execute(state: RunState) -> Literal["plan", "milestone", "ask", "deliver"]:
    """Re-plan; check a milestone whose tasks are done; pause for a person; else deliver.

    Re-plan when a task proved too big or flawed.

    Feedback a person gave goes to the planner too. A milestone is checked before a person is
    asked: the tasks that do not wait for the answer go on after it.

    A run the budget stopped delivers at once; its questions wait for the resume.
    """
    if _stopped(state):
        return "deliver"
    if state.get("replan") or ready_feedback(state) or malformed_feedback(state):
        return "plan"
    if milestones.due(state):
        return "milestone"
    return "ask" if _pending(state) else "deliver"


def after_milestone(state: RunState) -> Literal["execute", "deliver"]:
    """Go on with the tasks (a fix task, the next phase); a run the budget stopped delivers."""
    return "deliver" if _stopped(state) else "execute"


def where_it_stands(
    state: RunState,
) -> Literal["scope", "plan", "acceptance", "baseline", "execute", "deliver", "ask"]:
    """Go on from where the run stands: after a person answered, or on entering the graph.

    Back to the step that asked, or deliver when the person chose to stop. A gate still
    waiting, or clarifications still open before planning (the person answered only some
    questions), are asked again; feedback goes to the planner. A run with a plan but no
    baseline yet (the design was approved, or the run was killed before it) takes it first;
    before that, the tester writes the acceptance tests that are due (its question answered,
    or the run killed before or after the suite's commit: the commit's key finds it).
    """
    if state.get("status") == "aborted":
        return "deliver"
    if not state.get("scope"):
        return "scope"
    if _pending(state, "approval") or (not state.get("plan") and _pending(state, "clarification")):
        return "ask"
    if state.get("plan") and (ready_feedback(state) or malformed_feedback(state)):
        return "plan"  # changes asked at a review, or feedback given as the run's input
    if not state.get("plan"):
        return "plan"
    if acceptance.due(state):
        return "ask" if _tester_asks(state) else "acceptance"
    return _to_work(state)


after_human = where_it_stands
"""After the person: the same rule as entering the graph."""


def task_entry(state: TaskState) -> Literal["code", "stop"]:
    """Start a task with its code; a task the scheduler stopped (time limit) ends first."""
    return "stop" if state.get("stop") else "code"


def after_code(state: TaskState) -> Literal["dependencies", "escalate"]:
    """Install what the coder's files declare (then validate), or escalate its question."""
    return "escalate" if state.get("status") == "waiting" else "dependencies"


AfterDependencies = Literal["validate", "fix", "code", "escalate", "record_limitation"]
AfterValidate = Literal["commit", "fix", "code", "escalate", "record_limitation"]
_ONWARD = {
    "waiting": "escalate",
    "limiting": "record_limitation",
    "coding": "code",
    "fixing": "fix",
}
"""Where a task goes from a step that checks it, by the status the step left."""


def _onward(state: TaskState, step: str, ready: tuple[str, str]) -> str:
    """Return the next node: ``ready[1]`` on status ``ready[0]``, else by ``_ONWARD``."""
    status = str(state.get("status"))
    if status == ready[0]:
        return ready[1]
    if status in _ONWARD:
        return _ONWARD[status]
    raise ValueError(f"{step} left the task in status {status!r}: no way out is defined")


def after_dependencies(state: TaskState) -> AfterDependencies:
    """Validate once the dependencies are installed; else fix, start over, ask, or give up.

    A manifest or resolution the coder can fix goes to the fixer (and, like a failed
    validation, to a fresh start or a person when fixing does not help); a new package waits
    for a person's approval; an index that does not answer asks a person.
    """
    return cast(AfterDependencies, _onward(state, "dependencies", ("validating", "validate")))


def after_validate(state: TaskState) -> AfterValidate:
    """Commit passing code, fix failing code, start over once when stuck, else give up.

    Giving up escalates a critical task and records any other as a known limitation.
    """
    return cast(AfterValidate, _onward(state, "validate", ("passed", "commit")))


def after_fix(state: TaskState) -> Literal["dependencies", "escalate"]:
    """Install what the fixer's files declare (then validate), or escalate its failure."""
    return "escalate" if state.get("status") == "waiting" else "dependencies"


def after_commit(state: TaskState) -> Literal["fix", "escalate", "record_limitation", "__end__"]:
    """Finish when the commit landed; fix when integration with main failed; else give up.

    Giving up (past the cap of merge failures) escalates a critical task and records any other
    as a known limitation.
    """
    status = state.get("status")
    if status == "done":
        return "__end__"
    if status == "waiting":
        return "escalate"
    return "record_limitation" if status == "limiting" else "fix"
