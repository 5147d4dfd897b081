"""Run every case of a suite as ``oldnew run`` would, then judge it by its hidden tests.

Each case runs in a fresh workspace of its own (``<out>/<case>/workspace``), through the same
Python API the CLI's ``run`` uses, set so that it never waits for a person: clarifications
take their proposed defaults, approvals are given (recorded as such), new packages are
approved, and cross-run memory is off, so a case learns nothing from the one before it. A run
that stops for a question is reported as blocked with that question; the questions it raised
are counted. Then the hidden acceptance tests run on whatever its branch holds.

A case runs with the tester's acceptance suite (``Context.acceptance``), without it, or both
ways (``SIDES``): run both ways, each side's cases are in a folder of their own
(``<out>/with-suite``, ``<out>/without-suite``), so the hidden tests measure what the suite
changes.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from oldnew.budget import ledger_of
from oldnew.context import Context
from oldnew.deps.settings import DepSettings
from oldnew.errors import OldnewError, UsageError
from oldnew.eval.acceptance import Acceptance, run_acceptance, suite_tests
from oldnew.eval.suite import Case
from oldnew.runs import RunOutcome, start_run
from oldnew.workspace import Workspace

DELIVERED = ("delivered", "delivered_with_limitations")
CASE_SECONDS = 1800.0
"""Seconds of working time a case may take by default (its ``budget_seconds``)."""
Progress = Callable[[str], None]
SIDES = {"on": (True,), "off": (False,), "both": (True, False)}
"""``--acceptance``: the acceptance settings each case runs with."""


def side_folder(suite: bool) -> str:
    """Return the folder a side's cases run in when a suite runs both ways."""
    return "with-suite" if suite else "without-suite"


@dataclass
class CaseResult:
    """One row of the table: how one case went."""

    case: str
    model: str | None
    status: str = "error"
    """The run's status (delivered, delivered_with_limitations, waiting, blocked, stopped,
    aborted, running), or ``error`` when the run could not go on at all."""
    blocker: str = ""
    """What stopped a case that was not delivered: its questions, blockers or error."""
    acceptance: Acceptance = field(default_factory=Acceptance)
    tasks: int = 0
    fix_rounds: int = 0
    tokens: int = 0
    cost_usd: float = 0.0
    seconds: float = 0.0
    """Wall time of the run (the acceptance tests' own time is in ``acceptance``)."""
    questions: int = 0
    """Questions the run raised for a person (none is answered here)."""
    defaults_taken: int = 0
    """Clarifications settled by their proposed default, asking nobody."""
    workspace: str = ""
    suite: bool = True
    """Whether the run had the tester's acceptance suite (``Context.acceptance``)."""

    @property
    def delivered(self) -> bool:
        """Whether the run delivered (with or without known limitations)."""
        return self.status in DELIVERED

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {**asdict(self), "delivered": self.delivered}


def case_context(
    model: str | None, overrides: dict[str, Any], case_seconds: float = CASE_SECONDS
) -> dict[str, Any]:
    """Return the settings a case runs with: nobody is waited for, nothing is remembered.

    ``case_seconds`` is the case's ``budget_seconds`` unless a budget of seconds is given (in
    ``overrides``, or by ``OLDNEW_BUDGET_SECONDS``): one runaway case cannot stall a suite.
    """
    given = overrides.get("budget_seconds") is not None or "OLDNEW_BUDGET_SECONDS" in os.environ
    return {
        **({} if given else {"budget_seconds": case_seconds}),
        **{k: v for k, v in overrides.items() if v is not None},
        "model": model,
        "defaults": "auto",
        "approvals": "",
        "yes": True,  # an approval switched on by OLDNEW_APPROVALS is given, not waited for
        "deps": overrides.get("deps") or "auto",
        "memory_path": "off",
        "notify": "",
    }


def _read_report(ws: Workspace) -> dict[str, Any]:
    path = ws.meta / "report.json"
    if not path.is_file():
        return {}
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _blocker(out: RunOutcome, report: dict[str, Any]) -> str:
    if out.status in DELIVERED:
        return ""
    said = [f"{q['id']}: {q['title']}" for q in out.questions]
    said += [f"{b['task']}: {b['reason']}" for b in report.get("blocked", [])]
    stop = (report.get("budget") or {}).get("stopped") or {}
    if stop.get("detail"):  # a cap, --case-seconds' among them
        said.append(f"budget: {stop['detail']}")
    if not said and report.get("stop_reason"):
        said.append(str(report["stop_reason"]))
    return "; ".join(said) or out.status


def _fill(row: CaseResult, out: RunOutcome, ws: Workspace) -> None:
    report = _read_report(ws)
    row.status = out.status
    row.blocker = _blocker(out, report)
    row.tasks = len(out.tasks)
    row.fix_rounds = sum(int(t.get("fix_rounds") or 0) for t in out.tasks)
    decisions = report.get("decisions", [])
    asked = {q["id"] for q in out.questions} | set(report.get("pending_questions", []))
    asked |= {d["question"] for d in decisions if d.get("decided_by") == "person"}
    row.questions = len(asked)
    row.defaults_taken = sum(1 for d in decisions if d.get("decided_by") == "default")


async def run_case(
    case: Case,
    model: str | None,
    out_dir: Path,
    overrides: dict[str, Any],
    progress: Progress,
    label: str = "",
    case_seconds: float = CASE_SECONDS,
) -> CaseResult:
    """Run one case in ``out_dir/<case>/workspace``, then its hidden tests on what it delivered.

    Whatever happened, the row counts every hidden test of the case and the spend the
    workspace's ledger holds (a run that failed part way spent too).
    """
    row = CaseResult(case=case.name, model=model)
    folder = out_dir / case.name
    workspace = folder / "workspace"
    row.workspace = str(workspace)
    context = case_context(model, overrides, case_seconds)
    row.suite = Context(**context).acceptance
    progress(f"{label}{case.name}: started (workspace {workspace})")
    start = time.monotonic()
    try:
        out = await start_run(case.scope, workspace, context=context, with_paths=case.supporting)
    except OldnewError as exc:
        row.blocker = f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # a bug in oldnew: one case's, reported in its row
        row.blocker = f"internal error {type(exc).__name__}: {exc}"
    else:
        _fill(row, out, Workspace.open(workspace))
    row.seconds = round(time.monotonic() - start, 2)
    if (workspace / ".oldnew").is_dir():
        spend = ledger_of(workspace).spend()
        row.tokens, row.cost_usd = int(spend["tokens"]), float(spend["cost_usd"])
    row.acceptance = _judge(case, workspace, Context(**context), folder)
    progress(f"{label}{case.name}: finished: {summary(row)}")
    return row


def _judge(case: Case, workspace: Path, ctx: Context, folder: Path) -> Acceptance:
    """Run the case's hidden tests on its workspace; every one counts, whatever happens."""
    if not (workspace / ".oldnew" / "run.json").is_file():
        why = "no workspace was made: nothing to test"
        return Acceptance(error=why, total=suite_tests(case.acceptance))
    try:
        return run_acceptance(
            Workspace.open(workspace),
            case.acceptance,
            deps=DepSettings.of(ctx),
            timeout=ctx.test_timeout,
            keep=folder,
        )
    except OldnewError as exc:  # the branch cannot be written out, say
        why = f"the tests could not run: {type(exc).__name__}: {exc}"
        return Acceptance(error=why, total=suite_tests(case.acceptance))


def summary(row: CaseResult) -> str:
    """Return one line on how a case went."""
    acc = row.acceptance
    tests = f"acceptance {acc.passed}/{acc.total}" + (f" ({acc.error})" if acc.error else "")
    head = row.status if not row.blocker else f"{row.status}: {row.blocker[:200]}"
    return f"{head}; {tests}; {row.fix_rounds} fix rounds; {row.seconds:.1f} s"


async def run_suite(
    cases: list[Case],
    models: dict[str, str | None],
    out_dir: Path,
    overrides: dict[str, Any],
    progress: Progress,
    case_seconds: float = CASE_SECONDS,
    sides: tuple[bool, ...] = (True,),
) -> list[CaseResult]:
    """Run the cases one after another (each run uses its own agents in parallel).

    ``sides`` are the acceptance settings (``SIDES``): each case runs once per side, with and
    then without the suite; more than one side puts each side's cases in its own folder.
    """
    for suite in sides:  # an explicit default gives way to the environment (Context)
        if Context(acceptance=suite).acceptance != suite:
            raise UsageError(
                f"OLDNEW_ACCEPTANCE={os.environ.get('OLDNEW_ACCEPTANCE')} is set and would "
                f"turn the suite {'off' if suite else 'on'} on the side asked "
                f"{'with' if suite else 'without'} it: unset it, and choose with --acceptance"
            )
    rows = []
    runs = [(case, suite) for case in cases for suite in sides]
    for n, (case, suite) in enumerate(runs, start=1):
        where = out_dir / side_folder(suite) if len(sides) > 1 else out_dir
        said = "" if len(sides) == 1 else "(with suite) " if suite else "(without suite) "
        label = f"[{n}/{len(runs)}] {said}"
        settings = {**overrides, "acceptance": suite}
        rows.append(
            await run_case(case, models[case.name], where, settings, progress, label, case_seconds)
        )
    return rows
