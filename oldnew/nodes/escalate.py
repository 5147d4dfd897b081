"""Escalation: a task asks a person, and the answer decides where it goes next.

``interrupt()`` is the first thing this node does: a resumed node re-runs from its top, so
nothing before it may have side effects.
"""

from __future__ import annotations

from typing import Any

from langgraph.types import interrupt

from oldnew.graph.state import TaskState
from oldnew.nodes.common import aemit, aopen_workspace


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
    kind = question.get("kind")
    if answer == "skip":
        return {
            "status": "blocked",
            "question": None,
            "answer": record,
            "blocker": f"skipped by a person: {question.get('title', '')}",
        }
    if kind == "fix_limit":
        guidance = None if answer == "retry" else answer
        return {
            "status": "fixing",
            "question": None,
            "answer": record,
            "fix_round": 0,
            "guidance": guidance,
        }
    return {"status": "coding", "question": None, "answer": record}
