"""Scoping: turn the user's text, from one line to a long document, into a structured Scope."""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.runtime import Runtime

from oldnew.acceptance.criteria import NO_CRITERIA, has_criteria, untestable_clarifications
from oldnew.budget import metered
from oldnew.context import Context
from oldnew.errors import ModelOutputError
from oldnew.graph.state import RunState
from oldnew.hitl import approvals
from oldnew.hitl.questions import (
    ABORT,
    READ_ALL,
    output_question,
    question,
    run_failure_question,
)
from oldnew.host import context_of
from oldnew.models import ModelOverrides, aresolve_model
from oldnew.nodes.common import aemit, arun_workspace
from oldnew.planning import Asker, ScopeProblem, assess, extract_scope
from oldnew.planning.clarify import QUESTION_PREFIX, clarification_questions
from oldnew.prompts import render
from oldnew.recovery.retry import ClassifiedFailure
from oldnew.schemas import Question, Scope
from oldnew.supporting import listing, supporting_names
from oldnew.workspace import Workspace


def scope_question(qid: str, problem: ScopeProblem) -> Question:
    """Return the question for a scope that cannot be read as it stands."""
    if problem.kind == "too_large":
        return question(
            "scope_unclear",
            qid,
            "The scope is too large to read in the allowed number of model calls",
            str(problem),
            keys=(READ_ALL, ABORT),
            recommended=ABORT,
            free_text=False,
        )
    return question(
        "scope_unclear",
        qid,
        "The scope names nothing to build: describe what the software must do",
        str(problem),
    )


def _answers(state: RunState) -> list[str]:
    return [
        str(q["answer"])
        for q in (state.get("questions") or {}).values()
        if q["kind"] == "scope_unclear" and q["status"] == "answered"
    ]


async def scope(
    state: RunState,
    runtime: Runtime[Context],
    config: RunnableConfig,
    *,
    models: ModelOverrides = None,
) -> dict[str, Any]:
    """Extract the Scope from the user's text (and a person's clarifications) with the planner."""
    ctx = context_of(runtime.context)
    ws = await arun_workspace(ctx, config, state.get("supporting"))
    answers = _answers(state)
    if ABORT in answers:
        await aemit(ws, node="scope", event="aborted")
        return {"status": "aborted"}
    text = state["scope_text"]
    listed = await asyncio.to_thread(lambda: listing(ws.root, supporting_names(ws)))
    if listed:
        text += render("supporting", files=listed)
    extra = [a for a in answers if a != READ_ALL]
    if extra:
        text += "\n\n## Clarifications from the person\n\n" + "\n\n".join(extra) + "\n"
    await aemit(ws, node="scope", event="started", chars=len(text))
    planner = await aresolve_model("planner", ctx, models)
    model = metered(planner, ctx, ws.root, role="planner", activity="scope")
    ask = Asker(model, ctx, partial(aemit, ws, node="scope"))
    qid = f"scope-{len(state.get('questions') or {}) + 1}"
    try:
        result = await extract_scope(ask, text, allow_many=READ_ALL in answers)
    except ScopeProblem as exc:
        q = scope_question(qid, exc)
        await aemit(ws, node="scope", event="escalated", question=q.id, problem=str(exc))
        return {"questions": {q.id: q.model_dump()}}
    except ModelOutputError as exc:
        q = output_question(qid, "scope", exc)
        await aemit(ws, node="scope", event="escalated", question=q.id)
        return {"questions": {q.id: q.model_dump()}}
    except ClassifiedFailure as exc:
        q = run_failure_question(qid, "Scoping", exc)
        await aemit(
            ws, node="scope", event="escalated", question=q.id, failure=exc.classification.cls
        )
        return {"questions": {q.id: q.model_dump()}}
    if listed:  # what the person handed over, as oldnew found it (never the model's word)
        shown = [f"{e['path']} ({e['type']}, {e['size']} bytes)" for e in listed]
        result = result.model_copy(update={"supporting": shown})
    size = assess(result, ctx)
    await aemit(
        ws,
        node="scope",
        event="done",
        title=result.title,
        requirements=len(result.requirements()),
        score=size.score,
        complexity=size.cls,
        calls=ask.calls,
    )
    result, record = await _acceptance_of(ws, result, ctx)
    first = 1 + sum(qid.startswith(QUESTION_PREFIX) for qid in state.get("questions") or {})
    clarify = clarification_questions(result, ctx.defaults, first=first)
    if clarify:
        await aemit(
            ws,
            node="scope",
            event="clarifications",
            policy=ctx.defaults,
            asked=[q.id for q in clarify if q.status == "pending"],
            defaults_taken={q.id: q.answer for q in clarify if q.decided_by == "default"},
        )
    update: dict[str, Any] = {
        "scope": result.model_dump(),
        "status": "planning",
        "questions": {q.id: q.model_dump() for q in clarify},
        **({"acceptance": record} if record else {}),
    }
    gate = approvals.ask("scope", ctx.approvals, ctx.yes, dict(state), scope_artifact(result))
    return {
        **update,
        **gate,
        "questions": {**update["questions"], **gate.get("questions", {})},
    }


async def _acceptance_of(
    ws: Workspace, result: Scope, ctx: Context
) -> tuple[Scope, dict[str, Any]]:
    """Add a question per requirement the tester cannot test; say when no suite is due.

    Returns the scope (with those clarifications) and the acceptance record's update ({} when
    the tester will write a suite).
    """
    if not ctx.acceptance:
        return result, {"status": "off"}
    if not has_criteria(result):
        await aemit(ws, node="scope", event="notice", detail=NO_CRITERIA)
        return result, {"status": "none", "notes": [NO_CRITERIA]}
    asked = untestable_clarifications(result)
    if asked:
        update = {"clarifications": [*result.clarifications, *asked]}
        result = result.model_copy(update=update)
    return result, {}


def scope_artifact(result: Scope) -> str:
    """Return the scope as a person reviews it at the scope gate."""
    lines = [f"{result.title}: {result.summary}", ""]
    for kind, req in result.requirements():
        lines.append(f"- {req.id} ({kind}, {req.priority}): {req.title}")
        lines += [f"  - {c.sentence()}" for c in req.criteria]
    if result.constraints:
        lines += ["", "Constraints:", *(f"- {c}" for c in result.constraints)]
    if result.non_goals:
        lines += ["", "Not in scope:", *(f"- {c}" for c in result.non_goals)]
    return "\n".join(lines)
