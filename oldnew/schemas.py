"""Pydantic models for what the model returns (scope, plan) and for questions to a person."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import (
    BaseModel,
    Field,
    PrivateAttr,
    ValidationError,
    ValidatorFunctionWrapHandler,
    computed_field,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from oldnew.recovery import policy
from oldnew.recovery.policy import EscalationType, Severity

Priority = Literal["must", "should", "could"]
PhaseName = Literal["mvp", "enhanced", "polish"]
PHASES: tuple[PhaseName, ...] = ("mvp", "enhanced", "polish")
Stack = Literal["python", "python-web", "node-web"]
WEB_STACKS: tuple[Stack, ...] = ("python-web", "node-web")


class Criterion(BaseModel):
    """One checkable acceptance criterion of a requirement: given / when / then, concrete.

    The tester writes an acceptance test for each (``oldnew.acceptance``); its id ties the
    tests, their results and the report back to it.
    """

    id: str = Field(
        default="",
        description="'<requirement id>.<n>', e.g. 'F1.2'; leave empty and oldnew numbers it.",
    )
    given: str = Field(
        min_length=1,
        description="The starting situation, with concrete values taken from the scope, its "
        "supporting files or interface descriptions (e.g. 'the text \"b a b\"').",
    )
    when: str = Field(
        min_length=1,
        description="The action, as a call, command or request of the public interface "
        "(e.g. 'top_words(text, 1) is called').",
    )
    then: str = Field(
        min_length=1,
        description="The observable result, with the exact expected values (e.g. 'it "
        'returns [("b", 2)]\').',
    )

    def sentence(self) -> str:
        """Return the criterion as one line: ``F1.2: given ..., when ..., then ...``."""
        return f"{self.id}: given {self.given}, when {self.when}, then {self.then}"


class Feature(BaseModel):
    """One requirement of the scope, with a stable id that tasks point back to."""

    id: str = Field(description="Stable requirement id, e.g. 'F1'.")
    title: str = Field(min_length=1)
    description: str = ""
    priority: Priority = Field(
        default="must",
        description="'must' for what the first usable version needs, 'should' for what "
        "makes it better, 'could' for polish.",
    )
    source: str = Field(default="", description="Heading of the scope section it comes from.")
    sections: SkipJsonSchema[list[int]] = Field(
        default_factory=list,
        description="Set by oldnew, never the model: the numbers of the scope sections "
        "(``Scope.sections``) this requirement was read from.",
    )
    criteria: list[Criterion] = Field(
        default_factory=list,
        description="Acceptance criteria that prove the requirement is met, each given / "
        "when / then with concrete values. Where the scope leaves a value open, ask a "
        "clarification naming the criterion and write the criterion with its default.",
    )
    untestable: str = Field(
        default="",
        description="Only when no automated test could check this requirement: why (e.g. "
        "'a matter of taste'). Empty whenever it has criteria.",
    )

    @model_validator(mode="after")
    def _number_criteria(self) -> Feature:
        """Give each criterion the id ``<requirement id>.<n>`` unless it has its own, unique."""
        seen: set[str] = set()
        for n, c in enumerate(self.criteria, start=1):
            own = c.id.strip()
            if not own.startswith(f"{self.id}.") or own in seen or not own[len(self.id) + 1 :]:
                own = f"{self.id}.{n}"
                while own in seen:
                    own += "b"
            c.id = own
            seen.add(own)
        return self


class ScopeItem(Feature):
    """An integration, page, data model or API endpoint: a requirement with its own id."""

    id: str = Field(
        description="Stable requirement id: I1.. integrations, P1.. pages, "
        "M1.. data models, A1.. API endpoints."
    )
    route: str = Field(
        default="",
        description="For a page, its URL path ('/', '/about'); for an API endpoint, its method "
        "and path ('GET /api/todos'); empty for the others.",
    )


ClarificationPriority = Literal["high", "medium", "low"]
ClarificationKind = Literal[
    "vague_quantity", "subjective", "open_question", "contradiction", "missing_detail"
]


class Clarification(BaseModel):
    """A specific question the scope leaves open, with the answer the run takes by default."""

    question: str = Field(min_length=1, description="One specific question for the person.")
    options: list[str] = Field(
        default_factory=list, description="Two to four concrete answers to choose from."
    )
    default: str = Field(
        min_length=1,
        description="The proposed answer the run takes unless asked: one of the options, or a "
        "short free-text answer.",
    )
    priority: ClarificationPriority = Field(
        default="medium",
        description="'high' when the answer changes what is built (data, architecture, "
        "security), 'medium' when it changes behaviour, 'low' for cosmetics.",
    )
    kind: ClarificationKind = Field(
        default="missing_detail",
        description="Why it is asked: vague_quantity, subjective, open_question, "
        "contradiction or missing_detail.",
    )
    phrase: str = Field(default="", description="The words of the scope it is about.")
    criteria: list[str] = Field(
        default_factory=list,
        description="Ids of the acceptance criteria whose expected values depend on the "
        "answer (e.g. ['F2.1']); they are written with the default.",
    )
    answer: SkipJsonSchema[str | None] = None
    """The answer the run goes on with (the person's, or the default); set by the run."""
    decided_by: SkipJsonSchema[Literal["person", "default"] | None] = None
    """Who chose the answer; set by the run."""

    @field_validator("options", mode="before")
    @classmethod
    def _clean_options(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        out: list[str] = []
        for item in value:
            text = str(item).strip()
            if text and text not in out:
                out.append(text)
        return out

    @field_validator("priority", mode="before")
    @classmethod
    def _lower_priority(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("kind", mode="before")
    @classmethod
    def _known_kind(cls, value: Any) -> Any:
        kinds = ClarificationKind.__args__  # type: ignore[attr-defined]
        return value if value in kinds else "missing_detail"


class SourceSection(BaseModel):
    """Where one section of the scope text was read from: a span of the text read."""

    index: int = Field(description="1-based number of the section.")
    heading: str = Field(default="", description="The headings above it, outermost first.")
    start: int = Field(description="Offset of its first character in the text read.")
    end: int = Field(description="Offset just past its last character.")


class Scope(BaseModel):
    """What the user asked for, as the scope node understood it."""

    title: str = Field(min_length=1, description="Short name of the project.")
    summary: str = Field(description="Two or three sentences on what will be built.")
    language: Literal["python", "typescript"] = Field(
        default="python",
        description="Language of the project's code: python, or typescript (also for plain "
        "JavaScript).",
    )
    stack: Stack = Field(
        default="python",
        description="What is built: 'python' (a library or command-line tool), 'python-web' "
        "(pages and a JSON API served by a Python app), 'node-web' (pages and an API served "
        "by Node). A web stack when the scope asks for pages or an API.",
    )
    features: list[Feature] = Field(
        default_factory=list,
        description="What the product must do, ids F1, F2, ...; empty only when the text asks "
        "for nothing that can be built.",
    )
    constraints: list[str] = Field(default_factory=list)
    packages: list[str] = Field(
        default_factory=list,
        description="Third-party packages the scope names (PyPI or npm names), if any.",
    )
    supporting: list[str] = Field(
        default_factory=list,
        description="Leave empty: oldnew lists the supporting files the person handed over.",
    )
    unknowns: list[str] = Field(
        default_factory=list, description="Open questions the scope leaves undecided."
    )
    integrations: list[ScopeItem] = Field(
        default_factory=list,
        description="External services to integrate (payments, e-mail, OAuth, ...), ids I1, ...",
    )
    pages: list[ScopeItem] = Field(
        default_factory=list, description="Pages or screens of a user interface, ids P1, ..."
    )
    data_models: list[ScopeItem] = Field(
        default_factory=list, description="Stored entities (User, Invoice, ...), ids M1, ..."
    )
    api_endpoints: list[ScopeItem] = Field(
        default_factory=list, description="API endpoints ('POST /invoices'), ids A1, ..."
    )
    non_goals: list[str] = Field(
        default_factory=list, description="What the scope explicitly leaves out."
    )
    clarifications: list[Clarification] = Field(
        default_factory=list,
        description="At most 3 specific questions whose answers would change what is built, "
        "each with options and a proposed default; empty when the scope is clear enough.",
    )
    sections: SkipJsonSchema[list[SourceSection]] = Field(
        default_factory=list,
        description="Set by oldnew, never the model: the sections the scope text was read "
        "in (one for a short scope), so the planner can show a requirement's own words.",
    )
    _dropped: list[str] = PrivateAttr(default_factory=list)
    """Why clarifications of the model's answer were left out (malformed ones)."""

    @model_validator(mode="wrap")
    @classmethod
    def _drop_malformed_clarifications(
        cls, data: Any, handler: ValidatorFunctionWrapHandler
    ) -> Any:
        """Keep the clarifications that validate; a malformed one never fails the scope."""
        dropped: list[str] = []
        if isinstance(data, dict) and isinstance(data.get("clarifications"), list):
            kept = []
            for i, item in enumerate(data["clarifications"], start=1):
                try:
                    kept.append(Clarification.model_validate(item))
                except ValidationError as exc:
                    first = exc.errors()[0]
                    where = ".".join(str(p) for p in first["loc"]) or "item"
                    dropped.append(f"clarification {i} dropped: {where}: {first['msg']}")
            data = {**data, "clarifications": kept}
        scope = handler(data)
        if isinstance(scope, Scope):
            scope._dropped = dropped
        return scope

    @property
    def dropped_clarifications(self) -> list[str]:
        """Return why clarifications of the model's answer were left out."""
        return list(self._dropped)

    def requirements(self) -> list[tuple[str, Feature]]:
        """Return every requirement with its kind, in a stable order."""
        return [
            *(("feature", f) for f in self.features),
            *(("integration", f) for f in self.integrations),
            *(("page", f) for f in self.pages),
            *(("data model", f) for f in self.data_models),
            *(("API endpoint", f) for f in self.api_endpoints),
        ]


class PlannedTask(BaseModel):
    """One unit of work: one coding agent, one commit."""

    id: str = Field(description="Short unique id, e.g. 'T1'.")
    title: str = Field(min_length=1)
    description: str = Field(description="What to build, precisely enough to code it.")
    role: str = Field(default="backend", description="Agent role: backend, tests, docs, ...")
    depends_on: list[str] = Field(default_factory=list, description="Ids of prerequisite tasks.")
    files: list[str] = Field(
        default_factory=list, description="Workspace-relative files it creates or changes."
    )
    requirement_ids: list[str] = Field(default_factory=list, description="Features it serves.")
    phase: PhaseName | None = Field(
        default=None, description="Delivery phase of a phased plan: mvp, enhanced or polish."
    )
    epic: str | None = Field(default=None, description="Id of the epic it belongs to, if any.")
    milestone: PhaseName | None = Field(
        default=None,
        description="Set by oldnew, not the planner: the milestone whose gate set (browser "
        "tests, accessibility, Lighthouse, load) validates this task, for a task that fixes "
        "what that milestone's gates found.",
    )
    regression_test: bool = Field(
        default=False,
        description="Set by oldnew for a task that fixes a reported bug: it must add a test "
        "that fails on the code before the task and passes after (the regression gate runs it "
        "on both).",
    )


class Phase(BaseModel):
    """One delivery phase of a phased plan, with what proves it is reached."""

    name: PhaseName
    milestone: str = Field(min_length=1, description="What a person can do once it is done.")
    acceptance_criteria: list[str] = Field(
        default_factory=list, description="Checks that prove the milestone is reached."
    )


class Epic(BaseModel):
    """A group of related requirements, planned into tasks by its own model call."""

    id: str = Field(description="Short unique id, e.g. 'E1'.")
    title: str = Field(min_length=1)
    description: str = ""
    phase: PhaseName = "mvp"
    requirement_ids: list[str] = Field(default_factory=list, description="Requirements it holds.")
    depends_on: list[str] = Field(default_factory=list, description="Ids of prerequisite epics.")


class PlanDecision(BaseModel):
    """A design choice the planner made, remembered so that later tasks respect it."""

    decision: str = Field(min_length=1, description="What was chosen, e.g. 'store data in SQLite'.")
    reason: str = Field(default="", description="Why, e.g. 'the scope says no server'.")
    requirement_ids: list[str] = Field(
        default_factory=list, description="The requirements the choice concerns."
    )


class Plan(BaseModel):
    """The task graph for the scope."""

    tasks: list[PlannedTask] = Field(min_length=1)
    decisions: list[PlanDecision] = Field(
        default_factory=list,
        description="Architecture and design choices the plan makes, each with its reason.",
    )
    phases: list[Phase] = Field(
        default_factory=list, description="Delivery phases, for phased plans only."
    )
    epics: list[Epic] = Field(default_factory=list, description="Epics, for phased plans only.")
    interface: list[str] = Field(
        default_factory=list,
        description="The public interface the tasks build, one item each: a module with the "
        "functions and classes it exports and their signatures, a command line, a route. The "
        "tester writes the acceptance tests against it, before any code exists.",
    )


class EpicPlan(BaseModel):
    """The first level of a hierarchical plan: phases and epics, no tasks yet."""

    phases: list[Phase] = Field(min_length=1)
    epics: list[Epic] = Field(min_length=1)


class EpicTasks(BaseModel):
    """The tasks of one epic."""

    tasks: list[PlannedTask] = Field(min_length=1)


class Dependency(BaseModel):
    """Prerequisites of one task."""

    task: str
    depends_on: list[str] = Field(default_factory=list)


class Wiring(BaseModel):
    """Dependencies between tasks of different epics."""

    dependencies: list[Dependency] = Field(default_factory=list)


class Split(BaseModel):
    """A task that proved too big, as smaller tasks."""

    subtasks: list[PlannedTask] = Field(min_length=1)


class Option(BaseModel):
    """One choosable answer to a question."""

    key: str
    label: str


class Question(BaseModel):
    """A question to a person, raised where no model can decide."""

    id: str
    kind: str = Field(description="What it is about: a kind of the failure policy's KINDS table.")
    task_id: str | None = None
    title: str
    detail: str = ""
    options: list[Option] = Field(default_factory=list)
    recommended: str | None = None
    free_text: bool = Field(
        default=True, description="Whether an answer outside the options is accepted."
    )
    status: Literal["pending", "answered", "cancelled"] = "pending"
    answer: str | None = None
    severity: Severity = Field(
        default="medium",
        description="critical: the run cannot go on; high: on the critical path or a setting "
        "only a person has; medium: other tasks wait on it; low: nothing waits on it.",
    )
    can_continue: bool = Field(
        default=True, description="Whether other work can go on while this waits."
    )
    blocks: list[str] = Field(
        default_factory=list, description="Tasks that wait for the answer (its task included)."
    )
    decided_by: Literal["person", "default", "yes"] | None = Field(
        default=None,
        description="Who settled it: a person; 'default' when the run took the recommended "
        "answer without asking; 'yes' when --yes approved a gate.",
    )
    gate: str | None = Field(
        default=None, description="For approvals: the gate (scope, design, mvp, final)."
    )
    packages: list[str] = Field(
        default_factory=list,
        description="For dependency questions: the packages concerned (ecosystem:name).",
    )

    @computed_field  # type: ignore[prop-decorator]
    @property
    def type(self) -> EscalationType:
        """The escalation's type, as a person sees it."""
        return policy.kind(self.kind).type

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        if value not in policy.KINDS:
            known = ", ".join(policy.KINDS)
            raise ValueError(f"unknown question kind {value!r}: choose from {known}")
        return value

    def check_answer(self, answer: str) -> str:
        """Return the canonical answer, or raise ValueError saying what would be accepted.

        An option's key or number picks it. A bare number ("7", "#7", "7.") on a question with
        options is read as an option number: out of range, it is refused with the range,
        never taken as free text (a person who means the number says so in words).
        """
        text = answer.strip()
        if not text:
            raise ValueError(f"the answer to {self.id} is empty")
        for i, opt in enumerate(self.options, start=1):
            if text in (opt.key, str(i)):
                return opt.key
        keys = ", ".join(o.key for o in self.options)
        number = _OPTION_NUMBER.fullmatch(text)
        if self.options and number:
            n = int(number.group(1))
            if 1 <= n <= len(self.options):
                return self.options[n - 1].key
            words = " (or answer in words)" if self.free_text else ""
            raise ValueError(
                f"{self.id} has options 1 to {len(self.options)} ({keys}); {text} is not "
                f"one of them: give an option's number or key{words}"
            )
        if self.options and not self.free_text:
            raise ValueError(
                f"{self.id} takes one of: {keys} (or their numbers 1 to {len(self.options)})"
            )
        return text


_OPTION_NUMBER = re.compile(r"(?:#|no\.?\s*|option\s*)?([+-]?\d+)[.)]?", re.IGNORECASE)
"""A bare option number as a person types it: 7, #7, 7., 7), option 7, -1."""


class AskHuman(BaseModel):
    """Ask a person for something no model can decide, such as a missing API key or setting."""

    kind: Literal["configuration", "design_decision", "design_flaw", "test_contradiction"] = Field(
        default="configuration",
        description="'design_flaw' when the plan itself is wrong (a circular dependency, "
        "an impossible constraint, a missing prerequisite): the planner then re-plans. "
        "'test_contradiction' when an acceptance test contradicts the requirement it "
        "checks: say which test and why; its tester reviews it, then a person decides.",
    )
    question: str = Field(description="The question, with the context a person needs.")
    options: list[str] = Field(default_factory=list, description="Suggested answers.")
    recommended: str | None = Field(default=None, description="The suggested answer to pick.")


class ReadFile(BaseModel):
    """Fetch the text of one project file that the prompt only mapped or listed.

    Whole, or some of its lines (a file too large for one answer is read by line ranges).
    """

    path: str = Field(description="The file's path relative to the project root, as listed.")
    start_line: int | None = Field(
        default=None, ge=1, description="First line to read (1-based); omit for the start."
    )
    end_line: int | None = Field(
        default=None, ge=1, description="Last line to read (inclusive); omit for the end."
    )


FeedbackKind = Literal["change_request", "bug_report", "feature", "clarification"]


class FeedbackTriage(BaseModel):
    """How the planner reads a person's feedback on a run, and what it adds to the plan."""

    kind: FeedbackKind = Field(
        description="'change_request': finished work must change (name the tasks); "
        "'bug_report': something delivered misbehaves; 'feature': something new to build "
        "(give the new tasks); 'clarification': a decision or fact for the work still to do."
    )
    summary: str = Field(min_length=1, description="The feedback in one line.")
    affected_tasks: list[str] = Field(
        default_factory=list,
        description="Ids of the plan's tasks the feedback concerns: the tasks to change for a "
        "change request, the tasks whose code the bug is in for a bug report.",
    )
    change: str = Field(
        default="",
        description="For a change request or a bug report: precisely what to change or what "
        "goes wrong, as an instruction to the engineer who will do it.",
    )
    features: list[Feature] = Field(
        default_factory=list,
        description="For a feature: the new requirements, with ids the scope does not use yet.",
    )
    tasks: list[PlannedTask] = Field(
        default_factory=list,
        description="For a feature: the new tasks that build it; they may depend on the "
        "plan's tasks.",
    )
