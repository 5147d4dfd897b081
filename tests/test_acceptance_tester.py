"""The tester: criteria from scoping, the suite written before any code, people see it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import BaseMessage, HumanMessage

from oldnew.acceptance import SUITE_DIR
from oldnew.acceptance.checks import suite_problems
from oldnew.acceptance.criteria import NO_CRITERIA, NO_TEST, untestable_clarifications
from oldnew.acceptance.tester import write_tests
from oldnew.graph.build import build_graph
from oldnew.nodes.acceptance import AGAIN
from oldnew.planning.preview import preview_plan, show_preview
from oldnew.recovery.retry import RetryPolicy
from oldnew.runs import resume_run, start_run
from oldnew.runs.session import open_graph
from oldnew.schemas import AskHuman, Feature, Plan, Scope
from oldnew.testing import CallInfo, FunctionModel, prompt_text
from oldnew.workspace import Workspace

pytestmark = pytest.mark.usefixtures("smoke_gates")  # graph logic, not the gates

CRITERIA = [
    {"given": "the text 'b a b'", "when": "count('b a b') is called", "then": "it returns 3"},
    {"given": "an empty text", "when": "count('') is called", "then": "it returns 0"},
]
SCOPE = {
    "title": "counter",
    "summary": "Counts words.",
    "features": [{"id": "F1", "title": "count words", "criteria": CRITERIA}],
}
PLAN = {
    "tasks": [
        {
            "id": "T1",
            "title": "counter module",
            "description": "counter.py with count(text) -> int",
            "files": ["counter.py"],
            "requirement_ids": ["F1"],
        }
    ],
    "interface": ["counter.count(text: str) -> int: the number of words in text"],
}
CODE = (
    "FILE: counter.py\n```python\ndef count(text):\n    return len(text.split())\n```\n"
    "FILE: tests/test_counter.py\n```python\nfrom counter import count\n\n\n"
    "def test_count():\n    assert count('a b') == 2\n```\n"
)
GOOD = (
    "FILE: tests/acceptance/test_f1.py\n```python\nfrom counter import count\n\n\n"
    "def test_f1_1_counts_repeated_words():\n    assert count('b a b') == 3\n\n\n"
    "def test_f1_2_empty_text_has_none():\n    assert count('') == 0\n```\n"
)
README = "FILE: README.md\n```markdown\n# counter\n\nPrints counts plainly.\n```\n"
BAD_REPLIES = {
    "names no criterion": GOOD.replace("def test_f1_2_", "def test_"),
    "syntax error": GOOD.replace("assert count('') == 0", "assert count(''] == 0"),
    "is outside tests/acceptance/": GOOD + "FILE: counter.py\n```python\nX = 1\n```\n",
}


GATE = {"approvals": "design"}
"""Runs stop at the design gate: the suite is written by then, and no code is."""


def _scope_file(tmp_path: Path) -> Path:
    path = tmp_path / "scope.md"
    path.write_text("# counter\n\nCount the words of a text.\n")
    return path


def _models(
    scope: dict[str, Any] = SCOPE, tester: list[Any] | None = None
) -> dict[str, FunctionModel]:
    replies = list(tester or [GOOD])

    def reply(messages: list[BaseMessage], info: CallInfo) -> Any:
        if info.schema is Scope:
            return scope
        if info.schema is Plan:
            extra = [f["id"] for f in scope["features"][1:]]
            docs = {"id": "T2", "title": "readme", "description": "README.md on the output"}
            docs |= {"files": ["README.md"], "requirement_ids": extra, "depends_on": ["T1"]}
            return {**PLAN, "tasks": [*PLAN["tasks"], *([docs] if extra else [])]}
        if info.role == "tester":
            return replies.pop(0) if len(replies) > 1 else replies[0]
        return README if info.task == "T2" else CODE

    return FunctionModel.per_role(reply)


def _values(ws: Path) -> dict[str, Any]:
    async def read() -> dict[str, Any]:
        w = Workspace.open(ws)
        run_id = str((w.run_info() or {})["run_id"])
        async with open_graph(w) as graph:
            snap = await graph.aget_state({"configurable": {"thread_id": run_id}})
            return dict(snap.values)

    return asyncio.run(read())


def _git(ws: Path, *args: str) -> str:
    return Workspace.open(ws).git(*args)


def test_the_tester_writes_the_suite_before_any_code_and_the_design_gate_shows_it(
    tmp_path: Path,
) -> None:
    models = _models()
    ws = tmp_path / "ws"
    out = asyncio.run(start_run(_scope_file(tmp_path), ws, models=models, context=GATE))
    assert out.status == "waiting"
    (gate,) = out.questions
    assert gate["gate"] == "design"
    assert "F1.1: given the text 'b a b', when count('b a b') is called" in gate["detail"]
    assert "test_f1_2_empty_text_has_none (F1.2)" in gate["detail"]
    log = models["tester"].log
    assert log.of(role="coder") == []  # the suite and the gate come before any code
    (tester,) = log.of(role="tester")
    assert tester.info.activity == "acceptance"
    prompt = prompt_text(tester.messages)
    assert "ACCEPTANCE TESTS FOR REQUIREMENT F1: count words" in prompt
    assert "PROJECT: counter" in prompt
    assert "F1.2: given an empty text, when count('') is called, then it returns 0" in prompt
    assert "counter.count(text: str) -> int" in prompt  # the plan's interface
    record = _values(ws)["acceptance"]
    assert record["status"] == "written" and record["plan_version"] == 1
    assert record["requirements"]["F1"] == {
        "file": "tests/acceptance/test_f1.py",
        "tests": {
            "test_f1_1_counts_repeated_words": "F1.1",
            "test_f1_2_empty_text_has_none": "F1.2",
        },
        "untestable": "",
    }
    assert _git(ws, "show", "--name-only", "--format=%s", record["commit"]).split("\n") == [
        "Acceptance suite written by the tester (F1)",
        "",
        "tests/acceptance/test_f1.py",
    ]
    assert "test_f1_2_empty_text_has_none" in _git(ws, "show", f"main:{SUITE_DIR}/test_f1.py")
    done = asyncio.run(resume_run(ws, answers={gate["id"]: "approve"}, models=models))
    assert done.status == "delivered"
    assert len(log.of(role="tester")) == 1  # not written again
    assert "len(text.split())" not in prompt  # the code the coder then wrote
    assert "len(text.split())" in _git(ws, "show", "main:counter.py")
    on_main = _git(ws, "log", "--format=%s", "main", "--", SUITE_DIR).splitlines()
    assert on_main == ["Acceptance suite written by the tester (F1)"]  # one commit, the tester's


@pytest.mark.parametrize("problem", sorted(BAD_REPLIES))
def test_a_bad_reply_is_asked_again_with_its_problem_then_accepted(
    tmp_path: Path, problem: str
) -> None:
    replies = [BAD_REPLIES[problem], GOOD]
    model = FunctionModel(fn=lambda m, i: replies.pop(0), role="tester")
    req = Feature.model_validate(SCOPE["features"][0])
    files = asyncio.run(
        write_tests(
            model.bind_tools([AskHuman]),
            [HumanMessage("write the tests of F1")],
            req,
            known=set(),
            root=tmp_path,
            retries=2,
            policy=RetryPolicy(),
        )
    )
    assert isinstance(files, dict) and sorted(files) == ["tests/acceptance/test_f1.py"]
    assert list(tmp_path.iterdir()) == []  # nothing written: the node commits
    first, again = model.log.calls
    retry = str(again.messages[-1].content)  # the prompt once more, then what went wrong
    assert "could not be used" not in prompt_text(first.messages)
    assert "could not be used" in retry and problem in retry


def test_suite_problems_name_each_fault() -> None:
    req = Feature.model_validate(SCOPE["features"][0])
    assert (
        suite_problems({"tests/acceptance/test_f1.py": GOOD.split("```python\n")[1][:-4]}, req)
        == []
    )
    opens = "def test_f1_1_x():\n    open('data/in.txt')\n\ndef test_f1_2_y():\n    pass\n"
    found = suite_problems({"tests/acceptance/test_f1.py": opens}, req)
    assert len(found) == 1 and "'data/in.txt'" in found[0]
    assert suite_problems({"tests/acceptance/test_f1.py": opens}, req, {"data/in.txt"}) == []
    missing = suite_problems({"tests/acceptance/test_f1.py": "def test_f1_1_x():\n    pass\n"}, req)
    assert missing == ["no test checks F1.2: write one named test_f1_2_<words>"]
    outside = suite_problems({"../tests/acceptance/test_f1.py": opens}, req)
    assert any("outside tests/acceptance/" in p for p in outside)


def test_an_untestable_requirement_becomes_a_clarification_with_its_default(
    tmp_path: Path,
) -> None:
    scope = {
        **SCOPE,
        "features": [
            *SCOPE["features"],
            {"id": "F2", "title": "pleasant output", "untestable": "a matter of taste"},
        ],
    }
    (asked,) = untestable_clarifications(Scope.model_validate(scope))
    assert asked.default == NO_TEST.format(rid="F2") and "F2" in asked.question
    models = _models(scope)
    ws = tmp_path / "ws"
    auto = {"defaults": "auto", **GATE}
    out = asyncio.run(start_run(_scope_file(tmp_path), ws, models=models, context=auto))
    assert out.status == "waiting"  # at the design gate
    values = _values(ws)
    (q,) = [q for q in values["questions"].values() if q["kind"] == "clarification"]
    assert q["decided_by"] == "default" and q["answer"] == NO_TEST.format(rid="F2")
    assert "a matter of taste" in q["detail"]
    f2 = values["acceptance"]["requirements"]["F2"]
    assert f2 == {"file": "", "tests": {}, "untestable": "a matter of taste"}
    (tester,) = models["tester"].log.of(role="tester")  # F1 only
    assert "REQUIREMENT F1" in prompt_text(tester.messages)


def test_a_scope_without_criteria_asks_nothing_and_writes_no_suite(tmp_path: Path) -> None:
    bare = {**SCOPE, "features": [{"id": "F1", "title": "count words"}]}
    models = _models(bare)
    ws = tmp_path / "ws"
    out = asyncio.run(start_run(_scope_file(tmp_path), ws, models=models, context=GATE))
    (gate,) = out.questions
    assert gate["gate"] == "design" and "tests (" not in gate["detail"]
    assert models["tester"].log.of(role="tester") == []
    values = _values(ws)
    assert values["acceptance"] == {"status": "none", "notes": [NO_CRITERIA]}
    assert not [q for q in values["questions"].values() if q["kind"] == "clarification"]
    events = [json.loads(e) for e in (ws / ".oldnew" / "events.jsonl").read_text().splitlines()]
    assert any(e.get("event") == "notice" and e.get("detail") == NO_CRITERIA for e in events)


def test_acceptance_off_calls_no_tester(tmp_path: Path) -> None:
    models = _models()
    ws = tmp_path / "ws"
    out = asyncio.run(
        start_run(_scope_file(tmp_path), ws, models=models, context={"acceptance": False, **GATE})
    )
    (gate,) = out.questions
    assert gate["gate"] == "design" and "acceptance tests are off" in gate["detail"]
    assert models["tester"].log.of(role="tester") == []
    assert _values(ws)["acceptance"]["status"] == "off"
    assert SUITE_DIR not in _git(ws, "ls-tree", "-r", "--name-only", "main")


def test_the_tester_asks_a_person_and_writes_with_the_answer(tmp_path: Path) -> None:
    ask = {"question": "Where is the sample text the criteria read?", "kind": "configuration"}
    from oldnew.testing import call_tool

    models = _models(tester=[call_tool("AskHuman", ask), GOOD])
    ws = tmp_path / "ws"
    out = asyncio.run(start_run(_scope_file(tmp_path), ws, models=models, context=GATE))
    (q,) = out.questions  # the design gate waits for the suite
    assert q["id"] == "acceptance-F1-1" and q["title"] == ask["question"]
    done = asyncio.run(resume_run(ws, answers={q["id"]: "it is inline"}, models=models))
    (gate,) = done.questions
    assert gate["gate"] == "design" and "test_f1_1_counts_repeated_words" in gate["detail"]
    again = models["tester"].log.of(role="tester")[-1]
    assert "it is inline" in prompt_text(again.messages)


def test_oldnew_plan_prints_the_criteria() -> None:
    from io import StringIO

    from rich.console import Console

    from oldnew.context import Context

    model = FunctionModel(fn=lambda m, i: SCOPE if i.schema is Scope else PLAN)
    preview = asyncio.run(preview_plan("# counter\n\nCount words.\n", model, Context()))
    buf = StringIO()
    show_preview(preview, Console(file=buf, width=200))
    shown = buf.getvalue()
    assert "F1.2: given an empty text, when count('') is called, then it returns 0" in shown
    assert "tests: written when the run starts" in shown
    assert "counter.count(text: str) -> int" in shown
    assert preview.to_dict()["criteria"]["F1"][0].startswith("F1.1: given the text")


def test_graph_has_the_acceptance_node_between_plan_and_baseline() -> None:
    drawn = build_graph().get_graph()
    outs = {(e.source, e.target) for e in drawn.edges}
    assert ("plan", "acceptance") in outs and ("acceptance", "baseline") in outs


def test_a_run_killed_after_the_suites_commit_finds_it_and_asks_the_tester_nothing(
    tmp_path: Path,
) -> None:
    from langgraph.runtime import Runtime

    from oldnew.context import Context
    from oldnew.nodes.acceptance import acceptance

    models = _models()
    ws = tmp_path / "ws"
    asyncio.run(start_run(_scope_file(tmp_path), ws, models=models, context=GATE))
    values = _values(ws)
    written = values.pop("acceptance")  # as if killed between the commit and the checkpoint
    values["questions"] = {}
    run_id = str((Workspace.open(ws).run_info() or {})["run_id"])
    runtime = Runtime(context=Context(workspace=str(ws)))
    again = asyncio.run(
        acceptance(values, runtime, {"configurable": {"thread_id": run_id}}, models=models)  # type: ignore[arg-type]
    )
    assert len(models["tester"].log.of(role="tester")) == 1  # the first run's call only
    assert again["acceptance"]["commit"] == written["commit"]
    assert again["acceptance"]["requirements"] == written["requirements"]


def test_replies_that_stay_unusable_go_to_a_person_who_may_choose_no_test(tmp_path: Path) -> None:
    models = _models(tester=[BAD_REPLIES["syntax error"]])
    ws = tmp_path / "ws"
    out = asyncio.run(start_run(_scope_file(tmp_path), ws, models=models, context=GATE))
    (q,) = out.questions
    assert q["id"] == "acceptance-F1-1" and "syntax error" in q["detail"]
    assert [o["key"] for o in q["options"]] == [AGAIN, NO_TEST.format(rid="F1")]
    calls = len(models["tester"].log.of(role="tester"))
    assert calls == 3  # the first reply and max_output_retries (2) more
    done = asyncio.run(resume_run(ws, answers={q["id"]: NO_TEST.format(rid="F1")}, models=models))
    assert [g["gate"] for g in done.questions] == ["design"]
    assert len(models["tester"].log.of(role="tester")) == calls  # not asked again
    f1 = _values(ws)["acceptance"]["requirements"]["F1"]
    assert f1 == {"file": "", "tests": {}, "untestable": "a person chose no acceptance test"}


@pytest.mark.parametrize(
    ("extra", "after_plan", "where"),
    [
        ({}, "acceptance", "acceptance"),
        ({"acceptance": {"status": "off"}}, "baseline", "baseline"),
        ({"acceptance": {"requirements": {"F1": {"file": "x"}}}}, "baseline", "baseline"),
        (
            {"questions": {"acceptance-F1-1": {"status": "pending", "kind": "x"}}},
            "baseline",
            "ask",
        ),
    ],
)
def test_routing_sends_a_valid_plan_to_the_tester_while_a_suite_is_due(
    extra: dict[str, Any], after_plan: str, where: str
) -> None:
    from oldnew.graph import routing

    state: Any = {"scope": SCOPE, "plan": PLAN, **extra}
    assert routing.after_plan(state) == after_plan
    assert routing.where_it_stands(state) == where
    assert routing.after_acceptance(state) == ("ask" if where == "ask" else "baseline")
    bare: Any = {"scope": {**SCOPE, "features": [{"id": "F1", "title": "x"}]}, "plan": PLAN}
    assert routing.after_plan(bare) == "baseline"


def test_a_person_who_describes_a_test_gives_the_requirement_its_criterion() -> None:
    from oldnew.acceptance.criteria import DESCRIBE, testable, untestable_question

    scope = Scope.model_validate(
        {**SCOPE, "features": [*SCOPE["features"], {"id": "F2", "title": "prints a summary"}]}
    )
    f2 = scope.features[1]
    asked = untestable_question(f2)

    def answered(answer: str) -> dict[str, dict[str, Any]]:
        q = {"kind": "clarification", "status": "answered", "title": asked, "answer": answer}
        return {"clarify-1": q}

    assert sorted(testable(scope, answered(NO_TEST.format(rid="F2")))) == ["F1"]
    assert sorted(testable(scope, answered(DESCRIBE))) == ["F1"]
    described = testable(scope, answered("the summary line reads 'words: 3'"))["F2"]
    (criterion,) = described.criteria
    assert criterion.id == "F2.1" and criterion.then == "the summary line reads 'words: 3'"


def test_the_tester_prompt(snapshot: Any) -> None:
    from oldnew.acceptance.tester import Brief, tester_messages

    scope = Scope.model_validate(SCOPE)
    brief = Brief(
        scope=scope,
        requirement=scope.features[0],
        kind="feature",
        plan=Plan.model_validate(PLAN),
        answers=["What is a word? -> a run of non-blanks (taken by default)"],
        supporting=[{"path": "samples/in.txt", "type": "text", "size": 6, "text": "b a b\n"}],
        asked=["Where is the sample? -> samples/in.txt"],
    )
    system, user = (str(m.content) for m in tester_messages(brief))
    assert system == snapshot(name="tester system")
    assert user == snapshot(name="tester user")
