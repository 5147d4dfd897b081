"""Retry the failure classes whose policy says ``backoff``; hand every other to the graph.

Exponential backoff with full jitter; a rate limit waits what the server's ``Retry-After``
asks for, else a fixed delay. Every cap comes from the run's configuration.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from oldnew.errors import BudgetExceeded
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


@dataclass(frozen=True)
class RetryPolicy:
    """How long and how often transient failures are retried."""

    max_attempts: int = 5
    base_delay: float = 1.0
    max_delay: float = 60.0
    rate_limit_delay: float = 20.0

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
            return await call()
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
            await sleep(wait)
