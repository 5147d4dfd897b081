"""The project's own test command, when it declares one: run as the project runs it.

A repository that says how its tests run is validated that way too, beside the gates' own
pytest and vitest runs. It says so in ``pyproject.toml``::

    [tool.oldnew]
    test = "make check"        # or an argv list: ["python", "-m", "pytest", "-x"]

or with a ``test`` target in its ``Makefile``, or a ``scripts.test`` in its ``package.json``
(run as npm would run it, with no npm: ``web.start.npm_script``). The command runs in the
sandbox like the tests (no network, the project's environment first on ``PATH``); exit 0
passes. Its finding names the
command and its exit code only, so that a command failing before a run started (the baseline)
is recognised as the same failure afterwards; its output is in the evidence.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

from oldnew.deps.errors import DependencyError
from oldnew.deps.manifest import read_package_json
from oldnew.gates.common import GateRun, Outcome, make_check, stopped
from oldnew.gates.model import Check, Diagnostic
from oldnew.sandbox.files import read_project_text
from oldnew.web.start import NoStartCommand, npm_script

NAME = "project-tests"
_MAKE_TARGET = re.compile(r"^test\s*:(?!=)", re.MULTILINE)
_NPM_PLACEHOLDER = "no test specified"
"""What ``npm init`` writes as the test script: no test command at all."""
_SHOWN = 3_000


class CommandError(ValueError):
    """The declared test command cannot be read (the project's to fix)."""


def declared_command(tree: Path) -> list[str] | None:
    """Return the test command ``tree`` declares, or None when it declares none.

    Raises:
        CommandError: ``[tool.oldnew] test`` is there but is no command.

    """
    text = read_project_text(tree, "pyproject.toml")
    if text and "[tool.oldnew" in text:
        try:
            tool = tomllib.loads(text).get("tool", {}).get("oldnew", {})
        except tomllib.TOMLDecodeError:
            tool = {}  # the dependency step reports a manifest that does not read
        command = tool.get("test")
        if isinstance(command, str) and command.strip():
            return shlex.split(command)
        if isinstance(command, list) and command and all(isinstance(a, str) for a in command):
            return list(command)
        if command is not None:
            raise CommandError(
                "[tool.oldnew] test in pyproject.toml must be a command: a string such as "
                '"make check" or a list such as ["python", "-m", "pytest"]'
            )
    makefile = read_project_text(tree, "Makefile")
    if makefile and _MAKE_TARGET.search(makefile):
        return ["make", "--no-print-directory", "test"]
    scripts = package_scripts(tree)
    test = scripts.get("test", "")
    if test.strip() and _NPM_PLACEHOLDER not in test:
        try:
            return ["/bin/sh", "-c", npm_script(scripts, "test")]
        except NoStartCommand as exc:
            raise CommandError(f"package.json scripts.test: {exc}") from None
    return None


def package_scripts(tree: Path) -> dict[str, str]:
    """Return the scripts of ``tree``'s package.json, {} without one.

    A package.json that does not read gives {} too: the dependency step and the app's start
    say what is wrong with it.
    """
    try:
        data = read_package_json(tree) or {}
    except DependencyError:
        return {}
    scripts = data.get("scripts")
    if not isinstance(scripts, dict):
        return {}
    return {k: v for k, v in scripts.items() if isinstance(v, str) and v.strip()}


def gate_project_tests(run: GateRun) -> Outcome:
    """Run the project's declared test command; not run (and not required) when it has none."""
    try:
        argv = declared_command(run.tree)
    except CommandError as exc:
        check = Check(NAME, "failed", [], None, 0.0, str(exc))
        return check, [Diagnostic(NAME, "pyproject.toml", 0, str(exc), "declaration")]
    if argv is None:
        reason = (
            "the project declares no test command ([tool.oldnew] test, make test, or "
            "package.json scripts.test)"
        )
        return Check(NAME, "not_run", [], None, 0.0, reason, required=False), []
    with run.new_sandbox() as box:
        result = box.run(argv, timeout=run.timeout, env=box.env.variables())
    shown = shlex.join(argv)
    if result.killed or result.ending():
        return stopped(NAME, result, shown)
    if result.exit_code == 0:
        return make_check(NAME, "passed", result, f"{shown} passed", shown), []
    output = result.output[-_SHOWN:]
    check = make_check(NAME, "failed", result, f"{shown} exited with {result.exit_code}", shown)
    check.metrics["output"] = output
    message = f"the project's test command `{shown}` exited with {result.exit_code}"
    return check, [Diagnostic(NAME, ".", 0, message, "exit")]
