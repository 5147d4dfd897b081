"""The real langchain-openai client works through oldnew's model seam.

A whole run of the bundled example goes through ``openai:<model>``: langchain-openai's
``ChatOpenAI`` talks HTTP to the local fake OpenAI server, which replays the example's
transcript. The responder picks replies the way ``ScriptedChatModel`` does (by prompt
content), then answers in the form each request asks for: a JSON document for
``response_format``, a tool call for ``tools``, plain text otherwise.
"""

from __future__ import annotations

import asyncio
import gc
import json
import re
import socket
import subprocess
import threading
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLE
from fake_openai import FakeOpenAIServer, Reply

from oldnew.errors import ConfigurationError
from oldnew.models import ScriptedReply, load_transcript, make_chat_model
from oldnew.runs import resume_run, start_run

TRANSCRIPT = EXAMPLE / "transcript.toml"
CODER_SYSTEM = re.compile(r"You are an? \S+ engineer on a team")
TASK_LINE = re.compile(r"^TASK T\d+:", re.MULTILINE)


def _content_text(content: Any) -> str:
    """The text of one request message's ``content`` (a string or a list of parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    return str(content)


def prompt_text(request: dict[str, Any]) -> str:
    """The prompt as ScriptedChatModel sees it: the message contents joined by newlines."""
    return "\n".join(_content_text(m.get("content")) for m in request.get("messages", []))


def role_of(request: dict[str, Any]) -> str:
    """Which oldnew role sent the request, told from its system and user prompts."""
    messages = request.get("messages", [])
    system = "\n".join(
        _content_text(m.get("content"))
        for m in messages
        if m.get("role") in ("system", "developer")
    )
    user = "\n".join(_content_text(m.get("content")) for m in messages if m.get("role") == "user")
    if "scoping engineer" in system or "planning engineer" in system:
        return "planner"
    if "independent tester" in system:
        return "tester"
    if CODER_SYSTEM.search(system) and TASK_LINE.search(user):
        return "fixer" if "fails validation" in user else "coder"
    raise AssertionError(f"cannot tell the role of a request with system prompt {system[:200]!r}")


def pick(replies: list[ScriptedReply], role: str, text: str) -> ScriptedReply:
    """ScriptedChatModel._pick's rule: the first reply whose role fits and whose
    ``when`` strings all occur in the prompt."""
    for reply in replies:
        if reply.role not in (None, role):
            continue
        if all(w in text for w in reply.when):
            return reply
    raise AssertionError(f"transcript has no {role} reply for prompt ending {text[-300:]!r}")


def _tool_names(request: dict[str, Any]) -> list[str]:
    return [t["function"]["name"] for t in request.get("tools") or []]


@dataclass
class Exchange:
    """One request the fake server answered, with the role and the reply it sent."""

    role: str
    request: dict[str, Any]
    reply: Reply


class TranscriptResponder:
    """Replays a transcript over HTTP, answering in the form each request asks for."""

    def __init__(self, path: Path) -> None:
        self.replies = load_transcript(path)
        self.exchanges: list[Exchange] = []
        self._lock = threading.Lock()

    def __call__(self, request: dict[str, Any]) -> Reply:
        role = role_of(request)
        chosen = pick(self.replies, role, prompt_text(request))
        reply = self._answer(request, chosen)
        with self._lock:
            self.exchanges.append(Exchange(role, request, reply))
        return reply

    @staticmethod
    def _answer(request: dict[str, Any], chosen: ScriptedReply) -> Reply:
        response_format = request.get("response_format") or {}
        tools = _tool_names(request)
        if chosen.structured is not None:
            if response_format.get("type") == "json_schema":
                return Reply.json(chosen.structured)
            if tools:
                # Call the tool the request forces, else its first tool (Scope or Plan).
                forced = request.get("tool_choice")
                name = forced.get("function", {}).get("name") if isinstance(forced, dict) else None
                return Reply.with_tool_calls((name or tools[0], chosen.structured))
            raise AssertionError("a structured reply was asked for with no schema in the request")
        if chosen.tool is not None:
            assert chosen.tool in tools, f"tool {chosen.tool} is not bound: {tools}"
            return Reply.with_tool_calls((chosen.tool, chosen.args or {}))
        return Reply.text(chosen.text)


def _git(ws: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(ws), *args], capture_output=True, text=True, check=True
    ).stdout


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


@pytest.mark.timeout(180)
@pytest.mark.usefixtures("smoke_gates")  # the client's requests, not the gates
@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
def test_example_run_through_chat_openai(
    method: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The conftest guard is active: anything but loopback fails before it connects.
    with (
        socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe,
        pytest.raises(RuntimeError, match="must not reach the network"),
    ):
        probe.connect(("192.0.2.1", 443))

    responder = TranscriptResponder(TRANSCRIPT)
    ws = tmp_path / "ws"
    context = {"model": "openai:fake-model", "structured_output_method": method}

    async def start_then_resume() -> None:
        # One event loop for both calls, as in a notebook or a LangGraph server: a second
        # asyncio.run() in the same process breaks the openai: seam (package bug, see
        # test_resume_in_a_second_event_loop).
        first = await start_run(EXAMPLE / "scope.md", ws, context=context)
        assert srv.errors == []
        assert first.status == "waiting", first
        assert [q["id"] for q in first.questions] == ["T3-q1"]

        done = await resume_run(ws, answers={"T3-q1": "~/.todo.json"})
        assert srv.errors == []
        assert done.status == "delivered", done.report

    with FakeOpenAIServer(responder) as srv:
        monkeypatch.setenv("OPENAI_API_KEY", "test-key")
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        asyncio.run(start_then_resume())
        requests = srv.requests

    # The tester's suite and three task commits on main, each found by its trailer.
    trailers = _git(ws, "log", "main", "--format=%(trailers:key=Oldnew-Task,valueonly)")
    assert sorted(t for t in trailers.split() if t) == ["T1", "T2", "T3", "acceptance-1"]
    assert "class TodoList" in (ws / "todo" / "model.py").read_text()
    assert 'DEFAULT_FILE = "~/.todo.json"' in (ws / "todo" / "cli.py").read_text()

    # Every model call went to the fake server, and each was answered from the transcript:
    # scope + plan, the tester's four files, T1, T2, the T2 fix, T3's question, T3 after the
    # answer.
    assert requests, "the fake server saw no requests"
    assert len(requests) == len(responder.exchanges) == 11
    assert all(r["model"] == "fake-model" for r in requests)
    roles = Counter(e.role for e in responder.exchanges)
    assert roles == {"planner": 2, "tester": 4, "coder": 4, "fixer": 1}

    planner = [e for e in responder.exchanges if e.role == "planner"]
    if method == "json_schema":
        for e in planner:
            fmt = e.request.get("response_format")
            assert fmt and fmt["type"] == "json_schema", e.request
            assert "tools" not in e.request
        names = {e.request["response_format"]["json_schema"]["name"] for e in planner}
    else:
        for e in planner:
            assert len(_tool_names(e.request)) == 1, e.request
            assert "response_format" not in e.request
            assert e.reply.tool_calls, "the structured answer must come back as a tool call"
        names = {_tool_names(e.request)[0] for e in planner}
    assert names == {"Scope", "Plan"}

    # Coder and fixer ask for no JSON; their code comes back as plain-text file blocks.
    code_replies = [e for e in responder.exchanges if e.role in ("coder", "fixer")]
    for e in code_replies:
        assert "response_format" not in e.request
    ask = [e for e in code_replies if e.reply.tool_calls]
    assert [tc.name for e in ask for tc in e.reply.tool_calls] == ["AskHuman"]
    assert "AskHuman" in _tool_names(ask[0].request)
    files = [e for e in code_replies if not e.reply.tool_calls]
    assert len(files) == 4
    for e in files:
        content = e.reply.content or ""
        assert "FILE: " in content
        assert not _is_json(content)


def test_openai_spec_without_key_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL")  # a loopback base URL needs no key
    with pytest.raises(ConfigurationError, match="OPENAI_API_KEY"):
        make_chat_model("openai:gpt-4o-mini")


def test_openai_spec_with_key_builds_chat_openai(monkeypatch: pytest.MonkeyPatch) -> None:
    from langchain_openai import ChatOpenAI

    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    model = make_chat_model("openai:fake-model", role="coder")
    assert isinstance(model, ChatOpenAI)
    assert model.model_name == "fake-model"
    assert model.openai_api_base == "http://127.0.0.1:9/v1"


@pytest.mark.parametrize("spec", ["foo:bar", "scripted:", "llama3:8b", " "])
def test_unknown_spec_names_the_accepted_forms(spec: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        make_chat_model(spec)
    message = str(info.value)
    assert spec in message
    assert "provider:model" in message
    assert "scripted:<transcript file>" in message


def _collect_garbage_quietly() -> None:
    """Collect sockets left behind by a closed event loop without ResourceWarnings."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


@pytest.mark.timeout(60)
def test_resume_in_a_second_event_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """start_run and resume_run each under their own asyncio.run(), as a script does."""
    ws = tmp_path / "ws"
    # The planner never answers with a Scope, so the run asks whether to retry.
    with FakeOpenAIServer(lambda request: Reply.text("I would rather chat.")) as srv:
        monkeypatch.setenv("OPENAI_API_KEY", "test-key")
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        context = {"model": "openai:fake-model", "structured_output_method": "function_calling"}
        first = asyncio.run(start_run(EXAMPLE / "scope.md", ws, context=context))
        assert first.status == "waiting"
        assert [q["id"] for q in first.questions] == ["scope-1"]
        asked = len(srv.requests)
        assert asked == 3  # the first try and max_output_retries=2 re-asks

        error = None
        try:
            again = asyncio.run(resume_run(ws, answers={"scope-1": "retry"}))
        except RuntimeError as exc:
            error = f"{type(exc).__name__}: {exc}"
        _collect_garbage_quietly()
        assert error is None, error
        assert again.status == "waiting"
        assert [q["id"] for q in again.questions] == ["scope-2"]
        assert len(srv.requests) == 2 * asked


def test_readme_lists_every_model_facing_setting() -> None:
    from conftest import ROOT

    from oldnew.context import model_settings, model_settings_markdown

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start, end = "<!-- model-settings:start -->\n", "<!-- model-settings:end -->"
    assert start in readme and end in readme, "README.md lost its model-settings table"
    table = readme.split(start, 1)[1].split(end, 1)[0]
    assert table == model_settings_markdown(), (
        "README.md's 'Settings for real models' table differs from Context: paste "
        "oldnew.context.model_settings_markdown() between its markers"
    )
    names = {row[0] for row in model_settings()}
    assert {"model_timeout", "max_transient_retries", "structured_output_method"} <= names
    assert {"planner_model", "coder_model", "fixer_model", "record"} <= names


def test_the_client_timeout_is_a_context_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from oldnew.context import Context
    from oldnew.errors import UsageError
    from oldnew.models import resolve_model

    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.setenv("OLDNEW_MODEL_TIMEOUT", "7.5")
    chat = resolve_model("coder", Context(model="openai:fake-model"))
    assert chat.request_timeout == 7.5  # type: ignore[attr-defined]
    explicit = resolve_model("coder", Context(model="openai:fake-model", model_timeout=30))
    assert explicit.request_timeout == 30  # type: ignore[attr-defined]
    # Every retried model call (the planner's, the coder's and fixer's tool loop, structured
    # output) gets its policy from the context: each try has the same total deadline.
    assert Context().retry_policy().timeout == 7.5
    assert Context(model_timeout=30).retry_policy().timeout == 30
    with pytest.raises(UsageError, match="model_timeout must be a number above 0"):
        Context(model_timeout=0)
    monkeypatch.setenv("OLDNEW_TASK_WAIT_LIMIT", "0")
    assert Context().task_wait_limit == 0  # no cap on a task's model wait
    monkeypatch.delenv("OLDNEW_TASK_WAIT_LIMIT")
    assert Context().task_wait_limit == 3600
    with pytest.raises(UsageError, match="task_wait_limit must be a number of at least 0"):
        Context(task_wait_limit=-1)
