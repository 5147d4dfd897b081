"""``oldnew eval``: run a suite of cases and measure how often the product delivers.

A case is a scope, optional supporting files and hidden acceptance tests (see
:mod:`oldnew.eval.suite`); each runs as ``oldnew run`` would, in a fresh workspace, and its
hidden tests then judge what it delivered (:mod:`oldnew.eval.acceptance`). The table says,
per case, whether it delivered or what blocked it, the acceptance tests passed of total, fix
rounds, tokens, cost, wall time and questions raised (:mod:`oldnew.eval.table`). Run with
``acceptance="both"``, each case runs with and without the tester's acceptance suite and the
table sets the hidden tests each side passed side by side.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from oldnew.context import Context
from oldnew.errors import SuiteError, UsageError
from oldnew.eval.runner import (
    CASE_SECONDS,
    SIDES,
    CaseResult,
    Progress,
    case_context,
    run_suite,
)
from oldnew.eval.suite import Case, check_models, load_suite
from oldnew.eval.table import CAPTION, COLUMNS, cells, comparison, totals, write_results

__all__ = [
    "CAPTION",
    "CASE_SECONDS",
    "COLUMNS",
    "Case",
    "CaseResult",
    "Evaluation",
    "cells",
    "comparison",
    "evaluate",
    "load_suite",
    "totals",
]


@dataclass(frozen=True)
class Evaluation:
    """What one ``oldnew eval`` did: its rows, where they were written, how long it took."""

    rows: list[CaseResult]
    out_dir: Path
    files: list[Path]
    """results.json and results.md."""
    seconds: float


def default_out(suite: Path) -> Path:
    """Return ``SUITE/results/<UTC timestamp>``, the default output folder."""
    return suite / "results" / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


async def evaluate(
    suite: Path | str,
    *,
    model: str | None,
    out: Path | str | None = None,
    overrides: dict[str, Any] | None = None,
    progress: Progress = lambda line: None,
    case_seconds: float = CASE_SECONDS,
    acceptance: str = "on",
) -> Evaluation:
    """Run every case of ``suite``; write ``results.json`` and ``results.md`` to the output.

    ``overrides`` are run settings (quality, budgets, deps, ...) every case runs with.
    ``case_seconds`` caps each case's working time (its ``budget_seconds``, 0: no cap) unless
    ``overrides`` or ``OLDNEW_BUDGET_SECONDS`` give a budget of seconds. ``acceptance`` is
    ``on`` (the tester writes an acceptance suite), ``off`` or ``both`` (each case twice).

    Raises:
        SuiteError: the suite has no case, or a case lacks its scope or acceptance tests.
        ConfigurationError: a case's model spec does not resolve.
        UsageError: a setting is out of range, or ``acceptance`` is not on, off or both.

    """
    if acceptance not in SIDES:
        raise UsageError(f"--acceptance must be on, off or both, not {acceptance!r}")
    start, started = time.monotonic(), datetime.now(UTC).isoformat(timespec="seconds")
    root = Path(suite)
    cases = load_suite(root)
    models = check_models(model, cases)
    settings = dict(overrides or {})
    Context(**case_context(model, settings, case_seconds))  # a bad one fails before any case
    out_dir = Path(out) if out is not None else default_out(root)
    if out_dir.exists() and not out_dir.is_dir():
        raise SuiteError(
            f"output path {out_dir} is not a folder: give --out a new or empty folder for "
            "the results and the cases' workspaces"
        )
    if out_dir.exists() and any(out_dir.iterdir()):
        raise SuiteError(
            f"output folder {out_dir} is not empty: give a new --out (an evaluation never "
            "writes over an earlier one's workspaces or results)"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    progress(f"{len(cases)} cases from {root}; results in {out_dir}")
    rows = await run_suite(
        cases, models, out_dir.resolve(), settings, progress, case_seconds, SIDES[acceptance]
    )
    seconds = round(time.monotonic() - start, 2)
    meta = {
        "suite": str(root),
        "model": model,
        "settings": settings,
        "case_seconds": case_seconds,
        "acceptance": acceptance,
        "started": started,
        "seconds": seconds,
    }
    files = write_results(rows, out_dir, meta)
    return Evaluation(rows, out_dir, files, seconds)
