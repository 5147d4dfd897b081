"""FunctionModel: replies from a Python function, told what each call is for."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from oldnew.budget.meter import ledger_of, metered
from oldnew.context import ROLES, Context
from oldnew.errors import ScriptedModelError
from oldnew.models import ainvoke_structured, estimated_usage, resolve_model
from oldnew.schemas import AskHuman, Scope
from oldnew.testing import CallInfo, FunctionModel, call_tool, prompt_text

SCOPE = {"title": "calc", "summary": "s", "features": [{"id": "F1", "title": "add"}]}
ASK = {"kind": "design_decision", "question": "Which port?", "options": ["80", "8080"]}


def _echo(messages: list[BaseMessage], info: CallInfo) -> str:
    return f"{info.role}:{len(messages)}"


def test_text_reply_with_usage_and_a_log() -> None:
    model = FunctionModel(fn=_echo, role="coder")
    messages = [SystemMessage("be brief"), HumanMessage("hello")]
    reply = model.invoke(messages)
    assert isinstance(reply, AIMessage) and reply.content == "coder:2"
    assert reply.usage_metadata == estimated_usage(messages, "coder:2")
    assert reply.usage_metadata["input_tokens"] == len("be brief\nhello") // 4
    (call,) = model.log.calls
    assert call.info == CallInfo("coder", None, None, None, (), 0)
    assert not call.info.structured and prompt_text(call.messages) == "be brief\nhello"


def test_bound_tools_are_known_and_a_tool_call_comes_back() -> None:
    seen: list[tuple[str, ...]] = []

    def reply(messages: list[BaseMessage], info: CallInfo) -> AIMessage:
        seen.append(info.tools)
        return call_tool("AskHuman", ASK)

    model = FunctionModel(fn=reply)
    out = model.bind_tools([AskHuman]).invoke("code it")
    assert seen == [("AskHuman",)]
    assert isinstance(out, AIMessage)
    (call,) = out.tool_calls
    assert call["name"] == "AskHuman" and call["args"] == ASK and call["id"]
    assert out.usage_metadata and out.usage_metadata["output_tokens"] > 0
    # The copy shares its log with the model it was bound from.
    assert len(model.log.calls) == 1 and model.log.calls[0].info.tools == ("AskHuman",)


@pytest.mark.parametrize("answer", [SCOPE, Scope.model_validate(SCOPE)])
def test_structured_answers_are_validated_into_the_schema(answer: Any) -> None:
    def reply(messages: list[BaseMessage], info: CallInfo) -> Any:
        assert info.structured and info.schema is Scope
        return answer

    parsed = FunctionModel(fn=reply).with_structured_output(Scope).invoke("read the scope")
    assert isinstance(parsed, Scope) and parsed.features[0].id == "F1"


def test_an_answer_that_does_not_fit_is_asked_again() -> None:
    def reply(messages: list[BaseMessage], info: CallInfo) -> dict[str, Any]:
        return {"title": "no summary"} if info.index == 0 else SCOPE

    model = FunctionModel(fn=reply, role="planner")
    parsed = asyncio.run(
        ainvoke_structured(model, Scope, [HumanMessage("read it")], method="json_schema", retries=1)
    )
    assert parsed == Scope.model_validate(SCOPE)
    first, second = model.log.calls
    # The re-ask carries the validation error, as it would to a real model.
    assert len(second.messages) == len(first.messages) + 1
    assert "summary" in str(second.messages[-1].content)


def test_async_functions_and_wrong_replies() -> None:
    async def slow(messages: list[BaseMessage], info: CallInfo) -> str:
        await asyncio.sleep(0)
        return "done"

    assert asyncio.run(FunctionModel(fn=slow).ainvoke("x")).content == "done"
    with pytest.raises(TypeError, match="async call"):
        FunctionModel(fn=slow).invoke("x")
    with pytest.raises(ScriptedModelError, match="asked for no schema"):
        FunctionModel(fn=lambda m, i: SCOPE).invoke("x")
    with pytest.raises(TypeError, match="not int"):
        FunctionModel(fn=lambda m, i: 3).invoke("x")


def test_metered_calls_say_role_activity_and_task_and_are_counted_free(tmp_path: Path) -> None:
    model = FunctionModel(fn=lambda m, i: f"{i.role}/{i.activity}/{i.task}")
    ctx = Context()
    fixer = metered(model, ctx, tmp_path, role="fixer", activity="fix", task="T2")
    assert asyncio.run(fixer.ainvoke("fix it")).content == "fixer/fix/T2"
    (call,) = ledger_of(tmp_path).calls
    assert call["role"] == "fixer" and call["task"] == "T2" and call["model"] == "scripted"
    assert call["usage_reported"] and call["output_tokens"] == len("fixer/fix/T2") // 4
    assert call["cost_usd"] == 0


def test_one_model_or_one_per_role_through_the_model_seam() -> None:
    one = FunctionModel(fn=_echo)
    assert all(resolve_model(role, Context(), one) is one for role in ROLES)
    models = FunctionModel.per_role(_echo)
    assert {r: resolve_model(r, Context(), models).role for r in ROLES} == {r: r for r in ROLES}
    for role in ROLES:
        models[role].invoke("hi")
    assert [c.info.role for c in models["planner"].log.calls] == list(ROLES)
