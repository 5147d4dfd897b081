"""Changing an accepted plan: split a task that proved too big, re-plan after a design flaw.

Finished work is never touched: a finished task keeps its id (so its commit and its thread are
found again) and stays in the plan. A task whose thread exists but is replaced is renamed, so
its replacement gets a fresh thread instead of inheriting the old one's state.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from oldnew.errors import BudgetExceeded
from oldnew.planning.checks import cycle_problem, shape_problems
from oldnew.planning.graphops import rename, replace_tasks
from oldnew.planning.planner import Planner, PlanningFailed
from oldnew.planning.roles import normalize_role, normalize_roles
from oldnew.prompts import render
from oldnew.schemas import Plan, PlannedTask, Split

SPLIT_MIN, SPLIT_MAX = 3, 5


def adopt_subtasks(task: PlannedTask, subtasks: list[PlannedTask]) -> list[PlannedTask]:
    """Name the pieces ``<task>.1``, ``<task>.2``, ... and give them the task's phase and epic."""
    renames = {s.id: f"{task.id}.{i}" for i, s in enumerate(subtasks, start=1) if s.id}
    named = rename(subtasks, renames)
    return [
        s.model_copy(
            update={
                "id": f"{task.id}.{i}",
                "phase": task.phase,
                "epic": task.epic,
                "role": normalize_role(s.role or task.role),
            }
        )
        for i, s in enumerate(named, start=1)
    ]


def split_problems(task: PlannedTask, subtasks: list[PlannedTask], plan: Plan) -> list[str]:
    """Return what is wrong with a split of ``task`` (before it is put into ``plan``)."""
    problems: list[str] = []
    if not SPLIT_MIN <= len(subtasks) <= SPLIT_MAX:
        problems.append(f"the split has {len(subtasks)} subtasks; give {SPLIT_MIN} to {SPLIT_MAX}")
    others = {t.id for t in plan.tasks if t.id != task.id}
    problems += shape_problems(Plan(tasks=subtasks), known=others)
    problems += [
        f"subtask {s.id} depends on {task.id}, the task being split"
        for s in subtasks
        if task.id in s.depends_on
    ]
    cycle = cycle_problem(Plan(tasks=subtasks))
    problems += [cycle] if cycle else []
    served = {r for s in subtasks for r in s.requirement_ids}
    problems += [
        f"requirement {r} of {task.id} is served by no subtask"
        for r in task.requirement_ids
        if r not in served
    ]
    return problems


async def split_task(p: Planner, plan: Plan, task: PlannedTask, reason: str) -> Plan:
    """Return ``plan`` with ``task`` split into 3 to 5 subtasks and its dependents rewired.

    Raises:
        PlanningFailed: the split, or the plan with it, stayed invalid.
        ModelOutputError: the model's answer never parsed.

    """
    before = [t for t in plan.tasks if t.id in task.depends_on]
    after = [t for t in plan.tasks if task.id in t.depends_on]

    def check(answer: Split) -> tuple[Plan, list[str]]:
        subtasks = adopt_subtasks(task, answer.subtasks)
        problems = split_problems(task, subtasks, plan)
        if problems:
            return plan, problems
        changed = replace_tasks(plan, {task.id}, subtasks, inherit_deps=True)
        return changed, p.check(changed, sized=False)

    return await p.until_valid(
        f"split of {task.id}",
        Split,
        render("split_system", **p.prompt_vars),
        lambda found: render(
            "split_user",
            **p.prompt_vars,
            task=task,
            reason=reason,
            before=before,
            after=after,
            problems=found,
            words=p.words(task.requirement_ids),
        ),
        check,
    )


@dataclass
class Shortened:
    """What plan-time splitting of long tasks did."""

    plan: Plan
    split: dict[str, list[str]] = field(default_factory=dict)
    """Task id -> the ids of its pieces."""
    kept: dict[str, str] = field(default_factory=dict)
    """Task id -> why it stayed whole."""


async def split_long_tasks(p: Planner, plan: Plan) -> Shortened:
    """Split every task whose description is longer than the run allows, in parallel.

    A task whose split fails stays as it is (and the reason is kept): a long description is a
    hint that a task is too big, not an error.
    """
    limit = p.ask.ctx.max_task_description
    long = [t for t in plan.tasks if len(t.description) > limit]
    out = Shortened(plan)
    if not long:
        return out
    reason = f"its description is longer than {limit} characters"
    base = {t.id for t in plan.tasks}
    results = await asyncio.gather(
        *(split_task(p, plan, t, reason) for t in long), return_exceptions=True
    )
    for task, result in zip(long, results, strict=True):
        if isinstance(result, BaseException):
            if not isinstance(result, Exception) or isinstance(result, BudgetExceeded):
                raise result
            out.kept[task.id] = f"{type(result).__name__}: {result}"
            continue
        pieces = [t for t in result.tasks if t.id not in base]
        candidate = replace_tasks(out.plan, {task.id}, pieces, inherit_deps=True)
        problems = p.check(candidate, sized=False)
        if problems:
            out.kept[task.id] = "; ".join(problems[:3])
            continue
        out.plan = candidate
        out.split[task.id] = [t.id for t in pieces]
    return out


@dataclass(frozen=True)
class Replanned:
    """A re-plan: the new plan, what it removed, and ids it had to rename."""

    plan: Plan
    removed: set[str]
    renamed: dict[str, str]


def replan_scope(plan: Plan, flawed: set[str], open_ids: set[str], done: set[str]) -> set[str]:
    """Return the tasks a re-plan replaces: the flawed ones and the open (not started) ones.

    In a phased plan only the flawed tasks' epics are re-planned; the other epics stay.
    """
    epics = {t.epic for t in plan.tasks if t.id in flawed and t.epic}
    return {
        t.id
        for t in plan.tasks
        if t.id not in done
        and (t.id in flawed or (t.id in open_ids and (not epics or t.epic in epics)))
    }


async def replan(
    p: Planner,
    plan: Plan,
    flaws: list[dict[str, str]],
    statuses: dict[str, str],
    open_ids: set[str],
    replans: int,
) -> Replanned:
    """Re-plan the open work around a design flaw; finished and running tasks stay.

    ``statuses`` maps task ids to their status; ``open_ids`` are the tasks not started yet.
    A replacement that reuses the id of a task that had started is renamed
    ``<id>-r<replans>`` (``replans`` counts the run's re-plans, this one included).

    Raises:
        PlanningFailed: the re-plan stayed invalid.
        ModelOutputError: the model's answer never parsed.

    """
    done = {tid for tid, s in statuses.items() if s == "done"}
    flawed = {f["task"] for f in flaws}
    removed = replan_scope(plan, flawed, open_ids, done)
    if not removed:
        raise PlanningFailed([f"no open task is left to re-plan for {', '.join(sorted(flawed))}"])
    kept = [t for t in plan.tasks if t.id not in removed]
    kept_ids = {t.id for t in kept}
    started = removed - open_ids
    flawed_task = next(t for t in plan.tasks if t.id in removed)
    renamed: dict[str, str] = {}

    def check(answer: Plan) -> tuple[Plan, list[str]]:
        new = [t for t in normalize_roles(answer).tasks if t.id not in kept_ids]
        renamed.clear()
        renamed.update({t.id: f"{t.id}-r{replans}" for t in new if t.id in started})
        new = [
            t.model_copy(
                update={
                    "phase": t.phase or flawed_task.phase,
                    "epic": t.epic or flawed_task.epic,
                }
            )
            for t in rename(new, renamed)
        ]
        if not new:
            return plan, ["the re-plan returned no task to replace the open work"]
        changed = replace_tasks(plan, removed, new, inherit_deps=False)
        return changed, p.check(changed, sized=False)

    result = await p.until_valid(
        "re-plan",
        Plan,
        render("plan_system", **p.prompt_vars),
        lambda found: render(
            "replan_user",
            **p.prompt_vars,
            flaws=flaws,
            kept=kept,
            statuses=statuses,
            replaced=[t for t in plan.tasks if t.id in removed],
            problems=found,
        ),
        check,
    )
    return Replanned(result, removed, dict(renamed))
