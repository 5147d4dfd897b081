"""The TypeScript/JavaScript gates: tsc, eslint, vitest with coverage, npm audit.

They run the tools the project installed in its own ``node_modules`` (oldnew installs no npm
packages); a tool that is not there is a gate that did not run, with the reason. Which
``node_modules`` that is, the project's environment says (:attr:`ProjectEnv.node_modules`); the
sandbox mounts it at ``node_modules`` in the copy, where the commands find it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from oldnew.deps.errors import DependencyError
from oldnew.deps.manifest import NPM_TABLES, read_package_json
from oldnew.gates import project
from oldnew.gates.common import GateRun, Outcome, make_check, rel, stopped, unreadable
from oldnew.gates.model import Check, CheckStatus, Diagnostic
from oldnew.sandbox import SKIP_DIRS, Sandbox
from oldnew.sandbox.files import UnsafeOutput, read_output

_TSC_LINE = re.compile(r"^(.+?)\((\d+),(\d+)\): error (TS\d+): (.*)$")
_STACK_LINE = re.compile(r"([^\s()]+\.(?:[cm]?[jt]sx?)):(\d+):\d+")
ESLINT_CONFIGS = (
    "eslint.config.js",
    "eslint.config.mjs",
    "eslint.config.cjs",
    "eslint.config.ts",
    ".eslintrc.js",
    ".eslintrc.cjs",
    ".eslintrc.json",
    ".eslintrc.yml",
    ".eslintrc",
)


def detect_toolchains(tree: Path) -> list[str]:
    """Return the toolchains a project uses: 'python', 'typescript' (TS or JS), or both."""
    found = set()
    if (tree / "package.json").is_file() or (tree / "tsconfig.json").is_file():
        found.add("typescript")
    for _, dirnames, filenames in os.walk(tree):  # never into .git, .oldnew or environments
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS]
        if any(name.endswith(".py") for name in [*filenames, *dirnames]):
            found.add("python")
            break
    for marker in ("pyproject.toml", "setup.py", "requirements.txt"):
        if (tree / marker).is_file():
            found.add("python")
    return sorted(found) or ["python"]


def _bin(run: GateRun, tool: str) -> Path | None:
    modules = run.env.node_modules
    path = modules / ".bin" / tool if modules is not None else None
    return path if path is not None and path.exists() else None


def _package_version(run: GateRun, package: str) -> str:
    if run.env.node_modules is None:
        return package
    meta = run.env.node_modules / package / "package.json"
    try:
        return f"{package} {json.loads(meta.read_text(encoding='utf-8'))['version']}"
    except (OSError, ValueError, KeyError):
        return package


def _missing(name: str, tool: str) -> Outcome:
    return Check(
        name,
        "not_run",
        [],
        None,
        0,
        f"node_modules/.bin/{tool} is not installed in the project: add it to "
        "devDependencies and run 'npm install' (oldnew installs no npm packages)",
    ), []


def gate_tsc(run: GateRun) -> Outcome:
    """Type-check with the project's TypeScript compiler (``tsc --noEmit``)."""
    if not (run.tree / "tsconfig.json").is_file():
        reason = "no tsconfig.json: not a TypeScript project"
        return Check("tsc", "not_run", [], None, 0, reason, required=False), []
    tsc = _bin(run, "tsc")
    if tsc is None:
        return _missing("tsc", "tsc")
    argv = [str(run.tree / "node_modules/.bin/tsc"), "--noEmit", "--pretty", "false", "-p", "."]
    result = run.box.run(argv, timeout=run.timeout)
    ver = _package_version(run, "typescript")
    if result.killed:
        return stopped("tsc", result, ver)
    diags = []
    for line in result.stdout.splitlines():
        m = _TSC_LINE.match(line.strip())
        if m:
            diags.append(Diagnostic("tsc", rel(m[1], run.tree), int(m[2]), m[5], m[4]))
    if result.exit_code and not diags:
        diags.append(Diagnostic("tsc", ".", 0, result.output[-800:]))
    status: CheckStatus = "failed" if diags else "passed"
    return make_check("tsc", status, result, f"{len(diags)} type errors", ver), diags


def without_packages(tree: Path) -> bool:
    """Say whether the project's package.json declares no package at all (a plain Node app).

    Such a project cannot have eslint or vitest; it tests itself with its own test script
    (``node --test``: the project-tests gate) and is not blocked for lacking them.
    """
    try:
        data = read_package_json(tree)
    except DependencyError:
        return False  # the dependency step says what is wrong with it
    return data is not None and not any(data.get(table) for table, _ in NPM_TABLES)


def _not_run_plain(name: str, what: str) -> Outcome:
    reason = (
        f"the project declares no packages, so no {name}: {what} (declare {name} in "
        "devDependencies, with its configuration, to have it run)"
    )
    return Check(name, "not_run", [], None, 0, reason, required=False), []


def gate_eslint(run: GateRun) -> Outcome:
    """Lint with the project's eslint and its own configuration."""
    if not any((run.tree / c).is_file() for c in ESLINT_CONFIGS):
        if without_packages(run.tree):
            return _not_run_plain("eslint", "its JavaScript is not linted")
        reason = "the project has no eslint configuration (eslint.config.js)"
        return Check("eslint", "not_run", [], None, 0, reason), []
    if _bin(run, "eslint") is None:
        return _missing("eslint", "eslint")
    argv = [str(run.tree / "node_modules/.bin/eslint"), "-f", "json", "."]
    result = run.box.run(argv, timeout=run.timeout)
    ver = _package_version(run, "eslint")
    if result.killed:
        return stopped("eslint", result, ver)
    try:
        files = json.loads(result.stdout)
    except json.JSONDecodeError:
        return unreadable("eslint", result, ver, "eslint output")
    diags = []
    warnings = 0
    for entry in files:
        for msg in entry.get("messages", []):
            if msg.get("severity") != 2:
                warnings += 1
                continue
            diags.append(
                Diagnostic(
                    "eslint",
                    rel(entry.get("filePath", "?"), run.tree),
                    int(msg.get("line") or 0),
                    msg.get("message", ""),
                    msg.get("ruleId") or "",
                )
            )
    status: CheckStatus = "failed" if diags else "passed"
    summary = f"{len(diags)} errors, {warnings} warnings"
    check = make_check("eslint", status, result, summary, ver)
    check.metrics = {"errors": len(diags), "warnings": warnings}
    return check, diags


def _coverage_provider(run: GateRun) -> str | None:
    modules = run.env.node_modules
    for provider in ("v8", "istanbul"):
        if modules is not None and (modules / "@vitest" / f"coverage-{provider}").is_dir():
            return provider
    return None


def gate_vitest(run: GateRun) -> Outcome:
    """Run the project's tests with vitest (with coverage when its provider is installed).

    The tests run in a copy of their own, apart from the one the static gates read.
    """
    if _bin(run, "vitest") is None:
        if without_packages(run.tree) and project.declared_command(run.tree) is not None:
            return _not_run_plain("vitest", "its tests run with its own test script instead")
        return _missing("vitest", "vitest")
    with run.new_sandbox() as box:
        return _vitest_in(run, box)


def _vitest_in(run: GateRun, box: Sandbox) -> Outcome:
    report = box.home / "vitest.json"
    # node_modules is read-only in the sandbox: no results cache in node_modules/.vite.
    argv = [str(box.tree / "node_modules/.bin/vitest"), "run", "--no-cache", "--reporter=json"]
    argv.append(f"--outputFile={report}")
    provider = _coverage_provider(run)
    if provider and "js-coverage" in run.profile.gates:
        cov = box.home / "js-coverage"
        argv += ["--coverage.enabled=true", f"--coverage.provider={provider}"]
        argv += ["--coverage.reporter=json-summary", f"--coverage.reportsDirectory={cov}"]
    result = box.run(argv, timeout=run.timeout)
    ver = _package_version(run, "vitest")
    if result.killed or result.ending():
        return stopped("vitest", result, ver)
    try:
        raw = read_output(box.home, report.name)
        summary_raw = read_output(box.home, "js-coverage/coverage-summary.json")
        data = json.loads(raw) if raw is not None else None
        summary = json.loads(summary_raw) if summary_raw is not None else None
    except UnsafeOutput as exc:
        diag = Diagnostic("vitest", ".", 0, f"vitest's report cannot be trusted: {exc}", "report")
        return make_check("vitest", "failed", result, str(exc)[:200], ver), [diag]
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return unreadable("vitest", result, ver, "vitest's JSON report")
    if provider and isinstance(summary, dict):
        run.artifacts["js_coverage"] = {
            (k if k == "total" else rel(k, box.tree)): v for k, v in summary.items()
        }
    diags = []
    for suite in data.get("testResults", []):
        for case in suite.get("assertionResults", []):
            if case.get("status") != "failed":
                continue
            text = "\n".join(case.get("failureMessages", []))
            frames = [(f, int(n)) for f, n in _STACK_LINE.findall(text) if "node_modules" not in f]
            file, line = frames[0] if frames else (suite.get("name", "?"), 0)
            first = text.strip().splitlines()[0] if text.strip() else "failed"
            diags.append(
                Diagnostic(
                    "vitest",
                    rel(file, box.tree),
                    line,
                    f"{case.get('fullName', '?')}: {first[:600]}",
                    "failure",
                )
            )
        if suite.get("status") == "failed" and not suite.get("assertionResults"):
            diags.append(
                Diagnostic(
                    "vitest",
                    rel(suite.get("name", "?"), box.tree),
                    0,
                    (suite.get("message") or "the test file failed")[:800],
                    "error",
                )
            )
    total = int(data.get("numTotalTests", 0))
    if total == 0:
        diags.append(Diagnostic("vitest", ".", 0, "no tests were found: add *.test.ts files"))
    status: CheckStatus = "failed" if diags or result.exit_code else "passed"
    summary = f"{data.get('numPassedTests', 0)} passed, {data.get('numFailedTests', 0)} failed"
    check = make_check("vitest", status, result, summary, ver)
    check.metrics = {"tests": total, "failed": int(data.get("numFailedTests", 0))}
    return check, diags


def gate_js_coverage(run: GateRun) -> Outcome:
    """Check vitest's line coverage against the profile's minimum."""
    data = run.artifacts.get("js_coverage")
    if data is None:
        reason = (
            "no coverage data: install @vitest/coverage-v8 in the project"
            if _coverage_provider(run) is None
            else "vitest wrote no coverage summary"
        )
        return Check("js-coverage", "not_run", [], None, 0, reason), []
    minimum = run.profile.coverage_min
    percent = float(data["total"]["lines"]["pct"])
    diags = []
    if percent < minimum:
        files = [(k, v) for k, v in data.items() if k != "total"]
        for path, info in sorted(files, key=lambda kv: kv[1]["lines"]["pct"])[:5]:
            diags.append(
                Diagnostic(
                    "js-coverage",
                    path,
                    0,
                    f"{info['lines']['pct']:.0f}% of lines covered by tests",
                    "coverage",
                )
            )
    status: CheckStatus = "failed" if percent < minimum else "passed"
    check = Check(
        "js-coverage",
        status,
        ["vitest --coverage (same run as vitest)"],
        None,
        0.0,
        f"{percent:g}% of lines covered (minimum {minimum:g}%)",
        _package_version(run, "vitest"),
        metrics={"percent": percent, "minimum": minimum},
    )
    return check, diags


def audit_registry() -> str | None:
    """Return the npm registry the audit asks (``OLDNEW_NPM_REGISTRY``; None: npm's default)."""
    return os.environ.get("OLDNEW_NPM_REGISTRY") or None


def _audit_folder(run: GateRun) -> Path:
    """Return a new folder in the sandbox's home with the manifest, the lock and empty npmrcs.

    npm reads no configuration of the project's (an ``.npmrc`` in the copy) or of anything
    its code ran in the sandbox could have written (``~/.npmrc``): it could point the audit at
    a registry that reports nothing.
    """
    folder = Path(tempfile.mkdtemp(prefix="npm-audit-", dir=run.box.home))
    for name in ("package.json", "package-lock.json"):
        source = run.tree / name
        if source.is_file() and not source.is_symlink():
            shutil.copyfile(source, folder / name)
    for name in ("user.npmrc", "global.npmrc"):
        (folder / name).write_text("", encoding="utf-8")
    run.box.adopt(folder)
    return folder


def _npm_errors(stderr: str) -> str:
    """Return npm's error and warning lines, without the pointer to its debug log."""
    lines = [line for line in stderr.splitlines() if "A complete log of this run" not in line]
    return "\n".join(lines)


def gate_npm_audit(run: GateRun) -> Outcome:
    """Audit package-lock.json with ``npm audit --package-lock-only`` (the registry's advisories).

    The audit needs the registry's advisory service: when it cannot be reached or does not
    serve audits, nothing was checked, and the gate says so ("not_run" with npm's reason),
    never "passed".
    """
    if not (run.tree / "package-lock.json").is_file():
        reason = "no package-lock.json: nothing locked to audit"
        return Check("npm-audit", "not_run", [], None, 0, reason, required=False), []
    folder = _audit_folder(run)
    argv = ["npm", "audit", "--json", "--package-lock-only", "--no-update-notifier"]
    argv += ["--userconfig", str(folder / "user.npmrc")]
    argv += ["--globalconfig", str(folder / "global.npmrc"), "--cache", str(folder / "cache")]
    argv += ["--fetch-retries=1", "--fetch-retry-mintimeout=1000", "--fetch-retry-maxtimeout=2000"]
    registry = audit_registry()
    if registry:
        argv += ["--registry", registry]
    result = run.box.run(argv, timeout=run.timeout, cwd=folder, network=True)
    if result.killed:
        check, diags = stopped("npm-audit", result, "npm")
        check.required = False
        return check, diags
    try:
        data = json.loads(result.stdout)
    except json.JSONDecodeError:
        data = None
    if not isinstance(data, dict) or "error" in data or not isinstance(data.get("metadata"), dict):
        error = data.get("error") if isinstance(data, dict) else None
        error = error if isinstance(error, dict) else {}
        message = data.get("message") if isinstance(data, dict) else None
        why = str(
            error.get("summary") or message or error.get("code") or _npm_errors(result.stderr)
        ).strip()
        where = registry or "npm's default registry"
        reason = (
            f"the registry ({where}) did not answer the audit, so nothing was checked: "
            f"{why[-300:] or 'npm gave no reason'}"
        )
        return Check(
            "npm-audit",
            "not_run",
            result.argv,
            result.exit_code,
            round(result.duration_s, 3),
            reason,
            "npm",
            required=False,
        ), []
    counts = data["metadata"].get("vulnerabilities", {})
    bad = int(counts.get("high", 0)) + int(counts.get("critical", 0))
    diags = [
        Diagnostic("npm-audit", "package-lock.json", 0, f"{name}: {v.get('severity')} severity")
        for name, v in data.get("vulnerabilities", {}).items()
        if v.get("severity") in ("high", "critical")
    ]
    status: CheckStatus = "failed" if bad else "passed"
    check = make_check("npm-audit", status, result, f"vulnerabilities: {counts}", "npm")
    check.required = False
    return check, diags
