"""Every way out of every router and deciding node, one case at a time (no model, no gates)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from oldnew.graph import routing
from oldnew.nodes import escalate as escalate_node
from oldnew.nodes.enter import enter

PENDING = {"status": "pending", "kind": "configuration"}
APPROVAL = {"status": "pending", "kind": "approval", "gate": "design"}
CLARIFY = {"status": "pending", "kind": "clarification"}
STOP = {"run": {"reason": "token cap"}}
FEEDBACK = {"fb1": {"id": "fb1", "text": "add a flag", "received": "2026-12-01T08:00:00Z"}}
MALFORMED = {"fb2": {"text": "no id"}}
PLAN = {"tasks": [{"id": "T1"}]}
TAKEN = {"status": "recorded", "commit": "abc", "evidence": ".oldnew/evidence/baseline.json"}
"""A baseline already taken (``state["baseline"]``): the run goes on to execute."""


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ({"status": "aborted"}, "deliver"),
        ({"scope": {"t": 1}, "budget_stops": STOP}, "deliver"),
        ({"scope": {"t": 1}}, "plan"),
        ({"scope": {"t": 1}, "questions": {"q": CLARIFY}}, "ask"),
        ({}, "ask"),  # no scope parsed: the scope question waits
    ],
)
def test_after_scope(state: dict[str, Any], expected: str) -> None:
    assert routing.after_scope(state) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ({"plan": PLAN, "budget_stops": STOP}, "deliver"),
        ({"plan": PLAN, "questions": {"g": APPROVAL}}, "ask"),
        ({"plan": PLAN}, "baseline"),  # what already fails, before the first task
        ({"plan": PLAN, "baseline": TAKEN}, "execute"),
        ({"plan": PLAN, "baseline": {"status": "none"}}, "execute"),  # a new project
        ({"plan": PLAN, "baseline": TAKEN, "questions": {"q": PENDING}}, "execute"),
        ({"plan_problems": ["x"]}, "plan"),
        ({"plan_problems": ["x"], "questions": {"q": PENDING}}, "ask"),
    ],
)
def test_after_plan(state: dict[str, Any], expected: str) -> None:
    assert routing.after_plan(state) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ({"plan": PLAN, "baseline": TAKEN}, "execute"),
        ({"plan": PLAN, "baseline": {"status": "crashed"}}, "execute"),  # the run goes on
        ({"plan": PLAN, "baseline": TAKEN, "budget_stops": STOP}, "deliver"),
    ],
)
def test_after_baseline(state: dict[str, Any], expected: str) -> None:
    assert routing.after_baseline(state) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ({"budget_stops": STOP, "replan": [{"task": "T1"}]}, "deliver"),
        ({"replan": [{"task": "T1", "kind": "split"}]}, "plan"),
        ({"feedback": FEEDBACK}, "plan"),
        ({"questions": {"q": PENDING}}, "ask"),
        ({}, "deliver"),
    ],
)
def test_after_execute(state: dict[str, Any], expected: str) -> None:
    assert routing.after_execute(state) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ({"status": "aborted", "scope": {"t": 1}}, "deliver"),
        ({"scope_text": "x"}, "scope"),
        ({"scope": {"t": 1}, "questions": {"g": APPROVAL}}, "ask"),
        ({"scope": {"t": 1}, "questions": {"c": CLARIFY}}, "ask"),
        ({"scope": {"t": 1}, "plan": PLAN, "feedback": FEEDBACK}, "plan"),
        ({"scope": {"t": 1}, "plan": PLAN, "feedback": MALFORMED}, "plan"),  # it says why
        ({"scope": {"t": 1}}, "plan"),
        ({"scope": {"t": 1}, "plan": PLAN}, "baseline"),  # killed before the baseline was taken
        ({"scope": {"t": 1}, "plan": PLAN, "baseline": TAKEN}, "execute"),
        (
            {"scope": {"t": 1}, "plan": PLAN, "baseline": TAKEN, "questions": {"c": CLARIFY}},
            "execute",
        ),
    ],
)
def test_where_it_stands_is_the_route_after_a_person_and_into_the_graph(
    state: dict[str, Any], expected: str
) -> None:
    assert routing.where_it_stands(state) == expected  # type: ignore[arg-type]
    assert routing.after_human(state) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("state", "goto", "update"),
    [
        ({"scope_text": "build it"}, "scope", {}),
        (
            {
                "scope": {"t": 1},
                "plan": PLAN,
                "baseline": TAKEN,
                "status": "blocked",
                "restart": True,
            },
            "execute",
            {"restart": False, "status": "executing", "budget_stops": {}},
        ),
        (
            # stopped: execute says so at once; no baseline is taken while the budget is out
            {"scope": {"t": 1}, "plan": PLAN, "status": "stopped", "budget_stops": STOP},
            "execute",
            {},
        ),
        (
            {"scope": {"t": 1}, "plan": PLAN, "status": "delivered", "feedback": FEEDBACK},
            "plan",
            {},
        ),
    ],
)
def test_enter_goes_on_from_where_the_run_stands(
    state: dict[str, Any], goto: str, update: dict[str, Any]
) -> None:
    command = asyncio.run(enter(state))  # type: ignore[arg-type]
    assert command.goto == goto and command.update == update


@pytest.mark.parametrize(
    ("router", "state", "expected"),
    [
        (routing.task_entry, {"status": "coding"}, "code"),
        (routing.task_entry, {"stop": "it ran 900 s"}, "stop"),
        (routing.after_code, {"status": "validating"}, "dependencies"),
        (routing.after_code, {"status": "waiting"}, "escalate"),
        (routing.after_validate, {"status": "passed"}, "commit"),
        (routing.after_validate, {"status": "fixing"}, "fix"),
        (routing.after_validate, {"status": "coding"}, "code"),
        (routing.after_validate, {"status": "waiting"}, "escalate"),
        (routing.after_validate, {"status": "limiting"}, "record_limitation"),
        (routing.after_fix, {"status": "validating"}, "dependencies"),
        (routing.after_dependencies, {"status": "validating"}, "validate"),
        (routing.after_dependencies, {"status": "fixing"}, "fix"),
        (routing.after_dependencies, {"status": "coding"}, "code"),
        (routing.after_dependencies, {"status": "waiting"}, "escalate"),
        (routing.after_dependencies, {"status": "limiting"}, "record_limitation"),
        (routing.after_fix, {"status": "waiting"}, "escalate"),
        (routing.after_commit, {"status": "done"}, "__end__"),
        (routing.after_commit, {"status": "fixing"}, "fix"),
        (routing.after_commit, {"status": "waiting"}, "escalate"),
        (routing.after_commit, {"status": "limiting"}, "record_limitation"),
    ],
)
def test_task_routers(router: Any, state: dict[str, Any], expected: str) -> None:
    assert router(state) == expected


def test_validate_that_left_no_verdict_is_a_bug_not_a_commit() -> None:
    # "validating" asks for a check; only "passed" may commit.
    with pytest.raises(ValueError, match="no way out"):
        routing.after_validate({"status": "validating"})


@pytest.mark.parametrize(
    ("kind", "answer", "critical", "goto", "status"),
    [
        ("configuration", "skip", False, "record_limitation", "limiting"),
        ("configuration", "skip", True, "__end__", "blocked"),
        ("fix_limit", "retry", True, "fix", "fixing"),
        ("configuration", "retry", True, "code", "coding"),
    ],
)
def test_escalate_goes_where_the_answer_says(
    monkeypatch: pytest.MonkeyPatch, kind: str, answer: str, critical: bool, goto: str, status: str
) -> None:
    async def quiet(*_: Any, **__: Any) -> None:
        return None

    monkeypatch.setattr(escalate_node, "interrupt", lambda _question: answer)
    monkeypatch.setattr(escalate_node, "aopen_workspace", quiet)
    monkeypatch.setattr(escalate_node, "aemit", quiet)
    question = {"id": "T1-q1", "kind": kind, "title": "needs a key", "options": []}
    state = {"task": {"id": "T1"}, "workspace": "/nowhere", "question": question}
    command = asyncio.run(escalate_node.escalate({**state, "critical": critical}))  # type: ignore[arg-type]
    assert command.goto == goto and command.update["status"] == status
