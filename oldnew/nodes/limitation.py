"""Known limitation: a task that is not critical and cannot be finished ends here.

What it wrote is kept on the branch ``oldnew/partial/<task>`` (``main`` does not move), and the
task ends blocked with the limitation's reason and options, which the report lists. Nobody
waits for it: the tasks that do not depend on it go on.
"""

from __future__ import annotations

import asyncio
from typing import Any

from oldnew.graph.state import TaskState
from oldnew.nodes.common import aemit, aopen_workspace
from oldnew.recovery.stall import keep_partial


async def record_limitation(state: TaskState) -> dict[str, Any]:
    """Keep the task's partial work on a branch and end it as a known limitation."""
    ws = await aopen_workspace(state["workspace"])
    task = state["task"]
    limitation = dict(state.get("limitation") or {})
    reason = str(limitation.get("reason") or "the task could not be finished")
    branch = await asyncio.to_thread(keep_partial, ws, task["id"], task["title"], reason)
    limitation["branch"] = branch
    await aemit(
        ws,
        task=task["id"],
        node="record_limitation",
        event="limitation",
        reason=reason,
        branch=branch,
    )
    return {
        "status": "blocked",
        "limitation": limitation,
        "blocker": f"known limitation: {reason}",
        "question": None,
    }
