"""The commands on a run: start, resume, answer, approve, feedback, status, memory.

What the CLI, notebooks and benchmarks call. Each opens the run's session, hands the graph
its input (a scope, a restart, answers, feedback) and returns where the run stands.
"""

from __future__ import annotations

import fcntl
import functools
import inspect
import uuid
from collections.abc import Callable, Coroutine, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from langgraph.types import Command

from oldnew.budget import save_budget
from oldnew.cluster.state import open_state, redact, state_url
from oldnew.context import Context
from oldnew.errors import CheckpointsCorrupt, CheckpointsLost, RunLockedError, UsageError
from oldnew.feedback.items import check_text, new_item, refusal
from oldnew.hitl import approvals, inbox
from oldnew.models import ModelOverrides, check_model_specs
from oldnew.runs.outcome import RunOutcome, outcome_of
from oldnew.runs.session import (
    SCOPE_COPY,
    EventSink,
    RunGraph,
    check_checkpoints,
    check_space,
    disk_faults,
    intact,
    open_graph,
    open_memory,
    run_checkpointed,
    run_config,
    run_context,
    set_aside_checkpoints,
    state_holds,
    state_of,
    state_record,
    stream,
)
from oldnew.schemas import Question
from oldnew.supporting import collect
from oldnew.workspace import Workspace, new_checkpoints

MAX_SCOPE_BYTES = 5_000_000
P = ParamSpec("P")
R = TypeVar("R")


def disk_guarded(fn: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Coroutine[Any, Any, R]]:
    """Let a command report a full or read-only disk under its workspace as a StorageError."""

    @functools.wraps(fn)
    async def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
        root = inspect.signature(fn).bind(*args, **kwargs).arguments["workspace"]
        with disk_faults(root):
            return await fn(*args, **kwargs)

    return guarded


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


@disk_guarded
async def start_run(
    scope_file: Path | str,
    workspace: Path | str,
    *,
    context: dict[str, Any] | None = None,
    models: ModelOverrides = None,
    on_event: EventSink | None = None,
    with_paths: Sequence[Path | str] | None = None,
    state: str | None = None,
) -> RunOutcome:
    """Create the workspace and run the scope until it is delivered or needs a person.

    ``with_paths`` are supporting files or folders (``--with``): checked, then committed as
    the run's first commit, before scoping. ``state`` is the URL of a PostgreSQL database
    for the run's checkpoints and memory (``oldnew.cluster.state``; None: ``OLDNEW_STATE_URL``
    or, without it, SQLite in the workspace); it is checked before the workspace is made.
    """
    text = read_scope(scope_file)
    supporting = collect(list(with_paths or []), workspace)
    overrides = {k: v for k, v in (context or {}).items() if v is not None}
    ctx = Context(**overrides)
    approvals.enabled(ctx.approvals)
    if models is None:
        check_model_specs(ctx)
    check_space(Path(workspace))
    url = state_url(state)
    if url is not None:
        async with open_state(url):
            pass  # a database that does not answer, or refuses, leaves no workspace behind
    run_id = str(uuid.uuid4())
    settings = {
        "scope_file": str(Path(scope_file).resolve()),
        "context": overrides,
        **state_record(url),
    }
    ws = Workspace.create(
        workspace, run_id, settings, files={SCOPE_COPY: text}, supporting=supporting
    )
    ctx = run_context(ws, {})
    if on_event is not None:
        for event in ws.events():
            on_event(event)  # what making the workspace said: on a repository, where it works
    with ws.lock():
        async with open_graph(ws, models, ctx.memory_path, state=url) as graph:
            await stream(graph, {"scope_text": text}, run_config(run_id), ctx, on_event)
            return await outcome_of(graph, ws, run_id)


@disk_guarded
async def resume_run(
    workspace: Path | str,
    *,
    answers: dict[str, str] | None = None,
    context: dict[str, Any] | None = None,
    models: ModelOverrides = None,
    on_event: EventSink | None = None,
    restart: bool = False,
    state: str | None = None,
    build: dict[str, Any] | None = None,
) -> RunOutcome:
    """Continue a run: after a crash or kill, with answers, or to retry blocked tasks.

    ``restart`` starts the run over from its scope on fresh checkpoints, for a run whose
    checkpoints are lost or damaged (the damaged file is kept beside the new one; the
    commits on main stay). ``state``: the run's state URL, for a run started with one.
    ``build`` goes to :func:`open_graph` as it is (a worker's ``runner`` and ``gates``).
    """
    ws = Workspace.open(workspace)
    run_id = str((ws.run_info() or {})["run_id"])
    url = state_of(ws, state)
    ctx = run_context(ws, context or {})
    approvals.enabled(ctx.approvals)
    if models is None:
        check_model_specs(ctx)
    config = run_config(run_id)
    check_space(ws.root)
    with ws.lock():
        await _prepare(ws, run_id, context or {}, restart, url)
        async with open_graph(ws, models, ctx.memory_path, state=url, **(build or {})) as graph:
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
                if not snap.interrupts and snap.tasks:
                    # Stopped mid-step (killed, say), not paused: the resumed step takes
                    # the answers between tasks, as a busy run's.
                    inbox.post(ws, answers)
                    inp = None
            elif not snap.values:
                inp = _scope_input(ws, run_id, restart, url)
            elif snap.interrupts:
                return await outcome_of(graph, ws, run_id)
            elif not snap.tasks:
                # Finished (``next`` alone can be empty while saved writes still wait).
                status = snap.values.get("status")
                if status not in ("blocked", "stopped"):
                    return await outcome_of(graph, ws, run_id)
                # A blocked run retries its blockers; one the budget stopped goes on.
                inp = {"restart": True}
            else:
                inp = None
            await stream(graph, inp, config, ctx, on_event)
            for letter in letters:
                inbox.taken(letter)
            return await outcome_of(graph, ws, run_id)


async def _prepare(
    ws: Workspace, run_id: str, context: dict[str, Any], restart: bool, state: str | None
) -> None:
    """Ready a held workspace for resuming: restart, saved caps, what a kill left in git."""
    if restart:
        await _restart(ws, run_id, state)
    save_budget(ws, context)  # a raised cap holds for later resumes too
    _recover(ws)


def _recover(ws: Workspace) -> None:
    """Clear what a kill left in git, and put the run back on its branch, before work."""
    cleared = ws.recover()
    if cleared:
        ws.log_event(node="resume", event="recovered", cleared=cleared)
    ws.hold_branch()


async def _restart(ws: Workspace, run_id: str, state: str | None) -> None:
    """Set the run's checkpoints aside and make new, empty ones: the run starts over.

    Refused while the checkpoints still hold the run: a restart never throws away a run
    that resume can continue. A state database that holds nothing of the run has nothing
    to set aside.
    """
    if state is not None:
        holds = await state_holds(state, run_id)
    else:
        try:
            check_checkpoints(ws)
            holds = run_checkpointed(ws, run_id)
        except (CheckpointsLost, CheckpointsCorrupt):
            holds = False
    if holds:
        raise UsageError(
            f"the checkpoints of run {run_id} are intact: continue it with 'oldnew resume "
            f"--workspace {ws.root}' (--restart is for lost or damaged checkpoints)"
        )
    kept = None
    if state is None:
        kept = set_aside_checkpoints(ws)
        new_checkpoints(ws.checkpoints)
    ws.log_event(node="resume", event="restarted", damaged_kept=str(kept) if kept else None)


def _scope_input(
    ws: Workspace, run_id: str, restart: bool, state: str | None = None
) -> dict[str, Any]:
    """Return the input that starts a run with no checkpoint yet, unless work says otherwise.

    A run killed before its first checkpoint starts from its scope; one whose checkpoints
    were emptied while tasks were committed is not silently run again (unless restarted).
    """
    if not restart and ws.git("log", ws.branch, "--format=%H", "--grep=^Oldnew-Task: "):
        where = redact(state) if state else str(ws.checkpoints)
        raise CheckpointsLost(
            f"the run's checkpoints ({where}) hold nothing of run {run_id}, yet it "
            f"has work: {intact(ws)}. Restore the file from a backup, or start the run over "
            f"from its scope with 'oldnew resume --workspace {ws.root} --restart' (scope, "
            "plan and every task re-run at full cost; the commits on main stay)"
        )
    return {"scope_text": (ws.meta / SCOPE_COPY).read_text(encoding="utf-8")}


async def _fold_inbox(
    graph: RunGraph,
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
    state: str | None = None,
) -> RunOutcome:
    """Answer pending questions: resume a paused run, or queue the answers for a busy one.

    A run another process is working on cannot be resumed here; its tasks that wait for a
    person are answered through the inbox, and the working process resumes them between
    tasks, without a pause.
    """
    try:
        return await resume_run(
            workspace,
            answers=answers,
            context=context,
            models=models,
            on_event=on_event,
            state=state,
        )
    except RunLockedError:
        out = await run_status(workspace, state=state)
    _check_answers(out.questions, answers)
    inbox.post(Workspace.open(workspace), answers)
    out.queued = dict(answers)
    out.notices.append(
        "the run is busy in another process: the answer(s) were queued, and that process "
        "applies them between tasks; follow with 'oldnew status'"
    )
    return out


def approval_question(questions: list[dict[str, Any]], gate: str | None) -> str:
    """Return the id of the approval ``gate`` names among ``questions`` (None: the one waiting).

    Raises:
        UsageError: the run waits at no approval gate, or not at that one.

    """
    waiting = [q for q in questions if q.get("kind") == "approval"]
    if not waiting:
        others = ", ".join(q["id"] for q in questions) or "none"
        raise UsageError(f"the run is not waiting at an approval gate; pending questions: {others}")
    chosen = [q for q in waiting if gate in (None, q["id"], q.get("gate"))]
    if not chosen:
        names = ", ".join(f"{q['id']} ({q.get('gate')})" for q in waiting)
        raise UsageError(f"no gate {gate!r} is waiting; waiting: {names}")
    return str(chosen[0]["id"])


async def approve_gate(
    workspace: Path | str,
    gate: str | None,
    verdict: str,
    *,
    context: dict[str, Any] | None = None,
    models: ModelOverrides = None,
    on_event: EventSink | None = None,
    state: str | None = None,
) -> RunOutcome:
    """Answer the approval gate the run waits at: approve, reject, or the changes wanted."""
    if not verdict.strip():
        raise UsageError("the changes asked for are empty; say what should change")
    out = await run_status(workspace, state=state)
    qid = approval_question(out.questions, gate)
    return await answer_run(
        workspace, {qid: verdict}, context=context, models=models, on_event=on_event, state=state
    )


@disk_guarded
async def submit_feedback(
    workspace: Path | str,
    text: str,
    *,
    context: dict[str, Any] | None = None,
    models: ModelOverrides = None,
    on_event: EventSink | None = None,
    state: str | None = None,
    build: dict[str, Any] | None = None,
) -> RunOutcome:
    """Hand a person's feedback to a run and continue it to its next stop.

    ``build`` goes to :func:`open_graph` as it is (a worker's ``runner`` and ``gates``).

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
    url = state_of(ws, state)
    ctx = run_context(ws, context or {})
    if models is None:
        check_model_specs(ctx)
    config = run_config(run_id)
    with ExitStack() as stack:
        try:
            stack.enter_context(ws.lock())
        except RunLockedError:
            return await _queue_feedback(ws, run_id, text, url)
        async with open_graph(ws, models, ctx.memory_path, state=url, **(build or {})) as graph:
            values = dict((await graph.aget_state(config)).values or {})
            why = refusal(values)
            if why:
                raise UsageError(why)
            _recover(ws)
            item = new_item(text, values)
            ws.log_event(node="feedback", event="received", feedback=item.id, chars=len(item.text))
            inp = {"feedback": {item.id: item.model_dump()}}
            await stream(graph, inp, config, ctx, on_event)
            return await outcome_of(graph, ws, run_id)


async def _queue_feedback(ws: Workspace, run_id: str, text: str, state: str | None) -> RunOutcome:
    """Leave feedback in a busy run's inbox, once the run is known to take feedback."""
    async with open_graph(ws, state=state) as graph:
        values = dict((await graph.aget_state(run_config(run_id))).values or {})
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


@disk_guarded
async def run_status(workspace: Path | str, *, state: str | None = None) -> RunOutcome:
    """Return where the run in ``workspace`` stands, without changing anything.

    A run that is neither finished nor paused, and that no process works on (it was killed,
    or its terminal closed), is ``interrupted``, with the command that continues it.
    ``state``: the run's state URL, for a run started with one.
    """
    ws = Workspace.open(workspace)
    run_id = str((ws.run_info() or {})["run_id"])
    url = state_of(ws, state)
    async with open_graph(ws, state=url) as graph:
        out = await outcome_of(graph, ws, run_id)
    if out.status == "running" and not worked_on(ws):
        out.status = "interrupted"
        out.notices.append(
            "no oldnew process is working on this run: it stopped before it finished; "
            f"continue it with 'oldnew resume --workspace {ws.root}'"
        )
    if out.status == "running":
        sized = [
            e for e in ws.events() if e.get("node") == "execute" and e.get("event") == "agents"
        ]
        out.agents = {k: sized[-1][k] for k in ("agents", "reason")} if sized else {}
    return out


def worked_on(ws: Workspace) -> bool:
    """Say whether a process holds the run's lock (``Workspace.lock``), writing nothing."""
    try:
        handle = open(ws.meta / "lock", encoding="utf-8")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


async def memory_listing(
    workspace: Path | str | None, *, remove: str | None = None, state: str | None = None
) -> dict[str, Any]:
    """List (or remove from) a run's memory, or the knowledge base when no workspace is given.

    With ``state`` (a run's state URL, or a database's for the knowledge base) the memory is
    that database's. Returns ``{"path", "entries": [{key, ...}], "problems": [...], "removed"}``
    (``path``: the store's file, or the database's URL without its password).
    """
    from oldnew.memory.store import FIXES, TEMPLATES, Memory

    if workspace is not None:
        ws = Workspace.open(workspace)
        ctx = run_context(ws, {})
        run_id = str((ws.run_info() or {})["run_id"])
        url = state_of(ws, state)
    else:
        ws, ctx, run_id, url = None, Context(), "", state_url(state)
    where = redact(url) if url else str(Path(ctx.memory_path).expanduser())
    async with open_memory(ctx.memory_path, ws, url) as store:
        if store is None:
            raise UsageError(f"no memory store could be opened at {where}")
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
            for key, value in await memory.templates():
                rows.append(
                    {
                        "key": key,
                        "kind": "template",
                        "helped": value.get("uses", 0),
                        "text": str(value.get("description", ""))[:200],
                    }
                )
        return {
            "path": where,
            "entries": rows,
            "problems": memory.problems,
            "removed": removed,
        }
