"""A run's session: its checkpoints, its memory store, its context, and one stream of it.

One process works on a workspace at a time (a file lock); the run's thread id is its run id,
and its checkpoints live in ``.oldnew/checkpoints.sqlite`` inside the workspace.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.graph.state import CompiledStateGraph
from langgraph.store.sqlite.aio import AsyncSqliteStore

from oldnew.context import Context
from oldnew.graph.build import build_graph
from oldnew.models import ModelOverrides, aclose_http_clients
from oldnew.workspace import Workspace

SCOPE_COPY = "scope.md"
EventSink = Callable[[dict[str, Any]], None]
RunGraph = CompiledStateGraph[Any, Any, Any, Any]


def run_config(run_id: str) -> RunnableConfig:
    """Return the config of the run's own thread."""
    return {"configurable": {"thread_id": run_id}, "recursion_limit": 500}


@asynccontextmanager
async def open_memory(path: str | None, ws: Workspace | None = None) -> AsyncIterator[Any]:
    """Yield the memory store at ``path``, or None when it is off or cannot be opened.

    A corrupted or locked memory file never stops a run: the run goes on without memory
    and its event log says why.
    """
    async with AsyncExitStack() as stack:
        store: AsyncSqliteStore | None = None
        if path and path != "off":
            file = Path(path).expanduser()
            try:
                file.parent.mkdir(parents=True, exist_ok=True)
                store = await stack.enter_async_context(
                    AsyncSqliteStore.from_conn_string(str(file))
                )
                await store.setup()
                await store.asearch(("oldnew",), limit=1)
            except Exception as exc:  # noqa: BLE001 - memory is optional, the run is not
                store = None
                if ws is not None:
                    ws.log_event(
                        node="memory",
                        event="unavailable",
                        path=str(file),
                        error=f"{type(exc).__name__}: {exc}",
                    )
        yield store


@asynccontextmanager
async def open_graph(
    ws: Workspace, models: ModelOverrides = None, memory_path: str | None = None
) -> AsyncIterator[CompiledStateGraph[Any, Any, Any, Any]]:
    """Yield the graph compiled on the workspace's SQLite checkpoints and the memory store."""
    try:
        async with (
            AsyncSqliteSaver.from_conn_string(str(ws.checkpoints)) as saver,
            open_memory(memory_path, ws) as store,
        ):
            yield build_graph(models=models, checkpointer=saver, store=store)
    finally:
        await aclose_http_clients()  # pooled connections must not outlive this event loop


def run_context(ws: Workspace, overrides: dict[str, Any]) -> Context:
    """Return the run's context: what it was started with, then ``overrides`` (not None).

    A saved key that is no setting (a tool's own note, a setting a later version dropped) is
    left out, so a workspace written by another version or by a benchmark still opens.
    """
    known = set(inspect.signature(Context).parameters)  # fields, and former names of fields
    saved = (ws.run_info() or {}).get("context", {})
    merged = {k: v for k, v in saved.items() if k in known and v is not None}
    merged |= {k: v for k, v in overrides.items() if v is not None}
    return Context(**merged, workspace=str(ws.root))


async def stream(
    graph: RunGraph,
    inp: Any,
    config: RunnableConfig,
    ctx: Context,
    on_event: EventSink | None,
) -> None:
    """Run the graph on ``inp`` to its next stop, handing progress events to ``on_event``."""
    async for mode, chunk in graph.astream(
        inp, config, context=ctx, stream_mode=["updates", "custom"]
    ):
        if on_event is None:
            continue
        if mode == "custom" and isinstance(chunk, dict):
            on_event(chunk)
        elif isinstance(chunk, dict):
            for node in chunk:
                if node != "__interrupt__":
                    on_event({"node": node, "event": "finished"})
