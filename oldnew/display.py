"""The live display of a run in a terminal: its state, read from events, and its rendering.

:class:`RunView` is the state (tasks and their current node, done/total, active agents,
elapsed time, an ETA, spend against the caps, the preview URL, pending questions), built
from the run's progress events alone, so it is tested with events, not with a terminal.
:func:`render` draws it; :class:`LiveDisplay` keeps it on screen with rich's ``Live``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from oldnew.budget.ledger import Ledger, ledger_at
from oldnew.workspace import META, Workspace

_SETTLED = {"task_done": "done", "task_waiting": "waiting", "task_blocked": "blocked"}
"""Execute events that end a task's turn, and the status each leaves it in."""
_NEXT = {
    ("code", "wrote"): "validate",
    ("fix", "wrote"): "validate",
    ("dependencies", "installed"): "validate",
    ("validate", "passed"): "commit",
    ("validate", "failed"): "fix",
}
"""A node's closing event -> the node the task is in next (nodes say when they end)."""


@dataclass
class TaskRow:
    """One task as the display shows it."""

    id: str
    node: str = "-"
    """The node it is in now (code, validate, fix, commit, waiting, done, ...)."""
    status: str = "pending"
    """pending, running, waiting, done or blocked."""
    started: float | None = None
    """When its current turn started (None: not running)."""
    seconds: float = 0.0
    """Time it has run, over its finished turns (a wait for a person is not counted)."""


@dataclass
class RunView:
    """Where a run stands, from its events: what the live display shows."""

    started: float | None = None
    now: float = 0.0
    phase: str = ""
    """The run's step now (scope, plan, acceptance, execute, deliver, ...)."""
    tasks: dict[str, TaskRow] = field(default_factory=dict)
    durations: list[float] = field(default_factory=list)
    """Seconds each finished task took."""
    peak: int = 0
    """Most tasks seen running at once (the ETA's parallelism)."""
    questions: dict[str, str] = field(default_factory=dict)
    """Pending question id -> the task it holds up ("" for the run's own)."""
    preview: str | None = None
    tokens: int = 0
    cost: float = 0.0
    work_seconds: float = 0.0
    """Working time the budget counts (a wait for a person is not counted)."""
    caps: dict[str, Any] = field(default_factory=dict)
    """The budget's caps (``Caps.to_dict``: tokens, cost, seconds; 0 is no cap)."""
    last: str = ""
    """The last event, as a short line."""
    agents: str = ""
    """How many agents work now and why (the scheduler's last ``agents`` event)."""

    def take(self, event: dict[str, Any]) -> None:
        """Fold one progress event into the view (its ``ts`` when it has one, else now)."""
        now = _when(event)
        self.started = self.started if self.started is not None else now
        self.now = max(self.now, now)
        node, what, tid = str(event.get("node", "")), str(event.get("event", "")), event.get("task")
        if event.get("preview"):
            self.preview = str(event["preview"])
        if what == "finished":
            return
        self.last = f"{tid + ' ' if tid else ''}{node}: {what}"
        if not tid:
            if what == "agents":
                self.agents = f"{event.get('agents')} ({event.get('reason', '')})"
            self.phase = node or self.phase
            if node == "plan" and what == "done" and isinstance(event.get("tasks"), list):
                for planned in event["tasks"]:
                    self.tasks.setdefault(str(planned), TaskRow(str(planned)))
            if what == "escalated" and event.get("question"):
                self.questions[str(event["question"])] = ""
            return
        self.phase = "execute"  # a task's events come while the run executes its tasks
        self._take_task(self.tasks.setdefault(str(tid), TaskRow(str(tid))), node, what, now, event)
        self.peak = max(self.peak, self.active)

    def _take_task(
        self, row: TaskRow, node: str, what: str, now: float, event: dict[str, Any]
    ) -> None:
        if node != "execute":
            row.node = _NEXT.get((node, what), node)
            row.status = "running" if row.status == "pending" else row.status
            if what == "escalated" and event.get("question"):
                self.questions[str(event["question"])] = row.id
            return
        if what == "task_started":
            row.node, row.status, row.started = "starting", "running", now
            self.questions = {q: t for q, t in self.questions.items() if t != row.id}
        elif what in _SETTLED or what == "task_failed":
            if row.started is not None:
                row.seconds += now - row.started
                row.started = None
            row.status = _SETTLED.get(what, "blocked")
            row.node = row.status
            if row.status == "done":
                self.durations.append(row.seconds)
        else:
            row.node = what

    @property
    def total(self) -> int:
        """Tasks in the plan (those seen so far before a plan is known)."""
        return len(self.tasks)

    @property
    def done(self) -> int:
        """Tasks done."""
        return sum(r.status == "done" for r in self.tasks.values())

    @property
    def active(self) -> int:
        """Tasks running now (agents at work)."""
        return sum(r.status == "running" for r in self.tasks.values())

    @property
    def elapsed(self) -> float:
        """Seconds since the first event."""
        return max(0.0, self.now - self.started) if self.started is not None else 0.0

    def eta(self) -> float | None:
        """Seconds the remaining tasks should take, from the durations so far (None: no data).

        The mean duration of a finished task, times the tasks pending or running (less what
        the running ones have done), spread over the most agents seen at once.
        """
        left = sum(r.status in ("pending", "running") for r in self.tasks.values())
        if not self.durations or not left and self.questions:
            return None  # nothing to go by, or what is left waits for a person
        if not left:
            return 0.0
        mean = sum(self.durations) / len(self.durations)
        ran = sum(self.now - r.started for r in self.tasks.values() if r.started is not None)
        return max(0.0, (mean * left - ran) / max(1, min(self.peak, left)))

    def spend(self, spend: dict[str, Any], caps: dict[str, Any] | None = None) -> None:
        """Set the run's spend so far (``Ledger.spend``), and its caps when known."""
        self.tokens, self.cost = int(spend["tokens"]), float(spend["cost_usd"])
        self.work_seconds = float(spend.get("work_seconds", 0.0))
        if caps is not None:
            self.caps = caps


def seen(view: RunView, events: Iterable[Any]) -> None:
    """Fold the events a run logged before this command into ``view`` (a resumed run's tasks).

    A run that goes on (``resume``, ``answer``, ...) does not announce its plan again: its
    log does (``Workspace.events``).
    """
    for event in events:
        if isinstance(event, dict):
            view.take(event)
    view.last = ""


def _when(event: dict[str, Any]) -> float:
    ts = event.get("ts")
    if isinstance(ts, str):
        try:
            return datetime.fromisoformat(ts).timestamp()
        except ValueError:
            pass
    return time.time()


def clock(seconds: float | None) -> str:
    """Return seconds as m:ss (h:mm:ss past an hour), or '-' for None."""
    if seconds is None:
        return "-"
    s = round(seconds)
    h, rest = divmod(s, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def _against(spent: str, cap: float, limit: str) -> str:
    return f"{spent} of {limit}" if cap else f"{spent} (no cap)"


def render(view: RunView, title: str = "oldnew") -> RenderableType:
    """Draw the view: a status line, spend against caps, preview, questions, the tasks."""
    head = Text.from_markup(
        f"[bold]{escape(title)}[/bold]  {escape(view.phase or 'starting')}  "
        f"elapsed {clock(view.elapsed)}  tasks {view.done}/{view.total} done, "
        f"{view.active} active  ETA {clock(view.eta())}"
    )
    caps = view.caps
    spend = Text(
        "tokens "
        + _against(f"{view.tokens:,}", caps.get("tokens", 0), f"{caps.get('tokens', 0):,}")
        + "  cost "
        + _against(f"${view.cost:.4f}", caps.get("cost", 0), f"${caps.get('cost', 0):.4f}")
        + "  working time "
        + _against(clock(view.work_seconds), caps.get("seconds", 0), clock(caps.get("seconds")))
    )
    parts: list[RenderableType] = [head, spend]
    if view.agents:
        parts.append(Text(f"agents {view.agents}"))
    if view.preview:
        parts.append(Text.from_markup(f"[bold]preview:[/bold] {escape(view.preview)}"))
    for qid, tid in view.questions.items():
        held = f" (holds up {tid})" if tid else ""
        parts.append(Text.from_markup(f"[yellow]question {escape(qid)}[/yellow]{escape(held)}"))
    if view.tasks:
        table = Table(expand=False)
        for col in ("task", "node", "status", "time"):
            table.add_column(col, overflow="fold")
        for row in view.tasks.values():
            ran = row.seconds + (view.now - row.started if row.started is not None else 0.0)
            table.add_row(row.id, row.node, row.status, clock(ran) if ran else "")
        parts.append(table)
    if view.last:
        parts.append(Text(f"last: {view.last}", style="dim", overflow="fold"))
    return Group(*parts)


class LiveDisplay:
    """Keep a run's view on a terminal while it runs, with each event's line above it.

    ``caps`` returns the run's budget caps once they can be read (the workspace may not
    exist yet when a run starts), or None until then.
    """

    def __init__(
        self,
        console: Console,
        workspace: Path,
        *,
        line: Callable[[dict[str, Any]], None],
        caps: Callable[[], dict[str, Any] | None],
        title: str = "oldnew",
    ) -> None:
        """Prepare the display of the run in ``workspace`` on ``console``."""
        self.view = RunView()
        seen(self.view, Workspace(workspace).events())
        self._line, self._caps, self._title = line, caps, title
        self._lock = threading.Lock()
        self._ledger: Ledger = ledger_at(Path(workspace) / META)
        self._read = 0.0
        self._live = Live(
            console=console,
            get_renderable=self._render,
            refresh_per_second=4,
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
        )

    def __enter__(self) -> LiveDisplay:
        """Start drawing."""
        self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop drawing (the view leaves the screen: the outcome is printed next)."""
        self._live.stop()

    def on_event(self, event: dict[str, Any]) -> None:
        """Take one event into the view and print its line above the display."""
        with self._lock:
            self.view.take(event)
        self._line(event)
        self._live.refresh()  # at once, not at the next tick: a pause can follow an event

    def _render(self) -> RenderableType:
        with self._lock:
            if time.monotonic() - self._read >= 1.0:
                self._read = time.monotonic()
                try:
                    self.view.spend(self._ledger.spend(), None if self.view.caps else self._caps())
                except Exception:  # noqa: BLE001 - the display never stops the run
                    pass
            self.view.now = max(self.view.now, time.time())
            return render(self.view, self._title)
