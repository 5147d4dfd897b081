"""Which questions the run records after a pass of the scheduler.

The task threads are the truth about who waits on what; the run's ``questions`` are its record
of them for people (status, answers) and must follow the threads: a waiting task's question is
recorded (as an escalation record), one answered through the inbox is recorded answered, and
one whose task no longer waits on it is settled: answered (in a session that did not record
it) or cancelled (a re-plan removed its task).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from oldnew.execution.threads import TaskView
from oldnew.hitl.records import Annotator
from oldnew.schemas import Plan, Question


def questions_update(
    plan: Plan,
    views: Mapping[str, TaskView],
    statuses: Mapping[str, str],
    known: Mapping[str, Mapping[str, Any]],
    *,
    answered_now: Mapping[str, dict[str, Any]],
    with_planner: set[str],
) -> dict[str, dict[str, Any]]:
    """Return the question entries to merge into the run's state.

    ``known`` is the run's record so far, ``answered_now`` the questions answered through the
    inbox meanwhile, ``with_planner`` the tasks whose question the planner handles first (it
    goes to a person only if the planner cannot help).
    """
    out: dict[str, dict[str, Any]] = dict(answered_now)
    annotator = Annotator(plan, statuses)
    for tid, view in views.items():
        if tid in with_planner or view.stage != "waiting" or not view.question:
            continue
        q = Question.model_validate(view.question)
        if q.id not in known or known[q.id]["status"] == "pending":
            out[q.id] = annotator.annotate(q.model_dump())
    waiting = {v.question_id for v in views.values() if v.stage == "waiting"}
    for qid, entry in known.items():
        owner = entry.get("task_id")
        if entry["status"] != "pending" or not owner or qid in waiting or qid in out:
            continue
        given = (views.get(str(owner)) or TaskView("new")).values.get("answer") or {}
        if given.get("question") == entry["title"]:
            out[qid] = {"status": "answered", "answer": given.get("answer")}
        else:
            out[qid] = {"status": "cancelled"}
    return out
