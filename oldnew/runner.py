"""Start, resume, answer and inspect runs on a workspace: what the CLI and notebooks call.

One process works on a workspace at a time (a file lock); the run's thread id is its run id,
and its checkpoints live in ``.oldnew/checkpoints.sqlite`` inside the workspace.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.graph.state import CompiledStateGraph
from langgraph.store.sqlite.aio import AsyncSqliteStore
from langgraph.types import Command

from oldnew.context import Context
from oldnew.errors import UsageError
from oldnew.graph.build import build_graph, build_task_graph
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
    """delivered, waiting (for a person), blocked, aborted, or running (interrupted)."""
    run_id: str
    workspace: str
    tasks: list[dict[str, Any]] = field(default_factory=list)
    questions: list[dict[str, Any]] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    report: str | None = None

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
            tasks.append(record)
    questions: list[dict[str, Any]] = []
    notices: list[str] = []
    if snap.interrupts:
        payload = snap.interrupts[0].value
        questions = list(payload.get("questions", []))
        notices = list(payload.get("notices", []))
        status = "waiting"
    elif not snap.tasks and values.get("report"):
        status = str(values.get("status"))
    else:
        status = "running" if values else "not started"
    return RunOutcome(
        status=status,
        run_id=run_id,
        workspace=str(ws.root),
        tasks=tasks,
        questions=questions,
        notices=notices,
        report=values.get("report"),
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
    if models is None:
        check_model_specs(ctx)
    config = _run_config(run_id)
    with ws.lock():
        cleared = ws.recover()
        if cleared:
            ws.log_event(node="resume", event="recovered", cleared=cleared)
        async with open_graph(ws, models, ctx.memory_path) as graph:
            snap = await graph.aget_state(config)
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
                if snap.values.get("status") != "blocked":
                    return await outcome_of(graph, ws, run_id)
                await graph.aupdate_state(config, {"status": "executing"}, as_node="plan")
                inp = None
            else:
                inp = None
            await _stream(graph, inp, config, ctx, on_event)
            return await outcome_of(graph, ws, run_id)


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
