"""The planner sees the person's words: the whole short scope, a long one's source sections."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from langchain_core.messages import BaseMessage

from oldnew.context import SCOPE_CHARS_PER_TOKEN, Context, model_settings
from oldnew.planning import Asker, Planner, assess, extract_scope
from oldnew.planning.revise import split_task
from oldnew.planning.sections import split_sections
from oldnew.planning.words import CHARS_PER_TOKEN, scope_words
from oldnew.schemas import Plan, PlannedTask, Scope, Split
from oldnew.testing import CallInfo, FunctionModel, prompt_text

SHORT = """# slugs

Build a Python library `slugs` with one function, `slugify(text)`.

Slugs are at most 40 characters long and never end with a hyphen; "Crème brûlée" becomes
"creme-brulee".
"""

PLAN = {
    "tasks": [
        {
            "id": "T1",
            "title": "slugify",
            "description": "Write slugify with its tests.",
            "files": ["slugs.py", "tests/test_slugs.py"],
            "requirement_ids": ["F1"],
        }
    ]
}


def _reply(scope: dict[str, Any]) -> Any:
    def reply(messages: list[BaseMessage], info: CallInfo) -> Any:
        if info.schema is Scope:
            return scope
        assert info.schema is Plan
        return PLAN

    return reply


def _plan_prompt(scope_reply: dict[str, Any], text: str, ctx: Context) -> str:
    """Extract ``text`` and plan it as the plan node does; return the plan call's prompt."""
    model = FunctionModel(fn=_reply(scope_reply))
    ask = Asker(model, ctx)
    scope = asyncio.run(extract_scope(ask, text))
    planner = Planner(ask, scope, assess(scope, ctx), 1, text=text)
    asyncio.run(planner.propose([]))
    (call,) = model.log.of(schema=Plan)
    return prompt_text(call.messages)


def test_a_detail_only_the_person_wrote_reaches_the_plan_prompt() -> None:
    summary = {  # the extraction summarised the limit and the example away
        "title": "slugs",
        "summary": "A slug library.",
        "features": [{"id": "F1", "title": "slugify turns text into a URL slug"}],
    }
    prompt = _plan_prompt(summary, SHORT, Context())
    assert "at most 40 characters" not in str(summary)
    assert "Slugs are at most 40 characters long and never end with a hyphen" in prompt
    assert '"Crème brûlée" becomes' in prompt
    assert "THE SCOPE IN THE PERSON'S WORDS (the whole text)" in prompt
    assert "Left out" not in prompt


def _long_doc() -> str:
    parts = ["# Shop\n\nAn online shop.\n\n"]
    for n, detail in ((1, "carts expire after 17 days"), (2, "nothing"), (3, "coupons: SAVE9")):
        body = f"The {detail} rule holds here.\n\n" + "filler words here. " * 40 + "\n\n"
        parts.append(f"## Part {n}\n\n{body}")
    return "".join(parts)


def test_a_long_scope_shows_the_sections_its_requirements_came_from() -> None:
    text = _long_doc()
    ctx = Context(scope_chunk_chars=900, plan_scope_tokens=2000)  # two sections fit
    sections = split_sections(text, ctx.scope_chunk_chars)
    assert [s.heading for s in sections] == ["Shop", "Shop > Part 2", "Shop > Part 3"]
    assert "## Part 1" in sections[0].text
    feats = {  # part 2 states no requirement
        1: [{"id": "F1", "title": "Cart", "description": "A cart."}],
        2: [],
        3: [{"id": "F1", "title": "Coupons", "description": "Discount codes."}],
    }

    def reply(messages: list[BaseMessage], info: CallInfo) -> Any:
        if info.schema is Plan:
            plan = dict(PLAN)
            plan["tasks"] = [{**PLAN["tasks"][0], "requirement_ids": ["F1", "F2"]}]
            return plan
        prompt = prompt_text(messages)
        n = next(i for i in (1, 2, 3) if f"SECTION {i} OF 3" in prompt)
        return {"title": "shop", "summary": "A shop.", "features": feats[n]}

    model = FunctionModel(fn=reply)
    ask = Asker(model, ctx)
    scope = asyncio.run(extract_scope(ask, text))
    assert [(f.id, f.title, f.sections) for f in scope.features] == [
        ("F1", "Cart", [1]),
        ("F2", "Coupons", [3]),
    ]
    assert [(s.start, s.end) for s in scope.sections] == [
        (s.start, s.start + len(s.text)) for s in sections
    ]
    planner = Planner(ask, scope, assess(scope, ctx), 1, text=text)
    asyncio.run(planner.propose([]))
    prompt = prompt_text(model.log.of(schema=Plan)[0].messages)
    assert "carts expire after 17 days" in prompt and "coupons: SAVE9" in prompt
    assert "The nothing rule" not in prompt  # the section no requirement came from
    assert "----- section 1 of 3 (Shop): F1 come from here -----" in prompt
    assert "Left out: 1 of 3 sections (2): no requirement was read from them" in prompt

    # A prompt about one requirement (an epic's, a split task's) shows only its section.
    only = scope_words(scope, text, ctx.scope_words_tokens(), {"F2"})
    assert only is not None
    assert [e.index for e in only.excerpts] == [3]
    assert "2 of 3 sections (1, 2): none of the requirements planned here" in only.left_out[0]


def test_the_budget_leaves_out_whole_sections_and_says_which() -> None:
    text = _long_doc()
    sections = split_sections(text, 900)
    scope = Scope.model_validate(
        {
            "title": "shop",
            "summary": "A shop.",
            "features": [
                {"id": "F1", "title": "Cart", "sections": [1]},
                {"id": "F2", "title": "Coupons", "sections": [3]},
                {"id": "F3", "title": "Coupon limits", "sections": [3]},
            ],
            "sections": [s.source().model_dump() for s in sections],
        }
    )
    budget = (len(sections[2].text) + 10) // 4 + 1  # room for one section only
    words = scope_words(scope, text, budget)
    assert words is not None and not words.whole
    assert [e.index for e in words.excerpts] == [3]  # the source of the most requirements
    assert words.left_out[0].startswith("section 1 of 3 (Shop)")
    assert "source of F1: over the budget" in words.left_out[0]
    assert scope_words(scope, text, budget) == words  # deterministic
    assert scope_words(scope, text, 0) is None  # 0: the text is not shown

    # A short scope past the budget is cut at a line's end, and the rest is said.
    one = {"title": "s", "summary": "s", "features": [{"id": "F1", "title": "x"}]}
    short = Scope.model_validate(one)
    cut = scope_words(short, SHORT, 20)
    assert cut is not None and not cut.whole
    assert cut.excerpts[0].text.endswith("\n") and SHORT.startswith(cut.excerpts[0].text)
    assert "the rest of the text" in cut.left_out[0] and "from line" in cut.left_out[0]


def test_a_split_prompt_shows_the_section_of_the_task_it_splits() -> None:
    text = _long_doc()
    sections = split_sections(text, 900)
    scope = Scope.model_validate(
        {
            "title": "shop",
            "summary": "A shop.",
            "features": [
                {"id": "F1", "title": "Cart", "sections": [1]},
                {"id": "F2", "title": "Coupons", "sections": [3]},
            ],
            "sections": [s.source().model_dump() for s in sections],
        }
    )
    task = PlannedTask(id="T2", title="coupons", description="d", requirement_ids=["F2"])
    cart = PlannedTask(id="T1", title="cart", description="d", requirement_ids=["F1"])
    plan = Plan(tasks=[cart, task])
    pieces = [
        {"id": str(i), "title": f"part {i}", "description": "d", "requirement_ids": ["F2"]}
        for i in (1, 2, 3)
    ]

    def reply(messages: list[BaseMessage], info: CallInfo) -> Any:
        assert info.schema is Split
        return {"subtasks": pieces}

    model = FunctionModel(fn=reply)
    ctx = Context()
    planner = Planner(Asker(model, ctx), scope, assess(scope, ctx), 1, text=text)
    asyncio.run(split_task(planner, plan, task, "it failed twice"))
    prompt = prompt_text(model.log.of(schema=Split)[0].messages)
    assert "coupons: SAVE9" in prompt and "carts expire after 17 days" not in prompt
    assert "----- section 3 of 3 (Shop > Part 3): F2 come from here -----" in prompt


def test_the_text_budget_follows_what_one_extraction_call_reads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OLDNEW_PLAN_SCOPE_TOKENS", raising=False)
    monkeypatch.delenv("OLDNEW_SCOPE_CHUNK_CHARS", raising=False)
    assert SCOPE_CHARS_PER_TOKEN == CHARS_PER_TOKEN  # one estimate, where set and where spent
    ctx = Context()
    assert ctx.plan_scope_tokens == 0  # stored as given: derived where it is used
    assert ctx.scope_words_tokens() * CHARS_PER_TOKEN == ctx.scope_chunk_chars
    assert Context(scope_chunk_chars=2000).scope_words_tokens() == 2000 // CHARS_PER_TOKEN
    assert Context(plan_scope_tokens=300).scope_words_tokens() == 300  # given: as given
    monkeypatch.setenv("OLDNEW_PLAN_SCOPE_TOKENS", "120")
    assert Context().scope_words_tokens() == 120
    # A scope that one extraction call reads whole is shown whole to the planner, too.
    text = "x" * (ctx.scope_chunk_chars - 1) + "\n"
    words = scope_words(Scope(title="t", summary="s"), text, ctx.scope_words_tokens())
    assert words is not None and words.whole and words.left_out == []
    assert "plan_scope_tokens" in {name for name, *_ in model_settings()}  # model-facing
