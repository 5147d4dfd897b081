"""A case's hidden acceptance tests, run on what the run delivered.

The tests run on the files of the run's branch tip (nothing untracked), in a fresh
environment built from the project's lock (the one ``oldnew verify`` builds; pytest lent from
oldnew's own, offline, as the gates get it), in the sandbox. They are the evaluator's, and so
is everything that decides how they run: the shared runner (``acceptance.run``) puts them in a
folder of their own outside the project's copy, under oldnew's own pytest configuration, with
none of the project's ``conftest.py`` files, ini options or ``sitecustomize`` applied. Counts
come from its per-test results (pytest's junit report cross-checked with its exit code) and
the number of tests the hidden files define: a case never counts fewer tests than that.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from oldnew.acceptance.run import SuiteRun, run_tests, static_tests, suite_tests
from oldnew.deps.errors import DependencyError
from oldnew.deps.settings import DepSettings
from oldnew.gates.runner import sandbox_limits
from oldnew.gates.verify import export_head, locked_env
from oldnew.sandbox import Sandbox, SandboxError
from oldnew.sandbox.files import UnsafeOutput
from oldnew.workspace import Workspace

__all__ = ["Acceptance", "run_acceptance", "static_tests", "suite_tests"]


@dataclass
class Acceptance:
    """How a delivered tree did on the hidden tests."""

    passed: int = 0
    total: int = 0
    failed: list[str] = field(default_factory=list)
    """The tests that did not pass (``module::test``, as pytest's report names them)."""
    error: str = ""
    """Why the tests could not run or their result cannot be believed ("" when they ran)."""
    seconds: float = 0.0
    junit: str = ""
    """The junit report kept for the case (path), "" when pytest wrote none."""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


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
                run = run_tests(box, tests, timeout=timeout)
        except (SandboxError, UnsafeOutput) as exc:
            why = f"the tests could not run in the sandbox: {exc}"
            return _judged(Acceptance(error=why), defined)
    return _judged(_counted(run, keep), defined)


def _counted(run: SuiteRun, keep: Path) -> Acceptance:
    """Return what the runner's per-test results say (``acceptance.run``)."""
    (keep / "acceptance.log").write_text(run.output, encoding="utf-8")
    out = Acceptance(seconds=run.seconds, error=run.error)
    if run.junit is not None:
        (keep / "acceptance.xml").write_bytes(run.junit)
        out.junit = str(keep / "acceptance.xml")
    reported = {k: v for k, v in run.results.items() if v != "not_run" or k in run.messages}
    out.total = len(reported) if not run.error else max(run.ran, len(reported))
    out.passed = len(run.with_result("passed"))
    out.failed = [_shown(k) for k in sorted(reported) if reported[k] != "passed"]
    if run.uncollected and not out.error:
        shown = ", ".join(run.uncollected[:5])
        out.error = (
            f"{len(run.uncollected)} acceptance test file(s) could not be collected ({shown}): "
            "the delivered code does not import as they expect; their tests count as failed"
        )
    return out


def _shown(key: str) -> str:
    """Return a test's ``file::test`` as ``module::test`` (``test_slugify::test_x``)."""
    file, sep, test = key.partition("::")
    return file.removesuffix(".py").replace("/", ".") + sep + test
