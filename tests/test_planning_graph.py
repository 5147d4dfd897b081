"""Planning in whole runs: a cyclic plan repaired, a failing or slow task split, a design flaw
re-planned around finished work, a scope with nothing to build."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from oldnew.planning.trace import run_traceability
from oldnew.runs import open_graph, resume_run, start_run
from oldnew.workspace import Workspace

pytestmark = pytest.mark.usefixtures("smoke_gates")  # graph logic, not the gates

OPS = {"add": ("+", 5), "sub": ("-", -1), "mul": ("*", 6)}


def module(name: str, fn: str) -> str:
    """Return a coder reply that writes ``<name>.py`` with ``fn`` and a test that checks it."""
    op, expected = OPS[fn]
    return (
        f"FILE: {name}.py\n```python\ndef {fn}(a, b):\n    return a {op} b\n```\n"
        f"FILE: tests/test_{name}.py\n```python\nfrom {name} import {fn}\n\n\n"
        f"def test_{fn}():\n    assert {fn}(2, 3) == {expected}\n```\n"
    )


README = "FILE: README.md\n```\n# calc\n\nadd, sub and mul.\n```\n"
FAILING = (
    "FILE: calc.py\n```python\ndef add(a, b):\n    return a - b\n```\n"
    "FILE: tests/test_calc.py\n```python\nfrom calc import add\n\n\n"
    "def test_add():\n    assert add(2, 3) == 5\n```\n"
)
SCOPE = {
    "title": "calc",
    "summary": "Arithmetic helpers.",
    "features": [
        {"id": "F1", "title": "add"},
        {"id": "F2", "title": "sub"},
        {"id": "F3", "title": "mul"},
    ],
}


def _task(tid: str, deps: list[str] | None = None, reqs: list[str] | None = None) -> dict[str, Any]:
    return {
        "id": tid,
        "title": f"task {tid}",
        "description": f"Build {tid}.",
        "depends_on": deps or [],
        "requirement_ids": reqs or ["F1", "F2", "F3"],
    }


def _pieces(fns: list[str]) -> dict[str, Any]:
    return {
        "subtasks": [
            {
                "id": str(i),
                "title": f"{fn} module",
                "description": f"calc_{fn}.py with {fn}() and its test",
                "files": [f"calc_{fn}.py", f"tests/test_calc_{fn}.py"],
                "requirement_ids": ["F1", "F2", "F3"],
            }
            for i, fn in enumerate(fns, start=1)
        ]
    }


def _model(tmp_path: Path, replies: list[dict[str, Any]]) -> str:
    replies = [{"role": "planner", "when": ["return a Scope"], "structured": SCOPE}, *replies]
    path = tmp_path / "transcript.json"
    path.write_text(json.dumps({"reply": replies}))
    return f"scripted:{path}"


def _scope_file(tmp_path: Path, text: str = "Build calc: add, sub and mul.\n") -> Path:
    path = tmp_path / "scope.md"
    path.write_text(text)
    return path


def _events(ws: Path) -> list[dict[str, Any]]:
    lines = (ws / ".oldnew" / "events.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def _task_commits(ws: Path) -> list[str]:
    out = subprocess.run(
        ["git", "log", "--reverse", "--format=%(trailers:key=Oldnew-Task,valueonly)"],
        cwd=ws,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [line.strip() for line in out.splitlines() if line.strip()]


async def _values(ws: Path) -> dict[str, Any]:
    w = Workspace.open(ws)
    async with open_graph(w) as graph:
        run_id = str((w.run_info() or {})["run_id"])
        snap = await graph.aget_state({"configurable": {"thread_id": run_id}})
        return dict(snap.values)


def test_cyclic_plan_is_sent_back_with_the_cycle_named_and_repaired(tmp_path: Path) -> None:
    cyclic = {"tasks": [_task("T1", ["T2"], ["F1", "F3"]), _task("T2", ["T1"], ["F2"])]}
    fixed = {"tasks": [_task("T1", [], ["F1", "F3"]), _task("T2", [], ["F2"])]}
    model = _model(
        tmp_path,
        [
            {"role": "planner", "when": ["into a Plan", "form a cycle: T"], "structured": fixed},
            {"role": "planner", "when": ["into a Plan"], "structured": cyclic},
            {"role": "coder", "when": ["TASK T1:"], "text": module("calc_add", "add")},
            {"role": "coder", "when": ["TASK T2:"], "text": module("calc_sub", "sub")},
        ],
    )
    ws = tmp_path / "ws"
    out = asyncio.run(start_run(_scope_file(tmp_path), ws, context={"model": model}))
    assert out.status == "delivered", out
    (rejected,) = [e for e in _events(ws) if e.get("node") == "plan" and e["event"] == "rejected"]
    (cycle,) = rejected["problems"]
    assert cycle.startswith("the dependencies form a cycle: T")
    assert "T1" in cycle and "T2" in cycle
    starts = [
        e["attempt"] for e in _events(ws) if e.get("node") == "plan" and e["event"] == "started"
    ]
    assert starts == [1, 2]


def test_task_failing_twice_is_split_and_its_dependents_rewired(tmp_path: Path) -> None:
    plan = {"tasks": [_task("T1"), {**_task("T2", ["T1"]), "files": ["README.md"]}]}
    model = _model(
        tmp_path,
        [
            {
                "role": "planner",
                "when": ["SPLIT TASK T1:", "failed 4 times"],
                "structured": _pieces(["add", "sub", "mul"]),
            },
            {"role": "planner", "when": ["into a Plan"], "structured": plan},
            {"role": "coder", "when": ["TASK T1:"], "text": FAILING},
            {"role": "fixer", "when": ["TASK T1:"], "text": FAILING},
            *(
                {"role": "coder", "when": [f"TASK T1.{i}:"], "text": module(f"calc_{fn}", fn)}
                for i, fn in enumerate(["add", "sub", "mul"], start=1)
            ),
            {"role": "coder", "when": ["TASK T2:"], "text": README},
        ],
    )
    ws = tmp_path / "ws"
    out = asyncio.run(
        start_run(_scope_file(tmp_path), ws, context={"model": model, "max_fix_rounds": 1})
    )
    assert out.status == "delivered", out
    assert [t["id"] for t in out.tasks] == ["T1.1", "T1.2", "T1.3", "T2"]
    values = asyncio.run(_values(ws))
    t2 = next(t for t in values["plan"]["tasks"] if t["id"] == "T2")
    assert t2["depends_on"] == ["T1.1", "T1.2", "T1.3"]
    assert values["split_from"] == {"T1.1": "T1", "T1.2": "T1", "T1.3": "T1"}
    assert "T1" not in values["tasks"] and values["plan_version"] == 1
    (req,) = [e for e in _events(ws) if e["event"] == "request_split"]
    assert req["task"] == "T1" and req["reason"] == "its validation failed 4 times"
    assert sorted(_task_commits(ws)[:3]) == ["T1.1", "T1.2", "T1.3"]
    assert _task_commits(ws)[3:] == ["T2"]
    assert run_traceability(values)["F1"]["tests"] == [
        "tests/test_calc_add.py",
        "tests/test_calc_mul.py",
        "tests/test_calc_sub.py",
    ]


def test_design_flaw_mid_run_is_replanned_keeping_finished_commits(tmp_path: Path) -> None:
    plan = {
        "tasks": [
            _task("T1", [], ["F1"]),
            _task("T2", ["T1"], ["F2"]),
            _task("T3", ["T1"], ["F3"]),
            {**_task("T4", ["T2"], ["F2"]), "files": ["README.md"]},
        ]
    }
    replanned = {
        "tasks": [
            _task("T5", ["T1"], ["F2"]),
            _task("T2", ["T5"], ["F2"]),
            {**_task("T4", ["T2"], ["F2"]), "files": ["README.md"]},
        ]
    }
    flaw = {
        "kind": "design_flaw",
        "question": "sub() needs a helper module that no task in the plan provides",
    }
    model = _model(
        tmp_path,
        [
            {
                "role": "planner",
                "when": [
                    "A DESIGN FLAW WAS FOUND",
                    "no task in the plan provides",
                    "- T1 [done]",
                    "- T3 [done]",
                    "- T4:",
                ],
                "structured": replanned,
            },
            {"role": "planner", "when": ["into a Plan"], "structured": plan},
            {"role": "coder", "when": ["TASK T1:"], "text": module("calc_add", "add")},
            {"role": "coder", "when": ["TASK T2:"], "tool": "AskHuman", "args": flaw},
            {"role": "coder", "when": ["TASK T3:"], "text": module("calc_mul", "mul")},
            {"role": "coder", "when": ["TASK T5:"], "text": module("calc_help", "add")},
            {"role": "coder", "when": ["TASK T2-r1:"], "text": module("calc_sub", "sub")},
            {"role": "coder", "when": ["TASK T4:"], "text": README},
        ],
    )
    ws = tmp_path / "ws"
    out = asyncio.run(start_run(_scope_file(tmp_path), ws, context={"model": model}))
    assert out.status == "delivered", out
    assert {t["id"] for t in out.tasks} == {"T1", "T3", "T5", "T2-r1", "T4"}
    events = _events(ws)
    (replan,) = [e for e in events if e["event"] == "replanned"]
    assert replan["removed"] == ["T2", "T4"] and replan["renamed"] == {"T2": "T2-r1"}
    commits = [e for e in events if e.get("node") == "commit" and e["event"] == "committed"]
    by_task: dict[str, list[str]] = {}
    for e in commits:
        by_task.setdefault(e["task"], []).append(e["commit"])
    assert {t: len(c) for t, c in by_task.items()} == {
        t: 1 for t in ("T1", "T3", "T5", "T2-r1", "T4")
    }
    coded = [e["task"] for e in events if e.get("node") == "code" and e["event"] == "started"]
    assert coded.count("T1") == 1 and coded.count("T3") == 1  # finished tasks never re-ran
    final = {t["id"]: t["commit"] for t in out.tasks}
    assert final["T1"] == by_task["T1"][0] and final["T3"] == by_task["T3"][0]
    assert _task_commits(ws)[:2] == ["T1", "T3"]
    values = asyncio.run(_values(ws))
    assert values["replans"] == 1 and values["plan_version"] == 1
    assert not [q for q in values["questions"].values() if q["kind"] == "design_flaw"]


def slow_module(name: str, fn: str) -> str:
    """Return ``module(name, fn)`` whose test takes far too long: the task's own work is slow.

    (A slow model would not do: the time limit does not count waits for the model.)
    """
    return module(name, fn).replace(
        f"def test_{fn}():\n", f"def test_{fn}():\n    __import__('time').sleep(14)\n"
    )


def test_task_past_its_time_limit_is_stopped_and_split(tmp_path: Path) -> None:
    plan = {"tasks": [_task("T1"), {**_task("T2", ["T1"]), "files": ["README.md"]}]}
    spec = _model(
        tmp_path,
        [
            {
                "role": "planner",
                "when": ["SPLIT TASK T1:", "past the 10 s limit"],
                "structured": _pieces(["add", "sub", "mul"]),
            },
            {"role": "planner", "when": ["into a Plan"], "structured": plan},
            {"role": "coder", "when": ["TASK T1:"], "text": slow_module("calc", "add")},
            *(
                {"role": "coder", "when": [f"TASK T1.{i}:"], "text": module(f"calc_{fn}", fn)}
                for i, fn in enumerate(["add", "sub", "mul"], start=1)
            ),
            {"role": "coder", "when": ["TASK T2:"], "text": README},
        ],
    )
    ws = tmp_path / "ws"
    context = {"model": spec, "task_time_limit": 10.0}
    out = asyncio.run(start_run(_scope_file(tmp_path), ws, context=context))
    assert out.status == "delivered", out
    assert [t["id"] for t in out.tasks] == ["T1.1", "T1.2", "T1.3", "T2"]
    # (The pieces cannot be split again: past the limit they would be stopped and escalated,
    # so the limit leaves room for a validation on a busy machine.)
    (req,) = [e for e in _events(ws) if e["event"] == "request_split" and e["task"] == "T1"]
    assert "past the 10 s limit" in req["reason"]
    assert not (ws / ".oldnew" / "worktrees" / "T1").exists()


def test_scope_with_nothing_to_build_asks_for_a_description(tmp_path: Path) -> None:
    nothing = {"title": "hello", "summary": "A greeting.", "unknowns": ["it asks for no software"]}
    plan = {"tasks": [{**_task("T1", [], ["F1"]), "files": ["calc_add.py"]}]}
    replies = [
        {
            "role": "planner",
            "when": ["Clarifications from the person", "add two numbers"],
            "structured": {**SCOPE, "features": SCOPE["features"][:1]},
        },
        {"role": "planner", "when": ["SCOPE DOCUMENT"], "structured": nothing},
        {"role": "planner", "when": ["into a Plan"], "structured": plan},
        {"role": "coder", "when": ["TASK T1:"], "text": module("calc_add", "add")},
    ]
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"reply": replies}))
    ctx = {"model": f"scripted:{path}"}
    ws = tmp_path / "ws"
    out = asyncio.run(start_run(_scope_file(tmp_path, "hello there, friend"), ws, context=ctx))
    assert out.status == "waiting"
    (q,) = out.questions
    assert q["kind"] == "scope_unclear" and "names nothing to build" in q["title"]
    assert "it asks for no software" in q["detail"]
    out = asyncio.run(resume_run(ws, answers={q["id"]: "A calculator: add two numbers."}))
    assert out.status == "delivered", out
    # The same question answered with 'abort' stops the run with a report.
    ws2 = tmp_path / "ws2"
    out = asyncio.run(start_run(_scope_file(tmp_path, "hello there, friend"), ws2, context=ctx))
    out = asyncio.run(resume_run(ws2, answers={out.questions[0]["id"]: "abort"}))
    assert out.status == "aborted"
    assert json.loads((ws2 / ".oldnew" / "report.json").read_text())["status"] == "aborted"


def test_monster_scope_through_the_graph_stops_at_execute_with_a_phased_plan(
    tmp_path: Path,
) -> None:
    from langgraph.checkpoint.memory import InMemorySaver
    from synthetic import CountingModel, monster, scope_text

    from oldnew import Context, build_graph

    scope, replies = monster(120)
    model = CountingModel.from_replies(replies, tmp_path)
    graph = build_graph(models=model, checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "big"}}
    ctx = Context(workspace=str(tmp_path / "ws"))

    async def go() -> dict[str, Any]:
        await graph.ainvoke(
            {"scope_text": scope_text(scope)}, config, context=ctx, interrupt_before=["execute"]
        )
        return dict((await graph.aget_state(config)).values)

    values = asyncio.run(go())
    plan = values["plan"]
    assert values["complexity"]["cls"] == "monster" and len(plan["tasks"]) >= 100
    assert [p["name"] for p in plan["phases"]] == ["mvp", "enhanced", "polish"]
    reqs = {
        r["id"]
        for kind in ("features", "integrations", "pages", "data_models", "api_endpoints")
        for r in values["scope"][kind]
    }
    assert set(run_traceability(values)) == reqs and len(reqs) == 166
    assert all(t["tasks"] for t in run_traceability(values).values())
    assert len(values["tasks"]) == len(plan["tasks"]) and values["plan_problems"] == []
    assert model.stats["calls"] == 1 + 1 + len(plan["epics"]) + 1
