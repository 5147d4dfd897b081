"""What the gates check, in words for the coder and the fixer: the rules its work is judged by.

Every line is derived from the active :class:`Profile` and the gates' own settings (the
pytest command the gate runs, its environment, the ruff rules, the thresholds), so a prompt
never holds a second copy of a threshold: change the profile and the prompt says so. The
lines follow the profile's order (cheap first) and cover only the gates that run on the
project's toolchains; a gate with no line of its own here is described by its docstring.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from oldnew.gates import mutation
from oldnew.gates import web as web_gates
from oldnew.gates.lint import has_ruff_config
from oldnew.gates.profiles import Profile
from oldnew.gates.pytests import PYTEST_ENV, suite_command
from oldnew.gates.runner import GATES, toolchains_of
from oldnew.sandbox import Sandbox

STACK_TOOLCHAINS = {
    "python": ("python",),
    "python-web": ("python", web_gates.TOOLCHAIN),
    "node-web": ("typescript", web_gates.TOOLCHAIN),
}
"""The toolchains a scope's stack names before its files show them."""
_HOME = "<report>"
"""Stands for the sandbox's home in the pytest command (where oldnew's own reports go)."""


@dataclass(frozen=True)
class Rules:
    """What the prompt says of the checks: per task, and at the milestones."""

    profile: str
    timeout: float
    task: list[str]
    milestone: list[str]


class _Shown:
    """A stand-in for the sandbox that only shows the command :func:`suite_command` builds."""

    home = Path(_HOME)

    def __init__(self, tree: Path) -> None:
        self.tree = tree
        self.env = self

    def module_argv(self, module: str, *args: str, preload: object = ()) -> list[str]:
        return ["python", "-m", module, *args]

    def variables(self) -> dict[str, str]:
        return {}


def pytest_command(tree: Path) -> str:
    """Return the pytest command the gate runs on ``tree``, without oldnew's report options."""
    argv, _ = suite_command(cast(Sandbox, _Shown(tree)), measure=False)
    shown: list[str] = []
    for arg in argv:
        if _HOME in arg or arg.startswith("junit_family="):
            if arg.startswith("junit_family=") and shown and shown[-1] == "-o":
                shown.pop()
            continue
        shown.append(arg)
    return " ".join(shown)


def _ruff(p: Profile, tree: Path) -> str:
    if has_ruff_config(tree):
        return "ruff: `ruff check .` with the project's own ruff configuration; any finding fails."
    return (
        f"ruff: `ruff check --select {p.ruff_select} .` (the project has no ruff "
        "configuration of its own); any finding fails."
    )


def _pytest(p: Profile, tree: Path) -> str:
    env = " ".join(f"{k}={v}" for k, v in PYTEST_ENV.items())
    autoload = (
        " (plugins are not loaded automatically: load a pytest plugin you use with "
        "`-p <name>` in the pytest addopts or `pytest_plugins` in conftest.py)"
        if PYTEST_ENV.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD")
        else ""
    )
    return (
        f"pytest: `{env} {pytest_command(tree)}`, from the project root (the root is first "
        f"on sys.path, so tests import the project's modules by their path from there), "
        f"with the project's environment{autoload}. Every test must pass; no tests collected, "
        "or every test skipped, fails."
    )


def _mypy(p: Profile, tree: Path) -> str:
    strict = " --strict" if p.mypy_strict else ""
    mode = "strict mode: every function fully annotated" if p.mypy_strict else "not strict"
    return (
        f"mypy: `mypy{strict} --explicit-package-bases .` ({mode}; the project's own mypy "
        "configuration counts; src/ is on its search path when the project has one); any "
        "type error fails. A third-party package without type "
        "hints needs its types-* stubs in the dev dependency group, or an "
        "ignore_missing_imports override."
    )


def _mutation(p: Profile, tree: Path) -> str:
    share = (
        f" and on at least {p.mutation_min_score:.0%} of them (of those that do not only crash)"
        if p.mutation_min_score
        else ""
    )
    return (
        f"mutation: up to {p.mutants} small deliberate changes (mutants) of your code, each "
        f"on a line the tests run (it changes {mutation.KINDS_IN_WORDS}); a test must fail "
        f"on an assertion on at least one{share}: assert exact results, not only that the "
        "code runs (a mutant that only makes the tests crash, with a TypeError or an "
        "AttributeError of None, does not count). It fails when the tests run some of your "
        "code but none of the lines a mutant can change, or when no mutant can be made of "
        "code that does work; code tested only through a subprocess (coverage sees none of "
        "it run) gets its mutants on any line."
    )


def _lighthouse(p: Profile, tree: Path) -> str:
    return (
        f"lighthouse: each page the scope names scores at least {p.lighthouse_min:g} in "
        f"every category ({', '.join(web_gates.CATEGORIES)})."
    )


def _load(p: Profile, tree: Path) -> str:
    return (
        f"load: each API endpoint the scope names under load for {p.load_seconds:g} s: p95 "
        f"latency at most {p.load_p95_ms:g} ms, error rate at most {p.load_error_rate:.0%}."
    )


_Line = Callable[[Profile, Path], str]
_LINES: dict[str, _Line] = {
    "links": lambda p, t: "links: no symbolic link may lead out of the project.",
    "syntax": lambda p, t: "syntax: every .py file parses.",
    "imports": lambda p, t: (
        "imports: every import resolves in the project's environment (its declared "
        "dependencies and its own modules)."
    ),
    "secrets": lambda p, t: (
        "secrets: detect-secrets scans every file: no key, password or token in the code "
        "(read it from the environment)."
    ),
    "ruff": _ruff,
    "ruff-format": lambda p, t: (
        "ruff-format: `ruff format --check .`: every .py file as `ruff format` writes it."
    ),
    "complexity": lambda p, t: (
        f"complexity: lizard's cyclomatic complexity of each function at most "
        f"{p.complexity_max}; split a longer function."
    ),
    "bandit": lambda p, t: (
        f"bandit: `bandit -r .`; a finding of {p.bandit_block.lower()} severity or above "
        "fails, lower ones are reported only."
    ),
    "mypy": _mypy,
    "pytest": _pytest,
    "coverage": lambda p, t: (
        f"coverage: the tests cover at least {p.coverage_min:g}% of the lines of the "
        "project's code (test files not counted)."
    ),
    "mutation": _mutation,
    "project-tests": lambda p, t: (
        "project-tests: the project's own test command, if it declares one (a `test` in "
        "pyproject.toml's tool.oldnew table, a Makefile test target, package.json "
        "scripts.test), exits 0."
    ),
    "audit": lambda p, t: "audit: pip-audit of the locked versions (reported, not required).",
    "tsc": lambda p, t: "tsc: `tsc --noEmit -p .` with the project's tsconfig.json; no type error.",
    "eslint": lambda p, t: (
        "eslint: `eslint .` with the project's own eslint configuration (eslint.config.js); "
        "errors fail, warnings are reported."
    ),
    "vitest": lambda p, t: "vitest: `vitest run`; every test passes.",
    "js-coverage": lambda p, t: (
        f"js-coverage: vitest's coverage (with @vitest/coverage-v8 in devDependencies) at "
        f"least {p.coverage_min:g}% of lines."
    ),
    "npm-audit": lambda p, t: "npm-audit: npm audit of package-lock.json (reported, not required).",
    "web-build": lambda p, t: "web-build: the app's declared build command succeeds.",
    "web-start": lambda p, t: (
        f"web-start: the app starts and answers HTTP 200 on its health path within "
        f"{p.web_ready_s:g} s."
    ),
    "e2e": lambda p, t: (
        f"e2e: the project's Playwright tests pass against the running app, each within "
        f"{p.e2e_test_s:g} s."
    ),
    "axe": lambda p, t: (
        f"axe: each page the scope names has no {' or '.join(p.axe_block)} accessibility violation."
    ),
    "screenshots": lambda p, t: "screenshots: each page renders with no error in the browser.",
    "lighthouse": _lighthouse,
    "load": _load,
}


def toolchains(tree: Path, stack: str) -> list[str]:
    """Return the toolchains whose gates will run: the stack's, and those the files show.

    A project with no files yet shows none (the runner's default of ``python`` for an empty
    tree would describe Python's checks to a Node app's first task).
    """
    named = list(STACK_TOOLCHAINS.get(stack, ("python",)))
    if not _has_files(tree):
        return sorted(named)
    return toolchains_of(tree, named)


def _has_files(tree: Path) -> bool:
    try:
        return any(not p.name.startswith(".") for p in tree.iterdir())
    except OSError:
        return False


def _line(name: str, profile: Profile, tree: Path) -> str:
    if name in _LINES:
        return _LINES[name](profile, tree)
    doc = (GATES[name].check.__doc__ or "").strip().splitlines()
    return f"{name}: {doc[0] if doc else 'must pass'}"


def rules_for(profile: Profile, tree: Path, *, stack: str, timeout: float) -> Rules:
    """Return the rules the gates of ``profile`` hold ``tree``'s code to, for a ``stack``."""
    chains = toolchains(tree, stack)
    runs = [*chains, "any"]

    def lines(names: tuple[str, ...]) -> list[str]:
        wanted = [n for n in names if GATES[n].toolchain in runs]
        if not profile.mutants:
            wanted = [n for n in wanted if n != "mutation"]  # off: the gate says so
        return [_line(n, profile, tree) for n in wanted]

    web = web_gates.TOOLCHAIN in chains
    return Rules(
        profile=profile.name,
        timeout=timeout,
        task=lines(profile.gates),
        milestone=lines(profile.milestone_gates) if web else [],
    )
