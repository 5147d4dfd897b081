"""Runs handed to the workers: start one, say where it stands, answer it, list the workers.

``oldnew run SCOPE --state URL --repo URL --queue`` makes the run's workspace here as any run,
pushes its main to the central repository, records the run in the database and queues its
``drive``; it returns at once. Any machine with the same URL then reads where the run stands
(``oldnew status --state URL --run ID``), answers or gives feedback (a letter the holder
takes), or queues it again (``resume``).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from procrastinate import App

from oldnew import repo as repos
from oldnew.cluster.db import GOING, ClusterDB
from oldnew.cluster.jobs import (
    STALL_SECONDS,
    apply_schema,
    defer_drive,
    make_app,
    runs_queue,
    version,
)
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


EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
"""git's empty tree, which every repository has: the probe commit's."""


def check_central(repo: str) -> None:
    """Raise unless ``repo`` answers, takes pushes and has no main yet (a new project).

    The push is tried for real, with a ref of its own that is deleted again
    (``refs/oldnew/probe/...``): a repository that is read-only to this machine (a mirror,
    a server that grants fetch only) is refused here, before the run's workspace is made.
    """
    heads = central_heads(
        repo,
        "give a repository every worker can fetch from and push to (make one with "
        "'git init --bare PATH'); nothing was queued",
    )
    if f"refs/heads/{MAIN}" in heads:
        raise UsageError(
            f"the central repository {repo} has a {MAIN} already: a run with --queue builds a "
            "new project there; give it an empty repository ('git init --bare PATH')"
        )
    with tempfile.TemporaryDirectory(prefix="oldnew-probe-") as tmp:
        here = Path(tmp)
        run_git("init", "-q", cwd=here)
        commit = run_git("commit-tree", EMPTY_TREE, "-m", "oldnew: push probe", cwd=here)
        ref = f"refs/oldnew/probe/{uuid.uuid4().hex}"
        push = run_git(
            "push", "-q", repo, f"{commit.stdout.strip()}:{ref}", cwd=here, options=CENTRAL_OPTIONS
        )
        if push.returncode != 0:
            raise _push_refused(repo, push.stderr)
        run_git("push", "-q", repo, f":{ref}", cwd=here, options=CENTRAL_OPTIONS)


def central_heads(repo: str, fix: str) -> str:
    """Return the central repository's branches (``git ls-remote``), or raise what to ``fix``.

    Raises:
        UsageError: ``repo`` does not answer (missing, no repository, not reachable).

    """
    proc = run_git("ls-remote", "--heads", repo, cwd=Path.cwd(), options=CENTRAL_OPTIONS)
    if proc.returncode != 0:
        said = " ".join(proc.stderr.split())[-300:]
        raise UsageError(f"the central repository {repo} does not answer: {said}; {fix}")
    return str(proc.stdout)


def _push_refused(repo: str, stderr: str) -> UsageError:
    return UsageError(
        f"cannot push to the central repository {repo}: {stderr.strip()[-300:]}; "
        "workers publish main there, so it must take pushes (a bare repository this "
        "user may write); nothing was queued"
    )


def push_main(ws: Workspace, repo: str) -> None:
    """Publish the new run's main to the central repository."""
    proc = run_git(
        "push", "-q", repo, f"{MAIN}:refs/heads/{MAIN}", cwd=ws.root, options=CENTRAL_OPTIONS
    )
    if proc.returncode != 0:
        raise _push_refused(repo, proc.stderr)


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
    if repos.find(Path(workspace)) is not None:
        raise UsageError(
            f"{workspace} is inside a git repository: a run with --queue builds a new "
            "project in the central repository; start it in a new directory"
        )
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
        fresh = not Path(workspace).exists()
        ws = await asyncio.to_thread(
            Workspace.create,
            workspace,
            run_id,
            settings,
            files={SCOPE_COPY: text},
            supporting=supporting,
        )
        try:
            await asyncio.to_thread(push_main, ws, repo)
        except UsageError:
            _unmake(ws.root, fresh)
            raise
        if plan is not None:
            await _seed(ws, url, run_id, plan)
        record = ws.run_info() or {}
        await cluster.db.add_run(run_id, record, {SCOPE_COPY: text}, version())
        await defer_drive(cluster.app, run_id)
    ws.log_event(node="queue", event="queued", state=redact(url), repo=repo)
    return run_id


def _unmake(root: Path, fresh: bool) -> None:
    """Take back the workspace of a run that could not be queued: the same command may run.

    ``Workspace.create`` took only a new or empty directory, so all it holds is the run's.
    """
    if fresh:
        shutil.rmtree(root, ignore_errors=True)
        return
    for child in root.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


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
        return await _requeue(cluster, run_id, str(row["version"]))


async def post_letter(
    url: str, run_id: str, answers: dict[str, str], feedback: str | None = None
) -> None:
    """Leave answers or feedback for the run, and queue it so that they are taken."""
    async with open_cluster(url) as cluster:
        row = await cluster.db.run(run_id)
        if row is None:
            raise UsageError(f"no run {run_id} in {redact(url)}: see 'oldnew status --state URL'")
        await cluster.db.post(run_id, answers, feedback)
        await _requeue(cluster, run_id, str(row["version"]))


async def _requeue(cluster: Cluster, run_id: str, version: str) -> bool:
    """Queue the run's ``drive`` and say so on a run at rest; False if one is queued already."""
    if await defer_drive(cluster.app, run_id, of=version) is None:
        return False
    await cluster.db.requeued(run_id)
    return True


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
    shown, known = _plain(run), [_plain(w) for w in workers]
    return {
        "run": shown,
        "tasks": [_plain(t) for t in tasks],
        "workers": known,
        "notices": notices(shown, known),
    }


def liveness(worker: dict[str, Any]) -> str:
    """Return ``stopped``, ``alive`` or ``silent (taken for dead)`` of a worker's row."""
    if worker.get("stopped"):
        return "stopped"
    stall = float(worker.get("stall") or STALL_SECONDS)  # the worker's own --stall-timeout
    return "alive" if float(worker["silent_s"]) < stall else "silent (taken for dead)"


def notices(run: dict[str, Any], workers: Sequence[dict[str, Any]]) -> list[str]:
    """Return what a person must do for the run to go on: no worker, none of its version, an error.

    Each line names the cause and the command that helps (``URL`` stands for the state URL).
    """
    rid, of = run["run_id"], str(run["version"])
    alive = [w for w in workers if liveness(w) == "alive"]
    said: list[str] = []
    if run["status"] in GOING and not alive:
        said.append(
            f"no worker is alive: start one of oldnew {of} with 'oldnew worker --state URL "
            "--repo CENTRAL'"
        )
    elif run["status"] in GOING and not any(str(w["version"]) == of for w in alive):
        others = ", ".join(sorted({f"{w['name']} (oldnew {w['version']})" for w in alive}))
        said.append(
            f"no alive worker runs oldnew {of}, the version this run was queued with (alive: "
            f"{others}); a worker takes only the jobs of its own version (queue "
            f"{runs_queue(of)}): start a worker of oldnew {of} ('pip install oldnew=={of}', "
            "then 'oldnew worker --state URL --repo CENTRAL')"
        )
    summary = run.get("summary") or {}
    error = summary.get("error") if run["status"] in ("interrupted", "retrying") else None
    if error:
        fix = (
            "every worker's --repo must be the central repository the run was queued with, "
            "and reachable from the worker's machine: fix it and restart the worker"
            if "central repository" in error
            else "fix what it says"
        )
        said.append(
            f"the run's holder stopped: {error}; {fix}, then 'oldnew resume --state URL --run "
            f"{rid}' (nothing committed is lost)"
            if run["status"] == "interrupted"
            else f"the run's holder failed and the run is tried again: {error}; if that "
            f"goes on, {fix}"
        )
    if run["status"] == "blocked":
        for task in summary.get("tasks") or []:
            if task.get("status") == "blocked" and task.get("blocker"):
                cause = " ".join(str(task["blocker"]).split())[:500]
                said.append(f"task {task['id']} is blocked: {cause}")
        said.append(
            f"once the cause is fixed, 'oldnew resume --state URL --run {rid}' tries the "
            "blocked tasks again (their committed work stays on main)"
        )
    return said


async def waiting_elsewhere(db: ClusterDB, mine: str) -> list[str]:
    """Return a line per version of the runs that wait for workers of another version."""
    waiting: dict[str, list[str]] = {}
    for row in await db.runs():
        if row["status"] in GOING and str(row["version"]) != mine:
            waiting.setdefault(str(row["version"]), []).append(str(row["run_id"]))
    return [
        f"{len(ids)} run(s) of oldnew {of} wait ({', '.join(ids[:3])}"
        f"{', ...' if len(ids) > 3 else ''}): this worker is oldnew {mine} and never takes "
        f"them; start a worker of oldnew {of} for them"
        for of, ids in sorted(waiting.items())
    ]


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
