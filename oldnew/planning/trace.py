"""Traceability: requirement -> the tasks that serve it -> the tests that check it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

from oldnew.schemas import Plan, Scope


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


def traceability(
    scope: Scope,
    plan: Plan,
    statuses: Mapping[str, str] | None = None,
    written: Mapping[str, list[str]] | None = None,
) -> dict[str, dict[str, Any]]:
    """Return requirement id -> {kind, title, priority, tasks, tests, status}.

    ``tests`` holds the test files the serving tasks planned or wrote. ``status`` is
    ``delivered`` (every serving task done), ``partial``, ``planned`` or ``uncovered``.
    """
    statuses = statuses or {}
    written = written or {}
    out: dict[str, dict[str, Any]] = {}
    for kind, req in scope.requirements():
        tasks = [t for t in plan.tasks if req.id in t.requirement_ids]
        files = {f for t in tasks for f in [*t.files, *written.get(t.id, [])]}
        done = [t.id for t in tasks if statuses.get(t.id) == "done"]
        if not tasks:
            status = "uncovered"
        elif len(done) == len(tasks):
            status = "delivered"
        else:
            status = "partial" if done else "planned"
        out[req.id] = {
            "kind": kind,
            "title": req.title,
            "priority": req.priority,
            "tasks": [t.id for t in tasks],
            "tests": sorted(f for f in files if is_test_path(f)),
            "status": status,
        }
    return out


def run_traceability(values: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Return the traceability of a run's state: its scope, plan and task records.

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
    )
