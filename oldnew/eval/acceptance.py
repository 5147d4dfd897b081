"""A case's hidden acceptance tests, run on what the run delivered.

The tests run on the files of the run's branch tip (nothing untracked), copied with the tests
beside them into a scratch folder, in a fresh environment built from the project's lock (the
one ``oldnew verify`` builds; pytest lent from oldnew's own, offline, as the gates get it), in
the sandbox, with the command the pytest gate uses. Counts come from pytest's junit report,
cross-checked with its exit code as the gate checks them.
"""

from __future__ import annotations

import ast
import shutil
import tempfile
import xml.etree.ElementTree as ET  # nosec B405 - parses pytest's own junit file, size-capped
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from oldnew.deps.errors import DependencyError
from oldnew.deps.settings import DepSettings
from oldnew.gates.common import parse_python
from oldnew.gates.pytests import JUNIT, read_report, suite_command
from oldnew.gates.runner import sandbox_limits
from oldnew.gates.verify import export_head, locked_env
from oldnew.sandbox import Sandbox, SandboxError
from oldnew.sandbox.files import UnsafeOutput, read_output
from oldnew.workspace import Workspace

HIDDEN = "_oldnew_acceptance"
"""The folder the tests are copied to in the scratch tree (a free name is taken if used)."""


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


def _free_name(tree: Path) -> str:
    name, n = HIDDEN, 1
    while (tree / name).exists():
        n += 1
        name = f"{HIDDEN}{n}"
    return name


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

    What a file that cannot be imported would have run: its module-level ``test*``
    functions and the ``test*`` methods of its ``Test*`` classes.
    """
    try:
        tree = parse_python(path.read_text(encoding="utf-8"), str(path))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return 1
    defs = (ast.FunctionDef, ast.AsyncFunctionDef)
    n = sum(isinstance(d, defs) and d.name.startswith("test") for d in tree.body)
    for cls in (d for d in tree.body if isinstance(d, ast.ClassDef)):
        if cls.name.startswith("Test"):
            n += sum(isinstance(d, defs) and d.name.startswith("test") for d in cls.body)
    return max(1, n)


def _count_uncollected(out: Acceptance, files: list[str], name: str, tests: Path) -> None:
    """Count the tests of files that could not be collected as failed, one by one."""
    for rel in files:
        own = Path(rel)
        inside = own.relative_to(name) if own.parts[:1] == (name,) else own
        n = static_tests(tests / inside)
        out.total += n - 1  # junit holds one entry for the whole file
    shown = ", ".join(files[:5])
    out.error = (
        f"{len(files)} acceptance test file(s) could not be collected ({shown}): the delivered "
        "code does not import as they expect; their tests count as failed"
    )


def run_acceptance(
    ws: Workspace, tests: Path, *, deps: DepSettings, timeout: float, keep: Path
) -> Acceptance:
    """Run ``tests`` on the tip of ``ws``'s branch; keep pytest's report and output in ``keep``."""
    keep.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="oldnew-eval-") as tmp:
        tree = export_head(ws, Path(tmp) / "tree")
        name = _free_name(tree)
        shutil.copytree(tests, tree / name, ignore=shutil.ignore_patterns("__pycache__"))
        try:
            env = locked_env(tree, deps)
        except DependencyError as exc:
            return Acceptance(error=f"the project's environment cannot be built: {exc}")
        try:
            with Sandbox.open(tree, env=env, limits=sandbox_limits(timeout)) as box:
                argv, variables = suite_command(box, measure=False)
                result = box.run([*argv, name], timeout=timeout, env=variables)
                (keep / "acceptance.log").write_text(result.output, encoding="utf-8")
                report = read_report(box, result, measure=False)
                junit = read_output(box.home, JUNIT)
        except (SandboxError, UnsafeOutput) as exc:
            return Acceptance(error=f"the tests could not run in the sandbox: {exc}")
    out = Acceptance(seconds=round(result.duration_s, 2))
    if junit is not None:
        (keep / "acceptance.xml").write_bytes(junit)
        out.junit = str(keep / "acceptance.xml")
    counts = report.counts
    out.total = counts.get("tests", 0)
    bad = counts.get("failures", 0) + counts.get("errors", 0) + counts.get("skipped", 0)
    out.passed = max(0, out.total - bad)
    out.failed = [d.message.split(": ", 1)[0].removeprefix(f"{name}.") for d in report.diagnostics]
    if result.killed or result.ending():
        out.error = f"the tests were stopped: {result.ending() or result.killed}"
        out.passed = 0
    elif report.forged:
        out.error, out.passed = report.forged, 0
    elif result.exit_code == 5 or out.total == 0:
        out.error = "pytest collected no acceptance test"
    elif junit is not None and (files := _uncollected(junit)):
        _count_uncollected(out, files, name, tests)
    return out
