"""The budget in the outer graph: working-time spans around nodes, and clean stops.

``budgeted(node)`` wraps an outer node (scope, plan, execute, deliver): it counts the node's
time as working time, and turns a run cap reached inside it (``BudgetExceeded`` from a planner
call, say) into ``{"budget_stops": {"run": ...}}``, which routes the run to ``deliver``: the
report and the resume plan are written, nothing is lost, and ``oldnew resume`` with a raised cap
goes on from there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.runtime import Runtime

from oldnew.budget.meter import ledger_of
from oldnew.context import Context
from oldnew.errors import BudgetExceeded
from oldnew.graph.state import RunState
from oldnew.host import context_of
from oldnew.nodes.common import aemit, arun_workspace

OuterNode = Callable[..., Awaitable[dict[str, Any]]]


def budgeted(node: OuterNode, name: str) -> OuterNode:
    """Wrap the outer node ``node`` (named ``name``) in a working span and a budget stop."""

    async def run_node(
        state: RunState, runtime: Runtime[Context], config: RunnableConfig
    ) -> dict[str, Any]:
        ws = await arun_workspace(context_of(runtime.context), config, state.get("supporting"))
        ledger = ledger_of(ws.root)
        span = ledger.open_span()
        try:
            return await node(state, runtime=runtime, config=config)
        except BudgetExceeded as exc:
            await aemit(ws, node=name, event="budget_stop", detail=exc.reason, flag=exc.flag)
            return {"budget_stops": {**(state.get("budget_stops") or {}), "run": exc.to_dict()}}
        finally:
            await asyncio.shield(asyncio.to_thread(ledger.close_span, span))

    run_node.__name__ = run_node.__qualname__ = name
    run_node.__doc__ = node.__doc__
    return run_node
