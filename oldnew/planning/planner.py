"""The planner: right-size a plan to the scope, in one call or in phases, and check it."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TypeVar

from pydantic import BaseModel

from oldnew.errors import OldnewError
from oldnew.planning.checks import plan_problems
from oldnew.planning.complexity import Complexity
from oldnew.planning.hierarchy import plan_in_phases
from oldnew.planning.llm import Asker
from oldnew.planning.roles import ROLES, normalize_roles
from oldnew.planning.words import ScopeWords, scope_words
from oldnew.prompts import render
from oldnew.schemas import Plan, Scope

Answer = TypeVar("Answer", bound=BaseModel)
Result = TypeVar("Result")


class PlanningFailed(OldnewError):
    """The planner's answers still had problems after every repair it was allowed."""

    def __init__(self, problems: list[str]) -> None:
        """Keep the problems of the last answer; they are what a person is shown."""
        super().__init__("; ".join(problems[:5]))
        self.problems = problems


@dataclass
class Planner:
    """Plans for one scope: asks the model, checks the answers, sends problems back."""

    ask: Asker
    scope: Scope
    complexity: Complexity
    agents: int
    """Agents the run will use (the class's, or the run's max_agents)."""
    text: str = ""
    """The person's own words the scope was read from ("" when they are not at hand)."""

    def words(self, wanted: Collection[str] | None = None) -> ScopeWords | None:
        """Return what of the person's text a prompt about ``wanted`` (None: all) shows."""
        return scope_words(self.scope, self.text, self.ask.ctx.scope_words_tokens(), wanted)

    @property
    def prompt_vars(self) -> dict[str, object]:
        """Return what every planning prompt may use."""
        return {
            "scope": self.scope,
            "size": self.complexity,
            "agents": self.agents,
            "roles": ROLES,
            "max_description": self.ask.ctx.max_task_description,
        }

    async def until_valid(
        self,
        what: str,
        schema: type[Answer],
        system: str,
        user: Callable[[list[str]], str],
        check: Callable[[Answer], tuple[Result, list[str]]],
    ) -> Result:
        """Ask, check, and send the problems back until the answer passes.

        Raises:
            PlanningFailed: the answer still had problems after ``max_plan_repairs`` re-asks.

        """
        problems: list[str] = []
        for attempt in range(self.ask.ctx.max_plan_repairs + 1):
            result, problems = check(await self.ask(schema, system, user(problems)))
            if not problems:
                return result
            await self.ask.emit(event="rejected", what=what, attempt=attempt + 1, problems=problems)
        raise PlanningFailed([f"{what}: {p}" for p in problems])

    async def propose(self, problems: list[str]) -> Plan:
        """Return the model's plan for the scope: in one call, or epic by epic when phased.

        Raises:
            PlanningFailed: a phased plan's epics, tasks or wiring stayed invalid.
            ModelOutputError: the model's answer never parsed.

        """
        if self.complexity.phased:
            return await plan_in_phases(self, problems)
        plan = await self.ask(
            Plan,
            render("plan_system", **self.prompt_vars),
            render("plan_user", **self.prompt_vars, problems=problems, words=self.words()),
        )
        return normalize_roles(plan)

    def check(self, plan: Plan, *, sized: bool = True) -> list[str]:
        """Return the plan's problems; ``sized`` also checks its size against the class."""
        return plan_problems(plan, self.scope, complexity=self.complexity if sized else None)
