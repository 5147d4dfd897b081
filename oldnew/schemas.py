"""Pydantic models for what the model returns (scope, plan) and for questions to a person."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class Feature(BaseModel):
    """One requirement of the scope, with a stable id that tasks point back to."""

    id: str = Field(description="Stable requirement id, e.g. 'F1'.")
    title: str = Field(min_length=1)
    description: str = ""


class Scope(BaseModel):
    """What the user asked for, as the scope node understood it."""

    title: str = Field(min_length=1, description="Short name of the project.")
    summary: str = Field(description="Two or three sentences on what will be built.")
    language: Literal["python"] = Field(
        default="python", description="Toolchain of the project; only python is supported yet."
    )
    features: list[Feature] = Field(min_length=1)
    constraints: list[str] = Field(default_factory=list)
    unknowns: list[str] = Field(
        default_factory=list, description="Open questions the scope leaves undecided."
    )


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


class Plan(BaseModel):
    """The task graph for the scope."""

    tasks: list[PlannedTask] = Field(min_length=1)


class Option(BaseModel):
    """One choosable answer to a question."""

    key: str
    label: str


class Question(BaseModel):
    """A question to a person, raised where no model can decide."""

    id: str
    kind: Literal["configuration", "fix_limit", "model_output", "plan_invalid", "design_decision"]
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

    kind: Literal["configuration", "design_decision"] = "configuration"
    question: str = Field(description="The question, with the context a person needs.")
    options: list[str] = Field(default_factory=list, description="Suggested answers.")
    recommended: str | None = Field(default=None, description="The suggested answer to pick.")
