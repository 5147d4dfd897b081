"""A chat model whose reply is a Python function of the messages, for tests of graph logic.

A transcript (``scripted:``) picks replies by substrings of the prompt, so a test breaks when a
prompt's wording changes. A :class:`FunctionModel` asks a function instead, and tells it what
the call is for without reading the prompt: the role and activity, the task, the structured-output
schema and the tools bound::

    def reply(messages, info):
        if info.schema is Plan:
            return PLAN                      # a dict (or a Plan), validated into a Plan
        if info.role == "coder":
            return CODE[info.task]           # text: the coder's file blocks
        return call_tool("AskHuman", {...})  # or any AIMessage

    build_graph(models=FunctionModel(fn=reply))        # one model for every role
    build_graph(models=FunctionModel.per_role(reply))  # or one per role, sharing a log

Like the scripted model it reports an estimate of its usage (4 characters a token), so runs
on it are metered and budgets apply; it is free (priced as ``scripted``) unless ``model_name``
names another entry of the price table.
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel, Field

from oldnew.budget.meter import BudgetMeter
from oldnew.context import ROLES, Role
from oldnew.errors import ScriptedModelError
from oldnew.models import estimated_usage


@dataclass(frozen=True)
class CallInfo:
    """What one call is for, as the graph made it (no prompt text is parsed)."""

    role: str | None
    """planner, coder or fixer: the model's own role, else the role its node meters it as."""
    activity: str | None
    """The activity the node meters the call under (scope, plan, code, fix, ...), if any."""
    task: str | None
    """The id of the task the call works on, if any."""
    schema: type[BaseModel] | dict[str, Any] | None
    """The schema asked for by ``with_structured_output``; None for a plain call."""
    tools: tuple[str, ...]
    """Names of the tools bound (the schema's own tool included)."""
    index: int
    """How many calls this model (and its copies) answered before this one."""

    @property
    def structured(self) -> bool:
        """Return whether the call asks for structured output."""
        return self.schema is not None


@dataclass(frozen=True)
class Call:
    """One call the model answered: what it was sent, what it was told, what it replied."""

    messages: list[BaseMessage]
    info: CallInfo
    reply: AIMessage


@dataclass
class CallLog:
    """Every call a model and its copies answered, in order (shared, so tests can read it)."""

    calls: list[Call] = field(default_factory=list)

    def of(self, **match: Any) -> list[Call]:
        """Return the calls whose info has every attribute given (``of(role="fixer")``)."""
        return [c for c in self.calls if all(getattr(c.info, k) == v for k, v in match.items())]


Reply = str | AIMessage | BaseModel | dict[str, Any]
"""What a reply function returns: text, a whole message, or a structured answer."""

ReplyFn = Callable[[list[BaseMessage], CallInfo], Any]
"""``fn(messages, info)`` returning a :data:`Reply`, or an awaitable of one."""


def call_tool(name: str, args: dict[str, Any] | None = None, text: str = "") -> AIMessage:
    """Return a reply that calls the tool ``name`` with ``args`` (``AskHuman``, say)."""
    call_id = f"call_{uuid.uuid4().hex[:12]}"
    return AIMessage(content=text, tool_calls=[{"name": name, "args": args or {}, "id": call_id}])


def prompt_text(messages: Sequence[BaseMessage]) -> str:
    """Return the messages' text joined, for a function that does need to read the prompt."""
    return "\n".join(str(m.content) for m in messages)


def _tool_name(tool: Any) -> str:
    return str(convert_to_openai_tool(tool)["function"]["name"])


class FunctionModel(BaseChatModel):
    """A chat model that answers each call with ``fn(messages, info)``.

    ``fn`` returns text (a plain answer, file blocks), an ``AIMessage`` (tool calls, say:
    see :func:`call_tool`), or, for a call made through ``with_structured_output``, a dict or
    a Pydantic model: it becomes a call to the schema's tool, and LangChain's parser validates
    it into the schema, so an answer that does not fit fails as a real model's would (and is
    asked again). ``fn`` may be async.
    """

    fn: ReplyFn
    role: str | None = None
    """The role this copy serves; None: taken from the node's meter on each call."""
    model_name: str = "scripted"
    """The name calls are priced by; 'scripted' is free in the default price table."""
    log: CallLog = Field(default_factory=CallLog)
    """The calls answered; copies (``bind_tools``, ``with_structured_output``) share it."""
    bound_tools: tuple[str, ...] = ()
    bound_schema: Any = None

    @classmethod
    def per_role(cls, fn: ReplyFn, **kwargs: Any) -> dict[Role, FunctionModel]:
        """Return one model per role, all answering with ``fn`` into one shared log."""
        log = kwargs.pop("log", None) or CallLog()
        return {role: cls(fn=fn, role=role, log=log, **kwargs) for role in ROLES}

    @property
    def _llm_type(self) -> str:
        return "function"

    def bind_tools(  # type: ignore[override]
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any]],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Return a copy that knows the tools (and, for structured output, the schema)."""
        asked = (kwargs.get("ls_structured_output_format") or {}).get("schema")
        return self.model_copy(
            update={
                "bound_tools": tuple(_tool_name(t) for t in tools),
                "bound_schema": asked if asked is not None else self.bound_schema,
            }
        )

    def _info(self, run_manager: Any) -> CallInfo:
        meter = next(
            (h for h in getattr(run_manager, "handlers", []) if isinstance(h, BudgetMeter)),
            None,
        )
        return CallInfo(
            role=self.role or (meter.role if meter else None),
            activity=meter.activity if meter else None,
            task=meter.task if meter else None,
            schema=self.bound_schema,
            tools=self.bound_tools,
            index=len(self.log.calls),
        )

    def _message(self, reply: Any, messages: list[BaseMessage], info: CallInfo) -> AIMessage:
        if isinstance(reply, str):
            message = AIMessage(content=reply)
        elif isinstance(reply, AIMessage):
            message = reply.model_copy(deep=True)
        elif isinstance(reply, BaseModel | dict):
            if info.schema is None:
                raise ScriptedModelError(
                    "a FunctionModel reply is structured (a dict or a model) but the call asked "
                    "for no schema: return text or an AIMessage for a plain call"
                )
            args = reply.model_dump(mode="json") if isinstance(reply, BaseModel) else reply
            message = call_tool(_tool_name(info.schema), args)
        else:
            raise TypeError(
                f"a FunctionModel reply must be text, an AIMessage, a dict or a Pydantic model, "
                f"not {type(reply).__name__}"
            )
        if message.usage_metadata is None:
            called = [c["args"] for c in message.tool_calls]
            payload = called[0] if len(called) == 1 else (called or None)
            message.usage_metadata = estimated_usage(messages, str(message.content), payload)
        self.log.calls.append(Call(list(messages), info, message))
        return message

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        info = self._info(run_manager)
        reply = self.fn(list(messages), info)
        if inspect.isawaitable(reply):
            if inspect.iscoroutine(reply):
                reply.close()  # never awaited: close it, so no "never awaited" warning
            raise TypeError("an async reply function needs an async call (ainvoke)")
        return ChatResult(
            generations=[ChatGeneration(message=self._message(reply, messages, info))]
        )

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        info = self._info(run_manager)
        reply = self.fn(list(messages), info)
        if inspect.isawaitable(reply):
            reply = await reply
        return ChatResult(
            generations=[ChatGeneration(message=self._message(reply, messages, info))]
        )
