"""Hierarchical planning for big scopes: epics first, then each epic's tasks, then the wiring.

No single model answer holds the whole plan: one call returns phases and epics, one call per
epic (in parallel) returns that epic's tasks, and one call returns only the dependencies between
tasks of different epics. Each answer is checked on its own and sent back with its problems.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from typing import TYPE_CHECKING

from oldnew.planning.checks import cycle_problem, shape_problems
from oldnew.planning.graphops import (
    add_dependency,
    find_cycle,
    rename,
    roots,
    serialize_shared_files,
    sinks,
)
from oldnew.planning.roles import normalize_role
from oldnew.prompts import render
from oldnew.schemas import (
    PHASES,
    Epic,
    EpicPlan,
    EpicTasks,
    Feature,
    Plan,
    PlannedTask,
    Scope,
    Wiring,
)

if TYPE_CHECKING:  # the planner calls into this module for phased plans
    from oldnew.planning.planner import Planner

_RANK = {name: i for i, name in enumerate(PHASES)}


def _epic_dep_problems(epics: list[Epic]) -> list[str]:
    ids = {e.id for e in epics}
    by_id = {e.id: e for e in epics}
    problems: list[str] = []
    for e in epics:
        for d in e.depends_on:
            if d == e.id:
                problems.append(f"epic {e.id} depends on itself")
            elif d not in ids:
                problems.append(f"epic {e.id} depends on {d}, which is not an epic")
            elif _RANK[by_id[d].phase] > _RANK[e.phase]:
                problems.append(
                    f"epic {e.id} ({e.phase}) depends on {d} ({by_id[d].phase}): "
                    "an epic must not wait for a later phase"
                )
    cycle = find_cycle({e.id: set(e.depends_on) for e in epics})
    if cycle:
        problems.append(f"the epics' dependencies form a cycle: {' -> '.join(cycle)}")
    return problems


def epic_problems(answer: EpicPlan, scope: Scope) -> list[str]:
    """Return everything wrong with the phases and epics of ``answer``."""
    problems: list[str] = []
    counts = Counter(e.id for e in answer.epics)
    problems += [f"epic id {e} is used by more than one epic" for e, n in counts.items() if n > 1]
    problems += [f"epic {e.id!r} has an empty id" for e in answer.epics if not e.id.strip()]
    problems += _epic_dep_problems(answer.epics)
    described = {p.name for p in answer.phases}
    used = {e.phase for e in answer.epics}
    problems += [f"phase {p} holds epics but is not described" for p in sorted(used - described)]
    problems += [
        f"phase {p.name} has no acceptance criteria"
        for p in answer.phases
        if p.name in used and not p.acceptance_criteria
    ]
    reqs = dict((r.id, (kind, r)) for kind, r in scope.requirements())
    holders: dict[str, list[str]] = {}
    for e in answer.epics:
        for r in e.requirement_ids:
            holders.setdefault(r, []).append(e.id)
    for r, epics in holders.items():
        if r not in reqs:
            problems.append(f"epic {epics[0]} holds {r}, which is not a requirement of the scope")
        elif len(epics) > 1:
            problems.append(f"requirement {r} is in epics {', '.join(epics)}; give it to one epic")
    epic_by_id = {e.id: e for e in answer.epics}
    phase_of = {r: epic_by_id[es[0]].phase for r, es in holders.items()}
    for rid, (kind, req) in reqs.items():
        if rid not in holders:
            problems.append(f"{kind} {rid} ({req.title}) is in no epic")
        elif req.priority == "must" and phase_of[rid] != "mvp":
            problems.append(
                f"must-have {kind} {rid} ({req.title}) is in a {phase_of[rid]} epic; "
                "must-haves belong to the MVP"
            )
    return problems


def adopt_epic_tasks(epic: Epic, tasks: list[PlannedTask]) -> list[PlannedTask]:
    """Prefix the tasks' ids with the epic's id and give them its phase and epic."""
    prefix = f"{epic.id}-"
    renames = {t.id: t.id if t.id.startswith(prefix) else prefix + t.id for t in tasks if t.id}
    return [
        t.model_copy(update={"phase": epic.phase, "epic": epic.id, "role": normalize_role(t.role)})
        for t in rename(tasks, renames)
    ]


def epic_task_problems(epic: Epic, tasks: list[PlannedTask], known: set[str]) -> list[str]:
    """Return what is wrong with one epic's tasks (``known``: the scope's requirement ids)."""
    sub = Plan(tasks=tasks)
    problems = shape_problems(sub)
    if any("which is not in the plan" in p for p in problems):
        problems.append(
            "depend only on tasks of this epic; dependencies on other epics are added afterwards"
        )
    cycle = cycle_problem(sub)
    problems += [cycle] if cycle else []
    served = {r for t in tasks for r in t.requirement_ids}
    problems += [
        f"task {t.id} serves {r}, which is not a requirement of the scope"
        for t in tasks
        for r in t.requirement_ids
        if r not in known
    ]
    problems += [
        f"requirement {r} of epic {epic.id} is served by no task"
        for r in epic.requirement_ids
        if r not in served
    ]
    return problems


def _epic_size(p: Planner, epic: Epic, total: int) -> tuple[int, int]:
    share = max(1, len(epic.requirement_ids)) / max(1, total)
    lo, hi = p.complexity.tasks
    low = max(1, round(lo * share))
    return low, max(low, round(hi * share))


async def _epics(p: Planner, problems: list[str]) -> EpicPlan:
    mid = sum(p.complexity.tasks) / 2
    n_epics = max(2, math.ceil(mid / 8))

    def check(answer: EpicPlan) -> tuple[EpicPlan, list[str]]:
        ordered = sorted(answer.epics, key=lambda e: _RANK[e.phase])
        return answer.model_copy(update={"epics": ordered}), epic_problems(answer, p.scope)

    return await p.until_valid(
        "epics",
        EpicPlan,
        render("epics_system", **p.prompt_vars),
        lambda found: render(
            "epics_user",
            **p.prompt_vars,
            epics=n_epics,
            problems=[*problems, *found],
            words=p.words(),
        ),
        check,
    )


async def _epic_tasks(p: Planner, plan: EpicPlan, epic: Epic) -> list[PlannedTask]:
    reqs: dict[str, tuple[str, Feature]] = {r.id: (k, r) for k, r in p.scope.requirements()}
    mine = [reqs[r] for r in epic.requirement_ids if r in reqs]
    total = sum(len(e.requirement_ids) for e in plan.epics)

    def check(answer: EpicTasks) -> tuple[list[PlannedTask], list[str]]:
        tasks = adopt_epic_tasks(epic, answer.tasks)
        return tasks, epic_task_problems(epic, tasks, set(reqs))

    return await p.until_valid(
        f"epic {epic.id}",
        EpicTasks,
        render("epic_tasks_system", **p.prompt_vars),
        lambda found: render(
            "epic_tasks_user",
            **p.prompt_vars,
            epic=epic,
            requirements=mine,
            others=[e for e in plan.epics if e.id != epic.id],
            epic_size=_epic_size(p, epic, total),
            problems=found,
            words=p.words(epic.requirement_ids),
        ),
        check,
    )


def _epic_after(plan: EpicPlan) -> dict[str, set[str]]:
    """Return epic id -> the epics that (transitively) come after it."""
    after: dict[str, set[str]] = {e.id: set() for e in plan.epics}
    changed = True
    while changed:
        changed = False
        for e in plan.epics:
            for d in e.depends_on:
                grown = after.get(d, set()) | {e.id} | after[e.id]
                if d in after and not grown <= after[d]:
                    after[d] |= grown
                    changed = True
    return after


def _wiring_problem(
    task: PlannedTask, dep: str, other: PlannedTask | None, after: dict[str, set[str]]
) -> str | None:
    if other is None:
        return f"task {task.id} depends on {dep}, which is not in the plan"
    if dep == task.id:
        return f"task {task.id} depends on itself"
    if _RANK[other.phase or "mvp"] > _RANK[task.phase or "mvp"]:
        return (
            f"task {task.id} ({task.phase}) depends on {dep} ({other.phase}): "
            "a phase must not wait for a later one"
        )
    if other.epic in after.get(task.epic or "", set()):
        return f"task {task.id} depends on {dep}, but epic {other.epic} comes after {task.epic}"
    return None


def apply_wiring(
    plan: EpicPlan, tasks: list[PlannedTask], wiring: Wiring
) -> tuple[list[PlannedTask], list[str]]:
    """Add the wiring's dependencies, then the epics' own where the wiring gave none."""
    out = [t.model_copy(deep=True) for t in tasks]
    by_id = {t.id: t for t in out}
    after = _epic_after(plan)
    problems: list[str] = []
    linked: set[tuple[str, str]] = set()
    for dep in wiring.dependencies:
        task = by_id.get(dep.task)
        if task is None:
            problems.append(f"task {dep.task} is not in the plan")
            continue
        for d in dep.depends_on:
            problem = _wiring_problem(task, d, by_id.get(d), after)
            if problem:
                problems.append(problem)
                continue
            add_dependency(task, d)
            linked.add((task.epic or "", by_id[d].epic or ""))
    for e in plan.epics:
        mine = [t for t in out if t.epic == e.id]
        for d in e.depends_on:
            if (e.id, d) in linked:
                continue
            last = sinks([t for t in out if t.epic == d])
            for tid in roots(mine):
                add_dependency(by_id[tid], *last)
    cycle = find_cycle({t.id: set(t.depends_on) for t in out})
    if cycle:
        problems.append(f"the dependencies form a cycle: {' -> '.join(cycle)}")
    return out, problems


async def _wire(p: Planner, plan: EpicPlan, tasks: list[PlannedTask]) -> list[PlannedTask]:
    return await p.until_valid(
        "wiring",
        Wiring,
        render("wiring_system", **p.prompt_vars),
        lambda found: render(
            "wiring_user", **p.prompt_vars, epics=plan.epics, tasks=tasks, problems=found
        ),
        lambda wiring: apply_wiring(plan, tasks, wiring),
    )


async def plan_in_phases(p: Planner, problems: list[str]) -> Plan:
    """Plan the scope epic by epic; return the wired plan with its phases and epics."""
    epic_plan = await _epics(p, problems)
    await p.ask.emit(
        event="epics",
        epics=[f"{e.id} ({e.phase}): {e.title}" for e in epic_plan.epics],
    )
    per_epic = await asyncio.gather(*(_epic_tasks(p, epic_plan, e) for e in epic_plan.epics))
    tasks = [t for chunk in per_epic for t in chunk]
    await p.ask.emit(event="epic_tasks", tasks=len(tasks), calls=len(per_epic))
    wired = await _wire(p, epic_plan, tasks)
    plan = Plan(tasks=wired, phases=epic_plan.phases, epics=epic_plan.epics)
    plan, serialized = serialize_shared_files(plan)
    if serialized:
        await p.ask.emit(event="serialized", count=len(serialized), examples=serialized[:10])
    return plan
