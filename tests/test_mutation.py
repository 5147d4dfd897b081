"""The mutation gate's reach: augmented assignments, arithmetic, returned values, and code no
mutant can judge, which is a finding, never a silent pass."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path
from types import SimpleNamespace
from xml.sax.saxutils import quoteattr  # nosec B406 - quotes a test's own string

import pytest

from oldnew.gates import PROFILES, mutation, validate_tree
from oldnew.gates.mutation import choose, find_sites, gate_mutation, pick, survey

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


def test_operators_on_text_or_lists_are_not_mutated_where_they_could_only_raise(
    tmp_path: Path,
) -> None:
    code = (
        "def render(items: list[str], head: str, n: int) -> str:\n"
        "    out = ''\n"
        "    for item in items:\n"
        "        out += '- ' + item + '\\n'\n"
        "    head += '!'\n"
        "    rows: list[str] = []\n"
        "    rows += [out]\n"
        "    items += rows\n"
        "    n += 1\n"
        "    width = n * 2\n"
        "    return out + head + str(width)\n"
    )
    tree = _write(tmp_path / "t", {"fmt.py": code})
    made = [(m.kind, m.line) for m in find_sites(tree, None) if m.kind in ("augassign", "arith")]
    # Only the numbers' operators: ``out -= ...``, ``head -=``, ``rows -=``, ``items -=`` and
    # ``out - head`` would only raise a TypeError, whatever the tests assert.
    assert made == [("augassign", 9), ("arith", 10)]


def test_pick_parses_only_what_it_picks_and_an_invalid_mutant_gives_way_to_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = _write(tmp_path / "p", SCORE)
    found = survey(tree)
    first = choose(found.sites, 1)[0]
    broken = dataclasses.replace(first, after="(")  # the same place and kind: ranked the same
    sites = [broken if m == first else m for m in found.sites]
    assert choose(sites, 1) == [broken]
    parsed: list[str] = []
    real = mutation.parse_python
    monkeypatch.setattr(mutation, "parse_python", lambda text: parsed.append(text) or real(text))
    assert pick(sites, 1, found.texts) == [choose(sites, 2)[1]]
    assert len(parsed) == 2 < len(sites)  # the broken one, then the one picked: not every site


@pytest.mark.parametrize(
    ("message", "raised"),
    [
        ("assert 3 == 9", "AssertionError"),
        ("the totals differ: 3", "AssertionError"),  # an assert's own message
        ("AssertionError: 3 != 9", "AssertionError"),  # unittest's assertEqual
        ("Failed: DID NOT RAISE <class 'ValueError'>", "Failed"),
        ("TypeError: unsupported operand type(s) for *: 'NoneType' and 'int'", "TypeError"),
        ("AttributeError: 'NoneType' object has no attribute 'split'", "AttributeError"),
        ("calc.CalcError: no", "calc.CalcError"),
    ],
)
def test_the_exception_a_test_failed_with_is_read_from_its_report(
    message: str, raised: str
) -> None:
    failure = f"<failure message={quoteattr(message)}/>"
    report = f'<testsuite><testcase name="t">{failure}</testcase></testsuite>'
    assert mutation.failures_in(report.encode()) == [raised]


INFLATE = {
    "calc.py": (
        "def total(xs: list[int] | None) -> int:\n"
        "    if xs is None:\n"
        "        raise ValueError('no numbers')\n"
        "    s = sum(xs)\n"
        "    return s * 2\n"
    ),
    "tests/test_calc.py": (
        "import pytest\n\nfrom calc import total\n\n\n"
        "def test_total():\n    total([1, 2])\n\n\n"
        "def test_total_refuses_none():\n    with pytest.raises(ValueError):\n"
        "        total(None)\n"
    ),
}


def test_a_mutant_the_tests_only_crash_on_is_reported_and_not_counted(tmp_path: Path) -> None:
    # ``s = None`` makes ``s * 2`` raise a TypeError: a bare call "kills" it. ``xs is not None``
    # makes pytest.raises(ValueError) meet sum(None)'s TypeError instead: the TypeError goes
    # through it as through a bare call. Neither is a failed assertion.
    tree = _write(tmp_path / "p", INFLATE)
    result = validate_tree(tree, timeout=60, profile=_profile(mutants=4))
    check = result.check("mutation")
    assert check is not None and check.status == "failed", result.checks
    assert check.metrics["killed"] == 0 and len(check.metrics["crashed"]) == 2
    assert "0 of 4 mutants killed" in check.summary
    assert "2 only crashed the tests (not counted)" in check.summary
    crashed = {
        d.message for d in result.diagnostics if d.tool == "mutation" and d.rule == "crashed"
    }
    assert any("`sum(xs)` changed to `None`" in m and "TypeError" in m for m in crashed), crashed
    assert any("`xs is None` changed to `(xs is not None)`" in m for m in crashed), crashed
    assert all("no test failed on an assertion" in m for m in crashed)


WC = {
    "wc.py": (
        '"""Count words."""\nimport sys\n\n\ndef main() -> int:\n'
        "    n = len(sys.stdin.read().split())\n    print(n)\n    return 0\n\n\n"
        'if __name__ == "__main__":\n    raise SystemExit(main())\n'
    ),
    "tests/test_wc.py": (
        "import subprocess\nimport sys\nfrom pathlib import Path\n\n\n"
        "def test_counts():\n    wc = Path(__file__).parent.parent / 'wc.py'\n"
        "    out = subprocess.run([sys.executable, str(wc)], input='a b c', "
        "capture_output=True, text=True)\n"
        "    assert out.stdout.strip() == '3'\n"
    ),
}


def test_code_tested_through_a_subprocess_gets_mutants_on_every_line(tmp_path: Path) -> None:
    profile = dataclasses.replace(_profile(), coverage_min=0)
    result = validate_tree(_write(tmp_path / "cli", WC), timeout=60, profile=profile)
    check = result.check("mutation")
    assert check is not None and check.status == "passed", (check, result.diagnostics)
    assert check.metrics["out_of_process"] and check.metrics["killed"] >= 1
    assert "coverage saw none of the project's code run in the tests' process" in check.summary
    # Out of process too, a suite that asserts nothing kills nothing: the gate fails.
    runs_only = WC["tests/test_wc.py"].replace("    assert out.stdout.strip() == '3'\n", "")
    weak = _write(tmp_path / "weak", {**WC, "tests/test_wc.py": runs_only})
    check = validate_tree(weak, timeout=60, profile=profile).check("mutation")
    assert check is not None and check.status == "failed" and check.metrics["killed"] == 0


def test_a_site_shows_its_source_across_lines_past_non_ascii_text_and_form_feeds(
    tmp_path: Path,
) -> None:
    code = (
        "def f(x):\r\n    y = 'é' + x\r\n    z = g(\r\n  x,\r\n y)\r\n    return z\n\x0c\n"
        "def h(a):\n    return a.b(\n 1)\n"
    )
    tree = _write(tmp_path / "t", {"odd.py": code})
    assert [(m.line, m.before) for m in find_sites(tree, None)] == [
        (2, "'é' + x"),
        (3, "g( x, y)"),
        (6, "return z"),
        (9, "return a.b( 1)"),
    ]
