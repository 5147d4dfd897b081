"""The usage ledger: every model call's tokens and cost, appended to ``.oldnew/usage.jsonl``.

One JSON object a line, written when the call ends, so spend survives a crash and a restart
and every process that reads the file sees the same numbers. Sums per task, activity (what a
call served: scope, plan, replan, code, fix), role and model are made on read. Lines written by
older versions name the activity ``phase``; they are read the same.

Working time is kept here too. Work happens in spans (one per run of an outer graph node:
scope, plan, execute); every call notes how long its span has run so far, and a span notes its
length when it ends. A span cut short by a kill keeps the length its last call noted. Time
between spans (a pause for a person, no process at all) never counts.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from oldnew.errors import ConfigurationError

USAGE_FILE = "usage.jsonl"
_PRICE_HELP = "write 'model=INPUT/OUTPUT' in USD per 1M tokens, e.g. 'gpt-4o=2.5/10'"


@dataclass(frozen=True)
class Price:
    """USD per one million input and output tokens."""

    input: float
    output: float

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        """Return the USD cost of a call with these token counts."""
        return (input_tokens * self.input + output_tokens * self.output) / 1_000_000


def parse_prices(text: str) -> dict[str, Price]:
    """Read a price table ``"gpt-4o=2.5/10,gpt-4o-mini=0.15/0.6"``; raise on a bad entry."""
    table: dict[str, Price] = {}
    for item in (p.strip() for p in text.split(",")):
        if not item:
            continue
        name, eq, rates = item.partition("=")
        inp, slash, out = rates.partition("/")
        try:
            if not (eq and slash and name.strip()):
                raise ValueError(item)
            price = Price(float(inp), float(out))
        except ValueError:
            raise ConfigurationError(f"bad price {item!r} in prices: {_PRICE_HELP}") from None
        if price.input < 0 or price.output < 0:
            raise ConfigurationError(f"negative price {item!r} in prices: {_PRICE_HELP}")
        table[name.strip()] = price
    return table


def price_for(model: str, table: dict[str, Price]) -> Price | None:
    """Return the price of ``model``, or None when the table does not know it.

    A name matches itself, and a dated or versioned release of itself ("gpt-4o" prices
    "gpt-4o-2024-08-06", not "gpt-4o-mini" nor "o3" "o3-pro"); a provider prefix
    ("openai/gpt-4o", as OpenRouter names models) is ignored. Nothing else is guessed.
    """
    for name in dict.fromkeys((model, model.rsplit("/", 1)[-1])):
        if name in table:
            return table[name]
        versions = [
            k for k in table if name.startswith(k + "-") and name[len(k) + 1 : len(k) + 2].isdigit()
        ]
        if versions:
            return table[max(versions, key=len)]
    return None


def activity_of(call: dict[str, Any]) -> str | None:
    """Return what a recorded call served (``phase`` in lines older versions wrote)."""
    activity = call.get("activity", call.get("phase"))
    return None if activity is None else str(activity)


class Ledger:
    """The calls of one run, from its usage file, with running totals for cap checks.

    Thread-safe. The file is re-read from where this process last stopped reading whenever it
    grew (or re-read whole when it was replaced), so a ledger is never stale.
    """

    def __init__(self, path: Path) -> None:
        """Read the usage file at ``path`` (it need not exist yet)."""
        self.path = path
        self._lock = threading.Lock()
        self._open: dict[str, float] = {}
        self._reset()

    def _reset(self) -> None:
        self._offset = 0
        self._inode: int | None = None
        self.calls: list[dict[str, Any]] = []
        self.tokens = 0
        self.cost = 0.0
        self.task_tokens: Counter[str] = Counter()
        self._span_s: dict[str, float] = {}

    # -- reading ------------------------------------------------------------------------

    def _take(self, record: dict[str, Any]) -> None:
        span = record.get("span")
        if span:
            self._span_s[span] = max(self._span_s.get(span, 0.0), float(record.get("span_s", 0)))
        if record.get("kind") != "call":
            return
        self.calls.append(record)
        tokens = int(record.get("input_tokens", 0)) + int(record.get("output_tokens", 0))
        self.tokens += tokens
        self.cost += float(record.get("cost_usd") or 0.0)
        if record.get("task"):
            self.task_tokens[str(record["task"])] += tokens

    def _refresh(self) -> None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            if self._inode is not None:
                self._reset()
            return
        if st.st_ino != self._inode or st.st_size < self._offset:
            self._reset()
            self._inode = st.st_ino
        if st.st_size == self._offset:
            return
        with open(self.path, "rb") as fh:
            fh.seek(self._offset)
            data = fh.read()
        end = data.rfind(b"\n") + 1  # a torn last line (a kill mid-write) waits, then is skipped
        for line in data[:end].splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                self._take(record)
        self._offset += end

    # -- writing ------------------------------------------------------------------------

    def _append(self, record: dict[str, Any]) -> None:
        with self._lock:
            self._refresh()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            line = json.dumps(record, default=str) + "\n"
            with open(self.path, "ab") as fh:
                if fh.tell() > self._offset:
                    line = "\n" + line  # end a torn line first, so this one parses
                fh.write(line.encode())
            self._refresh()

    def mark(self) -> int:
        """Return how many calls the ledger holds now (for :meth:`calls_since`)."""
        with self._lock:
            self._refresh()
            return len(self.calls)

    def calls_since(self, mark: int, task: str) -> list[dict[str, Any]]:
        """Return the calls of ``task`` recorded since :meth:`mark` returned ``mark``."""
        with self._lock:
            self._refresh()
            return [c for c in self.calls[mark:] if c.get("task") == task]

    def add_calls(self, calls: list[dict[str, Any]]) -> None:
        """Append calls another machine recorded (a worker's step of one of the run's tasks).

        A call the ledger holds already (the step ran on this very machine) is not added again.
        """
        with self._lock:
            self._refresh()
            known = {_call_key(c) for c in self.calls}
        for call in calls:
            if _call_key(call) not in known:
                self._append({**call, "kind": "call"})

    def text(self) -> str:
        """Return the usage file's text (what another machine continues the run's spend from)."""
        try:
            return self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return ""

    def take_over(self, text: str) -> None:
        """Go on from ``text``, the run's ledger as its last holder left it.

        The file becomes ``text``, plus the calls only this machine's file had (steps a
        worker ran here): none is lost, none counted twice.
        """
        if not text:
            return
        with self._lock:
            self._refresh()
            mine = list(self.calls)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
            tmp.replace(self.path)
            self._refresh()
        self.add_calls(mine)

    def _span_now(self) -> tuple[str | None, float]:
        if not self._open:
            return None, 0.0
        span, started = next(reversed(self._open.items()))
        return span, time.monotonic() - started

    def record_call(
        self,
        *,
        role: str,
        activity: str,
        task: str | None,
        model: str,
        input_tokens: int,
        output_tokens: int,
        price: Price | None,
        usage_reported: bool = True,
    ) -> dict[str, Any]:
        """Append one model call and return its record (cost None when the model is unpriced)."""
        span, span_s = self._span_now()
        record = {
            "kind": "call",
            "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "role": role,
            "activity": activity,
            "task": task,
            "model": model,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cost_usd": None if price is None else price.cost(input_tokens, output_tokens),
            "usage_reported": usage_reported,
            "span": span,
            "span_s": round(span_s, 3),
        }
        self._append(record)
        return record

    def open_span(self) -> str:
        """Start a span of working time; return its id."""
        span = uuid.uuid4().hex[:12]
        with self._lock:
            self._open[span] = time.monotonic()
        return span

    def close_span(self, span: str) -> None:
        """End a span and record its length."""
        with self._lock:
            started = self._open.pop(span, None)
        if started is not None:
            self._append({"kind": "span", "span": span, "span_s": time.monotonic() - started})

    # -- sums ---------------------------------------------------------------------------

    def work_seconds(self) -> float:
        """Return the working time of the run so far, open spans of this process included."""
        with self._lock:
            self._refresh()
            now = time.monotonic()
            spans = dict(self._span_s)
            for span, started in self._open.items():
                spans[span] = max(spans.get(span, 0.0), now - started)
        return sum(spans.values())

    def totals(self) -> tuple[int, float, Counter[str]]:
        """Return (run tokens, run USD, tokens per task), fresh from the file."""
        with self._lock:
            self._refresh()
            return self.tokens, self.cost, Counter(self.task_tokens)

    def spend(self) -> dict[str, Any]:
        """Return the run's spend: totals, and sums per activity, role, model and task.

        ``by_phase`` repeats ``by_activity`` under its former name, for readers of older output.
        """
        with self._lock:
            self._refresh()
            calls = list(self.calls)
        groups: dict[str, dict[str, dict[str, Any]]] = {
            "by_activity": {},
            "by_role": {},
            "by_model": {},
            "by_task": {},
        }
        for c in calls:
            for group, key in (
                ("by_activity", activity_of(c)),
                ("by_role", c.get("role")),
                ("by_model", c.get("model")),
                ("by_task", c.get("task")),
            ):
                if key is None:
                    continue
                row = groups[group].setdefault(
                    str(key), {"calls": 0, "input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0}
                )
                row["calls"] += 1
                row["input_tokens"] += int(c.get("input_tokens", 0))
                row["output_tokens"] += int(c.get("output_tokens", 0))
                row["cost_usd"] += float(c.get("cost_usd") or 0.0)
        for rows in groups.values():
            for row in rows.values():
                row["tokens"] = row["input_tokens"] + row["output_tokens"]
                row["cost_usd"] = round(row["cost_usd"], 6)
        return {
            "calls": len(calls),
            "input_tokens": sum(int(c.get("input_tokens", 0)) for c in calls),
            "output_tokens": sum(int(c.get("output_tokens", 0)) for c in calls),
            "tokens": sum(
                int(c.get("input_tokens", 0)) + int(c.get("output_tokens", 0)) for c in calls
            ),
            "cost_usd": round(sum(float(c.get("cost_usd") or 0.0) for c in calls), 6),
            "unpriced_models": sorted({str(c["model"]) for c in calls if c["cost_usd"] is None}),
            "calls_without_usage": sum(1 for c in calls if not c.get("usage_reported", True)),
            "work_seconds": round(self.work_seconds(), 3),
            **groups,
            "by_phase": groups["by_activity"],
        }


def _call_key(call: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(call.get(k) for k in ("ts", "task", "role", "input_tokens", "output_tokens"))


_LEDGERS: dict[Path, Ledger] = {}
_LEDGERS_LOCK = threading.Lock()


def ledger_at(meta: Path) -> Ledger:
    """Return the ledger of the run whose metadata directory is ``meta`` (one per process)."""
    path = (meta / USAGE_FILE).resolve()
    with _LEDGERS_LOCK:
        ledger = _LEDGERS.get(path)
        if ledger is None:
            ledger = _LEDGERS[path] = Ledger(path)
    return ledger
