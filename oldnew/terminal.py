"""The terminal a command writes to: output that survives a closed pipe, SIGTERM as Ctrl-C.

``console`` and ``err`` are the CLI's stdout and stderr. A reader that leaves early
(``oldnew resume ... | head -1``) never stops the run: stdout goes to /dev/null from then on
(``closed_pipe_ok``, ``stdout_closed``). ``run_to_stop`` runs a command's coroutine so that
SIGTERM stops it the way Ctrl-C does (``Terminated``), resumable, and a second SIGTERM while
the step under way ends is said, not fatal.
"""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import sys
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from rich.console import Console

T = TypeVar("T")

WIDE = 200
"""Columns of output that is not a terminal: tables and paths are never cut at 80."""


class PipeSafeConsole(Console):
    """A console whose closed stdout (its reader left) ends the output, never the run."""

    def on_broken_pipe(self) -> None:
        """Go quiet, and point stdout at /dev/null; rich's own exits the process."""
        self.quiet = True
        _stdout_gone()


console = PipeSafeConsole(
    highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else WIDE
)
err = Console(stderr=True, highlight=False, soft_wrap=True)


_closed = False
"""Whether stdout was found closed (a reader such as 'head' left): output goes nowhere."""


@contextmanager
def closed_pipe_ok() -> Iterator[None]:
    """Swallow a closed stdout for the rest of the process: the run must not die of it.

    Once the reader is gone, stdout is pointed at /dev/null, so later writes (and the
    interpreter's last flush) go nowhere instead of failing again.
    """
    try:
        yield
    except OSError as exc:
        if not isinstance(exc, BrokenPipeError) and exc.errno != errno.EPIPE:
            raise
        _stdout_gone()


def _stdout_gone() -> None:
    """Send the rest of stdout to /dev/null (writes, and the interpreter's last flush)."""
    global _closed
    _closed = True
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)
    except (OSError, ValueError, AttributeError):
        pass  # not a real file (a test's runner): the flag keeps output off


def run_to_stop(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on a new event loop, SIGTERM stopping it as Ctrl-C does."""
    try:
        return asyncio.run(_until_sigterm(coro))
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


class Terminated(Exception):
    """The run was stopped by SIGTERM (as by Ctrl-C: cancelled, its finished steps saved)."""


async def _until_sigterm(coro: Coroutine[Any, Any, T]) -> T:
    """Await ``coro``; on SIGTERM cancel it as asyncio cancels a run on Ctrl-C.

    The loop's own signal handler, not SIGINT's: a process started in the background of a
    script has SIGINT ignored, and must still stop cleanly when it is terminated.
    """
    loop, task = asyncio.get_running_loop(), asyncio.current_task()
    assert task is not None
    terminated: list[bool] = []

    def stop() -> None:
        if not terminated:
            err.print("stopping (SIGTERM): the step under way ends first, then the run is saved")
        terminated.append(True)
        task.cancel()

    try:
        loop.add_signal_handler(signal.SIGTERM, stop)
    except (ValueError, RuntimeError):  # not the main thread: SIGTERM is the host's
        return await coro
    try:
        return await coro
    except asyncio.CancelledError:
        if terminated:
            raise Terminated from None
        raise
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        # asyncio.run still waits for work in threads (a gate): a second SIGTERM meanwhile
        # must not kill the process half-way (run_to_stop puts the default back afterwards).
        signal.signal(signal.SIGTERM, _still_stopping)


def _still_stopping(signum: int, frame: object) -> None:
    """Say that the run is stopping already (a second SIGTERM while threads finish)."""
    err.print("still stopping: waiting for the step under way to end")


def stdout_closed() -> bool:
    """Say whether stdout was found closed: output goes nowhere from then on."""
    return _closed
