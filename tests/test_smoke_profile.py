"""The smoke profile the graph-logic tests run on: cheap, and still able to fail."""

from __future__ import annotations

from pathlib import Path

import pytest

from oldnew.context import Context
from oldnew.gates import PROFILES, validate_tree
from oldnew.gates.profiles import resolve_profile

GOOD = {
    "calc.py": "def add(a, b):\n    return a + b\n",
    "tests/test_calc.py": "from calc import add\n\n\ndef test_add():\n    assert add(2, 2) == 4\n",
}


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def _smoke(tree: Path) -> dict[str, str]:
    result = validate_tree(tree, timeout=60, quality="smoke")
    assert result.quality["name"] == "smoke"
    return {c.name: c.status for c in result.checks}


def test_smoke_is_chosen_like_any_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLDNEW_QUALITY", "smoke")
    assert Context().quality == "smoke"
    assert resolve_profile(Context().quality) is PROFILES["smoke"]
    # Every gate it runs is one the default profile runs too: a subset, not another check.
    assert set(PROFILES["smoke"].gates) <= set(PROFILES["default"].gates)
    assert {"syntax", "imports", "pytest"} <= set(PROFILES["smoke"].gates)


def test_smoke_passes_working_code_with_only_the_cheap_gates(tmp_path: Path) -> None:
    assert _smoke(_tree(tmp_path, GOOD)) == {
        "syntax": "passed",
        "imports": "passed",
        "pytest": "passed",
        "project-tests": "not_run",  # it declares no test command of its own
    }


def test_smoke_fails_a_syntax_error(tmp_path: Path) -> None:
    statuses = _smoke(_tree(tmp_path, {**GOOD, "calc.py": "def add(a, b)\n    return a + b\n"}))
    assert statuses["syntax"] == "failed"
    assert statuses["pytest"] != "passed"


def test_smoke_fails_a_failing_test(tmp_path: Path) -> None:
    statuses = _smoke(_tree(tmp_path, {**GOOD, "calc.py": "def add(a, b):\n    return a - b\n"}))
    assert statuses == {
        "syntax": "passed",
        "imports": "passed",
        "pytest": "failed",
        "project-tests": "not_run",
    }


def test_smoke_fails_a_missing_module_and_a_project_without_tests(tmp_path: Path) -> None:
    missing = {**GOOD, "calc.py": "import no_such_module_here\n\n\ndef add(a, b):\n    return 0\n"}
    assert _smoke(_tree(tmp_path / "a", missing))["imports"] == "failed"
    assert _smoke(_tree(tmp_path / "b", {"calc.py": GOOD["calc.py"]}))["pytest"] == "failed"
