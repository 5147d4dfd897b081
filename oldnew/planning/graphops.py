"""Operations on a task graph: order, ancestors, shared files, replacing tasks by others."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from graphlib import CycleError, TopologicalSorter

from oldnew.schemas import Plan, PlannedTask


def find_cycle(deps: dict[str, set[str]]) -> list[str] | None:
    """Return one dependency cycle (first id repeated at the end), or None."""
    try:
        TopologicalSorter({k: v & deps.keys() for k, v in deps.items()}).prepare()
    except CycleError as exc:
        return list(exc.args[1])
    return None


def dependency_map(tasks: Iterable[PlannedTask]) -> dict[str, set[str]]:
    """Return task id -> ids it depends on (unknown ids dropped)."""
    tasks = list(tasks)
    known = {t.id for t in tasks}
    return {t.id: set(t.depends_on) & known for t in tasks}


def topo_order(tasks: Sequence[PlannedTask]) -> list[str]:
    """Order an acyclic task list so that prerequisites come first, else keep plan order."""
    deps = dependency_map(tasks)
    position = {t.id: i for i, t in enumerate(tasks)}
    sorter = TopologicalSorter(deps)
    sorter.prepare()
    out: list[str] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready(), key=position.__getitem__)
        out += ready
        sorter.done(*ready)
    return out


def ancestors(tasks: Sequence[PlannedTask]) -> dict[str, set[str]]:
    """Return task id -> every task it transitively depends on (the graph must be acyclic)."""
    deps = dependency_map(tasks)
    out: dict[str, set[str]] = {}
    for tid in topo_order(tasks):
        acc: set[str] = set()
        for dep in deps[tid]:
            acc |= out[dep] | {dep}
        out[tid] = acc
    return out


def dependents(tasks: Sequence[PlannedTask]) -> dict[str, set[str]]:
    """Return task id -> every task that transitively depends on it."""
    out: dict[str, set[str]] = {t.id: set() for t in tasks}
    for tid, before in ancestors(tasks).items():
        for dep in before:
            out[dep].add(tid)
    return out


def remaining_paths(tasks: Sequence[PlannedTask]) -> dict[str, int]:
    """Return task id -> tasks on the longest chain that starts at it (itself included).

    The graph must be acyclic.
    """
    deps = dependency_map(tasks)
    after: dict[str, list[str]] = {tid: [] for tid in deps}
    for tid, before in deps.items():
        for d in before:
            after[d].append(tid)
    starting: dict[str, int] = {}
    for tid in reversed(topo_order(tasks)):
        starting[tid] = 1 + max((starting[c] for c in after[tid]), default=0)
    return starting


def critical_first(tasks: Sequence[PlannedTask]) -> list[str]:
    """Order the tasks longest remaining chain first (the critical path), ties in plan order.

    The order to start ready tasks in: a task that many others wait for, one after another,
    starts before one that nothing waits for.
    """
    starting = remaining_paths(tasks)
    position = {t.id: i for i, t in enumerate(tasks)}
    return sorted(starting, key=lambda tid: (-starting[tid], position[tid]))


def on_longest_chains(tasks: Sequence[PlannedTask]) -> set[str]:
    """Return the tasks on a longest dependency chain (the critical path; ties: all of them).

    The graph must be acyclic.
    """
    deps = dependency_map(tasks)
    ending: dict[str, int] = {}  # longest chain that ends at a task
    for tid in topo_order(tasks):
        ending[tid] = 1 + max((ending[d] for d in deps[tid]), default=0)
    starting = remaining_paths(tasks)  # longest chain that starts at a task
    longest = max(ending.values(), default=0)
    return {tid for tid in deps if ending[tid] + starting[tid] - 1 == longest}


def sinks(tasks: Sequence[PlannedTask]) -> list[str]:
    """Return the tasks no other task in ``tasks`` depends on, in order."""
    needed = {d for t in tasks for d in t.depends_on}
    return [t.id for t in tasks if t.id not in needed]


def roots(tasks: Sequence[PlannedTask]) -> list[str]:
    """Return the tasks that depend on no other task in ``tasks``, in order."""
    ids = {t.id for t in tasks}
    return [t.id for t in tasks if not set(t.depends_on) & ids]


def add_dependency(task: PlannedTask, *deps: str) -> None:
    """Add ``deps`` to ``task.depends_on`` (in place), skipping ones it has and itself."""
    for dep in deps:
        if dep != task.id and dep not in task.depends_on:
            task.depends_on.append(dep)


def serialize_shared_files(plan: Plan) -> tuple[Plan, list[str]]:
    """Order tasks that change the same file and could otherwise run at the same time.

    Each added dependency follows one topological order of the plan, so no cycle can appear.
    Returns the new plan and a line per added dependency.
    """
    out = plan.model_copy(deep=True)
    by_id = {t.id: t for t in out.tasks}
    order = {tid: i for i, tid in enumerate(topo_order(out.tasks))}
    anc = ancestors(out.tasks)
    children: dict[str, set[str]] = {t.id: set() for t in out.tasks}
    for t in out.tasks:
        for d in t.depends_on:
            children.setdefault(d, set()).add(t.id)
    owners: dict[str, list[str]] = {}
    for t in out.tasks:
        for path in dict.fromkeys(t.files):
            owners.setdefault(path, []).append(t.id)
    added: list[str] = []
    for path, tids in owners.items():
        chain = sorted(tids, key=order.__getitem__)
        for a, b in zip(chain, chain[1:], strict=False):
            if a in anc[b]:
                continue
            add_dependency(by_id[b], a)
            children[a].add(b)
            added.append(f"{b} now waits for {a}: both change {path}")
            gained = anc[a] | {a}
            stack = [b]
            while stack:
                x = stack.pop()
                if not gained <= anc[x]:
                    anc[x] |= gained
                    stack += children.get(x, ())
    return out, added


def rename(tasks: Sequence[PlannedTask], renames: dict[str, str]) -> list[PlannedTask]:
    """Return copies of ``tasks`` with ids and dependencies renamed."""
    if not renames:
        return [t.model_copy(deep=True) for t in tasks]
    return [
        t.model_copy(
            update={
                "id": renames.get(t.id, t.id),
                "depends_on": [renames.get(d, d) for d in t.depends_on],
            },
            deep=True,
        )
        for t in tasks
    ]


def replace_tasks(
    plan: Plan, removed: set[str], new: Sequence[PlannedTask], *, inherit_deps: bool
) -> Plan:
    """Replace the tasks ``removed`` by ``new`` and rewire the rest of the plan around them.

    Tasks kept from the plan that depended on a removed task now depend on the new tasks that
    no other new task depends on (the last pieces). With ``inherit_deps`` (a split), the new
    tasks that depend on none of the others inherit the removed tasks' outside prerequisites.
    New tasks go where the first removed task was, so the plan keeps its phase order.
    """
    new = [t.model_copy(deep=True) for t in new]
    new_ids = {t.id for t in new}
    last = sinks(new)
    if inherit_deps:
        outside = [
            d for t in plan.tasks if t.id in removed for d in t.depends_on if d not in removed
        ]
        first = set(roots(new))
        for t in new:
            if t.id in first:
                add_dependency(t, *outside)
    kept: list[PlannedTask] = []
    for t in plan.tasks:
        if t.id in removed:
            continue
        t = t.model_copy(deep=True)
        deps: list[str] = []
        for d in t.depends_on:
            for x in last if d in removed and d not in new_ids else [d]:
                if x not in deps:
                    deps.append(x)
        t.depends_on = deps
        kept.append(t)
    at = next((i for i, t in enumerate(plan.tasks) if t.id in removed), len(plan.tasks))
    before = sum(1 for t in plan.tasks[:at] if t.id not in removed)
    return plan.model_copy(update={"tasks": kept[:before] + new + kept[before:]})
