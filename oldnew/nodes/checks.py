"""Validating and accepting a task: run the checks, then merge it into main as one commit."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from langgraph.runtime import Runtime

from oldnew.context import Context
from oldnew.deps.envs import lock_all, project_env
from oldnew.deps.errors import DependencyError
from oldnew.deps.manifest import (
    JS_LOCK,
    JS_MANIFEST,
    PY_LOCK,
    PY_MANIFEST,
)
from oldnew.deps.settings import DepSettings
from oldnew.errors import WorkspaceError
from oldnew.evidence import EvidenceIndex
from oldnew.execution.pools import GATES, GIT, offload
from oldnew.execution.queue import Check as QueueCheck
from oldnew.execution.queue import Landed, merge_queue, restore
from oldnew.gates import (
    Check,
    Diagnostic,
    Profile,
    ValidationResult,
    resolve_profile,
    validate_tree,
)
from oldnew.gates.acceptance import NAME as ACCEPTANCE
from oldnew.gates.acceptance import AcceptanceSuite
from oldnew.gates.baseline import Baseline, judge
from oldnew.gates.model import CheckStatus, not_run
from oldnew.gates.regression import TaskChange, task_change
from oldnew.gates.runner import Proceed, reuse_key
from oldnew.graph.state import TaskState
from oldnew.hitl.questions import dependency_blocked_question, task_question, what_task
from oldnew.host import context_of
from oldnew.memory.learning import learn_from_accepted_task
from oldnew.nodes.common import aemit, aopen_workspace, milestone_gate_options
from oldnew.recovery.diagnosis import decide, diagnose, project_modules
from oldnew.sandbox import ProjectEnv
from oldnew.schemas import Question
from oldnew.web.targets import WebTargets
from oldnew.workspace import Workspace

Gates = Callable[..., ValidationResult]
"""What validates a tree, called as :func:`run_gates` is (blocking); a graph is built with
``run_gates`` unless its builder injects another (the scale benchmark's timed stand-in)."""

MAX_DIAGNOSTICS = 25


def record_evidence(ws: Workspace, name: str, result: ValidationResult, **extra: Any) -> str:
    """Write a validation result to ``.oldnew/evidence/<name>.json``; return the relative path.

    The evidence index (``oldnew.evidence``) learns of it first, so no lookup reads every file.
    """
    data = {**extra, **result.to_dict()}
    EvidenceIndex(ws.meta).record(name, data, lambda: ws.write_json(f"evidence/{name}.json", data))
    return str((ws.meta / "evidence" / f"{name}.json").relative_to(ws.root))


def next_evidence_name(ws: Workspace, task_id: str) -> str:
    """Return the name of the task's next evidence file (``T3-04``)."""
    return EvidenceIndex(ws.meta).next_name(task_id)


def _summary(result: ValidationResult) -> str:
    return ", ".join(
        f"{c.name} {c.status}" + (" (before this run)" if c.excused else "") for c in result.checks
    )


def run_gates(
    ctx: Context,
    tree: Path,
    toolchains: list[str] | None = None,
    ws: Workspace | None = None,
    env: ProjectEnv | None = None,
    *,
    proceed: Proceed | None = None,
    milestone: bool = False,
    web: WebTargets | None = None,
    evidence_dir: Path | None = None,
    change: TaskChange | None = None,
    acceptance: AcceptanceSuite | None = None,
) -> ValidationResult:
    """Run the quality gates the run's context asks for on ``tree`` (blocking).

    ``env`` is the environment the project's code runs with; by default the one its lock
    describes (``deps.envs.project_env``: built if this machine has not got it yet). When it
    cannot be had, the result is a ``dependencies`` check that says why: failed when the
    project's files must change (the coder's), not run when a person must act.

    When ``ws`` holds evidence of a passed validation of the very same files with the same
    profile, toolchains and tools (main after the last task's commit is the tree that task
    validated), that result is reused, and says where it came from.

    With ``ws``, the result is judged against the run's baseline (``gates.baseline.judge``):
    what already failed on the commit the run started from fails nothing. Without ``ws``
    (the baseline itself) it is the gates' own verdict. A prerequisite failing with nothing
    but the baseline's findings holds no gate back (``Baseline.excuses``): the tests still run
    behind a syntax error the repository already had. ``proceed`` says the same without a
    workspace (the baseline passes one that lets every gate run: all it finds is there before).

    ``milestone``, ``web`` and ``evidence_dir`` go to :func:`validate_tree`: the milestone
    gate set of a web project, on those pages and endpoints, its files kept in that folder
    (not part of the reuse key: a reused result names the files of the validation it reuses).
    ``change`` is a bug fix's change: the regression gate runs its new tests before the fix.
    ``acceptance`` adds the acceptance gate: the tester's suite, main's, for its requirements.
    It runs on its own after the other gates, which may reuse an earlier validation as they
    would without it; the suite always runs (it is cheap, and the one thing that is new).
    """
    profile = resolve_profile(
        ctx.quality, coverage_min=ctx.coverage_min, complexity_max=ctx.complexity_max
    )
    if env is None:
        try:
            env = project_env(tree, DepSettings.of(ctx))
        except DependencyError as exc:
            return dependency_result(exc)
    # With a suite: the other gates as they would run without it (main after a task's commit
    # reuses that task's validation), then the suite on its own: it is the one thing new.
    base = _gates(
        ctx, profile, tree, toolchains, ws, env, proceed, milestone, web, evidence_dir, change
    )
    if acceptance is None:
        return base
    return _with_suite(ctx, tree, toolchains, env, base, acceptance, profile)


def _gates(
    ctx: Context,
    profile: Profile,
    tree: Path,
    toolchains: list[str] | None,
    ws: Workspace | None,
    env: ProjectEnv,
    proceed: Proceed | None,
    milestone: bool,
    web: WebTargets | None,
    evidence_dir: Path | None,
    change: TaskChange | None,
) -> ValidationResult:
    """Return :func:`run_gates`' result without the acceptance gate (reused when it can be)."""
    key = reuse_key(
        tree,
        profile,
        toolchains,
        ctx.test_timeout,
        env,
        milestone=milestone,
        targets=web,
        change=change,
    )
    result = _passed_before(ws, key) if ws is not None else None
    baseline = Baseline.load(ws) if ws is not None else None
    if baseline is not None and baseline.status == "recorded":
        proceed = baseline.excuses
    if result is None:
        result = validate_tree(
            tree,
            timeout=ctx.test_timeout,
            profile=profile,
            toolchains=toolchains,
            env=env,
            proceed=proceed,
            milestone=milestone,
            web=web,
            evidence_dir=evidence_dir,
            change=change,
        )
        result.reuse_key = key
    return judge(result, baseline) if ws is not None else result


def _with_suite(
    ctx: Context,
    tree: Path,
    toolchains: list[str] | None,
    env: ProjectEnv,
    base: ValidationResult,
    acceptance: AcceptanceSuite,
    profile: Profile,
) -> ValidationResult:
    """Return ``base`` with the acceptance gate's check and findings added (run afresh).

    The joined result's reuse key is the other gates' and the suite's together, so it is
    never taken for a validation without the suite, nor for one with another suite.
    """
    only = replace(profile, gates=(), milestone_gates=())
    suite = validate_tree(
        tree,
        timeout=ctx.test_timeout,
        profile=only,
        toolchains=toolchains,
        env=env,
        acceptance=acceptance,
    )
    if suite.check(ACCEPTANCE) is None:  # the suite is pytest's: a project without Python
        why = "not run: the acceptance suite is Python tests and the project has no Python"
        suite.checks.append(not_run(ACCEPTANCE, why, required=False))
    key = reuse_key(tree, only, toolchains, ctx.test_timeout, env, acceptance=acceptance)
    joined = replace(
        base,
        checks=[*base.checks, *suite.checks],
        diagnostics=[*base.diagnostics, *suite.diagnostics],
        duration_s=base.duration_s + suite.duration_s,
        reuse_key=hashlib.sha256(f"{base.reuse_key}+{key}".encode()).hexdigest(),
    )
    return joined


def dependency_result(exc: DependencyError) -> ValidationResult:
    """Return the validation of a tree whose environment could not be made, saying why."""
    status: CheckStatus = "failed" if exc.for_coder else "not_run"
    first = exc.message.splitlines()[0][:300]
    check = Check("dependencies", status, [], None, 0.0, first)
    manifest = JS_MANIFEST if JS_MANIFEST in first else PY_MANIFEST
    diag = Diagnostic("dependencies", manifest, 0, exc.message, exc.kind)
    return ValidationResult(checks=[check], diagnostics=[diag] if exc.for_coder else [])


def relock_merged(ws: Workspace, tree: Path, ctx: Context) -> bool:
    """Lock a task's manifests again on main's work, amending its commit if a lock changed.

    A merge keeps main's lock and merges the manifests (``workspace.MERGES``), so the lock
    must follow the merged manifest; returns whether it changed. Unchanged manifests resolve
    to the lock they have (uv and npm keep its pins), and nothing is committed.

    Raises:
        DependencyError: the merged manifests cannot be locked (by its kind: the coder's, or
            a person's).

    """
    changed = lock_all(tree, DepSettings.of(ctx))
    if changed:
        ws.git("add", "--", *[n for n in (PY_LOCK, JS_LOCK) if (tree / n).is_file()], cwd=tree)
        ws.git("commit", "-q", "--amend", "--no-edit", cwd=tree)
    return changed


def _passed_before(ws: Workspace, key: str) -> ValidationResult | None:
    """Return a passed validation recorded in ``ws`` under ``key``, if there is one."""
    found = EvidenceIndex(ws.meta).passed(key)
    if found is None:
        return None
    name, data = found
    result = ValidationResult.from_dict(data)
    result.reused_from = str((ws.meta / "evidence" / f"{name}.json").relative_to(ws.root))
    return result


def environment_blockers(result: ValidationResult) -> list[Check]:
    """Return required gates that could not run for a reason no code change fixes.

    A gate skipped because an earlier gate failed is not one of them: fixing the code fixes it.
    """
    return [
        c
        for c in result.checks
        if c.required and c.status == "not_run" and not c.summary.startswith("skipped:")
    ]


def fixer_diagnostics(result: ValidationResult) -> list[str]:
    """Return what the fixer gets: parsed findings, the first-failing gate's first."""
    order = {c.name: i for i, c in enumerate(result.checks)}
    diags = sorted(result.diagnostics, key=lambda d: order.get(d.tool, len(order)))
    return [d.render() for d in diags[:MAX_DIAGNOSTICS]]


async def _report_sandbox(ws: Workspace, task_id: str, result: ValidationResult) -> None:
    """Say which sandbox layers were missing: never degrade silently."""
    missing = result.degraded_layers()
    if missing:
        await aemit(ws, task=task_id, node="validate", event="sandbox_degraded", layers=missing)


async def validate(
    state: TaskState, runtime: Runtime[Context], *, gates: Gates | None = None
) -> dict[str, Any]:
    """Run the quality gates on the task's worktree, in the sandbox; keep the evidence."""
    ctx = context_of(runtime.context)
    ws = await aopen_workspace(state["workspace"])
    task_id = state["task"]["id"]
    tree = await asyncio.to_thread(ws.worktree, task_id)
    name = await asyncio.to_thread(next_evidence_name, ws, task_id)
    options = await asyncio.to_thread(task_gate_options, state, ws, name)
    if state["task"].get("regression_test"):
        # A bug fix: its new test must fail on the commit the task started from (where its
        # branch leaves the run's: its own commit may be HEAD after a conflicting rebase).
        options["change"] = await asyncio.to_thread(task_change, tree, ws.git_options, ws.branch)
    run = gates or run_gates  # looked up now: a test may patch this module's run_gates
    result = await offload(GATES, lambda: run(ctx, tree, None, ws, **options))
    evidence = await asyncio.to_thread(
        lambda: record_evidence(ws, name, result, task=task_id, tree="worktree")
    )
    await _report_sandbox(ws, task_id, result)
    diags = fixer_diagnostics(result)
    await aemit(
        ws,
        task=task_id,
        node="validate",
        event="passed" if result.passed else "failed",
        checks=_summary(result),
        diagnostics=len(result.diagnostics),
        evidence=evidence,
        **({"excused": len(result.excused)} if result.excused else {}),
    )
    update: dict[str, Any] = {
        "status": "passed" if result.passed else "fixing",
        "diagnostics": diags,
        "evidence": [evidence],
    }
    blockers = environment_blockers(result)
    if not result.passed and blockers and not result.failures():
        question = gates_question({**state, **update}, blockers, evidence)  # type: ignore[typeddict-item]
        await aemit(ws, task=task_id, node="validate", event="escalated", question=question.id)
        update |= {
            "status": "waiting",
            "question": question.model_dump(),
            "questions_asked": state.get("questions_asked", 0) + 1,
        }
    elif not result.passed:
        modules = await asyncio.to_thread(project_modules, tree, state["task"].get("files", []))
        t = diagnose(
            state, result, diags, evidence, max_fix_rounds=ctx.max_fix_rounds, modules=modules
        )
        update |= t.update
        if t.event:
            await aemit(ws, task=task_id, node="validate", event=t.event, **t.fields)
    else:
        update["last_failure"] = None
    return update


def task_gate_options(state: TaskState, ws: Workspace, label: str) -> dict[str, Any]:
    """Return ``run_gates``' keywords for a task's validation recorded as ``label`` (blocking).

    A milestone's fix task gets that milestone's gate set, its files kept beside the evidence
    (a web app's), and the acceptance gate for its requirements, with the suite as main holds
    it now (``gates.acceptance.AcceptanceSuite.on_main``): a fix is checked by the tests that
    found what it fixes, never by its own copy of them.
    """
    task = state["task"]
    if not task.get("milestone"):
        return {}
    targets = state.get("targets")
    options = milestone_gate_options(WebTargets.from_dict(targets), ws, label) if targets else {}
    suite = AcceptanceSuite.on_main(ws, list(task.get("requirement_ids") or []))
    return options | ({"acceptance": suite} if suite is not None else {})


def _check_for(
    ws: Workspace, task_id: str, ctx: Context, state: TaskState, gates: Gates
) -> QueueCheck:
    """Return how the merge queue validates the task's commits built on main's work.

    The task's own gates (:func:`task_gate_options`); the evidence says which tasks ahead
    of it in the queue the tree held. A dependency problem the coder can fix fails it.
    """

    def check(tree: Path, ahead: list[str]) -> tuple[ValidationResult, str]:
        name = next_evidence_name(ws, task_id)
        try:
            result = gates(ctx, tree, None, ws, **task_gate_options(state, ws, name))
        except DependencyError as exc:
            if not exc.for_coder:
                raise  # a person's to fix: the task asks (``commit``)
            result = dependency_result(exc)
        where = "rebased on main" + (f" with {', '.join(ahead)} ahead" if ahead else "")
        return result, record_evidence(ws, name, result, task=task_id, tree=where)

    return check


async def _accept(
    ws: Workspace, task_id: str, title: str, ctx: Context, state: TaskState, gates: Gates
) -> dict[str, Any]:
    """Commit the worktree and put it through the merge queue (``execution.queue``).

    Returns the commit on main, or what the fixer is told, or the gates that could not run.
    """
    done = await offload(GIT, ws.find_task_commit, task_id)
    if done is not None:
        return {"commit": done, "reconciled": True}
    tree = await offload(GIT, ws.worktree, task_id)
    await offload(GIT, restore, ws, tree, ws.task_branch(task_id))  # a killed queue's leftover
    own = await offload(GIT, ws.commit_worktree, task_id, title)
    if own is None:
        return {"diagnostics": ["the task changed no files; write the task's code"]}
    queue = merge_queue(ws)
    await aemit(ws, task=task_id, node="commit", event="queued", ahead=len(queue.entries))
    check = _check_for(ws, task_id, ctx, state, gates)
    try:
        out = await queue.submit(task_id, own, lambda tree: relock_merged(ws, tree, ctx), check)
    except DependencyError as exc:
        if not exc.for_coder:
            raise
        lines = fixer_diagnostics(dependency_result(exc))
        return {"diagnostics": [f"after merging the work of other tasks: {x}" for x in lines]}
    if isinstance(out, Landed):
        await offload(GIT, ws.remove_worktree, task_id)
        return {"commit": out.commit, "rebased": out.rebased, "reconciled": out.reconciled}
    blockers = environment_blockers(out.result)
    # The fixer (or the person) sees the task's work on main as it is now.
    await offload(GIT, ws.take_rebased, task_id, out.spec, None if blockers else out.base)
    if blockers and not out.result.failures():
        return {"blockers": blockers, "evidence": [out.evidence]}
    diags = [
        f"after merging the work of other tasks: {line}" for line in fixer_diagnostics(out.result)
    ]
    return {"diagnostics": diags, "evidence": [out.evidence]}


async def commit(
    state: TaskState, runtime: Runtime[Context], *, gates: Gates | None = None
) -> dict[str, Any]:
    """Accept the task: one commit on main, its id recorded after it exists."""
    ctx = context_of(runtime.context)
    ws = await aopen_workspace(state["workspace"])
    task = state["task"]
    try:
        out = await _accept(ws, task["id"], task["title"], ctx, state, gates or run_gates)
    except WorkspaceError as exc:
        await aemit(ws, task=task["id"], node="commit", event="conflict", error=str(exc))
        return _not_merged(state, ctx, {"diagnostics": [f"merge: {exc}"]})
    except DependencyError as exc:
        # Locking the merged manifests needs a person (the index does not answer, say).
        question = dependency_blocked_question(state, exc)
        await aemit(ws, task=task["id"], node="commit", event="escalated", question=question.id)
        return decide(state, question)
    if "blockers" in out:
        question = gates_question(state, out["blockers"], out["evidence"][0])
        await aemit(ws, task=task["id"], node="commit", event="escalated", question=question.id)
        return {"evidence": out["evidence"], **decide(state, question)}
    if "commit" not in out:
        await aemit(ws, task=task["id"], node="commit", event="rejected")
        failed = {"diagnostics": out["diagnostics"], "evidence": out.get("evidence", [])}
        return _not_merged(state, ctx, failed)
    await aemit(
        ws,
        task=task["id"],
        node="commit",
        event="committed",
        commit=out["commit"],
        reconciled=bool(out.get("reconciled")),
    )
    learned = await learn_from_accepted_task(runtime, dict(state), ws, out["commit"])
    await aemit(ws, task=task["id"], node="memory", event="learned", **learned)
    return {"status": "done", "commit": out["commit"], "question": None, "pending_fix": None}


def _not_merged(state: TaskState, ctx: Context, failed: dict[str, Any]) -> dict[str, Any]:
    """Send a task that could not merge back to the fixer, at most ``max_fix_rounds`` times.

    Then it is given up like a task whose validation keeps failing (``decide``): a critical
    task asks a person, any other becomes a known limitation. No loop is endless.
    """
    rounds = state.get("merge_failures", 0) + 1
    if rounds <= ctx.max_fix_rounds:
        return {"status": "fixing", "merge_failures": rounds, **failed}
    shown = "\n".join(failed["diagnostics"][:10])
    question = task_question(
        state,
        "fix_limit",
        f"{what_task(state)} passes its checks but could not be merged into main {rounds} times",
        f"Last error:\n{shown}",
    )
    return {**failed, **decide(state, question)}


def gates_question(state: TaskState, blockers: list[Check], evidence: str) -> Question:
    """Return the question for a task whose gates could not run (a tool is missing, say)."""
    shown = "\n".join(f"- {c.name}: {c.summary}" for c in blockers)
    return task_question(
        state,
        "configuration",
        f"{what_task(state)}: quality gates could not run",
        f"No code change makes these gates run:\n{shown}\nEvidence: {evidence}",
    )
