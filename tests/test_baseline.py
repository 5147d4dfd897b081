"""The baseline: what fails where a run started is recorded once and blamed on no task.

Most runs here are made the short way (``on_base``): the user's project is handed over as
supporting files (the run's first commit) and ``run.json`` names that commit as the run's
``base``, as a run on a repository does; the last test runs on a real repository.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from depsrun import SCOPE, events, scope_file
from synthetic import planned_run

from oldnew.context import Context
from oldnew.gates.baseline import Baseline, identity, judge, mask
from oldnew.gates.model import Check, Diagnostic, ValidationResult
from oldnew.gates.profiles import Profile
from oldnew.gates.runner import validate_tree
from oldnew.gates.verify import export_commit, export_head, verify_workspace
from oldnew.nodes import baseline as baseline_node
from oldnew.nodes.checks import environment_blockers, fixer_diagnostics, run_gates
from oldnew.runs import resume_run, start_run
from oldnew.testing import prompt_text
from oldnew.workspace import Workspace

# -- the matching, on results made by hand ---------------------------------------------------


def _ruff(line: int, message: str = "`os` imported but unused", file: str = "legacy.py") -> Any:
    return Diagnostic("ruff", file, line, message, "F401")


def _test(node: str, message: str = "assert 4 == 5", line: int = 9) -> Diagnostic:
    return Diagnostic("pytest", "tests/test_legacy.py", line, f"{node}: {message}", "failure")


def _result(*diags: Diagnostic, passed: tuple[str, ...] = ()) -> ValidationResult:
    failed = {d.tool for d in diags}
    checks = [Check(n, "failed", [], 1, 0.0, f"{n} found things") for n in sorted(failed)]
    checks += [Check(n, "passed", [], 0, 0.0, "fine") for n in passed]
    for check in checks:
        if check.name == "pytest":  # a run of pytest says how many tests it ran
            check.metrics = {"tests": 3, "failures": len(diags), "skipped": 0}
    return ValidationResult(checks=checks, diagnostics=list(diags))


def _baseline(result: ValidationResult) -> Baseline:
    return Baseline.of("b" * 40, result, ".oldnew/evidence/baseline.json")


def test_a_finding_keeps_its_identity_when_lines_move_and_loses_it_when_it_changes() -> None:
    assert identity(_ruff(1)) == identity(_ruff(40))
    assert identity(_ruff(1)) != identity(_ruff(1, "`sys` imported but unused"))
    assert identity(_ruff(1)) != identity(_ruff(1, file="other.py"))
    moved = Diagnostic("mypy", "a.py", 3, 'Name "x" already defined on line 12', "no-redef")
    again = Diagnostic("mypy", "a.py", 30, 'Name "x" already defined on line 21', "no-redef")
    assert identity(moved) == identity(again)
    # A failing test is its node id, whatever its message, frame or line.
    assert identity(_test("tests.test_legacy::test_broken")) == identity(
        Diagnostic("pytest", "legacy.py", 77, "tests.test_legacy::test_broken: boom", "failure")
    )
    assert identity(_test("tests.test_legacy::test_broken")) != identity(
        _test("tests.test_legacy::test_other")
    )
    assert identity(_test("tests.t::test_x[1]")) != identity(_test("tests.t::test_x[2]"))
    # Addresses and the sandbox's folders change from run to run; names with digits do not.
    assert (
        mask("<obj at 0x7f3a2b> in /tmp/oldnew-x1/base/app.py")
        == "<obj at <address>> in .../app.py"
    )
    assert mask("`os2` imported, 12 > 8.5") == "`os2` imported, # > #"


def test_findings_are_counted_as_a_multiset() -> None:
    before = _baseline(_result(_ruff(3), _ruff(9)))
    judged = judge(_result(_ruff(4), _ruff(10), _ruff(20)), before)
    assert not judged.passed
    assert [d.line for d in judged.excused] == [4, 10]  # two there before excuse two
    assert [d.line for d in judged.diagnostics] == [20]  # the third is new: the fixer's
    assert judged.check("ruff").excused == ""  # type: ignore[union-attr]
    assert judged.failures() == [judged.check("ruff")]


def test_a_gate_failing_only_with_what_was_there_fails_nothing() -> None:
    legacy = (_ruff(1), _test("tests.test_legacy::test_broken"))
    before = _baseline(_result(*legacy))
    now = _result(_ruff(3), _test("tests.test_legacy::test_broken", line=11), passed=("syntax",))
    judged = judge(now, before)
    assert judged.passed and judged.diagnostics == [] and judged.failures() == []
    assert len(judged.excused) == 2
    ruff = judged.check("ruff")
    assert ruff is not None and ruff.status == "failed"  # still shown as it is
    assert "failing before this run" in ruff.excused and "baseline.json" in ruff.excused
    # The evidence says it all, and reads back the same.
    again = ValidationResult.from_dict(judged.to_dict())
    assert again.passed and again.to_dict() == judged.to_dict()
    assert judge(again, before).to_dict() == judged.to_dict()  # judging twice changes nothing
    # Less than before is fine too (the task fixed one of them).
    assert judge(_result(_ruff(5)), before).passed
    # A gate that reports a whole command says that it cannot tell failures apart.
    exited = Diagnostic("project-tests", ".", 0, "`make test` exited with 2", "exit")
    excused = judge(_result(exited), _baseline(_result(exited))).check("project-tests")
    assert excused is not None and "as a whole" in excused.excused


def test_a_gate_that_passed_at_the_baseline_is_the_tasks_when_it_fails() -> None:
    before = _baseline(_result(_ruff(1), passed=("pytest",)))
    judged = judge(_result(_ruff(1), _test("tests.test_app::test_new")), before)
    assert not judged.passed
    assert [d.tool for d in judged.diagnostics] == ["pytest"]
    assert [c.name for c in judged.failures()] == ["pytest"]
    # Same finding, but its gate passed at the baseline: it is new (it cannot be excused).
    before = _baseline(_result(_test("tests.test_legacy::test_broken"), passed=("ruff",)))
    assert judge(_result(_ruff(1)), before).diagnostics == [_ruff(1)]


def test_a_gate_that_did_not_run_or_ran_no_test_is_never_excused() -> None:
    skipped = "skipped: pytest did not pass, and this gate cannot pass before it does"
    broken = _test("tests.test_legacy::test_broken")

    def with_coverage(result: ValidationResult) -> ValidationResult:
        result.checks.append(Check("coverage", "not_run", [], None, 0.0, skipped))
        return result

    # Not run at the baseline and now: nothing says the task's code was tested.
    judged = judge(with_coverage(_result(broken)), _baseline(with_coverage(_result(broken))))
    assert not judged.passed and judged.check("coverage").excused == ""  # type: ignore[union-attr]
    assert judged.check("pytest").excused  # type: ignore[union-attr]
    # A pytest run in which no test ran says nothing was tested, however it failed before.
    for counts in (
        {},  # exit 5: none collected
        {"tests": 1, "skipped": 0, "collection_errors": 1},  # every file fails to collect
        {"tests": 2, "skipped": 2},  # every test skipped
    ):
        empty = _result(Diagnostic("pytest", ".", 0, "no tests were collected"))
        empty.checks[0].metrics = counts
        assert not judge(empty, _baseline(empty)).passed, counts


def test_a_prerequisite_failing_only_with_what_was_there_holds_no_gate_back() -> None:
    syntax = Diagnostic("syntax", "tests/fixtures/broken.py", 1, "invalid syntax", "E999")
    base = _baseline(_result(syntax, passed=("pytest",)))
    failed = Check("syntax", "failed", [], 1, 0.0, "1 syntax error")
    assert base.excuses(failed, [replace(syntax, line=3)])  # the same finding, moved
    other = Diagnostic("syntax", "app.py", 1, "invalid syntax", "E999")
    assert not base.excuses(failed, [syntax, other])  # one new finding holds them back
    assert not base.excuses(failed, [syntax, syntax])  # counted: one excuses one
    # A gate that passed at the baseline, or one that did not run, never proceeds.
    ran = Check("pytest", "failed", [], 1, 0.0, "1 failed", metrics={"tests": 1})
    assert not base.excuses(ran, [_test("tests.test_legacy::test_broken")])
    assert not Baseline("b" * 40, "crashed").excuses(failed, [syntax])


def _validate(tree: Path, *gates: str, proceed: Any = None) -> ValidationResult:
    profile = Profile(name="t", gates=gates, coverage_min=0.0, mutants=2)
    return validate_tree(tree, timeout=60, profile=profile, proceed=proceed)


def test_the_gates_behind_a_preexisting_failure_run_and_mutation_is_reported_not_run(
    tmp_path: Path,
) -> None:
    (tmp_path / "tests").mkdir()
    (tmp_path / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    (tmp_path / "tests" / "test_calc.py").write_text(
        "from calc import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n\n\n"
        "def test_broken():\n    assert add(1, 2) == 4\n"
    )
    gates = ("syntax", "imports", "pytest", "coverage", "mutation")
    # A new project: nothing behind a failing suite runs, as always.
    fresh = {c.name: c for c in _validate(tmp_path, *gates).checks}
    assert fresh["coverage"].summary.startswith("skipped: pytest did not pass")
    assert fresh["mutation"].summary.startswith("skipped: pytest did not pass")
    # Its failure is all pre-existing: coverage is measured; mutation, which a failing suite
    # makes pass on every mutant, cannot run in this run: reported as not run (never passed),
    # and no task asks a person about the repository's own failure.
    ran = {c.name: c for c in _validate(tmp_path, *gates, proceed=lambda c, d: True).checks}
    assert ran["coverage"].status == "passed" and ran["coverage"].metrics["percent"] == 100
    assert ran["mutation"].status == "not_run" and not ran["mutation"].required
    assert ran["mutation"].summary.startswith("not run in this run: pytest fails before")
    assert "make the project's own pytest pass" in ran["mutation"].summary
    assert environment_blockers(ValidationResult(checks=list(ran.values()))) == []
    # A prerequisite that did not run holds the gates behind it back whatever ``proceed`` says.
    (tmp_path / "tests" / "test_calc.py").write_text("def test_nothing():\n    pass\n")
    (tmp_path / "tests" / "conftest.py").write_text("import sys\nsys.exit(0)\n")
    behind = {c.name: c for c in _validate(tmp_path, *gates, proceed=lambda c, d: True).checks}
    assert behind["pytest"].status == "failed" and behind["coverage"].status == "not_run"


def test_coverage_is_excused_only_while_it_does_not_fall() -> None:
    def covered(percent: float, missing: str) -> ValidationResult:
        diag = Diagnostic("coverage", "legacy.py", 3, f"40% covered; no test runs {missing}")
        result = _result(diag)
        result.checks[0].metrics = {"percent": percent}
        return result

    before = _baseline(covered(41.0, "lines 3-5"))
    assert judge(covered(45.0, "lines 3-9"), before).passed  # lines moved, share went up
    fell = judge(covered(30.0, "lines 3-5"), before)
    assert not fell.passed and len(fell.diagnostics) == 1  # the fixer hears of it


def test_nothing_is_excused_without_a_recorded_baseline_or_when_nothing_was_checked() -> None:
    # Tests the sandbox stopped, or a report that was written over, prove nothing, then or now.
    for rule in ("sandbox", "report"):
        stuck = Diagnostic("pytest", ".", 0, "the tests were stopped: timeout after 60 s", rule)
        assert not judge(_result(stuck), _baseline(_result(stuck))).passed
    now = _result(_ruff(1))
    assert judge(now, None) is now
    unbuildable = Baseline("b" * 40, "unbuildable", reason="no uv.lock")
    assert not judge(now, unbuildable).passed
    deps = Diagnostic("dependencies", "pyproject.toml", 0, "no uv.lock", "lock_mismatch")
    assert _baseline(_result(deps)).status == "unbuildable"
    recorded = Baseline("b" * 40, "recorded", checks={"dependencies": {"status": "failed"}})
    recorded.findings = [deps]
    assert not judge(_result(deps), recorded).passed  # an environment that cannot be made


@pytest.mark.parametrize("gate", ["project-tests", "pytest"])
def test_a_command_stopped_at_the_baseline_too_is_a_persons_never_the_fixers(gate: str) -> None:
    def slow(seconds: int) -> ValidationResult:
        why = f"the command was stopped: timed out after {seconds}s (an endless loop?)"
        return _result(Diagnostic(gate, ".", 0, why, "sandbox"), _ruff(1))

    judged = judge(slow(3), _baseline(slow(3)))
    stuck = judged.check(gate)
    assert stuck is not None and stuck.status == "not_run" and not stuck.excused
    assert "longer than the test timeout at the baseline too" in stuck.summary
    assert "OLDNEW_TEST_TIMEOUT" in stuck.summary
    assert not judged.passed and judged.failures() == [] and judged.diagnostics == []
    assert environment_blockers(judged) == [stuck] and fixer_diagnostics(judged) == []
    assert judge(judged, _baseline(slow(3))).to_dict() == judged.to_dict()
    # Stopped now only: the task's (an endless loop of its own), the fixer hears of it.
    quick = _result(Diagnostic(gate, ".", 0, "`make test` exited with 2", "exit"))
    mine = judge(slow(3), _baseline(quick))
    assert mine.check(gate).status == "failed"  # type: ignore[union-attr]
    assert [d.rule for d in mine.diagnostics if d.tool == gate] == ["sandbox"]


# -- the node, on a workspace ------------------------------------------------------------------


def _workspace(tmp_path: Path, files: dict[str, bytes]) -> Workspace:
    return Workspace.create(tmp_path / "ws", "run-1", {}, supporting=files)


def test_a_crashed_baseline_is_recorded_with_why_and_never_taken_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = _workspace(tmp_path, {"app.py": b"x = 1\n"})
    calls: list[Path] = []

    def crash(ctx: Context, tree: Path, *args: Any, **kw: Any) -> ValidationResult:
        calls.append(tree)
        raise RuntimeError("the gates fell over")

    monkeypatch.setattr(baseline_node, "run_gates", crash)
    taken, now = baseline_node.take_baseline(ws, Context(), ws.head())
    assert now and taken.status == "crashed" and "the gates fell over" in taken.reason
    assert calls and calls[0] != ws.root and not str(calls[0]).startswith(str(ws.root))
    evidence = json.loads((ws.root / taken.evidence).read_text())
    assert evidence["commit"] == ws.head() and "the gates fell over" in str(evidence["checks"])
    again, now = baseline_node.take_baseline(ws, Context(), ws.head())
    assert not now and again == taken and len(calls) == 1
    # A commit the repository does not have is a crash too, said as such.
    missing, _ = baseline_node.take_baseline(ws, Context(), "0" * 40)
    assert missing.status == "crashed" and "cannot write out commit" in missing.reason


def test_the_baseline_runs_the_gates_on_the_base_commit_not_on_the_checkout(
    tmp_path: Path,
) -> None:
    ws = _workspace(tmp_path, LEGACY)
    base = ws.head()
    (ws.root / "tests" / "test_legacy.py").write_text("def test_fine() -> None:\n    pass\n")
    taken, _ = baseline_node.take_baseline(ws, Context(quality="smoke"), base)
    assert taken.status == "recorded" and taken.failing == ["pytest"]
    assert [identity(d) for d in taken.findings] == [("pytest", "tests.test_legacy::test_broken")]
    # The checkout is as it was; judged against the baseline, its failure is not new.
    assert "test_fine" in (ws.root / "tests" / "test_legacy.py").read_text()
    judged = run_gates(Context(quality="smoke"), ws.root, None, ws)
    assert judged.passed and judged.baseline == taken.evidence


def _judged_after(tmp_path: Path, files: dict[str, bytes], change: dict[str, str]) -> Any:
    """Take the baseline of ``files``, change the checkout, and judge it against it."""
    ws = _workspace(tmp_path, files)
    ctx = Context(quality="smoke")
    taken, _ = baseline_node.take_baseline(ws, ctx, ws.head())
    assert taken.status == "recorded"
    unchanged = run_gates(ctx, ws.root, None, ws)
    for name, text in change.items():
        (ws.root / name).write_text(text)
    return taken, unchanged, run_gates(ctx, ws.root, None, ws)


OK_TEST = b"def test_ok():\n    assert True\n"
NEW_FAILURE = "def test_ok():\n    assert True\n\n\ndef test_new():\n    assert 1 == 2\n"


def test_the_tests_run_behind_a_syntax_error_the_repository_already_had(tmp_path: Path) -> None:
    files = {"tests/fixtures/broken.py": b"def (:\n", "tests/test_ok.py": OK_TEST}
    taken, unchanged, judged = _judged_after(tmp_path, files, {"tests/test_ok.py": NEW_FAILURE})
    assert taken.failing == ["syntax"] and taken.checks["pytest"]["status"] == "passed"
    assert unchanged.passed and unchanged.check("pytest").status == "passed"  # type: ignore[union-attr]
    checks = {c.name: c for c in judged.checks}
    assert checks["syntax"].excused and checks["pytest"].status == "failed"
    assert not judged.passed and not checks["pytest"].excused
    assert [identity(d) for d in judged.diagnostics] == [("pytest", "tests.test_ok::test_new")]


def test_a_test_file_that_never_collected_keeps_no_other_test_from_running(
    tmp_path: Path,
) -> None:
    files = {"tests/test_old.py": b"import not_installed_pkg\n", "tests/test_ok.py": OK_TEST}
    taken, unchanged, judged = _judged_after(tmp_path, files, {"tests/test_ok.py": NEW_FAILURE})
    assert sorted(taken.failing) == ["imports", "pytest"]
    assert [identity(d) for d in taken.findings if d.tool == "pytest"] == [
        ("pytest", "tests.test_old")
    ]
    assert taken.checks["pytest"]["metrics"]["collection_errors"] == 1
    assert unchanged.passed and unchanged.check("pytest").excused  # type: ignore[union-attr]
    assert not judged.passed
    assert [identity(d) for d in judged.diagnostics] == [("pytest", "tests.test_ok::test_new")]
    assert {identity(d) for d in judged.excused if d.tool == "pytest"} == {
        ("pytest", "tests.test_old")
    }


def test_a_repository_without_tests_passes_no_task_that_adds_none(tmp_path: Path) -> None:
    taken, unchanged, judged = _judged_after(
        tmp_path, {"lib.py": b"VALUE = 1\n"}, {"lib.py": "VALUE = 2\n"}
    )
    assert taken.failing == ["pytest"]
    for result in (unchanged, judged):
        pytest_check = result.check("pytest")
        assert pytest_check is not None and not pytest_check.excused and not result.passed
        assert any("no tests were collected" in d.message for d in result.diagnostics)


def test_the_baseline_sees_every_tracked_file_as_a_checkout_writes_it(tmp_path: Path) -> None:
    ws = _workspace(tmp_path, {"lib.py": b"VALUE = 1\n"})
    root = ws.root
    (root / ".gitattributes").write_text("legacy/ export-ignore\nstamp.txt export-subst\n")
    (root / "legacy").mkdir()
    (root / "legacy" / "test_old.py").write_text("def test_old():\n    assert 1 == 2\n")
    (root / "stamp.txt").write_text("$Format:%H$\n")
    (root / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (root / "run.sh").chmod(0o755)
    (root / "link.py").symlink_to("lib.py")
    (root / "pkg").mkdir()
    (root / "pkg" / "mod.py").write_text("X = 1\n")
    ws.git("add", "-A")
    ws.git("commit", "-qm", "attributes, an executable, a link")
    ws.git("sparse-checkout", "set", "legacy")  # the person's checkout shows a part only
    index = (root / ".git" / "index").read_bytes()
    tree = export_commit(ws, ws.head(), tmp_path / "out")
    assert (tree / "legacy" / "test_old.py").is_file()  # export-ignore does not apply
    assert (tree / "stamp.txt").read_text() == "$Format:%H$\n"  # nor export-subst
    assert (tree / "run.sh").stat().st_mode & 0o111 and (tree / "lib.py").is_file()
    assert (tree / "link.py").is_symlink() and os.readlink(tree / "link.py") == "lib.py"
    assert (root / ".git" / "index").read_bytes() == index  # the real index is untouched
    # A sparse checkout leaves nothing out either, and stays as it was.
    assert (tree / "pkg" / "mod.py").is_file() and not (root / "pkg" / "mod.py").exists()
    # verify writes out the same way, the commit it names.
    assert (export_head(ws, tmp_path / "tip") / "legacy" / "test_old.py").is_file()


def test_a_baseline_taken_under_other_settings_is_taken_again_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = _workspace(tmp_path, {"app.py": b"x = 1\n"})
    runs: list[str] = []

    def gates(ctx: Context, tree: Path, *args: Any, **kw: Any) -> ValidationResult:
        runs.append(ctx.quality)
        return _result(passed=("syntax",))

    monkeypatch.setattr(baseline_node, "run_gates", gates)
    base = ws.head()
    _, why = baseline_node.take_baseline(ws, Context(quality="smoke"), base)
    assert why == "none was taken yet"
    assert baseline_node.take_baseline(ws, Context(quality="smoke"), base)[1] == ""
    _, why = baseline_node.take_baseline(ws, Context(quality="fast"), base)
    assert "the quality profile changed" in why and "'smoke'" in why
    _, why = baseline_node.take_baseline(ws, Context(quality="fast", coverage_min=50), base)
    assert "the quality profile changed" in why  # a threshold is part of the profile
    _, why = baseline_node.take_baseline(
        ws, Context(quality="fast", coverage_min=50, test_timeout=9), base
    )
    assert "the test timeout changed" in why
    _, why = baseline_node.take_baseline(
        ws, Context(quality="fast", coverage_min=50, test_timeout=9), base, ["typescript"]
    )
    assert "the toolchains changed" in why
    assert runs == ["smoke", "fast", "fast", "fast", "fast"]
    record = Baseline.load(ws)
    assert record is not None and record.key["toolchains"] == ["typescript"]
    assert record.key["profile"]["coverage_min"] == 50


# -- whole runs, on real gates ------------------------------------------------------------------

LEGACY = {
    "legacy.py": b"import os\n\n\ndef double(n):\n    return n * 2\n",
    "tests/test_legacy.py": (
        b"from legacy import double\n\n\ndef test_double():\n    assert double(2) == 4\n\n\n"
        b"def test_broken():\n    assert double(2) == 5\n"
    ),
}
"""The user's project: a ruff finding (an unused import) and a test that already fails."""
PLAN = {
    "tasks": [
        {
            "id": "T1",
            "title": "number shouter",
            "description": "app.py with show(n); legacy.py gets a docstring",
            "files": ["app.py", "tests/test_app.py", "legacy.py"],
            "requirement_ids": ["F1"],
        }
    ]
}
SHOW = "FILE: app.py\n```python\ndef show(n: int) -> str:\n    return f'{n}!'\n```\n"
APP = (
    SHOW
    # The unused import moves down two lines: the same finding.
    + 'FILE: legacy.py\n```python\n"""Legacy helpers."""\n\nimport os\n\n\n'
    "def double(n):\n    return n * 2\n```\n"
)
PASSING = (
    "FILE: tests/test_app.py\n```python\nfrom app import show\n\n\n"
    "def test_show() -> None:\n    assert show(3) == '3!'\n```\n"
)
FAILING = (
    "FILE: tests/test_app.py\n```python\nfrom app import show\n\n\n"
    "def test_show() -> None:\n    assert show(3) == '3!'\n\n\n"
    "def test_new_fails() -> None:\n    assert show(3) == '3?'\n```\n"
)


@pytest.fixture
def on_base(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every new run's first commit (its supporting files) the run's ``base``."""
    create = Workspace.create.__func__  # type: ignore[attr-defined]

    def with_base(cls: type[Workspace], *args: Any, **kw: Any) -> Workspace:
        ws: Workspace = create(cls, *args, **kw)
        ws.write_json("run.json", {**(ws.run_info() or {}), "base": ws.head()})
        return ws

    monkeypatch.setattr(Workspace, "create", classmethod(with_base))
    monkeypatch.setenv("OLDNEW_QUALITY", "fast")  # ruff and pytest, among the cheap gates


def _given(tmp_path: Path, files: dict[str, bytes]) -> list[Path]:
    """Write the user's project and return the paths to hand over (one per top-level name)."""
    root = tmp_path / "given"
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return sorted({root / Path(name).parts[0] for name in files})


def _run(tmp_path: Path, files: dict[str, bytes], code: Any, fix: Any = None) -> Any:
    models = planned_run(SCOPE, PLAN, code={"T1": code}, fix={"T1": fix} if fix else None)
    ws = tmp_path / "ws"
    scope = scope_file(tmp_path, "Build shouty: show(n) shouts a number.\n")
    out = asyncio.run(start_run(scope, ws, models=models, with_paths=_given(tmp_path, files)))
    return ws, out, models


def _json(path: Path) -> Any:
    return json.loads(path.read_text())


@pytest.mark.usefixtures("on_base")
def test_what_failed_before_the_run_blames_no_task_and_is_reported_apart(tmp_path: Path) -> None:
    ws, out, _ = _run(tmp_path, LEGACY, APP + PASSING)
    assert out.status == "delivered", out
    meta = ws / ".oldnew"
    (taken,) = events(ws, node="baseline")
    assert taken["event"] == "recorded" and sorted(taken["failing"]) == ["pytest", "ruff"]
    task = _json(meta / "evidence" / "T1-01.json")
    assert task["passed"] and task["diagnostics"] == []
    excused = {identity(Diagnostic(**d)) for d in task["excused"]}
    assert excused == {
        ("ruff", "legacy.py", "F401", "`os` imported but unused"),
        ("pytest", "tests.test_legacy::test_broken"),
    }
    assert {d["line"] for d in task["excused"] if d["tool"] == "ruff"} == {3}  # it was line 1
    checks = {c["name"]: c for c in task["checks"]}
    assert checks["ruff"]["status"] == "failed" and checks["ruff"]["excused"]
    assert task["baseline"] == ".oldnew/evidence/baseline.json"
    report = _json(meta / "report.json")
    assert report["baseline"]["status"] == "recorded"
    gates = {p["gate"] for p in report["preexisting"]}
    assert gates == {"ruff", "pytest"}
    assert all(p["evidence"] == ".oldnew/evidence/baseline.json" for p in report["preexisting"])
    assert report["delivered"][0]["excused"] == 2
    md = (meta / "report.md").read_text()
    section = md.split("## Failing before this run (not caused by it)")[1].split("## ")[0]
    assert "tests.test_legacy::test_broken" in section and "F401" in section
    assert "| ruff | **failed (before this run)** |" in md
    assert "2 findings there before the run, excused" in md
    # The user's failing test is left as it was.
    assert "double(2) == 5" in (ws / "tests" / "test_legacy.py").read_text()
    # verify re-runs the gates on main and judges them the same way.
    check = verify_workspace(ws)
    assert check.matches, check.differences
    assert any("failing before this run" in c for c in check.confirmed)
    # It checks the commit it names, the branch's tip, whatever the checkout holds.
    tip = Workspace.open(ws).head()
    subprocess.run(["git", "checkout", "-q", "--detach", "HEAD~1"], cwd=ws, check=True)
    again = verify_workspace(ws)
    assert again.head == tip and again.matches, again.differences


@pytest.mark.usefixtures("on_base")
def test_a_new_failure_in_a_gate_that_already_failed_is_the_tasks_alone(tmp_path: Path) -> None:
    ws, out, models = _run(tmp_path, LEGACY, APP + FAILING, fix=PASSING)
    assert out.status == "delivered", out
    first = _json(ws / ".oldnew" / "evidence" / "T1-01.json")
    assert not first["passed"]
    assert [identity(Diagnostic(**d)) for d in first["diagnostics"]] == [
        ("pytest", "tests.test_app::test_new_fails")
    ]
    assert {d["tool"] for d in first["excused"]} == {"ruff", "pytest"}
    (fixer,) = models["fixer"].log.of(role="fixer", task="T1")
    text = prompt_text(fixer.messages)
    assert "[pytest failure] tests.test_app::test_new_fails" in text
    assert "[pytest failure] tests.test_legacy::test_broken" not in text
    assert "[ruff F401]" not in text
    assert _json(ws / ".oldnew" / "evidence" / "T1-02.json")["passed"]


@pytest.mark.usefixtures("on_base")
def test_an_unbuildable_baseline_is_recorded_and_the_run_goes_on(tmp_path: Path) -> None:
    manifest = b'[project]\nname = "legacy"\nversion = "0.1.0"\ndependencies = ["numfmt>=2"]\n'
    own = (
        'FILE: pyproject.toml\n```toml\n[project]\nname = "legacy"\nversion = "0.1.0"\n'
        "dependencies = []\n```\n"
    )
    ws, out, _ = _run(tmp_path, {"pyproject.toml": manifest}, SHOW + PASSING + own)
    assert out.status == "delivered", out
    (taken,) = events(ws, node="baseline")
    assert taken["event"] == "unbuildable" and "uv.lock" in taken["reason"]
    assert "the run goes on" in taken["consequence"]
    record = _json(ws / ".oldnew" / "baseline.json")
    assert record["status"] == "unbuildable" and record["findings"] == []
    assert (ws / ".oldnew" / "evidence" / "baseline.json").is_file()
    md = (ws / ".oldnew" / "report.md").read_text()
    assert "could not be run on the commit this run started from" in md and "unbuildable" in md


@pytest.mark.usefixtures("on_base")
def test_the_baseline_is_not_taken_again_on_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws, out, _ = _run(tmp_path, LEGACY, APP + PASSING)
    assert out.status == "delivered", out
    before = (ws / ".oldnew" / "evidence" / "baseline.json").read_bytes()
    # The checkpoints are lost: the run starts over from its scope, its state empty.
    (ws / ".oldnew" / "checkpoints.sqlite").unlink()
    taken: list[Path] = []
    real = baseline_node.run_gates

    def counted(*args: Any, **kw: Any) -> ValidationResult:
        taken.append(args[1])
        return real(*args, **kw)

    monkeypatch.setattr(baseline_node, "run_gates", counted)
    models = planned_run(SCOPE, PLAN, code={"T1": APP + PASSING})
    again = asyncio.run(resume_run(ws, models=models, restart=True))
    assert again.status == "delivered", again
    assert taken == []
    assert [e["event"] for e in events(ws, node="baseline")] == ["recorded", "reused"]
    assert (ws / ".oldnew" / "evidence" / "baseline.json").read_bytes() == before
    report = _json(ws / ".oldnew" / "report.json")
    assert {p["gate"] for p in report["preexisting"]} == {"ruff", "pytest"}
    # Under another quality profile it is taken again, and the event says why.
    monkeypatch.setenv("OLDNEW_QUALITY", "smoke")
    (ws / ".oldnew" / "checkpoints.sqlite").unlink()
    models = planned_run(SCOPE, PLAN, code={"T1": APP + PASSING})
    third = asyncio.run(resume_run(ws, models=models, restart=True))
    assert third.status == "delivered", third
    assert len(taken) == 1
    last = events(ws, node="baseline")[-1]
    assert last["event"] == "recorded" and "quality profile changed" in last["taken_again"]
    assert _json(ws / ".oldnew" / "baseline.json")["key"]["profile"]["name"] == "smoke"


@pytest.mark.usefixtures("on_base")
def test_the_recheck_after_main_moved_is_judged_against_the_baseline_too(tmp_path: Path) -> None:
    other = {
        "id": "T2",
        "title": "number whisperer",
        "description": "quiet.py with hush(n)",
        "files": ["quiet.py", "tests/test_quiet.py"],
        "requirement_ids": ["F1"],
    }
    hush = (
        "FILE: quiet.py\n```python\ndef hush(n: int) -> str:\n    return f'{n}.'\n```\n"
        "FILE: tests/test_quiet.py\n```python\nfrom quiet import hush\n\n\n"
        "def test_hush() -> None:\n    assert hush(3) == '3.'\n```\n"
    )
    plan = {"tasks": [PLAN["tasks"][0], other]}
    models = planned_run(SCOPE, plan, code={"T1": APP + PASSING, "T2": hush})
    scope = scope_file(tmp_path, "Build shouty: show(n) shouts a number, hush(n) does not.\n")
    ws = tmp_path / "ws"
    given = _given(tmp_path, LEGACY)
    out = asyncio.run(start_run(scope, ws, models=models, with_paths=given))
    assert out.status == "delivered", out
    # Both ran from the same main: the second to land was re-checked on the first's work.
    rechecks = [
        data
        for path in sorted((ws / ".oldnew" / "evidence").glob("T*.json"))
        if (data := _json(path)).get("tree") == "rebased on main"
    ]
    assert rechecks and all(r["passed"] and r["diagnostics"] == [] for r in rechecks)
    assert all({d["tool"] for d in r["excused"]} == {"ruff", "pytest"} for r in rechecks)


def _git(cwd: Path, *args: str) -> str:
    """Run the person's own git (their identity)."""
    who = ["-c", "user.name=person", "-c", "user.email=p@example.org"]
    proc = subprocess.run(["git", *who, *args], cwd=cwd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def _state(repo: Path) -> dict[str, bytes | str]:
    """Return the person's files (outside .git) and what git says of the checkout."""
    out: dict[str, bytes | str] = {
        str(p.relative_to(repo)): p.read_bytes()
        for p in sorted(repo.rglob("*"))
        if p.is_file() and ".git" not in p.relative_to(repo).parts
    }
    out["status"] = _git(repo, "status", "--porcelain=v1", "--untracked-files=all")
    out["HEAD"] = _git(repo, "rev-parse", "HEAD")
    return out


def test_on_a_real_repository_its_own_failures_are_reported_apart_and_blamed_on_no_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLDNEW_QUALITY", "fast")
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "trunk")
    for name, data in LEGACY.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_bytes(data)
    # The repository's own ruff configuration: pyflakes and line length (E501 is no rule of
    # oldnew's defaults: finding it shows the repository's configuration counts).
    (repo / "pyproject.toml").write_text('[tool.ruff.lint]\nselect = ["F", "E501"]\n')
    with open(repo / "legacy.py", "a") as fh:
        fh.write(f"\nLONG = {'x' * 100!r}\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "the person's project")
    (repo / "legacy.py").write_text("import os, sys  # the person's uncommitted change\n")
    (repo / "scratch.txt").write_text("untracked\n")
    before = _state(repo)
    models = planned_run(SCOPE, PLAN, code={"T1": SHOW + PASSING})
    scope = scope_file(tmp_path, "Build shouty: show(n) shouts a number.\n")
    out = asyncio.run(start_run(scope, repo, models=models))
    assert out.status == "delivered", out
    assert _state(repo) == before  # checkout, uncommitted change, untracked file: untouched
    meta = Path(out.workspace) / ".oldnew"
    record = _json(meta / "baseline.json")
    assert record["commit"] == before["HEAD"] and record["status"] == "recorded"
    task = _json(meta / "evidence" / "T1-01.json")
    assert task["passed"] and task["diagnostics"] == []
    excused = {identity(Diagnostic(**d)) for d in task["excused"]}
    assert {e[:3] for e in excused} == {
        ("ruff", "legacy.py", "F401"),
        ("ruff", "legacy.py", "E501"),
        ("pytest", "tests.test_legacy::test_broken"),
    }
    report = _json(meta / "report.json")
    assert {p["gate"] for p in report["preexisting"]} == {"ruff", "pytest"}
    assert "## Failing before this run (not caused by it)" in (meta / "report.md").read_text()
    branch = f"oldnew/{out.run_id}"
    assert _git(repo, "log", "--format=%s", f"{before['HEAD']}..{branch}") == "number shouter"
