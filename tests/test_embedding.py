"""oldnew embedded: as a host graph's node under the host's context, as an agent's tool."""

from __future__ import annotations

import asyncio
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

import pytest
from langchain_core.messages import BaseMessage, ToolMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, StateGraph
from langgraph.types import Command
from pydantic import BaseModel
from typing_extensions import TypedDict

from oldnew import Context, as_tool, build_graph, context_of
from oldnew.errors import ConfigurationError
from oldnew.graph.state import PAUSED, RunStatus
from oldnew.testing import CallInfo, FunctionModel, call_tool

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "todo"
ANSWER = {"T3-q1": "~/.todo.json"}


@dataclass
class HostCtx:
    """A host app's own context, carrying oldnew's settings under ``oldnew``."""

    user: str = "ada"
    oldnew: Context = field(default_factory=Context)


@dataclass
class LockedCtx:
    workspace: str = "/tmp/ws"
    lock: Any = field(default_factory=threading.Lock)


@dataclass
class SharedCtx:
    """A host context that names some of oldnew's settings as its own fields."""

    user: str = "ada"
    workspace: str = "/tmp/ws"
    max_fix_rounds: int = 1


class PydanticCtx(BaseModel):
    """A host context as a Pydantic model, sharing one field with oldnew's."""

    user: str = "ada"
    quality: str = "fast"


@dataclass
class BareCtx:
    """A host context with nothing of oldnew's."""

    user: str = "ada"


class HostState(TypedDict, total=False):
    """The host's state: the keys it shares with oldnew's input and output."""

    scope_text: str
    status: str
    tasks: dict[str, Any]
    report: str | None


def test_context_of_takes_what_the_runtime_carries() -> None:
    own = Context(model="scripted:x.toml")
    assert context_of(own) is own
    assert context_of(None) == Context()
    assert context_of(HostCtx(oldnew=own)) is own
    assert context_of({"oldnew": {"max_agents": 2}, "user": "ada"}).max_agents == 2
    assert context_of({"workspace": "/tmp/w", "gates": "mvp"}).approvals == "mvp"
    shared = context_of(SharedCtx())
    assert (shared.workspace, shared.max_fix_rounds) == ("/tmp/ws", 1)
    # A host's context may hold what cannot be copied (a lock, a client): read, not copied.
    assert context_of(LockedCtx()).workspace == "/tmp/ws"
    assert context_of(PydanticCtx()).quality == "fast"


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (BareCtx(), "BareCtx) carries none of oldnew's settings"),
        ({"workspace": "/w", "user": "ada"}, "'user', not settings of oldnew"),
        ({"oldnew": {"modle": "x"}}, "the host context's 'oldnew' names 'modle'"),
        (HostCtx(oldnew="openai:gpt-4o"), "the host context's 'oldnew' is a str: pass"),  # type: ignore[arg-type]
        (object(), "object) carries none of oldnew's settings"),
    ],
)
def test_context_of_names_what_is_missing_and_how_to_pass_it(value: object, says: str) -> None:
    with pytest.raises(ConfigurationError, match="'oldnew' attribute or key") as caught:
        context_of(value)
    assert says in str(caught.value)


def test_one_name_for_a_paused_run() -> None:
    assert PAUSED == "waiting" and PAUSED in get_args(RunStatus)


def _host(graph: Any) -> Any:
    host = StateGraph(HostState, context_schema=HostCtx)
    host.add_node("oldnew", graph)
    host.add_edge(START, "oldnew")
    return host.compile(checkpointer=InMemorySaver())


def test_a_host_without_oldnews_settings_gets_a_clear_error() -> None:
    host = StateGraph(HostState, context_schema=BareCtx)
    host.add_node("oldnew", build_graph())
    host.add_edge(START, "oldnew")
    graph = host.compile(checkpointer=InMemorySaver())
    config: Any = {"configurable": {"thread_id": "h0"}}
    with pytest.raises(ConfigurationError, match="BareCtx\\) carries none of oldnew's"):
        asyncio.run(graph.ainvoke({"scope_text": "a todo app"}, config, context=BareCtx()))


@pytest.mark.usefixtures("smoke_gates")
def test_oldnew_as_a_subgraph_of_a_host_with_its_own_context(
    tmp_path: Path, example_model: str
) -> None:
    ctx = HostCtx(oldnew=Context(model=example_model, workspace=str(tmp_path / "ws")))
    host = _host(build_graph())
    config: Any = {"configurable": {"thread_id": "h1"}, "recursion_limit": 500}
    scope = (EXAMPLE / "scope.md").read_text(encoding="utf-8")

    async def run() -> tuple[dict[str, Any], Any, dict[str, Any]]:
        paused = await host.ainvoke({"scope_text": scope}, config, context=ctx)
        snap = await host.aget_state(config, subgraphs=True)
        done = await host.ainvoke(Command(resume=ANSWER), config, context=ctx)
        return paused, snap, done

    paused, snap, done = asyncio.run(run())
    asked = [q["id"] for i in paused["__interrupt__"] for q in i.value["questions"]]
    assert asked == ["T3-q1"]
    inner = snap.tasks[0].state
    assert inner is not None and inner.values["status"] == PAUSED  # the API's name, the CLI's
    assert done["status"] == "delivered"
    assert {t["id"]: t["status"] for t in done["tasks"].values()} == dict.fromkeys(
        ("T1", "T2", "T3"), "done"
    )
    assert (tmp_path / "ws" / ".oldnew" / "report.json").is_file()


def _agent(model: FunctionModel, tool: Any) -> Any:
    """Return a LangChain agent: ``langchain.agents.create_agent`` when installed."""
    try:
        from langchain.agents import create_agent  # type: ignore[import-not-found]
    except ImportError:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # create_react_agent: moved to langchain.agents
            from langgraph.prebuilt import create_react_agent

            return create_react_agent(model, [tool], checkpointer=InMemorySaver())
    return create_agent(model, [tool], checkpointer=InMemorySaver())


@pytest.mark.usefixtures("smoke_gates")
def test_an_agent_calls_oldnew_as_a_tool_gets_its_question_and_resumes_it(
    tmp_path: Path, example_model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the tool's workspace: runs/<thread>-<tool call> here
    scope = (EXAMPLE / "scope.md").read_text(encoding="utf-8")

    def agent_model(messages: list[BaseMessage], info: CallInfo) -> Any:
        results = [m for m in messages if isinstance(m, ToolMessage)]
        if not results:
            return call_tool("oldnew", {"scope": scope})
        return f"Built it. {results[-1].content}"

    tool = as_tool(context=Context(model=example_model))
    assert set(tool.tool_call_schema.model_json_schema()["properties"]) == {"scope"}
    agent = _agent(FunctionModel(fn=agent_model), tool)
    config: Any = {"configurable": {"thread_id": "a1"}, "recursion_limit": 500}

    async def run() -> tuple[dict[str, Any], dict[str, Any]]:
        paused = await agent.ainvoke({"messages": [("user", "build the todo app")]}, config)
        return paused, await agent.ainvoke(Command(resume=ANSWER), config)

    paused, done = asyncio.run(run())
    questions = [q for i in paused["__interrupt__"] for q in i.value["questions"]]
    assert [q["id"] for q in questions] == ["T3-q1"]
    assert questions[0]["recommended"] == "~/.todo.json"
    assert "__interrupt__" not in done
    reply = done["messages"][-1].content
    assert reply.startswith("Built it. oldnew run delivered; workspace ")
    assert "T3 Command-line interface: done" in reply
    (workspace,) = (tmp_path / "runs").iterdir()
    assert workspace.name.startswith("a1-")
    cli = (workspace / "todo" / "cli.py").read_text(encoding="utf-8")
    assert "~/.todo.json" in cli  # the answer reached the code


def test_the_pause_says_waiting_and_an_older_checkpoints_pause_still_resumes(
    tmp_path: Path,
) -> None:
    from oldnew.graph.state import RunState
    from oldnew.nodes.human import ask, human
    from oldnew.schemas import Question

    g = StateGraph(RunState, context_schema=Context)
    g.add_node("ask", ask)  # type: ignore[arg-type]
    g.add_node("human", human)  # type: ignore[arg-type]
    g.add_edge(START, "ask")
    g.add_edge("ask", "human")
    graph = g.compile(checkpointer=InMemorySaver())
    q = Question(id="T1-q1", kind="configuration", task_id="T1", title="Which file?")
    start: Any = {
        "scope": {"title": "x"},
        "plan": {"tasks": []},
        "questions": {q.id: q.model_dump()},
    }
    config: Any = {"configurable": {"thread_id": "p1"}}
    ctx = Context(workspace=str(tmp_path / "ws"), memory_path="off")

    async def run() -> tuple[Any, Any, dict[str, Any]]:
        await graph.ainvoke(start, config, context=ctx)
        paused = await graph.aget_state(config)
        # As an older version left its pause: the status said where the run was.
        await graph.aupdate_state(config, {"status": "executing"}, as_node="ask")
        legacy = await graph.aget_state(config)
        return (
            paused,
            legacy,
            await graph.ainvoke(Command(resume={q.id: "a.json"}), config, context=ctx),
        )

    paused, legacy, done = asyncio.run(run())
    assert paused.values["status"] == PAUSED and paused.next == ("human",)
    assert legacy.values["status"] == "executing" and legacy.next == ("human",)
    assert done["questions"][q.id]["answer"] == "a.json"
    assert done["status"] == "executing"  # where the run goes on: the answer was taken
