"""The dependencies step: check what a task declares, lock it, install it, before any gate.

It runs after every coding and fixing round, on the task's worktree:

1. read the manifests (a broken one goes back to the coder);
2. apply the ``--deps`` policy (``deps.review``): refused packages go back to the coder, new
   ones a person must approve raise one question listing each with its version and why;
3. build the wheels of packages a person allowed a source build of (``deps.builds``: in the
   sandbox, without network), offered to the resolver beside the index;
4. resolve the manifests into their locks (``uv.lock``, ``package-lock.json``), committed with
   the task; the resolver's own message goes back to the coder when it fails;
5. install the locks into environments shared by lock hash (nothing installed when the lock
   is unchanged), with the network, running no package's code.

A failure the coder can fix is a failed ``dependencies`` check, diagnosed like any failed
validation (fix rounds, a fresh start, then a person); one only a person can fix (the index
does not answer, a package has no wheel, a cap) is a question at once.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field, replace
from typing import Any

from langgraph.runtime import Runtime

from oldnew.context import Context
from oldnew.deps import builds, envs, node, python
from oldnew.deps.errors import DependencyError
from oldnew.deps.ledger import Decision, Ledger
from oldnew.deps.manifest import (
    JS_LOCK,
    JS_MANIFEST,
    PY_LOCK,
    PY_MANIFEST,
    Dependency,
    declared,
)
from oldnew.deps.review import Review, review
from oldnew.deps.settings import DepSettings
from oldnew.graph.state import TaskState
from oldnew.hitl.questions import dependency_blocked_question, dependency_question
from oldnew.host import context_of
from oldnew.nodes.checks import (
    dependency_result,
    fixer_diagnostics,
    next_evidence_name,
    record_evidence,
)
from oldnew.nodes.common import aemit, aopen_workspace
from oldnew.recovery.diagnosis import decide, diagnose, project_modules
from oldnew.workspace import Workspace


def _locks(tree: Any, settings: DepSettings) -> dict[str, str]:
    """Lock what the manifests declare; return the pinned versions by ``ecosystem:name``."""
    envs.lock_all(tree, settings)
    versions: dict[str, str] = {}
    for ecosystem, lock, read in (
        ("python", PY_LOCK, python.locked_packages),
        ("node", JS_LOCK, node.locked_packages),
    ):
        if (tree / lock).is_file():
            text = (tree / lock).read_text(encoding="utf-8")
            versions |= {f"{ecosystem}:{p['name']}": p["version"] for p in read(text)}
    return versions


def _main_keys(ws: Workspace) -> set[str]:
    """Return the packages main already declares (what earlier tasks brought in)."""
    try:
        return {d.key for d in declared(ws.root)}
    except DependencyError:
        return set()


def _refusals(refused: list[tuple[Dependency, str]]) -> DependencyError:
    lines = [
        f"{d.name} ({d.ecosystem}): {why}; remove it from "
        f"{PY_MANIFEST if d.ecosystem == 'python' else JS_MANIFEST} and do without it"
        for d, why in refused
    ]
    return DependencyError(
        "resolution", "\n".join(lines), packages=tuple(d.key for d, _ in refused)
    )


@dataclass
class _Prepared:
    """What reading, reviewing, building and locking a task's manifests gave."""

    verdict: Review
    versions: dict[str, str]
    """The versions the locks pin, by ``ecosystem:name``."""
    settings: DepSettings
    """The settings that install the locks (with the built wheels' pages)."""
    source_built: list[Dependency] = field(default_factory=list)
    """Declared packages a person allowed a source build of."""
    built: dict[str, Any] | None = None
    """What the ``built`` event says (None: nothing to build)."""


def _prepare(ws: Workspace, state: TaskState, ctx: Context) -> _Prepared:
    """Read, review, build (what a person allowed) and lock the task's manifests (blocking)."""
    tree = ws.worktree(state["task"]["id"])
    wanted = declared(tree)
    ledger = Ledger(ws.meta)
    decided = {k: str(v.get("decision")) for k, v in ledger.read().items()}
    verdict = review(
        wanted,
        mode=ctx.deps,
        named=set(state.get("packages") or []),
        on_main=_main_keys(ws),
        decided=decided,
    )
    if verdict.refused:
        raise _refusals(verdict.refused)
    prep = _build(verdict, [d for d in wanted if decided.get(d.key) == "source_build"], ctx)
    prep.versions = _locks(tree, prep.settings) if wanted or _has_lock(tree) else {}
    return prep


def _build(verdict: Review, allowed: list[Dependency], ctx: Context) -> _Prepared:
    """Build the packages a person allowed a source build of; offer their wheels to uv."""
    settings = DepSettings.of(ctx)
    if not allowed:
        return _Prepared(verdict, {}, settings)
    start = time.monotonic()
    made = builds.build_allowed(allowed, settings)
    links = builds.pages([b.name for b in made], settings)
    event = {
        "packages": [f"python:{b.name}=={b.version}" for b in made],
        "reused": [f"python:{b.name}" for b in made if b.reused],
        "seconds": round(time.monotonic() - start, 3),
    }
    return _Prepared(verdict, {}, replace(settings, find_links=links), allowed, event)


def _has_lock(tree: Any) -> bool:
    return bool((tree / PY_LOCK).is_file() or (tree / JS_LOCK).is_file())


def _install(ws: Workspace, task_id: str, settings: DepSettings) -> list[dict[str, Any]]:
    """Install the task's locks into their shared environments (blocking)."""
    tree = ws.worktree(task_id)
    made = [envs.python_env(tree, settings)]
    js = envs.node_env(tree, settings)
    if js is not None:
        made.append(js)
    return [m.to_dict() for m in made]


async def dependencies(state: TaskState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Check, approve, lock and install the task's dependencies; then its gates may run."""
    ctx = context_of(runtime.context)
    ws = await aopen_workspace(state["workspace"])
    task_id = state["task"]["id"]
    try:
        prep = await asyncio.to_thread(_prepare, ws, state, ctx)
    except DependencyError as exc:
        return await _failed(ws, state, ctx, exc)
    verdict, versions = prep.verdict, prep.versions
    if prep.built is not None:
        await aemit(ws, task=task_id, node="dependencies", event="built", **prep.built)
    if verdict.ask:
        question = dependency_question(state, verdict.ask, versions)
        await aemit(
            ws,
            task=task_id,
            node="dependencies",
            event="approval_asked",
            question=question.id,
            packages=[d.key for d in verdict.ask],
        )
        return {
            "status": "waiting",
            "question": question.model_dump(),
            "questions_asked": state.get("questions_asked", 0) + 1,
        }
    ledger = Ledger(ws.meta)
    decisions: tuple[Decision, ...] = ("tool", "scope", "auto")
    for decision in decisions:
        chosen = [d for d, why in verdict.allowed if why == decision]
        if chosen:
            await asyncio.to_thread(
                ledger.decide,
                chosen,
                decision,
                task=task_id,
                versions=versions,
            )
    if prep.source_built:  # the person's decision stands; the manifest's details join it
        await asyncio.to_thread(
            ledger.decide, prep.source_built, "source_build", task=task_id, versions=versions
        )
    await asyncio.to_thread(ledger.pin, versions)
    try:
        made = await asyncio.to_thread(_install, ws, task_id, prep.settings)
    except DependencyError as exc:
        return await _failed(ws, state, ctx, exc)
    await aemit(ws, task=task_id, node="dependencies", event="installed", environments=made)
    return {"status": "validating"}


async def _failed(
    ws: Workspace, state: TaskState, ctx: Context, exc: DependencyError
) -> dict[str, Any]:
    """Send a failure to the coder (as a failed check) or to a person (as a question)."""
    task_id = state["task"]["id"]
    await aemit(
        ws,
        task=task_id,
        node="dependencies",
        event="failed",
        kind=exc.kind,
        error=exc.message[:500],
    )
    if not exc.for_coder:
        question = dependency_blocked_question(state, exc)
        return decide(state, question)
    result = dependency_result(exc)
    evidence = await asyncio.to_thread(
        lambda: record_evidence(
            ws, next_evidence_name(ws, task_id), result, task=task_id, tree="worktree"
        )
    )
    diags = fixer_diagnostics(result)
    tree = await asyncio.to_thread(ws.worktree, task_id)
    modules = await asyncio.to_thread(project_modules, tree, state["task"].get("files", []))
    update: dict[str, Any] = {"status": "fixing", "diagnostics": diags, "evidence": [evidence]}
    t = diagnose(
        {**state, **update},  # type: ignore[typeddict-item]
        result,
        diags,
        evidence,
        max_fix_rounds=ctx.max_fix_rounds,
        modules=modules,
    )
    return update | t.update
