"""The suite is the tester's: the coder may not change it, sees it, contests it through the tester.

A suite is put on main with ``commit_suite`` and the task's state set up directly (no tester
node); the task graph runs alone, on an in-memory saver, with the smoke gates.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import BaseMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.runtime import Runtime
from langgraph.types import Command

from oldnew import build_task_graph
from oldnew.acceptance import is_suite_path, suite_file
from oldnew.acceptance.review import (
    ContestReview,
    SuiteRepair,
    refuse_suite_edits,
    repair_suite,
    task_requirements,
)
from oldnew.acceptance.store import commit_suite, suite_on_main
from oldnew.context import Context
from oldnew.errors import ModelOutputError
from oldnew.nodes import coding
from oldnew.schemas import Plan, Scope
from oldnew.testing import CallInfo, FunctionModel, call_tool, prompt_text
from oldnew.workspace import Workspace

SUITE_PATH = suite_file("F1")
SCOPE = {
    "title": "counter",
    "summary": "Counts words.",
    "features": [
        {
            "id": "F1",
            "title": "count words",
            "description": "words(text) counts the words of a text.",
            "criteria": [
                {"given": "the text 'a b c'", "when": "words(text)", "then": "it returns 3"},
                {"given": "the empty text", "when": "words('')", "then": "it returns 0"},
            ],
        },
        {"id": "F2", "title": "no criteria", "untestable": "a matter of taste"},
    ],
}
SUITE = (
    "from count import words\n\n\n"
    "def test_f1_1_counts_three_words() -> None:\n    assert words('a b c') == 3\n\n\n"
    "def test_f1_2_empty_text_has_none() -> None:\n    assert words('') == 0\n"
)
REVISED = SUITE.replace("words('') == 0", "words('   ') == 0")
TASK = {
    "id": "T1",
    "title": "word counter",
    "description": "count.py: words(text)",
    "files": ["count.py", "tests/test_count.py"],
    "requirement_ids": ["F1"],
}
GOOD = (
    "FILE: count.py\n```python\ndef words(text: str) -> int:\n    return len(text.split())\n```\n"
    "FILE: tests/test_count.py\n```python\nfrom count import words\n\n\n"
    "def test_words() -> None:\n    assert words('a b') == 2\n```\n"
)
BROKEN_IMPL = "def words(text: str) -> int:\n    return -1  # the code, never the tester's\n"
BROKEN = GOOD.replace("def words(text: str) -> int:\n    return len(text.split())\n", BROKEN_IMPL)
CLAIM = "test_f1_2_empty_text_has_none contradicts F1: the scope never says what '' gives"


def _workspace(tmp_path: Path, suite: str = SUITE) -> Workspace:
    ws = Workspace.create(tmp_path / "ws", "r1", {})
    commit_suite(ws, {SUITE_PATH: suite}, key="acceptance-1", title="Acceptance suite")
    return ws


def _state(ws: Workspace, **more: Any) -> dict[str, Any]:
    return {
        "task": TASK,
        "workspace": str(ws.root),
        "project": "counter",
        "stack": "python",
        "requirements": task_requirements(SCOPE, TASK["requirement_ids"]),
        "status": "coding",
        "fix_round": 0,
        "questions_asked": 0,
        **more,
    }


def _suite_commits(ws: Workspace) -> list[str]:
    return ws.git("log", "--format=%H", "main", "--", SUITE_PATH).split()


def test_task_requirements_keep_the_criteria_of_the_tasks_requirements() -> None:
    reqs = task_requirements(SCOPE, ["F1", "F2"])
    assert list(reqs) == ["F1"]  # F2 has no criteria: no suite file tests it
    assert reqs["F1"]["criteria"] == {
        "F1.1": "F1.1: given the text 'a b c', when words(text), then it returns 3",
        "F1.2": "F1.2: given the empty text, when words(''), then it returns 0",
    }
    with pytest.raises(ModelOutputError, match="may not change it"):
        refuse_suite_edits({"count.py": "", "tests//acceptance/test_f1.py": None})
    refuse_suite_edits({"tests/test_acceptance.py": "", "tests/acceptance.md": ""})


@pytest.mark.parametrize(
    "edit",
    [
        f"FILE: {SUITE_PATH}\n```python\ndef test_f1_1_x() -> None:\n    pass\n```\n",
        f"DELETE: {SUITE_PATH}\n",
        "FILE: ./tests//acceptance/test_f1.py\n```python\n```\n",
    ],
)
def test_a_coder_edit_of_the_suite_is_refused_and_asked_again(tmp_path: Path, edit: str) -> None:
    ws = _workspace(tmp_path)
    before = suite_on_main(ws)
    answers = iter([GOOD + edit, GOOD])
    coder = FunctionModel(fn=lambda m, i: next(answers))
    out = asyncio.run(coding.code(_state(ws), Runtime(context=Context()), models=coder))  # type: ignore[arg-type]
    assert out["status"] == "validating" and out["files"] == sorted(TASK["files"])
    first, second = coder.log.calls
    told = str(second.messages[-1].content)
    assert "tests/acceptance/ is the acceptance suite the tester wrote" in told
    assert "AskHuman(kind='test_contradiction')" in told and "format" not in told
    # Nothing of the refused answer was written; the suite on main is the tester's.
    assert (ws.worktree("T1") / SUITE_PATH).read_text() == SUITE
    assert suite_on_main(ws) == before
    assert [e for e in ws.events() if e.get("event") == "suite_edit_refused"]
    # The coder saw the criteria and the test file, read-only.
    prompt = prompt_text(first.messages)
    assert "F1.2: given the empty text, when words(''), then it returns 0" in prompt
    assert SUITE.strip() in prompt and f"{SUITE_PATH} (read-only, as on main)" in prompt


def test_the_fixer_sees_the_suite_and_may_contest_it(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    fixer = FunctionModel(fn=lambda m, i: GOOD)
    state = _state(ws, status="fixing", diagnostics=["tests/acceptance/test_f1.py:5: failed"])
    out = asyncio.run(coding.fix(state, Runtime(context=Context()), models=fixer))  # type: ignore[arg-type]
    assert out["status"] == "validating"
    (call,) = fixer.log.calls
    assert "AskHuman" in call.info.tools
    prompt = prompt_text(call.messages)
    assert "F1.1: given the text 'a b c'" in prompt and SUITE.strip() in prompt
    # A task with no suite on main shows none, and its fixer is offered no question.
    plain = FunctionModel(fn=lambda m, i: GOOD)
    state = _state(ws, status="fixing", requirements={}, diagnostics=[])
    asyncio.run(coding.fix(state, Runtime(context=Context()), models=plain))  # type: ignore[arg-type]
    assert "AskHuman" not in plain.log.calls[0].info.tools
    assert "ACCEPTANCE CRITERIA" not in prompt_text(plain.log.calls[0].messages)


def _contest_run(
    tmp_path: Path, verdict: dict[str, Any], then: Any = GOOD
) -> tuple[Workspace, Any, FunctionModel]:
    """Run T1: broken code, its fixer contests F1.2, the tester reviews; stop at the question.

    ``then`` is the fixer's answer after the person's.
    """
    ws = _workspace(tmp_path)
    fixes = iter([call_tool("AskHuman", {"kind": "test_contradiction", "question": CLAIM}), then])

    def reply(messages: list[BaseMessage], info: CallInfo) -> Any:
        if info.role == "tester":
            assert info.schema is ContestReview and info.activity == "review"
            return verdict
        return BROKEN if info.role == "coder" else next(fixes)

    models = FunctionModel.per_role(reply)
    graph = build_task_graph(models=models).copy(update={"checkpointer": InMemorySaver()})
    config = {"configurable": {"thread_id": "t1"}, "recursion_limit": 50}
    asyncio.run(graph.ainvoke(_state(ws), config, context=Context()))
    return ws, (graph, config), models["tester"]


def _resume(run: Any, answer: str) -> dict[str, Any]:
    graph, config = run
    return dict(asyncio.run(graph.ainvoke(Command(resume=answer), config, context=Context())))


@pytest.mark.usefixtures("smoke_gates")
def test_a_kept_test_goes_back_to_the_fixer_with_the_ruling(tmp_path: Path) -> None:
    right = {"verdict": "test_right", "reason": "F1.2 says words('') returns 0."}
    ws, run, tester = _contest_run(tmp_path, right)
    snap = asyncio.run(run[0].aget_state(run[1]))
    question = snap.interrupts[0].value
    assert question["kind"] == "test_contradiction"
    assert [o["key"] for o in question["options"]] == ["keep"]  # no revision to take
    assert CLAIM in question["detail"] and "the test is right. F1.2 says" in question["detail"]
    (review,) = tester.log.of(role="tester")
    told = prompt_text(review.messages)
    assert SUITE.strip() in told and CLAIM in told and "F1.2: given the empty text" in told
    assert "return -1" not in told  # the tester never sees the implementation
    out = _resume(run, "keep")
    assert out["status"] == "done", out.get("blocker")
    fixer_prompt = prompt_text(tester.log.of(role="fixer")[-1].messages)
    assert "A person kept the acceptance test in tests/acceptance/test_f1.py" in fixer_prompt
    assert len(tester.log.of(role="tester")) == 1  # the answer did not review it again
    assert suite_on_main(ws)[SUITE_PATH] == SUITE and len(_suite_commits(ws)) == 1


@pytest.mark.usefixtures("smoke_gates")
def test_a_revised_test_is_committed_as_the_testers_once_a_person_takes_it(tmp_path: Path) -> None:
    wrong = {"verdict": "test_wrong", "reason": "F1 leaves '' open.", "revised": REVISED}
    # After the answer the fixer asks something else: the task stops there, no second check.
    then = call_tool("AskHuman", {"kind": "design_decision", "question": "Anything else?"})
    ws, run, tester = _contest_run(tmp_path, wrong, then)
    question = asyncio.run(run[0].aget_state(run[1])).interrupts[0].value
    assert [o["key"] for o in question["options"]] == ["keep", "revise"]
    assert question["recommended"] == "revise" and "the test is wrong" in question["detail"]
    assert "+    assert words('   ') == 0" in question["detail"]  # the revision's diff
    assert len(_suite_commits(ws)) == 1  # nothing is committed before a person answers
    out = _resume(run, "revise")
    assert out["status"] == "waiting" and out["question"]["kind"] == "design_decision"
    revision, _ = _suite_commits(ws)
    changed = ws.git("show", "--name-only", "--format=", revision).split()
    assert changed == [SUITE_PATH] and suite_on_main(ws)[SUITE_PATH] == REVISED
    message = ws.git("log", "-1", "--format=%B", revision)
    assert "revised by the tester, approved by a person" in message
    assert ws.find_task_commit("acceptance-rev-T1-1") == revision
    fixer_prompt = prompt_text(tester.log.of(role="fixer")[-1].messages)
    assert "The test was revised" in fixer_prompt and "words('   ') == 0" in fixer_prompt
    assert len(tester.log.of(role="tester")) == 1


def test_tests_that_do_not_run_go_back_to_the_tester(tmp_path: Path) -> None:
    broken = SUITE.replace("def test_f1_2_empty_text_has_none() -> None:", "def test_f1_2_(:")
    ws = _workspace(tmp_path, broken)
    scope = Scope.model_validate(SCOPE)
    plan = Plan.model_validate({"tasks": [TASK], "interface": ["count.py: words(text) -> int"]})
    record = {
        "requirements": {"F1": {"file": SUITE_PATH, "tests": {}, "untestable": ""}},
        "results": {f"{SUITE_PATH}::test_f1_1_counts_three_words": "error"},
        "notes": ["written"],
    }
    errors = {SUITE_PATH: "SyntaxError: invalid syntax (test_f1.py, line 8)"}
    answers = iter([{"reason": "a typo", "text": broken}, {"reason": "a typo", "text": SUITE}] * 2)
    seen: list[str] = []

    def reply(messages: list[BaseMessage], info: CallInfo) -> Any:
        assert info.role == "tester" and info.schema is SuiteRepair
        seen.append(prompt_text(messages))
        return next(answers)

    tester = FunctionModel(fn=reply, role="tester")
    out = asyncio.run(repair_suite(ws, Context(), scope, plan, record, errors, tester))
    got = out["acceptance"]
    assert len(seen) == 2 and "syntax error" in seen[1]  # a still-broken repair is asked again
    assert "count.py: words(text) -> int" in seen[0] and "SyntaxError" in seen[0]
    assert suite_on_main(ws)[SUITE_PATH] == SUITE and got["commit"] == ws.head()
    assert ws.find_task_commit("acceptance-repair-1") == got["commit"] and got["repairs"] == 1
    assert got["requirements"]["F1"]["tests"] == {
        "test_f1_1_counts_three_words": "F1.1",
        "test_f1_2_empty_text_has_none": "F1.2",
    }
    assert got["results"][f"{SUITE_PATH}::test_f1_2_empty_text_has_none"] == "not_run"
    assert got["notes"][0] == "written" and "repair 1: the tester repaired" in got["notes"][1]
    # A resumed milestone (the same record) finds its repair on main: no second commit.
    again = asyncio.run(repair_suite(ws, Context(), scope, plan, record, errors, tester))
    assert again["acceptance"]["commit"] == got["commit"] and len(_suite_commits(ws)) == 2


def test_a_coders_claim_is_reviewed_too_and_an_unusable_review_still_asks(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    contest = call_tool("AskHuman", {"kind": "test_contradiction", "question": CLAIM})
    verdicts = iter([{"verdict": "test_right", "reason": "F1.2 says 0."}])

    def reply(messages: list[BaseMessage], info: CallInfo) -> Any:
        if info.role == "tester":
            # A 'test_wrong' with no revision never validates: asked again, then given up.
            return next(verdicts, {"verdict": "test_wrong", "reason": "r"})
        return contest

    models = FunctionModel.per_role(reply)
    runtime = Runtime(context=Context(max_output_retries=0))
    out = asyncio.run(coding.code(_state(ws), runtime, models=models))  # type: ignore[arg-type]
    question = out["question"]
    assert question["asked_by"] == "coder" and question["review"]["verdict"] == "test_right"
    (review,) = models["tester"].log.of(role="tester")
    assert "(nothing has run yet)" in prompt_text(review.messages)
    state = _state(ws, status="fixing", diagnostics=["tests/acceptance/test_f1.py: failed"])
    out = asyncio.run(coding.fix(state, runtime, models=models))  # type: ignore[arg-type]
    question = out["question"]
    assert question["kind"] == "test_contradiction" and question["asked_by"] == "fixer"
    assert "the tester's review could not be used" in question["detail"]
    assert [o["key"] for o in question["options"]] == ["keep"] and "review" not in question


def test_the_suites_folder_is_read_as_the_file_system_reads_it() -> None:
    for path in (
        "tests/x/../acceptance/test_f1.py",
        "./tests//acceptance/t.py",
        "tests/acceptance",
    ):
        assert is_suite_path(path), path
    assert not is_suite_path("tests/accept.py") and not is_suite_path("tests/test_acceptance.py")
    # Ids that are not plain letters and digits get a hash: no two share a file.
    assert suite_file("F1") == "tests/acceptance/test_f1.py"
    assert len({suite_file(i) for i in ("需求1", "要求1", "Req 1", "req_1")}) == 4
