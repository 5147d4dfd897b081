"""Quality profiles: which gates run, and with which thresholds.

``default`` is tuned so that honest, decent code (the bundled example) passes: ruff's
correctness rules unless the project configures ruff, mypy without ``--strict``, coverage 80%,
bandit blocks high severity only, a complexity ceiling of 15, and a test suite that catches at
least one deliberate mutation. ``strict`` adds the format check, mypy ``--strict``, bandit's
medium severity, tighter ceilings and more mutants; ``fast`` keeps the cheap gates and the
tests. ``smoke`` asks only that the code parses, imports and passes its own tests: for trying a
change to the graph or a model where the delivered code's quality is not the question (the
test suite's graph-logic tests run on it). It can still fail: a syntax error, a missing module,
a failing test or no tests at all fails it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from oldnew.errors import ConfigurationError

PYTHON_GATES = (
    "links",
    "syntax",
    "imports",
    "secrets",
    "ruff",
    "ruff-format",
    "complexity",
    "bandit",
    "mypy",
    "pytest",
    "coverage",
    "mutation",
    "project-tests",
    "audit",
)
JS_GATES = ("links", "secrets", "complexity", "tsc", "eslint", "vitest", "js-coverage", "npm-audit")
WEB_GATES = ("web-build",)
"""The web gates every task runs: the app's declared build."""
MILESTONE_GATES = ("web-start", "e2e", "axe", "screenshots", "lighthouse", "load")
"""The gates on the running app, at a milestone and before delivery (``milestone=True``)."""
TASK_GATES = {"regression": ("regression",)}
"""Gates a kind of task adds to whichever profile runs: a bug fix's ``regression`` gate runs
its new tests on the tree before the fix, where one must fail (``gates.regression``). The
``acceptance`` gate is in no profile either: it runs where a suite is given (a milestone, its
fix task: ``validate_tree(acceptance=...)``), whatever the profile."""


@dataclass(frozen=True)
class Profile:
    """One quality profile; the gates it runs are listed cheap to expensive."""

    name: str
    gates: tuple[str, ...]
    coverage_min: float = 80.0
    complexity_max: int = 15
    bandit_block: str = "HIGH"
    """Lowest bandit severity that fails the gate: LOW, MEDIUM or HIGH."""
    ruff_select: str = "E4,E7,E9,F"
    """Rules for a project without its own ruff configuration."""
    mypy_strict: bool = False
    mutants: int = 4
    mutation_min_score: float = 0.0
    """Share of mutants the tests must kill; any score needs at least one kill, and finding no
    mutant to run fails too (only code that computes nothing is "not run": ``gates.mutation``)."""
    milestone_gates: tuple[str, ...] = MILESTONE_GATES
    lighthouse_min: float = 90.0
    """Lowest score (0-100) of each Lighthouse category: performance, accessibility, best
    practices, SEO."""
    axe_block: tuple[str, ...] = ("serious", "critical")
    """axe impacts that fail the gate; the others are reported."""
    load_p95_ms: float = 500.0
    load_error_rate: float = 0.01
    load_seconds: float = 5.0
    """How long each endpoint's load run lasts."""
    web_budget_s: float = 240.0
    """Seconds the whole milestone set (build, start, browser, Lighthouse, load) may take."""
    web_ready_s: float = 30.0
    """Seconds the started app has to answer HTTP 200 on its health path."""
    e2e_test_s: float = 15.0
    """Seconds each of the project's browser tests may take (a test that hangs fails)."""

    def to_dict(self) -> dict[str, Any]:
        """Return the profile as JSON-ready data (shown in evidence and the report)."""
        data = asdict(self)
        data["gates"] = list(self.gates)
        data["milestone_gates"] = list(self.milestone_gates)
        data["axe_block"] = list(self.axe_block)
        return data


PROFILES = {
    "smoke": Profile(
        name="smoke",
        gates=("syntax", "imports", "pytest", "project-tests", "tsc", "vitest", *WEB_GATES),
        mutants=0,
    ),
    "fast": Profile(
        name="fast",
        gates=("links", "syntax", "imports", "secrets", "ruff", "bandit", "pytest")
        + ("project-tests", "tsc", "eslint", "vitest", *WEB_GATES),
        mutants=0,
    ),
    "default": Profile(
        name="default",
        gates=tuple(g for g in PYTHON_GATES if g != "ruff-format")
        + tuple(g for g in JS_GATES if g not in PYTHON_GATES)
        + WEB_GATES,
    ),
    "strict": Profile(
        name="strict",
        gates=PYTHON_GATES + tuple(g for g in JS_GATES if g not in PYTHON_GATES) + WEB_GATES,
        coverage_min=90.0,
        complexity_max=10,
        bandit_block="MEDIUM",
        ruff_select="E,F,W,B,UP,C4,SIM",
        mypy_strict=True,
        mutants=8,
        mutation_min_score=0.5,
    ),
}


def resolve_profile(
    quality: str = "default",
    *,
    coverage_min: float | str | None = None,
    complexity_max: int | str | None = None,
) -> Profile:
    """Return the profile called ``quality``, with any threshold the configuration overrides.

    Raises:
        ConfigurationError: unknown profile name or a threshold that is not a number.

    """
    profile = PROFILES.get(str(quality).strip().lower())
    if profile is None:
        raise ConfigurationError(
            f"unknown quality profile {quality!r}: use one of {', '.join(PROFILES)} "
            "(OLDNEW_QUALITY)"
        )
    try:
        if coverage_min is not None:
            profile = replace(profile, coverage_min=float(coverage_min))
        if complexity_max is not None:
            profile = replace(profile, complexity_max=int(complexity_max))
    except ValueError as exc:
        raise ConfigurationError(f"quality threshold is not a number: {exc}") from None
    return profile
