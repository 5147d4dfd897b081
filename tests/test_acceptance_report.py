"""The acceptance suite in the run's records: traceability, the report, the eval table."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from oldnew.acceptance.report import acceptance_section
from oldnew.errors import UsageError
from oldnew.eval import evaluate, runner
from oldnew.eval.acceptance import Acceptance
from oldnew.eval.runner import SIDES, CaseResult
from oldnew.eval.suite import Case
from oldnew.eval.table import cells, comparison, write_results
from oldnew.planning.trace import (
    acceptance_line,
    criteria_passing,
    run_traceability,
    traceability,
    unaccepted,
)
from oldnew.report import decisions, render_markdown
from oldnew.schemas import Plan, Scope

FILE = "tests/acceptance/test_f1.py"
TIES = "Words with the same count: in which order?"


def _state(results: dict[str, str], **over: Any) -> dict[str, Any]:
    """Return a run's state: two requirements, F1 with two criteria and three tests, F2 none."""
    scope = {
        "title": "wordfreq",
        "summary": "s",
        "features": [
            {
                "id": "F1",
                "title": "top(text, n)",
                "criteria": [
                    {"given": "the text 'b a b'", "when": "top(text, 1)", "then": "[('b', 2)]"},
                    {"given": "'b a'", "when": "top(text, 2)", "then": "[('a', 1), ('b', 1)]"},
                ],
            },
            {"id": "F2", "title": "feels fast", "untestable": "'fast' names no measure"},
        ],
        "clarifications": [{"question": TIES, "default": "alphabetical", "criteria": ["F1.2"]}],
    }
    plan = {
        "tasks": [
            {"id": "T1", "title": "top", "description": "d", "requirement_ids": ["F1"]},
            {"id": "T2", "title": "speed", "description": "d", "requirement_ids": ["F2"]},
        ]
    }
    tasks = {
        "T1": {"status": "done", "commit": "c1" * 20, "files": ["wf.py", "tests/test_wf.py"]},
        "T2": {"status": "done", "commit": "c2" * 20, "files": ["wf.py"]},
    }
    acceptance = {
        "status": "written",
        "commit": "a0" * 20,
        "plan_version": 1,
        "requirements": {
            "F1": {
                "file": FILE,
                "tests": {
                    "test_f1_1_most_frequent_first": "F1.1",
                    "test_f1_2_ties_alphabetical": "F1.2",
                    "test_f1_2_ties_of_three": "F1.2",
                },
                "untestable": "",
            },
            "F2": {"file": "", "tests": {}, "untestable": "'fast' names no measure"},
        },
        "results": results,
        "checked": "b0" * 20,
        "notes": [],
    }
    questions = {
        "clarify-1": {
            "id": "clarify-1",
            "kind": "clarification",
            "title": TIES,
            "status": "answered",
            "answer": "alphabetical",
            "decided_by": "default",
        }
    }
    return {"scope": scope, "plan": plan, "tasks": tasks, "acceptance": acceptance} | {
        "questions": questions,
        **over,
    }


def _all(result: str, *, tie3: str | None = None) -> dict[str, str]:
    names = ["test_f1_1_most_frequent_first", "test_f1_2_ties_alphabetical"]
    out = {f"{FILE}::{n}": result for n in names}
    return out | {f"{FILE}::test_f1_2_ties_of_three": tie3 or result}


def test_every_acceptance_test_passing_delivers_the_requirement_with_its_trail() -> None:
    trace = run_traceability(_state(_all("passed")))
    f1 = trace["F1"]
    assert f1["status"] == "delivered"
    assert [(c["id"], c["status"]) for c in f1["criteria"]] == [
        ("F1.1", "passed"),
        ("F1.2", "passed"),
    ]
    assert f1["criteria"][1]["sentence"].startswith("F1.2: given 'b a', when top(text, 2)")
    assert [t["test"] for t in f1["acceptance_tests"]][
        0
    ] == f"{FILE}::test_f1_1_most_frequent_first"
    assert f1["tasks"] == ["T1"] and f1["commits"] == ["c1" * 20]
    assert f1["tests"] == ["tests/test_wf.py"]  # the coder's own tests stay listed apart
    # An untestable requirement is delivered by its tasks alone; it has nothing to pass.
    assert trace["F2"]["status"] == "delivered" and trace["F2"]["untestable"]
    assert criteria_passing(trace) == (2, 2)


def test_one_failing_test_of_a_criterion_keeps_the_requirement_from_delivered() -> None:
    trace = run_traceability(_state(_all("passed", tie3="failed")))
    assert trace["F1"]["status"] == "acceptance failing"
    assert [c["status"] for c in trace["F1"]["criteria"]] == ["passed", "failing"]
    assert criteria_passing(trace) == (1, 2)
    # A test that does not run is the tester's: said apart from a failing one.
    broken = run_traceability(_state(_all("passed", tie3="error")))
    assert broken["F1"]["status"] == "acceptance error"
    assert broken["F1"]["criteria"][1]["status"] == "error"


def test_delivery_is_blocked_by_the_tests_that_did_not_pass() -> None:
    assert unaccepted(run_traceability(_state(_all("passed")))) == {}
    assert unaccepted(run_traceability(_state(_all("passed", tie3="error")))) == {
        "F1": [f"{FILE}::test_f1_2_ties_of_three"]
    }
    state = _state(_all("failed"))
    state["tasks"]["T1"]["status"] = "running"
    assert unaccepted(run_traceability(state)) == {}  # not judged before its tasks are done


def test_a_suite_not_checked_yet_and_a_parametrized_test() -> None:
    trace = run_traceability(_state({}))
    assert trace["F1"]["status"] == "acceptance not checked"
    assert {c["status"] for c in trace["F1"]["criteria"]} == {"not checked yet"}
    # A parametrized test counts by its worst case.
    results = _all("passed") | {f"{FILE}::test_f1_1_most_frequent_first[x]": "failed"}
    assert run_traceability(_state(results))["F1"]["criteria"][0]["status"] == "failing"
    # A task not done yet is partial, whatever the suite says.
    state = _state(_all("passed"))
    state["tasks"]["T1"]["status"] = "running"
    assert run_traceability(state)["F1"]["status"] == "planned"


def test_traceability_without_a_suite_keeps_its_shape() -> None:
    state = _state({})
    trace = traceability(Scope.model_validate(state["scope"]), Plan.model_validate(state["plan"]))
    assert set(trace["F1"]) == {"kind", "title", "priority", "tasks", "tests", "status"}
    assert trace["F1"]["status"] == "planned"
    off = run_traceability({**state, "acceptance": {}})
    assert off["F1"]["status"] == "delivered"  # no suite: the tasks decide
    assert off["F1"]["criteria"][0]["status"] == "no test"


def _report(state: dict[str, Any]) -> dict[str, Any]:
    trace = run_traceability(state)
    return {
        "project": "wordfreq",
        "status": "delivered",
        "run_id": "r",
        "workspace": "/w",
        "head": "abc",
        "final_validation": {"checks": []},
        "delivered": [],
        "blocked": [],
        "decisions": decisions(state),
        "resume": "-",
        "traceability": trace,
        "acceptance": acceptance_section(state, trace),
    }


def test_the_report_shows_the_acceptance_section_and_the_defaults_taken() -> None:
    report = _report(_state(_all("passed", tie3="failed")))
    assert report["acceptance"]["written_by"] == "tester"
    assert (report["acceptance"]["criteria_passing"], report["acceptance"]["criteria"]) == (1, 2)
    md = render_markdown(report)
    acc = md.split("## Acceptance", 1)[1].split("\n## ", 1)[0]
    assert "Written by the tester role" in acc and f"commit `{'a0' * 6}`" in acc
    assert "1 of 2 criteria passing on main" in acc
    assert "### F1 top(text, n): acceptance failing" in acc
    assert "- **F1.1** [passed]: given the text 'b a b'; when top(text, 1); then [('b', 2)]" in acc
    assert f"  - `{FILE}::test_f1_2_ties_of_three`: FAILED" in acc
    assert "### F2 feels fast: delivered" in acc and "Untestable: 'fast' names no measure" in acc
    defaults = md.split("## Defaults taken", 1)[1].split("\n## ", 1)[0]
    assert f"- {TIES} -> alphabetical (taken by default;" in defaults
    assert "  - it decided F1.2: given 'b a', when top(text, 2), then [('a', 1), ('b', 1)]" in (
        defaults
    )
    assert "## Decisions" not in md  # nobody decided anything else
    trace = md.split("## Traceability", 1)[1]
    assert "- F1 top(text, n) [acceptance failing]: criteria F1.1 passed, F1.2 failing" in trace
    assert f"commits `{'c1' * 6}`" in trace


def test_a_run_without_a_suite_says_nothing_of_one_and_a_persons_answer_is_a_decision() -> None:
    state = _state({}, acceptance={})
    state["questions"]["clarify-1"]["decided_by"] = "person"
    report = _report(state)
    assert report["acceptance"] == {}
    md = render_markdown(report)
    assert "## Acceptance" not in md and "## Defaults taken" not in md
    assert f"## Decisions\n\n- {TIES} -> alphabetical" in md
    off = _report(_state({}, acceptance={"status": "off", "notes": []}))
    assert "No acceptance suite: acceptance is off for this run" in render_markdown(off)


def test_status_says_how_many_criteria_pass() -> None:
    assert acceptance_line(_state(_all("passed", tie3="failed"))) == (
        f"acceptance: 1 of 2 criteria passing on main (checked at {'b0' * 6}); not passing: F1"
    )
    state = _state({})
    state["acceptance"]["checked"] = ""
    assert acceptance_line(state) == "acceptance: 0 of 2 criteria passing on main (not checked yet)"
    assert acceptance_line(_state({}, acceptance={})) == ""
    assert acceptance_line(_state({}, acceptance={"status": "off"})).startswith("acceptance: off")


def _row(case: str, suite: bool, passed: int, total: int, failed: list[str]) -> CaseResult:
    return CaseResult(
        case=case,
        model="scripted:transcript.toml",
        status="delivered",
        acceptance=Acceptance(passed=passed, total=total, failed=failed),
        suite=suite,
    )


def test_the_eval_table_sets_both_sides_side_by_side(tmp_path: Path) -> None:
    rows = [
        _row("wordfreq", True, 7, 7, []),
        _row("wordfreq", False, 6, 7, ["test_wordfreq::test_ties"]),
        _row("slugs", True, 6, 6, []),
        _row("slugs", False, 6, 6, []),
    ]
    assert comparison(rows) == [
        ["wordfreq", "7/7 (100%)", "6/7 (86%)"],
        ["slugs", "6/6 (100%)", "6/6 (100%)"],
        ["total", "13/13 (100%)", "12/13 (92%)"],
    ]
    assert [cells(r)[0] for r in rows[:2]] == ["wordfreq", "wordfreq (no suite)"]
    write_results(rows, tmp_path, {"suite": "s", "acceptance": "both"})
    data = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert data["sides"]["with_suite"]["acceptance_passed"] == 13
    assert data["sides"]["without_suite"]["acceptance_passed"] == 12
    assert [c["suite"] for c in data["cases"]] == [True, False, True, False]
    md = (tmp_path / "results.md").read_text(encoding="utf-8")
    assert "| case | with suite | without suite |" in md
    assert "| wordfreq | 7/7 (100%) | 6/7 (86%) |" in md and "| total | 13/13 (100%) |" in md
    assert "- wordfreq (no suite): `test_wordfreq::test_ties`" in md
    # One side only: no second table.
    assert comparison(rows[::2]) == [] and "sides" not in json.loads(
        (write_results(rows[::2], tmp_path, {})[0]).read_text(encoding="utf-8")
    )


def test_eval_refuses_an_acceptance_setting_it_does_not_know(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--acceptance must be on, off or both"):
        asyncio.run(evaluate(tmp_path, model=None, acceptance="sometimes"))


def test_both_runs_each_case_with_then_without_the_suite_in_folders_of_their_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[str, Path, bool, str]] = []

    async def fake_run_case(case: Case, model: Any, out: Path, over: Any, *rest: Any) -> Any:
        seen.append((case.name, out, over["acceptance"], rest[1]))
        return _row(case.name, over["acceptance"], 1, 1, [])

    monkeypatch.setattr(runner, "run_case", fake_run_case)
    cases = [Case("a", tmp_path / "a"), Case("b", tmp_path / "b")]
    models = {"a": None, "b": None}
    rows = asyncio.run(runner.run_suite(cases, models, tmp_path, {}, print, 1.0, SIDES["both"]))
    assert [(r.case, r.suite) for r in rows] == [
        ("a", True),
        ("a", False),
        ("b", True),
        ("b", False),
    ]
    assert [(s[1].name, s[2]) for s in seen] == [
        ("with-suite", True),
        ("without-suite", False),
    ] * 2
    assert seen[1][3] == "[2/4] (without suite) "
    asyncio.run(runner.run_suite(cases, models, tmp_path, {}, print, 1.0, SIDES["off"]))
    assert (seen[-1][1], seen[-1][2], seen[-1][3]) == (tmp_path, False, "[2/2] ")


def test_a_test_of_a_class_is_traced_by_its_function_name() -> None:
    # pytest names it file::TestX::test; the suite's record names the function alone.
    state = _state(
        {
            f"{FILE}::TestTop::test_f1_1_most_frequent_first": "passed",
            f"{FILE}::TestTop::test_f1_2_ties_alphabetical": "failed",
            f"{FILE}::test_f1_2_ties_of_three": "passed",
        }
    )
    f1 = run_traceability(state)["F1"]
    assert f1["status"] == "acceptance failing"
    assert [c["status"] for c in f1["criteria"]] == ["passed", "failing"]
    assert unaccepted(run_traceability(state)) == {"F1": [f"{FILE}::test_f1_2_ties_alphabetical"]}
