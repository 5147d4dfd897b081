"""The project's own tests, run by pytest in a sandbox of their own, and their coverage.

They run with the project's environment (its interpreter, its packages); pytest and pytest-cov
reach that interpreter as the environment says (:attr:`ProjectEnv.test_tool_paths`).
"""

from __future__ import annotations

import json
import os
import re
import xml.etree.ElementTree as ET  # nosec B405 - parses pytest's own junit file
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oldnew.gates.common import (
    GateRun,
    Outcome,
    make_check,
    rel,
    stopped,
    tool_version,
)
from oldnew.gates.model import Check, CheckStatus, Diagnostic
from oldnew.sandbox import RunResult, Sandbox
from oldnew.sandbox.files import UnsafeOutput, read_output

_TRACE_LINE = re.compile(r"^([^\s:][^:\n]*\.py):(\d+):", re.MULTILINE)

# -- pytest with coverage ---------------------------------------------------------------------


def _pytest_config(tree: Path) -> list[str]:
    for name in ("pytest.ini", "pyproject.toml", "tox.ini", "setup.cfg"):
        if (tree / name).is_file():
            return ["-c", name]
    return ["-c", os.devnull]


def _junit_diagnostics(data: bytes) -> tuple[list[Diagnostic], dict[str, int]]:
    diags: list[Diagnostic] = []
    try:
        root = ET.fromstring(data)  # nosec B314 - bounded bytes, no entities or DTDs resolved
    except ET.ParseError as exc:
        # A test that forks leaves copies of pytest that write the report too: the code
        # under test is at fault, not the gate.
        why = (
            f"pytest's report is unreadable ({exc}): a test forked processes that went on "
            "running pytest, or wrote over its report"
        )
        return [Diagnostic("pytest", ".", 0, why, "report")], {
            "tests": 0,
            "failures": 1,
            "errors": 0,
            "skipped": 0,
        }
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    try:
        counts = {
            k: sum(int(s.get(k, 0)) for s in suites)
            for k in ("tests", "failures", "errors", "skipped")
        }
    except ValueError:
        why = "pytest's report holds counts that are not numbers: it was written over"
        return [Diagnostic("pytest", ".", 0, why, "report")], {"tests": 0, "failures": 1}
    counts["collection_errors"] = 0
    for case in root.iter("testcase"):
        for problem in [*case.findall("failure"), *case.findall("error")]:
            text = problem.text or ""
            frames = [(f, int(n)) for f, n in _TRACE_LINE.findall(text)]
            local = [(f, n) for f, n in frames if not Path(f).is_absolute()]
            file, line = (local or frames or [(case.get("file", "?"), 0)])[-1]
            name = f"{case.get('classname', '')}::{case.get('name', '')}".strip(":")
            message = (problem.get("message") or "").strip() or text.strip()[-400:]
            errors = [ln[1:].strip() for ln in text.splitlines() if ln.startswith("E ")]
            if message == "collection failure":
                counts["collection_errors"] += 1  # a file, not a test: nothing of it ran
            if message == "collection failure" and errors:
                # The exception says why (a missing module or variable); the classifier needs it.
                message = f"{message}: {errors[-1]}"
            diags.append(
                Diagnostic("pytest", file, int(line), f"{name}: {message[:600]}", problem.tag)
            )
    return diags, counts


_SUMMARY = re.compile(r"^=*\s*(\d+ (passed|failed|error|errors|skipped|deselected)\b.*)$")


def _pytest_summary(stdout: str, counts: dict[str, int]) -> str:
    """Return pytest's closing line ('3 passed in 0.1s'), else one built from the counts."""
    for line in reversed(stdout.strip().splitlines()[-20:]):
        m = _SUMMARY.match(line.strip())
        if m:
            return m[1].strip("= ")[:200]
    if counts:
        return ", ".join(f"{v} {k}" for k, v in counts.items())
    return "no summary line"


PYTEST_ENV = {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
JUNIT = "junit.xml"
COVERAGE_JSON = "coverage.json"
# Imported before the project's folder goes on sys.path: a project module named like one of
# them cannot stand in for it.
TEST_TOOLS = ("pytest", "_pytest.junitxml")
_COVERAGE_TOOLS = ("pytest_cov", "pytest_cov.plugin", "coverage")


def suite_command(
    box: Sandbox, *, measure: bool, contexts: bool = False
) -> tuple[list[str], dict[str, str]]:
    """Return the argv and variables of every run of the project's tests in ``box``.

    The run that reports and each mutant's run are the same command: the same options, the
    same report files (each in its own sandbox's home), the same variables. Code that looks at
    its argv, its environment or the files around it cannot tell which run it is in.
    ``contexts`` (with ``measure``) records which test ran each line: the coverage report's
    files then hold ``contexts``, line -> the ids of the tests (``<node id>|run``) that ran it.
    """
    home = box.home
    extra = ["-o", "junit_family=xunit1", f"--junitxml={home / JUNIT}"]
    preload: tuple[str, ...] = TEST_TOOLS
    if measure:
        rc = _coverage_rc(box, contexts=contexts)
        extra += ["-p", "pytest_cov", "--cov", f"--cov-config={rc}"]
        extra += [f"--cov-report=json:{home / COVERAGE_JSON}", "--cov-report="]
        extra += ["--cov-context=test"] if contexts else []
        preload += _COVERAGE_TOOLS
    argv = pytest_argv(box, "--rootdir", ".", preload=preload)
    return [*argv, *_pytest_config(box.tree), *extra], {**box.env.variables(), **PYTEST_ENV}


def pytest_argv(box: Sandbox, *options: str, preload: tuple[str, ...] = TEST_TOOLS) -> list[str]:
    """Return the argv of pytest in ``box``'s environment: quiet, no cache, then ``options``.

    One file that cannot be collected (a missing module, a clashing name) must not keep the
    other tests from running: its error is a finding of its own.
    """
    return box.env.module_argv(
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "--continue-on-collection-errors",
        *options,
        preload=preload,
    )


@dataclass
class SuiteReport:
    """What a run of the project's tests left for the host, read safely and cross-checked."""

    counts: dict[str, int] = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    coverage: dict[str, Any] | None = None
    forged: str = ""
    """Why the report cannot be believed (unsafe file, disagreeing with the exit code)."""

    @property
    def passed(self) -> bool:
        """Whether the tests passed by the exit code and the report both."""
        return not self.forged and not self.diagnostics


def read_report(box: Sandbox, result: RunResult, *, measure: bool) -> SuiteReport:
    """Read the junit report (and coverage) a finished run left in ``box``'s home.

    The exit code is pytest's, from outside the report; the two must agree. A report that
    says every test passed while pytest failed, or the reverse, or that is missing, a link, a
    FIFO or too large, is a failure of the code under test, never a pass.
    """
    out = SuiteReport()
    try:
        data = read_output(box.home, JUNIT)
        cov = read_output(box.home, COVERAGE_JSON) if measure else None
    except UnsafeOutput as exc:
        out.forged = f"pytest's report cannot be trusted: {exc}"
        return out
    if data is None:
        out.forged = "pytest wrote no report: a test or plugin ended it early or removed it"
        return out
    out.diagnostics, out.counts = _junit_diagnostics(data)
    bad = out.counts.get("failures", 0) + out.counts.get("errors", 0)
    if result.exit_code == 0 and (bad or out.diagnostics):
        out.forged = (
            f"pytest exited 0 but its report lists {bad} failing tests: the outcome was "
            "rigged (a conftest or plugin?)"
        )
    elif result.exit_code not in (0, 5) and not bad and not out.diagnostics:
        out.forged = (
            f"pytest exited {result.exit_code} but its report says every test passed: the "
            "report was rigged, or pytest itself failed: " + result.output[-600:].strip()
        )
    if cov is not None:
        try:
            out.coverage = _relative_coverage(json.loads(cov), box.tree)
        except (ValueError, TypeError, KeyError, AttributeError):
            out.forged = out.forged or "the coverage report is not coverage.py's JSON"
    return out


def _coverage_rc(box: Sandbox, *, contexts: bool = False) -> Path:
    rc = box.home / "coveragerc"
    rc.write_text(
        "[run]\n"
        f"source = {box.tree}\n"
        f"data_file = {box.home / '.coverage'}\n"
        "omit =\n    */tests/*\n    */test_*.py\n    */*_test.py\n    */conftest.py\n"
        "    */node_modules/*\n    */setup.py\n"
        + ("[json]\nshow_contexts = True\n" if contexts else ""),
        encoding="utf-8",
    )
    return rc


def _relative_coverage(data: Any, tree: Path) -> dict[str, Any]:
    """Return coverage.py's JSON report with project-relative file names, checked for shape."""
    if not isinstance(data, dict) or not isinstance(data.get("files", {}), dict):
        raise ValueError("not a coverage report")
    float(data["totals"]["percent_covered"])
    files = {rel(k, tree): v for k, v in data.get("files", {}).items()}
    for info in files.values():
        float(info["summary"]["percent_covered"])
        [int(n) for n in info.get("executed_lines", []) + info.get("missing_lines", [])]
    data["files"] = files
    return data


def gate_pytest(run: GateRun) -> Outcome:
    """Run the project's tests with pytest (and coverage when the profile measures it).

    The tests run in a copy of their own: whatever they write cannot reach the copy the
    static gates are reading at the same time.
    """
    with run.new_sandbox() as box:
        return _pytest_in(run, box)


def _pytest_in(run: GateRun, box: Sandbox) -> Outcome:
    measure = "coverage" in run.profile.gates
    argv, variables = suite_command(box, measure=measure)
    result = box.run(argv, timeout=run.timeout, env=variables)
    ver = tool_version("pytest")
    run.artifacts["pytest_seconds"] = result.duration_s
    if result.killed or result.ending():
        check, diags = stopped("pytest", result, ver)
        diags[0].message = f"the tests were stopped: {result.ending()}"
        return check, diags
    if result.exit_code == 5:
        diag = Diagnostic(
            "pytest", ".", 0, "no tests were collected: add pytest tests (tests/test_*.py)"
        )
        return make_check("pytest", "failed", result, "no tests", ver), [diag]
    report = read_report(box, result, measure=measure)
    counts, diags = report.counts, report.diagnostics
    if report.forged:
        diags = [*diags, Diagnostic("pytest", ".", 0, report.forged, "report")]
    if result.exit_code != 0 and not diags:
        diags = [Diagnostic("pytest", ".", 0, result.output[-1500:])]
    ran = counts.get("tests", 0) - counts.get("skipped", 0)
    if result.exit_code == 0 and counts and ran <= 0:
        diags = [Diagnostic("pytest", ".", 0, "every test was skipped: nothing was tested")]
    if report.coverage is not None and not report.forged:
        run.artifacts["coverage"] = report.coverage
    status: CheckStatus = "passed" if result.exit_code == 0 and not diags else "failed"
    check = make_check("pytest", status, result, _pytest_summary(result.stdout, counts), ver)
    check.metrics = counts
    return check, diags


def _ranges(lines: list[int]) -> str:
    out: list[str] = []
    for n in sorted(lines):
        if out and out[-1].split("-")[-1] == str(n - 1):
            out[-1] = f"{out[-1].split('-')[0]}-{n}"
        else:
            out.append(str(n))
    return ", ".join(out[:12]) + (" ..." if len(out) > 12 else "")


def gate_coverage(run: GateRun) -> Outcome:
    """Check the tests' line coverage of the project's code against the profile's minimum."""
    data = run.artifacts.get("coverage")
    minimum = run.profile.coverage_min
    if data is None:
        return Check("coverage", "not_run", [], None, 0, "pytest produced no coverage data"), []
    percent = round(float(data["totals"]["percent_covered"]), 2)
    files = data.get("files", {})
    diags = []
    if percent < minimum:
        worst = sorted(files.items(), key=lambda kv: kv[1]["summary"]["percent_covered"])
        for path, info in worst[:5]:
            missing = info.get("missing_lines", [])
            if missing:
                diags.append(
                    Diagnostic(
                        "coverage",
                        path,
                        missing[0],
                        f"{info['summary']['percent_covered']:.0f}% covered; no test runs "
                        f"lines {_ranges(missing)}",
                        "coverage",
                    )
                )
    status: CheckStatus = "failed" if percent < minimum else "passed"
    check = Check(
        "coverage",
        status,
        ["coverage.py via pytest-cov (same run as pytest)"],
        None,
        0.0,
        f"{percent}% of lines covered (minimum {minimum:g}%)",
        tool_version("coverage"),
        metrics={"percent": percent, "minimum": minimum, "files": len(files)},
    )
    if percent < minimum and not diags:
        diags.append(Diagnostic("coverage", ".", 0, check.summary, "coverage"))
    return check, diags
