"""The coder's and fixer's prompts: the gate rules they are judged by, the role, the last try.

Snapshots of the prompts of the bundled example (examples/todo) under the default profile make
every change to a prompt visible in review; the other tests pin what the prompts derive from
(the profile, the task's role, what failed last).
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT
from langchain_core.messages import BaseMessage
from langgraph.runtime import Runtime

from oldnew.acceptance.review import task_requirements
from oldnew.acceptance.store import commit_suite
from oldnew.context import Context
from oldnew.fileblocks import parse_file_blocks
from oldnew.gates.profiles import PROFILES
from oldnew.gates.rules import pytest_command, rules_for
from oldnew.milestones import fix_role, fix_task
from oldnew.models import load_transcript
from oldnew.nodes import coding
from oldnew.nodes.briefing import retry_note, system_prompt
from oldnew.prompts import render
from oldnew.runs import resume_run, start_run
from oldnew.schemas import Plan, PlannedTask, Scope
from oldnew.testing import CallInfo, FunctionModel, call_tool, prompt_text
from oldnew.workspace import Workspace

EXAMPLE = ROOT / "examples" / "todo"
REPLIES = load_transcript(EXAMPLE / "transcript.toml")
PLAN = next(r.structured for r in REPLIES if r.structured and "tasks" in r.structured)
SCOPE = next(r.structured for r in REPLIES if r.structured and "features" in r.structured)
TASKS = {t["id"]: PlannedTask.model_validate(t) for t in PLAN["tasks"]}
SETTINGS = {"quality": "default", "test_timeout": 60.0, "deps": "ask", "max_file_reads": 8}
FAILED = [
    "tests/test_storage.py:9: [pytest failure] tests.test_storage::"
    "test_missing_file_holds_no_items: FileNotFoundError: [Errno 2] No such file or directory",
]


def _reply(role: str, *when: str) -> str:
    return next(r.text for r in REPLIES if r.role == role and r.when == when)


def _write(tree: Path, answer: str) -> None:
    Workspace.write_files(tree, parse_file_blocks(answer))


def _example(tmp_path: Path) -> Workspace:
    """Return the example's workspace with T1 delivered and T2's first, broken try written."""
    ws = Workspace.create(tmp_path / "ws", "r1", {})
    suite = {
        path: text
        for r in REPLIES
        if r.role == "tester"
        for path, text in parse_file_blocks(r.text).items()
    }
    commit_suite(ws, suite, key="acceptance-1", title="The tester's suite")
    _write(ws.worktree("T1"), _reply("coder", "TASK T1:"))
    ws.commit_worktree("T1", "To-do model")
    ws.fast_forward_main(ws.task_branch("T1"))
    ws.remove_worktree("T1")
    _write(ws.worktree("T2"), _reply("coder", "TASK T2:"))
    return ws


def _state(ws: Workspace, tid: str, **more: Any) -> dict[str, Any]:
    task = TASKS[tid].model_dump()
    reqs = task_requirements(SCOPE, TASKS[tid].requirement_ids)
    state = {"task": task, "workspace": str(ws.root), "project": "todo", "stack": "python"}
    return {**state, "requirements": reqs, **more}


def _prompts(model: FunctionModel) -> list[str]:
    return [prompt_text(call.messages) for call in model.log.calls]


def _asks(messages: list[BaseMessage], info: CallInfo) -> Any:
    return call_tool("AskHuman", {"kind": "configuration", "question": "Where?"})


def test_the_example_prompts_state_the_rules_they_are_judged_by(
    tmp_path: Path, snapshot: Any
) -> None:
    ws = _example(tmp_path)
    runtime = Runtime(context=Context(**SETTINGS))
    coder = FunctionModel(fn=_asks)  # asks: nothing is written, no gate runs
    out = asyncio.run(coding.code(_state(ws, "T3"), runtime, models=coder))  # type: ignore[arg-type]
    assert out["status"] == "waiting"
    fixed = _reply("fixer", "TASK T2:", "test_missing_file_holds_no_items")
    fixer = FunctionModel(fn=lambda m, i: fixed)
    state = _state(ws, "T2", diagnostics=FAILED, files=sorted(TASKS["T2"].files))
    out = asyncio.run(coding.fix(state, runtime, models=fixer))  # type: ignore[arg-type]
    assert out["status"] == "validating"
    (coder_prompt,) = _prompts(coder)
    (fixer_prompt,) = _prompts(fixer)
    for prompt in (coder_prompt, fixer_prompt):
        profile = PROFILES["default"]
        assert f"at least {profile.coverage_min:g}% of the lines" in prompt
        assert f"`ruff check --select {profile.ruff_select} .`" in prompt
        assert "`mypy --explicit-package-bases .` (not strict;" in prompt
        assert "--strict" not in prompt
        assert f"up to {profile.mutants} small deliberate changes" in prompt
        assert "a finding of high severity or above fails" in prompt
        assert "python -m pytest" in prompt and "from the project root" in prompt
        assert str(tmp_path) not in prompt  # nothing of this machine: the snapshot is stable
        # The tester's suite of the task's requirements, from main, read-only.
        assert "ACCEPTANCE CRITERIA AND TESTS (READ-ONLY)" in prompt
        assert "the coder may not change it" in prompt and "test_f1_1_" in prompt
    assert coder_prompt == snapshot(name="coder T3")
    assert fixer_prompt == snapshot(name="fixer T2")


def test_the_dependency_example_prompt_shows_what_is_declared(
    tmp_path: Path, snapshot: Any
) -> None:
    example = ROOT / "examples" / "mdreport"
    replies = load_transcript(example / "transcript.toml")
    plan = next(r.structured for r in replies if r.structured and "tasks" in r.structured)
    task = next(t for t in plan["tasks"] if t["id"] == "T2")
    ws = Workspace.create(tmp_path / "ws", "r1", {})
    first = next(r.text for r in replies if r.role == "coder" and r.when == ("TASK T1:",))
    _write(ws.worktree("T1"), first)
    ws.commit_worktree("T1", "Markdown analysis")
    ws.fast_forward_main(ws.task_branch("T1"))
    ws.remove_worktree("T1")
    coder = FunctionModel(fn=_asks)
    state = {"task": task, "workspace": str(ws.root), "project": "mdreport", "stack": "python"}
    runtime = Runtime(context=Context(**SETTINGS))
    asyncio.run(coding.code(state, runtime, models=coder))  # type: ignore[arg-type]
    (prompt,) = _prompts(coder)
    assert "DEPENDENCIES ALREADY DECLARED" in prompt and "- markdown >=3.5 (python, main)" in prompt
    assert "--rootdir . -c pyproject.toml`" in prompt  # the project's own pytest config counts
    assert prompt == snapshot(name="coder mdreport T2")


def test_the_rules_come_from_the_profile_each_fact_from_one_place(tmp_path: Path) -> None:
    default, strict, smoke = PROFILES["default"], PROFILES["strict"], PROFILES["smoke"]
    text = "\n".join(rules_for(strict, tmp_path, stack="python", timeout=30).task)
    assert "`mypy --strict --explicit-package-bases .`" in text
    assert f"at least {strict.coverage_min:g}%" in text and "medium severity" in text
    assert f"at most {strict.complexity_max};" in text and "`ruff format --check .`" in text
    assert f"at least {strict.mutation_min_score:.0%} of them" in text
    lines = rules_for(smoke, tmp_path, stack="python", timeout=30).task
    assert [line.split(":")[0] for line in lines] == [
        "syntax",
        "imports",
        "pytest",
        "project-tests",
    ]
    # A threshold changed in the profile is changed in the prompt: no second copy of it.
    raised = replace(default, coverage_min=97.5)
    assert "at least 97.5% of the lines" in "\n".join(
        rules_for(raised, tmp_path, stack="python", timeout=30).task
    )
    # The project's own ruff configuration replaces the profile's rules, and the prompt says so.
    (tmp_path / "pyproject.toml").write_text("[tool.ruff]\nline-length = 100\n")
    ruff = [
        x for x in rules_for(default, tmp_path, stack="python", timeout=30).task if x[:5] == "ruff:"
    ]
    assert ruff == [
        "ruff: `ruff check .` with the project's own ruff configuration; any finding fails."
    ]
    assert pytest_command(tmp_path).endswith("--rootdir . -c pyproject.toml")


def test_a_node_app_is_told_its_checks_and_the_milestones_thresholds(tmp_path: Path) -> None:
    default = PROFILES["default"]
    rules = rules_for(default, tmp_path, stack="node-web", timeout=30)
    names = [line.split(":")[0] for line in rules.task]
    assert "tsc" in names and "eslint" in names and "vitest" in names
    assert "pytest" not in names and "mypy" not in names  # an empty project shows no Python
    milestone = "\n".join(rules.milestone)
    assert f"at least {default.lighthouse_min:g} in every category" in milestone
    assert f"p95 latency at most {default.load_p95_ms:g} ms" in milestone
    assert "serious or critical accessibility violation" in milestone
    assert rules_for(default, tmp_path, stack="python", timeout=30).milestone == []


def test_a_fix_task_keeps_the_role_of_the_task_whose_files_it_fixes() -> None:
    docs = PlannedTask(id="T1", title="docs", description="d", role="docs", files=["README.md"])
    code = PlannedTask(id="T2", title="app", description="a", role="backend", files=["app.py"])
    page = PlannedTask(id="T3", title="page", description="p", role="frontend", files=["a.html"])
    plan = Plan(tasks=[docs, code, page])
    task = fix_task(plan, "mvp", ["T1", "T2", "T3"], 1, ["README.md: broken link"], ["README.md"])
    assert task.role == "docs"
    assert fix_role([code, page], ["x.css"], "frontend") in ("backend", "frontend")
    assert fix_role([], ["x"], "frontend") == "frontend"
    rules = rules_for(PROFILES["default"], Path("no-such-project"), stack="python", timeout=30)
    prompt = system_prompt({"project": "p"}, task, "ask", rules)  # type: ignore[typeddict-item]
    assert "As the documentation writer" in prompt and "backend engineer" not in prompt


def test_the_fixer_is_told_a_refused_answer_is_its_format_not_the_code(tmp_path: Path) -> None:
    ws = _example(tmp_path)
    fixed = _reply("fixer", "TASK T2:", "test_missing_file_holds_no_items")
    answers = iter([fixed.rsplit("```", 1)[0], fixed])  # the first is never closed
    fixer = FunctionModel(fn=lambda m, i: next(answers))
    state = _state(ws, "T2", diagnostics=FAILED, files=sorted(TASKS["T2"].files))
    runtime = Runtime(context=Context(**SETTINGS))
    out = asyncio.run(coding.fix(state, runtime, models=fixer))  # type: ignore[arg-type]
    assert out["status"] == "validating"
    second = fixer.log.calls[1].messages[-1].content
    assert "because of its format, not its code" in second and "is not closed" in second
    assert "do not look\nfor a cause there" in second
    assert "find the cause in the project's code" not in prompt_text(fixer.log.calls[1].messages)


# -- what a retry says -------------------------------------------------------------------------


def _retry_prompt(answer: dict[str, Any], **state: Any) -> str:
    note = retry_note({"answer": answer, **state})  # type: ignore[typeddict-unknown-key]
    return render(
        "coder_user",
        task=TASKS["T1"],
        packages={"declared": [], "named": [], "rejected": []},
        context={"empty": True},
        reads=0,
        decisions=[],
        memory=[],
        lessons=[],
        template=None,
        retry=note,
        fresh_start=None,
        suite=None,
    )


def test_a_retry_says_what_happened_and_what_failed() -> None:
    asked = {"question": "Which port?", "answer": "8080", "kind": "configuration", "asked": True}
    text = _retry_prompt(asked)
    assert "A PERSON ANSWERED YOUR QUESTION\nQuestion: Which port?\nAnswer: 8080" in text
    output = {
        "question": "The model's code for task T1 could not be used",
        "answer": "retry",
        "kind": "model_output",
        "asked": False,
        "detail": "the code block of README.md is not closed (answer cut off?)",
    }
    text = _retry_prompt(output)
    assert "A PERSON ANSWERED" not in text and "Answer:" not in text
    assert "YOUR LAST ATTEMPT FAILED, AND A PERSON CHOSE TO TRY AGAIN (you asked nothing)" in text
    assert "the format of your answer, not its code" in text
    assert "README.md is not closed" in text
    failure = {
        "question": "Task T1 (calc) failed: the tests time out",
        "answer": "Use a smaller input in the tests",
        "kind": "timeout",
        "asked": False,
        "detail": "pytest was stopped after 60 s " + "word " * 400,
    }
    text = _retry_prompt(
        failure, diagnostics=[f"tests/test_a.py:{n}: [pytest] slow" for n in range(9)]
    )
    assert "A PERSON GAVE GUIDANCE (you asked nothing)" in text
    assert "Guidance: Use a smaller input in the tests" in text
    assert "format of your answer" not in text
    assert text.count("[pytest] slow") == 5  # the first findings, briefly
    shown = text.split("pytest was stopped", 1)[1].split("\n", 1)[0]
    assert shown.endswith("word …") and len(shown) < 1300  # cut at a word, marked
    mock = {**failure, "answer": "mock", "choice": "Build against a mock of the service"}
    text = _retry_prompt(mock)
    assert "A person chose: Build against a mock of the service" in text and "mock\n" not in text
    packages = {
        "question": "T1 wants left-pad",
        "answer": "A person rejected left-pad: ...",
        "kind": "dependency",
        "asked": False,
    }
    assert "A PERSON DECIDED ON THE PACKAGES\nA person rejected left-pad" in _retry_prompt(packages)
    # An answer recorded before answers carried their kind reads as before.
    assert "A PERSON ANSWERED YOUR QUESTION" in _retry_prompt({"question": "q", "answer": "a"})


@pytest.mark.parametrize("stack", ["python", "python-web", "node-web"])
def test_every_stack_renders_with_the_rules(stack: str) -> None:
    rules = rules_for(PROFILES["default"], Path("no-such-project"), stack=stack, timeout=30)
    prompt = render(
        "coder_system", role="backend", project="p", deps="ask", stack=stack, rules=rules
    )
    assert 'HOW YOUR WORK IS CHECKED (quality profile "default")' in prompt
    assert "FILE: scripts/run.sh (executable)" in prompt


def test_a_retry_after_unusable_answers_says_so_not_that_a_person_answered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLDNEW_QUALITY", "smoke")
    good = (
        "FILE: calc.py\n```python\ndef add(a: int, b: int) -> int:\n    return a + b\n```\n"
        "FILE: tests/test_calc.py\n```python\nfrom calc import add\n\n\n"
        "def test_add() -> None:\n    assert add(1, 2) == 3\n```\n"
    )
    task = {"id": "T1", "title": "calc", "description": "calc.py", "requirement_ids": ["F1"]}
    scope = {"title": "calc", "summary": "s", "features": [{"id": "F1", "title": "add"}]}
    coder: list[str] = []

    def reply(messages: list[BaseMessage], info: CallInfo) -> Any:
        if info.schema is Scope:
            return scope
        if info.schema is Plan:
            return {"tasks": [task]}
        coder.append(prompt_text(messages))
        return good if "CHOSE TO TRY AGAIN" in coder[-1] else good.rsplit("```", 1)[0]

    scope_file = tmp_path / "scope.md"
    scope_file.write_text("A calculator library.\n")
    ws = tmp_path / "ws"
    out = asyncio.run(start_run(scope_file, ws, models=FunctionModel.per_role(reply)))
    assert out.status == "waiting", out
    (question,) = out.questions
    answers = {question["id"]: "retry"}
    out = asyncio.run(resume_run(ws, answers=answers, models=FunctionModel.per_role(reply)))
    assert out.status == "delivered", out
    retried = coder[-1]
    assert "A PERSON ANSWERED YOUR QUESTION" not in retried
    assert "the format of your answer, not its code" in retried
    assert "the code block of tests/test_calc.py is not closed" in retried
