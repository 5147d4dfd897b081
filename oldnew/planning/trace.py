"""Traceability: requirement -> criteria -> acceptance tests -> tasks -> commits.

Derived from the run's state, never stored: it follows every change of the plan, of the
tasks' progress and of the acceptance suite's last check on main (``RunState.acceptance``,
shaped as :mod:`oldnew.acceptance` says).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

from oldnew.schemas import Feature, Plan, Scope

CRITERION_STATUSES = ("passed", "failing", "error", "not checked yet", "untestable", "no test")
"""A criterion's status: every test of it passed on the last check; one failed (the code's);
one could not run (the tester's); not checked yet; its requirement cannot be tested; no test
of the suite checks it."""


def is_test_path(path: str) -> bool:
    """Say whether ``path`` looks like a test file (tests/, test_*.py, *.test.ts, ...)."""
    p = PurePosixPath(path)
    name = p.name
    return (
        "tests" in p.parts[:-1]
        or "test" in p.parts[:-1]
        or name.startswith("test_")
        or name.endswith(("_test.py", ".test.ts", ".test.js", ".spec.ts", ".spec.js"))
    )


def _result(results: Mapping[str, str], file: str, name: str) -> str:
    """Return one test's result on the last check (a parametrized test: its worst case).

    A test of a ``Test`` class is reported as ``file::TestX::name``; the record names it by
    its function's name alone.
    """

    def same(key: str) -> bool:
        where, _, test = key.split("[", 1)[0].rpartition("::")
        return test == name and (where == file or where.startswith(f"{file}::"))

    found = [r for key, r in results.items() if same(key)]
    for worst in ("error", "failed", "not_run"):
        if worst in found:
            return worst
    return "passed" if found else "not_run"


def _criterion_status(results: list[str]) -> str:
    if not results:
        return "no test"
    if "failed" in results:
        return "failing"
    if "error" in results:
        return "error"
    return "passed" if all(r == "passed" for r in results) else "not checked yet"


def acceptance_of(req: Feature, record: Mapping[str, Any]) -> dict[str, Any]:
    """Return one requirement's criteria (with their status) and acceptance tests (with results).

    ``record`` is the run's acceptance record (``{}``: no suite yet). A requirement the scope
    marked untestable, or the suite's record did, has its criteria ``untestable``.
    """
    mine = (record.get("requirements") or {}).get(req.id) or {}
    results: Mapping[str, str] = record.get("results") or {}
    file = str(mine.get("file") or "")
    tests = [
        {"test": f"{file}::{name}", "criterion": cid, "result": _result(results, file, name)}
        for name, cid in (mine.get("tests") or {}).items()
    ]
    untestable = str(mine.get("untestable") or req.untestable)
    criteria = []
    for c in req.criteria:
        got = [t["result"] for t in tests if t["criterion"] == c.id]
        status = "untestable" if untestable and not got else _criterion_status(got)
        criteria.append(
            {
                "id": c.id,
                "given": c.given,
                "when": c.when,
                "then": c.then,
                "sentence": c.sentence(),
                "status": status,
            }
        )
    return {"criteria": criteria, "acceptance_tests": tests, "untestable": untestable}


def _status(tasks: int, done: int, tests: list[dict[str, Any]]) -> str:
    """Return a requirement's status: delivered only when its acceptance tests pass too."""
    if not tasks:
        return "uncovered"
    if done < tasks:
        return "partial" if done else "planned"
    results = {t["result"] for t in tests}
    if "failed" in results:
        return "acceptance failing"
    if "error" in results:
        return "acceptance error"
    if results - {"passed"}:
        return "acceptance not checked"
    return "delivered"


def traceability(
    scope: Scope,
    plan: Plan,
    statuses: Mapping[str, str] | None = None,
    written: Mapping[str, list[str]] | None = None,
    *,
    commits: Mapping[str, str] | None = None,
    acceptance: Mapping[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """Return requirement id -> {kind, title, priority, tasks, tests, status, ...}.

    ``tests`` holds the test files the serving tasks planned or wrote. ``status`` is
    ``delivered`` (every serving task done and, with an acceptance suite, every acceptance
    test of the requirement passed on the last check of main), ``acceptance failing`` (one
    failed), ``acceptance error`` (one could not run), ``acceptance not checked``,
    ``partial``, ``planned`` or ``uncovered``.

    With ``commits`` (task id -> its commit on main) each entry has ``commits``; with
    ``acceptance`` (the run's acceptance record, ``{}`` when there is none) each has
    ``criteria`` (id, given, when, then, sentence, status), ``acceptance_tests`` (test,
    criterion, result) and ``untestable`` (why, or "").
    """
    statuses = statuses or {}
    written = written or {}
    out: dict[str, dict[str, Any]] = {}
    for kind, req in scope.requirements():
        tasks = [t for t in plan.tasks if req.id in t.requirement_ids]
        files = {f for t in tasks for f in [*t.files, *written.get(t.id, [])]}
        done = [t.id for t in tasks if statuses.get(t.id) == "done"]
        extra = acceptance_of(req, acceptance) if acceptance is not None else {}
        out[req.id] = {
            "kind": kind,
            "title": req.title,
            "priority": req.priority,
            "tasks": [t.id for t in tasks],
            "tests": sorted(f for f in files if is_test_path(f)),
            "status": _status(len(tasks), len(done), extra.get("acceptance_tests", [])),
            **extra,
        }
        if commits is not None:
            out[req.id]["commits"] = [commits[t.id] for t in tasks if commits.get(t.id)]
    return out


def run_traceability(values: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Return the traceability of a run's state: its scope, plan, task records and suite.

    Derived, never stored: it follows every change of the plan and of the tasks' progress.
    """
    if not values.get("scope") or not values.get("plan"):
        return {}
    records = values.get("tasks") or {}
    return traceability(
        Scope.model_validate(values["scope"]),
        Plan.model_validate(values["plan"]),
        {tid: str(r.get("status")) for tid, r in records.items()},
        {tid: list(r.get("files") or []) for tid, r in records.items()},
        commits={tid: str(r["commit"]) for tid, r in records.items() if r.get("commit")},
        acceptance=dict(values.get("acceptance") or {}),
    )


def criteria_passing(trace: Mapping[str, Mapping[str, Any]]) -> tuple[int, int]:
    """Return (criteria passing, criteria that can be tested) over a traceability table."""
    testable = [
        c for t in trace.values() for c in t.get("criteria", []) if c["status"] != "untestable"
    ]
    return sum(c["status"] == "passed" for c in testable), len(testable)


def acceptance_line(values: Mapping[str, Any]) -> str:
    """Return one line on the run's acceptance suite for ``oldnew status`` ("": none yet).

    ``acceptance: 3 of 4 criteria passing on main (checked at abc123456789); failing: F2``.
    """
    record = values.get("acceptance") or {}
    if record.get("status") == "off":
        return "acceptance: off (no suite written for this run)"
    if record.get("status") != "written":
        return ""
    trace = run_traceability(values)
    passing, testable = criteria_passing(trace)
    checked = str(record.get("checked") or "")
    when = f"checked at {checked[:12]}" if checked else "not checked yet"
    line = f"acceptance: {passing} of {testable} criteria passing on main ({when})"
    failing = [rid for rid, t in trace.items() if t["status"].startswith("acceptance ")]
    return line + (f"; not passing: {', '.join(failing)}" if failing and checked else "")


NOT_ACCEPTED = ("acceptance failing", "acceptance error")


def unaccepted(trace: Mapping[str, Mapping[str, Any]]) -> dict[str, list[str]]:
    """Return requirement id -> its acceptance tests that did not pass on the last check.

    Only requirements whose tasks are all done: one still in progress is not judged yet.
    """
    return {
        rid: [x["test"] for x in t["acceptance_tests"] if x["result"] in ("failed", "error")]
        for rid, t in trace.items()
        if t["status"] in NOT_ACCEPTED
    }
