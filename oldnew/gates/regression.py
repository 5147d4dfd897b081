"""A bug fix's test must reproduce the bug: it fails on the code before the fix, passes after.

For a task that fixes a reported bug (``PlannedTask.regression_test``) the node hands the gates
the task's change (:func:`task_change`: every file it changed, as it was on the commit the
task started from, where its branch leaves the run's, never its own ``HEAD``). The gate finds
the tests the task added or changed (new test files, and in changed ones the test functions,
in classes nested or not, whose code changed), then runs those test files twice, each in a
sandbox of its own and exactly as the pytest gate runs them: on the fixed tree, with coverage
recording which test ran each line, and on the tree before the fix (the task's changes to
non-test files undone, its test files kept). At least one of the new tests must fail before,
pass after, and, after, run a line the fix changed inside a function or method of a ``.py``
file the project already had (:func:`changed_lines`): a test that only notices that something
changed (a marker constant, a file, a brand-new module) shows nothing about the reported bug,
which is about existing behaviour.

What counts as failing before: an assertion or any exception the test raises, an error in its
fixture, a run that hangs, and a test module, or a conftest, that cannot import a name of the
project (the function the fix adds is missing: the behaviour is absent). A test that passes or
is skipped before the fix, or a module that fails to load for another reason, does not
reproduce anything. A bug fix with no new test at all is a finding too. A JavaScript project's
tests are not run before the fix: the gate says so (not run, optional), never that they were
checked.
"""

from __future__ import annotations

import ast
import difflib
import hashlib
import os
import re
import time
import xml.etree.ElementTree as ET  # nosec B405 - parses pytest's own junit file
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oldnew.errors import WorkspaceError
from oldnew.gates.common import GateRun, Outcome, parse_python, rel, tool_version
from oldnew.gates.model import Check, Diagnostic
from oldnew.gates.pytests import JUNIT, read_report, suite_command
from oldnew.gates.python import defined_tests, is_test_file, is_test_module
from oldnew.safegit import run_git
from oldnew.sandbox import Sandbox
from oldnew.sandbox.files import UnsafeOutput, read_output

NAME = "regression"
CHANGE = "regression_change"
"""The key of the task's :class:`TaskChange` in :attr:`GateRun.artifacts`."""
_JS_TEST = re.compile(r"\.(test|spec)\.[cm]?[jt]sx?$")
REPRODUCES = frozenset({"failed", "error", "import error", "timeout"})
"""Outcomes before the fix that show the bug (or the missing behaviour)."""


@dataclass(frozen=True)
class TaskChange:
    """The files a task changed, as they were on the commit it started from."""

    base: str
    """That commit."""
    before: dict[str, bytes | None] = field(default_factory=dict)
    """Path -> its content at ``base``; None for a file the task added."""

    def key(self) -> str:
        """Return a hash of the change (part of a validation's reuse key)."""
        digest = hashlib.sha256(self.base.encode())
        for name in sorted(self.before):
            data = self.before[name]
            digest.update(os.fsencode(name) + b"\0" + (b"-" if data is None else data) + b"\0")
        return digest.hexdigest()


def task_change(tree: Path, options: Sequence[str] = (), main: str = "HEAD") -> TaskChange:
    """Return what the task in the checkout ``tree`` changed since the commit it started from.

    That commit is where the checkout's ``HEAD`` leaves ``main`` (the run's branch):
    ``git merge-base HEAD main``, never ``HEAD`` itself. A task's worktree is committed
    before it is rebased: when the rebase conflicts, or a person is asked, or a run resumes
    after the commit, ``HEAD`` is the task's own commit, and diffing against it would count
    the fix and its test as the code before the fix. The change is every tracked file that
    differs from that commit (staged or not, committed or not, deleted too) and every
    untracked file git does not ignore; a symlink there is left as the task has it.

    Raises:
        WorkspaceError: ``tree`` is not a git checkout git can read, or ``main`` is unknown.

    """

    def git(*args: str) -> bytes:
        proc = run_git(*args, cwd=tree, options=options, text=False)
        if proc.returncode != 0:
            raise WorkspaceError(f"git {' '.join(args)} failed in {tree}: {proc.stderr!r}")
        return bytes(proc.stdout)

    base = git("merge-base", "HEAD", main).decode().strip()
    listed = git("diff", "--name-only", "-z", "--no-renames", base)
    listed += git("ls-files", "-z", "--others", "--exclude-standard")
    names = sorted({os.fsdecode(n) for n in listed.split(b"\0") if n})
    modes: dict[str, str] = {}
    if names:
        for entry in git("ls-tree", "-z", base, "--", *names).split(b"\0"):
            if entry:
                meta, path = entry.split(b"\t", 1)
                modes[os.fsdecode(path)] = meta.split()[0].decode()
    before: dict[str, bytes | None] = {}
    for name in names:
        mode = modes.get(name)
        if mode is None:
            before[name] = None
        elif mode.startswith("100"):
            before[name] = git("cat-file", "blob", f"{base}:{name}")
    return TaskChange(base, before)


# -- which tests are new ----------------------------------------------------------------------


@dataclass(frozen=True)
class NewTest:
    """A test the task added or changed."""

    id: str
    """pytest's node id without parameters: ``tests/test_x.py::TestA::test_b``."""
    file: str
    line: int


def new_tests(tree: Path, change: TaskChange) -> list[NewTest]:
    """Return the tests the task added, or whose code it changed, in test modules it touched."""
    out: list[NewTest] = []
    for name, old in sorted(change.before.items()):
        path = tree / name
        if not is_test_module(name) or path.is_symlink() or not path.is_file():
            continue
        try:
            now = defined_tests(path.read_text(encoding="utf-8"))
            was = defined_tests(old.decode("utf-8")) if old is not None else {}
        except UnicodeDecodeError:
            continue
        for test, (line, code) in now.items():
            if test not in was or was[test][1] != code:
                out.append(NewTest(f"{name}::{test}", name, line))
    return out


# -- running them -----------------------------------------------------------------------------


@dataclass
class Outcomes:
    """How one run of the new tests' files went, test by test."""

    tests: dict[str, tuple[str, str]] = field(default_factory=dict)
    """Test id -> (outcome, detail): passed, failed, error, import error, load error, skipped."""
    ran: dict[str, list[str]] = field(default_factory=dict)
    """Test id -> the changed lines of the project's existing code it ran (the run after)."""
    problem: str = ""
    """Why the whole run says nothing (its report rigged or missing); empty when it does."""
    timed_out: bool = False


def _import_error(text: str) -> str:
    """Return the ImportError a test module's collection failed with, else ''.

    A module's missing attribute (``calc.HIGH`` read at import) is the same: a name the fix adds.
    """
    lines = [ln[1:].strip() for ln in text.splitlines() if ln.startswith("E ")]
    for line in lines:
        if line.startswith(("ImportError", "ModuleNotFoundError")) or re.match(
            r"AttributeError: module '[^']+' has no attribute", line
        ):
            return line[:300]
    return ""


def _case_outcome(case: ET.Element) -> tuple[str, str]:
    for tag in ("failure", "error"):
        problem = case.find(tag)
        if problem is None:
            continue
        message = (problem.get("message") or "").strip()
        text = problem.text or ""
        if message == "collection failure":
            missing = _import_error(text)
            if missing:
                return "import error", missing
            errors = [ln[1:].strip() for ln in text.splitlines() if ln.startswith("E ")]
            return "load error", (errors[-1] if errors else text.strip()[-300:])[:300]
        if "fixture '" in text and "' not found" in text:
            return "load error", "a fixture it asks for does not exist"
        return ("failed" if tag == "failure" else "error"), message[:300]
    if case.find("skipped") is not None:
        return "skipped", (case.find("skipped").get("message") or "")[:300]  # type: ignore[union-attr]
    return "passed", ""


def _read_outcomes(data: bytes, tests: list[NewTest]) -> dict[str, tuple[str, str]]:
    """Return the outcome of each new test from a junit report (the worst of its instances)."""
    root = ET.fromstring(data)  # nosec B314 - bounded bytes, no entities or DTDs resolved
    modules = {t.file: t.file[:-3].replace("/", ".") for t in tests}
    wanted = {t.id for t in tests}
    rank = ["passed", "skipped", "load error", "import error", "error", "failed"]
    out: dict[str, tuple[str, str]] = {}
    for case in root.iter("testcase"):
        file = case.get("file", "")
        outcome = _case_outcome(case)
        name = (case.get("name") or "").split("[", 1)[0]
        classname = case.get("classname") or ""
        if not classname and outcome[0] in ("import error", "load error"):
            hit = [t.id for t in tests if modules[t.file] == name or t.file == file]
        else:
            module = modules.get(file, "")
            inner = classname[len(module) + 1 :] if classname.startswith(module + ".") else ""
            inner = inner.replace(".", "::")  # nested classes: tests.test_x.TestA.TestB
            hit = [f"{file}::{inner}::{name}" if inner else f"{file}::{name}"]
        for test in (h for h in hit if h in wanted):
            if test not in out or rank.index(outcome[0]) > rank.index(out[test][0]):
                out[test] = outcome
    return out


def changed_lines(tree: Path, change: TaskChange) -> dict[str, set[int]]:
    """Return the lines the task changed in the project's existing code, file by file.

    Only non-test ``.py`` files that existed at the base count, and in them only the lines
    inside a function's or method's body (a line next to one the task deleted counts too):
    module and class level code (``def``, ``class``, ``import`` lines, constants) runs when
    the module is imported, so a test that runs it shows no more than that the file loads.
    """
    out: dict[str, set[int]] = {}
    for name, old in sorted(change.before.items()):
        path = tree / name
        if old is None or not name.endswith(".py") or is_test_file(name):
            continue
        if path.is_symlink() or not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
            was = old.decode("utf-8").splitlines()
            module = parse_python(text)
        except (UnicodeDecodeError, SyntaxError, ValueError, RecursionError):
            continue
        now = text.splitlines()
        changed: set[int] = set()
        matcher = difflib.SequenceMatcher(None, was, now, autojunk=False)
        for tag, _i1, _i2, j1, j2 in matcher.get_opcodes():
            if tag in ("replace", "insert"):
                changed.update(range(j1 + 1, j2 + 1))
            elif tag == "delete":
                changed.update((j1, j1 + 1))  # the lines either side of the deleted ones
        if lines := _statements_touched(module, changed):
            out[name] = lines
    return out


def _statements_touched(module: ast.Module, changed: set[int]) -> set[int]:
    """Return the first lines of the statements in function bodies that ``changed`` touches.

    coverage.py reports a statement by its first line: a fix to the second line of a
    statement spread over several is a change to that statement.
    """
    out: set[int] = set()
    for func in ast.walk(module):
        if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for top in func.body:
            for node in ast.walk(top):
                if not isinstance(node, ast.stmt):
                    continue
                inner = [
                    b
                    for f in ("body", "orelse", "finalbody", "handlers")
                    for b in getattr(node, f, []) or []
                ]
                last = (
                    min((b.lineno for b in inner), default=(node.end_lineno or node.lineno) + 1) - 1
                )
                if changed & set(range(node.lineno, max(last, node.lineno) + 1)):
                    out.add(node.lineno)
    return out


def _ran_changed(
    coverage: dict[str, Any], changed: dict[str, set[int]], tests: list[NewTest]
) -> dict[str, list[str]]:
    """Return each new test -> the changed lines (``file:line``) it ran, from the contexts.

    A context is pytest-cov's ``<node id>|setup``, ``|run`` or ``|teardown``; a node id's
    parameters (``[9]``) are dropped, so every instance of a parametrized test counts.
    """
    wanted = {t.id for t in tests}
    out: dict[str, list[str]] = {t.id: [] for t in tests}
    for name, lines in sorted(changed.items()):
        contexts = coverage.get("files", {}).get(name, {}).get("contexts") or {}
        for line in sorted(lines):
            for context in contexts.get(str(line), []):
                test = str(context).rsplit("|", 1)[0].split("[", 1)[0]
                if test in wanted and f"{name}:{line}" not in out[test]:
                    out[test].append(f"{name}:{line}")
    return out


def _undo(box: Sandbox, before: dict[str, bytes | None]) -> None:
    """Put the files of ``before`` back in ``box`` as they were (None: remove the file)."""
    for name, data in before.items():
        path = box.tree / name
        if data is None:
            if path.is_file() or path.is_symlink():
                path.unlink()
            continue
        if path.is_symlink():
            path.unlink()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    box.adopt(box.tree)


_CONFTEST = re.compile(r"ImportError while loading conftest '([^']+)'")
_MISSING_MODULE = re.compile(
    r"(?:No module named|cannot import name '[^']+' from|module) '([A-Za-z_][\w.]*)'"
)


def _project_module(tree: Path, dotted: str) -> bool:
    """Whether ``dotted`` (its first part) is a module or package of the project in ``tree``."""
    top = dotted.split(".", 1)[0]
    for root in (tree, tree / "src"):
        if (root / f"{top}.py").is_file() or (root / top).is_dir():
            return True
    return False


def conftest_import_error(result_output: str, tree: Path, box_tree: Path) -> tuple[str, str] | None:
    """Return (outcome, detail) of a run a conftest's ImportError stopped, else None.

    pytest loads the conftest files before it collects anything: when one imports a name the
    fix adds, the run on the tree before the fix stops there (exit code 4, no report), and
    every new test counts as an ``import error``. A conftest that fails to import something
    that is not the project's (a package not installed) is a ``load error``: no evidence.
    ``tree`` is the fixed tree (a module the fix adds is a project's), ``box_tree`` the one run.
    """
    found = _CONFTEST.search(result_output)
    if not found:
        return None
    missing = _import_error(result_output).replace(f"{box_tree}{os.sep}", "")
    module = _MISSING_MODULE.search(missing)
    shown = rel(found[1], box_tree)
    if module and _project_module(tree, module[1]):
        return "import error", f"{shown} could not import a name of the project: {missing}"[:300]
    why = f"{shown} could not be loaded ({missing or 'an ImportError'}), not for a name of"
    return "load error", f"{why} the project"[:300]


def _run_tests(
    run: GateRun,
    tests: list[NewTest],
    undo: dict[str, bytes | None],
    timeout: float,
    changed: dict[str, set[int]] | None = None,
) -> Outcomes:
    """Run the new tests' files in a fresh sandbox, with ``undo``'s files as they were.

    With ``changed`` (the run after the fix) coverage records which test ran each line, and
    :attr:`Outcomes.ran` says which of the ``changed`` lines each new test ran.
    """
    files = sorted({t.file for t in tests})
    measure = changed is not None
    with run.new_sandbox() as box:
        _undo(box, undo)
        argv, variables = suite_command(box, measure=measure, contexts=measure)
        result = box.run([*argv, *files], timeout=timeout, env=variables)
        if result.killed:
            return Outcomes({t.id: ("timeout", result.ending()) for t in tests}, timed_out=True)
        if not measure and result.exit_code == 4:
            # The tree before the fix lacks a name a conftest imports: nothing was collected.
            if stopped := conftest_import_error(result.output, run.tree, box.tree):
                return Outcomes({t.id: stopped for t in tests})
        report = read_report(box, result, measure=measure)
        if report.forged:
            return Outcomes(problem=report.forged)
        try:
            data = read_output(box.home, JUNIT)
        except UnsafeOutput as exc:
            return Outcomes(problem=f"pytest's report cannot be trusted: {exc}")
    try:
        found = _read_outcomes(data or b"", tests)
        found = {k: (o, d.replace(f"{box.tree}{os.sep}", "")) for k, (o, d) in found.items()}
    except ET.ParseError as exc:
        return Outcomes(problem=f"pytest's report is unreadable: {exc}")
    missing = ("missing", "pytest did not report it (not collected)")
    out = Outcomes({t.id: found.get(t.id, missing) for t in tests})
    if changed is not None:
        if report.coverage is None:
            out.problem = (
                "coverage.py measured nothing (pytest-cov did not run), so which of your "
                "changed lines each test runs is unknown"
            )
        else:
            out.ran = _ran_changed(report.coverage, changed, tests)
    return out


# -- the gate ---------------------------------------------------------------------------------


def _finding(test: NewTest, before: str, after: str, why: str) -> Diagnostic:
    return Diagnostic(
        NAME, test.file, test.line, f"{test.id} (before: {before}, after: {after}): {why}"
    )


def reproduces(test: NewTest, was: Outcomes, now: Outcomes) -> bool:
    """Whether ``test`` fails before the fix, passes after, and ran a line the fix changed."""
    return (
        was.tests[test.id][0] in REPRODUCES
        and now.tests[test.id][0] == "passed"
        and bool(now.ran.get(test.id))
    )


def _shown_lines(changed: dict[str, set[int]]) -> str:
    parts = [
        f"{name}:{','.join(str(n) for n in sorted(lines)[:6])}" for name, lines in changed.items()
    ]
    return "; ".join(parts[:5]) + (" ..." if len(parts) > 5 else "")


def _verdict(
    tests: list[NewTest], was: Outcomes, now: Outcomes, changed: dict[str, set[int]]
) -> list[Diagnostic]:
    """Return the findings of a bug fix's new tests; none when one reproduces the bug."""
    if was.problem or now.problem:
        which = "before your change" if was.problem else "with your change"
        why = f"the run of your new tests on the tree {which} cannot be believed: "
        return [Diagnostic(NAME, tests[0].file, tests[0].line, why + (was.problem or now.problem))]
    if any(reproduces(t, was, now) for t in tests):
        return []
    diags = []
    for t in tests:
        before, detail = was.tests[t.id]
        after = now.tests[t.id][0]
        if before in REPRODUCES and after == "passed" and not changed:
            why = (
                "it fails on the tree before your change and passes with it, but your change "
                "alters no line inside a function or method of a .py file the project already "
                "had (only new files, test files, other files, or module-level lines such as "
                "constants, imports, def and class lines): a bug report is about existing "
                "behaviour, so fix the code that goes wrong, and test that code"
            )
        elif before in REPRODUCES and after == "passed":
            why = (
                "it fails on the tree before your change and passes with it, but it runs none "
                "of the lines your change made inside the functions of the project's existing "
                f"code ({_shown_lines(changed)}): it notices that something changed, not that "
                "the reported bug is fixed. Make it call the code the report is about"
            )
        elif before in REPRODUCES:
            why = (
                f"it fails on the tree before your change, but with your change it is {after}, "
                "not passed: the fix must make it pass"
            )
        elif before == "passed":
            why = (
                "your test does not reproduce the bug: it passes on the tree before your change. "
                "Make it check what the report says goes wrong, so that it fails without the fix"
            )
        elif before == "skipped":
            why = (
                "it is skipped on the tree before your change, so it shows nothing: do not skip it"
            )
        else:
            why = (
                f"on the tree before your change it could not run ({detail}), which is no "
                "evidence of the bug: only a failing test, or an import of a name the fix adds, is"
            )
        diags.append(_finding(t, before, after, why))
    return diags


def gate_regression(run: GateRun) -> Outcome:
    """Fail a bug fix whose new tests do not fail on the code before it and pass after."""
    change: TaskChange | None = run.artifacts.get(CHANGE)
    if change is None:
        return Check(NAME, "not_run", [], None, 0.0, "no task change to check", required=False), []
    start = time.monotonic()
    tests = new_tests(run.tree, change)
    base = change.base[:12]
    if not tests and (scripts := sorted(n for n in change.before if _JS_TEST.search(n))):
        why = (
            "the tests before the fix are run for pytest tests only: this bug fix's tests "
            f"({', '.join(scripts[:5])}) were not run on the tree before it; check by hand "
            "that they fail there"
        )
        return Check(NAME, "not_run", [], None, 0.0, why, required=False), []
    if not tests:
        why = (
            "this task fixes a reported bug but adds or changes no test: add a test that "
            "reproduces the report (it must fail on the code before your change and pass after)"
        )
        summary = f"no new test to run on the tree before the fix (commit {base})"
        check = Check(NAME, "failed", [], None, 0.0, summary, metrics={"base": change.base})
        return check, [Diagnostic(NAME, ".", 0, why, "no-test")]
    undo = {n: d for n, d in change.before.items() if not is_test_file(n)}
    changed = changed_lines(run.tree, change)
    seconds = float(run.artifacts.get("pytest_seconds", 5.0))
    timeout = min(run.timeout, max(20.0, 4 * seconds + 10))
    with ThreadPoolExecutor(max_workers=2) as pool:
        was_f = pool.submit(_run_tests, run, tests, undo, timeout)
        now_f = pool.submit(_run_tests, run, tests, {}, run.timeout, changed)
        was, now = was_f.result(), now_f.result()
    diags = _verdict(tests, was, now, changed)
    shown = [
        {
            "id": t.id,
            "before": was.tests.get(t.id, ("?", ""))[0],
            "before_detail": was.tests.get(t.id, ("", ""))[1],
            "after": now.tests.get(t.id, ("?", ""))[0],
            "ran_changed": now.ran.get(t.id, []),
        }
        for t in tests
    ]
    problem = bool(was.problem or now.problem)
    reproduced = [t.id for t in tests if not problem and reproduces(t, was, now)]
    summary = (
        f"{len(reproduced)} of {len(tests)} new tests fail on the tree before the fix (commit "
        f"{base}, {len(undo)} files as they were), pass with it and run a line it changed in "
        "the project's existing code"
    )
    check = Check(
        NAME,
        "failed" if diags else "passed",
        ["pytest on the new tests' files, before the fix and with it, each in its own sandbox"],
        None,
        round(time.monotonic() - start, 3),
        summary,
        tool_version("pytest"),
        metrics={
            "base": change.base,
            "tests": shown,
            "reproduced": reproduced,
            "restored": sorted(undo),
            "changed": {name: sorted(lines) for name, lines in changed.items()},
        },
    )
    return check, diags
