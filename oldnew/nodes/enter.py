"""The way into a run: a new scope, a restart after a stop, or feedback on a run that ended.

Callers never steer the graph by writing state as if a node had run: they pass their intent as
input (``InputState``), and this node decides where the run goes from where it stands.
"""

from __future__ import annotations

from typing import Any, Literal

from langgraph.types import Command

from oldnew.graph.routing import where_it_stands
from oldnew.graph.state import RunState


async def enter(
    state: RunState,
) -> Command[Literal["scope", "plan", "acceptance", "baseline", "execute", "ask", "deliver"]]:
    """Go on from where the run stands; a restart first clears the stop it ended with."""
    update: dict[str, Any] = {}
    if state.get("restart"):
        update = {"restart": False, "status": "executing", "budget_stops": {}}
    return Command(update=update, goto=where_it_stands({**state, **update}))  # type: ignore[typeddict-item]
