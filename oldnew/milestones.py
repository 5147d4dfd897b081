"""Milestones: the points of a run where main is checked as a whole, tagged, and previewed.

A phased plan has one milestone per phase (``mvp``, ``enhanced``, ``polish``), each reached
when every task of that phase and of the phases before it is done. An unphased plan for a web
app has one, ``mvp``: the whole plan. Other plans have none (their delivery is the check).

At a milestone the ``milestone`` node runs the gates on main, for a web app with the milestone
set (the app started, browser tests, accessibility, Lighthouse, load). Passing, main is tagged
with the milestone's name and a web app's preview starts. Failing, the findings become a fix
task of that phase, validated with the same gate set (:func:`fix_task`); after
``milestone_fixes`` of those the milestone is reported failed and the run goes on.

While the MVP milestone is not settled, the later phases' tasks wait: their work builds on an
MVP that is known to run.

Every function here reads state; none writes anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from oldnew.schemas import PHASES, WEB_STACKS, Plan, PlannedTask

MilestoneStatus = Literal["fixing", "reached", "failed", "not_checked"]
SETTLED: frozenset[str] = frozenset({"reached", "failed", "not_checked"})
"""Statuses after which a milestone is not checked again (unless its tasks change)."""
MAX_FINDINGS = 25


def is_web(state: Mapping[str, Any]) -> bool:
    """Say whether the run builds a web app (the scope's stack is a web one)."""
    return (state.get("scope") or {}).get("stack") in WEB_STACKS


def milestones_of(plan: Plan, state: Mapping[str, Any]) -> list[tuple[str, list[str]]]:
    """Return each milestone of ``plan`` with the ids of the tasks it needs done, in order."""
    if plan.phases or any(t.phase for t in plan.tasks):
        out: list[tuple[str, list[str]]] = []
        needed: list[str] = []
        for phase in PHASES:
            ids = [t.id for t in plan.tasks if (t.phase or "mvp") == phase]
            if ids:
                needed = needed + ids
                out.append((phase, list(needed)))
        return out
    return [("mvp", [t.id for t in plan.tasks])] if is_web(state) and plan.tasks else []


def _record(state: Mapping[str, Any], name: str) -> dict[str, Any]:
    return dict((state.get("milestones") or {}).get(name) or {})


def due(state: Mapping[str, Any]) -> str | None:
    """Return the milestone to check now, or None.

    That is the first milestone whose tasks are all done and which is not settled for that
    set of tasks: never checked, its fix task just finished, or tasks added to it since.
    """
    if not state.get("plan"):
        return None
    plan = Plan.model_validate(state["plan"])
    tasks = state.get("tasks") or {}
    for name, ids in milestones_of(plan, state):
        if not all((tasks.get(t) or {}).get("status") == "done" for t in ids):
            return None  # a later milestone needs this one's tasks too
        record = _record(state, name)
        if record.get("status") not in SETTLED or sorted(record.get("tasks") or []) != sorted(ids):
            return name
    return None


def holds_later_phases(state: Mapping[str, Any], plan: Plan) -> bool:
    """Say whether the later phases' tasks wait: the MVP milestone is not settled yet."""
    names = [name for name, _ in milestones_of(plan, state)]
    if "mvp" not in names or len(names) < 2:
        return False
    return _record(state, "mvp").get("status") not in SETTLED


def fix_task(name: str, round_no: int, findings: list[str], files: list[str]) -> PlannedTask:
    """Return the task that fixes what milestone ``name``'s gates found on main."""
    shown = "\n".join(f"- {f}" for f in findings[:MAX_FINDINGS])
    more = len(findings) - MAX_FINDINGS
    if more > 0:
        shown += f"\n- ... and {more} more (see the milestone's evidence)"
    label = "MVP" if name == "mvp" else name
    return PlannedTask(
        id=f"{name}-fix{round_no}",
        title=f"Fix what the {label} milestone's gates found",
        description=(
            f"The {label} milestone's gates failed on main. Change the project so that every "
            f"finding below is gone; the task is validated with the same gates (for a web "
            f"app: the app started, its browser tests, accessibility, Lighthouse and load).\n"
            f"Findings:\n{shown}"
        ),
        role="frontend",
        files=files,
        phase=name,  # type: ignore[arg-type]
        milestone=name,  # type: ignore[arg-type]
    )


def preview_url(state: Mapping[str, Any]) -> str | None:
    """Return the URL of the newest preview a milestone started, if any."""
    urls = [
        r.get("preview")
        for r in (state.get("milestones") or {}).values()
        if isinstance(r, dict) and r.get("preview")
    ]
    return str(urls[-1]) if urls else None
