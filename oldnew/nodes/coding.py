"""Coding and fixing: the coder writes a task's files, the fixer repairs what failed."""

from __future__ import annotations

import asyncio
from functools import partial
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import Runnable
from langgraph.runtime import Runtime

from oldnew.budget import metered
from oldnew.context import Context
from oldnew.deps import manifest
from oldnew.deps.errors import DependencyError
from oldnew.deps.ledger import Ledger
from oldnew.errors import ModelOutputError, PathViolation
from oldnew.fileblocks import parse_file_blocks
from oldnew.graph.state import TaskState
from oldnew.hitl.questions import asked_question, failure_question, task_output_question
from oldnew.memory.learning import (
    CoderContext,
    coder_context,
    fix_hints,
    fix_summary,
    memory_of,
    pending_fix,
    settle_fix,
)
from oldnew.memory.store import Memory
from oldnew.models import ModelOverrides, aresolve_model
from oldnew.nodes.common import aemit, aopen_workspace
from oldnew.prompts import render
from oldnew.recovery import policy
from oldnew.recovery.retry import ClassifiedFailure, RetryPolicy, with_retry
from oldnew.recovery.stall import reset_worktree
from oldnew.schemas import AskHuman, PlannedTask, Question
from oldnew.supporting import named_by, supporting_names, task_view
from oldnew.workspace import Workspace

_CONTEXT_SUFFIXES = (".py", ".toml", ".md", ".cfg", ".ini", ".txt", ".json")
_CONTEXT_LIMIT = 60_000


def _project_files(ws: Workspace, tree: Path, task: PlannedTask) -> dict[str, str]:
    """Return the project's files the coder sees, with the supporting files the task names."""
    names = supporting_names(ws)
    paths = [p for p in ws.tracked_files(tree) if p.endswith(_CONTEXT_SUFFIXES)]
    named = named_by(f"{task.title}\n{task.description}", task.files, names)
    files = Workspace.read_files(tree, [p for p in paths if p not in names], limit=_CONTEXT_LIMIT)
    return {**task_view(tree, named), **files}


def _run_id(ws: Workspace) -> str:
    return str((ws.run_info() or {}).get("run_id", ""))


async def _report_memory_problems(ws: Workspace, task_id: str, memory: Memory) -> None:
    """Say what memory had to leave out; a broken memory never stops a task silently."""
    if memory.problems:
        await aemit(
            ws, task=task_id, node="memory", event="degraded", problems=memory.problems[:10]
        )
        memory.problems.clear()


async def _files_from_model(
    model: Runnable[Any, Any],
    messages: list[BaseMessage],
    tree: Path,
    retries: int,
    policy: RetryPolicy,
) -> tuple[dict[str, str | None] | AskHuman, int, str]:
    """Call the model until its answer yields files that can be written, or a question.

    Returns the files written (or the question), the number of calls made, and the
    explanation the model wrote before its first file block.
    """
    history = list(messages)
    problem = ""
    for attempt in range(1, retries + 2):
        reply = await with_retry(partial(model.ainvoke, history), policy)
        assert isinstance(reply, AIMessage)  # noqa: S101 - chat models return AIMessage
        for call in reply.tool_calls:
            if call["name"] == AskHuman.__name__:
                return AskHuman.model_validate(call["args"]), attempt, ""
        try:
            files = parse_file_blocks(str(reply.content))
            await asyncio.to_thread(Workspace.write_files, tree, files)
            prose = str(reply.content).split("FILE:", 1)[0]
            return files, attempt, prose
        except (ModelOutputError, PathViolation) as exc:
            problem = str(exc)
            history += [reply, HumanMessage(render("output_retry", problem=problem))]
    raise ModelOutputError(problem)


def _escalation(state: TaskState, question: Question, calls: int) -> dict[str, Any]:
    return {
        "status": "waiting",
        "question": question.model_dump(),
        "questions_asked": state.get("questions_asked", 0) + 1,
        "model_calls": calls,
    }


async def _recall(
    ws: Workspace, memory: Memory, state: TaskState, task: PlannedTask, ctx: Context
) -> CoderContext:
    """Gather what memory offers this task, and record a template's reuse."""
    recalled = await coder_context(memory, state["task"], state.get("project", ""), ctx)
    if recalled.template is not None:
        await aemit(
            ws,
            task=task.id,
            node="code",
            event="template_reused",
            template=recalled.template_key,
            similarity=round(recalled.template_score, 3),
        )
        await memory.remember(
            "learning",
            f"task {task.id} started from saved template {recalled.template_key}",
            task_id=task.id,
            files=task.files,
        )
    await _report_memory_problems(ws, task.id, memory)
    return recalled


def package_notes(ws: Workspace, tree: Path, state: TaskState) -> dict[str, list[str]]:
    """Return what the coder is told of packages: declared, named by the scope, rejected."""
    try:
        declared = [
            f"{d.name} {d.spec}".strip() + f" ({d.ecosystem}, {d.group})"
            for d in manifest.declared(tree)
        ]
    except DependencyError as exc:
        declared = [f"(the manifest does not read: {exc.message.splitlines()[0]})"]
    rejected = [
        f"{e.get('name')} ({e.get('ecosystem')})"
        for e in Ledger(ws.meta).read().values()
        if e.get("decision") == "rejected"
    ]
    return {"declared": declared, "named": list(state.get("packages") or []), "rejected": rejected}


def _coder_messages(
    state: TaskState,
    task: PlannedTask,
    existing: dict[str, str],
    recalled: CoderContext,
    memory_on: bool,
    packages: dict[str, list[str]],
    deps: str,
) -> list[BaseMessage]:
    return [
        SystemMessage(
            render("coder_system", role=task.role, project=state.get("project", ""), deps=deps)
        ),
        HumanMessage(
            render(
                "coder_user",
                task=task,
                packages=packages,
                existing=existing,
                decisions=[] if memory_on else state.get("decisions", []),
                memory=recalled.memory,
                lessons=recalled.lessons,
                template=recalled.template,
                answer=state.get("answer"),
                fresh_start=state.get("fresh_start"),
            )
        ),
    ]


async def _failure_escalation(
    ws: Workspace, state: TaskState, node: str, failure: ClassifiedFailure
) -> dict[str, Any]:
    task = state["task"]
    question = failure_question(state, failure)
    await aemit(
        ws,
        task=task["id"],
        node=node,
        event="escalated",
        question=question.id,
        failure=failure.classification.cls,
        reason=failure.classification.reason,
    )
    return _escalation(state, question, failure.attempts)


async def code(
    state: TaskState, runtime: Runtime[Context], *, models: ModelOverrides = None
) -> dict[str, Any]:
    """Have the coder write the task's files into the task's worktree.

    A failure whose class's policy says ``shrink`` (a prompt too large for the model) is
    retried once with file contents and memory left out; never retried unchanged.
    """
    ctx = runtime.context or Context()
    ws = await aopen_workspace(state["workspace"])
    task = PlannedTask.model_validate(state["task"])
    tree = await asyncio.to_thread(ws.worktree, task.id)
    await aemit(ws, task=task.id, node="code", event="started")
    if state.get("fresh_start"):
        # A fresh regeneration: what the stuck approach wrote is discarded, not shown.
        await asyncio.to_thread(reset_worktree, ws, task.id)
        await aemit(ws, task=task.id, node="code", event="fresh_start")
    existing = await asyncio.to_thread(_project_files, ws, tree, task)
    memory = memory_of(runtime, await asyncio.to_thread(_run_id, ws))
    recalled = await _recall(ws, memory, state, task, ctx)
    coder = await aresolve_model("coder", ctx, models)
    model = metered(coder, ctx, ws.root, role="coder", activity="code", task=task.id).bind_tools(
        [AskHuman]
    )
    packages = await asyncio.to_thread(package_notes, ws, tree, state)
    messages = _coder_messages(
        state, task, existing, recalled, memory.available, packages, ctx.deps
    )
    for shrunk in (False, True):
        try:
            result, calls, _ = await _files_from_model(
                model, messages, tree, ctx.max_output_retries, ctx.retry_policy()
            )
            break
        except ClassifiedFailure as exc:
            if policy.failure(exc.classification.cls).retry != "shrink" or shrunk:
                return await _failure_escalation(ws, state, "code", exc)
            await aemit(
                ws, task=task.id, node="code", event="context_shrunk", files_left_out=len(existing)
            )
            names = {p: "(content left out to fit the model's context)" for p in existing}
            messages = _coder_messages(
                state, task, names, CoderContext(), memory.available, packages, ctx.deps
            )
        except ModelOutputError as exc:
            question = task_output_question(state, exc)
            await aemit(ws, task=task.id, node="code", event="escalated", question=question.id)
            return _escalation(state, question, ctx.max_output_retries + 1)
    if isinstance(result, AskHuman):
        question = asked_question(state, result)
        await aemit(ws, task=task.id, node="code", event="escalated", question=question.id)
        return _escalation(state, question, calls)
    await aemit(ws, task=task.id, node="code", event="wrote", files=sorted(result))
    return {
        "status": "validating",
        "files": sorted(result),
        "model_calls": calls,
        "question": None,
        "fresh_start": None,
    }


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
    memory = memory_of(runtime, await asyncio.to_thread(_run_id, ws))
    task_text = f"{task.title}\n{task.description}"
    # Fixing again means the last fix did not remove its errors.
    await settle_fix(
        memory, state.get("pending_fix"), worked=False, task_text=task_text, task_id=task.id
    )
    hints, offered = await fix_hints(memory, state.get("diagnostics", []))
    await _report_memory_problems(ws, task.id, memory)
    prompt = render(
        "fixer_user",
        task=task,
        round=round_no,
        max_rounds=ctx.max_fix_rounds,
        diagnostics=state.get("diagnostics", []),
        files=current,
        guidance=state.get("guidance"),
        known_fixes=hints,
    )
    messages: list[BaseMessage] = [
        SystemMessage(
            render("coder_system", role=task.role, project=state.get("project", ""), deps=ctx.deps)
        ),
        HumanMessage(prompt),
    ]
    fixer = await aresolve_model("fixer", ctx, models)
    model = metered(fixer, ctx, ws.root, role="fixer", activity="fix", task=task.id)
    try:
        result, calls, prose = await _files_from_model(
            model, messages, tree, ctx.max_output_retries, ctx.retry_policy()
        )
    except ClassifiedFailure as exc:
        return await _failure_escalation(ws, state, "fix", exc)
    except ModelOutputError as exc:
        question = task_output_question(state, exc)
        return _escalation(state, question, ctx.max_output_retries + 1)
    files = sorted({*state.get("files", []), *result}) if isinstance(result, dict) else []
    summary = fix_summary(prose, current, result if isinstance(result, dict) else {})
    await aemit(
        ws,
        task=task.id,
        node="fix",
        event="wrote",
        round=round_no,
        files=files,
        known_fixes=len(hints),
    )
    return {
        "pending_fix": pending_fix(state.get("diagnostics", []), summary, offered),
        "status": "validating",
        "files": files,
        "fix_round": round_no,
        "fix_rounds_total": state.get("fix_rounds_total", 0) + 1,
        "model_calls": calls,
    }
