"""Python linters over the generated code: ruff (lint and format), mypy, bandit.

Each runs from oldnew's own environment, in the sandbox, on the copy; none runs the project's
code. mypy looks up third-party packages in the project's environment; a package there without
type hints, or one missing from it, is a finding that says what to change in pyproject.toml
(:func:`import_advice`), not mypy's bare "Skipping analyzing".
"""

from __future__ import annotations

import configparser
import hashlib
import json
import os
import re
import shutil
import subprocess  # nosec B404 - fixed argument lists
import sys
import tempfile
import threading
import tomllib
from pathlib import Path

from oldnew.gates.common import (
    GateRun,
    Outcome,
    make_check,
    py_tool,
    rel,
    stopped,
    tool_version,
    unreadable,
)
from oldnew.gates.model import Check, CheckStatus, Diagnostic
from oldnew.gates.python import (
    local_names,
    missing_module_advice,
    module_distributions,
    python_files,
)
from oldnew.sandbox.files import read_project_text
from oldnew.sandbox.process import die_with_parent

# -- ruff -------------------------------------------------------------------------------------


def has_ruff_config(tree: Path) -> bool:
    """Whether the project configures ruff itself."""
    if (tree / "ruff.toml").is_file() or (tree / ".ruff.toml").is_file():
        return True
    return "[tool.ruff" in (read_project_text(tree, "pyproject.toml") or "")


def gate_ruff(run: GateRun) -> Outcome:
    """Run ``ruff check``: the project's own configuration, else the profile's rules."""
    argv = py_tool("ruff", "check", "--no-cache", "--output-format", "json")
    if not has_ruff_config(run.tree):
        argv += ["--isolated", "--select", run.profile.ruff_select]
    argv += ["--extend-exclude", "node_modules", "."]
    result = run.box.run(argv, timeout=run.timeout)
    ver = tool_version("ruff")
    if result.killed:
        return stopped("ruff", result, ver)
    try:
        findings = json.loads(result.stdout)
    except json.JSONDecodeError:
        return unreadable("ruff", result, ver, "ruff output")
    diags = [
        Diagnostic(
            "ruff",
            rel(f["filename"], run.tree),
            (f.get("location") or {}).get("row", 0),
            f["message"],
            f.get("code") or "",
        )
        for f in findings
    ]
    status: CheckStatus = "failed" if diags else "passed"
    check = make_check("ruff", status, result, f"{len(diags)} findings", ver)
    check.metrics = {"findings": len(diags)}
    return check, diags


def gate_ruff_format(run: GateRun) -> Outcome:
    """Run ``ruff format --check``: files the formatter would change fail the gate."""
    argv = py_tool("ruff", "format", "--check", "--no-cache", "--output-format", "json")
    if not has_ruff_config(run.tree):
        argv.append("--isolated")
    argv += ["--exclude", "node_modules", "."]
    result = run.box.run(argv, timeout=run.timeout)
    ver = tool_version("ruff")
    if result.killed:
        return stopped("ruff-format", result, ver)
    try:
        findings = json.loads(result.stdout)
    except json.JSONDecodeError:
        return unreadable("ruff-format", result, ver, "ruff format output")
    files = sorted({rel(f["filename"], run.tree) for f in findings})
    diags = [
        Diagnostic("ruff-format", path, 0, "not formatted: run 'ruff format' on it", "format")
        for path in files
    ]
    status: CheckStatus = "failed" if diags or result.exit_code else "passed"
    check = make_check("ruff-format", status, result, f"{len(diags)} files to reformat", ver)
    return check, diags


# -- mypy -------------------------------------------------------------------------------------


_SEED_MODULES = (
    "abc argparse asyncio collections contextlib csv dataclasses datetime decimal enum "
    "functools hashlib http io itertools json logging math os pathlib random re shutil "
    "socket sqlite3 string subprocess sys tempfile textwrap threading time typing unittest "
    "urllib uuid pytest"
)
_seed_lock = threading.Lock()


def mypy_seed(flags: list[str]) -> Path | None:
    """Return a mypy cache of the standard library for ``flags``, built once per machine.

    A cold mypy spends over a second on typeshed; a copy of this cache in each sandbox brings
    that to a fraction. It is built from a file of oldnew's (imports of common stdlib
    modules), never from generated code, and each sandbox gets its own copy, so no project can
    change what another one sees. Returns None when it cannot be built (mypy then runs cold).

    It is built outside the sandbox, so with oldnew's own interpreter, never the project's:
    the interpreter mypy looks packages up in does not change the cache's validity.
    """
    # mypy runs from oldnew's interpreter: the key names that one.
    key = hashlib.sha256(
        f"{tool_version('mypy')} {sys.version} {sys.executable} {flags}".encode()
    ).hexdigest()[:16]
    try:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "oldnew"
    except RuntimeError:  # no home directory
        return None
    seed = base / f"mypy-stdlib-{key}"
    with _seed_lock:
        if (seed / "ready").is_file():
            return seed
        work: Path | None = None
        try:
            base.mkdir(parents=True, exist_ok=True)
            work = Path(tempfile.mkdtemp(prefix="mypy-seed-", dir=base))
            (work / "seed.py").write_text(f"import {', '.join(_SEED_MODULES.split())}\n")
            subprocess.run(  # nosec B603 - oldnew's own file, fixed argv
                py_tool("mypy", *flags, "--cache-dir", str(work / "cache"), "seed.py"),
                cwd=work,
                capture_output=True,
                check=False,
                timeout=300,
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(work)},
                preexec_fn=die_with_parent,  # a kill of oldnew ends the build too
            )
            (work / "cache" / "ready").write_text("ok")
            os.replace(work / "cache", seed)
        except (OSError, subprocess.SubprocessError):
            pass  # another process built it first, or it cannot be built: see below
        finally:
            if work is not None:
                shutil.rmtree(work, ignore_errors=True)
    return seed if (seed / "ready").is_file() else None


_MYPY_INI = ("mypy.ini", ".mypy.ini", "setup.cfg")


def project_mypy_plugins(tree: Path) -> list[str]:
    """Return the mypy plugins the project's own config names (mypy.ini, pyproject, ...)."""
    found: list[str] = []
    text = read_project_text(tree, "pyproject.toml")
    if text is not None:
        try:
            plugins = tomllib.loads(text).get("tool", {}).get("mypy", {}).get("plugins", [])
        except tomllib.TOMLDecodeError:
            plugins = []
        found += [plugins] if isinstance(plugins, str) else [str(p) for p in plugins]
    for name in _MYPY_INI:
        text = read_project_text(tree, name)
        if text is None:
            continue
        parser = configparser.ConfigParser(interpolation=None, strict=False)
        try:
            parser.read_string(text)
        except configparser.Error:
            continue
        found += [parser.get("mypy", "plugins", fallback="")]
    return [p.strip() for entry in found for p in entry.split(",") if p.strip()]


def _plugin_is_project_code(plugin: str) -> bool:
    path = plugin.rsplit(":", 1)[0] if ":" in os.path.basename(plugin) else plugin
    return path.endswith(".py") or "/" in path or "\\" in path


_QUOTED = re.compile(r'"([\w.]+)"')
_STUBS_HINT = re.compile(r"pip install (types-[\w.-]+)")


_IMPORT_CODES = ("import-untyped", "import-not-found")


def import_advice(
    item: dict[str, object], tree: Path, installed: dict[str, str], local: set[str]
) -> str | None:
    """Return what to change for mypy's ``import-untyped``/``import-not-found`` finding.

    The stubs package is the one mypy's own hint names (``types-PyYAML``); without one, the
    override that tells mypy to treat the package as untyped. ``installed`` maps the project
    environment's top-level modules to their distributions (:func:`module_distributions`).
    None: not such a finding, or a module of the project's own (its message stays mypy's).
    """
    code, message = item.get("code"), str(item.get("message", ""))
    found = _QUOTED.search(message)
    if code not in _IMPORT_CODES or found is None:
        return None
    module = found.group(1)
    top = module.split(".")[0]
    if top in local:
        return None
    stub = _STUBS_HINT.search(str(item.get("hint") or ""))
    if stub is not None:
        return (
            f"{module!r} has no type hints mypy can read; its stubs are the package "
            f"{stub.group(1)!r}: add it to a dev dependency group in pyproject.toml "
            f'([dependency-groups] dev = [..., "{stub.group(1)}"]) and re-lock, so that the '
            "project's environment has it"
        )
    dist_name = installed.get(top)
    if code == "import-untyped":
        dist = f" (distribution {dist_name!r})" if dist_name else ""
        return (
            f"{top!r}{dist} is installed but ships no type hints (no py.typed marker) and mypy "
            "knows no stubs package for it: add to pyproject.toml "
            f'[[tool.mypy.overrides]] module = "{top}.*" ignore_missing_imports = true '
            "(or a published types- stubs package to a dev dependency group)"
        )
    if dist_name:
        return None  # the package is there, without that submodule: mypy's words suffice
    return f"module {top!r} is not in the project's environment: {missing_module_advice(top, tree)}"


def mypy_findings(stdout: str, run: GateRun) -> list[Diagnostic]:
    """Return the errors of mypy's JSON lines, import findings with what to change."""
    items = []
    for line in stdout.splitlines():
        try:
            items.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    imports = any(i.get("code") in _IMPORT_CODES for i in items)
    local = local_names(run.tree, python_files(run.tree)) if imports else set()
    installed = module_distributions(run.env) if imports else {}
    diags = []
    for item in items:
        if item.get("severity") != "error":
            continue
        message = item.get("message", "")
        advice = import_advice(item, run.tree, installed, local)
        if advice:
            message += f": {advice}"
        elif item.get("hint"):
            message += f" ({item['hint']})"
        diags.append(
            Diagnostic(
                "mypy",
                rel(item.get("file", "?"), run.tree),
                int(item.get("line") or 0),
                message,
                item.get("code") or "",
            )
        )
    return diags


def gate_mypy(run: GateRun) -> Outcome:
    """Type-check with mypy (``--strict`` in the strict profile; the project's config counts).

    A plugin the config names by path is the project's own code that mypy would import into
    itself (and could make it report anything): the gate refuses it rather than run it.
    """
    own = [p for p in project_mypy_plugins(run.tree) if _plugin_is_project_code(p)]
    if own:
        diags = [
            Diagnostic(
                "mypy",
                ".",
                0,
                f"the mypy config loads the plugin {p!r} from the project: a plugin runs inside "
                "mypy and decides what it reports, so oldnew does not load the project's own; "
                "remove it from the config (installed plugins named by module are fine)",
                "plugin",
            )
            for p in own
        ]
        summary = f"refused {len(own)} mypy plugins from the project"
        check = Check("mypy", "failed", [], None, 0, summary, tool_version("mypy"))
        return check, diags
    flags = ["--explicit-package-bases", "--exclude", "node_modules"]
    if run.profile.mypy_strict:
        flags.append("--strict")
    cache = run.box.home / "mypy-cache"
    seed = mypy_seed(flags)
    if seed is not None:
        shutil.copytree(seed, cache)
        run.box.adopt(cache)
    argv = py_tool("mypy", "--output", "json", "--hide-error-context", "--no-color-output")
    # The packages the project's code imports are the ones its environment holds.
    argv += ["--python-executable", str(run.env.python)]
    argv += ["--cache-dir", str(cache) if seed else os.devnull, *flags, "."]
    # mypy asks that interpreter for its search path: the test tools lent to it count too.
    env = run.env.variables()
    if (run.tree / "src").is_dir():
        env["MYPYPATH"] = str(run.tree / "src")
    result = run.box.run(argv, timeout=run.timeout, env=env)
    ver = tool_version("mypy")
    if result.killed:
        return stopped("mypy", result, ver)
    diags = mypy_findings(result.stdout, run)
    if result.exit_code not in (0, 1) or (result.exit_code == 1 and not diags):
        text = (result.stderr or result.stdout).strip()[-600:]
        diags.append(Diagnostic("mypy", ".", 0, f"mypy could not check the project: {text}"))
    status: CheckStatus = "failed" if diags else "passed"
    check = make_check("mypy", status, result, f"{len(diags)} type errors", ver)
    check.metrics = {"errors": len(diags), "strict": run.profile.mypy_strict}
    return check, diags


# -- bandit -----------------------------------------------------------------------------------

_SEVERITY = {"LOW": 1, "MEDIUM": 2, "HIGH": 3, "CRITICAL": 4}


def gate_bandit(run: GateRun) -> Outcome:
    """Scan for security problems with bandit; the profile's severity and above block."""
    argv = py_tool("bandit", "-r", ".", "-f", "json", "-q", "-x", "./node_modules,./.venv")
    result = run.box.run(argv, timeout=run.timeout)
    ver = tool_version("bandit")
    if result.killed:
        return stopped("bandit", result, ver)
    try:
        data = json.loads(result.stdout)
    except json.JSONDecodeError:
        return unreadable("bandit", result, ver, "bandit output")
    block = _SEVERITY[run.profile.bandit_block]
    counts: dict[str, int] = {}
    diags = []
    for item in data.get("results", []):
        severity = str(item.get("issue_severity", "LOW")).upper()
        counts[severity] = counts.get(severity, 0) + 1
        if _SEVERITY.get(severity, 0) >= block:
            diags.append(
                Diagnostic(
                    "bandit",
                    rel(item.get("filename", "?"), run.tree),
                    int(item.get("line_number") or 0),
                    f"{severity.lower()} severity: {item.get('issue_text', '')}",
                    item.get("test_id", ""),
                )
            )
    status: CheckStatus = "failed" if diags else "passed"
    shown = ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items())) or "no findings"
    summary = f"{shown}; {run.profile.bandit_block.lower()} and above block"
    check = make_check("bandit", status, result, summary, ver)
    check.metrics = {"by_severity": counts, "blocking": len(diags)}
    return check, diags
