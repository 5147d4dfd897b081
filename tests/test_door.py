"""Checked at the door: numbers that make no sense, option numbers out of range, and model
answers that parse but say nothing (issue 12, points 8 and 9)."""

from __future__ import annotations

import asyncio
import json
import math
import uuid
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLE
from langchain_core.messages import BaseMessage
from langgraph.checkpoint.memory import InMemorySaver
from typer.testing import CliRunner

from oldnew import build_graph
from oldnew.cli import app
from oldnew.context import LIMITS, OPTIONAL, Context
from oldnew.errors import ModelOutputError, UsageError
from oldnew.nodes.human import apply_answers
from oldnew.planning import Asker, Planner, assess, extract_scope
from oldnew.planning.clarify import tidy_clarifications
from oldnew.planning.content import content_problems, says_nothing
from oldnew.runs import start_run
from oldnew.schemas import Option, Plan, Question, Scope
from oldnew.testing import CallInfo, FunctionModel, prompt_text

SCOPE_TEXT = "# hello\n\nA command-line tool that prints hello to whoever runs it.\n"
EMPTY_SCOPE = {
    "title": "x",
    "summary": "x",
    "features": [{"id": "F1", "title": "x"}, {"id": "F2", "title": "x"}],
    "clarifications": [{"question": "x", "options": ["x"], "default": "x", "priority": "high"}],
}
HELLO = {
    "title": "hello",
    "summary": "a CLI that prints hello",
    "features": [{"id": "F1", "title": "a CLI that prints hello"}],
}


# -- numeric settings: Python, environment, CLI, a server run's context ----------------------


def _below(name: str) -> float:
    limit = LIMITS[name]
    return limit.low if limit.above else limit.low - 1


@pytest.mark.parametrize("name", sorted(LIMITS))
def test_every_numeric_setting_refuses_what_it_does_not_allow(name: str) -> None:
    limit = LIMITS[name]
    with pytest.raises(UsageError) as err:
        Context(**{name: _below(name)})
    message = str(err.value)
    assert message.startswith(f"{name} must be ") and limit.allowed() in message
    for bad in (math.nan, math.inf, True, "many", [3]):
        with pytest.raises(UsageError, match=f"^{name} must be "):
            Context(**{name: bad})
    if limit.high < math.inf:
        with pytest.raises(UsageError, match=f"from {limit.low:g} to {limit.high:g}"):
            Context(**{name: limit.high + 1})
    if limit.whole:
        with pytest.raises(UsageError, match="a whole number"):
            Context(**{name: limit.low + 1.5})
    lowest = limit.low + 1 if limit.above else limit.low
    assert getattr(Context(**{name: lowest}), name) == lowest  # the edge itself is allowed
    assert getattr(Context(**{name: str(lowest + 1)}), name) == lowest + 1  # JSON as text
    if name in OPTIONAL:
        assert getattr(Context(**{name: None}), name) is None


def test_the_faults_of_the_issue_and_the_meaning_of_zero() -> None:
    for kwargs, allowed in [
        ({"max_agents": -3}, "at least 0 (0: from the scope's complexity class), not -3"),
        ({"budget_tokens": -5}, "at least 0 (0: no cap), not -5"),
        ({"test_timeout": 0}, "a number above 0, not 0"),
        ({"coverage_min": 150}, "from 0 to 100 (percent; unset: the profile's), not 150"),
        ({"max_transient_retries": 0}, "at least 1 (tries, the first one included)"),
    ]:
        with pytest.raises(UsageError, match=allowed.replace("(", r"\(").replace(")", r"\)")):
            Context(**kwargs)
    # 0 agents is the documented "from the complexity class", the default; 0 caps mean none.
    assert Context(max_agents=0, budget_tokens=0).max_agents == 0
    with pytest.raises(UsageError, match="quality must be strict, default, fast or smoke"):
        Context(quality="best")  # type: ignore[arg-type]
    assert Context(quality="STRICT ").quality == "strict"  # type: ignore[arg-type]


def test_environment_variables_are_checked_and_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLDNEW_MAX_AGENTS", "-3")
    with pytest.raises(
        UsageError, match=r"max_agents must be .* not '-3' \(from OLDNEW_MAX_AGENTS\)"
    ):
        Context()
    monkeypatch.setenv("OLDNEW_MAX_AGENTS", "4")
    assert Context().max_agents == 4
    monkeypatch.setenv("OLDNEW_TEST_TIMEOUT", "soon")
    with pytest.raises(UsageError, match=r"test_timeout must be a number above 0, not 'soon'"):
        Context()
    monkeypatch.delenv("OLDNEW_TEST_TIMEOUT")
    monkeypatch.setenv("OLDNEW_COVERAGE_MIN", "85")
    assert Context().coverage_min == 85.0  # a number, no longer the variable's text


def _flat(output: str) -> str:
    """Return the CLI's output on one line, without the box a usage error is drawn in."""
    return " ".join(output.replace("│", " ").split())


def _run(args: list[str], **env: str) -> Any:
    return CliRunner().invoke(app, args, env=env or None)


@pytest.mark.parametrize(
    ("flag", "value", "allowed"),
    [
        ("--max-agents", "0", "greater than or equal to 1"),
        ("--max-agents", "-3", "greater than or equal to 1"),
        ("--budget-tokens", "-5", "greater than or equal to 0"),
        ("--budget-task-tokens", "-1", "greater than or equal to 0"),
        ("--budget-cost", "-0.5", "greater than or equal to 0"),
        ("--budget-seconds", "-1", "greater than or equal to 0"),
    ],
)
def test_cli_numbers_out_of_range_are_usage_errors(
    tmp_path: Path, example_model: str, flag: str, value: str, allowed: str
) -> None:
    ws = tmp_path / "ws"
    for cmd in (["run", str(EXAMPLE / "scope.md")], ["resume"]):
        res = _run([*cmd, "-w", str(ws), "-m", example_model, flag, value])
        assert res.exit_code == 2, res.output
        flat = _flat(res.output)
        assert f"Invalid value for '{flag}'" in flat and allowed in flat, flat
        assert "Traceback" not in res.output
    assert not ws.exists()  # nothing was created on the way


def test_cli_takes_settings_from_the_environment_and_refuses_bad_ones(
    tmp_path: Path, example_model: str
) -> None:
    ws = tmp_path / "ws"
    scope = str(EXAMPLE / "scope.md")
    for var, value, message in [
        ("OLDNEW_MAX_AGENTS", "-3", "max_agents must be a whole number of at least 0"),
        ("OLDNEW_BUDGET_TOKENS", "-5", "budget_tokens must be a whole number of at least 0"),
        ("OLDNEW_TEST_TIMEOUT", "0", "test_timeout must be a number above 0"),
        ("OLDNEW_MAX_FIX_ROUNDS", "three", "max_fix_rounds must be a whole number"),
    ]:
        res = _run(["run", scope, "-w", str(ws), "-m", example_model], **{var: value})
        flat = _flat(res.output)
        assert res.exit_code == 2 and message in flat and f"from {var}" in flat, flat
        assert "Traceback" not in res.output
    assert not ws.exists()
    # Settings that hold numbers in a table are read at the door too, not at planning time.
    for var, value, message in [
        ("OLDNEW_CLASS_AGENTS", "simple=2", "class_agents must name exactly simple, medium"),
        ("OLDNEW_CLASS_TASKS", "simple=0,medium=1,complex=2,monster=3", "'0' is not a range"),
        ("OLDNEW_COMPLEXITY_THRESHOLDS", "simple=50,medium=20,complex=100", "must grow"),
        ("OLDNEW_PRICES", "gpt-4o=cheap", "bad price 'gpt-4o=cheap'"),
    ]:
        res = _run(["run", scope, "-w", str(ws), "-m", example_model], **{var: value})
        assert res.exit_code == 2 and message in _flat(res.output), res.output
    assert not ws.exists()
    res = _run(["bench", "faults", "--tasks", "0"])
    assert res.exit_code == 2 and "greater than or equal to 1" in _flat(res.output)


def test_a_server_runs_context_is_checked_before_any_node_runs(tmp_path: Path) -> None:
    calls: list[CallInfo] = []

    def reply(messages: list[BaseMessage], info: CallInfo) -> Any:
        calls.append(info)
        return HELLO

    graph = build_graph(models=FunctionModel(fn=reply), checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": str(uuid.uuid4())}}
    for context in ({"max_agents": -3}, {"budget_tokens": "-5"}, {"max_fix_rounds": 1.5}):
        with pytest.raises(UsageError, match="must be a whole number of at least 0"):
            asyncio.run(
                graph.ainvoke(
                    {"scope_text": SCOPE_TEXT},
                    config,  # type: ignore[arg-type]
                    context={**context, "workspace": str(tmp_path / "ws")},  # type: ignore[arg-type]
                )
            )
    assert calls == [] and not (tmp_path / "ws").exists()


# -- answers: option numbers ---------------------------------------------------------------


def _question(free_text: bool = True) -> Question:
    return Question(
        id="T3-q1",
        kind="configuration",
        title="Where are to-dos stored?",
        options=[Option(key="home", label="~/.todo.json"), Option(key="cwd", label="./todo.json")],
        free_text=free_text,
    )


def test_an_option_number_out_of_range_is_refused_with_the_range() -> None:
    q = _question()
    for answer in ("7", "0", "-1", "#3", "3.", "option 9"):
        with pytest.raises(ValueError, match=r"T3-q1 has options 1 to 2 \(home, cwd\)"):
            q.check_answer(answer)
    assert [q.check_answer(a) for a in ("1", "2", "#2", "2.", "option 1", "cwd")] == [
        "home",
        "cwd",
        "cwd",
        "cwd",
        "home",
        "cwd",
    ]
    assert q.check_answer("use port 7 on /srv/todo.json") == "use port 7 on /srv/todo.json"
    strict = _question(free_text=False)
    with pytest.raises(ValueError, match="T3-q1 takes one of: home, cwd"):
        strict.check_answer("somewhere else")
    # A question without options takes a number as its answer.
    assert Question(id="q", kind="configuration", title="Workers?").check_answer("7") == "7"


def test_a_server_resume_with_an_option_number_out_of_range_leaves_the_question() -> None:
    questions = {"T3-q1": _question().model_dump()}
    updated, notices = apply_answers(questions, {"T3-q1": "7"})
    assert updated == {} and notices == [
        "T3-q1 has options 1 to 2 (home, cwd); 7 is not one of them: give an option's number "
        "or key (or answer in words)"
    ]
    updated, notices = apply_answers(questions, {"T3-q1": "2"})
    assert updated == {"T3-q1": {"status": "answered", "answer": "cwd"}} and notices == []


@pytest.mark.usefixtures("smoke_gates")  # the answer's checks, not the gates
def test_cli_answer_out_of_range_is_a_usage_error_and_the_question_stays(
    tmp_path: Path, example_model: str
) -> None:
    ws = tmp_path / "ws"
    res = _run(["run", str(EXAMPLE / "scope.md"), "-w", str(ws), "-m", example_model])
    assert res.exit_code == 3, res.output
    res = _run(["answer", "-w", str(ws), "T3-q1", "7"])
    flat = _flat(res.output)
    assert res.exit_code == 2 and "T3-q1 has options 1 to" in flat and "7 is not one" in flat
    status = _run(["status", "-w", str(ws), "--json"])
    data = json.loads(status.output)
    assert status.exit_code == 3 and [q["id"] for q in data["questions"]] == ["T3-q1"]


# -- model answers that say nothing -----------------------------------------------------------


def test_what_says_nothing_and_what_real_short_answers_say() -> None:
    for text in ("x", "", "  ", "x x x", "TBD", "lorem ipsum", "F1", "feature 3", "...", "n/a"):
        assert says_nothing(text), text
    for text in ("hello", "a CLI that prints hello", "todo", "calc", "add", "docs", "README"):
        assert not says_nothing(text), text
    assert content_problems(Scope.model_validate(HELLO)) == []
    short = {"title": "calc", "summary": "s", "features": [{"id": "F1", "title": "add"}]}
    assert content_problems(Scope.model_validate(short)) == []
    problems = content_problems(Scope.model_validate(EMPTY_SCOPE))
    assert "the scope's title 'x' says nothing" in problems[0]
    assert "no requirement says anything" in problems[1]
    same = {
        "title": "notes",
        "summary": "",
        "features": [{"id": f"F{i}", "title": "notes app"} for i in (1, 2, 3)],
    }
    assert "every requirement has the same title" in content_problems(Scope.model_validate(same))[0]


def test_plans_that_say_nothing() -> None:
    def plan(*tasks: tuple[str, str]) -> Plan:
        return Plan.model_validate(
            {
                "tasks": [
                    {"id": f"T{i}", "title": t, "description": d}
                    for i, (t, d) in enumerate(tasks, 1)
                ]
            }
        )

    assert "no task says anything" in content_problems(plan(("x", "x"), ("x", "")))[0]
    alike = plan(("build it", "write the code"), ("build it", "write the code"))
    assert "every task has the same title and description" in content_problems(alike)[0]
    assert "no task has a description" in content_problems(plan(("adder", ""), ("docs", "")))[0]
    assert content_problems(plan(("adder", "calc.py with add()"), ("docs", "README"))) == []
    assert content_problems(plan(("adder", "calc.py with add()"), ("x", "d"))) == []


def test_a_placeholder_clarification_is_dropped_never_asked() -> None:
    scope = Scope.model_validate(
        {
            **HELLO,
            "clarifications": [
                {"question": "x", "options": ["x"], "default": "x", "priority": "high"},
                {"question": "Which port?", "options": ["8080", "x"], "default": "8080"},
                {"question": "Which auth?", "options": ["none", "OAuth"], "default": "tbd"},
            ],
        }
    )
    tidy, notes = tidy_clarifications(scope)
    assert [(c.question, c.options) for c in tidy.clarifications] == [("Which port?", ["8080"])]
    assert any("question 'x' says nothing" in n for n in notes)
    assert any("default 'tbd' says nothing" in n for n in notes)


def _planner(replies: list[dict[str, Any]]) -> tuple[FunctionModel, list[list[BaseMessage]]]:
    seen: list[list[BaseMessage]] = []

    def reply(messages: list[BaseMessage], info: CallInfo) -> Any:
        seen.append(list(messages))
        return replies[min(len(seen), len(replies)) - 1]

    return FunctionModel(fn=reply, role="planner"), seen


def test_an_empty_scope_is_asked_again_with_the_problem_stated() -> None:
    model, seen = _planner([EMPTY_SCOPE, HELLO])
    scope = asyncio.run(extract_scope(Asker(model, Context()), SCOPE_TEXT))
    assert scope.title == "hello" and len(seen) == 2
    again = prompt_text(seen[1])
    assert "could not be used" in again and "the scope's title 'x' says nothing" in again


def test_a_scope_that_never_says_anything_fails_as_model_output() -> None:
    model, seen = _planner([EMPTY_SCOPE])
    ctx = Context(max_output_retries=2)
    with pytest.raises(ModelOutputError, match="Scope said nothing usable after 3 tries"):
        asyncio.run(extract_scope(Asker(model, ctx), SCOPE_TEXT))
    assert len(seen) == 3


def test_a_run_escalates_an_empty_scope_as_the_models_failure(tmp_path: Path) -> None:
    model, seen = _planner([EMPTY_SCOPE])
    scope_file = tmp_path / "scope.md"
    scope_file.write_text(SCOPE_TEXT)
    ws = tmp_path / "ws"
    out = asyncio.run(start_run(scope_file, ws, context={"max_output_retries": 1}, models=model))
    assert out.status == "waiting" and len(seen) == 2  # asked, then asked again once
    (q,) = out.questions
    assert q["kind"] == "model_output" and "Scope said nothing usable" in q["detail"]
    assert not q["id"].startswith("clarify-") and q["title"] != "x"
    assert all(o["key"] != "x" and o["label"] != "x" for o in q["options"])
    lines = (ws / ".oldnew" / "events.jsonl").read_text().splitlines()
    events = [json.loads(line) for line in lines]
    rejected = [e for e in events if e.get("event") == "rejected" and e.get("what") == "Scope"]
    assert len(rejected) == 2 and "says nothing" in rejected[0]["problems"][0]


def test_a_plan_of_placeholder_tasks_is_asked_again_then_fails_as_model_output() -> None:
    empty = {"tasks": [{"id": f"T{i}", "title": "x", "description": "x"} for i in (1, 2)]}
    good = {
        "tasks": [
            {
                "id": "T1",
                "title": "hello",
                "description": "hello.py prints hello",
                "requirement_ids": ["F1"],
            }
        ]
    }
    scope = Scope.model_validate(HELLO)
    ctx = Context(max_output_retries=1)
    model, seen = _planner([empty, good])
    planner = Planner(Asker(model, ctx), scope, assess(scope, ctx), 1)
    plan = asyncio.run(planner.propose([]))
    assert [t.title for t in plan.tasks] == ["hello"] and len(seen) == 2
    assert "no task says anything" in prompt_text(seen[1])
    model, seen = _planner([empty])
    planner = Planner(Asker(model, ctx), scope, assess(scope, ctx), 1)
    with pytest.raises(ModelOutputError, match="Plan said nothing usable after 2 tries"):
        asyncio.run(planner.propose([]))
    assert len(seen) == 2
