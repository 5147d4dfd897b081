"""Helpers the nodes share: the workspace of a run and progress events."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.config import get_stream_writer

from oldnew.context import Context
from oldnew.supporting import collect
from oldnew.workspace import Workspace

_log_lock = threading.Lock()


def run_workspace(
    context: Context, config: RunnableConfig, supporting: list[str] | None = None
) -> Workspace:
    """Return the run's workspace: the context's, else runs/<thread id> (server runs).

    A workspace made here (a server's or a host graph's new run) starts with the
    ``supporting`` files (paths on this machine), checked as ``--with`` checks them.
    """
    thread_id = str(config.get("configurable", {}).get("thread_id", "default"))
    root = Path(context.workspace) if context.workspace else Path.cwd() / "runs" / thread_id
    given = supporting or []
    return Workspace.ensure(root, thread_id, lambda: collect(given, root) if given else {})


def emit(ws: Workspace, **event: Any) -> None:
    """Record an event in the run's log and stream it to whoever is watching."""
    ws.log_event(**event)
    try:
        get_stream_writer()(event)
    except RuntimeError:
        pass  # called outside a graph run (unit tests): the log is enough


async def arun_workspace(
    context: Context, config: RunnableConfig, supporting: list[str] | None = None
) -> Workspace:
    """:func:`run_workspace` off the event loop (it stats, mkdirs and runs git)."""
    return await asyncio.to_thread(run_workspace, context, config, supporting)


async def aopen_workspace(root: str) -> Workspace:
    """``Workspace(root)`` off the event loop (it resolves the path on disk)."""
    return await asyncio.to_thread(Workspace, root)


def _log(ws: Workspace, event: dict[str, Any]) -> None:
    with _log_lock:
        ws.log_event(**event)


async def aemit(ws: Workspace, **event: Any) -> None:
    """:func:`emit` for async nodes: the log is written off the event loop."""
    await asyncio.to_thread(_log, ws, event)
    try:
        get_stream_writer()(event)
    except RuntimeError:
        pass
