"""A case's hidden acceptance tests, run on what the run delivered.

The tests run on the files of the run's branch tip (nothing untracked), in a fresh
environment built from the project's lock (the one ``oldnew verify`` builds; pytest lent from
oldnew's own, offline, as the gates get it), in the sandbox. They are the evaluator's, and so
is everything that decides how they run: they sit in a folder of their own outside the
project's copy, pytest reads a configuration oldnew writes (``-c``), its root and the lowest
folder a ``conftest.py`` is read from are that folder, plugins are not auto-loaded, and the
project is importable (its folder first on ``sys.path``, as ``python -m pytest`` puts it)
without any of its ``conftest.py`` files, ini options or ``sitecustomize`` applied. Counts come
from pytest's junit report, cross-checked with its exit code as the gate checks them, and
with the number of tests the hidden files define: a case never counts fewer tests than that.
"""

from __future__ import annotations

import shutil
import tempfile
import xml.etree.ElementTree as ET  # nosec B405 - parses pytest's own junit file, size-capped
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from oldnew.deps.errors import DependencyError
from oldnew.deps.settings import DepSettings
from oldnew.gates.pytests import JUNIT, PYTEST_ENV, SuiteReport, pytest_argv, read_report
from oldnew.gates.python import TEST_MODULES, defined_tests
from oldnew.gates.runner import sandbox_limits
from oldnew.gates.verify import export_head, locked_env
from oldnew.sandbox import RunResult, Sandbox, SandboxError
from oldnew.sandbox.files import UnsafeOutput, read_output
from oldnew.workspace import Workspace

HIDDEN = "acceptance"
"""The folder of the sandbox's home the tests are copied to, outside the project's copy."""
INI = "acceptance.ini"
"""pytest's configuration for them, written by oldnew beside that folder."""
"""Imported before the project's folder goes on ``sys.path``: no project module stands in."""
"""The files pytest collects tests from (its defaults, set in :data:`INI`)."""


@dataclass
class Acceptance:
    """How a delivered tree did on the hidden tests."""

    passed: int = 0
    total: int = 0
    failed: list[str] = field(default_factory=list)
    """The tests that failed or errored (``file::test: message``)."""
    error: str = ""
    """Why the tests could not run or their result cannot be believed ("" when they ran)."""
    seconds: float = 0.0
    junit: str = ""
    """The junit report kept for the case (path), "" when pytest wrote none."""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


def _uncollected(junit: bytes) -> list[str]:
    """Return the test files pytest could not collect (an import failed), by junit path."""
    try:
        root = ET.fromstring(junit)  # nosec B314 - bounded bytes, no entities or DTDs resolved
    except ET.ParseError:
        return []
    return [
        case.get("file") or ""
        for case in root.iter("testcase")
        for problem in [*case.findall("error"), *case.findall("failure")]
        if problem.get("message") == "collection failure"
    ]


def static_tests(path: Path) -> int:
    """Return how many tests ``path`` defines, read without running it (parametrize aside).

    What a file that cannot be imported would have run (:func:`defined_tests`); at least one.
    """
    try:
        return max(1, len(defined_tests(path.read_text(encoding="utf-8"))))
    except (OSError, UnicodeDecodeError):
        return 1


def hidden_files(tests: Path) -> list[Path]:
    """Return the test files of the folder ``tests``, the ones pytest collects."""
    if not tests.is_dir():
        return []
    found = {p for pattern in TEST_MODULES for p in tests.rglob(pattern) if p.is_file()}
    return sorted(p for p in found if "__pycache__" not in p.parts)


def suite_tests(tests: Path) -> int:
    """Return how many tests the hidden files in ``tests`` define (:func:`static_tests`)."""
    return sum(static_tests(p) for p in hidden_files(tests))


def _count_uncollected(out: Acceptance, files: list[str], tests: Path) -> None:
    """Count the tests of files that could not be collected as failed, one by one."""
    for rel in files:
        n = static_tests(tests / rel)
        out.total += n - 1  # junit holds one entry for the whole file
    shown = ", ".join(files[:5])
    out.error = (
        f"{len(files)} acceptance test file(s) could not be collected ({shown}): the delivered "
        "code does not import as they expect; their tests count as failed"
    )


def _ini(box: Sandbox) -> Path:
    """Write pytest's configuration for the hidden tests: pytest's defaults, said outright.

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


def acceptance_command(box: Sandbox, hidden: Path) -> tuple[list[str], dict[str, str]]:
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


def _judged(out: Acceptance, defined: int) -> Acceptance:
    """Count at least the tests the hidden files define; say so when fewer were collected."""
    if out.total < defined:
        if not out.error:
            out.error = (
                f"collected fewer tests than the suite defines ({out.total} of {defined}): "
                "the ones not run count as failed"
            )
        out.total = defined
    out.passed = min(out.passed, out.total)
    return out


def run_acceptance(
    ws: Workspace, tests: Path, *, deps: DepSettings, timeout: float, keep: Path
) -> Acceptance:
    """Run ``tests`` on the tip of ``ws``'s branch; keep pytest's report and output in ``keep``.

    Whatever happens, the result counts every test the hidden files define.

    Raises:
        WorkspaceError: the branch tip cannot be written out.

    """
    keep.mkdir(parents=True, exist_ok=True)
    defined = suite_tests(tests)
    with tempfile.TemporaryDirectory(prefix="oldnew-eval-") as tmp:
        tree = export_head(ws, Path(tmp) / "tree")
        try:
            env = locked_env(tree, deps)
        except DependencyError as exc:
            why = f"the project's environment cannot be built: {exc}"
            return _judged(Acceptance(error=why), defined)
        try:
            with Sandbox.open(tree, env=env, limits=sandbox_limits(timeout)) as box:
                hidden = box.home / HIDDEN
                shutil.copytree(tests, hidden, ignore=shutil.ignore_patterns("__pycache__"))
                box.adopt(hidden)
                argv, variables = acceptance_command(box, hidden)
                result = box.run(argv, timeout=timeout, env=variables)
                (keep / "acceptance.log").write_text(result.output, encoding="utf-8")
                report = read_report(box, result, measure=False)
                junit = read_output(box.home, JUNIT)
        except (SandboxError, UnsafeOutput) as exc:
            why = f"the tests could not run in the sandbox: {exc}"
            return _judged(Acceptance(error=why), defined)
    return _judged(_counted(result, report, junit, keep, tests), defined)


def _counted(
    result: RunResult, report: SuiteReport, junit: bytes | None, keep: Path, tests: Path
) -> Acceptance:
    """Return what pytest's report and exit code say, believed only where they agree."""
    out = Acceptance(seconds=round(result.duration_s, 2))
    if junit is not None:
        (keep / "acceptance.xml").write_bytes(junit)
        out.junit = str(keep / "acceptance.xml")
    counts = report.counts
    out.total = counts.get("tests", 0)
    bad = counts.get("failures", 0) + counts.get("errors", 0) + counts.get("skipped", 0)
    out.passed = max(0, out.total - bad)
    out.failed = [d.message.split(": ", 1)[0] for d in report.diagnostics]
    if result.killed or result.ending():
        out.error = f"the tests were stopped: {result.ending() or result.killed}"
        out.passed = 0
    elif report.forged:
        out.error, out.passed = report.forged, 0
    elif result.exit_code == 5 or out.total == 0:
        out.error = "pytest collected no acceptance test"
    elif junit is not None and (files := _uncollected(junit)):
        _count_uncollected(out, files, tests)
    return out
