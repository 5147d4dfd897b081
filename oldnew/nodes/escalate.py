"""Escalation: a task asks a person, and the answer decides where it goes next.

``skip`` on a task that is not critical makes it a known limitation (``record_limitation``
keeps its partial work on a branch and the run delivers the rest); on a critical task it ends
the task blocked, as the option's label says.

``interrupt()`` is the first thing this node does: a resumed node re-runs from its top, so
nothing before it may have side effects.
"""

from __future__ import annotations

from typing import Any, Literal

from langgraph.types import Command, interrupt

from oldnew.graph.state import TaskState
from oldnew.hitl.questions import RETRY, SKIP, limitation_of
from oldnew.nodes.common import aemit, aopen_workspace
from oldnew.recovery import policy

Way = Literal["code", "fix", "record_limitation", "__end__"]


async def escalate(state: TaskState) -> Command[Way]:
    """Wait for a person's answer to the task's question; the answer says where to go.

    Code again with the answer, fix with it as guidance (its kind's row in the policy says
    which), record a known limitation, or end a skipped critical task blocked.
    """
    question = state["question"] or {}
    answer = str(interrupt(question))
    ws = await aopen_workspace(state["workspace"])
    task_id = state["task"]["id"]
    await aemit(
        ws,
        task=task_id,
        node="escalate",
        event="answered",
        question=question.get("id"),
        answer=answer,
    )
    answered: dict[str, Any] = {
        "question": None,
        "answer": {"question": question.get("title", ""), "answer": answer},
    }
    if answer == SKIP:
        reason = f"skipped by a person: {question.get('title', '')}"
        if not state.get("critical", True):
            limitation = limitation_of(question, reason)
            update = {**answered, "status": "limiting", "limitation": limitation}
            return Command(update=update, goto="record_limitation")
        return Command(update={**answered, "status": "blocked", "blocker": reason}, goto="__end__")
    if policy.resume(question.get("kind")) == "fix":
        guidance = None if answer == RETRY else answer
        update = {**answered, "status": "fixing", "fix_round": 0, "guidance": guidance}
        return Command(update=update, goto="fix")
    return Command(update={**answered, "status": "coding"}, goto="code")
