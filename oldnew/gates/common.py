"""What every gate shares, and the gates every toolchain runs.

The run a gate belongs to, tool invocation and parsing helpers; the links, secret-scan and
complexity gates.

Two kinds of command run in the sandbox: oldnew's own analysis tools, which read the project
without running it (:func:`py_tool`, from oldnew's environment), and the project's own code (its
tests, the mutants), which runs with the project's environment, :attr:`GateRun.env`.
"""

from __future__ import annotations

import ast
import csv
import io
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from oldnew.gates.model import Check, CheckStatus, Diagnostic
from oldnew.gates.profiles import Profile
from oldnew.sandbox import SKIP_DIRS, ProjectEnv, RunResult, Sandbox

Outcome = tuple[Check, list[Diagnostic]]
LOCKFILES = (
    r"(^|/)(package-lock\.json|npm-shrinkwrap\.json|yarn\.lock|pnpm-lock\.yaml|poetry\.lock"
    r"|uv\.lock)$"
)


_AST_LOCK = threading.Lock()


def parse_python(source: str, filename: str = "<unknown>") -> ast.Module:
    """Return ``ast.parse(source)``, one thread at a time.

    CPython before 3.11.8 and 3.12 shares the AST converter's recursion counter between
    threads: two tasks validated at once could make ``ast.parse`` raise "SystemError: AST
    constructor recursion depth mismatch" on valid code (seen here on 3.11.7). Parsing is
    quick; the lock costs nothing measurable.
    """
    with _AST_LOCK:
        return ast.parse(source, filename=filename)


@dataclass
class GateRun:
    """One validation in progress: the sandbox, the profile, and what earlier gates found."""

    box: Sandbox
    profile: Profile
    timeout: float
    toolchains: list[str]
    new_sandbox: Callable[..., AbstractContextManager[Sandbox]]
    """Opens another sandbox holding a fresh copy of the same project (for mutants, for the
    web gates' driver with ``web_tools=True``)."""
    artifacts: dict[str, Any] = field(default_factory=dict)

    @property
    def tree(self) -> Path:
        """The copy the gates check."""
        return self.box.tree

    @property
    def env(self) -> ProjectEnv:
        """The environment the project's code runs with: the one the sandbox shows."""
        return self.box.env


def tool_version(dist: str) -> str:
    """Return ``"<dist> <version>"`` of an installed Python distribution."""
    try:
        return f"{dist} {version(dist)}"
    except PackageNotFoundError:
        return f"{dist} (not installed)"


def installed(dist: str) -> bool:
    """Whether the Python distribution ``dist`` is installed in oldnew's environment."""
    try:
        version(dist)
    except PackageNotFoundError:
        return False
    return True


def py_tool(module: str, *args: str) -> list[str]:
    """Return the argv that runs one of oldnew's own analysis tools, from its environment.

    Only for tools that read the project's code without running it (ruff, mypy, bandit,
    detect-secrets, lizard, pip-audit): the project's code runs with :attr:`GateRun.env`.
    ``-I`` keeps the project out of the tool's own imports: no working folder on ``sys.path``
    (a project package named ``ruff`` or ``detect_secrets`` is never imported), no
    ``PYTHON*`` variables, no user site.
    """
    return [sys.executable, "-I", "-m", module, *args]


def rel(path: str, tree: Path) -> str:
    """Return ``path`` (absolute inside the sandbox, or relative) relative to ``tree``."""
    p = Path(path)
    if p.is_absolute():
        try:
            return str(p.relative_to(tree))
        except ValueError:
            return str(p)
    return str(Path(os.path.normpath(p)))


def make_check(
    name: str,
    status: CheckStatus,
    result: RunResult,
    summary: str,
    version_text: str,
    **metrics: Any,
) -> Check:
    """Return the check of a gate whose tool ran in the sandbox."""
    return Check(
        name,
        status,
        result.argv,
        result.exit_code,
        round(result.duration_s, 3),
        summary,
        version_text,
        metrics=metrics,
    )


def stopped(name: str, result: RunResult, version_text: str) -> Outcome:
    """Return a failed check for a command the sandbox had to stop (or a signal ended)."""
    why = result.ending()
    diag = Diagnostic(
        name,
        ".",
        0,
        f"the command was stopped: {why} (an endless loop, a fork or memory bomb, "
        "or a wait on input?)",
        "sandbox",
    )
    return make_check(name, "failed", result, why, version_text), [diag]


def unreadable(name: str, result: RunResult, version_text: str, what: str) -> Outcome:
    """Return a not-run check for a tool whose output could not be parsed."""
    tail = result.output[-400:]
    check = make_check(name, "not_run", result, f"{what} could not be parsed: {tail}", version_text)
    return check, []


def files_with(tree: Path, suffixes: tuple[str, ...]) -> list[Path]:
    """Return the project's files ending in ``suffixes`` (no VCS, caches or node_modules)."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(tree):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        # Regular files only: a link (to /dev/zero, or out of the project) is never read.
        found.extend(
            Path(dirpath) / f
            for f in sorted(filenames)
            if f.endswith(suffixes) and not os.path.islink(os.path.join(dirpath, f))
        )
    return found


# -- links ----------------------------------------------------------------------------------


def gate_links(run: GateRun) -> Outcome:
    """Fail symlinks that lead out of the project (an absolute target, or up past its root)."""
    start = time.monotonic()
    diags = [
        Diagnostic(
            "links",
            path,
            0,
            f"symlink to {target!r} leads out of the project: delivered code must not point "
            "outside its repository",
            "link-out",
        )
        for path, target in run.box.links_out
    ]
    status: CheckStatus = "failed" if diags else "passed"
    check = Check(
        "links",
        status,
        ["readlink on every symlink of the copy"],
        None,
        round(time.monotonic() - start, 3),
        f"{len(run.box.files)} files, {len(diags)} symlinks leading out",
        "oldnew",
        metrics={"files": len(run.box.files), "links_out": len(diags)},
    )
    return check, diags


# -- secret scan ------------------------------------------------------------------------------


def gate_secrets(run: GateRun) -> Outcome:
    """Scan every file for secrets (keys, passwords, tokens) with detect-secrets."""
    name = "secrets"
    if not installed("detect-secrets"):
        return Check(name, "not_run", [], None, 0, "detect-secrets is not installed"), []
    argv = py_tool("detect_secrets", "scan", "--all-files", "--exclude-files", LOCKFILES)
    argv += ["--exclude-files", r"(^|/)node_modules/", "."]
    result = run.box.run(argv, timeout=run.timeout)
    ver = tool_version("detect-secrets")
    if result.killed:
        return stopped(name, result, ver)
    try:
        found = json.loads(result.stdout)["results"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return unreadable(name, result, ver, "detect-secrets output")
    diags = [
        Diagnostic(
            name,
            rel(path, run.tree),
            int(hit.get("line_number", 0)),
            f"possible secret ({hit.get('type', '?')}) in the code: read it from the "
            "environment or a file outside the repository instead (a false alarm can be "
            "marked with '# pragma: allowlist secret')",
            hit.get("type", ""),
        )
        for path, hits in sorted(found.items())
        for hit in hits
    ]
    status: CheckStatus = "failed" if diags else "passed"
    check = make_check(name, status, result, f"{len(diags)} possible secrets", ver)
    check.metrics = {"findings": len(diags)}
    return check, diags


# -- complexity -------------------------------------------------------------------------------


def gate_complexity(run: GateRun) -> Outcome:
    """Measure each function's cyclomatic complexity with lizard; fail above the ceiling."""
    name, ceiling = "complexity", run.profile.complexity_max
    if not installed("lizard"):
        return Check(name, "not_run", [], None, 0, "lizard is not installed"), []
    argv = py_tool("lizard", "--csv", "-x", "./node_modules/*", "-x", "*/node_modules/*", ".")
    result = run.box.run(argv, timeout=run.timeout)
    ver = tool_version("lizard")
    if result.killed:
        return stopped(name, result, ver)
    if result.exit_code not in (0, 1):
        return unreadable(name, result, ver, "lizard output")
    functions = 0
    worst = 0
    diags = []
    for row in csv.reader(io.StringIO(result.stdout)):
        if len(row) < 11 or not row[1].isdigit():
            continue
        functions += 1
        ccn = int(row[1])
        worst = max(worst, ccn)
        if ccn > ceiling:
            diags.append(
                Diagnostic(
                    name,
                    rel(row[6], run.tree),
                    int(row[9]) if row[9].isdigit() else 0,
                    f"{row[7]} has cyclomatic complexity {ccn} (ceiling {ceiling}): split it "
                    "into smaller functions",
                    "CCN",
                )
            )
    status: CheckStatus = "failed" if diags else "passed"
    summary = f"{functions} functions, highest complexity {worst} (ceiling {ceiling})"
    check = make_check(name, status, result, summary, ver)
    check.metrics = {"functions": functions, "max_ccn": worst, "over_ceiling": len(diags)}
    return check, diags
