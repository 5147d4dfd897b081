"""The acceptance gate: the tester's suite, from main, judges the code; no other gate sees it.

Real sandbox runs, each small: the shared runner's classification (the code's failures against
the tester's tests that do not run), a validation whose other gates never see the suite, and
the milestone of a non-web run with a suite (written to main directly, with the run's record
set by hand: the tester's node is not what these tests show), whose failing test becomes a fix
task for the serving task's role and files that passes the gate once the code is fixed.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from langgraph.runtime import Runtime

from oldnew import milestones
from oldnew.acceptance.run import classify, run_tests
from oldnew.acceptance.store import commit_suite
from oldnew.context import Context
from oldnew.gates import resolve_profile, validate_tree
from oldnew.gates.acceptance import AcceptanceSuite
from oldnew.gates.runner import reuse_key
from oldnew.nodes import checks, milestone
from oldnew.sandbox import Sandbox
from oldnew.schemas import Plan
from oldnew.workspace import Workspace

pytestmark = pytest.mark.usefixtures("smoke_gates")

WC = (
    "def count(text):\n    return len(text.split())\n\n\ndef boom():\n    raise ValueError('bad')\n"
)
# Code whose failures read like the tester's faults: the deepest frame decides, not the words.
MIMIC = (
    "import pytest\n\n\ndef fixture():\n    raise ValueError(\"fixture 'words' not found\")\n\n\n"
    "def module():\n    raise RuntimeError(\"No module named 'json.nope'\")\n\n\n"
    "def name():\n    raise ImportError(\"cannot import name 'x' from 'os'\")\n\n\n"
    "def skip():\n    pytest.skip('not applicable')\n"
)
FORGE = (
    "import pytest\n\n\n@pytest.hookimpl(hookwrapper=True)\n"
    "def pytest_runtest_makereport(item, call):\n    out = yield\n"
    "    rep = out.get_result()\n    rep.outcome = 'passed'\n    rep.longrepr = None\n\n\n"
    "def pytest_collection_modifyitems(config, items):\n    items[:] = items[:1]\n"
)
SUITE = {
    "tests/acceptance/test_f1.py": (
        "import pytest\nfrom wc import boom, count\n\n\n"
        "def test_f1_1_counts():\n    assert count('a b') == 2\n\n\n"
        "def test_f1_2_wrong():\n    assert count('a b') == 3\n\n\n"
        "def test_f1_3_raises():\n    boom()\n\n\n"
        "def test_f1_4_fixture(no_such_fixture):\n    pass\n\n\n"
        "def test_f1_5_data():\n    open('data/sample.txt').read()\n\n\n"
        "def test_f1_6_name():\n    undefined_helper()\n\n\n"
        "@pytest.mark.parametrize('n', [1, 2])\n"
        "def test_f1_7_cases(n):\n    assert count('a') == n\n\n\n"
        "class TestWords:\n    def test_f1_8_in_a_class(self):\n        assert count('') == 0\n"
    ),
    "tests/acceptance/test_f2.py": (
        "from wordcount import top\n\n\ndef test_f2_1_top():\n    top()\n"
    ),
    "tests/acceptance/test_f3.py": "def test_f3_1_x(:\n    pass\n",
    "tests/acceptance/test_f4.py": (
        "import mimic\n\n\ndef test_f4_1_a():\n    mimic.fixture()\n\n\n"
        "def test_f4_2_b():\n    mimic.module()\n\n\ndef test_f4_3_c():\n    mimic.name()\n\n\n"
        "def test_f4_4_d():\n    mimic.skip()\n"
    ),
    "tests/acceptance/test_f5.py": "X = 1\n",  # defines no test: the tester's
}


def _project(root: Path, files: dict[str, str]) -> Path:
    Workspace.write_files(root, files)
    return root


def test_the_runner_tells_the_codes_failures_from_the_testers_tests_that_do_not_run(
    tmp_path: Path,
) -> None:
    # The project's conftest passes every test and deselects all but one: it is never read.
    tree = _project(tmp_path / "p", {"wc.py": WC, "mimic.py": MIMIC, "conftest.py": FORGE})
    with Sandbox.open(tree) as box:
        run = run_tests(box, SUITE, timeout=60)
    f1 = "tests/acceptance/test_f1.py::test_f1_"
    assert run.results == {
        f"{f1}1_counts": "passed",
        f"{f1}2_wrong": "failed",  # an assertion
        f"{f1}3_raises": "failed",  # raised from the project's code
        f"{f1}4_fixture": "error",  # a fixture that does not exist
        f"{f1}5_data": "error",  # a file the test opens is missing
        f"{f1}6_name": "error",  # a name the test's own module lacks
        f"{f1}7_cases[1]": "passed",  # each case its own
        f"{f1}7_cases[2]": "failed",
        "tests/acceptance/test_f1.py::TestWords::test_f1_8_in_a_class": "passed",
        # The interface is not built: the code's.
        "tests/acceptance/test_f2.py::test_f2_1_top": "failed",
        "tests/acceptance/test_f3.py": "error",  # the test file does not parse
        "tests/acceptance/test_f4.py::test_f4_1_a": "failed",
        "tests/acceptance/test_f4.py::test_f4_2_b": "failed",
        "tests/acceptance/test_f4.py::test_f4_3_c": "failed",
        "tests/acceptance/test_f4.py::test_f4_4_d": "not_run",
        "tests/acceptance/test_f5.py": "error",
    }, run.messages
    # The project's code skipped it: the code's to answer for, not the tester's.
    assert run.messages["tests/acceptance/test_f4.py::test_f4_4_d"].startswith(
        "the project's code skipped it"
    )
    assert run.error == ""
    assert "assert 2 == 3" in run.messages[f"{f1}2_wrong"]
    assert "no_such_fixture" in run.messages[f"{f1}4_fixture"]
    assert "data/sample.txt" in run.messages[f"{f1}5_data"]
    assert "'wordcount'" in run.messages["tests/acceptance/test_f2.py::test_f2_1_top"]
    assert "does not parse" in run.messages["tests/acceptance/test_f3.py"]
    # A third-party package the project's environment lacks (oldnew's has it): the tester's;
    # a module nobody has is the project's interface, not built yet.
    hidden = tmp_path / "h"
    for module, who in (("yaml", "error"), ("json.nothing", "error"), ("wordcount", "failed")):
        text = f"E   ModuleNotFoundError: No module named '{module}'"
        assert classify(text, "collection failure", hidden, tree)[0] == who, module


def test_the_other_gates_never_see_the_suite_and_the_gate_runs_mains_copy(tmp_path: Path) -> None:
    # The tree's own suite file would fail pytest and the import gate (an interface not built
    # yet); the copy given as main's is what the acceptance gate runs.
    own = "from notbuilt import thing\n\n\ndef test_f1_1_x():\n    assert thing()\n"
    tree = _project(
        tmp_path / "p",
        {
            "wc.py": WC,
            "tests/test_wc.py": "from wc import count\n\n\ndef test_c():\n    assert count('a')\n",
            "tests/acceptance/test_f1.py": own,
        },
    )
    main = {
        "tests/acceptance/test_f1.py": "from wc import count\n\n\n"
        "def test_f1_1_counts():\n    assert count('a b c') == 3\n\n\n"
        "def test_f1_2_empty():\n    assert count('') == 1\n"
    }
    suite = AcceptanceSuite(main, ("F1",))
    result = validate_tree(tree, timeout=60, quality="smoke", acceptance=suite)
    status = {c.name: c.status for c in result.checks}
    assert status["imports"] == status["pytest"] == "passed", result.diagnostics
    assert result.check("pytest").metrics["tests"] == 1  # type: ignore[union-attr]
    check = result.check("acceptance")
    assert check is not None and check.status == "failed"
    assert check.metrics["results"] == {
        "tests/acceptance/test_f1.py::test_f1_1_counts": "passed",
        "tests/acceptance/test_f1.py::test_f1_2_empty": "failed",
    }
    (diag,) = [d for d in result.diagnostics if d.tool == "acceptance"]
    assert diag.file == "tests/acceptance/test_f1.py" and diag.line == 8
    assert diag.message.startswith("F1.2 test_f1_2_empty: ")
    # Without a suite given, nothing runs the tester's tests: the tree passes.
    assert validate_tree(tree, timeout=60, quality="smoke").passed


# -- a non-web run with a suite: its MVP milestone ----------------------------------------------

TOP = "def top(words):\n    return sorted(words)[:1]\n"
TOP_FIXED = "def top(words):\n    return sorted(words, key=words.count, reverse=True)[:1]\n"
OWN_TEST = "from top import top\n\n\ndef test_top():\n    assert top(['a']) == ['a']\n"
ACCEPT = (
    "from top import top\n\n\n"
    "def test_f1_1_single():\n    assert top(['a']) == ['a']\n\n\n"
    "def test_f1_2_most_frequent_first():\n    assert top(['a', 'b', 'b']) == ['b']\n"
)
SCOPE = {
    "title": "top words",
    "summary": "the most frequent word",
    "stack": "python",
    "language": "python",
    "features": [
        {
            "id": "F1",
            "title": "top word",
            "criteria": [
                {"given": "['a']", "when": "top(words) is called", "then": "it returns ['a']"},
                {
                    "given": "['a', 'b', 'b']",
                    "when": "top(words) is called",
                    "then": "it returns ['b']",
                },
            ],
        },
        {"id": "F2", "title": "docs"},
    ],
}
PLAN = {
    "tasks": [
        {
            "id": "T1",
            "title": "top",
            "description": "top()",
            "role": "backend",
            "files": ["top.py", "tests/test_top.py"],
            "requirement_ids": ["F1"],
        },
        {
            "id": "T2",
            "title": "readme",
            "description": "docs",
            "role": "docs",
            "files": ["README.md"],
            "requirement_ids": ["F2"],
            "depends_on": ["T1"],
        },
    ]
}
RECORD = {
    "status": "written",
    "plan_version": 1,
    "requirements": {
        "F1": {
            "file": "tests/acceptance/test_f1.py",
            "tests": {"test_f1_1_single": "F1.1", "test_f1_2_most_frequent_first": "F1.2"},
            "untestable": "",
        }
    },
}


def _commit(ws: Workspace, files: dict[str, str], message: str) -> str:
    Workspace.write_files(ws.root, files)
    ws.git("add", "-A")
    ws.git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message)
    return ws.head()


def _run(tmp_path: Path, suite: dict[str, str]) -> tuple[Workspace, dict[str, Any], Context]:
    ws = Workspace.create(tmp_path / "ws", "r1", {})
    _commit(ws, {"top.py": TOP, "tests/test_top.py": OWN_TEST, "README.md": "top\n"}, "T1, T2")
    commit = commit_suite(ws, suite, "acceptance-1", "Acceptance suite (tester)")
    state: dict[str, Any] = {
        "scope": SCOPE,
        "plan": PLAN,
        "tasks": {"T1": {"status": "done"}, "T2": {"status": "done"}},
        "acceptance": {**RECORD, "commit": commit},
    }
    ctx = Context(
        model="scripted:x", memory_path="off", workspace=str(ws.root), preview_port=0, deps="auto"
    )
    return ws, state, ctx


def _check(state: dict[str, Any], ctx: Context) -> dict[str, Any]:
    runtime = Runtime(context=ctx)
    config = {"configurable": {"thread_id": "r1"}}
    update: dict[str, Any] = asyncio.run(milestone.milestone(state, runtime, config))  # type: ignore[arg-type]
    return update


def _merge(state: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = {**state, **{k: v for k, v in update.items() if k not in ("milestones", "acceptance")}}
    out["milestones"] = {**state.get("milestones", {}), **update.get("milestones", {})}
    out["acceptance"] = {**state.get("acceptance", {}), **update.get("acceptance", {})}
    return out


def test_a_failing_acceptance_test_becomes_a_fix_task_that_passes_once_fixed(
    tmp_path: Path,
) -> None:
    ws, state, ctx = _run(tmp_path, {"tests/acceptance/test_f1.py": ACCEPT})
    plan = Plan.model_validate(state["plan"])
    assert milestones.milestones_of(plan, state) == [("mvp", ["T1", "T2"])]  # not a web app
    assert milestones.milestones_of(plan, {**state, "acceptance": {"status": "off"}}) == []
    assert milestones.due(state) == "mvp"
    update = _check(state, ctx)
    record = update["milestones"]["mvp"]
    assert record["status"] == "fixing" and record["fix_task"] == "mvp-fix1"
    key = "tests/acceptance/test_f1.py::test_f1_2_most_frequent_first"
    assert update["acceptance"]["results"] == {
        "tests/acceptance/test_f1.py::test_f1_1_single": "passed",
        key: "failed",
    }
    assert update["acceptance"]["checked"] == ws.head()
    fix = Plan.model_validate(update["plan"]).tasks[-1]
    # The serving task's role and files, for the failing requirement only; never the suite.
    assert (fix.requirement_ids, fix.role, fix.files) == (
        ["F1"],
        "backend",
        ["top.py", "tests/test_top.py"],
    )
    assert fix.milestone == "mvp"
    assert "F1.2: given ['a', 'b', 'b'], when top(words) is called" in fix.description
    assert key in fix.description and "test_contradiction" in fix.description

    # The fix task is validated with main's acceptance tests, not its own copy of them.
    task_state: Any = {"task": fix.model_dump(), "workspace": str(ws.root)}
    options = checks.task_gate_options(task_state, ws, "mvp-fix1-01")
    assert options["acceptance"].requirements == ("F1",)
    tree = ws.worktree("mvp-fix1")
    silenced = "def test_f1_2_most_frequent_first():\n    pass\n"
    Workspace.write_files(tree, {"tests/acceptance/test_f1.py": silenced})
    assert not checks.run_gates(ctx, tree, None, ws, **options).passed
    Workspace.write_files(tree, {"top.py": TOP_FIXED, "tests/acceptance/test_f1.py": ACCEPT})
    assert checks.run_gates(ctx, tree, None, ws, **options).passed

    # Merged, the milestone is checked again and reached: tagged, its results current.
    head = _commit(ws, {"top.py": TOP_FIXED}, "mvp-fix1")
    state = _merge(state, update)
    state["tasks"] = {**state["tasks"], "mvp-fix1": {"status": "done"}}
    assert milestones.due(state) == "mvp"
    again = _check(state, ctx)
    assert again["milestones"]["mvp"]["status"] == "reached"
    assert again["milestones"]["mvp"]["tag"] == "mvp"
    assert set(again["acceptance"]["results"].values()) == {"passed"}
    assert again["acceptance"]["checked"] == head
    assert milestones.due(_merge(state, again)) is None


BROKEN = "def test_f1_1_single(no_such_fixture):\n    pass\n"


def test_tests_that_do_not_run_go_to_the_tester_not_a_coder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws, state, ctx = _run(tmp_path, {"tests/acceptance/test_f1.py": BROKEN})
    key = "tests/acceptance/test_f1.py::test_f1_1_single"
    # No repair step yet: the milestone fails, saying whose the tests are; no coder's task.
    monkeypatch.setattr(milestone, "_repair_hook", lambda: None)
    update = _check(state, ctx)
    record = update["milestones"]["mvp"]
    assert "plan" not in update and record["fix_task"] == ""
    assert record["status"] == "failed"
    assert record["reason"].startswith("the tester's tests do not run: " + key)
    assert "no_such_fixture" in record["suite_errors"][key]
    assert update["acceptance"]["results"] == {key: "error"}

    # With the tester's repair step, it gets the errors and its update joins the node's.
    calls: list[dict[str, str]] = []

    async def repair(*args: Any) -> dict[str, Any]:
        calls.append(args[5])
        return {"acceptance": {"commit": "repaired"}}

    monkeypatch.setattr(milestone, "_repair_hook", lambda: repair)
    update = _check(state, ctx)
    assert calls == [{key: update["milestones"]["mvp"]["suite_errors"][key]}]
    assert update["milestones"]["mvp"]["status"] == "fixing"
    assert update["acceptance"]["commit"] == "repaired"
    assert update["acceptance"]["results"] == {key: "error"}


def test_a_web_apps_phases_run_the_tests_of_the_requirements_they_complete(
    tmp_path: Path,
) -> None:
    tasks = [
        {"id": "M", "title": "m", "description": "m", "requirement_ids": ["F1", "F2"]},
        {"id": "E", "title": "e", "description": "e", "requirement_ids": ["F2", "F3"]},
    ]
    for task, phase in zip(tasks, ("mvp", "enhanced"), strict=True):
        task["phase"] = phase
    plan = Plan.model_validate({"tasks": tasks})
    files = {f"F{n}": {"file": f"tests/acceptance/test_f{n}.py"} for n in (1, 2, 3, 4)}
    state: dict[str, Any] = {
        "scope": {"stack": "python-web"},
        "acceptance": {"status": "written", "requirements": files},
    }
    assert milestones.milestones_of(plan, state) == [("mvp", ["M"]), ("enhanced", ["M", "E"])]
    # F2 is served by E too: not at the MVP. At the last milestone every one, F4 (no task) too.
    assert milestones.acceptance_requirements(plan, state, "mvp") == ["F1"]
    assert milestones.acceptance_requirements(plan, state, "enhanced") == ["F1", "F2", "F3", "F4"]
    # The reuse key follows the suite's content: a revised test validates again.
    tree = _project(tmp_path / "p", {"wc.py": WC})
    profile = resolve_profile("smoke")
    keys = {
        reuse_key(tree, profile, None, 60, acceptance=AcceptanceSuite({path: text}, ("F1",)))
        for path, text in [
            ("tests/acceptance/test_f1.py", "a"),
            ("tests/acceptance/test_f1.py", "b"),
        ]
    }
    assert len(keys | {reuse_key(tree, profile, None, 60)}) == 3
