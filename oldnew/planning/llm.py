"""The planner's model calls: structured output, counted, with a cap on calls in flight."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from pydantic import BaseModel

from oldnew.context import Context
from oldnew.errors import ModelOutputError
from oldnew.models import ainvoke_structured
from oldnew.planning.content import content_problems
from oldnew.prompts import render

Emit = Callable[..., Awaitable[None]]
Schema = TypeVar("Schema", bound=BaseModel)


async def no_emit(**event: Any) -> None:
    """Drop an event (planning outside a graph run, e.g. ``oldnew plan``)."""


@dataclass
class Asker:
    """Ask the planner model for one structured object; count calls and time."""

    model: BaseChatModel
    ctx: Context
    emit: Emit = no_emit
    calls: int = 0
    """Structured requests made (each may include re-asks for output that did not parse)."""
    seconds: float = 0.0
    """Wall time spent waiting for the model, summed over calls."""
    _gate: asyncio.Semaphore | None = field(default=None, repr=False)

    async def __call__(self, schema: type[Schema], system: str, user: str) -> Schema:
        """Return the model's answer as ``schema``; raise ModelOutputError when it never fits.

        An answer that parses but says nothing (``content_problems``: placeholder titles,
        every item alike) is sent back with its problems, up to ``max_output_retries`` times,
        then fails as the model's output.
        """
        if self._gate is None:
            self._gate = asyncio.Semaphore(max(1, self.ctx.planner_concurrency))
        messages: list[BaseMessage] = [SystemMessage(system), HumanMessage(user)]
        problems: list[str] = []
        for attempt in range(self.ctx.max_output_retries + 1):
            answer = await self._ask(schema, messages)
            problems = content_problems(answer)
            if not problems:
                return answer
            await self.emit(
                event="rejected", what=schema.__name__, attempt=attempt + 1, problems=problems
            )
            messages = [
                *messages,
                AIMessage(answer.model_dump_json()[:4000]),
                HumanMessage(render("output_retry", problem="; ".join(problems)[:2000])),
            ]
        raise ModelOutputError(
            f"{schema.__name__} said nothing usable after {self.ctx.max_output_retries + 1} "
            f"tries: {'; '.join(problems)}"
        )

    async def _ask(self, schema: type[Schema], messages: list[BaseMessage]) -> Schema:
        assert self._gate is not None
        async with self._gate:
            self.calls += 1
            start = time.perf_counter()
            try:
                return await ainvoke_structured(
                    self.model,
                    schema,
                    messages,
                    method=self.ctx.structured_output_method,
                    retries=self.ctx.max_output_retries,
                    policy=self.ctx.retry_policy(),
                )
            finally:
                self.seconds += time.perf_counter() - start
