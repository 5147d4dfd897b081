"""Giving up on a task: a known limitation, or a stop at the time limit.

A task that is not critical and cannot be finished ends in ``record_limitation``.

What it wrote is kept on the branch ``oldnew/partial/<task>`` (``main`` does not move), and the
task ends blocked with the limitation's reason and options, which the report lists. Nobody
waits for it: the tasks that do not depend on it go on.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from langgraph.types import Command

from oldnew.graph.state import TaskState
from oldnew.nodes.common import aemit, aopen_workspace
from oldnew.recovery.degrade import timeout_question
from oldnew.recovery.diagnosis import decide
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


async def stop(state: TaskState) -> Command[Literal["escalate", "record_limitation"]]:
    """Stop a task the scheduler found past its time limit (and could not split).

    Its partial work goes on a branch; a critical task asks a person whether to run it again,
    any other ends as a known limitation.
    """
    ws = await aopen_workspace(state["workspace"])
    task = state["task"]
    reason = str(state.get("stop") or "it ran past its time limit")
    branch = await asyncio.to_thread(keep_partial, ws, task["id"], task["title"], reason)
    update = decide(state, timeout_question(state, reason, branch))
    if update.get("limitation"):
        update["limitation"]["branch"] = branch
    goto: Literal["escalate", "record_limitation"] = (
        "escalate" if update.get("status") == "waiting" else "record_limitation"
    )
    await aemit(ws, task=task["id"], node="stop", event="stopped", reason=reason, then=goto)
    return Command(update={**update, "stop": None}, goto=goto)
