"""A run's session: its checkpoints, its memory store, its context, and one stream of it.

One process works on a workspace at a time (a file lock); the run's thread id is its run id,
and its checkpoints live in ``.oldnew/checkpoints.sqlite`` inside the workspace, kept by
``oldnew.checkpoints.CheckpointSaver`` (a large value stored once, not with every checkpoint).
A run started with a state URL (``--state``, ``oldnew.cluster.state``) keeps its checkpoints
and its memory in that PostgreSQL database instead, and its record says where.
"""

from __future__ import annotations

import asyncio
import errno
import inspect
import os
import shutil
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph.state import CompiledStateGraph
from langgraph.store.base import BaseStore
from langgraph.store.sqlite.aio import AsyncSqliteStore

from oldnew.checkpoints import CheckpointSaver
from oldnew.cluster.db import LEASE_KEY, RUN_LEASE
from oldnew.cluster.state import open_state, redact, run_state
from oldnew.context import Context
from oldnew.errors import CheckpointsCorrupt, CheckpointsLost, StorageError, WorkspaceError
from oldnew.graph.build import build_graph
from oldnew.models import ModelOverrides, aclose_http_clients
from oldnew.record import memory_warning
from oldnew.tracing import run_trace
from oldnew.workspace import Workspace

SCOPE_COPY = "scope.md"
EventSink = Callable[[dict[str, Any]], None]
RunGraph = CompiledStateGraph[Any, Any, Any, Any]


def run_config(run_id: str) -> RunnableConfig:
    """Return the config of the run's own thread, its trace named (oldnew.tracing)."""
    config: RunnableConfig = {"configurable": {"thread_id": run_id}, "recursion_limit": 500}
    lease = RUN_LEASE.get()
    if lease is not None:  # a run's holder on a worker: its checkpoints carry its lease
        config["metadata"] = {LEASE_KEY: lease}
    return run_trace(config, run_id)


def state_of(ws: Workspace, given: str | None) -> str | None:
    """Return the state URL a command on the run in ``ws`` opens (None: SQLite in ``ws``).

    Raises:
        StateElsewhere: the run's record puts its state elsewhere than ``given`` does.

    """
    return run_state((ws.run_info() or {}).get("state"), given, str(ws.root))


def state_record(url: str | None) -> dict[str, Any]:
    """Return what a new run's record keeps of its state URL: the URL without its password."""
    return {"state": redact(url)} if url else {}


@asynccontextmanager
async def open_memory(
    path: str | None, ws: Workspace | None = None, state: str | None = None
) -> AsyncIterator[Any]:
    """Yield the memory store at ``path``, or None when it is off or cannot be opened.

    With a ``state`` URL the store is that database's (unless ``path`` is ``off``). A
    corrupted or locked memory file never stops a run: the run goes on without memory
    and its event log says why.
    """
    if state and path != "off":
        async with open_state(state) as opened:
            yield opened.store
        return
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
    ws: Workspace,
    models: ModelOverrides = None,
    memory_path: str | None = None,
    *,
    state: str | None = None,
    **build: Any,
) -> AsyncIterator[CompiledStateGraph[Any, Any, Any, Any]]:
    """Yield the graph compiled on the run's checkpoints and the memory store.

    Those are the workspace's SQLite checkpoints and the store at ``memory_path``; with a
    ``state`` URL, both are that PostgreSQL database's (memory there unless ``off``).
    ``build`` goes to :func:`build_graph` as it is (``gates=``, a benchmark's stand-in).

    Raises:
        CheckpointsLost: the checkpoint file is missing (it is made with the workspace).
        CheckpointsCorrupt: it is not a readable database.
        StateError: the state database cannot be used (``oldnew.errors``: what to fix).

    """
    if state is None:
        check_checkpoints(ws)
    try:
        async with AsyncExitStack() as stack:
            if state is None:
                saver: BaseCheckpointSaver[Any] = await stack.enter_async_context(
                    CheckpointSaver.from_conn_string(str(ws.checkpoints))
                )
                store: BaseStore | None = await stack.enter_async_context(
                    open_memory(memory_path, ws)
                )
            else:
                opened = await stack.enter_async_context(open_state(state))
                saver, store = opened.saver, None if memory_path == "off" else opened.store
            # Compiling takes tens of milliseconds of CPU: off the event loop.
            yield await asyncio.to_thread(
                partial(build_graph, models=models, checkpointer=saver, store=store, **build)
            )
    finally:
        await aclose_http_clients()  # pooled connections must not outlive this event loop


async def state_holds(url: str, run_id: str) -> bool:
    """Return whether the state database at ``url`` holds a checkpoint of the run's thread."""
    async with open_state(url) as opened:
        return await opened.saver.aget_tuple(run_config(run_id)) is not None


def intact(ws: Workspace) -> str:
    """Say what of the run is safe whatever happened to its checkpoints: main's commits."""
    try:
        log = ws.git("log", ws.branch, "--format=%h %(trailers:key=Oldnew-Task,valueonly)")
    except Exception:  # noqa: BLE001 - this only words an error message
        return "the project's files in the workspace"
    tasks = [line.split(maxsplit=1) for line in log.splitlines() if len(line.split()) > 1]
    if not tasks:
        return "main (no task was committed yet)"
    done = ", ".join(f"{task.strip()} ({commit})" for commit, task in reversed(tasks))
    return f"the {len(tasks)} task commit(s) on main: {done}"


def check_checkpoints(ws: Workspace) -> None:
    """Raise unless the run's checkpoint file is there and reads as a database."""
    path = ws.checkpoints
    resume = f"oldnew resume --workspace {ws.root} --restart"
    if not path.is_file():
        raise CheckpointsLost(
            f"the run's checkpoints ({path}) are missing, so where the run stands is lost; "
            f"intact: {intact(ws)}. Restore the file from a backup and try again, or start "
            f"the run over from its scope with '{resume}' (it re-runs scope, plan and every "
            "task at full cost; the commits on main stay in history)"
        )
    try:
        conn = sqlite3.connect(path)
        try:
            problems = [str(row[0]) for row in conn.execute("PRAGMA quick_check")]
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        if getattr(exc, "sqlite_errorname", "") not in ("SQLITE_CORRUPT", "SQLITE_NOTADB"):
            cannot_open(path, exc)
        problems = [str(exc)]
    if problems != ["ok"]:
        raise CheckpointsCorrupt(
            f"the run's checkpoints ({path}) are damaged ({'; '.join(problems[:3])}); "
            f"intact: {intact(ws)}. Restore the file from a backup and try again, or start "
            f"the run over from its scope with '{resume}' (the damaged file is kept beside "
            "it; scope, plan and every task re-run at full cost, the commits on main stay)"
        )


_NO_ROOM = 1_000_000
"""Free bytes below which a failing write is taken for a full disk, whatever it was called."""


def cannot_open(path: Path, exc: sqlite3.DatabaseError) -> None:
    """Raise the error a checkpoint file that will not open (but is not damaged) means."""
    name = str(getattr(exc, "sqlite_errorname", ""))
    free = _free(path.parent)
    if (name == "SQLITE_FULL" or name.startswith("SQLITE_IOERR")) and (free or 0) < _NO_ROOM:
        # SQLite says only "disk I/O error" when it cannot make its journal on a full disk
        full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        raise storage_error(full, path.parent.parent) or StorageError(str(exc)) from exc
    if not os.access(path.parent, os.W_OK):
        raise StorageError(
            f"cannot open {path} ({exc}): its folder is read-only: make it "
            "writable, then try again; the checkpoints and the commits on main are intact"
        ) from exc
    raise WorkspaceError(f"cannot open the run's checkpoints {path}: {exc}") from exc


def run_checkpointed(ws: Workspace, run_id: str) -> bool:
    """Return whether the checkpoint file holds a checkpoint of the run's own thread."""
    conn = sqlite3.connect(ws.checkpoints)
    try:
        row = conn.execute("SELECT 1 FROM checkpoints WHERE thread_id = ? LIMIT 1", (run_id,))
        return row.fetchone() is not None
    except sqlite3.OperationalError:
        return False  # no table yet: nothing was checkpointed
    finally:
        conn.close()


def set_aside_checkpoints(ws: Workspace) -> Path | None:
    """Move a damaged checkpoint file (and its journal files) aside; return where to."""
    moved: Path | None = None
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    for suffix in ("", "-wal", "-shm", "-journal"):
        file = ws.checkpoints.with_name(ws.checkpoints.name + suffix)
        if file.exists():
            target = file.with_name(f"{file.name}.damaged-{stamp}")
            file.rename(target)
            moved = moved or target
    return moved


MIN_FREE_BYTES = 20_000_000
"""Space a run needs free on the workspace's disk to take its next steps (checkpoints,
evidence, git objects)."""

_STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}
# What SQLite and git (whose failures reach us as text) say on a full or read-only disk.
_FULL_MESSAGES = ("disk is full", "no space left on device", "out of diskspace")
_READ_ONLY_MESSAGES = ("readonly database", "read-only file system")


def _free(path: Path) -> int | None:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return shutil.disk_usage(candidate).free
    return None


def _mb(n: int) -> str:
    return f"{n / 1_000_000:.1f} MB"


def check_space(root: Path) -> None:
    """Raise StorageError unless the disk of ``root`` has room for the run's next steps."""
    free = _free(root)
    if free is not None and free < MIN_FREE_BYTES:
        raise StorageError(
            f"the disk of {root} has {_mb(free)} free; a run needs at least "
            f"{_mb(MIN_FREE_BYTES)}: free {_mb(MIN_FREE_BYTES - free)} or more, then try again "
            "(nothing committed was touched)"
        )


def storage_error(exc: BaseException, root: Path) -> StorageError | None:
    """Return the StorageError a disk fault ``exc`` means, or None if it is no disk fault."""
    text = str(exc).lower()
    where = Path(getattr(exc, "filename", None) or root)
    full = isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)
    if full or any(m in text for m in _FULL_MESSAGES):
        free = _free(where)
        room = f"{_mb(free)} free" if free is not None else "no space left"
        said = "" if isinstance(exc, OSError) else f": {exc}"
        return StorageError(
            f"no space left to write {where}{said} ({room}; a run needs at least "
            f"{_mb(MIN_FREE_BYTES)}): free space, then continue with 'oldnew resume "
            f"--workspace {root}'; the commits on main are intact"
        )
    read_only = isinstance(exc, OSError) and exc.errno in _STORAGE_ERRNOS
    if read_only or any(m in text for m in _READ_ONLY_MESSAGES):
        return StorageError(
            f"cannot write {where}: {getattr(exc, 'strerror', None) or exc} (the workspace "
            "is read-only, or not oldnew's to write): make it writable, then continue with "
            f"'oldnew resume --workspace {root}'; the commits on main are intact"
        )
    return None


@contextmanager
def disk_faults(root: Path | str) -> Iterator[None]:
    """Turn a full or read-only disk met under ``root`` into a StorageError saying what to do."""
    try:
        yield
    except (OSError, sqlite3.DatabaseError, WorkspaceError) as exc:
        if isinstance(exc, StorageError):
            raise
        if getattr(exc, "sqlite_errorname", "") in ("SQLITE_CORRUPT", "SQLITE_NOTADB"):
            ws = Workspace(root)
            raise CheckpointsCorrupt(
                f"a database of the run (checkpoints: {ws.checkpoints}) was found damaged "
                f"while working ({exc}); intact: {intact(ws)}. See 'oldnew status --workspace "
                f"{ws.root}' for what to do"
            ) from exc
        typed = storage_error(exc, Path(root).resolve())
        if typed is None:
            raise
        raise typed from exc


def run_context(ws: Workspace, overrides: dict[str, Any]) -> Context:
    """Return the run's context: what it was started with, then ``overrides`` (not None).

    A saved key that is no setting (a tool's own note, a setting a later version dropped) is
    left out, so a workspace written by another version or by a benchmark still opens.
    """
    known = set(inspect.signature(Context).parameters)  # fields, and former names of fields
    saved = (ws.run_info() or {}).get("context", {})
    merged = {k: v for k, v in saved.items() if k in known and v is not None}
    merged |= {k: v for k, v in overrides.items() if v is not None}
    return Context(**merged, workspace=str(ws.root))


async def stream(
    graph: RunGraph,
    inp: Any,
    config: RunnableConfig,
    ctx: Context,
    on_event: EventSink | None,
) -> None:
    """Run the graph on ``inp`` to its next stop, handing progress events to ``on_event``."""
    warning = memory_warning(ctx.record, ctx.memory_path)
    if warning is not None and ctx.workspace:
        Workspace(ctx.workspace).log_event(**warning)
        if on_event is not None:
            on_event(warning)
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
