"""Helpers the nodes share: the workspace of a run and progress events."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.config import get_stream_writer

from oldnew.context import Context
from oldnew.workspace import Workspace


def run_workspace(context: Context, config: RunnableConfig) -> Workspace:
    """Return the run's workspace: the context's, else runs/<thread id> (server runs)."""
    thread_id = str(config.get("configurable", {}).get("thread_id", "default"))
    root = Path(context.workspace) if context.workspace else Path.cwd() / "runs" / thread_id
    return Workspace.ensure(root, thread_id)


def emit(ws: Workspace, **event: Any) -> None:
    """Record an event in the run's log and stream it to whoever is watching."""
    ws.log_event(**event)
    try:
        get_stream_writer()(event)
    except RuntimeError:
        pass  # called outside a graph run (unit tests): the log is enough
