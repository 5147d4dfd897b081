"""A seeded plan of module tasks run through the real graph, with gates that judge a rule.

The gates are a stand-in that sleeps a little and judges one rule that can fail: no two files
of the project say ``CLASH``. Two tasks that each pass alone then fail together, as two real
tasks can; the merge queue must keep the second off main, and its fixer (which drops the word)
must get it through. ``python -m tests.queue_plan WS start|resume N`` runs it in a process of
its own, for the kill tests.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from oldnew.context import Context
from oldnew.gates import Check, Diagnostic, ValidationResult
from oldnew.runs import open_graph, run_config, stream
from oldnew.workspace import Workspace
from tests.synthetic import planned_run

CLASH = "CLASH"


def clashes(files: dict[str, str]) -> list[str]:
    """Return the files that break the rule (empty: the tree is green)."""
    named = sorted(name for name, text in files.items() if CLASH in text)
    return named if len(named) > 1 else []


def tree_files(tree: Path) -> dict[str, str]:
    """Return the project's text files under ``tree`` (oldnew's own folder left out)."""
    files = {str(p.relative_to(tree)): p for p in tree.rglob("*.py")}
    return {
        name: path.read_text(errors="replace")
        for name, path in files.items()
        if not {".git", ".oldnew"} & set(Path(name).parts)
    }


def rule_gates(seconds: float) -> Any:
    """Gates that judge the rule after ``seconds``: they check the files, nothing else."""

    def gates(ctx: Context, tree: Path, *args: Any, **kwargs: Any) -> ValidationResult:
        time.sleep(seconds)
        bad = clashes(tree_files(tree))
        status = "failed" if bad else "passed"
        check = Check("rule", status, [], int(bool(bad)), seconds, f"rule: {len(bad)} clash(es)")
        diags = [Diagnostic("rule", f, 1, f"{f} says {CLASH} as another file does") for f in bad]
        return ValidationResult(checks=[check], diagnostics=diags)

    return gates


def module(i: int, clash: bool = False) -> str:
    """Return the coder's reply for task ``i``: its module (saying CLASH when asked)."""
    body = f"X{i} = {i}" + (f"  # {CLASH}" if clash else "")
    return f"FILE: mods/m{i}.py\n```python\n{body}\n```\n"


def seeded_plan(tasks: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return the scope and the run state a planner would have left for ``tasks``."""
    planned = [
        {
            "id": t["id"],
            "title": f"module {t['id']}",
            "description": f"mods/m{t['id'][1:]}.py",
            "files": [f"mods/m{t['id'][1:]}.py"],
            "depends_on": t.get("depends_on", []),
            "requirement_ids": [],
        }
        for t in tasks
    ]
    scope = {"title": "modules", "summary": "modules", "features": []}
    seeded = {
        "scope_text": "modules",
        "plan_version": 1,
        "status": "executing",
        "scope": scope,
        "plan": {"tasks": planned},
        "tasks": {
            t["id"]: {"id": t["id"], "title": t["title"], "status": "pending", "commit": None}
            for t in planned
        },
    }
    return scope, seeded


def models_for(tasks: list[dict[str, Any]]) -> Any:
    """The coder writes each module (CLASH where the task says); the fixer drops the word."""
    scope, seeded = seeded_plan(tasks)
    code = {t["id"]: module(int(t["id"][1:]), t.get("clash", False)) for t in tasks}
    fix = {t["id"]: module(int(t["id"][1:])) for t in tasks if t.get("clash")}
    return planned_run(scope, seeded["plan"], code=code, fix=fix)


def run_plan(
    root: Path,
    tasks: list[dict[str, Any]],
    seconds: float,
    *,
    resume: bool = False,
    **ctx: Any,
) -> Workspace:
    """Run ``tasks`` through execute and deliver in workspace ``root``; return it."""
    ws = Workspace(root) if resume else Workspace.create(root, str(uuid.uuid4()), {})
    if resume:
        ws.recover()  # what a kill left in git (index locks), as 'oldnew resume' clears it
    run_id = str((ws.run_info() or {})["run_id"])
    _, seeded = seeded_plan(tasks)
    context = Context(workspace=str(ws.root), memory_path="off", **ctx)
    config = run_config(run_id)

    async def go() -> None:
        async with open_graph(ws, models=models_for(tasks), gates=rule_gates(seconds)) as graph:
            if not resume:
                await graph.aupdate_state(config, seeded, as_node="plan")
            await stream(graph, None, config, context, None)

    with ws.lock():
        asyncio.run(go())
    return ws


def sixty() -> list[dict[str, Any]]:
    """Sixty tasks: a few chains, three pairs that clash on main."""
    tasks: list[dict[str, Any]] = [{"id": f"T{i}"} for i in range(1, 61)]
    for i in range(11, 61, 10):  # T11 needs T1, T21 needs T11, ...
        tasks[i - 1]["depends_on"] = [f"T{i - 10}"]
    for a, b in ((3, 4), (15, 16), (37, 38)):
        tasks[a - 1]["clash"] = tasks[b - 1]["clash"] = True
    return tasks


if __name__ == "__main__":
    where, how = Path(sys.argv[1]), sys.argv[2]
    run_plan(where, sixty(), 0.05, resume=how == "resume", max_agents=8, gate_slots=8)
