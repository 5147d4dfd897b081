"""Embedding oldnew: its settings from a host's context, and oldnew as a LangChain agent's tool.

A host LangGraph app adds oldnew's compiled graph as a node; the run's ``runtime.context`` is
then the host's. :func:`context_of` is the one place that turns whatever it carries into
oldnew's :class:`~oldnew.context.Context` (every node reads its settings through it).
:func:`as_tool` wraps the graph as a tool whose questions reach the agent's caller.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, fields, is_dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool, InjectedToolCallId, StructuredTool
from pydantic import BaseModel, Field

from oldnew.context import Context
from oldnew.errors import ConfigurationError

if TYPE_CHECKING:
    from langgraph.store.base import BaseStore

    from oldnew.models import ModelOverrides

HOST_KEY = "oldnew"
"""The attribute or key of a host's context that holds oldnew's settings."""
SETTINGS = frozenset({f.name for f in fields(Context)} | {"gates"})
"""The names a settings mapping may use: Context's fields and the former ``gates``."""
HOW = (
    "pass oldnew's settings as the host context's 'oldnew' attribute or key (an "
    "oldnew.Context or a dict of its settings), or give the host context fields named like "
    "oldnew's (workspace, model, ...)"
)


def context_of(value: object) -> Context:
    """Return oldnew's Context from what a run's ``runtime.context`` carries.

    Taken, in this order: nothing (the defaults, with ``OLDNEW_*`` variables); an oldnew
    Context; a host context whose ``oldnew`` attribute or key holds a Context or a dict of
    settings; a dict of oldnew's settings (a server run's JSON context); a host dataclass or
    Pydantic model, whose fields named like oldnew's are taken and the others left alone.

    Raises:
        ConfigurationError: the value holds none of oldnew's settings, or a dict names
            settings oldnew does not have; the message says how to pass them.
        UsageError: a setting is outside what it allows (as when a Context is made).

    """
    if value is None:
        return Context()
    if isinstance(value, Context):
        return value
    nested = value.get(HOST_KEY) if isinstance(value, Mapping) else getattr(value, HOST_KEY, None)
    if nested is not None:
        if isinstance(nested, Context):
            return nested
        if isinstance(nested, Mapping):
            return _from_settings(dict(nested), f"the host context's {HOST_KEY!r}")
        raise ConfigurationError(
            f"the host context's {HOST_KEY!r} is a {type(nested).__name__}: {HOW}"
        )
    if isinstance(value, Mapping):
        return _from_settings(dict(value), "the run's context")
    shared = _shared_fields(value)
    if shared is None or not shared:
        what = type(value).__name__
        raise ConfigurationError(
            f"the run's context ({what}) carries none of oldnew's settings (workspace, "
            f"model, ...): {HOW}"
        )
    return Context(**shared)


def _shared_fields(value: object) -> dict[str, Any] | None:
    """Return a host dataclass's or model's fields that oldnew has; None for other objects."""
    if isinstance(value, BaseModel):
        values = value.model_dump()
    elif is_dataclass(value) and not isinstance(value, type):
        values = asdict(value)
    else:
        return None
    return {k: v for k, v in values.items() if k in SETTINGS}


def _from_settings(settings: dict[str, Any], where: str) -> Context:
    unknown = sorted(set(settings) - SETTINGS)
    if unknown:
        raise ConfigurationError(
            f"{where} names {', '.join(map(repr, unknown))}, not settings of oldnew: {HOW}"
        )
    return Context(**settings)


TOOL_DESCRIPTION = (
    "Build a tested software project from a scope (one line to a requirements document): "
    "oldnew plans tasks, codes, validates and commits each, and delivers a git repository. "
    "It may pause with questions for a person; the answers resume it. Returns where the run "
    "ended: its status, workspace, tasks and report."
)


class ToolInput(BaseModel):
    """What an agent passes to oldnew's tool."""

    scope: str = Field(description="What to build: one line to a whole requirements document.")
    tool_call_id: Annotated[str, InjectedToolCallId]


def as_tool(
    *,
    context: Context | None = None,
    models: ModelOverrides = None,
    store: BaseStore | None = None,
    name: str = "oldnew",
    description: str = TOOL_DESCRIPTION,
) -> BaseTool:
    """Return oldnew as a LangChain tool an agent calls with a scope.

    The tool runs oldnew's graph on the agent's own config, so the run is a subgraph of the
    agent's: its checkpoints go to the agent's checkpointer (the agent needs one), and a
    question oldnew asks pauses the agent (its caller gets ``__interrupt__`` with the
    questions, as from oldnew itself). ``Command(resume={question id: answer})`` sent to the
    agent calls the tool again, which resumes the run where it paused.

    Args:
        context: oldnew's settings (model, quality, ...). Without a ``workspace``, each call
            of the tool gets its own, ``runs/<agent thread id>-<tool call id>`` under the
            current directory.
        models: chat models for oldnew's roles, as :func:`oldnew.build_graph` takes them.
        store: a LangGraph store for oldnew's memory; None: the agent's, if any.
        name: the tool's name, as the agent's model sees it.
        description: what the agent's model is told the tool does.

    """
    from oldnew.graph.build import build_graph

    graph = build_graph(models=models, store=store)
    settings = context or Context()

    async def run(scope: str, tool_call_id: str, config: RunnableConfig) -> str:
        ctx = settings
        if ctx.workspace is None:
            thread = str(config.get("configurable", {}).get("thread_id", "default"))
            ctx = replace(ctx, workspace=str(Path.cwd() / "runs" / f"{thread}-{tool_call_id}"))
        # The agent's config: the run nests in the agent's, so interrupt() reaches its caller.
        out = await graph.ainvoke({"scope_text": scope}, config=config, context=ctx)
        return tool_result(out, str(ctx.workspace))

    return StructuredTool.from_function(
        coroutine=run, name=name, description=description, args_schema=ToolInput
    )


def tool_result(out: Mapping[str, Any], workspace: str) -> str:
    """Return what the agent's model reads of a finished run: status, tasks, report."""
    lines = [f"oldnew run {out.get('status')}; workspace {workspace}"]
    for task in (out.get("tasks") or {}).values():
        commit = (task.get("commit") or "-")[:10]
        lines.append(f"- {task['id']} {task.get('title', '')}: {task.get('status')} ({commit})")
    if out.get("report"):
        lines.append(f"report: {out['report']}")
    return "\n".join(lines)
