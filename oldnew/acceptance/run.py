"""Run a folder of tests on a project's copy, outside it, under oldnew's pytest configuration.

One runner for every test suite that is not the project's own: the acceptance suite the tester
wrote (``gates.acceptance``) and an eval case's hidden tests (``eval.acceptance``). The tests sit
in a folder of the sandbox's home (:data:`HIDDEN`), outside the project's copy; pytest reads a
configuration oldnew writes (``-c``), its root and the lowest folder a ``conftest.py`` is read
from are that folder, plugins are not auto-loaded, and the project is importable (its folder
first on ``sys.path``, as ``python -m pytest`` puts it) without any of its ``conftest.py`` files,
ini options or ``sitecustomize`` applied: nothing of the project's can change how they run.

Results are per test (``file::test``, the file relative to the tests' folder), read from
pytest's junit report, believed only where the exit code agrees with it, and completed with
the tests the files define (read without running them): a test defined but not run is
``not_run``; a report that was rigged, or a run that was stopped, passes nothing.

Who must act on a test that did not pass (:func:`classify`):

- ``failed``, the code's: an assertion, or an exception raised from the project's code
  (whatever its message: the deepest frame decides); a project module (or a name in one) the
  test imports is missing: the interface is not built yet, or differently; a skip the
  project's code raised; a run stopped at its time limit.
- ``error``, the tester's (the test cannot run through no fault of the code): the test file
  does not parse; a fixture it uses does not exist; a ``NameError`` in the test's own module;
  an import of something that is neither the project's nor there to have (a name missing from
  the standard library or pytest, a third-party package the project does not have); a file
  the test itself opens is missing (a supporting file the tests need); a file that defines
  no test; a test that skips itself.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import re
import shutil
import sys
import xml.etree.ElementTree as ET  # nosec B405 - parses pytest's own junit file, size-capped
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from oldnew.gates.common import parse_python
from oldnew.gates.pytests import JUNIT, PYTEST_ENV, pytest_argv, read_report
from oldnew.gates.python import TEST_MODULES, defined_tests
from oldnew.sandbox import Sandbox, SandboxError
from oldnew.sandbox.files import UnsafeOutput, read_output

Result = Literal["passed", "failed", "error", "not_run"]
HIDDEN = "acceptance"
"""The folder of the sandbox's home the tests are copied to, outside the project's copy."""
INI = "acceptance.ini"
"""pytest's configuration for them, written by oldnew beside that folder."""
MAX_MESSAGE = 600

_NO_MODULE = re.compile(r"No module named '([\w.]+)'")
_NO_NAME = re.compile(r"cannot import name '(\w+)' from '([\w.]+)'")
_NO_FIXTURE = re.compile(r"fixture '(\w+)' not found")
_CRASH = re.compile(r"^(\S+\.py):(\d+): (\w+)$", re.MULTILINE)
_MISSING_FILE = re.compile(r"No such file or directory: '([^']+)'")
_TOOLS = frozenset({"pytest", "_pytest", "pluggy", "iniconfig", "packaging"})


@dataclass
class SuiteRun:
    """What one run of a test folder did, test by test."""

    results: dict[str, Result] = field(default_factory=dict)
    """``file::test`` (``file`` alone for a file nothing of which could run) -> its result,
    for every test the files define and every test pytest reported."""
    messages: dict[str, str] = field(default_factory=dict)
    """``file::test`` -> why it did not pass (the failure's message, the reason it is the
    tester's); nothing for a passed test."""
    error: str = ""
    """Why the run as a whole cannot be believed or did not happen ("" when it ran)."""
    uncollected: list[str] = field(default_factory=list)
    """The test files pytest could not import (their tests count as failed or error)."""
    ran: int = 0
    """Tests pytest reported (parametrized cases one by one)."""
    defined: int = 0
    """Tests the files define, read without running them (:func:`static_tests`)."""
    seconds: float = 0.0
    output: str = ""
    junit: bytes | None = None
    command: list[str] = field(default_factory=list)
    exit_code: int | None = None

    def with_result(self, result: Result) -> list[str]:
        """Return the tests (``file::test``) whose result is ``result``, sorted."""
        return sorted(k for k, v in self.results.items() if v == result)

    def not_passed(self) -> None:
        """Make every passed test failed: the run cannot be believed (:attr:`error` says why)."""
        for key, value in self.results.items():
            if value == "passed":
                self.results[key] = "failed"
                self.messages[key] = self.error


# -- the suite's files, read without running them ---------------------------------------------


def hidden_files(tests: Path) -> list[Path]:
    """Return the test files of the folder ``tests``, the ones pytest collects."""
    if not tests.is_dir():
        return []
    found = {p for pattern in TEST_MODULES for p in tests.rglob(pattern) if p.is_file()}
    return sorted(p for p in found if "__pycache__" not in p.parts)


def static_tests(path: Path) -> int:
    """Return how many tests ``path`` defines, read without running it (parametrize aside).

    What a file that cannot be imported would have run (:func:`defined_tests`); at least one.
    """
    try:
        return max(1, len(defined_tests(path.read_text(encoding="utf-8"))))
    except (OSError, UnicodeDecodeError):
        return 1


def suite_tests(tests: Path) -> int:
    """Return how many tests the files in ``tests`` define (:func:`static_tests`)."""
    return sum(static_tests(p) for p in hidden_files(tests))


def _unparsable(source: str) -> str:
    """Return why ``source`` is not Python that parses, or ""."""
    try:
        parse_python(source)
    except SyntaxError as exc:
        return f"the test file does not parse: {exc.msg} (line {exc.lineno})"
    except (ValueError, RecursionError) as exc:
        return f"the test file does not parse: {exc}"
    return ""


def _defined(tests: Path) -> tuple[dict[str, Result], dict[str, str]]:
    """Return every test the files define as not run, and the files that do not parse."""
    results: dict[str, Result] = {}
    messages: dict[str, str] = {}
    for path in hidden_files(tests):
        rel = path.relative_to(tests).as_posix()
        try:
            source = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            source, why = "", f"the test file cannot be read as UTF-8 text: {exc}"
        else:
            why = _unparsable(source)
        names = defined_tests(source) if not why else {}
        if why or not names:
            results[rel] = "error"  # the tester's: it does not parse, or tests nothing
            messages[rel] = why or "the file defines no test"
        for name in names:
            results[f"{rel}::{name}"] = "not_run"
    return results, messages


# -- running them ----------------------------------------------------------------------------


def place_tests(box: Sandbox, tests: Path | Mapping[str, str]) -> Path:
    """Put the tests (a host folder, or path -> text) in ``box``'s :data:`HIDDEN` folder.

    Returns that folder, given to the sandbox's uid.
    """
    hidden = box.home / HIDDEN
    if isinstance(tests, Path):
        shutil.copytree(tests, hidden, ignore=shutil.ignore_patterns("__pycache__"))
    else:
        hidden.mkdir()
        for rel, text in tests.items():
            path = hidden / rel
            if hidden.resolve() not in path.resolve().parents:
                raise SandboxError(f"a test's path leads out of its folder: {rel}")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    box.adopt(hidden)
    return hidden


def _ini(box: Sandbox) -> Path:
    """Write pytest's configuration for the tests: pytest's defaults, said outright.

    ``src/`` goes on the search path when the project has one (as the gates search it), the
    project's folder is there already; nothing of the project's own configuration is read.
    """
    src = box.tree / "src"
    lines = [
        "[pytest]",
        "addopts =",
        f"python_files = {' '.join(TEST_MODULES)}",
        "python_classes = Test",
        "python_functions = test",
        "junit_family = xunit1",
    ]
    if src.is_dir():
        lines.append(f"pythonpath = {src}")
    path = box.home / INI
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def tests_command(box: Sandbox, hidden: Path) -> tuple[list[str], dict[str, str]]:
    """Return the argv and variables that run the tests in ``hidden`` on ``box``'s project.

    They run in the project's copy (its folder first on ``sys.path``), but pytest's
    configuration is oldnew's (:func:`_ini`), its root and ``--confcutdir`` are ``hidden``,
    so no ``conftest.py`` of the project's is loaded, and no plugin is auto-loaded.
    """
    argv = pytest_argv(
        box,
        "-c",
        str(_ini(box)),
        "--rootdir",
        str(hidden),
        "--confcutdir",
        str(hidden),
        f"--junitxml={box.home / JUNIT}",
        str(hidden),
    )
    return argv, {**box.env.variables(), **PYTEST_ENV, "PYTEST_ADDOPTS": ""}


def run_tests(box: Sandbox, tests: Path | Mapping[str, str], *, timeout: float) -> SuiteRun:
    """Run ``tests`` on ``box``'s project copy; return each test's result (module docstring).

    Raises:
        SandboxError: the sandbox cannot run them.

    """
    hidden = place_tests(box, tests)
    out = SuiteRun()
    out.results, out.messages = _defined(hidden)
    out.defined = sum(static_tests(p) for p in hidden_files(hidden))
    argv, variables = tests_command(box, hidden)
    result = box.run(argv, timeout=timeout, env=variables)
    out.seconds, out.output = round(result.duration_s, 2), result.output
    out.command, out.exit_code = result.argv, result.exit_code
    try:
        report = read_report(box, result, measure=False)
        out.junit = read_output(box.home, JUNIT)
    except UnsafeOutput as exc:  # read_report says so too; the junit read is the second look
        out.error = f"pytest's report cannot be trusted: {exc}"
        out.not_passed()
        return out
    if out.junit is not None:
        _read_junit(out, out.junit, hidden, box.tree)
        _drop_parametrized(out)
    if result.killed or result.ending():
        out.error = f"the tests were stopped: {result.ending() or result.killed}"
    elif report.forged:
        out.error = report.forged
    elif result.exit_code == 5 or (out.ran == 0 and not out.uncollected):
        out.error = "pytest collected no test"
    if out.error:
        out.not_passed()
    return out


# -- reading the report ----------------------------------------------------------------------


def _key(case: ET.Element) -> str:
    """Return a junit testcase's ``file::Class::test`` (``file`` for a whole file)."""
    file = case.get("file") or ""
    classname, name = case.get("classname") or "", case.get("name") or ""
    module = file.removesuffix(".py").replace("/", ".")
    if not classname:
        return file or name
    cls = classname[len(module) + 1 :] if classname.startswith(module + ".") else ""
    parts = [file, *(cls.split(".") if cls else []), name]
    return "::".join(p for p in parts if p)


def _read_junit(out: SuiteRun, junit: bytes, hidden: Path, tree: Path) -> None:
    """Set each reported test's result and message from pytest's junit report."""
    try:
        root = ET.fromstring(junit)  # nosec B314 - bounded bytes, no entities or DTDs resolved
    except ET.ParseError:
        return  # read_report calls it forged
    for case in root.iter("testcase"):
        problems = [*case.findall("failure"), *case.findall("error")]
        key = _key(case)
        if not problems:
            skipped = case.find("skipped")
            out.ran += 1
            out.results[key] = "passed" if skipped is None else "not_run"
            if skipped is not None:
                out.messages[key] = _skip_message(skipped, hidden, tree)
            continue
        problem = problems[0]
        text = problem.text or ""
        message = (problem.get("message") or "").strip() or text.strip()[-MAX_MESSAGE:]
        who, why = classify(text, message, hidden, tree)
        if message == "collection failure":
            out.uncollected.append(case.get("file") or key)
            _whole_file(out, case.get("file") or key, who, why)
            continue
        out.ran += 1
        out.results[key] = who
        out.messages[key] = why[:MAX_MESSAGE]


def _drop_parametrized(out: SuiteRun) -> None:
    """Drop a defined test's own entry when its cases ran (``test_x[1]``, ``test_x[2]``)."""
    cases = {k.split("[", 1)[0] for k in out.results if "[" in k}
    for key in cases:
        if out.results.get(key) == "not_run" and key not in out.messages:
            del out.results[key]


def _whole_file(out: SuiteRun, file: str, who: Result, why: str) -> None:
    """Give every test of a file that could not be collected the file's result."""
    keys = [k for k in out.results if k == file or k.startswith(file + "::")]
    for key in keys or [file]:
        if out.results.get(key) == "error" and key == file:
            continue  # it does not parse: said already, and more exactly
        out.results[key] = who
        out.messages[key] = why[:MAX_MESSAGE]


@functools.cache
def _known_packages() -> frozenset[str]:
    """Return the top-level modules of the third-party packages oldnew's environment has."""
    return frozenset(importlib.metadata.packages_distributions())


def _project_module(top: str, tree: Path) -> bool:
    """Whether ``top`` is a module or package of the project's copy (or of its ``src/``)."""
    return any(
        (base / f"{top}.py").is_file() or (base / top).is_dir() for base in (tree, tree / "src")
    )


def _missing_import(text: str, tree: Path) -> tuple[Result, str] | None:
    """Classify a failed import the report shows, if it shows one."""
    missing = _NO_MODULE.search(text)
    no_name = _NO_NAME.search(text)
    if no_name:
        top = no_name[2].split(".")[0]
        if top in sys.stdlib_module_names or top in _TOOLS:
            return "error", f"the test imports {no_name[1]!r} from {no_name[2]!r}, which has none"
        return "failed", f"the project's {no_name[2]} has no {no_name[1]!r} (the interface)"
    if not missing:
        return None
    top = missing[1].split(".")[0]
    if _project_module(top, tree):
        return "failed", f"the project's module {missing[1]!r} is missing (the interface)"
    if top in sys.stdlib_module_names or top in _TOOLS:
        return "error", f"the test imports {missing[1]!r}, which does not exist"
    if top in _known_packages():
        return "error", (
            f"the test imports {missing[1]!r}, a third-party package the project does not have"
        )
    return "failed", f"the project has no module {missing[1]!r}: it is not built, or named else"


def _in_suite(path: str, hidden: Path, tree: Path) -> bool:
    """Whether a traceback's ``path`` (absolute, or relative to ``tree``) is in the tests."""
    if not path:
        return False
    full = Path(os.path.normpath(tree / path))  # an absolute ``path`` stays as it is
    return full == hidden or hidden in full.parents


def _in_project(path: str, hidden: Path, tree: Path) -> bool:
    """Whether a traceback's ``path`` is a file of the project's copy (not of the tests)."""
    if not path:
        return False
    full = Path(os.path.normpath(tree / path))
    return (tree in full.parents) and not _in_suite(path, hidden, tree)


def _deepest(text: str) -> str:
    """Return the file of a traceback's deepest frame, or "".

    pytest's ``file:line: Error`` lines first, else Python's ``File "x", line n`` ones.
    """
    crashes = _CRASH.findall(text)
    if crashes:
        return str(crashes[-1][0])
    found = re.findall(r'File "([^"]+)", line \d+', text)
    return found[-1] if found else ""


def _skip_message(skipped: ET.Element, hidden: Path, tree: Path) -> str:
    """Say who skipped a test: the tester's test itself, or the project's code it called.

    pytest's report gives where the skip was raised (``path:line: reason``); a skip raised in
    the project's code is the code's to answer for, any other the tester's (``skipped: ...``).
    """
    reason = skipped.get("message") or ""
    where = (skipped.text or "").rsplit(":", 2)[0] if (skipped.text or "").count(":") >= 2 else ""
    if _in_project(where, hidden, tree):
        return f"the project's code skipped it ({where}): {reason}"
    return "skipped: " + reason


def classify(text: str, message: str, hidden: Path, tree: Path) -> tuple[Result, str]:
    """Return who must act on one test that did not pass, and why (module docstring).

    ``text`` is the report's traceback, ``message`` its one line, ``hidden`` the tests'
    folder, ``tree`` the project's copy (the folder tracebacks' relative paths start from).
    An exception whose deepest frame is in the project's code is the code's, whatever its
    message says (code that raises "fixture 'x' not found" does not pass its failure on).
    """
    if _in_project(_deepest(text), hidden, tree):
        return "failed", message
    fixture = _NO_FIXTURE.search(text)
    if fixture:
        return "error", f"the test uses a fixture that does not exist: {fixture[1]!r}"
    if "SyntaxError" in text and _in_suite(_where(text, "SyntaxError"), hidden, tree):
        return "error", f"the test file does not parse: {message}"
    imported = _missing_import(text, tree)
    if imported is not None:
        return imported
    crashes = _CRASH.findall(text)
    file, _, kind = crashes[-1] if crashes else ("", "", "")
    own = _in_suite(file, hidden, tree)
    if own and kind == "NameError":
        return "error", f"the test uses a name it does not define: {message}"
    if own and kind == "FileNotFoundError":
        found = _MISSING_FILE.search(text)
        what = found[1] if found else message
        return "error", f"a file the test opens is missing: {what}"
    return "failed", message


def _where(text: str, kind: str) -> str:
    """Return the file a ``kind`` error in ``text`` names (``File "x", line n``), or ""."""
    found = re.findall(r'File "([^"]+)", line \d+', text)
    return found[-1] if found and kind in text else ""
