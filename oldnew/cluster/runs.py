"""Runs handed to the workers: start one, say where it stands, answer it, list the workers.

``oldnew run SCOPE --state URL --repo URL --queue`` makes the run's workspace here as any run,
pushes its main to the central repository, records the run in the database and queues its
``drive``; it returns at once. Any machine with the same URL then reads where the run stands
(``oldnew status --state URL --run ID``), answers or gives feedback (a letter the holder
takes), or queues it again (``resume``).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from procrastinate import App

from oldnew.cluster.db import ClusterDB
from oldnew.cluster.jobs import apply_schema, defer_drive, make_app, version
from oldnew.cluster.state import open_state, redact
from oldnew.context import Context
from oldnew.errors import UsageError, WorkspaceError
from oldnew.models import ModelOverrides, check_model_specs
from oldnew.runs.commands import read_scope
from oldnew.runs.session import SCOPE_COPY, check_space, run_config, state_record
from oldnew.safegit import CENTRAL_OPTIONS, run_git
from oldnew.supporting import collect
from oldnew.workspace import MAIN, Workspace


@dataclass
class Cluster:
    """An open cluster database: oldnew's rows and the job queue."""

    url: str
    db: ClusterDB
    app: App


@asynccontextmanager
async def open_cluster(url: str) -> AsyncIterator[Cluster]:
    """Open the database at ``url`` (checked, set up) and its job queue."""
    async with open_state(url, application_name="oldnew", pool_size=2) as state:
        db = ClusterDB(state.pool)
        await db.apply_schema()
        app = make_app(url)
        async with app.open_async():
            await apply_schema(app)
            yield Cluster(url, db, app)


def check_central(repo: str) -> None:
    """Raise unless ``repo`` answers and has no main yet (a run builds a new project there)."""
    proc = run_git("ls-remote", "--heads", repo, cwd=Path.cwd(), options=CENTRAL_OPTIONS)
    if proc.returncode != 0:
        raise UsageError(
            f"the central repository {repo} does not answer: {proc.stderr.strip()[-300:]}; "
            "give a repository every worker can fetch from and push to (make one with "
            "'git init --bare PATH')"
        )
    if f"refs/heads/{MAIN}" in proc.stdout:
        raise UsageError(
            f"the central repository {repo} has a {MAIN} already: a run with --queue builds a "
            "new project there; give it an empty repository ('git init --bare PATH')"
        )


def push_main(ws: Workspace, repo: str) -> None:
    """Publish the new run's main to the central repository."""
    proc = run_git(
        "push", "-q", repo, f"{MAIN}:refs/heads/{MAIN}", cwd=ws.root, options=CENTRAL_OPTIONS
    )
    if proc.returncode != 0:
        raise UsageError(
            f"cannot push to the central repository {repo}: {proc.stderr.strip()[-300:]}; "
            "workers publish main there, so it must take pushes (a bare repository this "
            "user may write); nothing was queued"
        )


async def submit_run(
    scope_file: Path | str,
    workspace: Path | str,
    *,
    url: str,
    repo: str,
    context: dict[str, Any] | None = None,
    with_paths: Sequence[Path | str] | None = None,
    models: ModelOverrides = None,
    plan: dict[str, Any] | None = None,
) -> str:
    """Hand a new run to the workers; return its id.

    ``plan`` seeds the run's plan (a benchmark's synthetic one): its graph starts after
    ``plan`` then. Raises UsageError on what the person must fix (nothing is queued then).
    """
    text = read_scope(scope_file)
    overrides = {k: v for k, v in (context or {}).items() if v is not None}
    if models is None:
        check_model_specs(Context(**overrides))
    check_space(Path(workspace))
    await asyncio.to_thread(check_central, repo)
    supporting = collect(list(with_paths or []), workspace)
    run_id = str(uuid.uuid4())
    settings = {
        "scope_file": str(Path(scope_file).resolve()),
        "context": overrides,
        **state_record(url),
        "queued": True,
    }
    async with open_cluster(url) as cluster:
        ws = await asyncio.to_thread(
            Workspace.create,
            workspace,
            run_id,
            settings,
            files={SCOPE_COPY: text},
            supporting=supporting,
        )
        if ws.repo is not None:
            raise UsageError(
                f"{workspace} is inside a git repository: a run with --queue builds a new "
                "project in the central repository; start it in a new directory"
            )
        await asyncio.to_thread(push_main, ws, repo)
        if plan is not None:
            await _seed(ws, url, run_id, plan)
        record = ws.run_info() or {}
        await cluster.db.add_run(run_id, record, {SCOPE_COPY: text}, version())
        await defer_drive(cluster.app, run_id)
    ws.log_event(node="queue", event="queued", state=redact(url), repo=repo)
    return run_id


async def _seed(ws: Workspace, url: str, run_id: str, plan: dict[str, Any]) -> None:
    from oldnew.runs.session import open_graph

    async with open_graph(ws, memory_path="off", state=url) as graph:
        await graph.aupdate_state(run_config(run_id), plan, as_node="plan")


async def queue_again(url: str, run_id: str) -> bool:
    """Queue the run's ``drive`` (resume it on the workers); False if one is queued already."""
    async with open_cluster(url) as cluster:
        row = await cluster.db.run(run_id)
        if row is None:
            raise UsageError(f"no run {run_id} in {redact(url)}: see 'oldnew status --state URL'")
        return await defer_drive(cluster.app, run_id, of=row["version"]) is not None


async def post_letter(
    url: str, run_id: str, answers: dict[str, str], feedback: str | None = None
) -> None:
    """Leave answers or feedback for the run, and queue it so that they are taken."""
    async with open_cluster(url) as cluster:
        row = await cluster.db.run(run_id)
        if row is None:
            raise UsageError(f"no run {run_id} in {redact(url)}: see 'oldnew status --state URL'")
        await cluster.db.post(run_id, answers, feedback)
        await defer_drive(cluster.app, run_id, of=row["version"])


async def cluster_status(url: str, run_id: str | None = None) -> dict[str, Any]:
    """Return where a run stands (the newest when ``run_id`` is None), task by task."""
    async with open_cluster(url) as cluster:
        rows = await cluster.db.runs()
        if run_id is not None:
            rows = [r for r in rows if r["run_id"] == run_id]
        if not rows:
            raise UsageError(
                f"no run {run_id} in {redact(url)}" if run_id else f"no run in {redact(url)}"
            )
        run = rows[0]
        tasks = await cluster.db.tasks(run["run_id"])
        workers = await cluster.db.workers()
    if run["version"] != version():
        run = {**run, "warning": f"the run was started by oldnew {run['version']}"}
    return {
        "run": _plain(run),
        "tasks": [_plain(t) for t in tasks],
        "workers": [_plain(w) for w in workers],
    }


async def list_workers(url: str) -> list[dict[str, Any]]:
    """Return every worker the database knows, with its heartbeat and load."""
    async with open_cluster(url) as cluster:
        return [_plain(w) for w in await cluster.db.workers()]


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()}


def no_workspace_error(run_id: str) -> WorkspaceError:
    """Return the error of a queued run asked about without ``--state``."""
    return WorkspaceError(
        f"run {run_id} was handed to workers: its state is in the database; pass --state URL"
    )
