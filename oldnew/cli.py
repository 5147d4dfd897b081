"""The ``oldnew`` command line.

Exit codes:
    0  delivered: every task is done and main passes its checks (or every critical task
       is, with known limitations listed in the report: delivered_with_limitations)
    1  internal error (a bug in oldnew: please report it with .oldnew/events.jsonl)
    2  usage or configuration error (bad file, bad model spec, missing API key, ...), or a
       workspace fault: lost or damaged checkpoints, a full or read-only disk
    3  waiting for a person: answer with 'oldnew answer'
    4  finished with blockers, or stopped (at a person's request or by the budget): see the
       report; a budget stop names the 'oldnew resume' command with raised caps
    5  interrupted before it finished: continue with 'oldnew resume'
    6  oldnew verify found that the workspace no longer matches its report
"""

from __future__ import annotations

import asyncio
import inspect
import json
import shlex
import sys
import tempfile
from collections.abc import Callable, Coroutine
from contextlib import nullcontext
from dataclasses import replace
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from typer.core import TyperOption

from oldnew import settings
from oldnew.budget import budget_lines
from oldnew.cluster import commands as cluster_commands
from oldnew.context import Context
from oldnew.display import LiveDisplay
from oldnew.errors import OldnewError
from oldnew.recovery.retry import ClassifiedFailure
from oldnew.runs import (
    RunOutcome,
    answer_run,
    approve_gate,
    memory_listing,
    resume_run,
    run_status,
    start_run,
    submit_feedback,
)
from oldnew.runs.session import EventSink, disk_faults, run_context
from oldnew.terminal import (
    Terminated,
    closed_pipe_ok,
    console,
    err,
    run_to_stop,
    stdout_closed,
)
from oldnew.workspace import Workspace

EXIT = {
    "delivered": 0,
    "delivered_with_limitations": 0,
    "waiting": 3,
    "blocked": 4,
    "aborted": 4,
    "stopped": 4,
    "running": 5,
    "interrupted": 5,
    "not started": 5,
}
EXIT_USAGE = 2
HELP = {"help_option_names": ["-h", "--help"]}

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    context_settings=HELP,
    help="Hand oldnew a scope; get a delivered project or a clear plan.",
)


def _flag_type(self: TyperOption, ctx: Any) -> str | None:
    """Show no value type for a flag: typer's rich help shows ``<bool>`` for ``--json``."""
    return None if self.is_flag else _option_type(self, ctx)


_option_type = TyperOption.display_type_rich
TyperOption.display_type_rich = _flag_type  # type: ignore[method-assign]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"oldnew {package_version('oldnew')}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_version,
            is_eager=True,
            help="Print the installed oldnew's version and exit.",
        ),
    ] = False,
) -> None:
    """Hand oldnew a scope; get a delivered project or a clear plan."""


WorkspaceOpt = Annotated[
    Path,
    typer.Option(
        "--workspace",
        "-w",
        help="The run's directory: new or empty for a new project, or an existing git "
        "repository (the run works on a branch of its own there).",
    ),
]
RunWorkspaceOpt = Annotated[
    Path | None,
    typer.Option(
        "--workspace",
        "-w",
        help="The run's directory (or, for a run handed to workers, --run ID with --state).",
    ),
]
ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        help="Model spec: 'provider:model' (openai:gpt-4o-mini, anthropic:..., ollama:...), "
        "a model name LangChain knows the provider of (gpt-4o-mini), or 'scripted:<file>'. "
        "Env: OLDNEW_MODEL.",
    ),
]
AgentsOpt = Annotated[
    int | None,
    typer.Option(
        "--max-agents",
        min=1,
        help="Tasks run at once (1 or more); leave it out to take the number from the scope's "
        "complexity class.",
    ),
]
ApprovalsOpt = Annotated[
    str | None,
    typer.Option(
        "--approvals",
        "--gates",
        help="Approvals that pause for a person: scope,design,mvp,final or all ('--gates' is "
        "its former name). Env: OLDNEW_APPROVALS (or OLDNEW_GATES).",
    ),
]
YesOpt = Annotated[
    bool | None,
    typer.Option("--yes", "-y", help="Give every approval that is on without a pause."),
]
DefaultsOpt = Annotated[
    str | None,
    typer.Option(
        "--defaults",
        help="Scope clarifications to ask: 'ask' all, 'high' only high-priority ones (the "
        "rest take their default), 'auto' none. Env: OLDNEW_DEFAULTS.",
    ),
]
NotifyOpt = Annotated[
    str | None,
    typer.Option(
        "--notify",
        help="URL to POST to, or command to run, when the run needs a person and when it "
        "finishes. Env: OLDNEW_NOTIFY.",
    ),
]
TokensOpt = Annotated[
    int | None,
    typer.Option("--budget-tokens", min=0, help="Tokens the run may use (0: no cap)."),
]
CostOpt = Annotated[
    float | None,
    typer.Option("--budget-cost", min=0, help="USD the run may spend, from the price table."),
]
TaskTokensOpt = Annotated[
    int | None,
    typer.Option("--budget-task-tokens", min=0, help="Tokens one task may use (0: no cap)."),
]
SecondsOpt = Annotated[
    float | None,
    typer.Option(
        "--budget-seconds", min=0, help="Seconds of working time the run may take (0: no cap)."
    ),
]


DepsOpt = Annotated[
    str | None,
    typer.Option(
        "--deps",
        help="New third-party packages: 'ask' a person for those the scope does not name "
        "(default), 'auto' approve all, 'off' allow none. Env: OLDNEW_DEPS.",
    ),
]
IndexOpt = Annotated[
    str | None,
    typer.Option(
        "--package-index",
        help="Python package index (simple-API URL or folder) to resolve and install from; "
        "default PyPI. Env: OLDNEW_PACKAGE_INDEX.",
    ),
]
RegistryOpt = Annotated[
    str | None,
    typer.Option("--npm-registry", help="npm registry URL. Env: OLDNEW_NPM_REGISTRY."),
]
InstallTimeoutOpt = Annotated[
    float | None,
    typer.Option(
        "--install-timeout", min=1, help="Seconds one dependency resolution or install may take."
    ),
]
MaxPackagesOpt = Annotated[
    int | None,
    typer.Option("--max-packages", min=0, help="Packages a project's lock may pin (0: no cap)."),
]
MaxInstallOpt = Annotated[
    float | None,
    typer.Option(
        "--max-install-mb", min=0, help="Megabytes a project's environment may hold (0: no cap)."
    ),
]

ContextTokensOpt = Annotated[
    int | None,
    typer.Option(
        "--context-tokens",
        min=500,
        help="Tokens of file content a coder or fixer call sees (default 8000); the rest "
        "of the project is mapped, and listed as left out.",
    ),
]

RecordOpt = Annotated[
    Path | None,
    typer.Option(
        "--record",
        help="Append every model exchange (prompts, replies, tool calls, usage) to this "
        "transcript file; '--model scripted:FILE' replays it offline. Kept for later resumes. "
        "Env: OLDNEW_RECORD.",
    ),
]

StateOpt = Annotated[
    str | None,
    typer.Option(
        "--state",
        help="PostgreSQL URL (postgresql://USER:PASSWORD@HOST:PORT/DB) for the run's checkpoints "
        "and memory, shared by every machine that works on the run; leave it out for SQLite "
        "in the workspace. Env: OLDNEW_STATE_URL.",
    ),
]


def _record(path: Path | None) -> dict[str, Any]:
    return {"record": str(path.expanduser().resolve()) if path is not None else None}


def _deps(
    deps: str | None,
    index: str | None,
    registry: str | None,
    timeout: float | None,
    packages: int | None,
    size: float | None,
) -> dict[str, Any]:
    return {
        "deps": deps,
        "package_index": index,
        "npm_registry": registry,
        "install_timeout": timeout,
        "max_packages": packages,
        "max_install_mb": size,
    }


def _budget(
    tokens: int | None, cost: float | None, task_tokens: int | None, seconds: float | None
) -> dict[str, Any]:
    return {
        "budget_tokens": tokens,
        "budget_cost": cost,
        "budget_task_tokens": task_tokens,
        "budget_seconds": seconds,
    }


def event_line(event: dict[str, Any]) -> str:
    """Return one progress event as a line of plain text (its task shown apart)."""
    details = {
        k: v
        for k, v in event.items()
        if k not in ("ts", "task", "node", "event", "traceback") and v not in (None, [])
    }
    extra = " ".join(f"{k}={v}" for k, v in details.items())
    return f"{event.get('node', '')}: {event.get('event', '')} {extra}".rstrip()


def show_event(event: dict[str, Any], *, crop: bool = False) -> None:
    """Print one progress event as a line (``crop``: cut to the terminal's width)."""
    if event.get("event") == "finished":
        return
    who = f"[bold]{event['task']}[/bold] " if event.get("task") else ""
    line = f"{who}{escape(event_line(event))}"
    if crop:  # above the live display: one row an event (events.jsonl keeps them whole)
        console.print(line, soft_wrap=False, no_wrap=True, overflow="ellipsis")
    else:
        console.print(line)
    if event.get("preview"):
        console.print(f"[bold]preview: {escape(str(event['preview']))}[/bold] (serving now)")


def show_budget(out: RunOutcome) -> None:
    """Print the run's spend against its budget, and how to go on after a budget stop."""
    if out.budget.get("spend", {}).get("calls"):
        console.print("\n[bold]budget[/bold]")
        for line in budget_lines(out.budget):
            console.print(f"  {line}")
    if out.budget.get("resume"):
        console.print(f"\nstopped by the budget: continue with '{out.budget['resume']}'")


def show_milestones(out: RunOutcome) -> None:
    """Print each milestone's check on main, and where the web app's preview serves."""
    for name, m in out.milestones.items():
        tag = f", tag {m['tag']}" if m.get("tag") else ""
        why = f": {m['reason']}" if m.get("reason") else ""
        console.print(f"milestone {name}: {m.get('status')}{tag}{why}")
    if out.preview:
        console.print(f"[bold]preview:[/bold] {out.preview}")
    elif any(m.get("preview") for m in out.milestones.values()):
        again = f"oldnew preview --workspace {shlex.quote(out.workspace)}"
        console.print(f"preview: not serving now; serve it again with '{again}'")


def show_work(out: RunOutcome) -> None:
    """Print what a busy run is doing: its agents now, and answers it has yet to apply."""
    if out.agents:
        console.print(f"agents: {out.agents['agents']} ({out.agents['reason']})")
    if out.queued:
        console.print(f"queued: {', '.join(f'{k}={v}' for k, v in out.queued.items())}")


def show_outcome(out: RunOutcome) -> None:
    """Print where the run stands: tasks, questions, and what to do next."""
    table = Table(title=f"run {out.run_id}: {out.status}")
    for col in ("task", "title", "status", "commit", "fix rounds"):
        table.add_column(col, overflow="fold")  # a narrow terminal wraps a cell, never cuts it
    for t in out.tasks:
        table.add_row(
            t["id"],
            t["title"],
            t["status"] + (" (known limitation)" if t.get("limitation") else ""),
            (t.get("commit") or "")[:12],
            str(t.get("fix_rounds", 0)),
        )
    if out.tasks:
        console.print(table)
    for note in out.notices:
        console.print(f"[yellow]note:[/yellow] {note}")
    if out.questions and out.status == "running":
        console.print("\nOther work goes on; these tasks wait for a person:")
    for q in out.questions:
        show_question(q, out.workspace)
    show_work(out)
    show_milestones(out)
    if out.acceptance:
        console.print(out.acceptance)
    show_budget(out)
    if out.report:
        console.print(f"\nreport: {Path(out.report).with_suffix('.md')}")
    if out.status == "delivered_with_limitations":
        console.print("\n[yellow]note:[/yellow] delivered with known limitations: see the report")
    if out.status == "running":
        console.print(f"\nnot finished: continue with 'oldnew resume --workspace {out.workspace}'")


def show_question(q: dict[str, Any], workspace: str) -> None:
    """Print one escalation: what it is, what it holds up, its options, how to answer."""
    kind = q.get("type") or q["kind"]
    head = escape(f"[{q.get('severity', 'medium')}] ({kind}): {q['title']}")
    console.print(f"\n[bold]{q['id']}[/bold] {head}")
    if q.get("detail"):
        console.print(escape(f"  {q['detail']}".replace("\n", "\n  ")))
    if q.get("blocks"):
        goes_on = "other work goes on" if q.get("can_continue", True) else "nothing else can run"
        console.print(f"  waiting on it: {', '.join(q['blocks'])} ({goes_on})")
    for i, opt in enumerate(q.get("options", []), start=1):
        mark = " (recommended)" if opt["key"] == q.get("recommended") else ""
        console.print(escape(f"  {i}. {opt['key']}: {opt['label']}{mark}"))
    if q.get("free_text", True):
        console.print("  or answer in your own words")
    if q.get("kind") == "approval":
        console.print(
            f"  answer: oldnew approve --workspace {workspace} \\[--reject | --changes TEXT]"
        )
    else:
        console.print(f"  answer: oldnew answer --workspace {workspace} {q['id']} ANSWER")


JsonOpt = Annotated[
    bool,
    typer.Option(
        "--json",
        help="Print one JSON object per progress event, one a line, then the outcome as the "
        "last line (what 'status --json' prints), for scripts.",
    ),
]


def _json_event(event: dict[str, Any]) -> None:
    if not stdout_closed():
        with closed_pipe_ok():
            typer.echo(json.dumps(event, default=str))


def _line_event(event: dict[str, Any]) -> None:
    if not stdout_closed():
        with closed_pipe_ok():
            show_event(event)


def _caps_of(workspace: Path, context: dict[str, Any]) -> Callable[[], dict[str, Any] | None]:
    """Return a reader of the run's caps: None until its workspace says what they are."""
    from oldnew.budget.meter import Caps

    def caps() -> dict[str, Any] | None:
        ws = Workspace(workspace)
        if (ws.run_info() or {}).get("run_id") is None:
            return None
        return Caps.of(run_context(ws, context)).to_dict()

    return caps


def _finish(
    start: Callable[[EventSink | None], Coroutine[Any, Any, RunOutcome]],
    workspace: Path,
    *,
    json_out: bool = False,
    context: dict[str, Any] | None = None,
    streams: bool = True,
) -> None:
    """Run a command on a run to its stop, showing its progress, then print where it stands.

    Progress is a live display on a terminal, a line per event otherwise, JSON lines with
    ``--json``. SIGTERM stops the run as SIGINT does (exit 5: resumable); a closed stdout
    never stops it (its exit code is the run's).
    """
    sink: EventSink | None = None
    live: LiveDisplay | None = None
    if streams:
        if json_out:
            sink = _json_event
        elif console.is_terminal:
            live = LiveDisplay(
                console,
                workspace,
                line=lambda event: show_event(event, crop=True),
                caps=_caps_of(workspace, context or {}),
                title=f"oldnew {workspace}",
            )
            sink = live.on_event
        else:
            sink = _line_event
    try:
        if live is not None:
            with live:
                out = run_to_stop(start(sink))
        else:
            out = run_to_stop(start(sink))
    except OldnewError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(EXIT_USAGE) from None
    except (KeyboardInterrupt, Terminated) as exc:
        how = "stopped (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
        again = f"oldnew resume --workspace {shlex.quote(str(Path(workspace).resolve()))}"
        err.print(f"{how}; the run is resumable, every finished step is saved: continue with")
        err.print(f"  {again}", markup=False)
        raise typer.Exit(EXIT["running"]) from None
    with closed_pipe_ok():
        if json_out:
            outcome = out.to_dict()
            typer.echo(
                json.dumps(outcome, default=str) if streams else json.dumps(outcome, indent=2)
            )
        else:
            show_outcome(out)
    raise typer.Exit(0 if out.queued else EXIT.get(out.status, 1))


def _queued(workspace: Path | None, run: str | None, state: str | None) -> tuple[str, str] | None:
    """Return (URL, run id) of a run on workers the command is about; exit 2 on bad input."""
    try:
        return cluster_commands.queued_target(workspace, run, state)
    except OldnewError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(EXIT_USAGE) from None


@app.command()
def run(
    scope_file: Annotated[Path, typer.Argument(help="The scope: text or Markdown.")],
    workspace: WorkspaceOpt,
    model: ModelOpt = None,
    max_agents: AgentsOpt = None,
    approvals: ApprovalsOpt = None,
    yes: YesOpt = None,
    defaults: DefaultsOpt = None,
    notify: NotifyOpt = None,
    budget_tokens: TokensOpt = None,
    budget_cost: CostOpt = None,
    budget_task_tokens: TaskTokensOpt = None,
    budget_seconds: SecondsOpt = None,
    deps: DepsOpt = None,
    package_index: IndexOpt = None,
    npm_registry: RegistryOpt = None,
    install_timeout: InstallTimeoutOpt = None,
    max_packages: MaxPackagesOpt = None,
    max_install_mb: MaxInstallOpt = None,
    context_tokens: ContextTokensOpt = None,
    record: RecordOpt = None,
    with_paths: Annotated[
        list[Path] | None,
        typer.Option(
            "--with",
            help="A supporting file or folder (samples, data, documents) to start from: "
            "committed first, listed in the prompts. Repeat for more.",
        ),
    ] = None,
    state: StateOpt = None,
    queue: Annotated[
        bool,
        typer.Option(
            "--queue",
            help="Hand the run to workers (oldnew worker) and return: needs --state and --repo.",
        ),
    ] = False,
    repo: Annotated[
        str | None,
        typer.Option("--repo", help="With --queue: the central repository (empty) it builds in."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Start a run on SCOPE_FILE in a new or empty directory, or on a git repository.

    On an existing repository the run works on a branch of its own, oldnew/<run id>, from
    its HEAD, and never touches its checkout or uncommitted changes.
    """
    context = {
        "model": model,
        "max_agents": max_agents,
        "approvals": approvals,
        "yes": yes,
        "defaults": defaults,
        "notify": notify,
        **_budget(budget_tokens, budget_cost, budget_task_tokens, budget_seconds),
        **_deps(deps, package_index, npm_registry, install_timeout, max_packages, max_install_mb),
        "context_tokens": context_tokens,
        **_record(record),
    }
    if queue:
        cluster_commands.queue_run(
            scope_file,
            workspace,
            state=state,
            repo=repo,
            context=context,
            with_paths=with_paths,
        )
        return
    _finish(
        lambda sink: start_run(
            scope_file,
            workspace,
            context=context,
            on_event=sink,
            with_paths=with_paths,
            state=state,
        ),
        workspace,
        json_out=json_out,
        context=context,
    )


@app.command()
def resume(
    workspace: RunWorkspaceOpt = None,
    run: cluster_commands.RunOpt = None,
    model: ModelOpt = None,
    max_agents: AgentsOpt = None,
    approvals: ApprovalsOpt = None,
    yes: YesOpt = None,
    notify: NotifyOpt = None,
    budget_tokens: TokensOpt = None,
    budget_cost: CostOpt = None,
    budget_task_tokens: TaskTokensOpt = None,
    budget_seconds: SecondsOpt = None,
    deps: DepsOpt = None,
    package_index: IndexOpt = None,
    npm_registry: RegistryOpt = None,
    install_timeout: InstallTimeoutOpt = None,
    max_packages: MaxPackagesOpt = None,
    max_install_mb: MaxInstallOpt = None,
    context_tokens: ContextTokensOpt = None,
    record: RecordOpt = None,
    restart: Annotated[
        bool,
        typer.Option(
            "--restart",
            help="Start over from the scope on new checkpoints, when the run's are lost or "
            "damaged (scope, plan and tasks re-run; the commits on main stay).",
        ),
    ] = False,
    state: StateOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Continue a run after a crash, a kill, a pause or a budget stop, or retry blockers.

    Budget caps and dependency settings given here replace the run's and hold for later
    resumes (a reachable --package-index, say, before answering 'retry').
    """
    target = _queued(workspace, run, state)
    if target is not None:
        cluster_commands.resume_queued(target)
        return
    assert workspace is not None  # _queued refuses neither
    context = {
        "model": model,
        "max_agents": max_agents,
        "approvals": approvals,
        "yes": yes,
        "notify": notify,
        **_budget(budget_tokens, budget_cost, budget_task_tokens, budget_seconds),
        **_deps(deps, package_index, npm_registry, install_timeout, max_packages, max_install_mb),
        "context_tokens": context_tokens,
        **_record(record),
    }
    _finish(
        lambda sink: resume_run(
            workspace, context=context, on_event=sink, restart=restart, state=state
        ),
        workspace,
        json_out=json_out,
        context=context,
    )


@app.command()
def report(workspace: WorkspaceOpt) -> None:
    """Print the run's delivery report (on a repository: its branch, and how to merge it)."""
    try:
        ws = Workspace.open(workspace)
    except OldnewError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(EXIT_USAGE) from None
    path = ws.meta / "report.md"
    if not path.is_file():
        run_id = (ws.run_info() or {}).get("run_id")
        err.print(
            f"no report yet: run {run_id} has not been delivered; see 'oldnew status "
            f"--workspace {workspace}'"
        )
        raise typer.Exit(EXIT_USAGE)
    console.print(path.read_text(encoding="utf-8"), markup=False, highlight=False)


@app.command()
def status(
    workspace: RunWorkspaceOpt = None,
    run: cluster_commands.RunOpt = None,
    state: StateOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show the run's status, its tasks (on workers: which worker runs each) and questions."""
    target = _queued(workspace, run, state)
    if target is not None:
        cluster_commands.show_cluster_status(target[0], target[1], json_out)
        return
    assert workspace is not None
    _finish(
        lambda _: run_status(workspace, state=state), workspace, json_out=json_out, streams=False
    )


@app.command()
def answer(
    pairs: Annotated[
        list[str],
        typer.Argument(
            metavar="QUESTION_ID ANSWER [QUESTION_ID ANSWER ...]",
            help="Question ids (see status), each followed by an option's key or number, or text.",
        ),
    ],
    workspace: RunWorkspaceOpt = None,
    run: cluster_commands.RunOpt = None,
    model: ModelOpt = None,
    state: StateOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Answer pending questions; a paused run resumes at once, a busy one picks them up."""
    if len(pairs) % 2:
        err.print(
            "[red]error:[/red] give each question id followed by its answer, e.g. "
            "'oldnew answer -w DIR T3-q1 retry'"
        )
        raise typer.Exit(EXIT_USAGE)
    answers = dict(zip(pairs[::2], pairs[1::2], strict=True))
    target = _queued(workspace, run, state)
    if target is not None:
        cluster_commands.letter(target, answers)
        return
    assert workspace is not None
    _finish(
        lambda sink: answer_run(
            workspace, answers, context={"model": model}, on_event=sink, state=state
        ),
        workspace,
        json_out=json_out,
    )


@app.command()
def approve(
    workspace: RunWorkspaceOpt = None,
    run: cluster_commands.RunOpt = None,
    approval: Annotated[
        str | None,
        typer.Argument(
            help="The approval's question id or name (scope, design, mvp, final); default: "
            "the one waiting."
        ),
    ] = None,
    reject: Annotated[bool, typer.Option("--reject", help="Stop the run here.")] = False,
    changes: Annotated[
        str | None, typer.Option("--changes", help="Ask for these changes instead.")
    ] = None,
    model: ModelOpt = None,
    state: StateOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Give the approval the run waits for (or reject, or ask for changes)."""
    if reject and changes:
        err.print("[red]error:[/red] give --reject or --changes, not both")
        raise typer.Exit(EXIT_USAGE)
    verdict = "reject" if reject else (changes or "approve")
    target = _queued(workspace, run, state)
    if target is not None:
        cluster_commands.approve_queued(target, approval, verdict)
        return
    assert workspace is not None
    _finish(
        lambda sink: approve_gate(
            workspace, approval, verdict, context={"model": model}, on_event=sink, state=state
        ),
        workspace,
        json_out=json_out,
    )


@app.command()
def feedback(
    text: Annotated[
        str,
        typer.Argument(
            metavar="TEXT", help="A change, a bug report, a new feature or a clarification."
        ),
    ],
    workspace: RunWorkspaceOpt = None,
    run: cluster_commands.RunOpt = None,
    model: ModelOpt = None,
    max_agents: AgentsOpt = None,
    state: StateOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Give a run feedback, during or after it; only the work it opens runs, then it redelivers."""
    target = _queued(workspace, run, state)
    if target is not None:
        cluster_commands.letter(target, {}, text)
        return
    assert workspace is not None
    context = {"model": model, "max_agents": max_agents}
    _finish(
        lambda sink: submit_feedback(workspace, text, context=context, on_event=sink, state=state),
        workspace,
        json_out=json_out,
        context=context,
    )


@app.command()
def memory(
    workspace: Annotated[
        Path | None, typer.Option("--workspace", "-w", help="List this run's memory.")
    ] = None,
    global_: Annotated[
        bool, typer.Option("--global", help="List the knowledge base all runs share.")
    ] = False,
    remove: Annotated[str | None, typer.Option("--remove", help="Delete the entry KEY.")] = None,
    state: StateOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List what a run remembers, or the machine's knowledge base; remove entries."""
    if (workspace is None) == (not global_):
        err.print("[red]error:[/red] give either --workspace DIR or --global")
        raise typer.Exit(EXIT_USAGE)
    try:
        where = workspace if workspace is not None else Path(Context().memory_path).expanduser()
        with disk_faults(where if where.is_dir() else where.parent):
            listing = asyncio.run(
                memory_listing(None if global_ else workspace, remove=remove, state=state)
            )
    except OldnewError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(EXIT_USAGE) from None
    if json_out:
        typer.echo(json.dumps(listing, indent=2))
        return
    if listing["removed"]:
        console.print(f"removed {remove}")
    table = Table(title=f"memory at {listing['path']}")
    for col in ("key", "kind", "helped", "text"):
        table.add_column(col, overflow="fold")
    for row in listing["entries"]:
        table.add_row(row["key"], row["kind"], str(row.get("helped", "")), row["text"][:120])
    console.print(table)
    for problem in listing["problems"]:
        console.print(f"[yellow]note:[/yellow] {problem}")


@app.command("plan")
def plan_preview(
    scope_file: Annotated[Path, typer.Argument(help="The scope: text or Markdown.")],
    model: ModelOpt = None,
    max_agents: AgentsOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Preview the plan for SCOPE_FILE: class, score, phases, tasks, agents; writes no code."""
    from oldnew.hitl.questions import run_failure_question
    from oldnew.planning.preview import run_preview, show_preview

    async def progress(**event: Any) -> None:
        # on stderr, and not with --json: stdout holds the preview alone
        if not json_out:
            err.print(escape(event_line({"node": "planning", **event})), style="dim")

    settings = {"model": model, "max_agents": max_agents}
    try:
        preview = asyncio.run(run_preview(scope_file, settings, emit=progress))
    except OldnewError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(EXIT_USAGE) from None
    except ClassifiedFailure as exc:
        q = run_failure_question("plan", "Planning", exc)
        err.print(f"[red]error:[/red] {escape(q.title)}")
        err.print(q.detail, markup=False)
        spec = model or "OLDNEW_MODEL"
        err.print(f"check the model ({spec}), its API key and its endpoint, then try again")
        raise typer.Exit(EXIT_USAGE) from None
    if json_out:
        typer.echo(json.dumps(preview.to_dict(), indent=2))
    else:
        show_preview(preview, console)
    raise typer.Exit(0 if preview.plan and not preview.problems else EXIT["blocked"])


EXIT_VERIFY_MISMATCH = 6


def _gate_line(name: str, status: str) -> None:
    """Say on stderr that a gate of the re-run started or ended (stdout holds the verdict)."""
    err.print(f"gate {escape(name)}: {escape(status)}", style="dim")


@app.command()
def verify(
    workspace: WorkspaceOpt,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    fresh: Annotated[
        bool,
        typer.Option(
            "--fresh",
            help="Build the project's environment from its lock in a new, empty cache "
            "(fetching every package) instead of reusing one built from the same lock.",
        ),
    ] = False,
) -> None:
    """Re-run the quality gates on main and check the report's claims against them.

    The gates run in the environment main's lock describes (checked against its manifest,
    built from the lock), not in whatever this machine has installed.

    Exit 0 when the re-run confirms the report, 6 (with what differs) when it does not,
    2 when there is no run or no report.
    """
    from oldnew.deps.settings import DepSettings
    from oldnew.gates.verify import verify_workspace

    try:
        with disk_faults(workspace):
            ctx = Context()
            with tempfile.TemporaryDirectory(prefix="oldnew-verify-env-") as empty:
                deps = DepSettings.of(ctx)
                deps = replace(deps, cache=Path(empty)) if fresh else deps
                out = verify_workspace(
                    workspace,
                    timeout=ctx.test_timeout,
                    deps=deps,
                    on_gate=None if json_out else _gate_line,
                )
    except OldnewError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(EXIT_USAGE) from None
    if json_out:
        typer.echo(json.dumps(out.to_dict(), indent=2))
    else:
        for line in out.confirmed:
            console.print(f"[green]confirmed:[/green] {escape(line)}")
        for line in out.not_run:
            console.print(f"[yellow]not run, never counted as passed:[/yellow] {escape(line)}")
        for line in out.differences:
            console.print(f"[red]differs:[/red] {escape(line)}")
        verdict = "the report holds" if out.matches else "the report does not hold"
        console.print(f"\n{verdict}; evidence of this check: {out.evidence or '-'}")
    raise typer.Exit(0 if out.matches else EXIT_VERIFY_MISMATCH)


@app.command("preview")
def preview_app(
    workspace: WorkspaceOpt,
    port: Annotated[
        int,
        typer.Option(
            "--port", min=1, max=65535, help="Host port to serve on (the next free one if taken)."
        ),
    ] = 3000,
    stop: Annotated[bool, typer.Option("--stop", help="Stop the workspace's preview.")] = False,
    status_only: Annotated[
        bool, typer.Option("--status", help="Say whether a preview serves, and where.")
    ] = False,
) -> None:
    """Serve the delivered app (main's head) at http://localhost:PORT, from the sandbox.

    Returns once the page answers; the preview serves on in the background (a new one
    replaces it) until 'oldnew preview --workspace DIR --stop'. The app keeps no route to
    any other address: the host reaches it through a relay into the sandbox.
    """
    from oldnew.deps.envs import project_env
    from oldnew.deps.errors import DependencyError
    from oldnew.deps.settings import DepSettings
    from oldnew.sandbox import ProjectEnv
    from oldnew.web.preview import preview_failure, preview_status, start_preview, stop_preview
    from oldnew.web.start import AppFailure, NoStartCommand, declared_stack, find_start

    if stop and status_only:
        err.print("[red]error:[/red] give --stop or --status, not both")
        raise typer.Exit(EXIT_USAGE)
    try:
        ws = Workspace.open(workspace)
        if stop:
            was = stop_preview(ws.root)
            console.print("preview stopped" if was else "no preview was serving")
            return
        if status_only:
            serving = preview_status(ws.root)
            if serving is None:
                ended = preview_failure(ws.root)
                if ended is not None:
                    why = ended.render() if isinstance(ended, AppFailure) else str(ended)
                    console.print(f"the last preview ended: {escape(why)}")
                console.print(
                    f"no preview is serving: start one with 'oldnew preview -w {workspace}'"
                )
            else:
                console.print(
                    f"preview of {serving.commit[:12]} serving at {serving.url} "
                    f"(pid {serving.pid}, since {serving.started})"
                )
            return
        tree, commit = ws.root, ws.head()
        if find_start(tree) is None:
            raise NoStartCommand(declared_stack(tree))
        try:
            env = project_env(tree, DepSettings.of(Context()))
        except DependencyError as exc:
            first = exc.message.splitlines()[0]
            err.print(f"[yellow]note:[/yellow] {escape(first)}; served with oldnew's own Python")
            env = ProjectEnv.host(tree)
        with disk_faults(ws.root):
            served = start_preview(ws.root, tree=tree, commit=commit, port=port, env=env)
    except NoStartCommand as exc:
        err.print(f"[red]error:[/red] {escape(exc.message)}")
        raise typer.Exit(EXIT_USAGE) from None
    except AppFailure as exc:
        err.print(f"[red]the app did not come up ({exc.kind}):[/red] {escape(exc.render())}")
        raise typer.Exit(EXIT["blocked"]) from None
    except OldnewError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(EXIT_USAGE) from None
    note = f" (port {port} was taken)" if served.port != port else ""
    console.print(f"preview of {commit[:12]} serving at {served.url}{note}")
    console.print(f"stop it with 'oldnew preview --workspace {workspace} --stop'")


# -- oldnew eval: a suite of cases, each judged by its hidden acceptance tests ---------------


@app.command("eval")
def eval_suite(
    suite_dir: Annotated[
        Path,
        typer.Argument(
            help="The suite: one folder per case, each with scope.md, an acceptance/ folder "
            "of pytest tests hidden from the run, and optionally files/ (supporting files)."
        ),
    ],
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help="Model spec for every case: 'provider:model', or 'scripted:FILE' where a "
            "relative FILE is each case's own transcript ('scripted:transcript.toml' reads "
            "CASE/transcript.toml). Env: OLDNEW_MODEL.",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="New or empty folder for results.json, results.md and each case's "
            "workspace; default SUITE_DIR/results/<UTC timestamp>.",
        ),
    ] = None,
    quality: Annotated[
        str | None,
        typer.Option("--quality", help="Gate profile of the runs: strict, default, fast or smoke."),
    ] = None,
    budget_tokens: TokensOpt = None,
    budget_cost: CostOpt = None,
    deps: Annotated[
        str | None,
        typer.Option(
            "--deps", help="New packages: 'auto' (default here: nobody is asked) or 'off'."
        ),
    ] = None,
    package_index: IndexOpt = None,
    case_seconds: Annotated[
        float,
        typer.Option(
            "--case-seconds",
            min=0,
            help="Seconds of working time each case may take (its --budget-seconds; 0: no "
            "cap), so one runaway case cannot stall the suite; OLDNEW_BUDGET_SECONDS, when "
            "set, is used instead.",
        ),
    ] = 1800.0,
    acceptance: Annotated[
        str,
        typer.Option(
            "--acceptance",
            help="on: the tester writes an acceptance suite before the code (default); off: "
            "no suite; both: each case twice, with and without it, the hidden tests passed "
            "side by side.",
        ),
    ] = "on",
) -> None:
    """Run every case of SUITE_DIR and print how each went, judged by its hidden tests.

    Each case runs as 'oldnew run' would, in a fresh workspace, asking nobody: clarifications
    take their defaults, approvals are given, new packages approved, memory off. A case that
    stops for a question is reported blocked, with the question. Then its hidden acceptance
    tests run on the delivered tree, in the sandbox, in an environment built from its lock.
    The table (case, delivered or blocked, acceptance tests passed of total, fix rounds,
    tokens, cost, wall time, questions) is printed and written as results.json and
    results.md. Budget caps apply to each case; each is stopped after --case-seconds of work.
    With --acceptance both, each case runs with and without the tester's acceptance suite
    (in the output folder's with-suite/ and without-suite/), and a second table sets the
    hidden tests each side passed side by side, with the totals.

    Exit 0 when the suite ran, whatever its cases did (a case that fails or blocks is a
    result, not an error); 2 when it cannot run: no case, a case without scope.md or
    acceptance tests, a model spec that does not resolve, a bad setting.
    """
    from oldnew.eval import CAPTION, COLUMNS, cells, comparison, evaluate, totals
    from oldnew.eval.table import COMPARE_COLUMNS

    overrides = {
        "quality": quality,
        "budget_tokens": budget_tokens,
        "budget_cost": budget_cost,
        "deps": deps,
        "package_index": package_index,
    }
    try:
        result = asyncio.run(
            evaluate(
                suite_dir,
                model=model,
                out=out,
                overrides=overrides,
                progress=console.print,
                case_seconds=case_seconds,
                acceptance=acceptance,
            )
        )
    except OldnewError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(EXIT_USAGE) from None
    table = Table(title=f"oldnew eval {suite_dir}", caption=CAPTION)
    for col in COLUMNS:  # the result says what blocked a case: it wraps, the numbers do not
        table.add_column(
            col, no_wrap=col not in ("result", "tests"), min_width=9 if col == "result" else None
        )
    for row in result.rows:
        table.add_row(*(escape(c) for c in cells(row)))
    console.print(table)
    t = totals(result.rows)
    console.print(
        f"{t['delivered']} of {t['cases']} cases delivered; acceptance tests "
        f"{t['acceptance_passed']}/{t['acceptance_total']} passed; {result.seconds:.1f} s"
    )
    sides = comparison(result.rows)
    if sides:
        both = Table(title="hidden acceptance tests passed, with and without the suite")
        for col in COMPARE_COLUMNS:
            both.add_column(col, no_wrap=True)
        for row_cells in sides:
            both.add_row(*(escape(c) for c in row_cells))
        console.print(both)
    for path in result.files:
        console.print(f"written: {path}")


bench_app = typer.Typer(
    no_args_is_help=True, context_settings=HELP, help="Benchmarks of the whole graph."
)
app.add_typer(bench_app, name="bench")


@bench_app.command("faults")
def bench_faults(
    tasks: Annotated[int, typer.Option(min=1, help="Synthetic tasks in the plan.")] = 200,
    seed: Annotated[int, typer.Option(help="Seed of every injected fault.")] = 1,
    transient: Annotated[
        float, typer.Option(min=0, max=1, help="Rate of 429/timeout/5xx faults.")
    ] = 0.30,
    broken: Annotated[
        float, typer.Option(min=0, max=1, help="Rate of code with syntax errors.")
    ] = 0.20,
    malformed: Annotated[float, typer.Option(min=0, max=1, help="Rate of truncated output.")] = 0.0,
    config: Annotated[
        float, typer.Option(min=0, max=1, help="Share of tasks with a config blocker.")
    ] = 0.05,
    design: Annotated[
        float, typer.Option(min=0, max=1, help="Share of tasks with a design flaw.")
    ] = 0.03,
    max_agents: Annotated[int, typer.Option(min=1, help="Tasks run at once.")] = 8,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Run a synthetic plan through the graph under injected faults; print the figures."""
    from oldnew.bench.faults import run_fault_bench

    rates = {
        "rate_limit": transient / 3,
        "timeout": transient / 3,
        "server_error": transient / 3,
        "broken_code": broken,
        "malformed": malformed,
    }
    figures = asyncio.run(
        run_fault_bench(
            tasks=tasks,
            seed=seed,
            rates=rates,
            config_rate=config,
            design_rate=design,
            max_agents=max_agents,
        )
    )
    if json_out:
        typer.echo(json.dumps(figures))
    else:
        for key, value in figures.items():
            console.print(f"{key}: {value}")
    raise typer.Exit(1 if figures["crashes"] or figures["silent_failures"] else 0)


@bench_app.command("scale")
def bench_scale(
    tasks: Annotated[int, typer.Option(min=1, help="Synthetic tasks in the DAG.")] = 200,
    agents: Annotated[int, typer.Option(min=1, help="Tasks run at once (--max-agents).")] = 8,
    latency_median: Annotated[
        float, typer.Option(min=0, help="Median seconds of a model call (log-normal).")
    ] = 0.3,
    latency_sigma: Annotated[
        float, typer.Option(min=0, help="Sigma of the log-normal model latency.")
    ] = 0.5,
    gate_seconds: Annotated[
        float, typer.Option(min=0, help="Seconds one validation takes (simulated).")
    ] = 0.5,
    edges: Annotated[
        float, typer.Option(min=0, max=1, help="Share of possible edges in the DAG.")
    ] = 0.04,
    layers: Annotated[
        int | None, typer.Option(min=1, help="Layers of the DAG (default: sqrt of tasks).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the DAG and of every latency.")] = 1,
    gate_slots: Annotated[
        int, typer.Option(min=0, help="Validations at once; 0: two per agent (they take no CPU).")
    ] = 0,
    workdir: Annotated[
        Path | None, typer.Option(help="Keep the run's workspace in this folder.")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Run a synthetic DAG through the graph at simulated speed; print what the graph costs.

    The model sleeps a log-normal time per call and the gates sleep --gate-seconds (they
    check no code): the makespan against its lower bound, CPU, checkpoint bytes and memory
    per task, and the merge lock's share measure the graph itself. Progress goes to stderr.
    """
    from oldnew.bench.scale import FIGURES, run_scale_bench

    figures = asyncio.run(
        run_scale_bench(
            tasks=tasks,
            agents=agents,
            latency_median=latency_median,
            gate_seconds=gate_seconds,
            seed=seed,
            sigma=latency_sigma,
            edges=edges,
            layers=layers,
            gate_slots=gate_slots,
            workdir=workdir,
            progress=lambda line: err.print(line, markup=False, highlight=False),
        )
    )
    if json_out:
        typer.echo(json.dumps(figures))
    else:
        table = Table(title=f"bench scale: {tasks} tasks, {agents} agents, seed {seed}")
        table.add_column("figure")
        table.add_column("value", justify="right")
        for key, label in FIGURES.items():
            table.add_row(label, escape(str(figures.get(key))))
        console.print(table)
    raise typer.Exit(0 if figures["delivered"] == tasks else 1)


def _counts(value: str) -> list[int]:
    try:
        counts = [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise typer.BadParameter(f"{value!r}: give worker counts like 1,2,3")
    return counts


@bench_app.command("workers")
def bench_workers(
    workers: Annotated[
        str, typer.Option("--workers", help="Numbers of worker processes to run, e.g. 1,2,3.")
    ] = "1,2,3",
    tasks: Annotated[int, typer.Option(min=1, help="Synthetic tasks in the plan.")] = 30,
    gate_seconds: Annotated[
        float, typer.Option(min=0, help="Seconds one validation takes (a sleep).")
    ] = 2.0,
    latency: Annotated[float, typer.Option(min=0, help="Median seconds of a model call.")] = 0.05,
    concurrency: Annotated[int, typer.Option(min=1, help="Task steps per worker at once.")] = 1,
    state: Annotated[
        str | None,
        typer.Option(
            "--state",
            help="A PostgreSQL server to run on (its role must create databases); "
            "default: a private server in a temporary folder, stopped at the end.",
        ),
    ] = None,
    timeout: Annotated[
        float, typer.Option(min=1, help="Seconds one run may take before it is given up.")
    ] = 900.0,
    workdir: Annotated[
        Path | None,
        typer.Option(help="Keep the workers' folders, logs and central repository here."),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Spread one run's tasks over 1, 2, 3 worker processes; print makespan and speed-up.

    Each worker is a process with its own clone folder, as a machine of its own would be,
    on one PostgreSQL server (each count on an empty database) and one central repository.
    The plan's gates sleep --gate-seconds and its model --latency, so the gates dominate.
    Progress goes to stderr; the exit code is 1 unless every run delivered every task.
    """
    from oldnew.bench.workers import private_server, run_workers_bench
    from oldnew.cluster.state import redact, state_url

    counts = _counts(workers)

    def say(line: str) -> None:
        err.print(line, markup=False, highlight=False)

    try:
        url = state_url(state)
        with private_server(say) if url is None else nullcontext(url) as server_url:
            if url is not None:
                say(f"on the PostgreSQL server of {redact(url)}")
            figures = asyncio.run(
                run_workers_bench(
                    url=server_url,
                    counts=counts,
                    tasks=tasks,
                    gate_seconds=gate_seconds,
                    latency=latency,
                    concurrency=concurrency,
                    timeout=timeout,
                    progress=say,
                    workdir=workdir,
                )
            )
    except OldnewError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(EXIT_USAGE) from None
    figures["server"] = "private" if url is None else redact(url)
    if json_out:
        typer.echo(json.dumps(figures))
    else:
        _workers_table(figures)
    raise typer.Exit(0 if figures["delivered"] else 1)


def _workers_table(figures: dict[str, Any]) -> None:
    table = Table(
        title=f"bench workers: {figures['tasks']} tasks, gates {figures['gate_seconds']} s, "
        f"{figures['concurrency']} step(s) per worker",
        caption=f"speed-up over {figures['speedup_over']} worker(s); slot use: the share of "
        "the workers' step slots busy with steps",
    )
    for col in ("workers", "status", "tasks done", "makespan", "speed-up", "slot use"):
        table.add_column(col, justify="left" if col == "status" else "right")
    for row in figures["runs"]:
        table.add_row(
            str(row["workers"]),
            escape(row["status"] + (f" ({row['problem']})" if row["problem"] else "")),
            f"{row['tasks_done']}/{figures['tasks']}",
            f"{row['makespan_s']:.1f} s",
            "-" if row["speedup"] is None else f"{row['speedup']:.2f}x",
            f"{row['slot_use']:.0%}",
        )
    console.print(table)
    for row in figures["runs"]:
        for task in row["not_done"]:
            console.print(
                f"{row['workers']} worker(s): task {task['task_id']} {task['state']}"
                + (f": {escape(str(task['error']))}" if task.get("error") else "")
            )
        for name, tail in row["worker_logs"].items():
            console.print(f"{row['workers']} worker(s): {name} printed:\n{escape(tail)}")


def _reflow_help(*apps: typer.Typer) -> None:
    """Give each command its docstring as help with its paragraphs joined into lines.

    Typer keeps a docstring's line breaks, which break every line of ``--help`` twice on a
    terminal of another width; a paragraph reflowed to the terminal reads as written.
    """
    for each in apps:
        for info in each.registered_commands:
            doc = inspect.getdoc(info.callback) if info.help is None and info.callback else None
            if doc:
                info.help = "\n\n".join(" ".join(p.split()) for p in doc.split("\n\n"))


app.command("worker")(cluster_commands.worker)
app.command("workers")(cluster_commands.workers)
_reflow_help(app, bench_app)


def main() -> None:
    """Run the CLI, with the working directory's settings files (oldnew.settings)."""
    try:
        settings.load()
    except OldnewError as exc:
        if not _asks_for_help(sys.argv[1:]):
            err.print(f"[red]error:[/red] {escape(str(exc))}")
            raise SystemExit(EXIT_USAGE) from None
        # Help and the version read no setting: they still work, and say what to fix.
        err.print(f"[yellow]warning:[/yellow] {escape(str(exc))}")
    app()


def _asks_for_help(args: list[str]) -> bool:
    """Say whether the command line only asks for help or the version (or names nothing)."""
    return not args or any(a in ("-h", "--help", "--version") for a in args)
