"""``oldnew verify``: re-run the gates on the run's branch and check every claim of the report.

A claim holds when its evidence file exists and shows it, its commit is on the run's branch
(``main`` of a new project, ``oldnew/<run id>`` on a repository), and a fresh run of the same
gates (same profile, same toolchains) on the files of that branch's tip finds the same: each
gate's status and its numbers (tests, coverage, mutants killed, findings). The commit it
checks is the one it names: the branch's tip, never what a checkout happens to hold.
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from oldnew.deps import builds, python
from oldnew.deps.envs import project_env
from oldnew.deps.errors import DependencyError
from oldnew.deps.ledger import Ledger
from oldnew.deps.manifest import PY_LOCK, python_dependencies, uses
from oldnew.deps.settings import DepSettings, default_cache
from oldnew.errors import WorkspaceError
from oldnew.gates.acceptance import AcceptanceSuite
from oldnew.gates.baseline import Baseline, judge
from oldnew.gates.model import Check, ValidationResult
from oldnew.gates.profiles import Profile
from oldnew.gates.runner import GateProgress, validate_tree
from oldnew.safegit import run_git
from oldnew.sandbox import ProjectEnv
from oldnew.sandbox.files import read_project_text
from oldnew.web.summary import evidence_files, web_evidence
from oldnew.web.targets import WebTargets
from oldnew.workspace import Workspace

COVERAGE_TOLERANCE = 0.5
_COUNTED = {
    "pytest": ("tests", "failures", "errors", "skipped"),
    "mutation": ("mutants", "killed"),
    "complexity": ("functions", "max_ccn"),
    "e2e": ("passed", "failed"),
    "axe": ("blocking",),
}
"""Numbers a re-run must find again. Lighthouse scores and load latencies vary from run to run:
for them the re-run must reach the same verdict against the same thresholds (the status)."""


@dataclass
class Verification:
    """What ``oldnew verify`` found."""

    workspace: str
    head: str
    differences: list[str] = field(default_factory=list)
    confirmed: list[str] = field(default_factory=list)
    not_run: list[str] = field(default_factory=list)
    """Gates the re-run could not run, each with why (an audit whose service is away)."""
    recorded: dict[str, Any] = field(default_factory=dict)
    rerun: dict[str, Any] = field(default_factory=dict)
    evidence: str = ""

    @property
    def matches(self) -> bool:
        """True when the re-run confirms every claim."""
        return not self.differences

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "workspace": self.workspace,
            "head": self.head,
            "matches": self.matches,
            "differences": self.differences,
            "confirmed": self.confirmed,
            "not_run": self.not_run,
            "evidence": self.evidence,
        }


def export_head(ws: Workspace, dest: Path, commit: str | None = None) -> Path:
    """Write the files of the run's branch tip (or ``commit``) to ``dest``.

    Nothing untracked, nothing uncommitted: the commit ``oldnew verify`` names
    (``ws.head()``), never what a checkout happens to hold.
    """
    return export_commit(ws, commit or ws.head(), dest)


_EXPORT_OPTIONS = ("-c", "core.sparseCheckout=false", "-c", "index.sparse=false")
"""A sparse checkout of the person's must not leave files out of the export."""


def export_commit(ws: Workspace, commit: str, dest: Path) -> Path:
    """Write the files of ``commit`` (nothing untracked, nothing uncommitted) to ``dest``.

    They are written as a checkout writes them (a task's worktree is one): every tracked
    file, executables and symlinks kept, the repository's end-of-line and filter attributes
    applied. Not through ``git archive``, whose ``export-ignore`` and ``export-subst`` would
    leave files out or rewrite them: the gates must see the tree the tasks see. A temporary
    index of its own is read from the commit and checked out under ``dest``; the
    repository's index and checkout are never touched.

    Raises:
        WorkspaceError: git cannot write out that commit (it is not in the repository).

    """
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="oldnew-export-") as tmp:
        index = Path(tmp) / "index"
        steps = (
            ("read-tree", f"{commit}^{{tree}}"),
            ("checkout-index", "--all", "--force", f"--prefix={dest.resolve()}/"),
        )
        for step in steps:
            options = (*ws.git_options, *_EXPORT_OPTIONS)
            proc = run_git(*step, cwd=ws.root, options=options, index=index)
            if proc.returncode != 0:
                raise WorkspaceError(
                    f"cannot write out commit {commit} (git {step[0]}): {proc.stderr.strip()}"
                )
    return dest


def _load(ws: Workspace, rel: str | None) -> dict[str, Any] | None:
    if not rel:
        return None
    path = ws.root / rel
    if not path.is_file():
        return None
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _is_ancestor(ws: Workspace, commit: str, head: str) -> bool:
    proc = run_git("merge-base", "--is-ancestor", commit, head, cwd=ws.root)
    return proc.returncode == 0


def _check_claims(ws: Workspace, report: dict[str, Any], head: str, out: Verification) -> None:
    if report.get("head") != head:
        out.differences.append(
            f"{ws.branch} moved since the report: it was made at "
            f"{str(report.get('head'))[:12]}, {ws.branch} is at {head[:12]}"
        )
    for item in report.get("delivered", []):
        task, commit = item["task"], item.get("commit") or ""
        if not commit or not _is_ancestor(ws, commit, head):
            out.differences.append(f"{task}: its commit {commit[:12] or '-'} is not on {ws.branch}")
            continue
        evidence = _load(ws, item.get("evidence"))
        if evidence is None:
            out.differences.append(f"{task}: its evidence {item.get('evidence')} is missing")
        elif not evidence.get("passed"):
            out.differences.append(f"{task}: its evidence {item['evidence']} shows failing gates")
        else:
            out.confirmed.append(f"{task}: commit {commit[:12]} on {ws.branch}, evidence passed")


def _missing_web_files(ws: Workspace, report: dict[str, Any]) -> list[str]:
    """Return a difference for each screenshot or Lighthouse report the report shows but lacks."""
    return [
        f"the report shows {path}, but the file is missing"
        for path in evidence_files(report.get("web") or {})
        if not (ws.root / path).is_file()
    ]


def _numbers(check: dict[str, Any]) -> dict[str, Any]:
    metrics = check.get("metrics") or {}
    return {k: metrics.get(k) for k in _COUNTED.get(check["name"], ())}


def compare(recorded: dict[str, Any], rerun: ValidationResult, branch: str = "main") -> list[str]:
    """Return how a re-run (of ``branch``'s tip) differs from recorded evidence, gate by gate."""
    diffs = []
    if recorded.get("fingerprint") != rerun.fingerprint:
        diffs.append(f"the files of {branch} differ from the files the evidence was made for")
    before = {c["name"]: c for c in recorded.get("checks", [])}
    after = {c.name: c for c in rerun.checks}
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if old is None or new is None:
            diffs.append(f"{name}: {'not in the evidence' if old is None else 'not re-run'}")
            continue
        if old["status"] != new.status:
            diffs.append(
                f"{name}: the evidence says {old['status']} ({old['summary'][:120]}), the re-run "
                f"says {new.status} ({new.summary[:120]})"
            )
            continue
        if name in ("coverage", "js-coverage"):
            was, now = (old.get("metrics") or {}).get("percent"), new.metrics.get("percent")
            if was is not None and now is not None and abs(was - now) > COVERAGE_TOLERANCE:
                diffs.append(f"{name}: the evidence says {was}%, the re-run measures {now}%")
            continue
        numbers = {k: new.metrics.get(k) for k in _COUNTED.get(name, ())}
        if _numbers(old) != numbers:
            diffs.append(f"{name}: the evidence says {_numbers(old)}, the re-run {numbers}")
        # Pre-existing findings (excused by the baseline) count too: the gate found them.
        found = [*recorded.get("diagnostics", []), *recorded.get("excused", [])]
        old_findings = sum(1 for d in found if d["tool"] == name)
        new_findings = sum(1 for d in [*rerun.diagnostics, *rerun.excused] if d.tool == name)
        if old_findings != new_findings:
            diffs.append(
                f"{name}: {old_findings} findings in the evidence, {new_findings} in the re-run"
            )
    return diffs


def locked_env(tree: Path, deps: DepSettings) -> ProjectEnv:
    """Return the environment ``tree``'s locks describe, once they match their manifests.

    Raises:
        DependencyError: a lock is missing or does not match, or its packages cannot be had.

    """
    if uses(tree, "python"):
        python.check_lock(tree, deps)
    return project_env(tree, deps)


def not_run_line(check: Check) -> str:
    """Return ``gate (optional): why`` for a gate that did not run."""
    optional = "" if check.required else " (optional)"
    return f"{check.name}{optional}: {' '.join(check.summary.split())}"


def rebuilt(ws: Workspace, tree: Path, deps: DepSettings) -> DepSettings:
    """Build again (in the sandbox, offline) what a person allowed a source build of.

    Returns ``deps`` offering those wheels to uv, as the run's dependencies step did.
    """
    ledger = Ledger(ws.meta).read()
    allowed = [
        d
        for d in python_dependencies(tree)
        if ledger.get(d.key, {}).get("decision") == "source_build"
    ]
    if not allowed:
        return deps
    lock = read_project_text(tree, PY_LOCK) or ""
    elsewhere = sorted(
        set(re.findall(r'registry = "([^"]+\.html)"', lock))
        - {str(builds.page(deps, d.name)) for d in allowed}
    )
    if elsewhere:
        names = ", ".join(d.name for d in allowed)
        raise DependencyError(
            "source_only",
            f"{names} were built from source where the run went; its lock finds their wheels "
            f"at {', '.join(elsewhere)}, not in this cache ({deps.cache}): verify there "
            "(without --fresh), or serve those wheels from your index and lock again",
        )
    made = builds.build_allowed(allowed, deps)
    return replace(deps, find_links=builds.pages([b.name for b in made], deps))


def verify_workspace(
    root: Path | str,
    *,
    timeout: float = 120.0,
    env: ProjectEnv | None = None,
    deps: DepSettings | None = None,
    on_gate: GateProgress | None = None,
) -> Verification:
    """Re-run the gates of the final evidence on the run's branch and check the report's claims.

    The commit re-run is the branch's tip (``ws.head()``), the one the result names.
    ``env`` is the environment the project's code runs with; by default the one its lock
    describes, built from the lock with ``deps`` (the lock checked against its manifest
    first), so the re-run does not depend on what this machine has installed.
    ``on_gate`` hears each gate of the re-run start and end.

    Raises:
        WorkspaceError: not a run's workspace, or a run without a report yet.

    """
    ws = Workspace.open(root)
    report_path = ws.meta / "report.json"
    if not report_path.is_file():
        raise WorkspaceError(
            f"{ws.root} has no report yet (.oldnew/report.json): finish the run first "
            f"('oldnew status --workspace {ws.root}')"
        )
    report: dict[str, Any] = json.loads(report_path.read_text(encoding="utf-8"))
    head = ws.head()
    out = Verification(workspace=str(ws.root), head=head)
    _check_claims(ws, report, head, out)
    final = report.get("final_validation") or {}
    recorded = _load(ws, final.get("evidence"))
    if recorded is None:
        out.differences.append(
            f"the final validation's evidence ({final.get('evidence') or 'none'}) is missing"
        )
        return out
    out.recorded = recorded
    if recorded.get("head") and recorded["head"] != report.get("head"):
        out.differences.append("the final evidence was made for another commit than the report")
    profile = Profile(**{**recorded["quality"], "gates": tuple(recorded["quality"]["gates"])})
    with tempfile.TemporaryDirectory(prefix="oldnew-verify-") as tmp:
        tree = export_head(ws, Path(tmp) / "tip", head)
        try:
            settings = rebuilt(ws, tree, deps or DepSettings(cache=default_cache()))
            env = env or locked_env(tree, settings)
        except DependencyError as exc:
            out.differences.append(f"the project's environment cannot be built: {exc}")
            return out
        # What failed where the run started is not the run's: judged as the delivery judged
        # it, the gates behind a wholly pre-existing failure run as they ran then.
        baseline = Baseline.load(ws)
        targets = recorded.get("targets")
        # The tester's suite judged the delivery too: the re-run runs main's suite again.
        wanted = recorded.get("acceptance") or []
        suite = AcceptanceSuite.on_main(ws, list(wanted)) if wanted else None
        result = validate_tree(
            tree,
            timeout=timeout,
            profile=profile,
            toolchains=recorded.get("toolchains"),
            env=env,
            proceed=baseline.excuses if baseline is not None else None,  # it checks "recorded"
            # A web app's delivery ran the milestone gates: the re-run runs them again.
            milestone=targets is not None,
            web=WebTargets.from_dict(targets) if targets is not None else None,
            evidence_dir=web_evidence(ws, "verify") if targets is not None else None,
            acceptance=suite,
            on_gate=on_gate,
        )
    result = judge(result, baseline)
    out.rerun = result.to_dict()
    out.differences += _missing_web_files(ws, report)
    out.differences += compare(recorded, result, ws.branch)
    claims_delivered = report.get("status") in ("delivered", "delivered_with_limitations")
    if claims_delivered != result.passed:
        out.differences.append(
            f"the report says {report.get('status')}, but the re-run's gates "
            f"{'pass' if result.passed else 'do not pass'}"
        )
    if not out.differences:
        passed = [c.name for c in result.checks if c.status == "passed"]
        out.confirmed.append(f"{ws.branch} {head[:12]}: gates {', '.join(passed)} passed again")
        if result.excused and baseline is not None:
            out.confirmed.append(
                f"{len(result.excused)} findings failing before this run (baseline "
                f"{baseline.evidence}, commit {str(baseline.commit)[:12]}) are still there and "
                "still excused: " + ", ".join(c.name for c in result.checks if c.excused)
            )
    skipped = [c for c in result.checks if c.status == "not_run"]
    # A gate that did not run is shown with why (one whose status changed is a difference).
    out.not_run = [not_run_line(c) for c in skipped]
    path = ws.write_json(
        "evidence/verify.json",
        {"head": head, "differences": out.differences, **result.to_dict()},
    )
    out.evidence = str(path.relative_to(ws.root))
    return out
