"""The failure classifier and the retry policy, with real openai/httpx exception objects."""

from __future__ import annotations

import asyncio
import json
import random

import httpx2
import openai
import pytest
from pydantic import BaseModel

from oldnew.errors import ConfigurationError, ModelOutputError
from oldnew.recovery import classify, classify_diagnostics
from oldnew.recovery.retry import ClassifiedFailure, RetryPolicy, with_retry

URL = "http://127.0.0.1:9/v1/chat/completions"


def _status(
    status: int,
    message: str = "boom",
    headers: dict[str, str] | None = None,
    cls: type[openai.APIStatusError] = openai.APIStatusError,
) -> openai.APIStatusError:
    request = httpx2.Request("POST", URL)
    response = httpx2.Response(
        status, headers=headers or {}, request=request, json={"error": {"message": message}}
    )
    return cls(message, response=response, body={"error": {"message": message}})


def test_http_errors_are_classified_by_status() -> None:
    c = classify(_status(429, headers={"Retry-After": "7"}, cls=openai.RateLimitError))
    assert (c.cls, c.retry_after, c.source) == ("transient", 7.0, "http")
    c = classify(_status(429, headers={"retry-after-ms": "1500"}, cls=openai.RateLimitError))
    assert c.retry_after == 1.5
    assert classify(_status(503, cls=openai.InternalServerError)).cls == "transient"
    c = classify(_status(401, cls=openai.AuthenticationError))
    assert c.cls == "configuration" and "OPENAI_API_KEY" in c.reason
    assert classify(_status(404, cls=openai.NotFoundError)).cls == "configuration"
    overflow = _status(
        400, "This model's maximum context length is 8192 tokens", cls=openai.BadRequestError
    )
    assert classify(overflow).cls == "context_overflow"
    assert classify(_status(400, "bad field", cls=openai.BadRequestError)).cls == "recoverable"


class _SdkError(Exception):
    """What another provider's SDK raises: its own class, a status and the response."""

    def __init__(self, status: int, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"Error code: {status}")
        self.status_code = status
        self.response = httpx2.Response(status, headers=headers or {})


class APIConnectionError(Exception):
    """Named as Anthropic's and Groq's SDKs name theirs (not openai's class)."""


class ReadTimeout(Exception):
    """Named as httpx's (under most SDKs) is."""


def test_another_providers_errors_are_classified_by_what_they_carry() -> None:
    c = classify(_SdkError(429, {"retry-after": "3"}))
    assert (c.cls, c.retry_after) == ("transient", 3.0)
    assert classify(_SdkError(529)).cls == "transient"  # Anthropic's "overloaded"
    assert classify(_SdkError(401)).cls == "configuration"
    assert classify(APIConnectionError("connection refused")).cls == "transient"
    assert classify(ReadTimeout("read timed out")).cls == "transient"
    assert classify(RuntimeError("something else")).cls == "recoverable"


def test_transport_and_local_errors() -> None:
    request = httpx2.Request("POST", URL)
    assert classify(openai.APITimeoutError(request=request)).cls == "transient"
    assert classify(openai.APIConnectionError(request=request)).cls == "transient"
    assert classify(ConnectionResetError(104, "Connection reset by peer")).cls == "transient"
    assert classify(json.JSONDecodeError("Expecting value", '{"id": ', 7)).cls == "transient"
    assert classify(ConfigurationError("set OPENAI_API_KEY")).cls == "configuration"
    assert classify(ModelOutputError("no file blocks")).cls == "recoverable"

    class M(BaseModel):
        x: int

    with pytest.raises(Exception) as info:
        M.model_validate({"x": "nope"})
    assert classify(info.value).cls == "recoverable"


def test_diagnostics_are_classified() -> None:
    assert classify_diagnostics([]) is None
    c = classify_diagnostics(
        ["app.py:1: [pytest error] ModuleNotFoundError: No module named 'stripe'"],
        project_modules={"app"},
    )
    # The dependencies step installs what a project declares: a module missing is undeclared.
    assert c is not None and c.cls == "recoverable" and c.detail == "stripe"
    assert "must declare the package" in c.reason
    own = classify_diagnostics(
        ["t.py:1: [pytest error] No module named 'app.models'"], project_modules={"app"}
    )
    assert own is not None and own.cls == "recoverable"
    env = classify_diagnostics(["t.py:9: [pytest failure] KeyError: 'STRIPE_API_KEY'"])
    assert env is not None and env.cls == "configuration" and env.detail == "STRIPE_API_KEY"
    cyc = classify_diagnostics(
        [
            "a.py:1: [pytest error] ImportError: cannot import name 'x' "
            "from partially initialized module 'a' (circular import)"
        ]
    )
    assert cyc is not None and cyc.cls == "design_flaw"
    plain = classify_diagnostics(["a.py:3: [ruff F821] Undefined name `x`"])
    assert plain is not None and plain.cls == "recoverable"


def test_retry_honours_retry_after_then_gives_up() -> None:
    waits: list[float] = []
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise _status(429, headers={"Retry-After": "2"}, cls=openai.RateLimitError)
        return "ok"

    async def fake_sleep(seconds: float) -> None:
        waits.append(seconds)

    policy = RetryPolicy(max_attempts=4)
    assert asyncio.run(with_retry(flaky, policy, sleep=fake_sleep)) == "ok"
    assert waits == [2.0, 2.0]

    async def always_500() -> str:
        raise _status(500, cls=openai.InternalServerError)

    waits.clear()
    with pytest.raises(ClassifiedFailure) as info:
        asyncio.run(
            with_retry(
                always_500,
                RetryPolicy(max_attempts=3, base_delay=1.0),
                sleep=fake_sleep,
                rng=random.Random(1),
            )
        )
    assert info.value.attempts == 3 and info.value.classification.cls == "transient"
    assert len(waits) == 2 and all(0 <= w <= 2.0 for w in waits)


def test_non_transient_failures_are_not_retried() -> None:
    calls = 0

    async def refused() -> str:
        nonlocal calls
        calls += 1
        raise _status(401, cls=openai.AuthenticationError)

    with pytest.raises(ClassifiedFailure) as info:
        asyncio.run(with_retry(refused, RetryPolicy()))
    assert calls == 1 and info.value.classification.cls == "configuration"
