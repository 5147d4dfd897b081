"""Fault injection: a chat model wrapper that fails at configured rates, reproducibly.

Faults: rate limit (429 with Retry-After), timeout, 5xx, malformed or truncated output, and
code with syntax errors. Whether a call fails depends only on the seed, the prompt and how
many times this prompt was sent before, so a run is reproducible from its seed and a retried
call can succeed. Configuration blockers and design flaws are per task, decided by the model
being wrapped (see :class:`SyntheticProjectModel`).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

import httpx2
import openai
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable

from oldnew.recovery import policy
from oldnew.recovery.policy import FailureClass

TRANSIENT = ("rate_limit", "timeout", "server_error")
"""Faults raised as the errors a provider raises."""
OUTPUT = ("malformed", "broken_code")
"""Faults that spoil the reply."""
FAULTS = (*TRANSIENT, *OUTPUT)
EXPECTED: dict[str, FailureClass] = {
    "rate_limit": "transient",
    "timeout": "transient",
    "server_error": "transient",
    "malformed": "recoverable",
    "broken_code": "recoverable",
}
"""The failure class each fault must be sorted into; its policy row says what the bench sees."""
RETRIED = tuple(f for f in FAULTS if policy.failure(EXPECTED[f]).retry == "backoff")
"""The faults that are retried with backoff (no fix round, no question), by the policy."""
_URL = "http://fault.invalid/v1/chat/completions"


def unit(*parts: object) -> float:
    """Return a number in [0, 1) determined by ``parts`` (a seeded, stateless coin)."""
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _status_error(status: int, headers: dict[str, str]) -> openai.APIStatusError:
    request = httpx2.Request("POST", _URL)
    response = httpx2.Response(
        status, headers=headers, request=request, json={"error": {"message": "injected fault"}}
    )
    cls = openai.RateLimitError if status == 429 else openai.InternalServerError
    return cls("injected fault", response=response, body=None)


class FaultInjectingChatModel(BaseChatModel):
    """Wraps a chat model and injects faults at configured rates, from a seed."""

    inner: BaseChatModel
    rates: dict[str, float]
    seed: int = 0
    retry_after: float = 0.0
    seen: Counter[str] = Counter()
    injected: Counter[str] = Counter()
    usage: Counter[str] = Counter()

    @property
    def _llm_type(self) -> str:
        return "fault-injecting"

    def bind_tools(
        self, tools: Sequence[Any], *, tool_choice: str | None = None, **kwargs: Any
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind the tools on the wrapped model and keep injecting faults around it."""
        bound = self.inner.bind_tools(tools, tool_choice=tool_choice, **kwargs)
        if not isinstance(bound, BaseChatModel):
            raise TypeError(
                "fault injection needs a wrapped model whose bind_tools returns a "
                "chat model (such as ScriptedChatModel)"
            )
        return self.model_copy(update={"inner": bound})

    def _fault(self, messages: Sequence[BaseMessage]) -> str | None:
        text = "\n".join(str(m.content) for m in messages)
        key = hashlib.sha256(text.encode()).hexdigest()[:16]
        n = self.seen[key]
        self.seen[key] += 1
        coin = unit(self.seed, key, n)
        edge = 0.0
        for name in FAULTS:
            edge += self.rates.get(name, 0.0)
            if coin < edge:
                self.injected[name] += 1
                return name
        return None

    def _raise_transient(self, fault: str) -> None:
        if fault == "rate_limit":
            raise _status_error(429, {"Retry-After": str(self.retry_after)})
        if fault == "server_error":
            raise _status_error(500, {})
        raise openai.APITimeoutError(request=httpx2.Request("POST", _URL))

    @staticmethod
    def _spoil(message: AIMessage, fault: str) -> AIMessage:
        text = str(message.content)
        if not text or message.tool_calls:
            return message
        if fault == "malformed":
            return AIMessage(content=text[: len(text) // 2], usage_metadata=message.usage_metadata)
        broken = re.sub(r"(```python\n)", r"\1def broken(:\n    pass\n", text, count=1)
        return AIMessage(content=broken, usage_metadata=message.usage_metadata)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        fault = self._fault(messages)
        if fault in TRANSIENT:
            self._raise_transient(fault)
        result = self.inner._generate(messages, stop=stop, **kwargs)
        reply = result.generations[0].message
        if isinstance(reply, AIMessage) and reply.usage_metadata:
            self.usage.update(
                {k: int(v) for k, v in reply.usage_metadata.items() if isinstance(v, int)}
            )
        if fault in OUTPUT:
            gen = result.generations[0]
            assert isinstance(gen.message, AIMessage)  # noqa: S101
            result = ChatResult(
                generations=[ChatGeneration(message=self._spoil(gen.message, fault))]
            )
        return result

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return self._generate(messages, stop=stop, **kwargs)
