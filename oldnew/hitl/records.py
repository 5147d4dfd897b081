"""Escalation records: what a question blocks, how severe it is, whether work goes on without it.

Computed from the task graph each time the scheduler raises or re-reads a question, so a
re-plan or a finished neighbour changes the answer: a question is ``critical`` when the run
cannot go on at all without it, ``high`` when its task is on the critical path (the longest
dependency chain) or only a person can supply what it asks (a setting, a key), ``medium`` when
other tasks wait on it, ``low`` when nothing does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from oldnew.planning.graphops import dependents, on_longest_chains
from oldnew.schemas import Plan, Severity

_PERSON_ONLY = {"configuration", "external_service"}
_FINISHED = {"done", "blocked"}


def annotate(question: dict[str, Any], plan: Plan, statuses: Mapping[str, str]) -> dict[str, Any]:
    """Return ``question`` with ``blocks``, ``can_continue`` and ``severity`` filled in.

    ``statuses`` maps task ids to their record status (pending, running, waiting, done,
    blocked). A question without a task (scope, plan, a gate) holds up the whole run.
    """
    tid = question.get("task_id")
    ids = [t.id for t in plan.tasks]
    if not tid or tid not in ids:
        blocks = [i for i in ids if statuses.get(i) not in _FINISHED]
        return {**question, "blocks": blocks, "can_continue": False, "severity": "critical"}
    waiting = {tid, *dependents(plan.tasks)[tid]}
    blocks = [i for i in ids if i in waiting]
    others = [i for i in ids if i not in waiting and statuses.get(i) in ("pending", "running")]
    unfinished = [i for i in ids if statuses.get(i) not in _FINISHED]
    severity: Severity = "low"
    if set(unfinished) <= waiting and len(unfinished) > 1:
        severity = "critical"  # every task still to do waits for this answer
    elif tid in on_longest_chains(plan.tasks) or question.get("kind") in _PERSON_ONLY:
        severity = "high"
    elif len(blocks) > 1:
        severity = "medium"
    return {**question, "blocks": blocks, "can_continue": bool(others), "severity": severity}
