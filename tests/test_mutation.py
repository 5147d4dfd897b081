"""The mutation gate's reach: augmented assignments, arithmetic, returned values, and code no
mutant can judge, which is a finding, never a silent pass."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path
from types import SimpleNamespace

from oldnew.gates import PROFILES, validate_tree
from oldnew.gates.mutation import find_sites, gate_mutation, survey

SCORE = {
    "score.py": (
        "def total(points: list[int], weight: int) -> int:\n"
        '    """Return the weighted sum of the points."""\n'
        "    out = 0\n"
        "    for p in points:\n"
        "        out += p * weight\n"
        "    return out\n\n\n"
        "def refuse(why: str) -> None:\n"
        '    """Raise ValueError: no mutant can be made of this."""\n'
        "    raise ValueError(why)\n"
    ),
    "tests/test_score.py": (
        "import pytest\n\nfrom score import refuse, total\n\n\n"
        "def test_total():\n    assert total([1, 2], 3) == 9\n\n\n"
        "def test_refuse():\n    with pytest.raises(ValueError):\n        refuse('no')\n"
    ),
}
WEAK_TEST = "from score import total\n\n\ndef test_total_runs():\n    total([1, 2], 3)\n"
GATES = ("syntax", "imports", "pytest", "coverage", "mutation")


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def _profile(mutants: int = 3) -> object:
    return dataclasses.replace(PROFILES["default"], gates=GATES, mutants=mutants)


def test_augmented_assignments_arithmetic_and_returned_names_are_mutated(tmp_path: Path) -> None:
    tree = _write(tmp_path / "p", SCORE)
    sites = {(m.kind, m.before, m.after) for m in find_sites(tree, None)}
    assert ("augassign", "out += p * weight", "out -= p * weight") in sites
    assert ("arith", "p * weight", "(p / weight)") in sites
    assert ("return", "return out", "return None") in sites
    for mutant in find_sites(tree, None):
        ast.parse(mutant.apply((tree / mutant.file).read_text()))
    assert survey(tree).unjudged == ["score.py:refuse (line 9)"]
    # A string's operator is not mutated, nor an unpacking's value: either only raises.
    odd = "def f(x):\n    a, b = x.split()\n    c = x.strip()\n    return 'a' + a\n"
    text = _write(tmp_path / "t", {"t.py": odd})
    assert [(m.kind, m.line) for m in find_sites(text, None)] == [("assign", 3), ("return", 4)]


def test_good_tests_kill_the_new_mutants_and_weak_ones_let_them_survive(tmp_path: Path) -> None:
    good = validate_tree(_write(tmp_path / "good", SCORE), timeout=60, profile=_profile())
    check = good.check("mutation")
    assert check is not None and check.status == "passed", good.checks
    assert check.metrics["killed"] == check.metrics["mutants"] == 3
    assert check.metrics["unjudged"] == ["score.py:refuse (line 9)"]
    assert "no mutant could be made of score.py:refuse (line 9)" in check.summary

    weak_tree = _write(tmp_path / "weak", {**SCORE, "tests/test_score.py": WEAK_TEST})
    weak = validate_tree(weak_tree, timeout=60, profile=_profile())
    assert weak.check("mutation").status == "failed"  # type: ignore[union-attr]
    survived = " ".join(d.message for d in weak.diagnostics if d.tool == "mutation")
    assert "`out += p * weight` changed to `out -= p * weight`" in survived
    assert "`return out` changed to `return None`" in survived


def _run(tree: Path, coverage: dict[str, object] | None = None) -> object:
    artifacts = {"coverage": coverage} if coverage else {}
    return SimpleNamespace(tree=tree, profile=_profile(), artifacts=artifacts, timeout=30)


def test_code_no_mutant_can_judge_is_a_finding_not_a_pass(tmp_path: Path) -> None:
    only_raise = _write(tmp_path / "r", {"fail.py": SCORE["score.py"].split("\n\n\n")[1]})
    check, diags = gate_mutation(_run(only_raise))  # type: ignore[arg-type]
    assert check.status == "failed" and check.required
    assert [(d.file, d.line, d.rule) for d in diags] == [("fail.py", 1, "no-mutant")]
    assert "no mutant could be made of fail.py:refuse (line 1)" in diags[0].message
    assert "cannot judge its tests" in diags[0].message

    # Sites the tests never run: the tests cannot be judged there either.
    never_run = _write(tmp_path / "n", SCORE)
    unrun = {"files": {"score.py": {"executed_lines": [1, 9]}}}
    check, diags = gate_mutation(_run(never_run, unrun))  # type: ignore[arg-type]
    assert check.status == "failed"
    assert [(d.file, d.rule) for d in diags] == [("score.py", "unreached")]
    assert "no test runs a line of score.py where a mutant can be made" in diags[0].message

    # Code that computes nothing is not run, says why, and is never counted as passed.
    constants = _write(tmp_path / "c", {"consts.py": '"""Limits."""\n\nMAX = 200\n'})
    check, diags = gate_mutation(_run(constants))  # type: ignore[arg-type]
    assert (check.status, check.required, diags) == ("not_run", False, [])
    assert check.summary.startswith("nothing to mutate: the project's code computes nothing")
