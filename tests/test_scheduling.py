"""The scheduler through the real graph: critical path first, agents that follow the work.

A seeded plan (as the benchmarks seed one) runs with a coder that writes each task's module and
a stand-in for the gates that passes after a short sleep: what is tested is the order and the
number of tasks at work, not code quality (``tests.queue_plan``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from oldnew.display import RunView, render, seen
from oldnew.workspace import Workspace
from tests.queue_plan import run_plan


def execute_events(ws: Workspace, event: str) -> list[dict[str, Any]]:
    return [e for e in ws.events() if e.get("event") == event]


def test_the_longest_chain_starts_first(tmp_path: Path) -> None:
    chain = [{"id": "T5"}, {"id": "T6", "depends_on": ["T5"]}, {"id": "T7", "depends_on": ["T6"]}]
    tasks = [{"id": f"T{i}"} for i in range(1, 5)] + chain
    ws = run_plan(tmp_path / "ws", tasks, 0.0, max_agents=1)
    started = [e["task"] for e in execute_events(ws, "task_started")]
    assert started[0] == "T5", started  # plan order would start T1
    assert sorted(started) == sorted(t["id"] for t in tasks)
    assert len(execute_events(ws, "committed")) == 7


def test_agents_follow_the_work(tmp_path: Path) -> None:
    ws = run_plan(tmp_path / "ws", [{"id": f"T{i}"} for i in range(1, 21)], 0.05, max_agents=10)
    sized = execute_events(ws, "agents")
    counts = [e["agents"] for e in sized]
    assert counts[0] == 5, sized  # 20 tasks ready, one agent per 4
    assert counts == sorted(counts, reverse=True) and counts[-1] == 3, counts  # 3 at least
    reason = sized[0]["reason"]
    assert "20 task(s) ready or running" in reason and "at most 10" in reason
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
    assert len(execute_events(ws, "committed")) == 20
    view = RunView()  # what the live display shows: the count now and why
    seen(view, ws.events())
    assert view.agents == f"3 ({sized[-1]['reason']})"
    console = Console(record=True, width=200)
    console.print(render(view))
    assert f"agents 3 ({sized[-1]['reason']})" in console.export_text()


def test_a_task_in_the_merge_queue_holds_no_agent(tmp_path: Path) -> None:
    ws = run_plan(tmp_path / "ws", [{"id": f"T{i}"} for i in range(1, 4)], 0.3, max_agents=1)
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
