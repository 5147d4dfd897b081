"""Retry the failure classes whose policy says ``backoff``; hand every other to the graph.

Exponential backoff with full jitter; a rate limit waits what the server's ``Retry-After``
asks for, else a fixed delay. Every cap comes from the run's configuration.

Each try has a total deadline (``RetryPolicy.timeout``, the run's ``model_timeout``): the
client's own timeout bounds each read, not the whole reply, so a server that sends a byte now
and then would otherwise hold a call for ever. A try past its deadline fails as a transient
timeout (:class:`CallTimeout`), retried, then escalated like the client's own.

The backoff between tries is time spent waiting for the model, not work: when the caller's
context names a wait clock (``count_waits_on``, set by the budget meter for a task's model),
each sleep runs that clock, so a rate-limited task is not taken for a stuck one.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Protocol, TypeVar
from uuid import UUID, uuid4

from oldnew.errors import BudgetExceeded, CallTimeout
from oldnew.recovery import policy as failure_policy
from oldnew.recovery.classify import Classification, classify

T = TypeVar("T")


class ClassifiedFailure(Exception):
    """A failure that retrying did not (or may not) cure, with its class."""

    def __init__(self, classification: Classification, attempts: int) -> None:
        """Wrap ``classification`` after ``attempts`` tries."""
        super().__init__(
            f"{classification.cls}: {classification.reason} "
            f"(after {attempts} attempt{'s' if attempts != 1 else ''})"
        )
        self.classification = classification
        self.attempts = attempts


class WaitCounter(Protocol):
    """A clock of model wait (``budget.wait.WaitClock``): runs between begin and end."""

    def begin(self, call: UUID) -> None:
        """Start counting for ``call``."""

    def end(self, call: UUID) -> None:
        """Stop counting for ``call``."""


_WAIT_CLOCK: ContextVar[WaitCounter | None] = ContextVar("oldnew_wait_clock", default=None)


_OPEN_CALLS: ContextVar[list[tuple[WaitCounter, UUID]] | None] = ContextVar(
    "oldnew_open_calls", default=None
)


def count_waits_on(clock: WaitCounter | None) -> None:
    """Count the backoff sleeps of ``with_retry`` in this context (a task's) on ``clock``."""
    _WAIT_CLOCK.set(clock)


def note_open_call(clock: WaitCounter, call: UUID) -> None:
    """Note that ``call`` began on ``clock`` within the current try of ``with_retry``.

    A try cut off by its deadline is cancelled, and a cancelled model call never reports its
    end to its callbacks; the try ends the wait of every call it noted, so a clock is never
    left running by a call that is gone.
    """
    calls = _OPEN_CALLS.get()
    if calls is not None:
        calls.append((clock, call))


@dataclass(frozen=True)
class RetryPolicy:
    """How long and how often transient failures are retried, and how long one try may take."""

    max_attempts: int = 5
    base_delay: float = 1.0
    max_delay: float = 60.0
    rate_limit_delay: float = 20.0
    timeout: float = 300.0
    """Seconds one try may take in all, its whole reply included (0: no deadline)."""

    def delay(self, c: Classification, attempt: int, rng: random.Random) -> float:
        """Return the seconds to wait before try ``attempt + 1``."""
        if c.retry_after is not None:
            return min(c.retry_after, self.max_delay)
        if c.reason.startswith("rate limited"):
            return min(self.rate_limit_delay, self.max_delay)
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return rng.uniform(0, ceiling)  # nosec B311 - jitter, not cryptography


async def with_retry(
    call: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    on_retry: Callable[[Classification, int, float], Awaitable[None]] | None = None,
    rng: random.Random | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """Await ``call()``; retry it while its failures are retried with backoff, up to the cap.

    Raises:
        BudgetExceeded: a budget cap was reached before the call; passed through untouched.
        ClassifiedFailure: a failure its class does not retry, at once, or one it retries
            once the attempts are spent (the caller routes it by its class).
    """
    rng = rng or random.Random()  # nosec B311
    attempt = 0
    while True:
        attempt += 1
        try:
            return await _attempt(call, policy.timeout)
        except BudgetExceeded:
            raise  # a cap, not a failure: retrying or classifying it would overshoot the budget
        except Exception as exc:  # noqa: BLE001 - every failure is classified, none escapes raw
            c = classify(exc)
            retried = failure_policy.failure(c.cls).retry == "backoff"
            if not retried or attempt >= policy.max_attempts:
                raise ClassifiedFailure(c, attempt) from exc
            wait = policy.delay(c, attempt, rng)
            if on_retry is not None:
                await on_retry(c, attempt, wait)
            await _backoff(sleep, wait)


async def _attempt(call: Callable[[], Awaitable[T]], timeout: float) -> T:
    """Await one try of ``call()`` within ``timeout`` seconds in all (0: no deadline).

    Raises:
        CallTimeout: the try took longer than ``timeout``; it was cancelled.
    """
    opened: list[tuple[WaitCounter, UUID]] = []
    token = _OPEN_CALLS.set(opened)
    try:
        if timeout <= 0:
            return await call()
        deadline = asyncio.timeout(timeout)
        try:
            async with deadline:
                return await call()
        except TimeoutError as exc:
            if not deadline.expired():
                raise  # the call's own timeout, classified as it is
            raise CallTimeout(
                f"the model sent no complete reply within {timeout:g} s (model_timeout): "
                "raise OLDNEW_MODEL_TIMEOUT for a slow model or provider"
            ) from exc
    finally:
        _OPEN_CALLS.reset(token)
        for clock, opened_call in opened:
            clock.end(opened_call)  # a call that ended already is ignored


async def _backoff(sleep: Callable[[float], Awaitable[None]], seconds: float) -> None:
    """Sleep ``seconds`` before the next try, counted as model wait on the context's clock."""
    clock = _WAIT_CLOCK.get()
    token = uuid4()
    if clock is not None:
        clock.begin(token)
    try:
        await sleep(seconds)
    finally:
        if clock is not None:
            clock.end(token)
