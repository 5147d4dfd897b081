"""The command line of many machines: ``oldnew worker``, ``oldnew workers``, and runs on them.

The two commands are registered on ``oldnew.cli``'s app; the run commands (status, answer,
approve, feedback, resume) ask :func:`queued_target` whether they are about a run handed to
workers, and then call the functions here.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from oldnew.cluster.jobs import STALL_SECONDS
from oldnew.cluster.runs import (
    central_heads,
    cluster_status,
    list_workers,
    liveness,
    post_letter,
    queue_again,
    submit_run,
)
from oldnew.cluster.state import redact, state_url
from oldnew.cluster.worker import default_name, load_build, run_worker
from oldnew.errors import OldnewError, UsageError
from oldnew.workspace import Workspace

console = Console()
err = Console(stderr=True)
EXIT_USAGE = 2

StateArg = Annotated[
    str | None,
    typer.Option(
        "--state",
        envvar="OLDNEW_STATE_URL",
        show_envvar=False,
        help="The PostgreSQL URL the runs and their workers share "
        "(postgresql://USER:PASSWORD@HOST:PORT/DB). Env: OLDNEW_STATE_URL.",
    ),
]


def _url(state: str | None) -> str:
    url = state_url(state)
    if url is None:
        raise UsageError(
            "give --state postgresql://USER:PASSWORD@HOST:PORT/DB (or set OLDNEW_STATE_URL): "
            "the database the runs and their workers share"
        )
    return url


def _fail(exc: OldnewError) -> typer.Exit:
    err.print(f"[red]error:[/red] {escape(str(exc))}")
    return typer.Exit(EXIT_USAGE)


def worker(
    state: StateArg = None,
    repo: Annotated[
        str,
        typer.Option(
            "--repo", help="The central git repository (URL or path) main is published to."
        ),
    ] = "",
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-c", min=1, help="Task steps at once.")
    ] = 2,
    runs: Annotated[
        int, typer.Option("--runs", min=1, help="Runs this worker may hold at once.")
    ] = 2,
    directory: Annotated[
        Path | None,
        typer.Option(
            "--dir", help="Where this worker keeps its clones (default ~/.oldnew/worker)."
        ),
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="Default: HOST-PID.")] = None,
    stall: Annotated[
        float,
        typer.Option(
            "--stall-timeout",
            min=1.0,
            help="Seconds without a worker's heartbeat before its jobs go to another worker.",
        ),
    ] = STALL_SECONDS,
    build: Annotated[
        str | None,
        typer.Option(
            "--build",
            help="module:function returning build_graph's models/gates (tests, benchmarks).",
        ),
    ] = None,
) -> None:
    """Work on the runs handed to workers: hold runs, run task steps; SIGTERM stops it."""
    try:
        url = _url(state)
        if not repo:
            raise UsageError("give --repo: the central repository every worker fetches from")
        central_heads(
            repo,
            "give --repo the central repository the runs were queued with ('oldnew run "
            "--queue --repo'), as this machine reaches it",
        )
        made = load_build(build)
    except OldnewError as exc:
        raise _fail(exc) from None
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    root = (directory or Path("~/.oldnew/worker")).expanduser().resolve()
    who = name or default_name()

    def ready(_: object) -> None:
        err.print(
            f"worker {who}: {redact(url)}, central {repo}, {concurrency} step(s) at once, "
            f"clones in {root}"
        )

    try:
        asyncio.run(
            run_worker(
                url=url,
                repo=repo,
                root=root,
                name=who,
                concurrency=concurrency,
                runs=runs,
                stall=stall,
                build=made,
                ready=ready,
            )
        )
    except OldnewError as exc:
        raise _fail(exc) from None


def workers(
    state: StateArg = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the workers: heartbeat, load, version."""
    try:
        rows = asyncio.run(list_workers(_url(state)))
    except OldnewError as exc:
        raise _fail(exc) from None
    if json_out:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    if not rows:
        console.print("no worker has started on this database yet: start one with 'oldnew worker'")
        return
    table = Table("worker", "host", "version", "load", "heartbeat", "state")
    for w in rows:
        table.add_row(
            w["name"],
            w["host"],
            w["version"],
            f"{w['running']}/{w['concurrency']}",
            f"{w['silent_s']:.0f} s ago",
            liveness(w),
        )
    console.print(table)


def show_cluster_status(url: str, run_id: str | None, json_out: bool) -> None:
    """Print where a run on the workers stands: the run, each task and the worker on it."""
    try:
        found = asyncio.run(cluster_status(url, run_id))
    except OldnewError as exc:
        raise _fail(exc) from None
    if json_out:
        typer.echo(json.dumps(found, indent=2, default=str))
        return
    run = found["run"]
    console.print(
        f"run {run['run_id']}: {run['status']}"
        + (f", held by {run['holder']}" if run.get("holder") else "")
        + f" (oldnew {run['version']})"
    )
    if run.get("warning"):
        console.print(f"[yellow]{escape(run['warning'])}[/yellow]")
    table = Table("task", "state", "worker (last)", "updated")
    for t in found["tasks"]:
        last = f"({t['last_worker']})" if t.get("last_worker") else ""
        table.add_row(t["task_id"], t["state"], t.get("worker") or last, str(t["updated"])[11:19])
    if found["tasks"]:
        console.print(table)
    summary = run.get("summary") or {}
    for q in summary.get("questions") or []:
        console.print(f"question {q.get('id')}: {escape(str(q.get('title') or ''))}")
    for line in found["notices"]:
        console.print(f"[yellow]{escape(line)}[/yellow]")


RunOpt = Annotated[
    str | None,
    typer.Option("--run", help="A run handed to workers (with --state): its id, from any machine."),
]


def queued_target(
    workspace: Path | None, run: str | None, state: str | None
) -> tuple[str, str] | None:
    """Return (URL, run id) when a command is about a run on workers, else None.

    It is when ``--run`` is given, or when the workspace is the one a run was queued from.

    Raises:
        UsageError: neither a workspace nor a run is given, or a run without a URL.

    """
    if run is not None:
        return _url(state), run
    if workspace is None:
        raise UsageError(
            "give --workspace DIR (the run's directory), or --run ID with --state URL for a "
            "run handed to workers"
        )
    info = Workspace(workspace).run_info() or {}
    if not info.get("queued"):
        return None
    if state_url(state) is None:
        raise UsageError(
            f"run {info['run_id']} was handed to workers; its state is in {info.get('state')}: "
            "pass --state URL or set OLDNEW_STATE_URL"
        )
    return _url(state), str(info["run_id"])


def queue_run(
    scope_file: Path,
    workspace: Path,
    *,
    state: str | None,
    repo: str | None,
    context: dict[str, Any],
    with_paths: list[Path] | None,
) -> None:
    """``oldnew run --queue``: hand the run to the workers, say how to follow it, return."""
    try:
        url = _url(state)
        if not repo:
            raise UsageError(
                "give --repo URL-OR-PATH with --queue: the central repository the workers "
                "fetch main from and publish it to (an empty one: 'git init --bare PATH')"
            )
        run_id = asyncio.run(
            submit_run(
                scope_file, workspace, url=url, repo=repo, context=context, with_paths=with_paths
            )
        )
    except OldnewError as exc:
        raise _fail(exc) from None
    console.print(f"queued run {run_id} for the workers of {redact(url)} (central: {repo})")
    console.print("follow it from any machine with the same --state:", markup=False)
    console.print(f"  oldnew status --state URL --run {run_id}", markup=False)
    console.print(
        f"  start workers: oldnew worker --state URL --repo {repo} --concurrency N", markup=False
    )


def letter(target: tuple[str, str], answers: dict[str, str], feedback: str | None = None) -> None:
    """Leave answers or feedback for a run on workers, queue it, and say so."""
    url, run_id = target
    try:
        asyncio.run(post_letter(url, run_id, answers, feedback))
    except OldnewError as exc:
        raise _fail(exc) from None
    what = "feedback" if feedback else f"{len(answers)} answer(s)"
    console.print(f"left {what} for run {run_id}: its holder takes them at its next step")


def resume_queued(target: tuple[str, str]) -> None:
    """Queue a run on workers again (after its holder stopped, or a block was cleared)."""
    url, run_id = target
    try:
        fresh = asyncio.run(queue_again(url, run_id))
    except OldnewError as exc:
        raise _fail(exc) from None
    if fresh:
        console.print(f"queued run {run_id} again: a worker takes it")
    else:
        console.print(f"run {run_id} is queued already: a worker takes it")


def approve_queued(target: tuple[str, str], gate: str | None, verdict: str) -> None:
    """Give the approval a run on workers waits for (as its last holder reported it)."""
    from oldnew.runs.commands import approval_question

    url, run_id = target
    try:
        found = asyncio.run(cluster_status(url, run_id))
        questions = (found["run"].get("summary") or {}).get("questions") or []
        qid = approval_question(questions, gate)
    except OldnewError as exc:
        raise _fail(exc) from None
    letter(target, {qid: verdict})
