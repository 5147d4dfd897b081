"""Caps and the meter: check every model call against the caps, record it when it ends.

The meter is a LangChain callback handler set on the chat model itself (``metered``), so it
travels with ``bind_tools`` and ``with_structured_output`` and counts every call a node makes,
in a CLI run and under ``langgraph dev`` alike. Its check raises :class:`BudgetExceeded`
(``raise_error``), which ``with_retry`` passes through untouched: a cap is never retried and
never becomes a question. Calls already in flight finish and are counted; that is the only
overshoot.

For a task's calls it also runs the task's model-wait clock (``budget.wait``), which the
scheduler subtracts from the task's time: a slow model is not a stuck task. ``metered`` also
names that clock to ``with_retry`` for the caller's context (``count_waits_on``), so the
backoff between tries (a rate limit's Retry-After) counts as model wait too.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

from langchain_core.callbacks import AsyncCallbackHandler, BaseCallbackManager
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import LLMResult

from oldnew.budget.ledger import Ledger, Price, ledger_at, parse_prices, price_for
from oldnew.budget.wait import WaitClock, wait_clock
from oldnew.context import Context
from oldnew.errors import BudgetExceeded
from oldnew.recovery.retry import count_waits_on, note_open_call


@dataclass(frozen=True)
class Caps:
    """The run's budget; 0 means no cap."""

    tokens: int = 0
    cost: float = 0.0
    task_tokens: int = 0
    seconds: float = 0.0

    @classmethod
    def of(cls, ctx: Context) -> Caps:
        """Return the caps a run's context sets."""
        return cls(ctx.budget_tokens, ctx.budget_cost, ctx.budget_task_tokens, ctx.budget_seconds)

    def to_dict(self) -> dict[str, float]:
        """Return the caps as a JSON-ready dict."""
        return asdict(self)


def run_cap_reached(ledger: Ledger, caps: Caps) -> BudgetExceeded | None:
    """Return the stop for the first run cap that is reached, or None."""
    if caps.tokens or caps.cost:
        tokens, cost, _ = ledger.totals()
        if caps.tokens and tokens >= caps.tokens:
            return BudgetExceeded(
                f"the run used {tokens:,} tokens of its {caps.tokens:,} token cap",
                scope="run",
                flag="--budget-tokens",
                spent=tokens,
                cap=caps.tokens,
                task=None,
            )
        if caps.cost and cost >= caps.cost:
            return BudgetExceeded(
                f"the run spent ${cost:.4f} of its ${caps.cost:.4f} cost cap",
                scope="run",
                flag="--budget-cost",
                spent=round(cost, 6),
                cap=caps.cost,
                task=None,
            )
    if caps.seconds:
        seconds = ledger.work_seconds()
        if seconds >= caps.seconds:
            return BudgetExceeded(
                f"the run worked {seconds:.0f} s of its {caps.seconds:g} s wall-clock cap",
                scope="run",
                flag="--budget-seconds",
                spent=round(seconds, 3),
                cap=caps.seconds,
                task=None,
            )
    return None


def task_cap_reached(ledger: Ledger, caps: Caps, task: str) -> BudgetExceeded | None:
    """Return the stop for ``task`` when it used its token cap, or None."""
    if not caps.task_tokens:
        return None
    used = ledger.totals()[2][task]
    if used < caps.task_tokens:
        return None
    return BudgetExceeded(
        f"task {task} used {used:,} tokens of its {caps.task_tokens:,} per-task cap",
        scope="task",
        flag="--budget-task-tokens",
        spent=used,
        cap=caps.task_tokens,
        task=task,
    )


def cap_reached(ledger: Ledger, caps: Caps, task: str | None) -> BudgetExceeded | None:
    """Return the stop a call for ``task`` (None: not a task's) must obey, or None."""
    return run_cap_reached(ledger, caps) or (task_cap_reached(ledger, caps, task) if task else None)


def _usage_of(
    message: BaseMessage | None, llm_output: dict[str, Any] | None
) -> tuple[int, int] | None:
    """Return (input, output) tokens a reply reports, or None when it reports none."""
    usage = getattr(message, "usage_metadata", None) if isinstance(message, AIMessage) else None
    if usage:
        return int(usage.get("input_tokens", 0)), int(usage.get("output_tokens", 0))
    token_usage = (llm_output or {}).get("token_usage") or {}
    if token_usage:
        prompt, completion = token_usage.get("prompt_tokens"), token_usage.get("completion_tokens")
        return int(prompt or 0), int(completion or 0)
    return None


class BudgetMeter(AsyncCallbackHandler):
    """Check the caps before a model call; record its usage in the ledger after it."""

    raise_error = True

    def __init__(
        self,
        ledger: Ledger,
        caps: Caps,
        prices: dict[str, Price],
        *,
        role: str,
        activity: str,
        task: str | None,
        model: str,
        clock: WaitClock | None = None,
    ) -> None:
        """Meter the calls of one ``role`` for one ``activity`` (of ``task``) on ``model``.

        ``clock`` is the task's model-wait clock, run from a call's start to its end.
        """
        self.ledger, self.caps, self.prices = ledger, caps, prices
        self.role, self.activity, self.task, self.model = role, activity, task, model
        self.clock = clock

    async def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Refuse the call when a cap is reached; else start the task's wait clock."""
        stop = await asyncio.to_thread(cap_reached, self.ledger, self.caps, self.task)
        if stop is not None:
            raise stop
        if self.clock is not None:
            self.clock.begin(run_id)
            note_open_call(self.clock, run_id)  # a try cut off by its deadline ends it

    async def on_llm_error(
        self,
        error: BaseException,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        """Stop the task's wait clock: the call failed."""
        if self.clock is not None:
            self.clock.end(run_id)

    async def on_llm_end(
        self,
        response: LLMResult,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        """Record the tokens (and their cost) of the call that ended."""
        if self.clock is not None:
            self.clock.end(run_id)
        for generations in response.generations:
            for gen in generations:
                message = getattr(gen, "message", None)
                usage = _usage_of(message, response.llm_output)
                meta = getattr(message, "response_metadata", None) or {}
                model = str(meta.get("model_name") or meta.get("model") or self.model)
                await asyncio.to_thread(
                    self.ledger.record_call,
                    role=self.role,
                    activity=self.activity,
                    task=self.task,
                    model=model,
                    input_tokens=usage[0] if usage else 0,
                    output_tokens=usage[1] if usage else 0,
                    price=price_for(model, self.prices),
                    usage_reported=usage is not None,
                )


def model_name(model: BaseChatModel) -> str:
    """Return the name a model is priced by: its API model name, else its kind.

    ChatOpenAI calls the name ``model_name``; ChatAnthropic, ChatOllama and others ``model``.
    """
    for attribute in ("model_name", "model"):
        name = getattr(model, attribute, None)
        if isinstance(name, str) and name:
            return name
    return model._llm_type


def ledger_of(workspace: str | Path) -> Ledger:
    """Return the ledger of the run in ``workspace``."""
    from oldnew.workspace import META

    return ledger_at(Path(workspace) / META)


def metered(
    model: BaseChatModel,
    ctx: Context,
    workspace: str | Path,
    *,
    role: str,
    activity: str,
    task: str | None = None,
) -> BaseChatModel:
    """Return a copy of ``model`` whose every call is checked against the caps and recorded.

    For a task's model (``task`` given), the backoff sleeps of ``with_retry`` in the caller's
    context count on the task's wait clock from now on.

    Raises:
        ConfigurationError: the context's price table does not parse.
    """
    clock = wait_clock(workspace, task) if task else None
    if clock is not None:
        count_waits_on(clock)
    meter = BudgetMeter(
        ledger_of(workspace),
        Caps.of(ctx),
        parse_prices(ctx.prices),
        role=role,
        activity=activity,
        task=task,
        model=model_name(model),
        clock=clock,
    )
    callbacks = model.callbacks
    if isinstance(callbacks, BaseCallbackManager):
        manager = callbacks.copy()
        manager.add_handler(meter, inherit=False)
        return model.model_copy(update={"callbacks": manager})
    return model.model_copy(update={"callbacks": [*(callbacks or []), meter]})


class _QuietBudgetStops(logging.Filter):
    """Drop LangChain's warning for a callback that raised: a budget stop is no error."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        return not (args and args[0] == BudgetMeter.__name__ and "BudgetExceeded" in str(args[-1]))


_manager_log = logging.getLogger("langchain_core.callbacks.manager")
if not any(isinstance(f, _QuietBudgetStops) for f in _manager_log.filters):
    _manager_log.addFilter(_QuietBudgetStops())
