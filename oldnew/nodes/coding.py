"""Coding and fixing: the coder writes a task's files, the fixer repairs what failed."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import Runnable
from langgraph.runtime import Runtime

from oldnew.context import Context
from oldnew.errors import ModelOutputError, PathViolation
from oldnew.fileblocks import parse_file_blocks
from oldnew.graph.state import TaskState
from oldnew.models import ModelOverrides, aresolve_model
from oldnew.nodes.common import aemit, aopen_workspace
from oldnew.prompts import render
from oldnew.schemas import AskHuman, Option, PlannedTask, Question
from oldnew.workspace import Workspace

_CONTEXT_SUFFIXES = (".py", ".toml", ".md", ".cfg", ".ini", ".txt", ".json")
_CONTEXT_LIMIT = 60_000


def _project_files(ws: Workspace, tree: Path) -> dict[str, str]:
    paths = [p for p in ws.tracked_files(tree) if p.endswith(_CONTEXT_SUFFIXES)]
    return Workspace.read_files(tree, paths, limit=_CONTEXT_LIMIT)


def _ask_question(state: TaskState, ask: AskHuman) -> Question:
    task = state["task"]
    options = [Option(key=o, label=o) for o in ask.options]
    return Question(
        id=f"{task['id']}-q{state.get('questions_asked', 0) + 1}",
        kind=ask.kind,
        task_id=task["id"],
        title=ask.question,
        detail=f"Asked by the coder of task {task['id']} ({task['title']}).",
        options=options,
        recommended=ask.recommended if ask.recommended in ask.options else None,
        free_text=True,
    )


async def _files_from_model(
    model: Runnable[Any, Any], messages: list[BaseMessage], tree: Path, retries: int
) -> tuple[dict[str, str | None] | AskHuman, int]:
    """Call the model until its answer yields files that can be written, or a question.

    Returns the files written (or the question) and the number of calls made.
    """
    history = list(messages)
    problem = ""
    for attempt in range(1, retries + 2):
        reply = await model.ainvoke(history)
        assert isinstance(reply, AIMessage)  # noqa: S101 - chat models return AIMessage
        for call in reply.tool_calls:
            if call["name"] == AskHuman.__name__:
                return AskHuman.model_validate(call["args"]), attempt
        try:
            files = parse_file_blocks(str(reply.content))
            await asyncio.to_thread(Workspace.write_files, tree, files)
            return files, attempt
        except (ModelOutputError, PathViolation) as exc:
            problem = str(exc)
            history += [reply, HumanMessage(render("output_retry", problem=problem))]
    raise ModelOutputError(problem)


def _output_question(state: TaskState, error: Exception) -> Question:
    task = state["task"]
    return Question(
        id=f"{task['id']}-q{state.get('questions_asked', 0) + 1}",
        kind="model_output",
        task_id=task["id"],
        title=f"The model's code for task {task['id']} could not be used",
        detail=str(error)[:2000],
        options=[
            Option(key="retry", label="Ask the model again"),
            Option(key="skip", label="Leave this task undone and record it as a blocker"),
        ],
        recommended="retry",
        free_text=False,
    )


def _escalation(state: TaskState, question: Question, calls: int) -> dict[str, Any]:
    return {
        "status": "waiting",
        "question": question.model_dump(),
        "questions_asked": state.get("questions_asked", 0) + 1,
        "model_calls": calls,
    }


async def code(
    state: TaskState, runtime: Runtime[Context], *, models: ModelOverrides = None
) -> dict[str, Any]:
    """Have the coder write the task's files into the task's worktree."""
    ctx = runtime.context or Context()
    ws = await aopen_workspace(state["workspace"])
    task = PlannedTask.model_validate(state["task"])
    tree = await asyncio.to_thread(ws.worktree, task.id)
    await aemit(ws, task=task.id, node="code", event="started")
    existing = await asyncio.to_thread(_project_files, ws, tree)
    messages: list[BaseMessage] = [
        SystemMessage(render("coder_system", role=task.role, project=state.get("project", ""))),
        HumanMessage(
            render(
                "coder_user",
                task=task,
                existing=existing,
                decisions=state.get("decisions", []),
                answer=state.get("answer"),
            )
        ),
    ]
    model = (await aresolve_model("coder", ctx, models)).bind_tools([AskHuman])
    try:
        result, calls = await _files_from_model(
            model,
            messages,
            tree,
            ctx.max_output_retries,
        )
    except ModelOutputError as exc:
        question = _output_question(state, exc)
        await aemit(ws, task=task.id, node="code", event="escalated", question=question.id)
        return _escalation(state, question, ctx.max_output_retries + 1)
    if isinstance(result, AskHuman):
        question = _ask_question(state, result)
        await aemit(ws, task=task.id, node="code", event="escalated", question=question.id)
        return _escalation(state, question, calls)
    await aemit(ws, task=task.id, node="code", event="wrote", files=sorted(result))
    return {"status": "validating", "files": sorted(result), "model_calls": calls, "question": None}


async def fix(
    state: TaskState, runtime: Runtime[Context], *, models: ModelOverrides = None
) -> dict[str, Any]:
    """Have the fixer repair the task's files from the parsed diagnostics."""
    ctx = runtime.context or Context()
    ws = await aopen_workspace(state["workspace"])
    task = PlannedTask.model_validate(state["task"])
    tree = await asyncio.to_thread(ws.worktree, task.id)
    round_no = state.get("fix_round", 0) + 1
    await aemit(ws, task=task.id, node="fix", event="started", round=round_no)
    paths = sorted(
        {
            *state.get("files", []),
            *task.files,
            *[d.split(":", 1)[0] for d in state.get("diagnostics", [])],
        }
    )
    current = await asyncio.to_thread(Workspace.read_files, tree, paths)
    prompt = render(
        "fixer_user",
        task=task,
        round=round_no,
        max_rounds=ctx.max_fix_rounds,
        diagnostics=state.get("diagnostics", []),
        files=current,
        guidance=state.get("guidance"),
    )
    messages: list[BaseMessage] = [
        SystemMessage(render("coder_system", role=task.role, project=state.get("project", ""))),
        HumanMessage(prompt),
    ]
    model = await aresolve_model("fixer", ctx, models)
    try:
        result, calls = await _files_from_model(model, messages, tree, ctx.max_output_retries)
    except ModelOutputError as exc:
        question = _output_question(state, exc)
        return _escalation(state, question, ctx.max_output_retries + 1)
    files = sorted({*state.get("files", []), *result}) if isinstance(result, dict) else []
    await aemit(ws, task=task.id, node="fix", event="wrote", round=round_no, files=files)
    return {
        "status": "validating",
        "files": files,
        "fix_round": round_no,
        "fix_rounds_total": state.get("fix_rounds_total", 0) + 1,
        "model_calls": calls,
    }
