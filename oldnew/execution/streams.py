"""Task progress on the run's own stream, as a nested graph's would be.

Each task's graph runs on its own thread (``execution.threads``), not as a subgraph node, so
LangGraph does not relay its chunks to the run's caller. A caller who streams with
``subgraphs=True`` (``stream_subgraphs`` in langgraph-sdk) still gets each task's ``updates``
under the namespace ``("execute:<id>", "task:<task id>")``, while the task works.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langchain_core.runnables import RunnableConfig

# LangGraph has no public hook for this: a graph that streams its subgraphs hands every node
# its stream under this configurable key (set only when ``subgraphs=True``), and a nested
# graph's loop writes ``(namespace, mode, payload)`` chunks to it. tests/test_forks.py fails
# if LangGraph renames the key or changes the chunk's shape.
from langgraph._internal._constants import CONFIG_KEY_STREAM

Relay = Callable[[str, str, Any], None]
"""``relay(task_id, mode, payload)``: put one task's chunk on the run's stream."""


def subgraph_relay(config: RunnableConfig) -> Relay | None:
    """Return what relays task chunks to the caller's subgraph stream, or None (not asked)."""
    configurable = config.get("configurable") or {}
    stream = configurable.get(CONFIG_KEY_STREAM)
    if stream is None:
        return None
    parent = tuple(p for p in str(configurable.get("checkpoint_ns") or "").split("|") if p)
    modes = set(getattr(stream, "modes", ()))

    def relay(task_id: str, mode: str, payload: Any) -> None:
        if mode in modes:
            stream(((*parent, f"task:{task_id}"), mode, payload))

    return relay
