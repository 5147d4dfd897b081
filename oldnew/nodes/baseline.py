"""The baseline: run the gates once on the commit the run started from, before any task.

A run on an existing repository (``Workspace.base`` is set) starts from the user's project as
it was; whatever fails there already is recorded here, and every later validation is judged
against it (``gates.baseline.judge``). The gates run on a clean export of that commit in a
temporary folder: never in the user's checkout, never in a task's worktree.

A baseline that crashes, or whose environment cannot be built, is recorded as such with the
reason, and the run goes on (its tasks are then judged as on a new project, and an event says
so). A baseline already recorded for that commit, under the same quality profile, toolchains
and test timeout (``gates.baseline.baseline_key``), is not taken again: a resumed run reuses
it. One taken under other settings is taken again, and the event says why.

Every gate runs at the baseline, whatever its prerequisites found: all of it is there before
the run, so a task is later judged gate by gate against what each found here.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.runtime import Runtime

from oldnew.context import Context
from oldnew.gates.baseline import EVIDENCE, Baseline, baseline_key
from oldnew.gates.model import Check, Diagnostic, ValidationResult, not_run
from oldnew.gates.profiles import resolve_profile
from oldnew.gates.verify import export_commit
from oldnew.graph.state import RunState
from oldnew.host import context_of
from oldnew.nodes.checks import record_evidence, run_gates
from oldnew.nodes.common import aemit, arun_workspace, scope_toolchains
from oldnew.repomap.index import project_facts
from oldnew.workspace import Workspace


def _everything(check: Check, diags: list[Diagnostic]) -> bool:
    """At the baseline every failure is there before the run: it holds no gate back."""
    return True


def take_baseline(
    ws: Workspace, ctx: Context, commit: str, toolchains: list[str] | None = None
) -> tuple[Baseline, str]:
    """Return the baseline of ``commit`` and why it was taken now ('' when reused; blocking).

    A baseline recorded for ``commit`` under the same profile, toolchains and test timeout is
    returned as it is. Otherwise the gates run on the commit's files, exported to a temporary
    folder, and the result is recorded: the evidence (``.oldnew/evidence/baseline.json``) and
    the derived record (``.oldnew/baseline.json``). A failure to take it is recorded too.

    Raises:
        ConfigurationError: the run's quality profile is unknown.

    """
    profile = resolve_profile(
        ctx.quality, coverage_min=ctx.coverage_min, complexity_max=ctx.complexity_max
    )
    key = baseline_key(commit, profile.to_dict(), toolchains, ctx.test_timeout)
    earlier = Baseline.load(ws)
    because = "none was taken yet"
    if earlier is not None:
        because = earlier.taken_again_because(key)
        if not because:
            return earlier, ""
    try:
        with tempfile.TemporaryDirectory(prefix="oldnew-baseline-") as tmp:
            tree = export_commit(ws, commit, Path(tmp) / "base")
            # No workspace: the gates' own verdict, nothing reused, nothing excused.
            result = run_gates(ctx, tree, toolchains, proceed=_everything)
    except Exception as exc:  # noqa: BLE001 - a baseline that fails is recorded, never fatal
        why = f"the baseline could not be taken: {type(exc).__name__}: {exc}"[:2000]
        result = ValidationResult(checks=[not_run("baseline", why)])
    evidence = record_evidence(ws, EVIDENCE, result, tree="base", commit=commit)
    baseline = Baseline.of(commit, result, evidence, key)
    baseline.save(ws)
    return baseline, because


async def baseline(
    state: RunState, runtime: Runtime[Context], config: RunnableConfig
) -> dict[str, Any]:
    """Record what already fails on the commit the run started from (once, before any task)."""
    ctx = context_of(runtime.context)
    ws = await arun_workspace(ctx, config)
    commit = await asyncio.to_thread(lambda: ws.base)
    if commit is None:
        return {"baseline": Baseline(None, "none").summary()}  # a new project: nothing failed
    taken, because = await asyncio.to_thread(
        take_baseline, ws, ctx, commit, scope_toolchains(state)
    )
    summary = taken.summary()
    event = taken.status if because else "reused"
    fields = {k: v for k, v in summary.items() if k != "status" and v not in ("", None, [])}
    if not because:
        fields["status"] = taken.status
    elif because != "none was taken yet":
        fields["taken_again"] = because
    if taken.status in ("crashed", "unbuildable"):
        fields["consequence"] = (
            "the run goes on without a baseline: every failure counts as the tasks' own"
        )
    started = time.monotonic()
    # The coder's context reads every file once; done here, no task's first call waits on it.
    facts = await asyncio.to_thread(project_facts, ws.root, ws.meta)
    fields["indexed"] = {"files": len(facts), "seconds": round(time.monotonic() - started, 3)}
    await aemit(ws, node="baseline", event=event, **fields)
    return {"baseline": summary}
