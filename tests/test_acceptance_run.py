"""A whole run: the coder's code fails the tester's suite on main, and the fixer makes it pass."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import BaseMessage

from oldnew.runs import start_run
from oldnew.schemas import Plan, Scope
from oldnew.testing import CallInfo, FunctionModel, prompt_text

pytestmark = pytest.mark.usefixtures("smoke_gates")  # graph logic, not the gates

SCOPE = {
    "title": "topwords",
    "summary": "The most frequent words of a list, ties in alphabetical order.",
    "features": [
        {
            "id": "F1",
            "title": "most frequent words",
            "criteria": [
                {
                    "given": "the words ['b', 'a', 'b']",
                    "when": "top(words, 1) is called",
                    "then": "it returns [('b', 2)]",
                },
                {
                    "given": "the words ['b', 'a']",
                    "when": "top(words, 2) is called",
                    "then": "it returns [('a', 1), ('b', 1)]: ties in alphabetical order",
                },
            ],
        }
    ],
}
PLAN = {
    "tasks": [
        {
            "id": "T1",
            "title": "top words",
            "description": "top.py: top(words, n) -> the n most frequent (word, count) pairs",
            "files": ["top.py", "tests/test_top.py"],
            "requirement_ids": ["F1"],
        }
    ],
    "interface": ["top.top(words: list[str], n: int) -> list[tuple[str, int]]"],
}
SUITE = (
    "FILE: tests/acceptance/test_f1.py\n```python\nfrom top import top\n\n\n"
    "def test_f1_1_the_most_frequent_first():\n    assert top(['b', 'a', 'b'], 1) == [('b', 2)]\n"
    "\n\ndef test_f1_2_ties_sort_alphabetically():\n"
    "    assert top(['b', 'a'], 2) == [('a', 1), ('b', 1)]\n```\n"
)
OWN_TEST = (
    "FILE: tests/test_top.py\n```python\nfrom top import top\n\n\n"
    "def test_top():\n    assert top(['x', 'x', 'y'], 1) == [('x', 2)]\n```\n"
)
# Counter.most_common keeps first-seen order for ties: 'b' before 'a' for ['b', 'a'].
FIRST_SEEN = (
    "FILE: top.py\n```python\nfrom collections import Counter\n\n\n"
    "def top(words, n):\n    return Counter(words).most_common(n)\n```\n" + OWN_TEST
)
ALPHABETICAL = (
    "FILE: top.py\n```python\nfrom collections import Counter\n\n\n"
    "def top(words, n):\n"
    "    return sorted(Counter(words).items(), key=lambda kv: (-kv[1], kv[0]))[:n]\n```\n"
)


def _reply(messages: list[BaseMessage], info: CallInfo) -> Any:
    if info.schema is Scope:
        return SCOPE
    if info.schema is Plan:
        return PLAN
    if info.role == "tester":
        return SUITE
    if info.role == "fixer":
        return ALPHABETICAL
    return FIRST_SEEN  # T1, and the fix task's first try: ties stay in first-seen order


def test_a_failing_acceptance_test_on_main_is_fixed_by_the_fixer(tmp_path: Path) -> None:
    scope = tmp_path / "scope.md"
    scope.write_text("# topwords\n\nThe most frequent words; ties in alphabetical order.\n")
    models = FunctionModel.per_role(_reply)
    ws = tmp_path / "ws"
    out = asyncio.run(start_run(scope, ws, models=models))
    assert out.status == "delivered", out
    log = models["coder"].log
    # T1 passed its own gates (the suite is not one of them) and was committed; the MVP
    # milestone's acceptance gate failed on main and planned the fix task of F1's role.
    assert [c.info.task for c in log.of(role="coder")] == ["T1", "mvp-fix1"]
    (fixer,) = log.of(role="fixer")
    assert fixer.info.task == "mvp-fix1"
    shown = prompt_text(fixer.messages)
    assert "test_f1_2_ties_sort_alphabetically" in shown  # the failing test, the fixer's
    report = json.loads((ws / ".oldnew" / "report.json").read_text(encoding="utf-8"))
    (trace,) = report["traceability"].values()
    assert trace["status"] == "delivered" and trace["tasks"] == ["T1", "mvp-fix1"]
    assert [c["status"] for c in trace["criteria"]] == ["passed", "passed"]
    assert {t["test"].split("::")[1]: t["result"] for t in trace["acceptance_tests"]} == {
        "test_f1_1_the_most_frequent_first": "passed",
        "test_f1_2_ties_sort_alphabetically": "passed",
    }
    events = [
        json.loads(line)
        for line in (ws / ".oldnew" / "events.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    fixing = [e for e in events if e.get("event") == "milestone_fixing"]
    reached = [e for e in events if e.get("event") == "milestone_reached"]
    assert len(fixing) == 1 and fixing[0]["fix_task"] == "mvp-fix1"
    assert len(reached) == 1 and reached[0]["tag"] == "mvp"
    text = (ws / ".oldnew" / "report.md").read_text(encoding="utf-8")
    assert "test_f1_2_ties_sort_alphabetically" in text
    code = (ws / "top.py").read_text(encoding="utf-8")
    assert "kv[0]" in code  # main holds the fixer's code
    suite = (ws / "tests" / "acceptance" / "test_f1.py").read_text(encoding="utf-8")
    assert "[('a', 1), ('b', 1)]" in suite  # and the tester's test, unchanged
