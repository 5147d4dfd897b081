"""Pydantic models for what the model returns (scope, plan) and for questions to a person."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

Priority = Literal["must", "should", "could"]
PhaseName = Literal["mvp", "enhanced", "polish"]
PHASES: tuple[PhaseName, ...] = ("mvp", "enhanced", "polish")


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


class ScopeItem(Feature):
    """An integration, page, data model or API endpoint: a requirement with its own id."""

    id: str = Field(
        description="Stable requirement id: I1.. integrations, P1.. pages, "
        "M1.. data models, A1.. API endpoints."
    )


class Scope(BaseModel):
    """What the user asked for, as the scope node understood it."""

    title: str = Field(min_length=1, description="Short name of the project.")
    summary: str = Field(description="Two or three sentences on what will be built.")
    language: Literal["python"] = Field(
        default="python", description="Toolchain of the project; only python is supported yet."
    )
    features: list[Feature] = Field(
        default_factory=list,
        description="What the product must do, ids F1, F2, ...; empty only when the text asks "
        "for nothing that can be built.",
    )
    constraints: list[str] = Field(default_factory=list)
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
    kind: Literal[
        "configuration",
        "fix_limit",
        "model_output",
        "plan_invalid",
        "design_decision",
        "design_flaw",
        "scope_unclear",
        "external_service",
        "timeout",
    ]
    task_id: str | None = None
    title: str
    detail: str = ""
    options: list[Option] = Field(default_factory=list)
    recommended: str | None = None
    free_text: bool = Field(
        default=True, description="Whether an answer outside the options is accepted."
    )
    status: Literal["pending", "answered"] = "pending"
    answer: str | None = None

    def check_answer(self, answer: str) -> str:
        """Return the canonical answer, or raise ValueError saying what would be accepted."""
        text = answer.strip()
        if not text:
            raise ValueError(f"the answer to {self.id} is empty")
        for i, opt in enumerate(self.options, start=1):
            if text in (opt.key, str(i)):
                return opt.key
        if self.options and not self.free_text:
            keys = ", ".join(o.key for o in self.options)
            raise ValueError(f"{self.id} takes one of: {keys}")
        return text


class AskHuman(BaseModel):
    """Ask a person for something no model can decide, such as a missing API key or setting."""

    kind: Literal["configuration", "design_decision", "design_flaw"] = Field(
        default="configuration",
        description="'design_flaw' when the plan itself is wrong (a circular dependency, an "
        "impossible constraint, a missing prerequisite): the planner then re-plans.",
    )
    question: str = Field(description="The question, with the context a person needs.")
    options: list[str] = Field(default_factory=list, description="Suggested answers.")
    recommended: str | None = Field(default=None, description="The suggested answer to pick.")
