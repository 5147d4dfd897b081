"""Model wait: the seconds each task spends waiting for model replies.

A task's time limit (``task_time_limit``) counts its own work: writing files, validating,
committing. A slow model (a large one, a busy provider) is not a stuck task, so the meter
(:class:`oldnew.budget.meter.BudgetMeter`, on every model a task calls) starts a task's wait
clock when a call starts and stops it when the reply (or an error) arrives, and the scheduler
subtracts the clock from the task's elapsed time. Calls in flight at once count once.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from uuid import UUID


class WaitClock:
    """The model-wait seconds of one task since it was (re)started."""

    def __init__(self) -> None:
        """Start at zero, with no call in flight."""
        self._lock = threading.Lock()
        self._total = 0.0
        self._calls: set[UUID] = set()
        self._since = 0.0

    def reset(self) -> None:
        """Start counting again: the task is (re)started by the scheduler."""
        with self._lock:
            self._total, self._calls = 0.0, set()

    def begin(self, call: UUID) -> None:
        """Note that model call ``call`` started."""
        with self._lock:
            if not self._calls:
                self._since = time.monotonic()
            self._calls.add(call)

    def end(self, call: UUID) -> None:
        """Note that model call ``call`` ended (a reply or an error); unknown calls are ignored."""
        with self._lock:
            if call not in self._calls:
                return
            self._calls.discard(call)
            if not self._calls:
                self._total += time.monotonic() - self._since

    def waiting(self) -> bool:
        """Say whether a model call is in flight now."""
        with self._lock:
            return bool(self._calls)

    def waited(self) -> float:
        """Return the seconds waited so far, the call in flight included."""
        with self._lock:
            live = time.monotonic() - self._since if self._calls else 0.0
            return self._total + live


_CLOCKS: dict[tuple[str, str], WaitClock] = {}
_CLOCKS_LOCK = threading.Lock()


def wait_clock(workspace: str | Path, task: str) -> WaitClock:
    """Return the wait clock of ``task`` in the run at ``workspace`` (made on first use)."""
    key = (str(Path(workspace).resolve()), task)
    with _CLOCKS_LOCK:
        clock = _CLOCKS.get(key)
        if clock is None:
            clock = _CLOCKS[key] = WaitClock()
        return clock
