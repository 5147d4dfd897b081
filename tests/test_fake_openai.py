"""The fake OpenAI server works with the real ``langchain_openai.ChatOpenAI`` client."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import openai
import pytest
from fake_openai import FakeOpenAIServer, Reply, ScriptedResponder, ToolCall
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel


class Weather(BaseModel):
    city: str
    temperature_c: int


@tool
def get_weather(city: str) -> str:
    """Look up the weather for a city."""
    return f"sunny in {city}"


def make_llm(srv: FakeOpenAIServer, **kwargs: Any) -> ChatOpenAI:
    return ChatOpenAI(
        model="gpt-fake",
        api_key="test-key",
        base_url=srv.base_url,
        max_retries=0,
        **kwargs,
    )


def test_base_url_is_loopback_v1() -> None:
    with FakeOpenAIServer(lambda req: Reply.text("x")) as srv:
        assert srv.base_url.startswith("http://127.0.0.1:")
        assert srv.base_url.endswith("/v1")
        assert srv.port > 0
    # close() is idempotent
    srv.close()


def test_plain_text_invoke() -> None:
    with FakeOpenAIServer(ScriptedResponder([Reply.text("Hello from the fake.")])) as srv:
        result = make_llm(srv).invoke([HumanMessage("hi there")])

    assert isinstance(result, AIMessage)
    assert result.content == "Hello from the fake."
    assert result.response_metadata["finish_reason"] == "stop"
    assert result.response_metadata["model_name"] == "gpt-fake"
    usage = result.usage_metadata
    assert usage is not None
    assert usage["input_tokens"] > 0
    assert usage["output_tokens"] == len("Hello from the fake.") // 4
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]

    (request,) = srv.requests
    assert request["model"] == "gpt-fake"
    assert request["messages"] == [{"role": "user", "content": "hi there"}]
    assert not request.get("stream")


def test_responder_sees_request_and_str_shorthand() -> None:
    def echo(request: dict[str, Any]) -> str:
        return "echo: " + request["messages"][-1]["content"]

    with FakeOpenAIServer(echo) as srv:
        result = make_llm(srv).invoke("ping")
    assert result.content == "echo: ping"


def test_streaming_text_with_usage() -> None:
    text = "The quick brown fox jumps over the lazy dog."
    with FakeOpenAIServer([Reply.text(text)]) as srv:
        chunks = list(make_llm(srv, stream_usage=True).stream("go"))

    assert len(chunks) > 3, "content should arrive in several deltas"
    assert all(isinstance(c, AIMessageChunk) for c in chunks)
    merged = chunks[0]
    for c in chunks[1:]:
        merged = merged + c
    assert merged.content == text
    assert merged.response_metadata.get("finish_reason") == "stop"
    assert merged.usage_metadata is not None
    assert merged.usage_metadata["output_tokens"] == len(text) // 4

    request = srv.last_request
    assert request["stream"] is True
    assert request["stream_options"] == {"include_usage": True}


def test_streaming_without_include_usage_has_no_usage() -> None:
    with FakeOpenAIServer([Reply.text("abc")]) as srv:
        merged = None
        for c in make_llm(srv, stream_usage=False).stream("go"):
            merged = c if merged is None else merged + c
    assert merged is not None and merged.content == "abc"
    assert "stream_options" not in srv.last_request
    assert not merged.usage_metadata


def test_bind_tools_produces_tool_calls() -> None:
    reply = Reply.with_tool_calls(
        ToolCall("get_weather", {"city": "Paris"}, id="call_1"),
        ("get_weather", {"city": "Oslo"}),
    )
    with FakeOpenAIServer([reply]) as srv:
        result = make_llm(srv).bind_tools([get_weather]).invoke("weather in Paris and Oslo?")

    assert result.response_metadata["finish_reason"] == "tool_calls"
    assert [(tc["name"], tc["args"]) for tc in result.tool_calls] == [
        ("get_weather", {"city": "Paris"}),
        ("get_weather", {"city": "Oslo"}),
    ]
    assert result.tool_calls[0]["id"] == "call_1"
    assert result.tool_calls[1]["id"], "server must invent ids for tool calls without one"
    assert not result.invalid_tool_calls

    (request,) = srv.requests
    assert [t["function"]["name"] for t in request["tools"]] == ["get_weather"]


def test_streaming_tool_calls() -> None:
    reply = Reply.with_tool_calls(("get_weather", {"city": "A very long city name"}))
    with FakeOpenAIServer([reply]) as srv:
        merged = None
        for c in make_llm(srv).bind_tools([get_weather]).stream("weather?"):
            merged = c if merged is None else merged + c
    assert merged is not None
    assert merged.response_metadata.get("finish_reason") == "tool_calls"
    assert [(tc["name"], tc["args"]) for tc in merged.tool_calls] == [
        ("get_weather", {"city": "A very long city name"})
    ]


def test_structured_output_json_schema_default() -> None:
    with FakeOpenAIServer([Reply.json({"city": "Paris", "temperature_c": 21})]) as srv:
        result = make_llm(srv).with_structured_output(Weather).invoke("weather in Paris?")

    assert result == Weather(city="Paris", temperature_c=21)
    request = srv.last_request
    assert request["response_format"]["type"] == "json_schema"
    assert request["response_format"]["json_schema"]["name"] == "Weather"
    assert "tools" not in request


def test_structured_output_function_calling() -> None:
    reply = Reply.with_tool_calls(("Weather", {"city": "Oslo", "temperature_c": -3}))
    with FakeOpenAIServer([reply]) as srv:
        llm = make_llm(srv).with_structured_output(Weather, method="function_calling")
        result = llm.invoke("weather in Oslo?")

    assert result == Weather(city="Oslo", temperature_c=-3)
    request = srv.last_request
    assert [t["function"]["name"] for t in request["tools"]] == ["Weather"]
    assert "response_format" not in request


def test_server_error_raises_internal_server_error() -> None:
    with FakeOpenAIServer([Reply.server_error("kaboom")]) as srv:
        with pytest.raises(openai.InternalServerError) as excinfo:
            make_llm(srv).invoke("hi")
    assert excinfo.value.status_code == 500
    assert "kaboom" in str(excinfo.value)
    assert len(srv.requests) == 1, "max_retries=0 must mean exactly one request"


def test_rate_limit_carries_retry_after() -> None:
    with FakeOpenAIServer([Reply.rate_limited(retry_after=7)]) as srv:
        with pytest.raises(openai.RateLimitError) as excinfo:
            make_llm(srv).invoke("hi")
    err = excinfo.value
    assert err.status_code == 429
    assert err.response.headers["Retry-After"] == "7"
    assert err.code == "rate_limit_exceeded"
    assert len(srv.requests) == 1


def test_hang_times_out_quickly() -> None:
    start = time.monotonic()
    with FakeOpenAIServer([Reply.hanging()]) as srv:
        with pytest.raises(openai.APITimeoutError):
            make_llm(srv, timeout=1.0).invoke("hi")
        assert len(srv.requests) == 1
    elapsed = time.monotonic() - start
    assert 0.9 <= elapsed < 5, f"timeout + shutdown took {elapsed:.2f}s"


def test_close_releases_handler_threads() -> None:
    before = set(threading.enumerate())
    with FakeOpenAIServer([Reply.text("kept alive"), Reply.hanging()]) as srv:
        # Different timeouts -> different cached httpx clients, so the first client's
        # keep-alive connection stays idle in its pool (a handler thread blocked on read).
        assert make_llm(srv, timeout=30).invoke("one").content == "kept alive"
        with pytest.raises(openai.APITimeoutError):
            make_llm(srv, timeout=0.3).invoke("two")
    deadline = time.monotonic() + 3
    while set(threading.enumerate()) - before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not set(threading.enumerate()) - before


def test_malformed_body_is_not_accepted() -> None:
    # openai 3.x does not wrap this: a 200 with a non-JSON body surfaces as JSONDecodeError.
    with FakeOpenAIServer([Reply.malformed("this is not json")]) as srv:
        with pytest.raises(json.JSONDecodeError):
            make_llm(srv).invoke("hi")
    assert len(srv.requests) == 1


def test_scripted_responder_runs_out_with_clear_500() -> None:
    script = ScriptedResponder([Reply.text("only one")])
    with FakeOpenAIServer(script) as srv:
        llm = make_llm(srv)
        assert llm.invoke("first").content == "only one"
        with pytest.raises(openai.InternalServerError) as excinfo:
            llm.invoke("second")
    assert "ran out of replies" in str(excinfo.value)
    assert script.calls == 2
    assert script.remaining == 0
    assert len(srv.errors) == 1 and isinstance(srv.errors[0], AssertionError)


def test_requests_recorded_in_order_across_calls() -> None:
    with FakeOpenAIServer(["one", "two", "three"]) as srv:
        llm = make_llm(srv)
        answers = [llm.invoke(q).content for q in ("a", "b", "c")]
    assert answers == ["one", "two", "three"]
    assert [r["messages"][-1]["content"] for r in srv.requests] == ["a", "b", "c"]


def test_unknown_path_is_404() -> None:
    with FakeOpenAIServer(lambda req: Reply.text("x")) as srv:
        client = openai.OpenAI(api_key="test-key", base_url=srv.base_url, max_retries=0)
        with pytest.raises(openai.NotFoundError):
            client.embeddings.create(model="e", input="x")
        client.close()
    assert srv.requests == []
