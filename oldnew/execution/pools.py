"""Thread pools by kind of blocking work, so that one kind never starves another.

``asyncio.to_thread`` shares one default executor (``min(32, cpus + 4)`` threads: six here)
among everything: gate runs of minutes, git calls of milliseconds, event-log appends. With
eight agents validating, the other kinds wait behind them. Here each kind has its own pool:

- ``GATES``: validations (a task's own, the merge queue's), as many at once as
  ``gate_slots`` says: each runs several tools at once, so more than the CPU can carry only
  makes every one slower;
- ``GIT``: git and other short file work (worktrees, commits, rebases, merges);
- ``LOG``: appends to the event log, one thread, so events keep their order.

The pools are made on first use and live for the process; ``configure`` sizes the gate pool
to a run's context.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Literal, ParamSpec, TypeVar

Kind = Literal["gates", "git", "log"]
GATES: Kind = "gates"
GIT: Kind = "git"
LOG: Kind = "log"

P = ParamSpec("P")
R = TypeVar("R")

_SIZES: dict[Kind, int] = {GIT: 4, LOG: 1}
_pools: dict[Kind, ThreadPoolExecutor] = {}
_lock = threading.Lock()


def default_gate_slots() -> int:
    """Return how many validations run at once by default: one per CPU, at least two."""
    return max(2, os.cpu_count() or 2)


def configure(gate_slots: int) -> None:
    """Size the gate pool to ``gate_slots`` (0: one per CPU); a busy old pool finishes its work."""
    size = gate_slots or default_gate_slots()
    with _lock:
        if _SIZES.get(GATES) == size and GATES in _pools:
            return
        _SIZES[GATES] = size
        old = _pools.pop(GATES, None)
    if old is not None:
        old.shutdown(wait=False)


def size(kind: Kind) -> int:
    """Return how many threads the pool of ``kind`` has."""
    return _SIZES.get(kind) or default_gate_slots()


def pool(kind: Kind) -> ThreadPoolExecutor:
    """Return the pool for ``kind``, made on first use."""
    with _lock:
        executor = _pools.get(kind)
        if executor is None:
            executor = ThreadPoolExecutor(size(kind), thread_name_prefix=f"oldnew-{kind}")
            _pools[kind] = executor
        return executor


async def offload(kind: Kind, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Run ``fn`` in the pool of ``kind`` and await it, as ``asyncio.to_thread`` would.

    The caller's context variables go along (LangGraph's config and stream writer among them).
    A cancelled caller of git or file work waits for it to end before it stops: half-done
    git work must never meet the next command on the same clone (a cancelled run's retry,
    say). A gate run is left to end on its own: it can take minutes.
    """
    loop = asyncio.get_running_loop()
    call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
    work = loop.run_in_executor(pool(kind), call)
    if kind == GATES:
        return await work
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        while not work.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({work})
        if not work.cancelled():
            work.exception()  # retrieved: the cancellation is what the caller hears of
        raise
