"""The one model seam: every node gets its chat model here, per role, from a spec string.

Specs:
- ``provider:model`` (``openai:gpt-4o-mini``, ``anthropic:claude-sonnet-4-5``,
  ``ollama:llama3.1``), or a bare model name whose provider LangChain infers
  (``gpt-4o-mini``): LangChain's ``init_chat_model``, with each role's endpoint and key
  (:mod:`oldnew.providers`), so OpenRouter, vLLM, Ollama and LiteLLM work too.
- ``scripted:<file>``: replays a transcript with no network: a hand-written one (TOML or
  JSON, replies chosen by what the prompt contains) or one ``--record`` wrote (JSON Lines,
  replies chosen exactly by role and prompt; see :mod:`oldnew.record`).

With the run's ``record`` setting, every model this seam hands out (any spec, or a Python
override) appends each exchange to that file (:class:`oldnew.record.Recorder`).

Tests of graph logic can instead pass a :class:`oldnew.testing.FunctionModel` (a reply is a
Python function of the messages) to ``build_graph(models=...)``.
"""

from __future__ import annotations

import asyncio
import json
import threading
import tomllib
import uuid
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel

from oldnew import providers
from oldnew.context import ROLES, Context, Role
from oldnew.errors import ConfigurationError, ModelOutputError, ScriptedModelError
from oldnew.record import (
    Recording,
    check_record_target,
    is_headerless_recording,
    is_recording,
    normalized,
    prompt_key,
    recorder_for,
    replay_counts,
)
from oldnew.recovery.retry import RetryPolicy, with_retry
from oldnew.tracing import with_role

SPEC_HELP = (
    "use 'provider:model' ('openai:gpt-4o-mini', 'anthropic:claude-sonnet-4-5', "
    "'ollama:llama3.1'), a model name whose provider LangChain infers ('gpt-4o-mini', "
    "'claude-3-5-sonnet-latest'), or 'scripted:<transcript file>'"
)

_ASYNC_HTTP_CLIENTS: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[str | None, float], Any]
] = weakref.WeakKeyDictionary()

ModelOverrides = BaseChatModel | Mapping[str, BaseChatModel] | None
"""What ``build_graph(models=...)`` accepts: one model for every role, or one per role."""


@dataclass(frozen=True)
class ScriptedReply:
    """One reply of a transcript and the prompt text that selects it."""

    when: tuple[str, ...]
    role: str | None
    text: str
    structured: dict[str, Any] | None
    tool: str | None
    args: dict[str, Any] | None


def load_transcript(path: Path) -> list[ScriptedReply]:
    """Read a hand-written transcript; raise ConfigurationError saying what is wrong with it."""
    if is_recording(path):
        raise ConfigurationError(
            f"{path} is a recorded transcript: replay it with the spec 'scripted:{path}'"
        )
    if is_headerless_recording(path):
        raise ConfigurationError(
            f"{path} is a recording without a header (its first line is an exchange, not "
            '{"transcript": "oldnew", ...}), so it cannot be replayed: record the run again '
            "with --record"
        )
    try:
        raw = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"cannot read transcript {path}: {exc.strerror}") from exc
    try:
        data = json.loads(raw) if path.suffix == ".json" else tomllib.loads(raw)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"transcript {path} does not parse: {exc}") from exc
    replies = data.get("reply")
    if not isinstance(replies, list) or not replies:
        raise ConfigurationError(f"transcript {path} has no [[reply]] entries")
    out = []
    for i, item in enumerate(replies, start=1):
        when = item.get("when", [])
        if isinstance(when, str):
            when = [when]
        if not any(k in item for k in ("text", "structured", "tool")):
            raise ConfigurationError(f"{path}: reply {i} needs 'text', 'structured' or 'tool'")
        out.append(
            ScriptedReply(
                when=tuple(when),
                role=item.get("role"),
                text=item.get("text", ""),
                structured=item.get("structured"),
                tool=item.get("tool"),
                args=item.get("args"),
            )
        )
    return out


def _message_text(messages: Sequence[BaseMessage]) -> str:
    return "\n".join(str(m.content) for m in messages)


def estimated_usage(
    messages: Sequence[BaseMessage], text: str, payload: Any = None
) -> UsageMetadata:
    """Return the usage an offline model reports: 4 characters a token, not a tokenizer.

    Input is the prompt's text; output is the reply's text plus its structured answer or tool
    arguments (``payload``) as JSON. Deterministic, so a replayed run meters the same.
    """
    prompt_tokens = len(_message_text(messages)) // 4
    out_chars = len(text) + (len(json.dumps(payload)) if payload is not None else 0)
    out_tokens = out_chars // 4
    return {
        "input_tokens": prompt_tokens,
        "output_tokens": out_tokens,
        "total_tokens": prompt_tokens + out_tokens,
    }


class ScriptedChatModel(BaseChatModel):
    """A chat model that answers from a transcript, chosen by what the prompt contains.

    A reply is picked by content, not by position: the first reply whose ``role`` fits and
    whose ``when`` strings all occur in the prompt. The same prompt always gets the same
    reply, so a run that is killed and resumed replays exactly.

    Each reply reports ``usage_metadata`` so runs on a transcript are accounted and budgets
    apply: an estimate of 4 characters a token, of the prompt's text (input) and of the reply's
    text plus its structured or tool arguments as JSON (output). Deterministic, not a tokenizer.
    """

    replies: list[ScriptedReply]
    role: str | None = None
    source: str = "<inline>"
    bound_tools: list[str] = []
    structured_bound: bool = False
    """The bound tool is a structured-output schema (``with_structured_output``)."""
    recording: Any = None
    """A :class:`oldnew.record.Recording` to replay exactly, instead of ``replies``."""
    counts: Any = None
    """The :class:`oldnew.record.ReplayCounts` of a recording's replay."""
    workspace: str | None = None
    """The replaying run's workspace (masked in prompts, as the recording's was)."""

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def bind_tools(  # type: ignore[override]
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any]],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Return a copy that answers 'structured' replies as calls to the first bound tool."""
        names = [convert_to_openai_tool(t)["function"]["name"] for t in tools]
        structured = bool(kwargs.get("ls_structured_output_format"))
        return self.model_copy(update={"bound_tools": names, "structured_bound": structured})

    def _pick(self, messages: Sequence[BaseMessage]) -> ScriptedReply:
        text = _message_text(messages)
        for reply in self.replies:
            if reply.role not in (None, self.role):
                continue
            if all(w in text for w in reply.when):
                return reply
        head = text[-400:].replace("\n", " ")
        raise ScriptedModelError(
            f"transcript {self.source} has no reply for the {self.role or 'any'} prompt "
            f"ending: ...{head}"
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.recording is not None:
            return self._replay(messages)
        reply = self._pick(messages)
        tool_calls = []
        if reply.structured is not None:
            if not self.bound_tools:
                raise ScriptedModelError(
                    f"{self.source}: a 'structured' reply needs a call with a schema bound"
                )
            tool_calls.append({"name": self.bound_tools[0], "args": reply.structured})
        elif reply.tool is not None:
            tool_calls.append({"name": reply.tool, "args": reply.args or {}})
        payload = reply.structured if reply.structured is not None else reply.args
        message = AIMessage(
            content=reply.text,
            tool_calls=[{**c, "id": f"call_{uuid.uuid4().hex[:12]}"} for c in tool_calls],
            usage_metadata=estimated_usage(messages, reply.text, payload),
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _replay(self, messages: list[BaseMessage]) -> ChatResult:
        """Answer as the recorded exchange of this role and prompt did."""
        recording: Recording = self.recording
        prompt = normalized(messages)
        role = self.role or "any"
        key = prompt_key(role, prompt, self.workspace)
        asked = self.counts.next(key) if self.counts is not None else 0
        ex = recording.answer(role, prompt, asked, self.workspace)
        calls = list(ex.tool_calls)
        if self.structured_bound and ex.structured is not None and not calls:
            calls = [{"name": self.bound_tools[0], "args": ex.structured}]
        text = ex.text if isinstance(ex.text, str) else json.dumps(ex.text)
        usage = ex.usage or estimated_usage(messages, text, ex.structured)
        invalid = [
            {**c, "id": f"call_{uuid.uuid4().hex[:12]}", "type": "invalid_tool_call"}
            for c in ex.invalid_tool_calls
        ]
        message = AIMessage(
            content=ex.text,  # a list of content blocks stays a list
            tool_calls=[{**c, "id": f"call_{uuid.uuid4().hex[:12]}"} for c in calls],
            invalid_tool_calls=invalid,  # malformed tool JSON, as the live model sent it
            usage_metadata=usage,
            response_metadata={"model_name": ex.model} if ex.model else {},
        )
        return ChatResult(generations=[ChatGeneration(message=message)])


_RECORDINGS: dict[tuple[str, int, int], Recording] = {}
_RECORDINGS_LOCK = threading.Lock()


def _recording(path: Path) -> Recording:
    """Read a recording, once per version of the file."""
    try:
        st = path.stat()
    except OSError as exc:
        raise ConfigurationError(f"cannot read transcript {path}: {exc.strerror}") from exc
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    with _RECORDINGS_LOCK:
        found = _RECORDINGS.get(key)
    if found is None:
        found = Recording.load(path)
        with _RECORDINGS_LOCK:
            _RECORDINGS[key] = found
    return found


def _async_http_client(base_url: str | None, timeout: float) -> Any:
    """Return an HTTP client that belongs to the running event loop (None outside one).

    Without it langchain-openai shares one process-wide async client whose pooled
    connections are bound to the first event loop that used them, so a second
    ``asyncio.run`` in the same process (``start_run`` then ``resume_run``) fails with
    "RuntimeError: Event loop is closed".
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    import openai

    clients = _ASYNC_HTTP_CLIENTS.setdefault(loop, {})
    client = clients.get((base_url, timeout))
    if client is None or client.is_closed:
        client = clients[(base_url, timeout)] = openai.DefaultAsyncHttpxClient(timeout=timeout)
    return client


async def aclose_http_clients() -> None:
    """Close the HTTP clients opened in the running event loop; call before it ends."""
    for client in _ASYNC_HTTP_CLIENTS.pop(asyncio.get_running_loop(), {}).values():
        await client.aclose()


DEFAULT_TIMEOUT = 300.0
"""Seconds a model reply may take (Context ``model_timeout``)."""


def make_chat_model(
    spec: str,
    *,
    role: Role | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    workspace: str | None = None,
    base_url: str | None = None,
) -> BaseChatModel:
    """Build the chat model a spec names; raise ConfigurationError on a bad spec.

    ``timeout`` is the client's wait for one reply and ``base_url`` the role's endpoint (None:
    the provider's own variable), for a provider's model (:mod:`oldnew.providers`, which also
    reads the role's API key from the environment); ``workspace`` is where a recording's
    replay counts how often each prompt was asked (``scripted:``; None: in memory).
    """
    kind, _, rest = spec.partition(":")
    if kind == "scripted" and rest:
        path = Path(rest).expanduser()
        if is_recording(path):
            return ScriptedChatModel(
                replies=[],
                role=role,
                source=str(path),
                recording=_recording(path),
                counts=replay_counts(str(path.resolve()), workspace),
                workspace=workspace,
            )
        return ScriptedChatModel(replies=load_transcript(path), role=role, source=str(path))
    if not spec.strip() or kind == "scripted":
        raise ConfigurationError(f"unknown model spec '{spec}': {SPEC_HELP}")
    return providers.build(
        spec,
        role=role,
        base_url=base_url,
        timeout=timeout,
        async_http_client=_async_http_client,
    )


def resolve_model(role: Role, context: Context, overrides: ModelOverrides = None) -> BaseChatModel:
    """Return the model for ``role``: a Python override first, then the run's spec.

    With the run's ``record`` setting, the model records every exchange into that file.
    """
    model = with_role(_resolve(role, context, overrides), role)
    if not context.record:
        return model
    spec = context.model_spec(role) or ""
    replaying = Path(spec.removeprefix("scripted:")) if spec.startswith("scripted:") else None
    if isinstance(model, ScriptedChatModel) and model.source != "<inline>":
        replaying = Path(model.source)
    recorder = recorder_for(context.record, role, context.workspace, replaying)
    return model.model_copy(update={"callbacks": [*_handlers(model.callbacks), recorder]})


def _handlers(callbacks: Any) -> list[Any]:
    from langchain_core.callbacks import BaseCallbackManager

    if isinstance(callbacks, BaseCallbackManager):
        return list(callbacks.handlers)
    return list(callbacks or [])


def _resolve(role: Role, context: Context, overrides: ModelOverrides) -> BaseChatModel:
    if isinstance(overrides, BaseChatModel):
        return overrides
    if overrides is not None and role in overrides:
        return overrides[role]
    spec = context.model_spec(role)
    if not spec:
        raise ConfigurationError(
            f"no model is set for the {role}: pass --model, set OLDNEW_MODEL, or put 'model' "
            f"in the run's context ({SPEC_HELP})"
        )
    return make_chat_model(
        spec,
        role=role,
        timeout=context.model_timeout,
        workspace=context.workspace,
        base_url=context.model_base_url(role),
    )


async def aresolve_model(
    role: Role, context: Context, overrides: ModelOverrides = None
) -> BaseChatModel:
    """:func:`resolve_model` for async nodes.

    A transcript is read off the event loop (file I/O); an OpenAI client is built on the loop,
    because its HTTP connections belong to the loop that creates them.
    """
    spec = context.model_spec(role) or ""
    if (
        spec.startswith("scripted:")
        and not isinstance(overrides, BaseChatModel)
        and (overrides is None or role not in overrides)
    ):
        return await asyncio.to_thread(resolve_model, role, context, overrides)
    return resolve_model(role, context, overrides)


def check_model_specs(context: Context) -> None:
    """Fail early, before any work, when a role's model spec cannot be built.

    Raises:
        ConfigurationError: a spec is bad, or names a transcript that does not read.
        UsageError: the run would record into the transcript it replays.
    """
    for role in ROLES:
        replays = context.model_spec(role) or ""
        if context.record and replays.startswith("scripted:"):
            check_record_target(context.record, Path(replays.removeprefix("scripted:")))
    for role in ROLES:
        spec = context.model_spec(role)
        if not spec:
            resolve_model(role, context)
        else:
            make_chat_model(
                spec,
                role=role,
                timeout=context.model_timeout,
                base_url=context.model_base_url(role),
            )


Schema = TypeVar("Schema", bound=BaseModel)


async def ainvoke_structured(
    model: BaseChatModel,
    schema: type[Schema],
    messages: list[BaseMessage],
    *,
    method: str,
    retries: int,
    policy: RetryPolicy | None = None,
) -> Schema:
    """Ask for ``schema``; on output that does not parse, say why and ask again.

    Transient failures (rate limits, timeouts, 5xx) are retried under ``policy``.

    Raises:
        ModelOutputError: after ``retries`` re-asks still gave no valid object.
        ClassifiedFailure: the call failed in a way retrying did not cure.
    """
    from oldnew.prompts import render

    runnable = model.with_structured_output(schema, method=method, include_raw=True)
    history = list(messages)
    problem = "no answer"
    for _ in range(retries + 1):
        result: Any = await with_retry(lambda: runnable.ainvoke(history), policy or RetryPolicy())
        parsed = result.get("parsed")
        if isinstance(parsed, schema):
            return parsed
        problem = str(result.get("parsing_error") or "the answer did not match the schema")
        history.append(HumanMessage(render("output_retry", problem=problem[:2000])))
    raise ModelOutputError(f"{schema.__name__} did not parse after {retries + 1} tries: {problem}")
