"""oldnew embedded in an agent: the graph as a LangChain tool whose questions reach its caller.

As a host graph's node, oldnew needs nothing from here: it reads its settings from the host's
context by :func:`oldnew.host.context_of`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool, InjectedToolCallId, StructuredTool
from pydantic import BaseModel, Field

from oldnew.context import Context
from oldnew.graph.build import build_graph

if TYPE_CHECKING:
    from langgraph.store.base import BaseStore

    from oldnew.models import ModelOverrides


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
    The tool is async, as oldnew's graph is: drive the agent with ``ainvoke`` or ``astream``.

    Args:
        context: oldnew's settings (model, quality, ...). Without a ``workspace``, each call
            of the tool gets its own, ``runs/<agent thread id>-<tool call id>`` under the
            current directory.
        models: chat models for oldnew's roles, as :func:`oldnew.build_graph` takes them.
        store: a LangGraph store for oldnew's memory; None: the agent's, if any.
        name: the tool's name, as the agent's model sees it.
        description: what the agent's model is told the tool does.

    """
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
