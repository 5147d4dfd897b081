"""The failure-policy table: every consumer reads it, and a new class is one row and its rule."""

from __future__ import annotations

import asyncio
import importlib
import json
import re
from pathlib import Path
from typing import Any, get_args

import pytest
from pydantic import ValidationError

from oldnew.hitl import questions
from oldnew.hitl.records import Annotator
from oldnew.models import ScriptedChatModel
from oldnew.recovery import classify, faults, policy
from oldnew.recovery.classify import Classification
from oldnew.recovery.faults import FaultInjectingChatModel
from oldnew.recovery.policy import FailurePolicy, KindPolicy
from oldnew.runs import start_run
from oldnew.schemas import Plan, Question

# The package re-exports the function classify(); the rules live in the module of that name.
classifier = importlib.import_module("oldnew.recovery.classify")

SCOPE = {
    "title": "calc",
    "summary": "Arithmetic helpers.",
    "features": [
        {"id": "F1", "title": "add", "priority": "must"},
        {"id": "F2", "title": "power", "priority": "could"},
    ],
}


def test_every_failure_class_has_one_row_and_every_row_a_question_kind() -> None:
    assert set(get_args(policy.FailureClass)) == set(policy.CLASSES)
    for name, row in policy.CLASSES.items():
        assert row.kind in policy.KINDS, name
        offered = policy.KINDS[row.kind].options
        assert row.recommended is None or row.recommended in offered, name
    for name, kind in policy.KINDS.items():
        assert kind.recommended is None or kind.recommended in kind.options, name
        for key in kind.options:  # every option is worded, for both kinds of task
            assert questions.label(key, name, critical=True)
            assert questions.label(key, name, critical=False)
    with pytest.raises(ValidationError, match="unknown question kind 'nope'"):
        Question(id="q1", kind="nope", title="t")


def test_skip_means_one_thing_per_task_kind() -> None:
    state: Any = {"task": {"id": "T1", "title": "t"}, "questions_asked": 0}
    critical = questions.task_question(state, "fix_limit", "title")
    optional = questions.task_question({**state, "critical": False}, "fix_limit", "title")
    assert [o.key for o in critical.options] == [o.key for o in optional.options]
    assert critical.options[1].label == questions.SKIP_BLOCKS
    assert optional.options[1].label == questions.SKIP_TO_LIMITATION
    assert critical.options[0].label == policy.KINDS["fix_limit"].retry_label


def test_severity_floor_and_planner_handoff_come_from_the_kind_rows() -> None:
    plan = Plan.model_validate(
        {
            "tasks": [
                {"id": "T1", "title": "a", "description": "a"},
                {"id": "T2", "title": "b", "description": "b", "depends_on": ["T1"]},
                {"id": "T3", "title": "c", "description": "c"},
            ]
        }
    )
    notes = Annotator(plan, {"T1": "running", "T2": "pending", "T3": "waiting"})
    assert notes.annotate({"task_id": "T3", "kind": "model_output"})["severity"] == "low"
    assert notes.annotate({"task_id": "T3", "kind": "configuration"})["severity"] == "high"
    assert policy.handoff("design_flaw") == "design_flaw"
    assert policy.handoff("fix_limit") == "split"
    assert policy.handoff("configuration") is None and policy.handoff(None) is None


def test_the_fault_bench_expects_what_the_classifier_and_the_policy_say() -> None:
    for fault in faults.TRANSIENT:
        model = FaultInjectingChatModel(inner=ScriptedChatModel(replies=[]), rates={fault: 1.0})
        with pytest.raises(Exception) as info:
            model.invoke("hello")
        assert classify(info.value).cls == faults.EXPECTED[fault], fault
    assert set(faults.EXPECTED) == set(faults.FAULTS)
    assert faults.RETRIED == faults.TRANSIENT


# A new failure class, end to end: one row, one question kind, one classifier rule, no other
# change. Code that fails a licence check goes to a person at once (no fix round spent on it);
# a task that is not critical becomes a known limitation without asking anyone.

LICENCE = re.compile(r"licence check: ([^\n]+)")
LICENCE_ROW = FailurePolicy(
    retry="none",
    route="person",
    kind="licence",
    title="{what} cannot ship: {reason}",
    advice="Flagged at: {where}.",
)
LICENCE_KIND = KindPolicy(
    "design_decision",
    ("retry", "skip"),
    "skip",
    retry_label="Code it again without the restricted code",
    severity="high",
)


def licence_rule(text: str, own: set[str]) -> Classification | None:
    """Classify a failed licence check."""
    found = LICENCE.search(text)
    if found is None:
        return None
    return Classification(
        "licence_blocker",  # type: ignore[arg-type]  # a class the Literal does not name yet
        f"a licence forbids it ({found.group(1).strip()})",
        "diagnostic",
        detail="licence check",
    )


def _blocks(files: dict[str, str]) -> str:
    return "".join(f"FILE: {p}\n```python\n{text}```\n" for p, text in files.items())


def _restricted(module: str, fn: str) -> str:
    return _blocks(
        {
            f"{module}.py": f"def {fn}(a, b):\n"
            f"    raise RuntimeError('licence check: GPL-only code in {fn}')\n",
            f"tests/test_{module}.py": f"from {module} import {fn}\n\n\n"
            f"def test_{fn}():\n    assert {fn}(2, 2) == 4\n",
        }
    )


def test_a_new_failure_class_is_routed_by_its_row_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(policy.CLASSES, "licence_blocker", LICENCE_ROW)
    monkeypatch.setitem(policy.KINDS, "licence", LICENCE_KIND)
    monkeypatch.setattr(classifier, "RULES", [*classifier.RULES, licence_rule])
    plan = {
        "tasks": [
            {
                "id": "T1",
                "title": "add",
                "description": "add",
                "files": ["calc.py", "tests/test_calc.py"],
                "requirement_ids": ["F1"],
            },
            {
                "id": "T2",
                "title": "docs",
                "description": "docs",
                "files": ["README.md"],
                "depends_on": ["T1"],
                "requirement_ids": ["F1"],
            },
            {
                "id": "T3",
                "title": "power",
                "description": "power",
                "files": ["power.py", "tests/test_power.py"],
                "requirement_ids": ["F2"],  # could, off the critical path: not critical
            },
        ]
    }
    docs = "FILE: README.md\n```\n# calc\n```\n"
    replies = [
        {"role": "planner", "when": ["return a Scope"], "structured": SCOPE},
        {"role": "planner", "when": ["into a Plan"], "structured": plan},
        {"role": "coder", "when": ["TASK T1:"], "text": _restricted("calc", "add")},
        {"role": "coder", "when": ["TASK T3:"], "text": _restricted("power", "power")},
        {"role": "coder", "when": ["TASK T2:"], "text": docs},
    ]
    (tmp_path / "transcript.json").write_text(json.dumps({"reply": replies}))
    scope = tmp_path / "scope.md"
    scope.write_text("Build calc: add(a, b), and power if there is time.\n")
    ws = tmp_path / "ws"
    context = {"model": f"scripted:{tmp_path / 'transcript.json'}"}
    out = asyncio.run(start_run(scope, ws, context=context))

    assert out.status == "waiting", out
    (q,) = out.questions  # T1 is critical: a person is asked, with the row's words
    assert (q["id"], q["kind"], q["type"]) == ("T1-q1", "licence", "design_decision")
    assert q["title"] == "Task T1 (add) cannot ship: a licence forbids it (GPL-only code in add)"
    assert [o["key"] for o in q["options"]] == ["retry", "skip"]
    assert q["options"][0]["label"] == "Code it again without the restricted code"
    assert q["options"][1]["label"] == questions.SKIP_BLOCKS
    assert q["recommended"] == "skip" and q["free_text"] is True
    assert q["severity"] == "critical"  # everything still to do waits on T1
    assert "Flagged at: calc.py:" in q["detail"]
    events = [json.loads(x) for x in (ws / ".oldnew" / "events.jsonl").read_text().splitlines()]
    assert not [e for e in events if e.get("node") == "fix"]  # no fix round spent on it
    failures = {e["task"]: e for e in events if e.get("node") == "validate" and "failure" in e}
    assert failures["T1"]["event"] == "escalated"
    assert failures["T1"]["failure"] == "licence_blocker"
    # T3 is not critical: a known limitation with the row's options, and nobody asked.
    assert failures["T3"]["event"] == "limited"
    t3 = next(t for t in out.tasks if t["id"] == "T3")
    assert t3["status"] == "blocked" and t3["limitation"]["kind"] == "licence"
    assert t3["limitation"]["options"] == ["Code it again without the restricted code"]
