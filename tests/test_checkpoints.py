"""The run's checkpoint saver reads back exactly what LangGraph's SQLite saver does, smaller.

A small graph (a large value set once, a reducer, parallel nodes, a node that fails once, an
interrupt, a fork) runs on ``CheckpointSaver`` while every write is mirrored to the stock
``AsyncSqliteSaver``: both must then return the same tuples, history and state. A file the
stock saver wrote (an earlier release) opens and resumes.
"""

from __future__ import annotations

import asyncio
import copy
import operator
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Annotated, Any

import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt
from typing_extensions import TypedDict

from oldnew.checkpoints import FORMAT, CheckpointSaver, stored_bytes
from oldnew.errors import CheckpointsCorrupt

BIG = "the plan " * 2000


class S(TypedDict, total=False):
    big: str
    log: Annotated[list[str], operator.add]
    n: int


class Flaky:
    """Fails the first time it runs (a node's error is a pending write of its checkpoint)."""

    def __init__(self) -> None:
        self.failed = False

    def __call__(self, state: S) -> S:
        if not self.failed:
            self.failed = True
            raise RuntimeError("transient")
        return {"log": ["b"]}


def _graph(saver: Any, flaky: Flaky) -> Any:
    def start(state: S) -> S:
        return {"big": BIG, "log": ["start"], "n": 0}

    def step(state: S) -> S:
        return {"log": [f"step{state['n']}"], "n": state["n"] + 1}

    def ask(state: S) -> S:
        return {"log": [f"answer {interrupt('go on?')}"]}

    g = StateGraph(S)
    g.add_node("start", start)
    g.add_node("a", lambda s: {"log": ["a"]})
    g.add_node("b", flaky)
    g.add_node("step", step)
    g.add_node("ask", ask)
    g.add_edge(START, "start")
    g.add_edge("start", "a")
    g.add_edge("start", "b")
    g.add_edge(["a", "b"], "step")
    g.add_conditional_edges("step", lambda s: "step" if s["n"] < 3 else "ask")
    g.add_edge("ask", END)
    return g.compile(checkpointer=saver)


class Mirrored(CheckpointSaver):
    """Writes every checkpoint and write to a stock saver too, as LangGraph hands them over."""

    stock: AsyncSqliteSaver

    async def aput(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
        """Save to both."""
        await self.stock.aput(config, copy.deepcopy(checkpoint), metadata, new_versions)
        return await super().aput(config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self, config: Any, writes: Any, task_id: str, task_path: str = ""
    ) -> None:
        """Store in both."""
        await self.stock.aput_writes(config, writes, task_id, task_path)
        await super().aput_writes(config, writes, task_id, task_path)


async def _story(graph: Any, config: RunnableConfig) -> None:
    with pytest.raises(RuntimeError, match="transient"):
        await graph.ainvoke({"log": []}, config)
    await graph.ainvoke(None, config)  # b again; a's write is taken from the checkpoint
    await graph.ainvoke(Command(resume="yes"), config)


def _same(mine: list[Any], stock: list[Any]) -> None:
    assert len(mine) == len(stock) > 5
    for ours, theirs in zip(mine, stock, strict=True):
        assert ours == theirs
        assert list(ours.checkpoint["channel_values"]) == list(theirs.checkpoint["channel_values"])


def test_reads_back_what_the_stock_saver_does(tmp_path: Path) -> None:
    async def story() -> tuple[list[Any], list[Any], Any, Any, int]:
        config: RunnableConfig = {"configurable": {"thread_id": "t"}}
        async with (
            Mirrored.from_conn_string(str(tmp_path / "ours.sqlite")) as ours,
            AsyncSqliteSaver.from_conn_string(str(tmp_path / "stock.sqlite")) as stock,
        ):
            ours.stock = stock
            graph = _graph(ours, Flaky())
            await _story(graph, config)
            # A fork: back to a checkpoint before the pause, updated, run on from there.
            history = [s async for s in graph.aget_state_history(config)]
            at_ask = next(s for s in history if s.next == ("ask",))
            forked = await graph.aupdate_state(at_ask.config, {"log": ["forked"]})
            await graph.ainvoke(None, forked)
            await graph.ainvoke(Command(resume="again"), config)
            mine = [t async for t in ours.alist(None)]
            theirs = [t async for t in stock.alist(None)]
            state = await graph.aget_state(config)
            stock_state = await _graph(stock, Flaky()).aget_state(config)
            channels = ["log", "big"]
            delta = await ours.aget_delta_channel_history(config=config, channels=channels)
            assert delta == await stock.aget_delta_channel_history(config=config, channels=channels)
            filtered = [t async for t in ours.alist(config, filter={"source": "update"})]
            assert len(filtered) == 1
            with closing(sqlite3.connect(tmp_path / "ours.sqlite")) as db:
                stored = db.execute("SELECT count(*) FROM blobs").fetchone()[0]
            return mine, theirs, state, stock_state, stored

    mine, theirs, state, stock_state, blobs = asyncio.run(story())
    _same(mine, theirs)
    assert any(w[1] == "__error__" for t in mine for w in t.pending_writes)
    assert any(w[1] == "__interrupt__" for t in mine for w in t.pending_writes)
    assert state.values == stock_state.values and state.values["log"][-1] == "answer again"
    assert state.next == stock_state.next == ()
    assert blobs == 1  # BIG, in a dozen checkpoints, stored once
    ours, stock = stored_bytes(tmp_path / "ours.sqlite"), stored_bytes(tmp_path / "stock.sqlite")
    assert ours["file"] == (tmp_path / "ours.sqlite").stat().st_size  # closed: no WAL left
    assert ours["file"] < stock["file"] / 2
    assert ours["blobs"] < ours["file"] and "blobs" not in stock


def test_a_file_of_the_stock_saver_opens_and_resumes(tmp_path: Path) -> None:
    path = str(tmp_path / "old.sqlite")
    config: RunnableConfig = {"configurable": {"thread_id": "t"}}

    async def earlier_release() -> list[Any]:
        async with AsyncSqliteSaver.from_conn_string(path) as stock:
            graph = _graph(stock, Flaky())
            with pytest.raises(RuntimeError):
                await graph.ainvoke({"log": []}, config)
            await graph.ainvoke(None, config)  # now paused at ask
            return [t.config async for t in stock.alist(None)]

    async def this_release() -> Any:
        async with CheckpointSaver.from_conn_string(path) as ours:
            graph = _graph(ours, Flaky())
            assert (await graph.aget_state(config)).next == ("ask",)
            await graph.ainvoke(Command(resume="yes"), config)
            return await graph.aget_state(config), [t async for t in ours.alist(None)]

    async def read_old(configs: list[Any]) -> tuple[list[Any], list[Any]]:
        async with (
            AsyncSqliteSaver.from_conn_string(path) as stock,
            CheckpointSaver.from_conn_string(path) as ours,
        ):
            return (
                [await stock.aget_tuple(c) for c in configs],
                [await ours.aget_tuple(c) for c in configs],
            )

    old = asyncio.run(earlier_release())
    state, history = asyncio.run(this_release())
    assert state.values["log"] == ["start", "a", "b", "step0", "step1", "step2", "answer yes"]
    assert state.values["big"] == BIG and state.next == ()
    assert len(history) > len(old)
    theirs, mine = asyncio.run(read_old(old))
    _same(mine, theirs)  # old rows (and the resume written beside them) read as they are
    rows = sqlite3.connect(path).execute("SELECT type FROM checkpoints").fetchall()
    assert {t.startswith(FORMAT) for (t,) in rows} == {True, False}


def test_deleting_a_thread_deletes_its_values_and_writes(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"

    async def story() -> None:
        async with CheckpointSaver.from_conn_string(str(path)) as ours:
            for thread in ("t", "u"):
                config: RunnableConfig = {"configurable": {"thread_id": thread}}
                with pytest.raises(RuntimeError):
                    await _graph(ours, Flaky()).ainvoke({"log": []}, config)
            await ours.adelete_thread("t")
            assert await ours.aget_tuple({"configurable": {"thread_id": "t"}}) is None
            assert await ours.aget_tuple({"configurable": {"thread_id": "u"}}) is not None

    asyncio.run(story())
    db = sqlite3.connect(path)
    for table in ("checkpoints", "blobs", "packed_writes"):
        threads = {t for (t,) in db.execute(f"SELECT DISTINCT thread_id FROM {table}")}
        assert threads == {"u"}, table


def test_a_missing_value_is_reported_as_damage(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    config: RunnableConfig = {"configurable": {"thread_id": "t"}}

    async def run() -> None:
        async with CheckpointSaver.from_conn_string(str(path)) as ours:
            with pytest.raises(RuntimeError):
                await _graph(ours, Flaky()).ainvoke({"log": []}, config)

    async def read() -> None:
        async with CheckpointSaver.from_conn_string(str(path)) as ours:
            await ours.aget_tuple(config)

    asyncio.run(run())
    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM blobs")
    with pytest.raises(CheckpointsCorrupt, match="missing from its file.*big"):
        asyncio.run(read())
