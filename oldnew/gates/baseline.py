"""The baseline: what already failed where a run started, and which failures a task caused.

A run on an existing repository validates the tree of its base commit once, before its first
task (``nodes.baseline``), and keeps what it found in ``.oldnew/baseline.json`` (the evidence
itself is ``.oldnew/evidence/baseline.json``). :func:`judge` holds every later validation
against it: a finding that was already there is the repository's, not the task's.

Findings are matched by an identity that survives edits elsewhere (:func:`identity`): the gate,
the file, the rule and the message with line numbers and other volatile numbers masked; for a
failing test, its node id. They are counted as a multiset: two identical findings at the
baseline excuse two now, not three. A gate that failed at the baseline and fails now with only
such findings does not fail the validation (it stays ``failed`` in the evidence, with why it
is excused); one new finding fails it, and only the new findings go to the fixer. A gate that
passed at the baseline and fails now fails as it always did. What says that nothing was
validated (an environment that cannot be made, a stopped command, a rigged report, a gate that
did not run, a test run in which no test ran) is never excused. A prerequisite whose failure is
wholly pre-existing holds no gate back (:meth:`Baseline.excuses`, the runner's ``proceed``):
the gates behind it run and are judged in their own right.

A command the sandbox stopped at the baseline and stops again now (a suite slower than the
test timeout) cannot be judged in this run: it is ``not_run``, with what a person can do,
never a fixer's round. The record is keyed on the commit, the quality profile, the toolchains
and the test timeout (:func:`baseline_key`): a baseline taken under others is taken again.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from pathlib import PurePosixPath
from typing import Any, Literal

from oldnew.gates.model import Check, Diagnostic, ValidationResult
from oldnew.workspace import Workspace

RECORD = "baseline.json"
"""The derived record in ``.oldnew/``: the base commit, how the baseline went, its findings."""
EVIDENCE = "baseline"
"""The name of the baseline's evidence file in ``.oldnew/evidence/``."""
NEVER_EXCUSED = frozenset({"dependencies", "sandbox", "baseline"})
"""Checks that say nothing was validated: a failure of theirs is never pre-existing."""
UNTRUSTED = frozenset({"report", "forged", "sandbox"})
"""Rules of findings that say a gate's verdict cannot be had (a rigged report, a command the
sandbox stopped): never excused, or a task would pass on tests that never ran."""
TESTED = frozenset({"pytest"})
"""Gates whose numbers say how many tests ran (``tests``, ``skipped``, ``collection_errors``)."""
COVERAGE = frozenset({"coverage", "js-coverage"})
"""Gates measured as a share of the whole project: identified by file, and excused only while
the share does not fall below the baseline's."""

UNJUDGED = "cannot be judged in this run:"
"""How the summary of a gate stopped at the baseline and now starts (:func:`judge`)."""

BaselineStatus = Literal["recorded", "unbuildable", "crashed", "none"]

_HEX = re.compile(r"0x[0-9a-fA-F]+")
_FOLDERS = re.compile(r"(?<![\w.])/(?:[\w.+@-]+/)+")
_NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?")


def mask(text: str) -> str:
    """Return ``text`` with what changes between runs masked: numbers, addresses, folders."""
    text = _HEX.sub("<address>", text)
    text = _FOLDERS.sub(".../", text)
    return " ".join(_NUMBER.sub("#", text).split())


def identity(diag: Diagnostic) -> tuple[str, ...]:
    """Return what makes ``diag`` the same finding after edits elsewhere in the project.

    A failing test is its node id (pytest's diagnostics start with it); a coverage finding is
    its file; any other is its gate, file, rule and message, masked (:func:`mask`). The line
    number is never part of it.
    """
    if diag.tool == "pytest" and diag.rule in ("failure", "error"):
        return ("pytest", diag.message.split(": ", 1)[0])
    name = diag.file.removeprefix("./")
    if name.startswith("/"):
        name = PurePosixPath(name).name  # a folder of the sandbox's copy: never the same twice
    if diag.tool in COVERAGE:
        return (diag.tool, name)
    return (diag.tool, name, diag.rule, mask(diag.message))


@dataclass
class Baseline:
    """The gates' verdict on the commit a run started from, as the tasks are judged by it."""

    commit: str | None
    status: BaselineStatus
    """recorded (the gates ran), unbuildable (the project's environment cannot be made),
    crashed (the baseline could not be taken), none (a new project: nothing to compare)."""
    evidence: str = ""
    """The baseline's evidence file, relative to the workspace."""
    reason: str = ""
    """Why it is unbuildable or crashed."""
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Gate -> its status and metrics at the baseline."""
    findings: list[Diagnostic] = field(default_factory=list)
    key: dict[str, Any] = field(default_factory=dict)
    """What it was taken under (:func:`baseline_key`): the commit, profile, toolchains, timeout."""

    @classmethod
    def of(
        cls,
        commit: str,
        result: ValidationResult,
        evidence: str,
        key: dict[str, Any] | None = None,
    ) -> Baseline:
        """Return the baseline that the validation ``result`` of ``commit`` makes."""
        checks = {c.name: {"status": c.status, "metrics": c.metrics} for c in result.checks}
        unbuildable = result.check("dependencies")
        crashed = result.check("baseline") or result.check("sandbox")
        key = key or {}
        if unbuildable is not None and unbuildable.status != "passed":
            why = "; ".join(d.message for d in result.diagnostics) or unbuildable.summary
            return cls(commit, "unbuildable", evidence, why[:2000], checks, key=key)
        if crashed is not None and crashed.status != "passed":
            return cls(commit, "crashed", evidence, crashed.summary[:2000], checks, key=key)
        return cls(commit, "recorded", evidence, "", checks, list(result.diagnostics), key)

    def taken_again_because(self, key: dict[str, Any]) -> str:
        """Return why a baseline under ``key`` cannot be this one ('' when it can be)."""
        if self.key == key:
            return ""
        if self.commit != key.get("commit"):
            return f"it was taken on another commit ({str(self.commit)[:12]})"
        for part, what in _KEY_PARTS.items():
            was, now = self.key.get(part), key.get(part)
            if was != now:
                shown = was.get("name") if isinstance(was, dict) and part == "profile" else was
                return f"{what} changed since it was taken (it was taken under {shown!r})"
        return "it was taken by an older oldnew, under settings it did not record"

    def excuses(self, check: Check, diags: list[Diagnostic]) -> bool:
        """Say whether ``check`` fails with nothing but what failed here at the baseline.

        The runner's ``proceed``: such a prerequisite holds no gate behind it back.
        """
        if self.status != "recorded" or not _excusable(check, self.checks.get(check.name)):
            return False
        left = Counter({k: n for k, n in self.identities.items() if k[0] == check.name})
        for diag in diags:
            key = identity(diag)
            if diag.rule in UNTRUSTED or left[key] <= 0:
                return False
            left[key] -= 1
        return True

    @cached_property
    def identities(self) -> Counter[tuple[str, ...]]:
        """Return the baseline's findings by identity, counted (worked out once)."""
        return Counter(identity(d) for d in self.findings)

    @property
    def failing(self) -> list[str]:
        """Return the gates that did not pass at the baseline."""
        return [name for name, c in self.checks.items() if c["status"] == "failed"]

    def summary(self) -> dict[str, Any]:
        """Return the short form the run's state keeps (the findings stay in the file)."""
        return {
            "status": self.status,
            "commit": self.commit,
            "evidence": self.evidence,
            "reason": self.reason[:300],
            "failing": self.failing,
            "findings": len(self.findings),
        }

    def to_dict(self) -> dict[str, Any]:
        """Return the record as JSON-ready data."""
        return {**asdict(self), "findings": [asdict(d) for d in self.findings]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Baseline:
        """Rebuild a record from :meth:`to_dict`'s data."""
        return cls(
            commit=data.get("commit"),
            status=data.get("status", "crashed"),
            evidence=data.get("evidence", ""),
            reason=data.get("reason", ""),
            checks=data.get("checks", {}),
            findings=[Diagnostic(**d) for d in data.get("findings", [])],
            key=data.get("key") or {},
        )

    def save(self, ws: Workspace) -> None:
        """Write the record to ``.oldnew/baseline.json``."""
        ws.write_json(RECORD, self.to_dict())

    @classmethod
    def load(cls, ws: Workspace) -> Baseline | None:
        """Return the run's baseline, None when none was taken (or the record is unreadable)."""
        path = ws.meta / RECORD
        try:
            return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            return None  # none yet, or damaged: a damaged record excuses nothing, as without


_KEY_PARTS = {
    "profile": "the quality profile",
    "toolchains": "the toolchains",
    "timeout": "the test timeout",
}


def baseline_key(
    commit: str, profile: dict[str, Any], toolchains: list[str] | None, timeout: float
) -> dict[str, Any]:
    """Return what a baseline depends on: commit, profile, toolchains and test timeout.

    The profile is its whole record (name, gates, thresholds: ``Profile.to_dict()``).
    """
    return {
        "commit": commit,
        "profile": profile,
        "toolchains": sorted(set(toolchains or [])),
        "timeout": float(timeout),
    }


def _tested(check: Check) -> bool:
    """Say whether a test gate's numbers show that at least one test ran."""
    m = check.metrics
    try:
        ran = int(m.get("tests", 0)) - int(m.get("skipped", 0))
        return ran - int(m.get("collection_errors", 0)) > 0
    except (TypeError, ValueError):
        return False


def _excusable(check: Check, before: dict[str, Any] | None) -> bool:
    """Say whether ``check`` failed at the baseline as it fails now (coverage: no worse).

    A test run in which no test ran (none collected, all skipped, every file failing to
    collect) is never excusable: it says nothing was tested.
    """
    if check.status != "failed" or check.name in NEVER_EXCUSED or before is None:
        return False
    if before.get("status") != "failed":
        return False
    if check.name in TESTED and not _tested(check):
        return False
    if check.name in COVERAGE:
        was, now = (before.get("metrics") or {}).get("percent"), check.metrics.get("percent")
        return was is not None and now is not None and float(now) >= float(was)
    return True


def _stopped(diags: list[Diagnostic], name: str) -> Diagnostic | None:
    """Return the finding that says the sandbox stopped gate ``name``'s command, if any."""
    return next((d for d in diags if d.tool == name and d.rule == "sandbox"), None)


def _unjudged(check: Check, before: Diagnostic, now: Diagnostic) -> Check:
    """Return ``check`` as not run: stopped at the baseline and now, it cannot be judged."""
    if "timed out" in before.message or "timed out" in now.message:
        why = (
            f"{UNJUDGED} the project's command takes longer than the test timeout at the "
            "baseline too (before any task): raise OLDNEW_TEST_TIMEOUT (the Context's "
            "test_timeout), or make the project's tests faster"
        )
    else:
        why = (
            f"{UNJUDGED} the sandbox stopped the project's command at the baseline too "
            f"(before any task: {before.message[:200]}): look at the project's command"
        )
    return replace(check, status="not_run", summary=why, excused="")


def judge(result: ValidationResult, baseline: Baseline | None) -> ValidationResult:
    """Return ``result`` judged against ``baseline``: what failed before is not the task's.

    The judged result's ``diagnostics`` are the new findings only (what the fixer gets), its
    ``excused`` the pre-existing ones; a gate whose findings are all pre-existing (and that
    failed at the baseline too) is marked ``excused`` and no longer fails the result. A gate
    that did not run is never excused. A gate whose command the sandbox stopped at the
    baseline and stops now cannot be judged: it becomes ``not_run``, saying what a person can
    do (its finding is kept with the excused ones, never given to the fixer). Judging a
    judged result again gives the same. Without a recorded baseline nothing is excused.
    """
    if baseline is None or baseline.status != "recorded":
        return result
    left = Counter(baseline.identities)
    every = [*result.diagnostics, *result.excused]
    checks = {c.name: replace(c, excused="") for c in result.checks}
    unjudged: set[str] = set()
    for name, check in checks.items():
        before = _stopped(baseline.findings, name)
        now = _stopped(every, name)
        if before is None or now is None:
            continue
        if check.status == "failed":
            checks[name] = _unjudged(check, before, now)
        if checks[name].status == "not_run" and checks[name].summary.startswith(UNJUDGED):
            unjudged.add(name)
    excusable = {n for n, c in checks.items() if _excusable(c, baseline.checks.get(n))}
    new: list[Diagnostic] = []
    old: list[Diagnostic] = []
    for diag in every:
        key = identity(diag)
        if diag.tool in unjudged and diag.rule == "sandbox":
            old.append(diag)  # the baseline's timeout again: a person's, never the fixer's
        elif diag.tool in excusable and diag.rule not in UNTRUSTED and left[key] > 0:
            left[key] -= 1
            old.append(diag)
        else:
            new.append(diag)
    fresh = {d.tool for d in new}
    where = f"see {baseline.evidence}" if baseline.evidence else "see the baseline"
    for name in sorted(excusable - fresh):
        mine = [d for d in old if d.tool == name]
        found = f"its {len(mine)} findings were all there" if mine else "it found nothing new"
        if mine and all(d.file in (".", "") for d in mine):
            # One finding for a whole command (its exit code): a new failure behind it is
            # invisible here; its output is in the evidence.
            found += " (it reports the command as a whole: compare its output in the evidence)"
        checks[name].excused = f"failing before this run: {found} ({where})"
    return replace(
        result,
        checks=[checks[c.name] for c in result.checks],
        diagnostics=new,
        excused=old,
        baseline=baseline.evidence or "baseline",
    )
