"""The person: one pause that carries every pending question, resumed with a map of answers.

``ask`` announces the pause (the notify hook) and marks the run ``waiting``, so that every
reader of the run's state (Python, the API, the CLI) names a paused run alike; ``human`` then
pauses. In ``human`` ``interrupt()`` comes first: a resumed node re-runs from its top.
"""

from __future__ import annotations

from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.runtime import Runtime
from langgraph.types import interrupt

from oldnew.context import Context
from oldnew.feedback.items import MAX_FEEDBACK_CHARS, new_item
from oldnew.graph.state import PAUSED, RunState, RunStatus
from oldnew.hitl import approvals
from oldnew.host import context_of
from oldnew.memory.decisions import DECISION_KINDS
from oldnew.memory.learning import memory_of
from oldnew.nodes.common import aemit, arun_workspace
from oldnew.notify import Stop, notify_outcome
from oldnew.schemas import Question
from oldnew.web.preview import preview_status


def _thread(config: RunnableConfig) -> str:
    return str(config.get("configurable", {}).get("thread_id", ""))


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


async def remember_answers(
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


async def ask(state: RunState, runtime: Runtime[Context], config: RunnableConfig) -> dict[str, Any]:
    """Announce the pending questions (the notify hook) and mark the run waiting for a person."""
    ctx = context_of(runtime.context)
    ws = await arun_workspace(ctx, config)
    live = preview_status(ws.root)
    url = live.url if live is not None else None
    stop = Stop(
        PAUSED, _thread(config), str(ws.root), questions=pending_questions(state), preview=url
    )
    hook_notes = await notify_outcome(ws, ctx, stop)
    return {"status": PAUSED, "notices": [*(state.get("notices") or []), *hook_notes]}


def phase(state: RunState) -> RunStatus:
    """Return where a run that is not paused stands: scoping, planning or executing."""
    if not state.get("scope"):
        return "scoping"
    return "planning" if not state.get("plan") else "executing"


async def human(
    state: RunState, runtime: Runtime[Context], config: RunnableConfig
) -> dict[str, Any]:
    """Pause with every pending question; record the answers that fit."""
    pending = pending_questions(state)
    answers = interrupt({"questions": pending, "notices": list(state.get("notices") or [])})
    ws = await arun_workspace(context_of(runtime.context), config)
    by_id = {q["id"]: q for q in pending}
    updated, notices = apply_answers(by_id, answers)
    await aemit(ws, node="human", event="answers", accepted=sorted(updated), refused=notices)
    await remember_answers(state, runtime, config, by_id, updated)
    update: dict[str, Any] = {"questions": updated, "notices": notices}
    for qid, change in updated.items():
        q = by_id[qid]
        if q.get("gate"):
            update = _merge(update, gate_answered(state, q, change["answer"]))
        elif q.get("task_id") is None and change["answer"] == "abort":
            # A run-wide question (scope, plan: no task) answered "abort" stops the run.
            update |= {"status": "aborted", "stop_reason": f"stopped by a person at {qid}"}
    if update.get("status") == "aborted":
        await aemit(ws, node="human", event="stopped", reason=update.get("stop_reason"))
    else:
        update["status"] = phase({**state, **update})  # type: ignore[typeddict-item]
    return update


def _merge(update: dict[str, Any], more: dict[str, Any]) -> dict[str, Any]:
    out = dict(update)
    for key, value in more.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def gate_answered(state: RunState, q: dict[str, Any], answer: str) -> dict[str, Any]:
    """Return what a gate's answer changes: approve goes on, reject stops, changes re-run."""
    gate = str(q["gate"])
    if answer == approvals.APPROVE:
        return {"approvals": {gate: q["id"]}}
    if answer == approvals.REJECT:
        return {"status": "aborted", "stop_reason": f"rejected at the {gate} gate by a person"}
    if gate == "scope":
        text = f"{state['scope_text']}\n\n## Changes asked at the scope review\n\n{answer}\n"
        return {"scope": None, "scope_text": text}
    if gate == "design":
        return {
            "plan": None,
            "plan_problems": [f"A person reviewing the design asked for changes: {answer}"],
            "plan_attempts": 0,
            "tasks": dict.fromkeys(state.get("tasks") or {}),
        }
    # MVP preview and final review: the changes are feedback the planner triages and applies.
    item = new_item(answer[:MAX_FEEDBACK_CHARS], dict(state))
    return {"feedback": {item.id: item.model_dump()}}
