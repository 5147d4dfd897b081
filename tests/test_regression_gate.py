"""A bug fix's test is run on the tree before the fix, where it must fail, and after it."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path
from types import SimpleNamespace

from oldnew.gates import PROFILES, validate_tree
from oldnew.gates.regression import CHANGE, TaskChange, gate_regression, new_tests, task_change

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


def _fix(root: Path, files: dict[str, str]) -> object:
    for name, text in files.items():
        (root / name).write_text(text)
    change = task_change(root)
    return validate_tree(root, timeout=60, profile=PROFILE, change=change)


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
    (tree / "limits.py").write_text("def cap(n: int) -> int:\n    return min(n, 5)\n")
    new = "from limits import cap\n\n\ndef test_cap():\n    assert cap(9) == 5\n"
    result = _fix(tree, {"tests/test_limits.py": new})
    check = result.check("regression")  # type: ignore[attr-defined]
    assert check is not None and check.status == "passed", result.diagnostics  # type: ignore[attr-defined]
    (test,) = check.metrics["tests"]
    assert (test["before"], test["after"]) == ("import error", "passed")
    assert "No module named 'limits'" in test["before_detail"]


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
