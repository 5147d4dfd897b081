"""Plan validation: every reason a plan cannot be executed as it stands, each named precisely.

The messages go back to the planner verbatim, so each says which task, which id, which file.
"""

from __future__ import annotations

import re
from collections import Counter

from oldnew.errors import PathViolation
from oldnew.planning.complexity import Complexity
from oldnew.planning.graphops import ancestors, find_cycle
from oldnew.schemas import PHASES, Plan, Scope
from oldnew.workspace import check_relative_path

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,39}")


def shape_problems(plan: Plan, known: set[str] | None = None) -> list[str]:
    """Duplicate, empty or malformed ids and titles; unknown dependencies; unsafe paths.

    ``known`` adds ids a task may depend on that are not in ``plan`` (finished tasks, say).
    """
    problems: list[str] = []
    counts = Counter(t.id for t in plan.tasks)
    problems += [f"task id {t} is used by more than one task" for t, n in counts.items() if n > 1]
    ids = set(counts) | (known or set())
    for t in plan.tasks:
        if not t.id.strip() or not t.title.strip():
            problems.append(f"task {t.id!r} has an empty id or title")
        elif not _ID.fullmatch(t.id):
            problems.append(
                f"task id {t.id!r} may hold only letters, digits, '.', '_' and '-' (40 at most)"
            )
        for dep in t.depends_on:
            if dep == t.id:
                problems.append(f"task {t.id} depends on itself")
            elif dep not in ids:
                problems.append(f"task {t.id} depends on {dep}, which is not in the plan")
        for path in t.files:
            try:
                check_relative_path(path)
            except PathViolation as exc:
                problems.append(f"task {t.id}: {exc}")
    return problems


def cycle_problem(plan: Plan) -> str | None:
    """Name a dependency cycle, or return None when the plan has none."""
    cycle = find_cycle({t.id: set(t.depends_on) for t in plan.tasks})
    return f"the dependencies form a cycle: {' -> '.join(cycle)}" if cycle else None


def coverage_problems(plan: Plan, scope: Scope) -> list[str]:
    """Name requirements no task serves, and requirement ids the scope does not have."""
    reqs = scope.requirements()
    known = {r.id for _, r in reqs}
    covered = {r for t in plan.tasks for r in t.requirement_ids}
    problems = [
        f"task {t.id} serves {r}, which is not a requirement of the scope"
        for t in plan.tasks
        for r in t.requirement_ids
        if r not in known
    ]
    return problems + [
        f"{kind} {r.id} ({r.title}) is served by no task" for kind, r in reqs if r.id not in covered
    ]


def phase_problems(plan: Plan, scope: Scope) -> list[str]:
    """Name phase problems: tasks without one, waits on later phases, must-haves after the MVP."""
    phased = [t for t in plan.tasks if t.phase]
    if not plan.phases and not phased:
        return []
    problems: list[str] = []
    if plan.phases and "mvp" not in {p.name for p in plan.phases}:
        problems.append("the plan's phases have no MVP")
    rank = {name: i for i, name in enumerate(PHASES)}
    by_id = {t.id: t for t in plan.tasks}
    for t in plan.tasks:
        if not t.phase:
            problems.append(f"task {t.id} has no phase (mvp, enhanced or polish)")
            continue
        for dep in t.depends_on:
            later = by_id.get(dep)
            if later and later.phase and rank[later.phase] > rank[t.phase]:
                problems.append(
                    f"task {t.id} ({t.phase}) depends on {dep} ({later.phase}): "
                    "a phase must not wait for a later one"
                )
    mvp = {r for t in plan.tasks if t.phase == "mvp" for r in t.requirement_ids}
    problems += [
        f"must-have {kind} {r.id} ({r.title}) is served by no MVP task"
        for kind, r in scope.requirements()
        if r.priority == "must" and r.id not in mvp and plan.phases
    ]
    return problems


def ownership_problems(plan: Plan) -> list[str]:
    """Tasks that change the same file and may run at the same time (the plan is acyclic)."""
    anc = ancestors(plan.tasks)
    owners: dict[str, list[str]] = {}
    for t in plan.tasks:
        for path in dict.fromkeys(t.files):
            owners.setdefault(path, []).append(t.id)
    return [
        f"tasks {a} and {b} both change {path} but neither depends on the other"
        for path, tids in sorted(owners.items())
        for i, a in enumerate(tids)
        for b in tids[i + 1 :]
        if a not in anc[b] and b not in anc[a]
    ]


def plan_problems(
    plan: Plan,
    scope: Scope,
    *,
    complexity: Complexity | None = None,
    known: set[str] | None = None,
) -> list[str]:
    """Return every reason the plan cannot be executed as it stands (empty when it can).

    ``complexity`` adds the check that the plan's size is not grossly wrong for the scope.
    """
    problems = shape_problems(plan, known)
    cycle = cycle_problem(plan)
    if cycle:
        return [*problems, cycle]
    if complexity is not None:
        size = complexity.size_problem(len(plan.tasks))
        problems += [size] if size else []
    problems += coverage_problems(plan, scope)
    problems += phase_problems(plan, scope)
    return problems + ownership_problems(plan)
