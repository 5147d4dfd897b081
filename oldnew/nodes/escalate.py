"""Escalation: a task asks a person, and the answer decides where it goes next.

``skip`` on a task that is not critical makes it a known limitation (``record_limitation``
keeps its partial work on a branch and the run delivers the rest); on a critical task it ends
the task blocked, as the option's label says.

``interrupt()`` is the first thing this node does: a resumed node re-runs from its top, so
nothing before it may have side effects.
"""

from __future__ import annotations

from typing import Any

from langgraph.types import interrupt

from oldnew.graph.state import TaskState
from oldnew.hitl.questions import RETRY, SKIP, limitation_of
from oldnew.nodes.common import aemit, aopen_workspace
from oldnew.recovery import policy


async def escalate(state: TaskState) -> dict[str, Any]:
    """Wait for a person's answer to the task's question, then record it."""
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
    record = {"question": question.get("title", ""), "answer": answer}
    if answer == SKIP and not state.get("critical", True):
        reason = f"skipped by a person: {question.get('title', '')}"
        limitation = limitation_of(question, reason)
        return {"status": "limiting", "question": None, "answer": record, "limitation": limitation}
    if answer == SKIP:
        return {
            "status": "blocked",
            "question": None,
            "answer": record,
            "blocker": f"skipped by a person: {question.get('title', '')}",
        }
    if policy.resume(question.get("kind")) == "fix":
        guidance = None if answer == RETRY else answer
        return {
            "status": "fixing",
            "question": None,
            "answer": record,
            "fix_round": 0,
            "guidance": guidance,
        }
    return {"status": "coding", "question": None, "answer": record}
