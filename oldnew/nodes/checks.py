"""Validating and accepting a task: run the checks, then merge it into main as one commit."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from langgraph.runtime import Runtime

from oldnew.context import Context
from oldnew.errors import WorkspaceError
from oldnew.graph.state import TaskState
from oldnew.nodes.common import aemit, aopen_workspace
from oldnew.schemas import Option, Question
from oldnew.validation import ValidationResult, validate_tree
from oldnew.workspace import Workspace

MAX_DIAGNOSTICS = 25


def record_evidence(ws: Workspace, name: str, result: ValidationResult, **extra: Any) -> str:
    """Write a validation result to ``.oldnew/evidence/<name>.json``; return the relative path."""
    path = ws.write_json(f"evidence/{name}.json", {**extra, **result.to_dict()})
    return str(path.relative_to(ws.root))


def _next_evidence_name(ws: Workspace, task_id: str) -> str:
    folder = ws.meta / "evidence"
    n = len(list(folder.glob(f"{task_id}-*.json"))) + 1 if folder.exists() else 1
    return f"{task_id}-{n:02d}"


def _summary(result: ValidationResult) -> str:
    return ", ".join(f"{c.name} {c.status}" for c in result.checks)


async def validate(state: TaskState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Run syntax, ruff and the tests on the task's worktree; keep the evidence."""
    ctx = runtime.context or Context()
    ws = await aopen_workspace(state["workspace"])
    task_id = state["task"]["id"]
    tree = await asyncio.to_thread(ws.worktree, task_id)
    result = await asyncio.to_thread(validate_tree, tree, timeout=ctx.test_timeout)
    evidence = await asyncio.to_thread(
        lambda: record_evidence(
            ws, _next_evidence_name(ws, task_id), result, task=task_id, tree="worktree"
        )
    )
    diags = [d.render() for d in result.diagnostics[:MAX_DIAGNOSTICS]]
    await aemit(
        ws,
        task=task_id,
        node="validate",
        event="passed" if result.passed else "failed",
        checks=_summary(result),
        diagnostics=len(result.diagnostics),
        evidence=evidence,
    )
    update: dict[str, Any] = {
        "status": "validating" if result.passed else "fixing",
        "diagnostics": diags,
        "evidence": [evidence],
    }
    rounds = state.get("fix_round", 0)
    if not result.passed and rounds >= ctx.max_fix_rounds:
        question = fix_limit_question({**state, **update}, rounds)  # type: ignore[typeddict-item]
        await aemit(ws, task=task_id, node="validate", event="escalated", question=question.id)
        update |= {
            "status": "waiting",
            "question": question.model_dump(),
            "questions_asked": state.get("questions_asked", 0) + 1,
        }
    return update


def _accept(ws: Workspace, task_id: str, title: str, timeout: float) -> dict[str, Any]:
    """Commit the worktree, rebase it on main, re-check if main moved, fast-forward main."""
    with ws.merge_lock():
        done = ws.find_task_commit(task_id)
        if done is not None:
            return {"commit": done, "reconciled": True}
        if ws.commit_worktree(task_id, title) is None:
            return {"diagnostics": ["the task changed no files; write the task's code"]}
        moved = ws.rebase_onto_main(task_id)
        if moved:
            tree = ws.worktree(task_id)
            result = validate_tree(tree, timeout=timeout)
            evidence = record_evidence(
                ws, _next_evidence_name(ws, task_id), result, task=task_id, tree="rebased on main"
            )
            if not result.passed:
                ws.git("reset", "-q", "--soft", "HEAD~1", cwd=tree)
                diags = [
                    f"after merging the work of other tasks: {d.render()}"
                    for d in result.diagnostics[:MAX_DIAGNOSTICS]
                ]
                return {"diagnostics": diags, "evidence": [evidence]}
        commit = ws.fast_forward_main(task_id)
    ws.remove_worktree(task_id)
    return {"commit": commit, "rebased": moved}


async def commit(state: TaskState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Accept the task: one commit on main, its id recorded after it exists."""
    ctx = runtime.context or Context()
    ws = await aopen_workspace(state["workspace"])
    task = state["task"]
    try:
        out = await asyncio.to_thread(_accept, ws, task["id"], task["title"], ctx.test_timeout)
    except WorkspaceError as exc:
        await aemit(ws, task=task["id"], node="commit", event="conflict", error=str(exc))
        return {"status": "fixing", "diagnostics": [f"merge: {exc}"]}
    if "commit" not in out:
        await aemit(ws, task=task["id"], node="commit", event="rejected")
        return {
            "status": "fixing",
            "diagnostics": out["diagnostics"],
            "evidence": out.get("evidence", []),
        }
    await aemit(
        ws,
        task=task["id"],
        node="commit",
        event="committed",
        commit=out["commit"],
        reconciled=bool(out.get("reconciled")),
    )
    return {"status": "done", "commit": out["commit"], "question": None}


def fix_limit_question(state: TaskState, rounds: int) -> Question:
    """Return the question for a task whose fix rounds ran out."""
    task = state["task"]
    shown = "\n".join(state.get("diagnostics", [])[:10])
    return Question(
        id=f"{task['id']}-q{state.get('questions_asked', 0) + 1}",
        kind="fix_limit",
        task_id=task["id"],
        title=f"Task {task['id']} ({task['title']}) still fails after {rounds} fix rounds",
        detail=f"Last diagnostics:\n{shown}\nEvidence: {(state.get('evidence') or ['-'])[-1]}",
        options=[
            Option(key="retry", label="Give the fixer another set of rounds"),
            Option(key="skip", label="Leave the task undone and record it as a blocker"),
        ],
        recommended="retry",
        free_text=True,
    )


def load_evidence(ws: Workspace, rel: str) -> dict[str, Any]:
    """Return the evidence file at ``rel`` (relative to the workspace root)."""
    data: dict[str, Any] = json.loads(Path(ws.root / rel).read_text(encoding="utf-8"))
    return data
