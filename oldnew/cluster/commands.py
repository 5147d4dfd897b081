"""The command line of many machines: ``oldnew worker``, ``oldnew workers``, and how the run
commands show a run handed to workers (registered on ``oldnew.cli``'s app)."""

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

from oldnew.cluster.runs import cluster_status, list_workers
from oldnew.cluster.state import redact, state_url
from oldnew.cluster.worker import STALL_SECONDS, default_name, load_build, run_worker
from oldnew.errors import OldnewError, UsageError

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
            _liveness(w),
        )
    console.print(table)


def _liveness(w: dict[str, Any]) -> str:
    if w.get("stopped"):
        return "stopped"
    return "alive" if float(w["silent_s"]) < STALL_SECONDS else "silent (taken for dead)"


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
    table = Table("task", "state", "worker", "updated")
    for t in found["tasks"]:
        table.add_row(t["task_id"], t["state"], t.get("worker") or "", str(t["updated"])[11:19])
    if found["tasks"]:
        console.print(table)
    summary = run.get("summary") or {}
    for q in summary.get("questions") or []:
        console.print(f"question {q.get('id')}: {escape(str(q.get('title') or ''))}")
    alive = [w for w in found["workers"] if _liveness(w) == "alive"]
    if run["status"] in ("queued", "running") and not alive:
        console.print(
            "[yellow]no worker is alive: start one with 'oldnew worker --state URL --repo "
            "URL'[/yellow]"
        )
