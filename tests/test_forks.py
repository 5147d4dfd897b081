"""Forks of a run (time travel), in process: task threads and the run's branch follow them.

The server-side story (langgraph-sdk against ``langgraph dev``) is in tests/test_server.py;
here the logic, on FunctionModel and an in-memory saver.
"""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import BaseMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import ExecutionInfo, Runtime
from langgraph.types import Command, interrupt
from synthetic import planned_run
from typing_extensions import TypedDict

from oldnew import build_graph
from oldnew.errors import WorkspaceError
from oldnew.execution.lineage import lineage_key, lineage_of, restore_branch
from oldnew.execution.streams import subgraph_relay
from oldnew.execution.threads import TaskThreads, task_thread_id
from oldnew.testing import CallInfo, call_tool, prompt_text
from oldnew.workspace import Workspace

SCOPE = {"title": "greet", "summary": "s", "features": [{"id": "F1", "title": "greeting"}]}
PLAN = {
    "tasks": [
        {
            "id": "T1",
            "title": "greeting",
            "description": "greet.py with greet() and its test",
            "files": ["greet.py", "tests/test_greet.py"],
            "requirement_ids": ["F1"],
        },
        {
            "id": "T2",
            "title": "shout",
            "description": "shout.py with shout() built on greet(), and its test",
            "files": ["shout.py", "tests/test_shout.py"],
            "requirement_ids": ["F1"],
            "depends_on": ["T1"],
        },
    ]
}
SHOUT = (
    "FILE: shout.py\n```python\nfrom greet import greet\n\n\ndef shout() -> str:\n"
    "    return greet().upper()\n```\nFILE: tests/test_shout.py\n```python\n"
    "from shout import shout\n\n\ndef test_shout() -> None:\n    assert shout()\n```\n"
)


def _runtime(checkpoint_id: str) -> Runtime[Any]:
    info = ExecutionInfo(checkpoint_id=checkpoint_id, checkpoint_ns="execute:x", task_id="x")
    return Runtime(execution_info=info)


def test_task_threads_belong_to_the_checkpoint_lineage() -> None:
    fresh = lineage_of({"plan_version": 1}, _runtime("c1"))
    assert fresh == {"plan_version": 1, "key": "c1"}
    # Later steps of one lineage (after an answer, a milestone) keep the key.
    assert lineage_of({"plan_version": 1, "lineage": fresh}, _runtime("c7")) == fresh
    # A new plan version, or a fork that never ran execute, takes its own.
    assert lineage_of({"plan_version": 2, "lineage": fresh}, _runtime("c9"))["key"] == "c9"
    assert lineage_of({"plan_version": 1}, _runtime("c2"))["key"] == "c2"
    # A reader of a run whose first execute is under way finds it at the run's checkpoint.
    assert lineage_key({"plan_version": 2, "lineage": fresh}, "c9") == "c9"
    # A run saved before lineages (its tasks ran, no lineage recorded) keeps its threads.
    legacy = {"plan_version": 1, "tasks": {"T1": {"status": "done"}}}
    assert lineage_of(legacy, _runtime("c5"))["key"] == "plan-1"  # type: ignore[arg-type]
    assert task_thread_id("run", "plan-1", "T1", "c5") == task_thread_id("run", "plan-1", "T1")
    # A task first started by another step of the lineage is on a thread of its own.
    assert task_thread_id("run", "c1", "T2", "c1") != task_thread_id("run", "c1", "T2", "c3")
    # Two runs on one thread (two lineages) never share a task's thread.
    assert task_thread_id("run", "c1", "T1") != task_thread_id("run", "c2", "T1")
    assert task_thread_id("run", "c1", "T1") == task_thread_id("run", "c1", "T1")


class _Asks(TypedDict, total=False):
    answer: str


def _asking_graph() -> Any:
    def ask(state: _Asks) -> dict[str, Any]:
        return {"answer": str(interrupt({"id": "q"}))}

    g = StateGraph(_Asks)
    g.add_node("ask", ask)
    g.add_edge(START, "ask")
    g.add_edge("ask", END)
    return g.compile()


def test_a_task_thread_branches_only_when_another_step_moved_it() -> None:
    saver = InMemorySaver()

    async def story() -> tuple[bool, bool, bool, str]:
        threads = TaskThreads(_asking_graph(), "run", "c1", saver, step="s1")
        await threads.graph.ainvoke({"answer": "none yet"}, threads.config("T1"))
        head = (await threads.inspect("T1")).head
        await threads.graph.ainvoke(Command(resume="one"), threads.config("T1"))
        # The same step running again (a crash, then a resume) goes on from the latest.
        rerun = await TaskThreads(_asking_graph(), "run", "c1", saver, step="s1").fork_moved(
            "T1", head
        )
        # Another step finds the task where the run's state says it started.
        started = {"T1": threads.thread_id("T1")}
        forked = TaskThreads(_asking_graph(), "run", "c1", saver, step="s2", started=started)
        moved = await forked.fork_moved("T1", head)
        view = await forked.inspect("T1")
        same = await forked.fork_moved("T1", view.head)
        return rerun, moved, same and view.stage == "waiting", str(view.head)

    rerun, moved, still_forked, at = asyncio.run(story())
    assert (rerun, moved, still_forked) == (False, True, True), at


def test_task_updates_reach_a_subgraph_stream_under_the_task_namespace() -> None:
    """Fails if LangGraph stops handing nodes its stream under CONFIG_KEY_STREAM."""
    seen: list[bool] = []

    def node(state: _Asks, config: RunnableConfig) -> dict[str, Any]:
        relay = subgraph_relay(config)
        seen.append(relay is not None)
        if relay is not None:
            relay("T1", "updates", {"code": {"status": "validating"}})
            relay("T1", "values", {"ignored": True})  # a mode the caller did not ask for
        return {"answer": "done"}

    g = StateGraph(_Asks)
    g.add_node("execute", node)
    g.add_edge(START, "execute")
    graph = g.compile()

    async def chunks(subgraphs: bool) -> list[Any]:
        return [c async for c in graph.astream({}, stream_mode="updates", subgraphs=subgraphs)]

    nested = asyncio.run(chunks(True))
    assert [(ns[1:], c) for ns, c in nested] == [
        (("task:T1",), {"code": {"status": "validating"}}),
        ((), {"execute": {"answer": "done"}}),
    ]
    assert nested[0][0][0].startswith("execute:")
    assert asyncio.run(chunks(False)) == [{"execute": {"answer": "done"}}]
    assert seen == [True, False]


def _git(ws: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(ws), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def _refuse(ws: Workspace) -> None:
    raise WorkspaceError("the run's branch is checked out elsewhere")


def _commit(ws: Workspace, name: str, author: str = "oldnew") -> str:
    (ws.root / name).write_text(name, encoding="utf-8")
    ws.git("add", name)
    ws.git("-c", f"user.name={author}", "commit", "-q", "-m", name)
    return ws.head()


def test_a_fork_puts_the_branch_back_and_keeps_what_it_held(tmp_path: Path) -> None:
    ws = Workspace.ensure(tmp_path / "ws", "run", dict)
    at_fork = ws.head()
    state: Any = {"main_head": at_fork}
    assert restore_branch(ws, state, "s1") is None  # a node starts from step s1 ...
    later = _commit(ws, "later.txt")  # ... commits, and the process dies
    # The step that made the commit, run again after a crash, keeps it.
    assert restore_branch(ws, state, "s1") is None and ws.head() == later
    # A restore that fails half-way (the branch checked out elsewhere, say) is tried again.
    real_hold = Workspace.hold_branch
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Workspace, "hold_branch", _refuse)
        with pytest.raises(WorkspaceError):
            restore_branch(ws, state, "s2")
    assert Workspace.hold_branch is real_hold and ws.head() == later
    kept = restore_branch(ws, state, "s2")
    assert kept == f"oldnew/fork/{later[:12]}" and ws.head() == at_fork
    assert _git(ws.root, "rev-parse", kept) == later
    assert not (ws.root / "later.txt").exists()
    # A person's commit on the branch is theirs: never moved.
    mine = _commit(ws, "mine.txt", author="Ada")
    assert restore_branch(ws, state, "s3") is None and ws.head() == mine
    # A commit of another workspace (another run on the thread) is not this one's to restore.
    assert restore_branch(ws, {"main_head": "0" * 40}, "s4") is None  # type: ignore[typeddict-item]


def _code(choice: str) -> str:
    return (
        f"FILE: greet.py\n```python\ndef greet() -> str:\n    return {choice!r}\n```\n"
        "FILE: tests/test_greet.py\n```python\nfrom greet import greet\n\n\n"
        f"def test_greet() -> None:\n    assert greet() == {choice!r}\n```\n"
    )


def _coder(messages: list[BaseMessage], info: CallInfo) -> Any:
    text = prompt_text(messages)
    for choice in ("hello", "howdy"):
        if f"Answer: {choice}" in text:
            return _code(choice)
    question = {
        "kind": "design_decision",
        "question": "Which greeting?",
        "options": ["hello", "howdy"],
    }
    return call_tool("AskHuman", question)


@pytest.mark.usefixtures("smoke_gates")
def test_forks_rerun_the_work_after_the_fork_point(tmp_path: Path) -> None:
    graph = build_graph(
        models=planned_run(SCOPE, PLAN, code={"T1": _coder, "T2": SHOUT}),
        checkpointer=InMemorySaver(),
    )
    ws = tmp_path / "ws"
    config: Any = {"configurable": {"thread_id": str(uuid.uuid4())}}
    ctx: Any = {"workspace": str(ws)}

    async def story() -> dict[str, Any]:
        await graph.ainvoke({"scope_text": "Greet people."}, config, context=ctx)
        await graph.ainvoke(Command(resume={"T1-q1": "hello"}), config, context=ctx)
        out: dict[str, Any] = {"first": (await graph.aget_state(config)).values}
        out["first_main"] = _git(ws, "rev-parse", "main")
        history = [h async for h in graph.aget_state_history(config)]
        at_pause = next(h for h in history if h.next == ("human",) and h.interrupts)
        # A fork at the pause: its replay asks again, and the other answer reaches the code.
        await graph.ainvoke(None, at_pause.config, context=ctx)
        out["asked"] = await graph.aget_state(config)
        await graph.ainvoke(Command(resume={"T1-q1": "howdy"}), config, context=ctx)
        out["second"] = (await graph.aget_state(config)).values
        out["second_main"] = _git(ws, "rev-parse", "main")
        out["second_code"] = (ws / "greet.py").read_text(encoding="utf-8")
        out["second_shout"] = (ws / "shout.py").is_file()
        out["second_log"] = _git(ws, "log", "--format=%H", "main").split()
        # A fork after the plan: T1 runs again on a thread of its own (and asks again).
        after_plan = next(h for h in reversed(history) if h.values.get("plan"))
        await graph.ainvoke(None, after_plan.config, context=ctx)
        out["third"] = (await graph.aget_state(config)).values
        out["third_main"] = _git(ws, "rev-parse", "main")
        return out

    out = asyncio.run(story())
    first, second = out["first"], out["second"]
    assert first["status"] == second["status"] == "delivered", (first, second)
    assert out["asked"].next == ("human",)
    assert second["lineage"] == first["lineage"]  # the same lineage: T1 branched, not re-made
    assert second["tasks"]["T1"]["thread"] == first["tasks"]["T1"]["thread"]
    assert second["tasks"]["T1"]["commit"] != first["tasks"]["T1"]["commit"]
    assert "return 'howdy'" in out["second_code"]
    # T2 had not started at the pause: the fork runs it afresh on a thread of its own, and
    # its commit is on the fork's main (not the one the other branch of the run made).
    assert second["tasks"]["T2"]["thread"] != first["tasks"]["T2"]["thread"]
    assert second["tasks"]["T2"]["commit"] != first["tasks"]["T2"]["commit"]
    assert second["tasks"]["T2"]["commit"] in out["second_log"] and out["second_shout"], out
    kept = f"oldnew/fork/{out['first_main'][:12]}"
    assert "return 'hello'" in _git(ws, "show", f"{kept}:greet.py")
    assert second["main_head"] == out["second_main"]
    third = out["third"]
    assert third["lineage"] != first["lineage"] and third["tasks"]["T1"]["status"] == "waiting"
    assert third["tasks"]["T1"]["thread"] != first["tasks"]["T1"]["thread"]
    assert third["main_head"] == out["third_main"] != out["second_main"]
    assert _git(ws, "rev-parse", f"oldnew/fork/{out['second_main'][:12]}") == out["second_main"]
    assert not (ws / "greet.py").exists()  # main is back where the plan left it
