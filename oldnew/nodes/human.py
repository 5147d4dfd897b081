"""The person: one pause that carries every pending question, resumed with a map of answers.

``interrupt()`` comes first: a resumed node re-runs from its top.
"""

from __future__ import annotations

from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.runtime import Runtime
from langgraph.types import interrupt

from oldnew.context import Context
from oldnew.graph.state import RunState
from oldnew.memory.decisions import DECISION_KINDS
from oldnew.memory.learning import memory_of
from oldnew.nodes.common import aemit, arun_workspace
from oldnew.schemas import Question


def pending_questions(state: RunState) -> list[dict[str, Any]]:
    """Return the questions still waiting for an answer."""
    return [q for q in (state.get("questions") or {}).values() if q["status"] == "pending"]


def apply_answers(
    questions: dict[str, dict[str, Any]], answers: Any
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Check ``answers`` (question id -> answer) against the questions.

    Returns the updated questions and a notice for every answer that was refused.
    """
    if not isinstance(answers, dict):
        return {}, [f"answers must map question ids to answers, got {type(answers).__name__}"]
    updated: dict[str, dict[str, Any]] = {}
    notices: list[str] = []
    for qid, raw in answers.items():
        if qid not in questions:
            notices.append(f"no question {qid!r}; pending: {', '.join(sorted(questions))}")
            continue
        q = Question.model_validate(questions[qid])
        if q.status != "pending":
            notices.append(f"question {qid} was already answered ({q.answer})")
            continue
        try:
            answer = q.check_answer(str(raw))
        except ValueError as exc:
            notices.append(str(exc))
            continue
        updated[qid] = {"status": "answered", "answer": answer}
    return updated, notices


async def _remember_answers(
    state: RunState,
    runtime: Runtime[Context],
    config: RunnableConfig,
    questions: dict[str, dict[str, Any]],
    answered: dict[str, dict[str, Any]],
) -> None:
    """Record each answered decision in run memory, tied to its task's files and features."""
    memory = memory_of(runtime, str(config.get("configurable", {}).get("thread_id", "")))
    tasks = {t["id"]: t for t in (state.get("plan") or {}).get("tasks", [])}
    for qid, change in answered.items():
        q = questions[qid]
        if q["kind"] not in DECISION_KINDS:
            continue
        task = tasks.get(q.get("task_id") or "", {})
        await memory.remember(
            "decision",
            f"{q['title']} -> {change['answer']}",
            reason=f"a person answered question {qid}",
            task_id=q.get("task_id"),
            files=task.get("files", []),
            requirement_ids=task.get("requirement_ids", []),
        )


async def human(
    state: RunState, runtime: Runtime[Context], config: RunnableConfig
) -> dict[str, Any]:
    """Pause with every pending question; record the answers that fit."""
    pending = pending_questions(state)
    answers = interrupt({"questions": pending, "notices": state.get("notices") or []})
    ws = await arun_workspace(runtime.context or Context(), config)
    by_id = {q["id"]: q for q in pending}
    updated, notices = apply_answers(by_id, answers)
    await aemit(ws, node="human", event="answers", accepted=sorted(updated), refused=notices)
    await _remember_answers(state, runtime, config, by_id, updated)
    update: dict[str, Any] = {"questions": updated, "notices": notices}
    for qid, change in updated.items():
        # A run-wide question (scope, plan: no task) answered "abort" stops the run.
        if by_id[qid].get("task_id") is None and change["answer"] == "abort":
            update["status"] = "aborted"
    return update
