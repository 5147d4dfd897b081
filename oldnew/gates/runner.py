"""Run a profile's gates on a project, cheap to expensive, in one sandboxed copy.

A gate whose prerequisite did not pass is not run (the tests cannot pass while the code does not
parse or its imports do not resolve), and says so; a gate that crashes is "not run" with the
error, never "passed". On an existing repository, a prerequisite whose failure was all there
before the run (``Proceed``: the baseline says so) holds nothing back: the gates behind it run,
or one broken file the project already had would keep every task from being tested.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import time
import traceback
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from oldnew.acceptance import SUITE_DIR
from oldnew.errors import WorkspaceError
from oldnew.gates import acceptance as acceptance_gate
from oldnew.gates import audit, browser, js, lint, project, pytests, python, regression
from oldnew.gates import web as web_gates
from oldnew.gates.acceptance import AcceptanceSuite
from oldnew.gates.common import (
    GateRun,
    Outcome,
    gate_complexity,
    gate_links,
    gate_secrets,
    tool_version,
)
from oldnew.gates.model import Check, Diagnostic, ValidationResult, not_run
from oldnew.gates.mutation import gate_mutation
from oldnew.gates.profiles import TASK_GATES, Profile, resolve_profile
from oldnew.gates.regression import TaskChange
from oldnew.repomap.index import blob_id, listing
from oldnew.sandbox import Limits, ProjectEnv, Sandbox, SandboxError, project_files
from oldnew.web import toolchain
from oldnew.web.targets import WebTargets


@dataclass(frozen=True)
class Gate:
    """A gate: its function, the toolchain it belongs to, the gates it needs passed first."""

    name: str
    toolchain: str
    """'python', 'typescript', 'web' (a project that declares how it starts), or 'any'."""
    check: Callable[[GateRun], Outcome]
    requires: tuple[str, ...] = ()
    strict: tuple[str, ...] = ()
    """Prerequisites that must pass outright: their failing before the run is no excuse (a
    failing suite kills every mutant, so mutation proves nothing behind one)."""


Proceed = Callable[[Check, list[Diagnostic]], bool]
GateProgress = Callable[[str, str], None]
"""Hears a gate's name and "started", then its name and its status."""
"""Says whether a failed prerequisite (its check and findings) holds no gate back: its failure
is wholly pre-existing. A gate that did not run always holds the gates behind it back."""


GATES = {
    g.name: g
    for g in (
        Gate("links", "any", gate_links),
        Gate("syntax", "python", python.gate_syntax),
        Gate("imports", "python", python.gate_imports, ("syntax",)),
        Gate("secrets", "any", gate_secrets),
        Gate("ruff", "python", lint.gate_ruff, ("syntax",)),
        Gate("ruff-format", "python", lint.gate_ruff_format, ("syntax",)),
        Gate("complexity", "any", gate_complexity, ("syntax",)),
        Gate("bandit", "python", lint.gate_bandit, ("syntax",)),
        Gate("mypy", "python", lint.gate_mypy, ("syntax", "imports")),
        Gate("pytest", "python", pytests.gate_pytest, ("syntax", "imports")),
        Gate("coverage", "python", pytests.gate_coverage, ("pytest",)),
        Gate("mutation", "python", gate_mutation, ("pytest",), strict=("pytest",)),
        # A bug fix's, whatever its toolchain: a JavaScript fix is told it was not checked.
        Gate(regression.NAME, "any", regression.gate_regression, ("pytest",)),
        Gate(project.NAME, "any", project.gate_project_tests),
        Gate("audit", "python", audit.gate_audit),
        Gate("tsc", "typescript", js.gate_tsc),
        Gate("eslint", "typescript", js.gate_eslint),
        Gate("vitest", "typescript", js.gate_vitest),
        Gate("js-coverage", "typescript", js.gate_js_coverage, ("vitest",)),
        Gate("npm-audit", "typescript", js.gate_npm_audit),
        Gate("web-build", "web", web_gates.gate_web_build),
        Gate("web-start", "web", web_gates.gate_web_start),
        Gate("e2e", "web", browser.gate_e2e, ("web-start",)),
        Gate("axe", "web", browser.gate_axe, ("web-start",)),
        Gate("screenshots", "web", browser.gate_screenshots, ("web-start",)),
        Gate("lighthouse", "web", browser.gate_lighthouse, ("web-start",)),
        Gate("load", "web", browser.gate_load, ("web-start",)),
        # The tester's suite, from main: only where asked (``validate_tree(acceptance=...)``).
        Gate(acceptance_gate.NAME, "python", acceptance_gate.gate_acceptance),
    )
}
"""Every gate. The web ones share one sandboxed run of :mod:`oldnew.web.driver` (the first to
ask runs it); the browser gates wait for ``web-start``, so an app that did not come up runs no
browser gate, and says so."""


PARALLEL_GATES = max(2, min(4, os.cpu_count() or 2))


def run_all(
    names: list[str],
    run: GateRun,
    proceed: Proceed | None = None,
    on_gate: GateProgress | None = None,
) -> dict[str, Outcome]:
    """Run the gates, each as soon as the gates it requires have finished.

    Gates start in the profile's order (cheap first), up to PARALLEL_GATES at once; a gate
    whose prerequisite did not pass is skipped (no tests while the code does not parse),
    unless ``proceed`` says that prerequisite's failure is wholly pre-existing.
    ``on_gate(name, "started" or its status)`` hears each gate start and end.
    """
    pending = list(names)
    running: dict[Future[Outcome], str] = {}
    outcomes: dict[str, Outcome] = {}
    with ThreadPoolExecutor(max_workers=PARALLEL_GATES) as pool:
        while pending or running:
            for name in list(pending):
                needs = [r for r in GATES[name].requires if r in names]
                if all(r in outcomes for r in needs):
                    pending.remove(name)
                    gate = GATES[name]
                    running[pool.submit(_run_gate, gate, run, outcomes, proceed)] = name
                    if on_gate is not None:
                        on_gate(name, "started")
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                name = running.pop(future)
                outcomes[name] = future.result()
                if on_gate is not None:
                    on_gate(name, outcomes[name][0].status)
    return outcomes


def fingerprint(tree: Path, files: list[str]) -> str:
    """Return a hash of the files' paths and contents (symlinks by their target)."""
    digest = hashlib.sha256()
    for name in sorted(files):
        path = tree / name
        if path.is_symlink():
            content = os.readlink(path).encode()
        else:
            content = hashlib.sha256(path.read_bytes()).digest()
        digest.update(os.fsencode(name) + b"\0" + content + b"\0")
    return digest.hexdigest()


def files_key(tree: Path) -> str:
    """Return a hash of the project's files as git would commit them, by git blob id.

    The same files as :func:`fingerprint` (tracked, and new ones git does not ignore, as
    :func:`oldnew.sandbox.project_files` lists them), each by its path and blob id: a clean
    tracked file's from the index (``git ls-files -s``), only the files changed or new since
    (``git status``) are read and hashed here. Equal content, equal key: a task's worktree
    and main after its commit hash alike. (A file a git filter changes on its way into the
    index hashes otherwise staged than unstaged: that misses a reuse, never fakes one.)
    """
    listed = _listed(tree)
    if listed is None:  # no git here (a plain folder), or names git escapes: read them all
        return fingerprint(tree, project_files(tree))
    blobs, changed, deleted = listed
    digest = hashlib.sha256(b"blobs\0")
    for name in sorted({*blobs, *changed} - deleted):
        blob = _blob(tree / name) if name in changed or name not in blobs else blobs[name]
        digest.update(os.fsencode(name) + b"\0" + blob.encode() + b"\0")
    return digest.hexdigest()


def _listed(tree: Path) -> tuple[dict[str, str], set[str], set[str]] | None:
    """Return git's blobs, changed and deleted files of ``tree``; None where git cannot tell."""
    if not (tree / ".git").exists():
        return None
    try:
        blobs, changed, deleted, odd = listing(tree)
    except WorkspaceError:
        return None
    return None if odd.keys() & changed else (blobs, changed, deleted)


def _blob(path: Path) -> str:
    """Return git's blob id of a file as it is on disk (a symlink: of its target)."""
    try:
        if path.is_symlink():
            return blob_id(os.fsencode(os.readlink(path)))
        return blob_id(path.read_bytes())
    except OSError:
        return "unreadable"


TOOLS = ("ruff", "mypy", "pytest", "pytest-cov", "bandit", "detect-secrets", "lizard")


@functools.cache
def tool_versions() -> tuple[str, ...]:
    """Return the versions of oldnew's gate tools (read once a process: they do not change)."""
    return tuple(tool_version(t) for t in TOOLS)


def toolchains_of(tree: Path, toolchains: list[str] | None) -> list[str]:
    """Return the toolchains a validation runs: those named, and those the files show.

    ``web`` when the project declares how it starts (package.json scripts.start, [tool.oldnew]
    start), or when it is named (the scope's stack is a web one: then a missing start is the
    coder's to write).
    """
    chains = set(toolchains or []) | set(js.detect_toolchains(tree))
    if web_gates.web_toolchain(tree):
        chains.add(web_gates.TOOLCHAIN)
    return sorted(chains)


def reuse_key(
    tree: Path,
    profile: Profile,
    toolchains: list[str] | None,
    timeout: float,
    env: ProjectEnv | None = None,
    *,
    milestone: bool = False,
    targets: WebTargets | None = None,
    change: TaskChange | None = None,
    acceptance: AcceptanceSuite | None = None,
) -> str:
    """Return what a validation of ``tree`` depends on, hashed.

    That is its files, the profile, the toolchains, the timeout, the tools' versions and the
    project's environment (default: oldnew's own, as :func:`validate_tree`'s); for a web
    project, whether the milestone set runs, on which pages and endpoints, with which web tools;
    for a bug fix, the change its regression gate undoes; with the acceptance gate, the
    suite's files it runs (main's, not the tree's) and for which requirements.
    """
    chains = toolchains_of(tree, toolchains)
    parts: dict[str, object] = {
        "files": files_key(tree),
        "profile": profile.to_dict(),
        "toolchains": chains,
        "timeout": timeout,
        "tools": list(tool_versions()),
        "env": (env or ProjectEnv.host(tree)).key(),
    }
    if change is not None:
        parts["regression"] = change.key()
    if acceptance is not None:
        parts["acceptance"] = acceptance.key()
    if web_gates.TOOLCHAIN in chains:
        parts["web"] = {
            "milestone": milestone,
            "targets": (targets or WebTargets()).to_dict() if milestone else None,
            "tools": toolchain.versions() if milestone else None,
        }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def sandbox_limits(timeout: float) -> Limits:
    """Return the limits of a validation whose commands may each run ``timeout`` seconds."""
    return Limits(cpu_seconds=int(timeout) + 5)


def _holds_back(
    name: str, gate: Gate, outcomes: dict[str, Outcome], proceed: Proceed | None
) -> Outcome | None:
    """Return ``gate``'s not-run outcome when prerequisite ``name`` keeps it back, else None."""
    if name not in outcomes or outcomes[name][0].status == "passed":
        return None
    check, diags = outcomes[name]
    if proceed is None or check.status != "failed" or not proceed(check, diags):
        why = f"skipped: {name} did not pass, and this gate cannot pass before it does"
        # Behind a gate that is optional where it did not run, this one is optional too.
        optional = check.status == "not_run" and not check.required
        return not_run(gate.name, why, required=not optional), []
    if name in gate.strict:
        # No change of a task's makes it run, nor should every task ask a person about the
        # repository's own failure: it is not run for this run, reported, never passed.
        why = (
            f"not run in this run: {name} fails before this run too, and {gate.name} needs it "
            f"to pass outright; it is reported as not run, never counted as passed: make the "
            f"project's own {name} pass to have it run"
        )
        return not_run(gate.name, why, required=False), []
    return None


def _run_gate(
    gate: Gate, run: GateRun, outcomes: dict[str, Outcome], proceed: Proceed | None
) -> Outcome:
    for name in gate.requires:
        held = _holds_back(name, gate, outcomes, proceed)
        if held is not None:
            return held
    try:
        return gate.check(run)
    except Exception as exc:  # noqa: BLE001 - a crashed gate is reported, never passed
        where = traceback.format_exc().strip().splitlines()[-3:]
        reason = f"the gate crashed (a bug in oldnew): {type(exc).__name__}: {exc}; {where}"
        return not_run(gate.name, reason[:800]), []


def validate_tree(
    tree: Path,
    *,
    timeout: float,
    quality: str = "default",
    toolchains: list[str] | None = None,
    profile: Profile | None = None,
    coverage_min: float | str | None = None,
    complexity_max: int | str | None = None,
    env: ProjectEnv | None = None,
    limits: Limits | None = None,
    use_bwrap: bool = True,
    drop_uid: bool = True,
    scratch_root: Path | None = None,
    proceed: Proceed | None = None,
    milestone: bool = False,
    web: WebTargets | None = None,
    evidence_dir: Path | None = None,
    change: TaskChange | None = None,
    acceptance: AcceptanceSuite | None = None,
    on_gate: GateProgress | None = None,
) -> ValidationResult:
    """Validate the project in ``tree`` with the gates of a quality profile.

    ``toolchains`` (from the plan) adds to what the files show (package.json, tsconfig.json,
    .py files). ``env`` is the environment the project's code runs with (default: oldnew's
    own, with the project's node_modules). Every command runs in a sandbox on a copy of the
    files git would commit; ``limits``, ``use_bwrap``, ``drop_uid`` and ``scratch_root`` tune
    it (tests use them). ``proceed`` lets the gates behind a prerequisite whose failure is
    wholly pre-existing run (a run on an existing repository: ``gates.baseline``).

    ``milestone=True`` adds the profile's milestone gates (the app started, browser tests,
    axe, screenshots, Lighthouse, load) for a web project, on ``web``'s pages and endpoints
    (default: the page ``/``). ``evidence_dir`` is where their files (screenshots, Lighthouse
    reports, logs) are copied, made afresh; the gates' metrics name them there by absolute
    path. None keeps no file, only the numbers.

    ``change`` is a bug fix's change (``regression.task_change``): the ``regression`` gate
    then runs its new tests on the tree before the fix too, where one must fail.

    ``acceptance`` adds the acceptance gate (``gates.acceptance``): the tester's suite, as
    given (main's), for its requirements. Every sandbox copy of ``tree`` the gates make leaves
    the suite's folder out (:data:`oldnew.acceptance.SUITE_DIR`): no other gate runs, imports,
    measures or lints the tester's files, and a task's own change to them judges nothing.
    ``on_gate`` hears each gate start and end (``oldnew verify`` shows them as they run).
    """
    profile = profile or resolve_profile(
        quality, coverage_min=coverage_min, complexity_max=complexity_max
    )
    web_targets = web or WebTargets()
    start = time.monotonic()
    tree = Path(tree).resolve()
    chains = toolchains_of(tree, toolchains)
    result = ValidationResult(quality=profile.to_dict(), toolchains=chains)
    limits = limits or sandbox_limits(timeout)

    new_sandbox = functools.partial(
        Sandbox.open,
        tree,
        env=env or ProjectEnv.host(tree),
        limits=limits,
        use_bwrap=use_bwrap,
        drop_uid=drop_uid,
        scratch_root=scratch_root,
        exclude=(SUITE_DIR,),
    )

    try:
        with new_sandbox() as box:
            result.sandbox = box.layer_dicts()
            result.fingerprint = fingerprint(box.tree, box.files)
            run = GateRun(box, profile, timeout, chains, new_sandbox)
            wanted = [*profile.gates, *(profile.milestone_gates if milestone else ())]
            if change is not None:
                wanted += TASK_GATES["regression"]
                run.artifacts[regression.CHANGE] = change
            if acceptance is not None:
                wanted.append(acceptance_gate.NAME)
                run.artifacts[acceptance_gate.SUITE] = acceptance
            names = [n for n in wanted if GATES[n].toolchain in (*chains, "any")]
            settings = web_gates.WebSettings(
                milestone, web_targets, gates=tuple(names), evidence_dir=evidence_dir
            )
            run.artifacts[web_gates.SETTINGS] = settings
            outcomes = run_all(names, run, proceed, on_gate)
            for name in names:
                result.checks.append(outcomes[name][0])
                result.diagnostics += outcomes[name][1]
    except SandboxError as exc:
        result.checks.append(Check("sandbox", "failed", [], None, 0.0, str(exc)))
        result.diagnostics.append(Diagnostic("sandbox", ".", 0, str(exc)))
    result.duration_s = time.monotonic() - start
    return result
