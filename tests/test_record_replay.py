"""Record a run's model exchanges, then replay them offline to the same delivered tree."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLE
from fake_openai import FakeOpenAIServer
from langchain_core.messages import HumanMessage, SystemMessage
from pydantic import BaseModel
from test_openai_client import TRANSCRIPT, TranscriptResponder

from oldnew.context import Context
from oldnew.errors import ConfigurationError, ScriptedModelError, UsageError
from oldnew.models import ScriptedChatModel, ScriptedReply, make_chat_model, resolve_model
from oldnew.record import Recording, read_lines
from oldnew.runs import resume_run, start_run


@pytest.fixture
def no_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run without memory: lessons a run learns are part of its later prompts, in an order
    that can vary between runs (same score), so a replay would not find them recorded."""
    monkeypatch.setenv("OLDNEW_MEMORY_PATH", "off")


def _tree(ws: Path) -> str:
    out = subprocess.run(
        ["git", "-C", str(ws), "rev-parse", "main^{tree}"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


async def _run_and_answer(ws: Path, context: dict[str, Any]) -> None:
    first = await start_run(EXAMPLE / "scope.md", ws, context=context)
    assert first.status == "waiting", first
    assert [q["id"] for q in first.questions] == ["T3-q1"]
    done = await resume_run(ws, answers={"T3-q1": "~/.todo.json"})
    assert done.status == "delivered", done.report


@pytest.mark.timeout(240)
@pytest.mark.usefixtures("smoke_gates", "no_memory")
@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
def test_recorded_openai_run_replays_offline_to_the_same_tree(
    method: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = tmp_path / "run.jsonl"
    responder = TranscriptResponder(TRANSCRIPT)
    context = {
        "model": "openai:fake-model",
        "structured_output_method": method,
        "record": str(record),
    }
    recorded_ws = tmp_path / "recorded"
    with FakeOpenAIServer(responder) as srv:
        monkeypatch.setenv("OPENAI_API_KEY", "test-key")
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        asyncio.run(_run_and_answer(recorded_ws, context))
        assert srv.errors == []
        served = len(srv.requests)

    # Every exchange is in the file, the run's and the resume's, in order after one header
    # (a process's session: a resume in another process appends its own header).
    entries = read_lines(record)
    assert entries[0]["transcript"] == "oldnew" and entries[0]["workspace"] == str(recorded_ws)
    exchanges = [e for e in entries if "exchange" in e]
    assert [e["exchange"] for e in exchanges] == list(range(1, 12))
    assert len(exchanges) == served == 11
    roles = sorted(e["role"] for e in exchanges)
    assert roles == ["coder"] * 4 + ["fixer"] + ["planner"] * 2 + ["tester"] * 4
    assert all(e["usage"] and e["usage"]["input_tokens"] > 0 for e in exchanges)
    assert all(e["model"] == "fake-model" for e in exchanges)
    planner = [e for e in exchanges if e["role"] == "planner"]
    assert all(e["structured_call"] for e in planner)
    if method == "json_schema":  # answered in the text: the parsed object is kept
        assert all(e["structured"] and not e["tool_calls"] for e in planner)
    else:  # answered by a call of the schema's tool
        assert sorted(e["tool_calls"][0]["name"] for e in planner) == ["Plan", "Scope"]
    asked = [c["name"] for e in exchanges for c in e["tool_calls"]]
    assert "AskHuman" in asked

    # Replay: no server (the base URL points at a closed port).
    monkeypatch.delenv("OPENAI_API_KEY")
    replay_ws = tmp_path / "replayed"
    asyncio.run(_run_and_answer(replay_ws, {"model": f"scripted:{record}"}))
    assert _tree(replay_ws) == _tree(recorded_ws)
    assert len(read_lines(record)) == len(entries)  # replaying records nothing
    # The replay meters the recorded usage, not an estimate.
    ledger = [
        json.loads(line)
        for line in (replay_ws / ".oldnew" / "usage.jsonl").read_text().splitlines()
        if line.strip()
    ]
    calls = [x for x in ledger if x.get("input_tokens") is not None]
    assert sorted(c["input_tokens"] for c in calls) == sorted(
        e["usage"]["input_tokens"] for e in exchanges
    )


class Answer(BaseModel):
    """A tiny structured answer."""

    value: int


def _recorded(tmp_path: Path, replies: list[dict[str, Any]]) -> tuple[Path, Context]:
    source = tmp_path / "hand.json"
    source.write_text(json.dumps({"reply": replies}))
    record = tmp_path / "rec.jsonl"
    ctx = Context(model=f"scripted:{source}", record=str(record), workspace=str(tmp_path))
    return record, ctx


def test_replay_is_exact_and_a_changed_prompt_names_the_first_differing_line(
    tmp_path: Path,
) -> None:
    record, ctx = _recorded(
        tmp_path, [{"role": "planner", "when": ["number"], "structured": {"value": 7}}]
    )
    planner = resolve_model("planner", ctx).with_structured_output(Answer)
    prompt = [SystemMessage("You are a planner."), HumanMessage("Give a number.\nThen stop.")]
    assert planner.invoke(prompt) == Answer(value=7)

    replay = make_chat_model(f"scripted:{record}", role="planner")
    assert replay.with_structured_output(Answer).invoke(prompt) == Answer(value=7)
    changed = [SystemMessage("You are a planner."), HumanMessage("Give a number.\nThen go.")]
    with pytest.raises(ScriptedModelError) as info:
        replay.with_structured_output(Answer).invoke(changed)
    message = str(info.value)
    assert "no planner exchange" in message and "message 2 (human), line 2" in message
    assert "recorded: Then stop." in message and "now:      Then go." in message
    # Another role is not answered by the planner's exchange, however alike the prompt.
    coder = make_chat_model(f"scripted:{record}", role="coder")
    with pytest.raises(ScriptedModelError, match="recorded no coder calls"):
        coder.invoke(prompt)


def test_the_same_prompt_asked_twice_gets_its_answers_in_order(tmp_path: Path) -> None:
    class Alternating(ScriptedChatModel):
        """A model that answers the same prompt differently each time, as a real one can."""

        def _pick(self, messages: Any) -> ScriptedReply:
            with LOCK:
                CALLS.append(1)
                n = len(CALLS)
            return ScriptedReply((), None, f"answer {n}", None, None, None)

    LOCK, CALLS = threading.Lock(), []  # noqa: N806 - shared by the class above
    record = tmp_path / "rec.jsonl"
    ctx = Context(record=str(record), workspace=str(tmp_path / "a"))
    model = resolve_model("coder", ctx, {"coder": Alternating(replies=[])})
    prompt = [HumanMessage("Same question.")]
    assert [model.invoke(prompt).content for _ in range(3)] == ["answer 1", "answer 2", "answer 3"]
    assert [e["occurrence"] for e in read_lines(record) if "exchange" in e] == [0, 1, 2]

    ws = str(tmp_path / "b")
    replay = make_chat_model(f"scripted:{record}", role="coder", workspace=ws)
    assert [replay.invoke(prompt).content for _ in range(2)] == ["answer 1", "answer 2"]
    # A new process (a resume after a kill) goes on counting where the workspace was.
    again = make_chat_model(f"scripted:{record}", role="coder", workspace=ws)
    assert again.invoke(prompt).content == "answer 3"
    assert again.invoke(prompt).content == "answer 3"  # past the recorded ones: the last


def test_tool_calls_and_usage_are_recorded_and_replayed(tmp_path: Path) -> None:
    record, ctx = _recorded(
        tmp_path,
        [{"role": "coder", "when": ["write"], "tool": "ReadFile", "args": {"path": "a.py"}}],
    )

    class ReadFile(BaseModel):
        """Read a file."""

        path: str

    model = resolve_model("coder", ctx).bind_tools([ReadFile])
    first = model.invoke([HumanMessage("Please write a.py")])
    (entry,) = [e for e in read_lines(record) if "exchange" in e]
    assert entry["tool_calls"] == [{"name": "ReadFile", "args": {"path": "a.py"}}]
    assert entry["usage"] == dict(first.usage_metadata or {})
    replayed = (
        make_chat_model(f"scripted:{record}", role="coder")
        .bind_tools([ReadFile])
        .invoke([HumanMessage("Please write a.py")])
    )
    assert [(c["name"], c["args"]) for c in replayed.tool_calls] == [("ReadFile", {"path": "a.py"})]
    assert replayed.usage_metadata == first.usage_metadata


def test_recording_survives_parallel_calls_and_a_torn_last_line(tmp_path: Path) -> None:
    record, ctx = _recorded(tmp_path, [{"role": "coder", "text": "ok"}])
    model = resolve_model("coder", ctx)

    async def many() -> None:
        await asyncio.gather(*(model.ainvoke([HumanMessage(f"task {i}")]) for i in range(20)))

    asyncio.run(many())
    lines = record.read_text().splitlines()
    assert len(lines) == 21  # one header, then each exchange whole on its own line
    assert sorted(json.loads(x)["exchange"] for x in lines[1:]) == list(range(1, 21))
    with record.open("a") as f:
        f.write('{"exchange": 21, "role": "co')  # a crash in the middle of a write
    rec = Recording.load(record)
    assert sum(len(v) for v in rec.by_key.values()) == 20


def test_recording_into_the_replayed_file_is_refused(tmp_path: Path) -> None:
    record, ctx = _recorded(tmp_path, [{"role": "coder", "text": "ok"}])
    resolve_model("coder", ctx).invoke([HumanMessage("hi")])
    loop = Context(model=f"scripted:{record}", record=str(record))
    with pytest.raises(UsageError, match="it is the transcript the model replays"):
        resolve_model("coder", loop)


def test_a_hand_written_loader_refuses_a_recording_with_the_spec_to_use(tmp_path: Path) -> None:
    from oldnew.models import load_transcript

    record, ctx = _recorded(tmp_path, [{"role": "coder", "text": "ok"}])
    resolve_model("coder", ctx).invoke([HumanMessage("hi")])
    with pytest.raises(ConfigurationError, match=f"scripted:{record}"):
        load_transcript(record)


def test_cli_refuses_to_record_into_the_transcript_it_replays(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from oldnew.cli import app

    record, ctx = _recorded(tmp_path, [{"role": "planner", "text": "ok"}])
    resolve_model("planner", ctx).invoke([HumanMessage("hi")])
    ws = tmp_path / "ws"
    args = ["run", str(EXAMPLE / "scope.md"), "-w", str(ws), "-m", f"scripted:{record}"]
    refused = CliRunner().invoke(app, [*args, "--record", str(record)])
    assert refused.exit_code == 2, refused.output
    assert "the transcript the model replays" in refused.output
    assert not ws.exists()  # refused before anything was made


def _killed_then_finished(ws: Path, first: list[str]) -> None:
    """Run ``first`` and SIGKILL it once T3 asked its question, resume it to the question,
    answer it: a run killed and resumed, each command its own process.

    (The kill lands in T3's question, after T1 and T2 are done, where a task asked again
    gets the same prompt. A task killed after writing files is asked again with those files
    in its prompt, and one killed while main moves on with main's new files: a replay
    cannot match either unless its kill lands at the very same point.)
    """
    oldnew = [sys.executable, "-m", "oldnew"]

    def t3_asked() -> bool:
        path = ws / ".oldnew" / "events.jsonl"
        text = path.read_text(errors="replace") if path.exists() else ""
        for line in text.splitlines():
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if event.get("task") == "T3" and event.get("event") == "escalated":
                    return True
        return False

    def run(argv: list[str], kill: bool) -> int | None:
        with open(ws.parent / f"{ws.name}.log", "ab") as log:
            proc = subprocess.Popen(
                [*oldnew, *argv], stdout=log, stderr=log, start_new_session=True
            )
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            if kill and t3_asked():
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                return None
            time.sleep(0.005)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail("a command hung for 120 s")
        return proc.returncode

    def log() -> str:
        return (ws.parent / f"{ws.name}.log").read_text(errors="replace")[-3000:]

    assert run(first, True) is None, "the kill landed after the run had ended"
    assert run(["resume", "--workspace", str(ws)], False) == 3, log()
    answer = ["answer", "--workspace", str(ws), "T3-q1", "~/.todo.json"]
    assert run(answer, False) == 0, log()


@pytest.mark.slow
@pytest.mark.timeout(400)
@pytest.mark.usefixtures("smoke_gates", "no_memory")
def test_a_killed_and_resumed_recording_replays_killed_and_resumed_to_the_same_tree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, example_model: str
) -> None:
    record, scope = tmp_path / "rec.jsonl", str(EXAMPLE / "scope.md")
    recorded = tmp_path / "recorded"
    run = ["run", scope, "--workspace", str(recorded), "-m", example_model]
    _killed_then_finished(recorded, [*run, "--record", str(record)])
    entries = read_lines(record)
    sessions = [e["session"] for e in entries if "transcript" in e]
    # One file: the run's process and the answer's each appended under their own header (the
    # resume's too, when the kill lost a reply it then asked again).
    assert len(sessions) == len(set(sessions)) >= 2
    assert {e["session"] for e in entries if "exchange" in e} == set(sessions)

    replayed = tmp_path / "replayed"
    replay = ["run", scope, "--workspace", str(replayed), "-m", f"scripted:{record}"]
    _killed_then_finished(replayed, replay)
    assert _tree(replayed) == _tree(recorded)
    assert len(read_lines(record)) == len(entries)


@pytest.fixture
def new_process(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Return a function that makes this process start recording as a new process would
    (forgetting the files and sessions it knew), as a resume after a kill does."""
    from oldnew import record as recording

    def fresh() -> None:
        monkeypatch.setattr(recording, "_FILES", {})
        monkeypatch.setattr(recording, "_SESSIONS", {})

    fresh()
    return fresh


class Echo(ScriptedChatModel):
    """A model that answers with the start of the last message."""

    def _pick(self, messages: Any) -> ScriptedReply:
        return ScriptedReply((), None, f"answer to {messages[-1].content[:20]}", None, None, None)


def test_a_crash_mid_write_then_a_resume_leaves_a_readable_recording(
    tmp_path: Path, new_process: Callable[[], None]
) -> None:
    record = tmp_path / "run.jsonl"
    ctx = Context(record=str(record), workspace=str(tmp_path / "ws"), memory_path="off")
    resolve_model("coder", ctx, {"coder": Echo(replies=[])}).invoke([HumanMessage("first")])
    with record.open("a") as f:
        f.write('{"exchange": 2, "session": "x", "role": "coder", "pro')  # killed mid-write
    new_process()  # the resume
    resolve_model("coder", ctx, {"coder": Echo(replies=[])}).invoke([HumanMessage("second")])
    lines = record.read_text().splitlines()
    entries = [json.loads(x) for x in lines]  # every line whole: the fragment was cut off
    assert ["transcript" in e for e in entries] == [True, False, True, False]
    assert [e["exchange"] for e in entries if "exchange" in e] == [1, 2]
    rec = Recording.load(record)
    assert rec.torn == 0 and sum(len(v) for v in rec.by_key.values()) == 2


def test_a_torn_line_in_the_middle_is_skipped_and_counted(tmp_path: Path) -> None:
    record, ctx = _recorded(tmp_path, [{"role": "coder", "text": "ok"}])
    resolve_model("coder", ctx).invoke([HumanMessage("one")])
    header, first = record.read_text().splitlines()
    second_header = json.dumps({**json.loads(header), "session": "s2", "workspace": "/else"})
    second = json.dumps({**json.loads(first), "exchange": 2, "session": "s2"})
    # What an older oldnew left: a resume's header appended straight after a torn line.
    torn = '{"exchange": 2, "session": "x", "role": "co'
    record.write_text("\n".join([header, first, torn + second_header, second, torn]))
    rec = Recording.load(record)
    assert rec.torn == 2
    (answers,) = rec.by_key.values()
    assert [ex.workspace for ex in answers] == [str(tmp_path), "/else"]
    with pytest.raises(ScriptedModelError, match=r"2 torn line\(s\)"):
        rec.answer("coder", [{"type": "human", "content": "two"}], 0)


def test_addresses_and_durations_do_not_make_a_replay_miss(tmp_path: Path) -> None:
    record, ctx = _recorded(tmp_path, [{"role": "fixer", "text": "fixed"}])

    def prompt(address: str, took: str, ms: str, last: str) -> list[Any]:
        return [
            HumanMessage(
                f"E   assert <app.Store object at {address}> is None\n"
                f"1 failed, 3 passed in {took}\np95 latency {ms} over budget, took 1.5 s\n{last}"
            )
        ]

    resolve_model("fixer", ctx).invoke(prompt("0x7fe485b1ab50", "0.12s", "12.3 ms", "Fix it."))
    replay = make_chat_model(f"scripted:{record}", role="fixer")
    assert replay.invoke(prompt("0x7f0011223344", "3.40s", "9 ms", "Fix it.")).content == "fixed"
    with pytest.raises(ScriptedModelError) as info:
        replay.invoke(prompt("0x7f0011223344", "2.5s", "10.1 ms", "Fix it now."))
    message = str(info.value)
    assert "message 1 (human), line 4" in message  # not the lines only the timing changed
    assert "recorded: Fix it." in message and "now:      Fix it now." in message
    assert "memory" in message


def test_a_reply_asked_again_after_a_kill_replays_as_the_one_the_run_kept(
    tmp_path: Path, new_process: Callable[[], None]
) -> None:
    from typing import TypedDict

    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.graph import END, START, StateGraph

    answers = iter(f"FILE: a.py (variant {n})" for n in range(1, 10))

    class RealModel(ScriptedChatModel):
        """The same prompt, another answer each time."""

        def _pick(self, messages: Any) -> ScriptedReply:
            return ScriptedReply((), None, next(answers), None, None, None)

    class State(TypedDict):
        """The graph's state: the reply the run kept."""

        kept: str

    killed, saver = {"now": True}, InMemorySaver()  # the checkpoints outlive a process

    def graph(model: Any) -> Any:
        def write(state: State) -> State:
            reply = model.invoke([HumanMessage("TASK T1: write a.py")]).content
            if killed["now"]:
                killed["now"] = False
                raise KeyboardInterrupt("killed after the reply, before the checkpoint")
            return {"kept": reply}

        g = StateGraph(State)
        g.add_node("write", write)
        g.add_edge(START, "write")
        g.add_edge("write", END)
        return g.compile(checkpointer=saver)

    record = tmp_path / "run.jsonl"
    ctx = Context(record=str(record), workspace=str(tmp_path / "ws"), memory_path="off")
    run = graph(resolve_model("coder", ctx, {"coder": RealModel(replies=[])}))
    config = {"configurable": {"thread_id": "t1"}}
    with pytest.raises(KeyboardInterrupt):
        run.invoke({"kept": ""}, config)
    new_process()  # the resume re-runs the node: the same prompt, another answer
    run = graph(resolve_model("coder", ctx, {"coder": RealModel(replies=[])}))
    kept = run.invoke(None, config)["kept"]
    assert kept == "FILE: a.py (variant 2)"
    exchanges = [e for e in read_lines(record) if "exchange" in e]
    assert [e["graph"]["step"] for e in exchanges] == [1, 1]
    assert [e["graph"]["node"] for e in exchanges] == ["write", "write"]
    assert exchanges[0]["graph"]["checkpoint_ns"] == exchanges[1]["graph"]["checkpoint_ns"]
    assert Recording.load(record).discarded == 1

    replay = graph(make_chat_model(f"scripted:{record}", role="coder"))
    killed["now"] = False
    assert replay.invoke({"kept": ""}, {"configurable": {"thread_id": "r1"}})["kept"] == kept


def test_invalid_tool_calls_and_content_blocks_are_recorded_and_replayed(tmp_path: Path) -> None:
    from langchain_core.messages import AIMessage
    from langchain_core.outputs import ChatGeneration, ChatResult

    bad = {"name": "ReadFile", "args": '{"path": "a.py"', "error": "bad json"}
    blocks = [{"type": "text", "text": "Reading a.py"}]

    class Malformed(ScriptedChatModel):
        """A model that sends tool JSON that does not parse, and content as blocks."""

        def _generate(self, messages: Any, stop: Any = None, run_manager: Any = None, **kw: Any):  # type: ignore[no-untyped-def]
            m = AIMessage(
                content=list(blocks),
                invalid_tool_calls=[{**bad, "id": "c1", "type": "invalid_tool_call"}],
            )
            return ChatResult(generations=[ChatGeneration(message=m)])

    record = tmp_path / "run.jsonl"
    ctx = Context(record=str(record), workspace=str(tmp_path / "ws"), memory_path="off")
    prompt = [HumanMessage("write a.py")]
    live = resolve_model("coder", ctx, {"coder": Malformed(replies=[])}).invoke(prompt)
    (entry,) = [e for e in read_lines(record) if "exchange" in e]
    assert entry["invalid_tool_calls"] == [bad] and entry["text"] == blocks
    replayed = make_chat_model(f"scripted:{record}", role="coder").invoke(prompt)
    assert replayed.content == live.content == blocks
    assert replayed.tool_calls == live.tool_calls == []
    strip = [{k: c[k] for k in ("name", "args", "error")} for c in replayed.invalid_tool_calls]
    assert strip == [bad]


def test_a_second_run_in_one_process_and_a_deleted_file_get_their_own_header(
    tmp_path: Path, new_process: Callable[[], None]
) -> None:
    record = tmp_path / "run.jsonl"

    def run(ws: str) -> None:
        ctx = Context(record=str(record), workspace=str(tmp_path / ws), memory_path="off")
        resolve_model("coder", ctx, {"coder": Echo(replies=[])}).invoke([HumanMessage(ws)])

    run("ws1")
    record.unlink()  # the old recording removed, a new run into the same file name
    run("ws2")
    entries = read_lines(record)
    assert entries[0]["transcript"] == "oldnew" and entries[0]["workspace"] == str(tmp_path / "ws2")
    assert [e["exchange"] for e in entries if "exchange" in e] == [1]
    run("ws3")  # another run, same process, same file: a header of its own
    heads = [e["workspace"] for e in read_lines(record) if "transcript" in e]
    assert heads == [str(tmp_path / "ws2"), str(tmp_path / "ws3")]
    assert make_chat_model(f"scripted:{record}", role="coder").invoke([HumanMessage("ws3")])

    headless = tmp_path / "headless.jsonl"
    headless.write_text("\n".join(record.read_text().splitlines()[1:2]) + "\n")
    with pytest.raises(ConfigurationError, match="recording without a header"):
        make_chat_model(f"scripted:{headless}", role="coder")


def test_two_processes_recording_one_file_number_exchanges_from_the_file(
    tmp_path: Path, new_process: Callable[[], None]
) -> None:
    record = tmp_path / "run.jsonl"
    ctx = Context(record=str(record), workspace=str(tmp_path / "ws"), memory_path="off")
    first = resolve_model("coder", ctx, {"coder": Echo(replies=[])})
    new_process()  # a second process, its own memory of the file
    second = resolve_model("coder", ctx, {"coder": Echo(replies=[])})
    for model in (first, second, first, second):
        model.invoke([HumanMessage("same")])
    exchanges = [e for e in read_lines(record) if "exchange" in e]
    assert [e["exchange"] for e in exchanges] == [1, 2, 3, 4]
    assert [e["occurrence"] for e in exchanges] == [0, 1, 2, 3]
    assert len({e["session"] for e in exchanges}) == 2
    assert len([e for e in read_lines(record) if "transcript" in e]) == 2


def test_recording_with_memory_on_warns_in_the_log_and_on_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from typing import TypedDict

    from langgraph.graph import END, START, StateGraph

    from oldnew.cli import show_event
    from oldnew.runs.session import stream
    from oldnew.workspace import Workspace

    class State(TypedDict):
        """Nothing to speak of."""

        x: int

    g = StateGraph(State)
    g.add_node("noop", lambda s: {"x": 1})
    g.add_edge(START, "noop")
    g.add_edge("noop", END)
    graph: Any = g.compile()
    ws = tmp_path / "ws"
    ws.mkdir()
    seen: list[dict[str, Any]] = []

    def sink(event: dict[str, Any]) -> None:
        seen.append(event)
        show_event(event)

    memory = str(tmp_path / "memory.sqlite")
    on = Context(record=str(tmp_path / "r.jsonl"), memory_path=memory, workspace=str(ws))
    asyncio.run(stream(graph, {"x": 0}, {}, on, sink))
    (warning,) = [e for e in seen if e.get("event") == "memory_on"]
    assert warning["memory"] == memory and "OLDNEW_MEMORY_PATH=off" in warning["hint"]
    assert [e["event"] for e in Workspace(ws).events()] == ["memory_on"]
    assert "record: memory_on" in capsys.readouterr().out
    off = Context(record=str(tmp_path / "r.jsonl"), memory_path="off", workspace=str(ws))
    seen.clear()
    asyncio.run(stream(graph, {"x": 0}, {}, off, sink))
    assert [e for e in seen if e.get("event") == "memory_on"] == []
