"""What a gate run produces: checks (one per gate), diagnostics, and the result as evidence."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

CheckStatus = Literal["passed", "failed", "not_run"]


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
    """The outcome of one gate: what ran, how it ended, what it found."""

    name: str
    status: CheckStatus
    command: list[str]
    exit_code: int | None
    duration_s: float
    summary: str
    version: str = ""
    required: bool = True
    """Whether delivery needs this gate to pass (a not-run required gate blocks too)."""
    metrics: dict[str, Any] = field(default_factory=dict)
    """Parsed numbers: tests run, coverage percent, mutants killed, findings by severity."""
    excused: str = ""
    """Why this gate's failure is not the validated work's (it failed the same way at the
    run's baseline, ``gates.baseline``); empty when it counts."""


def not_run(name: str, reason: str, *, required: bool = True) -> Check:
    """Return the check of a gate that did not run, and why."""
    return Check(name, "not_run", [], None, 0.0, reason, required=required)


@dataclass
class ValidationResult:
    """All gates of one validation, their diagnostics, and how they were run."""

    checks: list[Check] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    quality: dict[str, Any] = field(default_factory=dict)
    """The quality profile: its name and thresholds."""
    toolchains: list[str] = field(default_factory=list)
    sandbox: list[dict[str, Any]] = field(default_factory=list)
    """The sandbox's layers, each with whether it was in force and why not."""
    fingerprint: str = ""
    """A hash of the validated files (path and content), to tie evidence to a tree."""
    duration_s: float = 0.0
    reuse_key: str = ""
    """Files, profile, toolchains and tool versions hashed: equal keys, equal results."""
    reused_from: str = ""
    """The evidence this result was taken from, when the same files were validated before."""
    excused: list[Diagnostic] = field(default_factory=list)
    """Findings that were there at the run's baseline: shown, never the validated work's."""
    baseline: str = ""
    """The baseline evidence this result was judged against (``gates.baseline.judge``)."""

    @property
    def passed(self) -> bool:
        """True when every gate passed, was excused by the baseline, or was optional."""
        return bool(self.checks) and all(
            c.status == "passed" or c.excused or (c.status == "not_run" and not c.required)
            for c in self.checks
        )

    def failures(self) -> list[Check]:
        """Return the gates that failed, leaving out those the baseline excuses."""
        return [c for c in self.checks if c.status == "failed" and not c.excused]

    def check(self, name: str) -> Check | None:
        """Return the check called ``name``, if it is part of this result."""
        return next((c for c in self.checks if c.name == name), None)

    def blocking(self) -> list[Check]:
        """Return the checks that keep this result from passing."""
        return [
            c
            for c in self.checks
            if not c.excused and (c.status == "failed" or (c.required and c.status != "passed"))
        ]

    def degraded_layers(self) -> list[str]:
        """Return the sandbox layers that were not in force, with the reason."""
        return [f"{x['name']}: {x['detail']}" for x in self.sandbox if not x.get("active")]

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (the evidence file's content)."""
        return {
            "passed": self.passed,
            "quality": self.quality,
            "toolchains": self.toolchains,
            "fingerprint": self.fingerprint,
            "duration_s": round(self.duration_s, 3),
            "reuse_key": self.reuse_key,
            "reused_from": self.reused_from,
            "sandbox": self.sandbox,
            "checks": [asdict(c) for c in self.checks],
            "diagnostics": [asdict(d) for d in self.diagnostics],
            "excused": [asdict(d) for d in self.excused],
            "baseline": self.baseline,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ValidationResult:
        """Rebuild a result from its evidence."""
        return cls(
            checks=[Check(**c) for c in data.get("checks", [])],
            diagnostics=[Diagnostic(**d) for d in data.get("diagnostics", [])],
            quality=data.get("quality", {}),
            toolchains=data.get("toolchains", []),
            sandbox=data.get("sandbox", []),
            fingerprint=data.get("fingerprint", ""),
            duration_s=data.get("duration_s", 0.0),
            reuse_key=data.get("reuse_key", ""),
            reused_from=data.get("reused_from", ""),
            excused=[Diagnostic(**d) for d in data.get("excused", [])],
            baseline=data.get("baseline", ""),
        )
