"""Forks of a run: task threads and the run's branch follow the run's checkpoint lineage.

LangGraph lets a person fork a run's thread at an earlier checkpoint (time travel:
``checkpoint_id=`` on a new run, or ``update_state`` then a run). Two things outside the run's
own checkpoints must follow:

- **Task threads.** The first ``execute`` of a plan version takes the run checkpoint it runs
  from as the plan's lineage key (``lineage_of``); task thread ids derive from it
  (``threads.task_thread_id``). A re-run of that step (after a crash) runs from the same
  checkpoint, so it finds its tasks where they stopped; a fork runs from a new checkpoint, so
  it runs every task afresh; two runs on one thread never share a task.
- **The run's branch.** Every outer node records where the branch stands when it ends
  (``RunState.main_head``). A node that starts with the branch ahead of that commit, in a step
  that did not run before, belongs to a fork: the branch goes back to the recorded commit,
  and what it held is kept on ``oldnew/fork/<commit>`` (``restore_branch``).

A fork at a pause takes its new answer on a replay of the paused checkpoint (no input; the run
pauses again) and then a resume: LangGraph hands a resume sent straight to a checkpoint the
thread has moved past the answer it was given there.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.runtime import Runtime

from oldnew.context import Context
from oldnew.execution.threads import LEGACY
from oldnew.graph.state import Lineage, RunState
from oldnew.host import context_of
from oldnew.nodes.common import aemit, arun_workspace
from oldnew.workspace import Workspace

OuterNode = Callable[..., Awaitable[dict[str, Any]]]
OLDNEW_AUTHOR = "oldnew"
"""The author of every commit oldnew makes (``safegit.GIT_OPTIONS``)."""
STEP_FILE = "step.json"
"""In the workspace's meta folder: the run checkpoint the last outer node started from."""


def step_of(runtime: Runtime[Any]) -> str:
    """Return the id of the run checkpoint the current node runs from ("" when unknown)."""
    info = runtime.execution_info
    return info.checkpoint_id if info is not None else ""


def lineage_of(state: RunState, runtime: Runtime[Any]) -> Lineage:
    """Return the current plan version's lineage: the state's, or a new one from this step."""
    version = int(state.get("plan_version") or 1)
    return {"plan_version": version, "key": lineage_key(state, step_of(runtime))}


def lineage_key(values: Mapping[str, Any], at: str) -> str:
    """Return the key of the task threads of a run's state whose next step runs from ``at``.

    The state's own lineage for its plan version, else ``at``: the key of a first ``execute``
    is the checkpoint it runs from (a reader sees it running there before it records it).
    """
    version = int(values.get("plan_version") or 1)
    known: Mapping[str, Any] = values.get("lineage") or {}
    if known.get("plan_version") == version and known.get("key"):
        return str(known["key"])
    tasks: Mapping[str, Mapping[str, Any]] = values.get("tasks") or {}
    if not known and any(r.get("status") not in (None, "pending") for r in tasks.values()):
        return f"{LEGACY}{version}"  # saved before lineages: its tasks' threads keep their ids
    return at or f"{LEGACY}{version}"


def _began(ws: Workspace, step: str) -> bool:
    """Return whether an outer node started from ``step`` before (this is its re-run)."""
    try:
        last = json.loads((ws.meta / STEP_FILE).read_text(encoding="utf-8")).get("step")
    except (OSError, ValueError):
        last = None
    return bool(step) and last == step


def _begin(ws: Workspace, step: str) -> None:
    """Note that an outer node starts from ``step``, once the branch is where it belongs."""
    ws.write_json(STEP_FILE, {"step": step})


def restore_branch(ws: Workspace, state: RunState, step: str) -> str | None:
    """Put the run's branch back at ``state``'s commit if a fork moved it; return the keep.

    Only when the step did not run before (a re-run after a crash keeps its own work), the
    recorded commit is this repository's, and every commit the branch holds since it is
    oldnew's own (a person's commit is never moved). The branch's tip is kept on
    ``oldnew/fork/<commit>``; the task worktrees a fork would reuse are removed, their
    branches kept beside it.
    """
    if _began(ws, step):
        return None
    recorded, tip = state.get("main_head"), ws.head()
    if (
        not recorded
        or tip == recorded
        or ws.git("cat-file", "-t", recorded, check=False) != "commit"  # another workspace's
        or set(ws.git("log", "--format=%an", f"{recorded}..{tip}").splitlines())
        - {OLDNEW_AUTHOR}  # a person worked on the branch: theirs stays where it is
    ):
        _begin(ws, step)
        return None
    keep = ws.fork_branch(tip[:12])
    ws.git("branch", "-f", keep, tip)
    for tree in sorted((ws.meta / "worktrees").glob("*")):
        task = tree.name
        if ws.git("rev-parse", "--verify", "-q", ws.task_branch(task), check=False):
            ws.git("branch", "-f", f"{keep}-{task}", ws.task_branch(task))
        ws.remove_worktree(task)
    ws.hold_branch()
    ws.git("reset", "-q", "--hard", recorded)
    _begin(ws, step)  # only now: a restore that failed half-way is tried again
    return keep


def forkable(node: OuterNode, name: str) -> OuterNode:
    """Wrap the outer node ``node``: restore the branch on a fork, record it at the end."""

    async def run_node(
        state: RunState, runtime: Runtime[Context], config: RunnableConfig
    ) -> dict[str, Any]:
        ws = await arun_workspace(context_of(runtime.context), config, state.get("supporting"))
        kept = await asyncio.to_thread(restore_branch, ws, state, step_of(runtime))
        if kept is not None:
            await aemit(ws, node=name, event="fork_restored", kept=kept, head=state["main_head"])
        update = await node(state, runtime=runtime, config=config)
        return {**update, "main_head": await asyncio.to_thread(ws.head)}

    run_node.__name__ = run_node.__qualname__ = name
    run_node.__doc__ = node.__doc__
    return run_node
