"""Graph state: ids, statuses, counters, short summaries and references; never file contents.

Code lives in the workspace's git repository, diagnostics and logs in its evidence files.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, Literal, NotRequired

# Pydantic (and so LangGraph's JSON schemas for Studio) needs typing_extensions' TypedDict
# before Python 3.12.
from typing_extensions import TypedDict


def merge(left: dict[str, Any] | None, right: dict[str, Any] | None) -> dict[str, Any]:
    """Merge two id-keyed dicts; entries in ``right`` replace or extend those in ``left``.

    An entry whose value is None is removed (a task that a re-plan replaced, say).
    """
    out = dict(left or {})
    for key, value in (right or {}).items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


TaskStatus = Literal["pending", "running", "waiting", "done", "blocked"]
RunStatus = Literal[
    "scoping",
    "planning",
    "executing",
    "waiting",
    "delivered",
    "delivered_with_limitations",
    "blocked",
    "aborted",
    "stopped",
]
PAUSED: RunStatus = "waiting"
"""The one name of a run paused for a person: in its state, the API and the CLI."""


class TaskRecord(TypedDict, total=False):
    """What the run knows of one task; details live in the task's own thread."""

    id: str
    title: str
    status: TaskStatus
    commit: str | None
    fix_rounds: int
    evidence: str | None
    blocker: str | None
    question: str | None
    superseded_by: str | None
    """The revision task that replaced this finished task after a change request."""
    limitation: dict[str, Any] | None
    """Set when the task ended as a known limitation: kind, reason, detail, options, branch."""
    stand_in: dict[str, Any] | None
    """Set when the task was built against a stand-in a person chose (a mock)."""
    files: list[str]
    """Paths the task wrote (for traceability: requirement -> tasks -> tests)."""
    thread: str
    """The id of the task's own thread (``execution.threads``), to open its state."""
    head: str | None
    """The checkpoint the run left the task's thread at: a fork of the run resumes it there."""
    node: str | None
    """The node the task's graph runs next (None: it is not running)."""


class Lineage(TypedDict):
    """Which task threads a plan runs on: one key per plan version and checkpoint lineage."""

    plan_version: int
    key: str
    """The run checkpoint the plan's first ``execute`` ran from (a fork gets a new one)."""


class InputState(TypedDict):
    """What a caller passes in: a scope starts a run; a restart or feedback goes on with one.

    The graph's entry (``nodes.enter``) decides where each goes.
    """

    scope_text: NotRequired[str]
    """The scope, from one line to a requirements document: starts a run."""
    restart: NotRequired[bool]
    """Go on with a run that stopped (blocked, or stopped by the budget) from where it was."""
    feedback: NotRequired[Annotated[dict[str, dict[str, Any]], merge]]
    """Feedback id -> ``feedback.FeedbackItem`` as a dict, for the planner to apply."""
    supporting: NotRequired[list[str]]
    """Paths (files or folders, on the machine that runs the graph) of supporting files for a
    new run: committed first, before scoping (``--with`` on the command line)."""


class OutputState(TypedDict, total=False):
    """What a caller gets back."""

    status: RunStatus
    tasks: dict[str, TaskRecord]
    questions: dict[str, dict[str, Any]]
    report: str | None


class RunState(TypedDict, total=False):
    """State of the outer graph (scope -> plan -> execute <-> human -> deliver)."""

    scope_text: str
    """The user's scope, as given."""
    supporting: list[str]
    """Paths of the supporting files given with a new run (already committed once scoped)."""
    restart: bool
    """Set by a caller to go on after a stop; the entry clears it."""
    scope: dict[str, Any] | None
    """The structured Scope (``schemas.Scope``) once scoped."""
    plan: dict[str, Any] | None
    """The accepted Plan (``schemas.Plan``)."""
    plan_problems: list[str]
    """Violations found in the last rejected plan; sent back to the planner."""
    plan_attempts: int
    """Plans rejected so far."""
    plan_version: int
    """Bumped by every accepted plan; a new version runs on new task threads."""
    lineage: Lineage | None
    """The plan's task threads (``execution.lineage``); set by the first ``execute``."""
    main_head: str | None
    """The commit the run's branch stood at when the last outer node ended: a fork of the run
    puts the branch back there (``execution.lineage``)."""
    baseline: dict[str, Any] | None
    """How the baseline went (``gates.baseline.Baseline.summary()``): status, base commit,
    evidence, failing gates; taken once, before the first task. None until then."""
    tasks: Annotated[dict[str, TaskRecord], merge]
    """Task id -> record."""
    questions: Annotated[dict[str, dict[str, Any]], merge]
    """Question id -> ``schemas.Question`` as a dict, pending or answered."""
    notices: list[str]
    """Messages for the person from the last pause (an answer that was refused, say)."""
    status: RunStatus
    """Where the run is; ``waiting`` while it is paused for a person (the ``ask`` node sets
    it, the answers put it back). A checkpoint an older version saved in the pause says
    where the run was instead (``executing``, say): its readers take the pause from the
    checkpoint's interrupt, as they do for every run."""
    report: str | None
    """Path of report.json once delivered."""
    complexity: dict[str, Any] | None
    """The complexity (``planning.Complexity.to_dict()``: score, parts, class, agents) that
    sized the accepted plan, worked out once by the planner from the settled scope."""
    replan: list[dict[str, Any]]
    """Requests from ``execute`` to the planner: split a task, or re-plan after a design flaw."""
    replans: int
    """Re-plans made for design flaws so far."""
    split_from: dict[str, str]
    """Subtask id -> the id of the task it was split from."""
    revision_refused: list[str]
    """Tasks the planner does not split or re-plan again (it failed; a person decides)."""
    approvals: Annotated[dict[str, str], merge]
    """Gate (scope, design, mvp, final) -> the question that approved its current artifact."""
    stop_reason: str | None
    """Why the run stopped before delivery (a gate rejected, say), for the report."""
    budget_stops: dict[str, dict[str, Any]]
    """"run" or a task id -> the budget cap that stopped it (``BudgetExceeded.to_dict()``)."""
    feedback: Annotated[dict[str, dict[str, Any]], merge]
    """Feedback id -> pending ``feedback.FeedbackItem`` as a dict; the planner applies and
    removes it."""
    feedback_log: Annotated[list[dict[str, Any]], operator.add]
    """What the planner did with each feedback item (``feedback.FeedbackRecord``), in order."""
    milestones: Annotated[dict[str, dict[str, Any]], merge]
    """Milestone (mvp, enhanced, polish) -> how its check on main went (``nodes.milestone``):
    status, commit, tag, evidence, fix rounds, the preview's URL."""
    acceptance: Annotated[dict[str, Any], merge]
    """The acceptance suite the tester wrote and how it did on main (``oldnew.acceptance``):
    status, commit, per requirement its file and tests, per test its latest result."""


class TaskState(TypedDict, total=False):
    """State of one task's own graph (code -> validate -> fix -> commit, or escalate)."""

    task: dict[str, Any]
    """The ``schemas.PlannedTask`` as a dict."""
    workspace: str
    """Root of the run's workspace."""
    project: str
    """Project title, for the prompts."""
    stack: str
    """The scope's stack (python, python-web, node-web), for the coder's conventions."""
    packages: list[str]
    """Third-party packages the scope names (allowed without asking under ``--deps ask``)."""
    decisions: list[str]
    """Answers a person already gave in this run, as short lines."""
    requirements: dict[str, Any]
    """The task's requirements that have acceptance criteria: id -> title, description (cut)
    and criteria (id -> sentence), for the coder's, fixer's and tester's prompts
    (``acceptance.review.task_requirements``); their tests are read from main."""
    status: Literal[
        "coding", "validating", "passed", "fixing", "waiting", "limiting", "done", "blocked"
    ]
    """Where the task is: ``validating`` asks for a check, ``passed`` says the check passed."""
    files: list[str]
    """Paths this task has written."""
    fix_round: int
    """Fix rounds spent since the last reset."""
    fix_rounds_total: int
    """Fix rounds spent in all."""
    diagnostics: list[str]
    """Rendered diagnostics of the last failed validation (capped)."""
    evidence: Annotated[list[str], operator.add]
    """Paths of evidence files, one per validation."""
    question: dict[str, Any] | None
    """The question this task is waiting on."""
    answer: dict[str, Any] | None
    """The last answer a person gave this task: {question, answer}."""
    guidance: str | None
    """Free-text guidance from a person for the fixer."""
    questions_asked: int
    """Questions raised so far (for stable question ids)."""
    commit: str | None
    """The commit on main that delivered this task."""
    pending_fix: dict[str, Any] | None
    """The last fix whose outcome is not known yet: error signatures, summary, offered keys."""
    blocker: str | None
    """Why the task could not be finished."""
    model_calls: Annotated[int, operator.add]
    """Model calls this task made."""
    critical: bool
    """On the critical path or serving an MVP/must requirement: escalate rather than give up."""
    last_failure: dict[str, str] | None
    """Fingerprints of the last failed validation (errors, files), to tell a stuck task."""
    regenerations: int
    """Fresh regenerations from scratch spent (one, then the task escalates)."""
    fresh_start: str | None
    """Why the last approach failed, for the coder of a fresh regeneration; None otherwise."""
    limitation: dict[str, Any] | None
    """The known limitation this task ended as: kind, reason, detail, options, branch."""
    targets: dict[str, list[str]] | None
    """For a task validated with a milestone's gate set: the pages and API endpoints the
    scope names (``web.targets.WebTargets``)."""
    stand_in: dict[str, Any] | None
    """Set when a person chose to build against a stand-in (a mock): what and why. A task
    delivered so is a known limitation of the delivery, never reported as the real thing."""
    merge_failures: int
    """Times this task passed its checks but could not be merged into main (capped)."""
    stop: str | None
    """Set by the scheduler to stop a task past its time limit (why); the entry clears it."""


def next_question_id(state: TaskState) -> str:
    """Return the id of the next question a task asks ("T3-q2"): stable across re-runs."""
    return f"{state['task']['id']}-q{state.get('questions_asked', 0) + 1}"
