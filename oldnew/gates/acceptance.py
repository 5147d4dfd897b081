"""The acceptance gate: the tester's suite, as main holds it, run on the project.

It runs only where it is asked for (``validate_tree(..., acceptance=suite)``: at a milestone,
on a milestone's fix task), with the files of :class:`AcceptanceSuite`, read from main
(``acceptance.store.suite_on_main``), never the validated tree's own copy of the suite's folder:
every sandbox copy the gates make leaves that folder out, so a task's change to it judges
nothing. The tests run through the shared runner (``acceptance.run``) in a copy of their own,
with the project's environment.

Findings: one per test that did not pass, on the test's file, ``<criterion> <test>: <why>``.
A test that failed is the code's (rule ``failed``); one that could not run is the tester's
(rule ``tester``), listed apart in the check's metrics (``tester``); both fail the check. The
metrics carry every test's result (``results``: ``file::test`` -> passed, failed, error,
not_run) and why each did not pass (``messages``), for the milestone to record.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from oldnew.acceptance import SUITE_DIR, slug, suite_file
from oldnew.acceptance.run import SuiteRun, run_tests
from oldnew.acceptance.store import suite_on_main
from oldnew.gates.common import GateRun, Outcome
from oldnew.gates.model import Check, CheckStatus, Diagnostic, not_run
from oldnew.gates.python import defined_tests
from oldnew.workspace import Workspace

NAME = "acceptance"
SUITE = "acceptance_suite"
"""The key of :class:`AcceptanceSuite` in ``GateRun.artifacts``."""


@dataclass(frozen=True)
class AcceptanceSuite:
    """The acceptance tests a validation runs: main's suite, and whose requirements to run."""

    files: Mapping[str, str]
    """Every file of the suite's folder on main: path -> text."""
    requirements: tuple[str, ...]
    """The requirements whose files run (``acceptance.suite_file``)."""
    criteria: Mapping[str, str] = field(default_factory=dict)
    """Test name -> criterion id, as the run's record has them; else read from the name."""

    @classmethod
    def on_main(
        cls, ws: Workspace, requirements: list[str], record: Mapping[str, object] | None = None
    ) -> AcceptanceSuite | None:
        """Return main's suite for ``requirements`` (blocking), or None when none has a file.

        ``record`` is the run's ``RunState.acceptance`` (its per-requirement tests name the
        criteria); without it, a test's criterion is read from its name.
        """
        files = suite_on_main(ws)
        wanted = tuple(sorted(r for r in set(requirements) if suite_file(r) in files))
        if not wanted:
            return None
        criteria: dict[str, str] = {}
        reqs = (record or {}).get("requirements") or {}
        for rid in wanted:
            tests = (reqs.get(rid) or {}).get("tests") if isinstance(reqs, dict) else None
            criteria |= {str(k): str(v) for k, v in (tests or {}).items()}
        return cls(dict(files), wanted, criteria)

    def run_files(self) -> dict[str, str]:
        """Return the files the run needs: the requirements' test files and every helper.

        A helper is a suite file that is not some requirement's test file (a ``conftest.py``,
        data the tests read): the other requirements' test files are left out.
        """
        wanted = {suite_file(r) for r in self.requirements}
        return {
            p: t
            for p, t in self.files.items()
            if p in wanted or not p.rsplit("/", 1)[-1].startswith("test_")
        }

    def requirement_of(self, path: str) -> str:
        """Return the requirement whose test file ``path`` is, or ""."""
        return next((r for r in self.requirements if suite_file(r) == path), "")

    def criterion(self, path: str, test: str) -> str:
        """Return the criterion a test of ``path`` checks (by the record, else its name)."""
        base = test.split("[", 1)[0].split("::")[-1]
        if base in self.criteria:
            return self.criteria[base]
        rid = self.requirement_of(path)
        found = re.match(rf"test_{slug(rid)}_(\d+)_", base) if rid else None
        return f"{rid}.{found[1]}" if found else rid

    def key(self) -> str:
        """Return a hash of what the gate runs: the requirements and the files' contents."""
        data = {"requirements": list(self.requirements), "files": self.run_files()}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def _line(suite: AcceptanceSuite, path: str, test: str) -> int:
    """Return the line a test is defined on (0 when it is not found)."""
    base = test.split("[", 1)[0]
    return defined_tests(suite.files.get(path, "")).get(base, (0, ""))[0]


def findings(
    suite: AcceptanceSuite, run: SuiteRun
) -> tuple[list[Diagnostic], list[str], list[str]]:
    """Return one finding per test that did not pass, then the code's tests, the tester's."""
    diags: list[Diagnostic] = []
    code: list[str] = []
    tester: list[str] = []
    for key, result in sorted(run.results.items()):
        if result == "passed":
            continue
        path, _, test = key.partition("::")
        why = run.messages.get(key) or run.error or "it did not run"
        own = result == "error" or (result == "not_run" and why.startswith("skipped"))
        (tester if own else code).append(key)
        if own:
            why = f"the tester's test does not run: {why}"
        elif result == "not_run":
            why = f"it did not run: {why}"
        cid = suite.criterion(path, test) if test else suite.requirement_of(path)
        name = test or "(the whole file)"
        rule = "tester" if own else "failed"
        diags.append(Diagnostic(NAME, path, _line(suite, path, test), f"{cid} {name}: {why}", rule))
    return diags, code, tester


def gate_acceptance(run: GateRun) -> Outcome:
    """Run the acceptance suite's tests for the requirements asked, in a copy of their own."""
    suite: AcceptanceSuite | None = run.artifacts.get(SUITE)
    if suite is None:
        return not_run(NAME, "no acceptance suite was given to run", required=False), []
    with run.new_sandbox() as box:
        result = run_tests(box, suite.run_files(), timeout=run.timeout)
    diags, code, tester = findings(suite, result)
    results = dict(sorted(result.results.items()))
    passed = sum(v == "passed" for v in results.values())
    status: CheckStatus = "passed" if results and not diags and not result.error else "failed"
    summary = f"{passed} of {len(results)} acceptance tests passed"
    if tester:
        summary += f"; {len(tester)} of the tester's do not run"
    if result.error:
        summary += f"; {result.error}"
    if not results:
        summary = f"no acceptance test in {SUITE_DIR}/ for {', '.join(suite.requirements)}"
        diags = [Diagnostic(NAME, SUITE_DIR, 0, summary, "tester")]
    check = Check(
        NAME,
        status,
        result.command,
        result.exit_code,
        result.seconds,
        summary[:600],
        metrics={
            "results": results,
            "messages": {k: v for k, v in result.messages.items() if results.get(k) != "passed"},
            "failed": code,
            "tester": tester,
            "requirements": list(suite.requirements),
        },
    )
    return check, diags
