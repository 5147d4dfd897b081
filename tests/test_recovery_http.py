"""Each transient failure class end to end, with the real ChatOpenAI against a local server
that injects 429 with Retry-After, 500, a hung connection, a malformed body and a reply that
trickles in a byte at a time; and a service that stays down ends in a classified question with
alternatives, never a crash or a hang."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLE
from fake_openai import FakeOpenAIServer, Reply
from test_openai_client import TranscriptResponder

from oldnew.runs import resume_run, start_run

pytestmark = pytest.mark.usefixtures("smoke_gates")  # graph logic, not the gates


class FaultOnce:
    """Answer from the transcript, but give the first planner request ``fault`` instead."""

    def __init__(self, fault: Reply) -> None:
        self.inner = TranscriptResponder(EXAMPLE / "transcript.toml")
        self.fault = fault
        self.faulted = 0

    def __call__(self, request: dict[str, Any]) -> Reply:
        if self.faulted == 0:
            self.faulted += 1
            return self.fault
        return self.inner(request)


def _events(ws: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (ws / ".oldnew" / "events.jsonl").read_text().splitlines()]


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "fault",
    [
        Reply.rate_limited(retry_after=1),
        Reply.server_error(),
        Reply.hanging(),
        Reply.malformed(),
        Reply.trickle_text("too late", every=0.2, pad=200),
    ],
    ids=["429-retry-after", "500", "hang", "malformed-json", "trickle"],
)
def test_transient_fault_is_retried_and_the_run_goes_on(
    fault: Reply, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    responder = FaultOnce(fault)
    with FakeOpenAIServer(responder, hang_limit=30) as srv:
        monkeypatch.setenv("OPENAI_API_KEY", "test-key")
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        monkeypatch.setenv("OLDNEW_MODEL_TIMEOUT", "2")
        context = {"model": "openai:fake-model", "retry_base_delay": 0.05}
        start = time.monotonic()
        out = asyncio.run(start_run(EXAMPLE / "scope.md", tmp_path / "ws", context=context))
        took = time.monotonic() - start
        assert out.status == "waiting" and [q["id"] for q in out.questions] == ["T3-q1"]
        assert responder.faulted == 1
        scope_calls = [r for r in srv.requests if "scoping engineer" in json.dumps(r)]
        assert len(scope_calls) == 2  # the faulted call and its retry
        if fault.headers.get("Retry-After"):
            assert took >= 1.0  # the server's Retry-After was honoured


@pytest.mark.timeout(120)
def test_service_that_stays_down_becomes_a_question(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeOpenAIServer(lambda request: Reply.server_error("upstream down")) as srv:
        monkeypatch.setenv("OPENAI_API_KEY", "test-key")
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        context = {
            "model": "openai:fake-model",
            "retry_base_delay": 0.01,
            "max_transient_retries": 3,
        }
        ws = tmp_path / "ws"
        out = asyncio.run(start_run(EXAMPLE / "scope.md", ws, context=context))
        assert out.status == "waiting"
        (q,) = out.questions
        assert q["kind"] == "external_service" and "server error (500)" in q["title"]
        assert [o["key"] for o in q["options"]] == ["retry", "abort"]
        assert len(srv.requests) == 3
        escalated = [e for e in _events(ws) if e.get("event") == "escalated"]
        assert escalated[0]["failure"] == "transient"
    # Answering "abort" ends the run cleanly with a report.
    out = asyncio.run(resume_run(ws, answers={q["id"]: "abort"}, context=context))
    assert out.status == "aborted"
    assert json.loads((ws / ".oldnew" / "report.json").read_text())["status"] == "aborted"


@pytest.mark.timeout(60)
def test_invalid_key_is_configuration_not_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    refused = Reply.http_error(401, "Incorrect API key provided", type="invalid_request_error")
    with FakeOpenAIServer(lambda request: refused) as srv:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong")
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        out = asyncio.run(
            start_run(EXAMPLE / "scope.md", tmp_path / "ws", context={"model": "openai:fake-model"})
        )
        assert len(srv.requests) == 1
    (q,) = out.questions
    assert q["kind"] == "configuration" and "OPENAI_API_KEY" in q["title"]


@pytest.mark.timeout(30)
def test_a_trickling_reply_is_cut_off_at_model_timeout_retried_then_escalated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each read is quick, the whole reply is not: only the call's own deadline ends it."""
    from oldnew.budget import metered, wait_clock
    from oldnew.context import Context
    from oldnew.models import resolve_model
    from oldnew.recovery.retry import ClassifiedFailure, with_retry

    slow = Reply.trickle_text("too late", every=0.2, pad=100)  # 20 s in all
    with FakeOpenAIServer(lambda request: slow) as srv:
        monkeypatch.setenv("OPENAI_API_KEY", "test-key")
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        ctx = Context(
            model="openai:fake-model",
            model_timeout=1,
            max_transient_retries=2,
            retry_base_delay=0,
            memory_path="off",
        )
        (tmp_path / ".oldnew").mkdir()
        clock = wait_clock(tmp_path, "T1")
        clock.reset()

        async def call() -> Any:
            coder = resolve_model("coder", ctx)
            model = metered(coder, ctx, tmp_path, role="coder", activity="code", task="T1")
            return await with_retry(lambda: model.ainvoke("write it"), ctx.retry_policy())

        start = time.monotonic()
        with pytest.raises(ClassifiedFailure) as info:
            asyncio.run(asyncio.wait_for(call(), 15))
        took = time.monotonic() - start
        assert len(srv.requests) == 2  # the first try and its retry, each cut off
    failure = info.value
    assert failure.attempts == 2 and failure.classification.cls == "transient"
    assert "within 1 s" in failure.classification.reason
    assert "OLDNEW_MODEL_TIMEOUT" in failure.classification.reason
    assert 2.0 <= took < 6.0
    assert not clock.waiting() and clock.waited() >= 1.8  # the cut-off calls ended their wait
