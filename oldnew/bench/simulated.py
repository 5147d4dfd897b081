"""Stand-ins that take time and do no work: a model with a seeded latency, gates that sleep.

They let a benchmark (``oldnew bench scale``) or a test measure the graph itself: how the
scheduler, the merge and the checkpoints behave when a model call takes S seconds and a
validation G, with no provider and no tool in the way.

- :class:`LatencyModel` writes synthetic task i's module and test (``bench.faults``) after
  awaiting a log-normal latency drawn from (seed, task, call number); it keeps every call's
  latency per task and the number of calls in flight over time (:class:`CallLog`).
- :class:`SimulatedGates` is called as ``nodes.checks.run_gates`` is (``build_graph(gates=...)``)
  and sleeps G seconds in its thread; its one check says that it was simulated. It can be
  given an ``inspect`` callable that reads the tree and returns findings: a check that can
  fail, for a test that main only ever holds what passed.
"""

from __future__ import annotations

import asyncio
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from statistics import NormalDist
from typing import Any

from langchain_core.callbacks.manager import AsyncCallbackManagerForLLMRun
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatResult
from pydantic import Field

from oldnew.bench.faults import SyntheticProjectModel
from oldnew.gates.model import Check, Diagnostic, ValidationResult
from oldnew.recovery.faults import unit

_TASK = re.compile(r"TASK (T\d+):")
_NORMAL = NormalDist()


def lognormal(median: float, sigma: float, *key: object) -> float:
    """Return a log-normal draw with this median and sigma, determined by ``key``."""
    u = min(max(unit("latency", *key), 1e-12), 1 - 1e-12)
    return median * math.exp(sigma * _NORMAL.inv_cdf(u))


@dataclass
class CallLog:
    """Every model call's latency per task, and the calls in flight over time."""

    latencies: dict[str, list[float]] = field(default_factory=dict)
    """Task id -> the latency of each of its calls, in call order (seconds)."""
    changes: list[tuple[float, int]] = field(default_factory=list)
    """(wall-clock time, calls in flight from then on), one entry per call start and end."""
    inflight: int = 0

    def calls(self) -> int:
        """Return how many calls were made."""
        return sum(len(v) for v in self.latencies.values())

    def begin(self, task: str) -> int:
        """Count a call of ``task`` as started; return its number (0 for the first)."""
        self.inflight += 1
        self.changes.append((time.time(), self.inflight))
        return len(self.latencies.setdefault(task, []))

    def end(self, task: str, latency: float) -> None:
        """Record the end of a call of ``task`` that took ``latency`` seconds."""
        self.latencies[task].append(latency)
        self.inflight -= 1
        self.changes.append((time.time(), self.inflight))

    def in_flight(self, start: float, end: float) -> tuple[float, int]:
        """Return the time-weighted mean and the max of calls in flight in [start, end]."""
        if end <= start:
            return 0.0, 0
        level = 0
        for when, count in self.changes:
            if when > start:
                break
            level = count
        area, peak, at = 0.0, level, start
        for when, count in self.changes:
            if when <= start:
                continue
            if when >= end:
                break
            area += level * (when - at)
            at, level, peak = when, count, max(peak, count)
        area += level * (end - at)
        return area / (end - start), peak


class LatencyModel(SyntheticProjectModel):
    """Writes synthetic task i's files after a seeded log-normal latency (median, sigma).

    Runs on the event loop only (``_agenerate``): the sleep is ``asyncio.sleep``, as a
    provider's network wait would be. Copies (``bind_tools``, the meter) share one log.
    """

    median: float = 0.3
    sigma: float = 0.5
    log: CallLog = Field(default_factory=CallLog)

    @property
    def _llm_type(self) -> str:
        return "simulated-latency"

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        text = "\n".join(str(m.content) for m in messages)
        match = _TASK.search(text)
        task = match.group(1) if match else "-"
        n = self.log.begin(task)
        latency = lognormal(self.median, self.sigma, self.seed, task, n)
        try:
            await asyncio.sleep(latency)
            return self._generate(messages, stop, **kwargs)
        finally:
            self.log.end(task, latency)


Inspect = Callable[[Path], list[Diagnostic]]
"""Read a validated tree and return what is wrong with it (nothing: it passes)."""


class SimulatedGates:
    """Stands in for ``run_gates``: sleeps ``seconds`` (blocking, in the caller's thread).

    Its result has one check, ``simulated``, that says it checked no code; with ``inspect``
    the check runs that callable on the tree and fails with its findings, if any.
    """

    def __init__(self, seconds: float, inspect: Inspect | None = None) -> None:
        """Prepare gates that take ``seconds`` and, with ``inspect``, can fail."""
        self.seconds, self.inspect = seconds, inspect
        self.runs = 0
        self.inflight = 0
        self.peak = 0
        """The most validations that ran at once."""
        self._lock = threading.Lock()

    def __call__(self, ctx: Any, tree: Path, *args: Any, **options: Any) -> ValidationResult:
        """Sleep, then return the simulated verdict on ``tree`` (``run_gates``' signature)."""
        with self._lock:
            self.runs += 1
            self.inflight += 1
            self.peak = max(self.peak, self.inflight)
        try:
            start = time.perf_counter()
            time.sleep(self.seconds)
            found = self.inspect(Path(tree)) if self.inspect else []
            took = time.perf_counter() - start
        finally:
            with self._lock:
                self.inflight -= 1
        what = f"slept {self.seconds:g} s and checked no code"
        if self.inspect:
            what = f"slept {self.seconds:g} s; {len(found)} finding(s) of {self.inspect.__name__}"
        check = Check(
            "simulated",
            "failed" if found else "passed",
            [],
            1 if found else 0,
            took,
            f"simulated gates (a benchmark's stand-in): {what}",
        )
        return ValidationResult(checks=[check], diagnostics=found, duration_s=took)
