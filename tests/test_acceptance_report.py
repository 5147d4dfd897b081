"""The acceptance suite in the run's records: traceability, the report, the eval table."""

from __future__ import annotations

from typing import Any

from oldnew.planning.trace import criteria_passing, run_traceability, traceability
from oldnew.report import acceptance_section, decisions, render_markdown
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
