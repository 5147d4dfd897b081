"""Escalation records: what a question blocks, how severe it is, whether work goes on without it.

Computed from the task graph each time the scheduler raises or re-reads a question, so a
re-plan or a finished neighbour changes the answer: a question is ``critical`` when the run
cannot go on at all without it, ``high`` when its task is on the critical path (the longest
dependency chain), ``medium`` when other tasks wait on it, ``low`` when nothing does; never less
than its kind's least severity in ``recovery.policy`` (``high`` for what only a person can
supply: a setting, a key).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from typing import Any

from oldnew.planning.graphops import dependents, on_longest_chains
from oldnew.recovery import policy
from oldnew.recovery.policy import Severity
from oldnew.schemas import Plan

_FINISHED = {"done", "blocked"}


class Annotator:
    """Fills in escalation records for one plan; its graph facts are worked out once.

    ``statuses`` maps task ids to their record status (pending, running, waiting, done,
    blocked).
    """

    def __init__(self, plan: Plan, statuses: Mapping[str, str]) -> None:
        """Prepare to annotate the questions of ``plan``'s tasks."""
        self.plan = plan
        self.ids = [t.id for t in plan.tasks]
        self.statuses = statuses

    @cached_property
    def after(self) -> dict[str, set[str]]:
        """Task id -> every task that depends on it."""
        return dependents(self.plan.tasks)

    @cached_property
    def critical(self) -> set[str]:
        """The tasks on a longest dependency chain."""
        return on_longest_chains(self.plan.tasks)

    def annotate(self, question: dict[str, Any]) -> dict[str, Any]:
        """Return ``question`` with ``blocks``, ``can_continue`` and ``severity`` filled in.

        A question without a task (scope, plan, a gate) holds up the whole run.
        """
        ids, statuses = self.ids, self.statuses
        tid = question.get("task_id")
        if not tid or tid not in ids:
            blocks = [i for i in ids if statuses.get(i) not in _FINISHED]
            return {**question, "blocks": blocks, "can_continue": False, "severity": "critical"}
        waiting = {tid, *self.after[tid]}
        blocks = [i for i in ids if i in waiting]
        others = [i for i in ids if i not in waiting and statuses.get(i) in ("pending", "running")]
        unfinished = [i for i in ids if statuses.get(i) not in _FINISHED]
        severity: Severity = "low"
        if set(unfinished) <= waiting and len(unfinished) > 1:
            severity = "critical"  # every task still to do waits for this answer
        elif tid in self.critical:
            severity = "high"
        elif len(blocks) > 1:
            severity = "medium"
        severity = policy.at_least(severity, question.get("kind"))
        return {**question, "blocks": blocks, "can_continue": bool(others), "severity": severity}
