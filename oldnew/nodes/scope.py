"""Scoping: turn the user's text into a structured Scope."""

from __future__ import annotations

from typing import Any

from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig
from langgraph.runtime import Runtime

from oldnew.context import Context
from oldnew.errors import ModelOutputError
from oldnew.graph.state import RunState
from oldnew.models import ModelOverrides, ainvoke_structured, aresolve_model
from oldnew.nodes.common import aemit, arun_workspace
from oldnew.prompts import render
from oldnew.schemas import Option, Question, Scope

RETRY_OR_ABORT = [
    Option(key="retry", label="Ask the model again"),
    Option(key="abort", label="Stop the run and write the report"),
]


def output_question(qid: str, what: str, error: Exception) -> Question:
    """Return the question a person gets when the model's output stays unusable."""
    return Question(
        id=qid,
        kind="model_output",
        title=f"The model's {what} did not parse",
        detail=str(error)[:2000],
        options=RETRY_OR_ABORT,
        recommended="retry",
        free_text=False,
    )


async def scope(
    state: RunState,
    runtime: Runtime[Context],
    config: RunnableConfig,
    *,
    models: ModelOverrides = None,
) -> dict[str, Any]:
    """Extract the Scope from the user's text with the planner model."""
    ctx = runtime.context or Context()
    ws = await arun_workspace(ctx, config)
    await aemit(ws, node="scope", event="started")
    messages = [
        SystemMessage(render("scope_system")),
        HumanMessage(render("scope_user", scope_text=state["scope_text"])),
    ]
    try:
        result = await ainvoke_structured(
            await aresolve_model("planner", ctx, models),
            Scope,
            messages,
            method=ctx.structured_output_method,
            retries=ctx.max_output_retries,
        )
    except ModelOutputError as exc:
        q = output_question(f"scope-{len(state.get('questions') or {}) + 1}", "scope", exc)
        await aemit(ws, node="scope", event="escalated", question=q.id)
        return {"questions": {q.id: q.model_dump()}}
    await aemit(ws, node="scope", event="done", features=len(result.features), title=result.title)
    return {"scope": result.model_dump(), "status": "planning"}
