"""Feedback into the plan: triage a person's feedback and change the plan it concerns.

Finished work is never undone. A change request gives each affected finished task a revision
task (``T2-r1``: a new id, so a new task thread) that builds on the code already on main; the
finished task stays done and is marked superseded. A bug report adds a fix task that carries
the report as its failing evidence and must add a test that reproduces it (``regression_test``:
the regression gate runs that test on the code before the fix, where it must fail); a feature
adds the planner's new tasks (and requirements); a clarification changes no task. A task not
started yet takes a change into its description.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from oldnew.milestones import fix_role
from oldnew.planning.checks import plan_problems
from oldnew.planning.graphops import add_dependency, ancestors, rename
from oldnew.planning.planner import Planner
from oldnew.planning.roles import normalize_roles
from oldnew.prompts import render
from oldnew.schemas import FeedbackTriage, Plan, PlannedTask, Scope


@dataclass
class Applied:
    """A feedback item applied to the plan (nothing is written until the node returns it)."""

    triage: FeedbackTriage
    plan: Plan
    scope: Scope
    opened: list[str] = field(default_factory=list)
    """New task ids, in plan order."""
    superseded: dict[str, str] = field(default_factory=dict)
    """Finished task -> the revision task that supersedes it."""
    amended: list[str] = field(default_factory=list)
    """Tasks not started yet whose description took the change."""
    notes: list[str] = field(default_factory=list)
    """Parts of the feedback that could not be applied, and why."""


@dataclass(frozen=True)
class RunView:
    """What the triage needs to know of the run besides the plan."""

    statuses: Mapping[str, str]
    """Task id -> status (pending means not started)."""
    superseded_by: Mapping[str, str]
    """Finished task -> its revision task."""
    used_ids: frozenset[str]
    """Every task id the run has used (a reused id would find an old task thread)."""
    commits: Mapping[str, str | None] = field(default_factory=dict)
    """Task id -> the commit that delivered it."""


def latest(tid: str, view: RunView) -> str:
    """Return the newest revision of ``tid`` (``tid`` itself when it was never revised)."""
    seen = {tid}
    while tid in view.superseded_by and view.superseded_by[tid] not in seen:
        tid = view.superseded_by[tid]
        seen.add(tid)
    return tid


def _origin(tid: str, view: RunView) -> str:
    back = {new: old for old, new in view.superseded_by.items()}
    while tid in back:
        tid = back[tid]
    return tid


def fresh_id(base: str, used: set[str], suffix: str) -> str:
    """Return ``<base>-<suffix>1`` (or 2, 3, ...), the first that no task has used."""
    n = 1
    while f"{base}-{suffix}{n}" in used:
        n += 1
    return f"{base}-{suffix}{n}"


def _place_after(plan: Plan, new: PlannedTask, targets: list[str], view: RunView) -> None:
    """Order ``new`` after ``targets`` and their finished dependents; hold back unstarted ones.

    The new task builds on code already on main: it waits for its targets (done or not) and
    for every finished task that depends on them, so the plan's ordering of shared files
    holds. Tasks not started yet that depend on a target wait for the new task instead.
    """
    anc = ancestors(plan.tasks)
    add_dependency(new, *targets)
    for t in plan.tasks:
        if not set(targets) & anc[t.id] or t.id == new.id:
            continue
        status = view.statuses.get(t.id, "pending")
        if status == "done":
            add_dependency(new, t.id)
        elif status == "pending":
            add_dependency(t, new.id)


def _revision(task: PlannedTask, rid: str, triage: FeedbackTriage, fid: str) -> PlannedTask:
    change = triage.change or triage.summary
    return task.model_copy(
        update={
            "id": rid,
            "title": f"{task.title} (revised: {triage.summary})"[:200],
            "description": render(
                "feedback_revision", task=task, change=change, feedback_id=fid
            ).strip(),
            "depends_on": [],
            # A revision changes what was asked for: it fixes no reported bug.
            "regression_test": False,
        },
        deep=True,
    )


def _change_request(out: Applied, triage: FeedbackTriage, fid: str, view: RunView) -> None:
    used = set(view.used_ids)
    by_id = {t.id: t for t in out.plan.tasks}
    for tid in dict.fromkeys(latest(t, view) for t in triage.affected_tasks):
        status = view.statuses.get(tid, "pending")
        task = by_id[tid]
        if status == "pending":
            change = triage.change or triage.summary
            task.description += f"\n\nChange requested in feedback {fid}: {change}"
            out.amended.append(tid)
        elif status == "done":
            rid = fresh_id(_origin(tid, view), used, "r")
            used.add(rid)
            revision = _revision(task, rid, triage, fid)
            _place_after(out.plan, revision, [tid], view)
            out.plan.tasks.append(revision)
            out.opened.append(rid)
            out.superseded[tid] = rid
        else:
            out.notes.append(
                f"task {tid} is {status}: the change was not applied to it; resolve it "
                "first, then send the change again"
            )


def _bug_report(out: Applied, item_text: str, fid: str, view: RunView) -> None:
    triage = out.triage
    by_id = {t.id: t for t in out.plan.tasks}
    targets = [
        tid
        for tid in dict.fromkeys(latest(t, view) for t in triage.affected_tasks)
        if view.statuses.get(tid) != "blocked"
    ]
    files = list(dict.fromkeys(f for tid in targets for f in by_id[tid].files))
    reqs = list(dict.fromkeys(r for tid in targets for r in by_id[tid].requirement_ids))
    fix = PlannedTask(
        id=fresh_id(fid, set(view.used_ids), "fix"),
        title=f"Fix: {triage.summary}"[:200],
        description=render(
            "feedback_bug", report=item_text, change=triage.change, feedback_id=fid
        ).strip(),
        role=fix_role([by_id[t] for t in targets], files, "backend"),
        files=files,
        requirement_ids=reqs,
        phase=next((by_id[t].phase for t in targets if by_id[t].phase), None),
        regression_test=True,
    )
    _place_after(out.plan, fix, targets, view)
    out.plan.tasks.append(fix)
    out.opened.append(fix.id)


def _feature(out: Applied, fid: str, view: RunView) -> None:
    triage = out.triage
    known = {r.id for _, r in out.scope.requirements()}
    out.scope = out.scope.model_copy(
        update={"features": [*out.scope.features, *(f for f in triage.features)]}, deep=True
    )
    used = set(view.used_ids)
    renames: dict[str, str] = {}
    for t in triage.tasks:
        if t.id in used:
            name = f"{fid}-{t.id}"
            renames[t.id] = fresh_id(name, used, "v") if name in used else name
        used.add(renames.get(t.id, t.id))
    new = normalize_roles(Plan(tasks=rename(triage.tasks, renames))).tasks
    own = {t.id for t in triage.tasks}
    for t in new:
        # A dependency on a revised task means its newest revision.
        t.depends_on = [d if d in own else latest(d, view) for d in t.depends_on]
    out.plan.tasks.extend(new)
    out.opened += [t.id for t in new]
    clash = sorted({f.id for f in triage.features} & known)
    out.notes += [f"requirement id {r} is already in the scope" for r in clash]


def triage_problems(triage: FeedbackTriage, plan: Plan) -> list[str]:
    """Return what is wrong with a triage before it is applied (unknown tasks, missing parts)."""
    ids = {t.id for t in plan.tasks}
    problems = [
        f"affected task {t} is not in the plan" for t in triage.affected_tasks if t not in ids
    ]
    if triage.kind == "change_request" and not triage.affected_tasks:
        problems.append("a change request must name the tasks whose work has to change")
    if triage.kind == "feature" and not triage.tasks:
        problems.append("a feature must come with the new tasks that build it")
    if triage.kind != "feature" and (triage.tasks or triage.features):
        problems.append(f"only a feature adds tasks or requirements, not a {triage.kind}")
    return problems


def apply_triage(
    triage: FeedbackTriage, plan: Plan, scope: Scope, item_text: str, fid: str, view: RunView
) -> tuple[Applied, list[str]]:
    """Apply ``triage`` to a copy of the plan; return it and the problems it brought in.

    Only problems the plan did not have before count (a run's plan may already carry some
    that were accepted earlier).
    """
    out = Applied(triage, plan.model_copy(deep=True), scope)
    problems = triage_problems(triage, plan)
    if problems:
        return out, problems
    if triage.kind == "change_request":
        _change_request(out, triage, fid, view)
    elif triage.kind == "bug_report":
        _bug_report(out, item_text, fid, view)
    elif triage.kind == "feature":
        _feature(out, fid, view)
    if out.notes and triage.kind == "feature":
        return out, out.notes
    before = set(plan_problems(plan, scope))
    return out, [p for p in plan_problems(out.plan, out.scope) if p not in before]


async def triage_feedback(
    p: Planner, plan: Plan, item_id: str, item_text: str, view: RunView
) -> Applied:
    """Ask the planner what the feedback is, apply it to the plan, and check the result.

    Raises:
        PlanningFailed: the triage or the plan with it stayed invalid.
        ModelOutputError: the model's answer never parsed.
        ClassifiedFailure: the model call failed in a way retrying did not cure.

    """
    statuses = {
        t.id: (
            f"done, superseded by {view.superseded_by[t.id]}"
            if t.id in view.superseded_by
            else view.statuses.get(t.id, "pending")
        )
        for t in plan.tasks
    }

    def check(answer: FeedbackTriage) -> tuple[Applied, list[str]]:
        return apply_triage(answer, plan, p.scope, item_text, item_id, view)

    def user(problems: list[str]) -> str:
        return render(
            "feedback_user",
            **p.prompt_vars,
            tasks=plan.tasks,
            statuses=statuses,
            feedback_id=item_id,
            feedback=item_text,
            problems=problems,
        )

    return await p.until_valid(
        f"feedback {item_id}",
        FeedbackTriage,
        render("feedback_system", **p.prompt_vars),
        user,
        check,
    )


def run_view(state: Mapping[str, Any]) -> RunView:
    """Return the run's task statuses, revisions and used ids from its state."""
    tasks = state.get("tasks") or {}
    plan_ids = {t["id"] for t in (state.get("plan") or {}).get("tasks", [])}
    split = state.get("split_from") or {}
    return RunView(
        statuses={tid: str(r.get("status", "pending")) for tid, r in tasks.items()},
        superseded_by={
            tid: r["superseded_by"] for tid, r in tasks.items() if r.get("superseded_by")
        },
        used_ids=frozenset({*tasks, *plan_ids, *split, *split.values()}),
        commits={tid: r.get("commit") for tid, r in tasks.items()},
    )
