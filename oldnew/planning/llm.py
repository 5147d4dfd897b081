"""The planner's model calls: structured output, counted, with a cap on calls in flight."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage
from pydantic import BaseModel

from oldnew.context import Context
from oldnew.models import ainvoke_structured

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
        """Return the model's answer as ``schema``; raise ModelOutputError when it never fits."""
        if self._gate is None:
            self._gate = asyncio.Semaphore(max(1, self.ctx.planner_concurrency))
        async with self._gate:
            self.calls += 1
            start = time.perf_counter()
            try:
                return await ainvoke_structured(
                    self.model,
                    schema,
                    [SystemMessage(system), HumanMessage(user)],
                    method=self.ctx.structured_output_method,
                    retries=self.ctx.max_output_retries,
                    policy=self.ctx.retry_policy(),
                )
            finally:
                self.seconds += time.perf_counter() - start
