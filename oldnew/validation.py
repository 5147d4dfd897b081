"""The first validation runner: syntax, ruff and the project's own tests.

Everything that runs generated code runs in a subprocess of its own session, with a scrubbed
environment (no API key, no proxy, no parent variables) and a timeout that kills the whole
process group. The full gate set and the bubblewrap sandbox replace this module later; its
interface (:func:`validate_tree` returning a :class:`ValidationResult`) is what the graph uses.
"""

from __future__ import annotations

import ast
import json
import os
import re
import signal
import subprocess  # nosec B404 - fixed argument lists, never a shell
import sys
import tempfile
import time
import xml.etree.ElementTree as ET  # nosec B405 - parses pytest's own junit file
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

CheckStatus = Literal["passed", "failed", "not_run"]
_SKIP_DIRS = {".git", ".oldnew", ".venv", "venv", "node_modules", "__pycache__"}
RUFF_BASELINE = "E4,E7,E9,F"
_TRACE_LINE = re.compile(r"^([^\s:][^:\n]*\.py):(\d+):", re.MULTILINE)


@dataclass
class Diagnostic:
    """One parsed finding, as the fixer gets it."""

    tool: str
    file: str
    line: int
    message: str
    rule: str = ""

    def render(self) -> str:
        """Return a one-line form: ``file:line: [tool rule] message``."""
        rule = f" {self.rule}" if self.rule else ""
        return f"{self.file}:{self.line}: [{self.tool}{rule}] {self.message}"


@dataclass
class Check:
    """The outcome of one tool run."""

    name: str
    status: CheckStatus
    command: list[str]
    exit_code: int | None
    duration_s: float
    summary: str
    version: str = ""


@dataclass
class ValidationResult:
    """All checks of one validation, and their diagnostics."""

    checks: list[Check] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True when every check ran and passed."""
        return bool(self.checks) and all(c.status == "passed" for c in self.checks)

    def to_dict(self) -> dict[str, object]:
        """Return a JSON-ready dict (the evidence file's content)."""
        return {
            "passed": self.passed,
            "checks": [asdict(c) for c in self.checks],
            "diagnostics": [asdict(d) for d in self.diagnostics],
        }


def scrubbed_env(home: Path) -> dict[str, str]:
    """Return the only environment generated code sees: no keys, no proxies, no parent vars."""
    return {
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "TMPDIR": str(home),
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
        "NO_COLOR": "1",
    }


def run_confined(
    argv: list[str], cwd: Path, *, timeout: float, home: Path
) -> tuple[int | None, str, float]:
    """Run ``argv`` in its own session; on timeout kill the whole group.

    Returns (exit code or None on timeout, combined output, seconds).
    """
    start = time.monotonic()
    proc = subprocess.Popen(  # nosec B603 - argv list built by this module
        argv,
        cwd=cwd,
        env=scrubbed_env(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        code = None
    return code, out or "", time.monotonic() - start


def python_files(tree: Path) -> list[Path]:
    """Return the project's .py files, skipping VCS, caches and oldnew's own folder."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(tree):
        dirnames[:] = [d for d in dirnames if d not in _SKIP_DIRS]
        found.extend(Path(dirpath) / f for f in filenames if f.endswith(".py"))
    return sorted(found)


def check_syntax(tree: Path) -> tuple[Check, list[Diagnostic]]:
    """Parse every .py file with ``ast``; never runs the code."""
    start = time.monotonic()
    diags = []
    files = python_files(tree)
    for path in files:
        rel = str(path.relative_to(tree))
        try:
            ast.parse(path.read_text(encoding="utf-8"), filename=rel)
        except SyntaxError as exc:
            diags.append(Diagnostic("syntax", rel, exc.lineno or 0, exc.msg))
        except (UnicodeDecodeError, ValueError) as exc:
            diags.append(Diagnostic("syntax", rel, 0, str(exc)))
    status: CheckStatus = "failed" if diags else "passed"
    summary = f"{len(files)} files parsed, {len(diags)} syntax errors"
    check = Check(
        "syntax",
        status,
        ["ast.parse"],
        None,
        time.monotonic() - start,
        summary,
        f"python {sys.version.split()[0]}",
    )
    return check, diags


def _has_ruff_config(tree: Path) -> bool:
    if (tree / "ruff.toml").is_file() or (tree / ".ruff.toml").is_file():
        return True
    pyproject = tree / "pyproject.toml"
    return pyproject.is_file() and "[tool.ruff" in pyproject.read_text(encoding="utf-8")


def check_ruff(tree: Path, *, timeout: float, home: Path) -> tuple[Check, list[Diagnostic]]:
    """Run ``ruff check`` and parse its JSON output.

    A project with its own ruff configuration is checked by it; one without gets ruff's
    classic correctness rules (errors and pyflakes), never a configuration found in a parent
    directory that the project does not own.
    """
    argv = [
        sys.executable,
        "-m",
        "ruff",
        "check",
        "--no-cache",
        "--output-format",
        "json",
        "--extend-exclude",
        ".oldnew",
    ]
    if not _has_ruff_config(tree):
        argv += ["--isolated", "--select", RUFF_BASELINE]
    argv.append(".")
    code, out, secs = run_confined(argv, tree, timeout=timeout, home=home)
    if code is None:
        return Check("ruff", "failed", argv, None, secs, f"timed out after {timeout:.0f}s"), []
    try:
        findings = json.loads(out)
    except json.JSONDecodeError:
        return Check("ruff", "not_run", argv, code, secs, f"unreadable output: {out[:300]}"), []
    diags = [
        Diagnostic(
            "ruff",
            str(Path(f["filename"]).resolve().relative_to(tree.resolve())),
            (f.get("location") or {}).get("row", 0),
            f["message"],
            f.get("code") or "",
        )
        for f in findings
    ]
    status: CheckStatus = "failed" if diags else "passed"
    check = Check("ruff", status, argv, code, secs, f"{len(diags)} findings", _version("ruff"))
    return check, diags


def _pytest_config(tree: Path) -> list[str]:
    for name in ("pytest.ini", "pyproject.toml", "tox.ini", "setup.cfg"):
        if (tree / name).is_file():
            return ["-c", name]
    return ["-c", os.devnull]


def _junit_diagnostics(xml_path: Path, tree: Path) -> list[Diagnostic]:
    diags: list[Diagnostic] = []
    root = ET.parse(xml_path).getroot()  # nosec B314 - our own pytest's output
    for case in root.iter("testcase"):
        for problem in [*case.findall("failure"), *case.findall("error")]:
            text = problem.text or ""
            frames = [(f, int(n)) for f, n in _TRACE_LINE.findall(text)]
            local = [(f, n) for f, n in frames if not Path(f).is_absolute()]
            file, line = (local or frames or [(case.get("file", "?"), 0)])[-1]
            name = f"{case.get('classname', '')}::{case.get('name', '')}".strip(":")
            message = (problem.get("message") or "").strip() or text.strip()[-400:]
            diags.append(
                Diagnostic("pytest", file, int(line), f"{name}: {message[:600]}", problem.tag)
            )
    return diags


def check_pytest(tree: Path, *, timeout: float, home: Path) -> tuple[Check, list[Diagnostic]]:
    """Run the project's own tests with pytest and parse the junit report."""
    xml_path = home / "junit.xml"
    argv = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "--rootdir",
        ".",
        *_pytest_config(tree),
        "-o",
        "junit_family=xunit1",
        f"--junitxml={xml_path}",
    ]
    code, out, secs = run_confined(argv, tree, timeout=timeout, home=home)
    version = _version("pytest")
    if code is None:
        diag = Diagnostic(
            "pytest",
            ".",
            0,
            f"the tests did not finish in {timeout:.0f}s (an endless loop or a wait on input?)",
        )
        return Check("pytest", "failed", argv, None, secs, "timed out", version), [diag]
    if code == 5:
        diag = Diagnostic(
            "pytest",
            ".",
            0,
            "no tests were collected: add pytest tests (tests/test_*.py) for this code",
        )
        return Check("pytest", "failed", argv, code, secs, "no tests", version), [diag]
    diags = _junit_diagnostics(xml_path, tree) if xml_path.exists() else []
    if code != 0 and not diags:
        diags = [Diagnostic("pytest", ".", 0, out.strip()[-1500:])]
    last = out.strip().splitlines()[-1] if out.strip() else ""
    status: CheckStatus = "passed" if code == 0 else "failed"
    return Check("pytest", status, argv, code, secs, last, version), diags


def _version(module: str) -> str:
    try:
        from importlib.metadata import version

        return f"{module} {version(module)}"
    except Exception:  # noqa: BLE001 - a version is nice to have, never required
        return module


def validate_tree(tree: Path, *, timeout: float) -> ValidationResult:
    """Validate the project in ``tree``: syntax first, then ruff, then the tests.

    The tests are not run while the code does not even parse: their result could only repeat
    the syntax errors.
    """
    result = ValidationResult()
    with tempfile.TemporaryDirectory(prefix="oldnew-check-") as tmp:
        home = Path(tmp)
        check, diags = check_syntax(tree)
        result.checks.append(check)
        result.diagnostics += diags
        check, diags = check_ruff(tree, timeout=timeout, home=home)
        result.checks.append(check)
        result.diagnostics += diags
        if result.checks[0].status == "passed":
            check, diags = check_pytest(tree, timeout=timeout, home=home)
        else:
            check = Check("pytest", "not_run", [], None, 0.0, "skipped: syntax errors first")
            diags = []
        result.checks.append(check)
        result.diagnostics += diags
    return result
