"""Helpers the nodes share: the workspace of a run and progress events."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.config import get_stream_writer

from oldnew.context import Context
from oldnew.deps.envs import project_env
from oldnew.deps.settings import DepSettings
from oldnew.errors import OldnewError
from oldnew.execution.pools import GIT, LOG, offload
from oldnew.milestones import is_web
from oldnew.supporting import collect
from oldnew.web.preview import preview_status, start_preview
from oldnew.web.start import AppFailure
from oldnew.web.summary import web_evidence
from oldnew.web.targets import WebTargets, from_scope
from oldnew.workspace import Workspace

TOOLCHAINS = {"python": "python", "typescript": "typescript", "javascript": "typescript"}

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


WORKSPACE_HERE: ContextVar[str | None] = ContextVar("oldnew_workspace_here", default=None)
"""The run's workspace on this machine, where it differs from the path a task's state names:
a worker's own clone of the run (``oldnew.cluster``) runs tasks another machine started."""


async def aopen_workspace(root: str) -> Workspace:
    """Open the task's workspace (``root``, or :data:`WORKSPACE_HERE`), off the event loop."""
    return await offload(GIT, Workspace, WORKSPACE_HERE.get() or root)


def _log(ws: Workspace, event: dict[str, Any]) -> None:
    with _log_lock:
        ws.log_event(**event)


async def aemit(ws: Workspace, **event: Any) -> None:
    """:func:`emit` for async nodes: the log is written off the event loop."""
    await offload(LOG, _log, ws, event)
    try:
        get_stream_writer()(event)
    except RuntimeError:
        pass


def scope_toolchains(state: Mapping[str, Any]) -> list[str] | None:
    """Return the toolchains the scope names: its language's, and ``web`` for a web stack.

    None before the scope is known: the files show them.
    """
    language = (state.get("scope") or {}).get("language")
    if not language:
        return None
    return [TOOLCHAINS.get(str(language), str(language))] + (["web"] if is_web(state) else [])


def web_gate_options(state: Mapping[str, Any], ws: Workspace, label: str) -> dict[str, Any]:
    """Return ``run_gates``' keywords for a check of main as a whole, recorded as ``label``.

    For a web app: the milestone gate set on the scope's pages and endpoints, its files
    (screenshots, reports, logs) kept beside the evidence. Nothing for other projects.
    """
    if not is_web(state):
        return {}
    return milestone_gate_options(from_scope(state.get("scope") or {}), ws, label)


def milestone_gate_options(web: WebTargets, ws: Workspace, label: str) -> dict[str, Any]:
    """Return ``run_gates``' keywords for the milestone gate set on ``web``'s targets.

    Its files are kept beside the evidence recorded as ``label``.
    """
    return {"milestone": True, "web": web, "evidence_dir": web_evidence(ws, label)}


def serve_preview(ws: Workspace, ctx: Context, commit: str) -> dict[str, Any]:
    """Serve main at ``commit`` as the run's preview (blocking); return what to record.

    ``{"preview": url}``, or ``{"preview_error": why}``: a preview that does not come up never
    fails the milestone or the delivery whose gates passed. A preview already serving that
    commit is kept; ``preview_port`` 0 starts none.
    """
    if ctx.preview_port == 0:
        return {}
    current = preview_status(ws.root)
    if current is not None and current.commit == commit:
        return {"preview": current.url}
    try:
        env = project_env(ws.root, DepSettings.of(ctx))  # what the gates ran it with
        preview = start_preview(
            ws.root, tree=ws.root, commit=commit, port=ctx.preview_port, env=env
        )
    except (AppFailure, OldnewError, OSError) as exc:  # reported: the app passed its gates
        return {"preview_error": f"{type(exc).__name__}: {exc}"[:1500]}
    return {"preview": preview.url}


def evidence_extras(options: dict[str, Any]) -> dict[str, Any]:
    """Return what a check of main records beside its result, for ``oldnew verify``.

    For a web app: the targets its milestone gates ran on (verify runs them on the same ones);
    with the tester's suite: the requirements whose acceptance tests ran.
    """
    web, suite = options.get("web"), options.get("acceptance")
    out: dict[str, Any] = {"targets": web.to_dict()} if web is not None else {}
    return out | ({"acceptance": list(suite.requirements)} if suite is not None else {})
