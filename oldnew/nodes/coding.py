"""Coding and fixing: the coder writes a task's files, the fixer repairs what failed.

Both see the acceptance suite of their task's requirements (main's, read-only) and may not
change it; either may contest one of its tests (``AskHuman(kind="test_contradiction")``),
which the tester reviews before a person is asked (``acceptance.review``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any, Literal

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.runnables import Runnable
from langgraph.runtime import Runtime
from pydantic import ValidationError

from oldnew.acceptance.review import (
    SuiteEdit,
    SuiteView,
    refuse_suite_edits,
    review_contest,
    task_suite,
)
from oldnew.budget import metered
from oldnew.context import Context
from oldnew.deps import manifest
from oldnew.deps.errors import DependencyError
from oldnew.deps.ledger import Ledger
from oldnew.errors import ModelOutputError, PathViolation
from oldnew.fileblocks import parse_answer, parse_file_blocks
from oldnew.gates.rules import Rules
from oldnew.graph.state import TaskState
from oldnew.hitl.questions import (
    asked_question,
    contradiction_question,
    failure_question,
    task_output_question,
)
from oldnew.host import context_of
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
from oldnew.nodes.briefing import gate_rules, retry_note, system_prompt
from oldnew.nodes.common import aemit, aopen_workspace
from oldnew.prompts import render
from oldnew.recovery import policy
from oldnew.recovery.retry import ClassifiedFailure, RetryPolicy, with_retry
from oldnew.recovery.stall import reset_worktree
from oldnew.repomap.history import task_files
from oldnew.repomap.read import read_for_model
from oldnew.repomap.select import Selection, Want, select
from oldnew.repomap.tokens import counter_for
from oldnew.schemas import AskHuman, PlannedTask, Question, ReadFile
from oldnew.supporting import named_by, supporting_names
from oldnew.workspace import Workspace

Emit = Callable[..., Awaitable[None]]


def project_context(
    ws: Workspace,
    tree: Path,
    task: PlannedTask,
    ctx: Context,
    *,
    role: Literal["coder", "fixer"] = "coder",
    focus: list[str] | None = None,
    full: bool = True,
) -> Selection:
    """Return what the coder (or fixer) sees of the project, within ``ctx.context_tokens``.

    ``focus`` (default: the task's files) is shown first; then the files of the tasks it
    depends on, their import neighbours, and a map of the rest. ``full=False`` maps every
    file (after the model's context overflowed).
    """
    names = supporting_names(ws)
    text = f"{task.title}\n{task.description}"
    want = Want(
        focus=list(task.files if focus is None else focus),
        related=task_files(ws, task.depends_on),
        text=text,
        supporting=names,
        named=named_by(text, task.files, names),
        budget=ctx.context_tokens,
        counter=counter_for(ctx.model_spec(role)),
        full=full,
        reads=ctx.max_file_reads,
    )
    return select(tree, want, ws.meta)


async def _report_context(ws: Workspace, task_id: str, node: str, context: Selection) -> None:
    await aemit(ws, task=task_id, node=node, event="context", **context.event())


def _run_id(ws: Workspace) -> str:
    return str((ws.run_info() or {}).get("run_id", ""))


async def _report_memory_problems(ws: Workspace, task_id: str, memory: Memory) -> None:
    """Say what memory had to leave out; a broken memory never stops a task silently."""
    if memory.problems:
        await aemit(
            ws, task=task_id, node="memory", event="degraded", problems=memory.problems[:10]
        )
        memory.problems.clear()


def _problems(exc: ValidationError) -> str:
    """Return what a tool call's arguments got wrong, field by field, for the model."""
    return "; ".join(
        f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}" for e in exc.errors()
    )


def _read_answer(tree: Path, args: Any) -> str:
    try:
        asked = ReadFile.model_validate(args if isinstance(args, dict) else {})
    except ValidationError as exc:
        return (
            f"ERROR: ReadFile's arguments do not validate ({_problems(exc)}); give 'path' (a "
            "string) and, for some lines only, 'start_line' and 'end_line' (1-based integers)."
        )
    return read_for_model(tree, asked.path, asked.start_line, asked.end_line)


def _answer_calls(
    tree: Path, reply: AIMessage, done: int, cap: int, asked: str = ""
) -> tuple[list[ToolMessage], int]:
    """Answer every tool call and invalid tool call of ``reply``, at most ``cap`` reads a turn.

    Return the answers and the reads made. Every call gets an answer (a chat API refuses a
    history with an unanswered one): a call of a tool that does not exist, a call whose
    arguments did not parse and an ``AskHuman`` that did not validate (``asked``) are told so.
    """
    answers = []
    for call in reply.tool_calls:
        name = call["name"]
        if name == AskHuman.__name__:
            text = asked or "ERROR: AskHuman was not asked: answer the reads first."
        elif name != ReadFile.__name__:
            text = f"ERROR: there is no tool {name!r}; read files with ReadFile."
        elif done >= cap:
            text = render("read_limit", reads=cap)
        else:
            done += 1
            text = _read_answer(tree, call.get("args"))
        answers.append(ToolMessage(content=text, tool_call_id=call.get("id") or "", name=name))
    for bad in reply.invalid_tool_calls:
        name = str(bad.get("name") or "")
        why = bad.get("error") or "its arguments are not a JSON object"
        text = (
            f"ERROR: your call of {name or 'a tool'} did not parse ({why}); call it again "
            "with JSON arguments."
        )
        answers.append(ToolMessage(content=text, tool_call_id=bad.get("id") or "", name=name))
    return answers, done


def _has_file_blocks(content: str) -> bool:
    try:
        return bool(parse_file_blocks(content))
    except ModelOutputError:
        return False


def _asked(reply: AIMessage) -> tuple[AskHuman | None, str]:
    """Return the reply's valid question, or why its ``AskHuman`` call did not validate."""
    problem = ""
    for call in reply.tool_calls:
        if call["name"] == AskHuman.__name__:
            try:
                return AskHuman.model_validate(call["args"]), ""
            except ValidationError as exc:
                problem = f"AskHuman's arguments do not validate ({_problems(exc)}); ask again."
    return None, problem


def _take(
    files: dict[str, str | None],
    check: Callable[[dict[str, str | None]], list[str]] | None,
    write: bool,
) -> None:
    """Refuse an answer's files that may not be taken: the suite's (to write), or ``check``'s.

    Raises:
        SuiteEdit: files to write touch the acceptance suite.
        ModelOutputError: ``check`` found problems.

    """
    if write:
        refuse_suite_edits(files)
    problems = check(files) if check else []
    if problems:
        raise ModelOutputError("; ".join(problems))


async def files_from_model(
    model: Runnable[Any, Any],
    messages: list[BaseMessage],
    tree: Path,
    retries: int,
    policy: RetryPolicy,
    max_reads: int = 0,
    *,
    check: Callable[[dict[str, str | None]], list[str]] | None = None,
    write: bool = True,
    emit: Emit | None = None,
) -> tuple[dict[str, str | None] | AskHuman, int, str]:
    """Call the model until its answer yields files that can be written, or a question.

    A ``ReadFile`` call is answered with the file's text and the turn goes on (it is no
    retry); past ``max_reads`` files the answer says to write the files now, and a reply that
    still asks counts as a failed answer. Every tool call of a reply is answered, whatever
    else it holds; file blocks beside a ``ReadFile`` call are not written, and the model is
    told so. A malformed ``AskHuman`` or tool call is a failed answer, retried with why.
    ``check`` returns the problems of an answer's files beyond their format (asked again with
    them, like a format problem); ``write=False`` returns the files without writing them.
    An answer to write (a coder's, a fixer's) that writes or deletes a file of the acceptance
    suite is a failed answer too: refused before anything is written, and ``emit`` told
    ``suite_edit_refused`` (the tester's own files are returned unwritten, never refused).
    Returns the files written (or the question), the number of calls made, and the
    explanation the model wrote before its first file block.
    """
    history = list(messages)
    problem = ""
    calls = failures = reads = 0
    while failures <= retries:
        reply = await with_retry(partial(model.ainvoke, history), policy)
        assert isinstance(reply, AIMessage)  # noqa: S101 - chat models return AIMessage
        calls += 1
        content = str(reply.content)
        if reply.tool_calls or reply.invalid_tool_calls:
            question, asked = _asked(reply)
            if question is not None:
                return question, calls, ""
            wanted = [c for c in reply.tool_calls if c["name"] == ReadFile.__name__]
            answers, reads_after = await asyncio.to_thread(
                _answer_calls, tree, reply, reads, max_reads, asked
            )
            over = reads + len(wanted) > max_reads
            reads = reads_after
            history += [reply, *answers]
            blocks = _has_file_blocks(content)
            if wanted or asked or not blocks:
                if blocks:
                    history.append(HumanMessage(render("blocks_not_applied")))
                if over or asked or not wanted:
                    failures += 1
                    problem = (
                        asked
                        or (over and f"asked to read more than {max_reads} files in one turn")
                        or "a tool call that is no ReadFile or AskHuman, or did not parse, "
                        "and no file blocks"
                    )
                continue
        try:
            answer = parse_answer(content)
            files = answer.files
            _take(files, check, write)
            if write:
                await asyncio.to_thread(Workspace.write_files, tree, files, answer.executable)
            prose = content.split("FILE:", 1)[0]
            return files, calls, prose
        except (ModelOutputError, PathViolation) as exc:
            failures += 1
            problem = str(exc)
            refused = isinstance(exc, SuiteEdit)
            if refused and emit is not None:
                await emit(event="suite_edit_refused", problem=problem)
            if not (reply.tool_calls or reply.invalid_tool_calls):
                history.append(reply)
            history.append(HumanMessage(render("blocks_retry", problem=problem, refused=refused)))
    raise ModelOutputError(problem)


def _read_tool(ctx: Context) -> list[type[ReadFile]]:
    """Return the ``ReadFile`` tool to bind, or none when the run allows no reads."""
    return [ReadFile] if ctx.max_file_reads > 0 else []


def _escalation(
    state: TaskState,
    question: Question,
    calls: int,
    *,
    asked: str = "",
    review: dict[str, Any] | None = None,
) -> dict[str, Any]:
    raised = question.model_dump()
    if asked:
        raised["asked_by"] = asked  # the answer is told to the coder (fixer) as its question's
    if review is not None:
        raised["review"] = review  # the tester's, kept for the answer: never asked again
    return {
        "status": "waiting",
        "question": raised,
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
    context: Selection,
    recalled: CoderContext,
    memory_on: bool,
    packages: dict[str, list[str]],
    deps: str,
    reads: int,
    rules: Rules,
    suite: SuiteView | None,
) -> list[BaseMessage]:
    return [
        SystemMessage(system_prompt(state, task, deps, rules)),
        HumanMessage(
            render(
                "coder_user",
                task=task,
                packages=packages,
                context=context,
                reads=reads,
                decisions=[] if memory_on else state.get("decisions", []),
                memory=recalled.memory,
                lessons=recalled.lessons,
                template=recalled.template,
                retry=retry_note(state),
                fresh_start=state.get("fresh_start"),
                suite=suite,
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


async def _asked_escalation(
    ws: Workspace,
    state: TaskState,
    node: Literal["code", "fix"],
    ask: AskHuman,
    calls: int,
    ctx: Context,
    models: ModelOverrides,
) -> dict[str, Any]:
    """Raise the coder's (fixer's) question; a test contradiction goes to the tester first."""
    by, tid = ("coder" if node == "code" else "fixer"), str(state["task"]["id"])
    if ask.kind != "test_contradiction":
        question = asked_question(state, ask)
        await aemit(ws, task=tid, node=node, event="escalated", question=question.id)
        return _escalation(state, question, calls, asked=by)
    problem, review = "", None
    try:
        review = await review_contest(
            ws,
            ctx,
            models,
            task=state["task"],
            project=state.get("project", ""),
            stack=state.get("stack") or "python",
            requirements=state.get("requirements") or {},
            ask=ask,
            diagnostics=state.get("diagnostics", []) if node == "fix" else [],
        )
    except (ModelOutputError, ClassifiedFailure) as exc:
        problem = f"the tester's review could not be used: {exc}"
    question = contradiction_question(state, ask, review, problem)
    await aemit(
        ws,
        task=tid,
        node=node,
        event="contested",
        question=question.id,
        verdict=(review or {}).get("verdict", "none"),
        file=(review or {}).get("file", ""),
    )
    return _escalation(state, question, calls + (review is not None), asked=by, review=review)


async def code(
    state: TaskState, runtime: Runtime[Context], *, models: ModelOverrides = None
) -> dict[str, Any]:
    """Have the coder write the task's files into the task's worktree.

    A failure whose class's policy says ``shrink`` (a prompt too large for the model) is
    retried once with memory left out and every file only mapped; never retried unchanged.
    """
    ctx = context_of(runtime.context)
    ws = await aopen_workspace(state["workspace"])
    task = PlannedTask.model_validate(state["task"])
    tree = await asyncio.to_thread(ws.worktree, task.id)
    await aemit(ws, task=task.id, node="code", event="started")
    if state.get("fresh_start"):
        # A fresh regeneration: what the stuck approach wrote is discarded, not shown.
        await asyncio.to_thread(reset_worktree, ws, task.id)
        await aemit(ws, task=task.id, node="code", event="fresh_start")
    context = await asyncio.to_thread(project_context, ws, tree, task, ctx)
    await _report_context(ws, task.id, "code", context)
    memory = memory_of(runtime, await asyncio.to_thread(_run_id, ws))
    recalled = await _recall(ws, memory, state, task, ctx)
    coder = await aresolve_model("coder", ctx, models)
    model = metered(coder, ctx, ws.root, role="coder", activity="code", task=task.id).bind_tools(
        [AskHuman, *_read_tool(ctx)]
    )
    packages = await asyncio.to_thread(package_notes, ws, tree, state)
    rules = await asyncio.to_thread(gate_rules, ctx, tree, state.get("stack") or "python")
    suite = await asyncio.to_thread(task_suite, ws, state.get("requirements") or {})
    messages = _coder_messages(
        state,
        task,
        context,
        recalled,
        memory.available,
        packages,
        ctx.deps,
        ctx.max_file_reads,
        rules,
        suite,
    )
    emit = partial(aemit, ws, task=task.id, node="code")
    for shrunk in (False, True):
        try:
            result, calls, _ = await files_from_model(
                model,
                messages,
                tree,
                ctx.max_output_retries,
                ctx.retry_policy(),
                ctx.max_file_reads,
                emit=emit,
            )
            break
        except ClassifiedFailure as exc:
            if policy.failure(exc.classification.cls).retry != "shrink" or shrunk:
                return await _failure_escalation(ws, state, "code", exc)
            await aemit(
                ws,
                task=task.id,
                node="code",
                event="context_shrunk",
                files_left_out=len(context.full),
            )
            context = await asyncio.to_thread(project_context, ws, tree, task, ctx, full=False)
            await _report_context(ws, task.id, "code", context)
            messages = _coder_messages(
                state,
                task,
                context,
                CoderContext(),
                memory.available,
                packages,
                ctx.deps,
                ctx.max_file_reads,
                rules,
                suite,
            )
        except ModelOutputError as exc:
            question = task_output_question(state, exc)
            await aemit(ws, task=task.id, node="code", event="escalated", question=question.id)
            return _escalation(state, question, ctx.max_output_retries + 1)
    if isinstance(result, AskHuman):
        return await _asked_escalation(ws, state, "code", result, calls, ctx, models)
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
    """Have the fixer repair the task's files from the parsed diagnostics.

    With an acceptance suite shown, the fixer may ask instead (``AskHuman``): a contested
    test goes to the tester, then to a person.
    """
    ctx = context_of(runtime.context)
    ws = await aopen_workspace(state["workspace"])
    task = PlannedTask.model_validate(state["task"])
    tree = await asyncio.to_thread(ws.worktree, task.id)
    round_no = state.get("fix_round", 0) + 1
    await aemit(ws, task=task.id, node="fix", event="started", round=round_no)
    # What the diagnostics name first, then what the task wrote, then what it planned.
    named = [d.split(":", 1)[0] for d in state.get("diagnostics", [])]
    paths = list(dict.fromkeys([*named, *state.get("files", []), *task.files]))
    context = await asyncio.to_thread(
        project_context, ws, tree, task, ctx, role="fixer", focus=paths
    )
    await _report_context(ws, task.id, "fix", context)
    current = context.full
    memory = memory_of(runtime, await asyncio.to_thread(_run_id, ws))
    task_text = f"{task.title}\n{task.description}"
    # Fixing again means the last fix did not remove its errors.
    await settle_fix(
        memory, state.get("pending_fix"), worked=False, task_text=task_text, task_id=task.id
    )
    hints, offered = await fix_hints(memory, state.get("diagnostics", []))
    await _report_memory_problems(ws, task.id, memory)
    suite = await asyncio.to_thread(task_suite, ws, state.get("requirements") or {})
    prompt = render(
        "fixer_user",
        task=task,
        round=round_no,
        max_rounds=ctx.max_fix_rounds,
        diagnostics=state.get("diagnostics", []),
        context=context,
        reads=ctx.max_file_reads,
        guidance=state.get("guidance"),
        known_fixes=hints,
        packages=await asyncio.to_thread(package_notes, ws, tree, state),
        suite=suite,
    )
    rules = await asyncio.to_thread(gate_rules, ctx, tree, state.get("stack") or "python")
    messages: list[BaseMessage] = [
        SystemMessage(system_prompt(state, task, ctx.deps, rules)),
        HumanMessage(prompt),
    ]
    fixer = await aresolve_model("fixer", ctx, models)
    metered_fixer = metered(fixer, ctx, ws.root, role="fixer", activity="fix", task=task.id)
    # With an acceptance suite shown, the fixer may say a test contradicts its requirement.
    tools: list[type[AskHuman | ReadFile]] = [*_read_tool(ctx), *([AskHuman] if suite else [])]
    model = metered_fixer.bind_tools(tools) if tools else metered_fixer
    try:
        result, calls, prose = await files_from_model(
            model,
            messages,
            tree,
            ctx.max_output_retries,
            ctx.retry_policy(),
            ctx.max_file_reads,
            emit=partial(aemit, ws, task=task.id, node="fix"),
        )
    except ClassifiedFailure as exc:
        return await _failure_escalation(ws, state, "fix", exc)
    except ModelOutputError as exc:
        question = task_output_question(state, exc)
        return _escalation(state, question, ctx.max_output_retries + 1)
    if isinstance(result, AskHuman):
        return await _asked_escalation(ws, state, "fix", result, calls, ctx, models)
    files = sorted({*state.get("files", []), *result})
    summary = fix_summary(prose, current, result)
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
