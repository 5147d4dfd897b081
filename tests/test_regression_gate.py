"""A bug fix's test is run on the tree before the fix, where it must fail, and after it."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from oldnew.gates import PROFILES, validate_tree
from oldnew.gates.regression import (
    CHANGE,
    TaskChange,
    changed_lines,
    conftest_import_error,
    gate_regression,
    new_tests,
    task_change,
)
from oldnew.nodes import checks
from oldnew.workspace import Workspace

BUGGY = {
    "calc.py": (
        "def clamp(n: int, low: int, high: int) -> int:\n"
        '    """Return n within [low, high]."""\n'
        "    return max(low, n)\n"
    ),
    "tests/test_calc.py": (
        "from calc import clamp\n\n\ndef test_low():\n    assert clamp(-1, 0, 5) == 0\n"
    ),
}
FIXED = "calc.py", BUGGY["calc.py"].replace("max(low, n)", "min(high, max(low, n))")
REPRODUCES = "\n\ndef test_high():\n    assert clamp(9, 0, 5) == 5\n"
MISSES = "\n\ndef test_inside():\n    assert clamp(3, 0, 5) == 3\n"
PROFILE = dataclasses.replace(PROFILES["default"], gates=("syntax", "imports", "pytest"))


def _repo(root: Path) -> Path:
    for name, text in BUGGY.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    for argv in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "base"]):
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@t", *argv], cwd=root, check=True
        )
    return root


def _git(root: Path, *argv: str) -> str:
    proc = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *argv],
        cwd=root,
        check=True,
        capture_output=True,
        text=True,
    )
    return proc.stdout.strip()


def _fix(root: Path, files: dict[str, str], main: str = "HEAD") -> object:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    change = task_change(root, main=main)
    return validate_tree(root, timeout=60, profile=PROFILE, change=change)


def _outcomes(result: object) -> dict[str, tuple[str, str]]:
    check = result.check("regression")  # type: ignore[attr-defined]
    return {t["id"]: (t["before"], t["after"]) for t in check.metrics["tests"]}


def _messages(result: object) -> list[str]:
    return [d.message for d in result.diagnostics if d.tool == "regression"]  # type: ignore[attr-defined]


def test_a_test_that_passes_before_the_fix_is_rejected(tmp_path: Path) -> None:
    tree = _repo(tmp_path / "p")
    test = BUGGY["tests/test_calc.py"] + MISSES
    result = _fix(tree, {FIXED[0]: FIXED[1], "tests/test_calc.py": test})
    check = result.check("regression")  # type: ignore[attr-defined]
    assert check is not None and check.status == "failed" and not result.passed  # type: ignore[attr-defined]
    assert check.metrics["tests"] == [
        {
            "id": "tests/test_calc.py::test_inside",
            "before": "passed",
            "before_detail": "",
            "after": "passed",
            "ran_changed": ["calc.py:3"],
        }
    ]
    assert check.metrics["restored"] == ["calc.py"]
    (diag,) = [d for d in result.diagnostics if d.tool == "regression"]  # type: ignore[attr-defined]
    assert (diag.file, diag.line) == ("tests/test_calc.py", 8)
    assert "your test does not reproduce the bug: it passes on the tree before your change" in (
        diag.message
    )


def test_a_test_that_fails_before_and_passes_after_is_accepted(tmp_path: Path) -> None:
    tree = _repo(tmp_path / "p")
    test = BUGGY["tests/test_calc.py"] + MISSES + REPRODUCES
    result = _fix(tree, {FIXED[0]: FIXED[1], "tests/test_calc.py": test})
    check = result.check("regression")  # type: ignore[attr-defined]
    assert check is not None and check.status == "passed", result.diagnostics  # type: ignore[attr-defined]
    assert check.metrics["reproduced"] == ["tests/test_calc.py::test_high"]
    outcomes = {t["id"]: (t["before"], t["after"]) for t in check.metrics["tests"]}
    assert outcomes == {
        "tests/test_calc.py::test_inside": ("passed", "passed"),
        "tests/test_calc.py::test_high": ("failed", "passed"),
    }
    high = next(t for t in check.metrics["tests"] if t["id"].endswith("test_high"))
    assert (
        high["before_detail"].startswith("assert 9 == 5")
        and "1 of 2 new tests fail" in check.summary
    )
    assert result.passed  # type: ignore[attr-defined]


def test_an_import_of_the_function_the_fix_adds_counts_as_failing_before(tmp_path: Path) -> None:
    tree = _repo(tmp_path / "p")
    fixed = FIXED[1] + "\n\ndef cap(n: int) -> int:\n    return clamp(n, 0, 5)\n"
    new = "from calc import cap\n\n\ndef test_cap():\n    assert cap(9) == 5\n"
    result = _fix(tree, {FIXED[0]: fixed, "tests/test_cap.py": new})
    check = result.check("regression")  # type: ignore[attr-defined]
    assert check is not None and check.status == "passed", result.diagnostics  # type: ignore[attr-defined]
    (test,) = check.metrics["tests"]
    assert (test["before"], test["after"]) == ("import error", "passed")
    assert "cannot import name 'cap'" in test["before_detail"]
    assert "(calc.py)" in test["before_detail"]  # no sandbox path
    assert test["ran_changed"] == ["calc.py:3", "calc.py:7"]
    assert check.metrics["changed"] == {"calc.py": [3, 7]}  # not the def line (6)


def test_a_brand_new_module_alone_is_no_evidence_of_a_fix(tmp_path: Path) -> None:
    tree = _repo(tmp_path / "p")
    (tree / "limits.py").write_text("def cap(n: int) -> int:\n    return min(n, 5)\n")
    new = "from limits import cap\n\n\ndef test_cap():\n    assert cap(9) == 5\n"
    result = _fix(tree, {"tests/test_limits.py": new})
    check = result.check("regression")  # type: ignore[attr-defined]
    assert check is not None and check.status == "failed"
    (test,) = check.metrics["tests"]
    assert (test["before"], test["after"], test["ran_changed"]) == ("import error", "passed", [])
    (message,) = _messages(result)
    assert "alters no line inside a function or method of a .py file the project already" in (
        message
    )


def test_a_test_that_only_notices_a_change_is_no_evidence(tmp_path: Path) -> None:
    base = BUGGY["tests/test_calc.py"]
    cheats = {
        "marker": {
            "calc.py": BUGGY["calc.py"] + "\nFIXED = True\n",
            "tests/test_calc.py": base
            + "\n\nimport calc\n\n\ndef test_regression():\n"
            + "    assert getattr(calc, 'FIXED', False)\n",
        },
        "file exists": {
            "NOTES.md": "fixed\n",
            "tests/test_calc.py": base
            + "\n\nimport os\n\n\ndef test_regression():\n"
            + "    assert os.path.exists('NOTES.md')\n",
        },
        "new function beside the buggy one, in a new module": {
            "calc2.py": "def clamp2(n: int, low: int, high: int) -> int:\n"
            "    return min(high, max(low, n))\n",
            "tests/test_calc.py": base
            + "\n\nfrom calc2 import clamp2\n\n\ndef test_regression():\n"
            + "    assert clamp2(9, 0, 5) == 5\n",
        },
    }
    for label, files in cheats.items():
        tree = _repo(tmp_path / label.replace(" ", "-"))
        result = _fix(tree, files)
        check = result.check("regression")  # type: ignore[attr-defined]
        assert check.status == "failed", label
        before, after = _outcomes(result)["tests/test_calc.py::test_regression"]
        assert before in ("failed", "import error") and after == "passed", label
        (message,) = _messages(result)
        assert "alters no line inside a function or method" in message, label
    # A real fix beside the cheat, but a test that does not call it: still no evidence.
    tree = _repo(tmp_path / "both")
    cheat = cheats["marker"]
    fixed = FIXED[1] + "\nFIXED = True\n"
    result = _fix(tree, {"calc.py": fixed, "tests/test_calc.py": cheat["tests/test_calc.py"]})
    (message,) = _messages(result)
    assert "it runs none of the lines your change made inside the functions" in message
    assert "(calc.py:3)" in message


def test_a_fix_kept_as_the_task_commit_still_counts_as_the_fix(tmp_path: Path) -> None:
    # The worktree is committed before its rebase; when the rebase conflicts (or a person is
    # asked, or the run resumes) HEAD is the task's own commit, and the task goes on fixing.
    tree = _repo(tmp_path / "p")
    main = _git(tree, "rev-parse", "--abbrev-ref", "HEAD")
    start = _git(tree, "rev-parse", "HEAD")
    _git(tree, "checkout", "-q", "-b", "task")
    test = BUGGY["tests/test_calc.py"] + REPRODUCES
    for name, text in {FIXED[0]: FIXED[1], "tests/test_calc.py": test}.items():
        (tree / name).write_text(text)
    _git(tree, "commit", "-qam", "Fix\n\nOldnew-Task: F1-fix1")
    _git(tree, "checkout", "-q", main)
    (tree / "README.md").write_text("main moved on\n")
    _git(tree, "add", "README.md")
    _git(tree, "commit", "-qm", "other task")
    _git(tree, "checkout", "-q", "task")
    docstring = FIXED[1].replace("within", "clamped to")
    result = _fix(tree, {FIXED[0]: docstring}, main=main)
    check = result.check("regression")  # type: ignore[attr-defined]
    assert check.status == "passed", _messages(result)
    assert check.metrics["base"] == start
    assert _outcomes(result) == {"tests/test_calc.py::test_high": ("failed", "passed")}
    assert task_change(tree, main=main).before == {
        "calc.py": BUGGY["calc.py"].encode(),
        "tests/test_calc.py": BUGGY["tests/test_calc.py"].encode(),
    }


def test_a_conftest_importing_the_name_the_fix_adds_counts_as_an_import_error(
    tmp_path: Path,
) -> None:
    tree = _repo(tmp_path / "p")
    fixed = FIXED[1] + "\n\ndef cap(n: int) -> int:\n    return clamp(n, 0, 5)\n"
    conftest = (
        "import pytest\nfrom calc import cap\n\n\n@pytest.fixture\ndef capper():\n    return cap\n"
    )
    files = {
        FIXED[0]: fixed,
        "tests/conftest.py": conftest,
        "tests/test_cap.py": "def test_cap(capper):\n    assert capper(9) == 5\n",
    }
    result = _fix(tree, files)
    check = result.check("regression")  # type: ignore[attr-defined]
    assert check.status == "passed", _messages(result)
    (test,) = check.metrics["tests"]
    assert (test["before"], test["after"]) == ("import error", "passed")
    assert test["before_detail"].startswith("tests/conftest.py could not import a name of the")
    assert "cannot import name 'cap'" in test["before_detail"]
    assert "(calc.py)" in test["before_detail"]  # no sandbox path
    # A conftest that fails on a module that is not the project's is no evidence.
    output = (
        f"ImportError while loading conftest '{tree}/tests/conftest.py'.\n"
        "tests/conftest.py:1: in <module>\n    import {0}\n"
        "E   ModuleNotFoundError: No module named '{0}'\n"
    )
    assert conftest_import_error(output.format("yaml"), tree, tree) == (
        "load error",
        "tests/conftest.py could not be loaded (ModuleNotFoundError: No module named 'yaml'), "
        "not for a name of the project",
    )
    assert conftest_import_error(output.format("calc"), tree, tree) == (
        "import error",
        "tests/conftest.py could not import a name of the project: "
        "ModuleNotFoundError: No module named 'calc'",
    )
    assert conftest_import_error("ERROR: usage: pytest [options]\n", tree, tree) is None


def test_tests_in_classes_nested_and_parametrized_are_new_tests(tmp_path: Path) -> None:
    base = BUGGY["tests/test_calc.py"]
    nested = "\n\nclass TestClamp:\n    class TestHigh:\n        def test_high(self):\n"
    nested += "            assert clamp(9, 0, 5) == 5\n"
    tree = _repo(tmp_path / "nested")
    result = _fix(tree, {FIXED[0]: FIXED[1], "tests/test_calc.py": base + nested})
    assert result.check("regression").status == "passed", _messages(result)  # type: ignore[attr-defined]
    assert _outcomes(result) == {
        "tests/test_calc.py::TestClamp::TestHigh::test_high": ("failed", "passed")
    }
    param = "\nimport pytest\n\n\nclass TestClamp:\n    @pytest.mark.parametrize('n', [9, 3])\n"
    param += "    def test_high(self, n):\n        assert clamp(n, 0, 5) == min(n, 5)\n"
    tree = _repo(tmp_path / "param")
    result = _fix(tree, {FIXED[0]: FIXED[1], "tests/test_calc.py": base + param})
    assert result.check("regression").status == "passed", _messages(result)  # type: ignore[attr-defined]
    assert _outcomes(result) == {"tests/test_calc.py::TestClamp::test_high": ("failed", "passed")}


def test_a_bug_fix_without_a_test_is_a_finding(tmp_path: Path) -> None:
    tree = _repo(tmp_path / "p")
    # Only a helper of the test module changed: no test's code did.
    helper = "import calc\n" + BUGGY["tests/test_calc.py"]
    result = _fix(tree, {FIXED[0]: FIXED[1], "tests/test_calc.py": helper})
    assert new_tests(tree, task_change(tree)) == []
    check = result.check("regression")  # type: ignore[attr-defined]
    assert check is not None and check.status == "failed"
    (diag,) = [d for d in result.diagnostics if d.tool == "regression"]  # type: ignore[attr-defined]
    assert (
        diag.rule == "no-test"
        and "adds or changes no test: add a test that reproduces" in diag.message
    )


def test_a_module_that_cannot_load_before_the_fix_is_no_evidence(tmp_path: Path) -> None:
    tree = _repo(tmp_path / "p")
    # Module-level code that breaks on the old code: the test itself never ran there.
    new = "from calc import clamp\n\nHIGH = 1 // (clamp(9, 0, 5) - 9)\n\n\ndef test_high():\n"
    new += "    assert HIGH == -1\n"
    result = _fix(tree, {FIXED[0]: FIXED[1], "tests/test_high.py": new})
    check = result.check("regression")  # type: ignore[attr-defined]
    assert check is not None and check.status == "failed"
    (test,) = check.metrics["tests"]
    assert (test["before"], test["after"]) == ("load error", "passed")
    assert "ZeroDivisionError" in test["before_detail"]
    (diag,) = [d for d in result.diagnostics if d.tool == "regression"]  # type: ignore[attr-defined]
    assert "could not run" in diag.message and "no evidence of the bug" in diag.message


def test_javascript_tests_are_said_not_to_be_checked_before_the_fix(tmp_path: Path) -> None:
    tree = tmp_path / "p"
    (tree / "src").mkdir(parents=True)
    (tree / "src" / "a.test.ts").write_text("test('a', () => {});\n")
    run = SimpleNamespace(tree=tree, artifacts={CHANGE: TaskChange("abc", {"src/a.test.ts": None})})
    check, diags = gate_regression(run)  # type: ignore[arg-type]
    assert (check.status, check.required, diags) == ("not_run", False, [])
    assert "for pytest tests only" in check.summary and "src/a.test.ts" in check.summary


def test_changed_lines_are_the_statements_touched_inside_functions(tmp_path: Path) -> None:
    old = (
        "import os\n\nLIMIT = 5\n\n\ndef clamp(n, low, high):\n    if n > high:\n"
        "        n = n + 1\n    return max(\n        low,\n        n,\n    )\n"
    )
    new = (
        "import os, sys\n\nLIMIT = 6\n\n\ndef clamp(n, low, high):\n    if n > high:\n"
        "        n = high\n    return max(\n        low,\n        min(n, high),\n    )\n"
    )
    (tmp_path / "calc.py").write_text(new)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_calc.py").write_text("def test_x():\n    x = 2\n")
    change = TaskChange(
        "abc", {"calc.py": old.encode(), "tests/test_calc.py": b"def test_x():\n    x = 1\n"}
    )
    # Line 11 is inside the return statement, which coverage reports by its first line, 9;
    # the import and constant lines (1, 3) run at import and do not count; test files neither.
    assert changed_lines(tmp_path, change) == {"calc.py": {8, 9}}
    # A deletion counts by the statements either side of it (the def line, 1, is no statement
    # of a function's body).
    (tmp_path / "calc.py").write_text("def f(n):\n    return n\n")
    deleted = TaskChange("abc", {"calc.py": b"def f(n):\n    n = n + 1\n    return n\n"})
    assert changed_lines(tmp_path, deleted) == {"calc.py": {2}}


class _Stop(Exception):
    """Raised by the stand-in for run_gates once it has the change the node hands it."""


def test_the_validate_node_diffs_against_where_the_task_left_main(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The task's commit stays HEAD of its worktree after a conflicting rebase; main moved on.
    ws = Workspace.create(tmp_path / "ws", "run-1", {})
    ws.write_files(ws.root, BUGGY)
    ws.git("add", "-A")
    ws.git("commit", "-qm", "base")
    start = ws.head()
    tree = ws.worktree("F1-fix1")
    fixed = {FIXED[0]: FIXED[1], "tests/test_calc.py": BUGGY["tests/test_calc.py"] + REPRODUCES}
    ws.write_files(tree, fixed)
    assert ws.commit_worktree("F1-fix1", "Fix")
    ws.write_files(ws.root, {"README.md": "another task\n"})
    ws.git("commit", "-qm", "another task")
    ws.write_files(tree, {FIXED[0]: FIXED[1].replace("within", "clamped to")})
    seen: list[TaskChange] = []

    def run_gates(*args: object, change: TaskChange, **kwargs: object) -> None:
        seen.append(change)
        raise _Stop

    monkeypatch.setattr(checks, "run_gates", run_gates)
    state = {"workspace": str(ws.root), "task": {"id": "F1-fix1", "regression_test": True}}
    with pytest.raises(_Stop):
        asyncio.run(checks.validate(state, SimpleNamespace(context=None)))  # type: ignore[arg-type]
    (change,) = seen
    assert change.base == start != ws.head()
    assert change.before == {n: t.encode() for n, t in BUGGY.items()}
