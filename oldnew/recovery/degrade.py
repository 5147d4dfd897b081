"""Graceful degradation: which tasks are critical, and what happens to one that cannot finish.

A task is critical when it lies on the plan's critical path (a longest dependency chain),
serves an MVP or "must" requirement (``phase == "mvp"``, or a requirement of priority must),
or is a prerequisite of a critical task. A critical task that cannot be finished asks a person;
any other becomes a known limitation: its partial work is kept on a branch, its options are
listed in the report, and the rest of the run goes on. A plan with no phases whose features are
all "must" has only critical tasks, so such runs behave as before.
"""

from __future__ import annotations

from typing import Any

from oldnew.graph.state import TaskRecord, TaskState
from oldnew.hitl.questions import task_question, what_task
from oldnew.planning.graphops import dependency_map, find_cycle, on_longest_chains
from oldnew.schemas import Plan, Question, Scope


def critical_tasks(plan: Plan, scope: Scope | None) -> set[str]:
    """Return the ids of the plan's critical tasks (all of them when in doubt)."""
    ids = [t.id for t in plan.tasks]
    deps = dependency_map(plan.tasks)
    if scope is None or find_cycle(deps):
        return set(ids)
    critical = on_longest_chains(plan.tasks)
    must = {r.id for _, r in scope.requirements() if r.priority == "must"}
    critical |= {
        t.id for t in plan.tasks if t.phase == "mvp" or any(r in must for r in t.requirement_ids)
    }
    stack = list(critical)
    while stack:  # what a critical task needs is critical too
        for d in deps[stack.pop()]:
            if d not in critical:
                critical.add(d)
                stack.append(d)
    return critical


def dependent_record(dep: str, dep_record: TaskRecord) -> dict[str, Any]:
    """Return the record of a task that cannot start because ``dep`` is blocked.

    A dependent of a known limitation is one too (it is not critical either, or ``dep``
    would be), with the same options.
    """
    limitation = dep_record.get("limitation")
    if not limitation:
        return {"status": "blocked", "blocker": f"depends on {dep}, which is blocked"}
    return {
        "status": "blocked",
        "blocker": f"known limitation: depends on {dep}, which is a known limitation",
        "limitation": {
            "kind": "dependency",
            "reason": f"depends on {dep}, which is a known limitation",
            "detail": str(limitation.get("reason", "")),
            "options": list(limitation.get("options", [])),
            "branch": None,
        },
    }


def timeout_question(state: TaskState, reason: str, branch: str | None) -> Question:
    """Return the question for a task that was stopped at the time limit."""
    kept = f"its partial work is on branch {branch}" if branch else "it had written nothing yet"
    return task_question(
        state,
        "timeout",
        f"{what_task(state)} was stopped: {reason}",
        f"The task cannot be split further; {kept}.",
    )
