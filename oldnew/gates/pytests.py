"""The project's own tests, run by pytest in a sandbox of their own, and their coverage.

They run with the project's environment (its interpreter, its packages); pytest and pytest-cov
reach that interpreter as the environment says (:attr:`ProjectEnv.test_tool_paths`).
"""

from __future__ import annotations

import json
import os
import re
import xml.etree.ElementTree as ET  # nosec B405 - parses pytest's own junit file
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
from oldnew.sandbox import ProjectEnv, Sandbox

_TRACE_LINE = re.compile(r"^([^\s:][^:\n]*\.py):(\d+):", re.MULTILINE)

# -- pytest with coverage ---------------------------------------------------------------------


def _pytest_config(tree: Path) -> list[str]:
    for name in ("pytest.ini", "pyproject.toml", "tox.ini", "setup.cfg"):
        if (tree / name).is_file():
            return ["-c", name]
    return ["-c", os.devnull]


def _junit_diagnostics(xml_path: Path) -> tuple[list[Diagnostic], dict[str, int]]:
    diags: list[Diagnostic] = []
    try:
        root = ET.parse(xml_path).getroot()  # nosec B314 - our own pytest's output
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
    counts = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors")}
    counts["skipped"] = sum(int(s.get("skipped", 0)) for s in suites)
    for case in root.iter("testcase"):
        for problem in [*case.findall("failure"), *case.findall("error")]:
            text = problem.text or ""
            frames = [(f, int(n)) for f, n in _TRACE_LINE.findall(text)]
            local = [(f, n) for f, n in frames if not Path(f).is_absolute()]
            file, line = (local or frames or [(case.get("file", "?"), 0)])[-1]
            name = f"{case.get('classname', '')}::{case.get('name', '')}".strip(":")
            message = (problem.get("message") or "").strip() or text.strip()[-400:]
            errors = [ln[1:].strip() for ln in text.splitlines() if ln.startswith("E ")]
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


def pytest_argv(env: ProjectEnv, tree: Path, *extra: str) -> list[str]:
    """Return the argv that runs the project's tests (no plugins but the ones asked for)."""
    argv = env.module_argv("pytest", "-q", "-p", "no:cacheprovider", "--rootdir", ".")
    return [*argv, *_pytest_config(tree), *extra]


PYTEST_ENV = {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}


def pytest_env(env: ProjectEnv) -> dict[str, str]:
    """Return the variables a run of the project's tests gets (its environment's too)."""
    return {**env.variables(), **PYTEST_ENV}


def _coverage_rc(box: Sandbox) -> Path:
    rc = box.home / "coveragerc"
    rc.write_text(
        "[run]\n"
        f"source = {box.tree}\n"
        f"data_file = {box.home / '.coverage'}\n"
        "omit =\n    */tests/*\n    */test_*.py\n    */*_test.py\n    */conftest.py\n"
        "    */node_modules/*\n    */setup.py\n",
        encoding="utf-8",
    )
    return rc


def _relative_coverage(path: Path, tree: Path) -> dict[str, Any]:
    """Return coverage.py's JSON report with project-relative file names."""
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    data["files"] = {rel(k, tree): v for k, v in data.get("files", {}).items()}
    return data


def gate_pytest(run: GateRun) -> Outcome:
    """Run the project's tests with pytest (and coverage when the profile measures it).

    The tests run in a copy of their own: whatever they write cannot reach the copy the
    static gates are reading at the same time.
    """
    with run.new_sandbox() as box:
        return _pytest_in(run, box)


def _pytest_in(run: GateRun, box: Sandbox) -> Outcome:
    home = box.home
    xml_path = home / "junit.xml"
    extra = ["-o", "junit_family=xunit1", f"--junitxml={xml_path}"]
    measure = "coverage" in run.profile.gates
    if measure:
        cov_json = home / "coverage.json"
        extra += ["-p", "pytest_cov", "--cov", f"--cov-config={_coverage_rc(box)}"]
        extra += [f"--cov-report=json:{cov_json}", "--cov-report="]
    argv = pytest_argv(box.env, box.tree, *extra)
    result = box.run(argv, timeout=run.timeout, env=pytest_env(box.env))
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
    diags, counts = _junit_diagnostics(xml_path) if xml_path.exists() else ([], {})
    if result.exit_code != 0 and not diags:
        diags = [Diagnostic("pytest", ".", 0, result.output[-1500:])]
    ran = counts.get("tests", 0) - counts.get("skipped", 0)
    if result.exit_code == 0 and counts and ran <= 0:
        diags = [Diagnostic("pytest", ".", 0, "every test was skipped: nothing was tested")]
    if measure and (home / "coverage.json").exists():
        run.artifacts["coverage"] = _relative_coverage(home / "coverage.json", box.tree)
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
