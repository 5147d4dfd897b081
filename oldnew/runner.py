"""Start, resume, answer and inspect runs on a workspace: what the CLI and notebooks call.

One process works on a workspace at a time (a file lock); the run's thread id is its run id,
and its checkpoints live in ``.oldnew/checkpoints.sqlite`` inside the workspace.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, ExitStack, asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.graph.state import CompiledStateGraph
from langgraph.store.sqlite.aio import AsyncSqliteStore
from langgraph.types import Command

from oldnew.budget import budget_summary, run_context, save_budget
from oldnew.context import Context
from oldnew.errors import RunLockedError, UsageError
from oldnew.feedback.items import check_text, new_item, refusal
from oldnew.graph.build import build_graph, build_task_graph
from oldnew.hitl import approvals, inbox
from oldnew.models import ModelOverrides, aclose_http_clients, check_model_specs
from oldnew.nodes.execute import inspect_task, record_of, task_config
from oldnew.schemas import Plan, Question
from oldnew.workspace import Workspace

CHECKPOINTS = "checkpoints.sqlite"
SCOPE_COPY = "scope.md"
MAX_SCOPE_BYTES = 5_000_000
EventSink = Callable[[dict[str, Any]], None]


@dataclass
class RunOutcome:
    """Where a run stands after a call returns."""

    status: str
    """delivered, waiting (for a person), blocked, aborted, stopped (by the budget), or running
    (interrupted)."""
    run_id: str
    workspace: str
    tasks: list[dict[str, Any]] = field(default_factory=list)
    questions: list[dict[str, Any]] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    report: str | None = None
    queued: dict[str, str] = field(default_factory=dict)
    """Answers left in the inbox of a busy run (its process applies them between tasks)."""
    budget: dict[str, Any] = field(default_factory=dict)
    """Spend against the caps: tokens, cost, working time, per phase, top tasks, stops."""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (what ``status --json`` prints)."""
        return asdict(self)


def read_scope(path: Path | str) -> str:
    """Return the scope file's text, or raise UsageError saying what is wrong with it."""
    p = Path(path)
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise UsageError(f"cannot read scope file {p}: {exc.strerror}") from exc
    if not p.is_file():
        raise UsageError(f"scope file {p} is not a file")
    if size > MAX_SCOPE_BYTES:
        raise UsageError(f"scope file {p} is {size} bytes; the limit is {MAX_SCOPE_BYTES}")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"scope file {p} is not UTF-8 text ({exc.reason})") from exc
    except OSError as exc:
        raise UsageError(f"cannot read scope file {p}: {exc.strerror}") from exc
    if not text.strip():
        raise UsageError(f"scope file {p} is empty; describe what to build in it")
    return text


def _run_config(run_id: str) -> RunnableConfig:
    return {"configurable": {"thread_id": run_id}, "recursion_limit": 500}


@asynccontextmanager
async def open_memory(path: str | None, ws: Workspace | None = None) -> AsyncIterator[Any]:
    """Yield the memory store at ``path``, or None when it is off or cannot be opened.

    A corrupted or locked memory file never stops a run: the run goes on without memory
    and its event log says why.
    """
    async with AsyncExitStack() as stack:
        store: AsyncSqliteStore | None = None
        if path and path != "off":
            file = Path(path).expanduser()
            try:
                file.parent.mkdir(parents=True, exist_ok=True)
                store = await stack.enter_async_context(
                    AsyncSqliteStore.from_conn_string(str(file))
                )
                await store.setup()
                await store.asearch(("oldnew",), limit=1)
            except Exception as exc:  # noqa: BLE001 - memory is optional, the run is not
                store = None
                if ws is not None:
                    ws.log_event(
                        node="memory",
                        event="unavailable",
                        path=str(file),
                        error=f"{type(exc).__name__}: {exc}",
                    )
        yield store


@asynccontextmanager
async def open_graph(
    ws: Workspace, models: ModelOverrides = None, memory_path: str | None = None
) -> AsyncIterator[CompiledStateGraph[Any, Any, Any, Any]]:
    """Yield the graph compiled on the workspace's SQLite checkpoints and the memory store."""
    try:
        async with (
            AsyncSqliteSaver.from_conn_string(str(ws.meta / CHECKPOINTS)) as saver,
            open_memory(memory_path, ws) as store,
        ):
            yield build_graph(models=models, checkpointer=saver, store=store)
    finally:
        await aclose_http_clients()  # pooled connections must not outlive this event loop


def _context(ws: Workspace, overrides: dict[str, Any]) -> Context:
    saved = (ws.run_info() or {}).get("context", {})
    merged = {**saved, **{k: v for k, v in overrides.items() if v is not None}}
    return Context(**merged, workspace=str(ws.root))


async def _stream(
    graph: CompiledStateGraph[Any, Any, Any, Any],
    inp: Any,
    config: RunnableConfig,
    ctx: Context,
    on_event: EventSink | None,
) -> None:
    async for mode, chunk in graph.astream(
        inp, config, context=ctx, stream_mode=["updates", "custom"]
    ):
        if on_event is None:
            continue
        if mode == "custom" and isinstance(chunk, dict):
            on_event(chunk)
        elif isinstance(chunk, dict):
            for node in chunk:
                if node != "__interrupt__":
                    on_event({"node": node, "event": "finished"})


async def outcome_of(
    graph: CompiledStateGraph[Any, Any, Any, Any], ws: Workspace, run_id: str
) -> RunOutcome:
    """Read where the run stands from its checkpoints (task records live from task threads)."""
    config = _run_config(run_id)
    snap = await graph.aget_state(config)
    values = dict(snap.values or {})
    tasks: list[dict[str, Any]] = []
    asked: list[dict[str, Any]] = []
    if values.get("plan"):
        saver = graph.checkpointer
        task_graph = build_task_graph()
        plan = Plan.model_validate(values["plan"])
        for t in plan.tasks:
            cfg = task_config(saver, run_id, values.get("plan_version", 1), t.id)
            view = await inspect_task(task_graph, cfg)
            record = dict(record_of(t.id, t.title, view))
            known = (values.get("tasks") or {}).get(t.id, {})
            # Blocked before it started (a blocked dependency), or by an error its own thread
            # does not record: the run's record says why.
            if view.phase in ("new", "incomplete") and known.get("status") == "blocked":
                record |= {
                    "status": "blocked",
                    "blocker": known.get("blocker"),
                    "limitation": known.get("limitation"),
                }
            if known.get("superseded_by"):
                record["superseded_by"] = known["superseded_by"]  # after a change request
            tasks.append(record)
            if view.phase == "waiting" and view.question:
                recorded = (values.get("questions") or {}).get(view.question.get("id", ""))
                asked.append(recorded or view.question)
    questions: list[dict[str, Any]] = []
    notices: list[str] = []
    if snap.interrupts:
        payload = snap.interrupts[0].value
        questions = list(payload.get("questions", []))
        notices = list(payload.get("notices", []))
        status = "waiting"
    elif not snap.tasks and values.get("report"):
        status = str(values.get("status"))
        notices = list(values.get("notices") or [])  # the hook's, when it failed at the end
    else:
        status = "running" if values else "not started"
        # A busy run: tasks that wait for a person while others work can be answered now.
        questions = [q for q in asked if q.get("status", "pending") == "pending"]
    return RunOutcome(
        status=status,
        run_id=run_id,
        workspace=str(ws.root),
        tasks=tasks,
        questions=questions,
        notices=notices,
        report=values.get("report"),
        budget=budget_summary(ws, run_context(ws), values.get("budget_stops")),
    )


async def start_run(
    scope_file: Path | str,
    workspace: Path | str,
    *,
    context: dict[str, Any] | None = None,
    models: ModelOverrides = None,
    on_event: EventSink | None = None,
) -> RunOutcome:
    """Create the workspace and run the scope until it is delivered or needs a person."""
    text = read_scope(scope_file)
    overrides = {k: v for k, v in (context or {}).items() if v is not None}
    ctx = Context(**overrides)
    approvals.enabled(ctx.approvals)
    if models is None:
        check_model_specs(ctx)
    run_id = str(uuid.uuid4())
    ws = Workspace.create(
        workspace, run_id, {"scope_file": str(Path(scope_file).resolve()), "context": overrides}
    )
    (ws.meta / SCOPE_COPY).write_text(text, encoding="utf-8")
    ctx = _context(ws, {})
    with ws.lock():
        async with open_graph(ws, models, ctx.memory_path) as graph:
            await _stream(graph, {"scope_text": text}, _run_config(run_id), ctx, on_event)
            return await outcome_of(graph, ws, run_id)


async def resume_run(
    workspace: Path | str,
    *,
    answers: dict[str, str] | None = None,
    context: dict[str, Any] | None = None,
    models: ModelOverrides = None,
    on_event: EventSink | None = None,
) -> RunOutcome:
    """Continue a run: after a crash or kill, with answers, or to retry blocked tasks."""
    ws = Workspace.open(workspace)
    run_id = str((ws.run_info() or {})["run_id"])
    ctx = _context(ws, context or {})
    approvals.enabled(ctx.approvals)
    if models is None:
        check_model_specs(ctx)
    config = _run_config(run_id)
    with ws.lock():
        save_budget(ws, context or {})  # a raised cap holds for later resumes too
        cleared = ws.recover()
        if cleared:
            ws.log_event(node="resume", event="recovered", cleared=cleared)
        async with open_graph(ws, models, ctx.memory_path) as graph:
            snap = await graph.aget_state(config)
            letters = inbox.letters(ws) if snap.interrupts else []
            if letters:
                answers = await _fold_inbox(graph, ws, run_id, letters, answers or {})
                if not answers:
                    for letter in letters:
                        inbox.taken(letter)
            if answers:
                pending = await outcome_of(graph, ws, run_id)
                _check_answers(pending.questions, answers)
                inp: Any = Command(resume=answers)
            elif not snap.values:
                inp = {"scope_text": (ws.meta / SCOPE_COPY).read_text(encoding="utf-8")}
            elif snap.interrupts:
                return await outcome_of(graph, ws, run_id)
            elif not snap.tasks:
                # Finished (``next`` alone can be empty while saved writes still wait).
                status = snap.values.get("status")
                if status not in ("blocked", "stopped"):
                    return await outcome_of(graph, ws, run_id)
                # A run the budget stopped goes back to where it stopped (human routes there).
                restart = {"status": "executing", "budget_stops": {}}
                as_node = "plan" if status == "blocked" else "human"
                await graph.aupdate_state(config, restart, as_node=as_node)
                inp = None
            else:
                inp = None
            await _stream(graph, inp, config, ctx, on_event)
            for letter in letters:
                inbox.taken(letter)
            return await outcome_of(graph, ws, run_id)


async def _fold_inbox(
    graph: CompiledStateGraph[Any, Any, Any, Any],
    ws: Workspace,
    run_id: str,
    letters: list[inbox.Letter],
    answers: dict[str, str],
) -> dict[str, str]:
    """Add the answers queued while the run was busy to ``answers`` (given ones win)."""
    pending = {q["id"] for q in (await outcome_of(graph, ws, run_id)).questions}
    queued: dict[str, str] = {}
    for letter in letters:
        queued |= {q: a for q, a in letter.answers.items() if q in pending}
        for qid in sorted(set(letter.answers) - pending):
            ws.log_event(node="resume", event="inbox_refused", question=qid, reason="not pending")
    return {**queued, **answers}


async def answer_run(
    workspace: Path | str,
    answers: dict[str, str],
    *,
    context: dict[str, Any] | None = None,
    models: ModelOverrides = None,
    on_event: EventSink | None = None,
) -> RunOutcome:
    """Answer pending questions: resume a paused run, or queue the answers for a busy one.

    A run another process is working on cannot be resumed here; its tasks that wait for a
    person are answered through the inbox, and the working process resumes them between
    tasks, without a pause.
    """
    try:
        return await resume_run(
            workspace, answers=answers, context=context, models=models, on_event=on_event
        )
    except RunLockedError:
        out = await run_status(workspace)
    _check_answers(out.questions, answers)
    inbox.post(Workspace.open(workspace), answers)
    out.queued = dict(answers)
    out.notices.append(
        "the run is busy in another process: the answer(s) were queued, and that process "
        "applies them between tasks; follow with 'oldnew status'"
    )
    return out


async def approve_gate(
    workspace: Path | str,
    gate: str | None,
    verdict: str,
    *,
    context: dict[str, Any] | None = None,
    models: ModelOverrides = None,
    on_event: EventSink | None = None,
) -> RunOutcome:
    """Answer the approval gate the run waits at: approve, reject, or the changes wanted."""
    if not verdict.strip():
        raise UsageError("the changes asked for are empty; say what should change")
    out = await run_status(workspace)
    waiting = [q for q in out.questions if q.get("kind") == "approval"]
    if not waiting:
        others = ", ".join(q["id"] for q in out.questions) or "none"
        raise UsageError(f"the run is not waiting at an approval gate; pending questions: {others}")
    chosen = [q for q in waiting if gate in (None, q["id"], q.get("gate"))]
    if not chosen:
        names = ", ".join(f"{q['id']} ({q.get('gate')})" for q in waiting)
        raise UsageError(f"no gate {gate!r} is waiting; waiting: {names}")
    qid = chosen[0]["id"]
    return await answer_run(
        workspace, {qid: verdict}, context=context, models=models, on_event=on_event
    )


async def submit_feedback(
    workspace: Path | str,
    text: str,
    *,
    context: dict[str, Any] | None = None,
    models: ModelOverrides = None,
    on_event: EventSink | None = None,
) -> RunOutcome:
    """Hand a person's feedback to a run and continue it to its next stop.

    The planner triages the feedback (change request, bug report, feature, clarification)
    and applies it; only the work it opens runs, then the run is delivered again.

    Raises:
        UsageError: empty or oversized text, or a run that cannot take feedback (stopped,
            not planned yet); the run's state is left unchanged.

    A run another process is working on gets the feedback through its inbox: that process
    starts no new task, lets the running ones finish, and hands the feedback to its planner.

    """
    check_text(text)
    ws = Workspace.open(workspace)
    run_id = str((ws.run_info() or {})["run_id"])
    ctx = _context(ws, context or {})
    if models is None:
        check_model_specs(ctx)
    config = _run_config(run_id)
    with ExitStack() as stack:
        try:
            stack.enter_context(ws.lock())
        except RunLockedError:
            return await _queue_feedback(ws, run_id, text)
        async with open_graph(ws, models, ctx.memory_path) as graph:
            values = dict((await graph.aget_state(config)).values or {})
            why = refusal(values)
            if why:
                raise UsageError(why)
            cleared = ws.recover()
            if cleared:
                ws.log_event(node="resume", event="recovered", cleared=cleared)
            item = new_item(text, values)
            ws.log_event(node="feedback", event="received", feedback=item.id, chars=len(item.text))
            await graph.aupdate_state(
                config, {"feedback": {item.id: item.model_dump()}}, as_node="execute"
            )
            await _stream(graph, None, config, ctx, on_event)
            return await outcome_of(graph, ws, run_id)


async def _queue_feedback(ws: Workspace, run_id: str, text: str) -> RunOutcome:
    """Leave feedback in a busy run's inbox, once the run is known to take feedback."""
    async with open_graph(ws) as graph:
        values = dict((await graph.aget_state(_run_config(run_id))).values or {})
        why = refusal(values)
        if why:
            raise UsageError(why)
        out = await outcome_of(graph, ws, run_id)
    inbox.post(ws, {}, feedback=text)
    ws.log_event(node="feedback", event="queued", chars=len(text))
    out.queued = {"feedback": text}
    out.notices.append(
        "the run is busy in another process: the feedback was queued; that process starts no "
        "new task, lets the running ones finish, and hands it to the planner"
    )
    return out


def _check_answers(pending: list[dict[str, Any]], answers: dict[str, str]) -> None:
    if not pending:
        raise UsageError("this run has no pending questions; see 'oldnew status'")
    by_id = {q["id"]: Question.model_validate(q) for q in pending}
    for qid, answer in answers.items():
        if qid not in by_id:
            raise UsageError(f"no pending question {qid!r}; pending: {', '.join(sorted(by_id))}")
        try:
            by_id[qid].check_answer(answer)
        except ValueError as exc:
            raise UsageError(str(exc)) from exc


async def run_status(workspace: Path | str) -> RunOutcome:
    """Return where the run in ``workspace`` stands, without changing anything."""
    ws = Workspace.open(workspace)
    run_id = str((ws.run_info() or {})["run_id"])
    async with open_graph(ws) as graph:
        return await outcome_of(graph, ws, run_id)


async def memory_listing(
    workspace: Path | str | None, *, remove: str | None = None
) -> dict[str, Any]:
    """List (or remove from) a run's memory, or the knowledge base when no workspace is given.

    Returns ``{"path", "entries": [{key, ...}], "problems": [...], "removed"}``.
    """
    from oldnew.memory.store import FIXES, TEMPLATES, Memory

    if workspace is not None:
        ws = Workspace.open(workspace)
        ctx = _context(ws, {})
        run_id = str((ws.run_info() or {})["run_id"])
    else:
        ws, ctx, run_id = None, Context(), ""
    async with open_memory(ctx.memory_path, ws) as store:
        if store is None:
            raise UsageError(f"no memory store could be opened at {ctx.memory_path}")
        memory = Memory(store, run_id)
        removed = None
        if remove:
            spaces = [memory.run_ns] if ws is not None else [FIXES, TEMPLATES]
            removed = any([await memory.remove(ns, remove) for ns in spaces])
            if not removed:
                raise UsageError(f"no memory entry {remove!r}; list them without --remove")
        rows: list[dict[str, Any]] = []
        if ws is not None:
            rows = [{"key": k, **e.model_dump()} for k, e in await memory.entries()]
        else:
            rows = [
                {
                    "key": k,
                    "kind": "fix",
                    "helped": r.helped,
                    "unhelpful": r.unhelpful,
                    "faded": r.faded,
                    "text": f"{r.tool} {r.rule}: {r.message}",
                }
                for k, r in await memory.fixes()
            ]
            for key, value in await memory._items(TEMPLATES):
                rows.append(
                    {
                        "key": key,
                        "kind": "template",
                        "helped": value.get("uses", 0),
                        "text": str(value.get("description", ""))[:200],
                    }
                )
        return {
            "path": str(Path(ctx.memory_path).expanduser()),
            "entries": rows,
            "problems": memory.problems,
            "removed": removed,
        }
