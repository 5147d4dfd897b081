"""The scheduler through the real graph: critical path first, agents that follow the work.

A seeded plan (as the benchmarks seed one) runs with a coder that writes each task's module and
a stand-in for the gates that passes after a short sleep: what is tested is the order and the
number of tasks at work, not code quality.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

from oldnew.context import Context
from oldnew.gates import Check, ValidationResult
from oldnew.runs import open_graph, run_config, stream
from oldnew.workspace import Workspace
from tests.synthetic import planned_run


def stand_in_gates(seconds: float) -> Any:
    """Gates that pass after ``seconds`` and say they checked nothing."""

    def gates(ctx: Context, tree: Path, *args: Any, **kwargs: Any) -> ValidationResult:
        time.sleep(seconds)
        check = Check("stand-in", "passed", [], 0, seconds, "stand-in: no code was checked")
        return ValidationResult(checks=[check])

    return gates


def module(i: int) -> str:
    return f"FILE: mods/m{i}.py\n```python\nX{i} = {i}\n```\n"


def run_plan(tmp_path: Path, tasks: list[dict[str, Any]], seconds: float, **ctx: Any) -> Workspace:
    """Run ``tasks`` (id, depends_on) through execute and deliver; return the workspace."""
    run_id = str(uuid.uuid4())
    ws = Workspace.create(tmp_path / "ws", run_id, {})
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
    code = {t["id"]: module(int(t["id"][1:])) for t in tasks}
    models = planned_run(scope, {"tasks": planned}, code=code)
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
    context = Context(workspace=str(ws.root), memory_path="off", **ctx)
    config = run_config(run_id)

    async def go() -> None:
        async with open_graph(ws, models=models, gates=stand_in_gates(seconds)) as graph:
            await graph.aupdate_state(config, seeded, as_node="plan")
            await stream(graph, None, config, context, None)

    with ws.lock():
        asyncio.run(go())
    return ws


def execute_events(ws: Workspace, event: str) -> list[dict[str, Any]]:
    return [e for e in ws.events() if e.get("event") == event]


def test_the_longest_chain_starts_first(tmp_path: Path) -> None:
    chain = [{"id": "T5"}, {"id": "T6", "depends_on": ["T5"]}, {"id": "T7", "depends_on": ["T6"]}]
    tasks = [{"id": f"T{i}"} for i in range(1, 5)] + chain
    ws = run_plan(tmp_path, tasks, 0.0, max_agents=1)
    started = [e["task"] for e in execute_events(ws, "task_started")]
    assert started[0] == "T5", started  # plan order would start T1
    assert sorted(started) == sorted(t["id"] for t in tasks)
    assert len(execute_events(ws, "committed")) == 7


def test_agents_follow_the_work(tmp_path: Path) -> None:
    ws = run_plan(tmp_path, [{"id": f"T{i}"} for i in range(1, 13)], 0.05, max_agents=10)
    sized = execute_events(ws, "agents")
    counts = [e["agents"] for e in sized]
    assert counts[0] == 3, sized  # 12 tasks ready, one agent per 4
    assert counts == sorted(counts, reverse=True) and counts[-1] == 1, counts
    reason = sized[0]["reason"]
    assert "12 task(s) ready or running" in reason and "at most 10" in reason
    # Never more tasks at work (started, not yet in the merge queue) than agents then.
    at_work: set[str] = set()
    allowed, most = counts[0], 0
    for e in ws.events():
        if e.get("event") == "agents":
            allowed = e["agents"]
        elif e.get("event") == "task_started":
            at_work.add(e["task"])
            most = max(most, len(at_work) - allowed)
        elif e.get("event") == "queued" or e.get("event", "").startswith("task_"):
            at_work.discard(e.get("task", ""))
    assert most <= 0
    assert len(execute_events(ws, "committed")) == 12


def test_a_task_in_the_merge_queue_holds_no_agent(tmp_path: Path) -> None:
    ws = run_plan(tmp_path, [{"id": f"T{i}"} for i in range(1, 4)], 0.3, max_agents=1)
    events = ws.events()
    where = {
        (e.get("task"), e.get("event")): i
        for i, e in enumerate(events)
        if e.get("event") in ("task_started", "queued", "committed")
    }
    # With one agent, a task starts while the one before it waits in the queue.
    overlaps = [
        (a, b)
        for a in ("T1", "T2", "T3")
        for b in ("T1", "T2", "T3")
        if a != b and where[(a, "queued")] < where[(b, "task_started")] < where[(a, "committed")]
    ]
    assert overlaps, [(k, v) for k, v in sorted(where.items(), key=lambda kv: kv[1])]
    assert len(execute_events(ws, "committed")) == 3
