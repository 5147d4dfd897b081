"""Clarifications: the ambiguity scan, the model's questions with defaults, and the policy that
asks them or takes the defaults (recorded as decisions the report lists)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLE
from langchain_core.messages import BaseMessage
from typer.testing import CliRunner

from oldnew.cli import app
from oldnew.context import Context
from oldnew.errors import UsageError
from oldnew.graph.routing import after_human, after_scope
from oldnew.memory import decisions_from
from oldnew.models import ScriptedChatModel, load_transcript
from oldnew.planning.ambiguity import find_ambiguities
from oldnew.planning.clarify import clarification_questions, settle, tidy_clarifications
from oldnew.prompts import render
from oldnew.runs import resume_run, start_run
from oldnew.schemas import Scope

pytestmark = pytest.mark.usefixtures("smoke_gates")  # graph logic, not the gates

SCOPE_TEXT = (
    "Build a fast, user-friendly tool that stores many notes.\n"
    "Sync with the server: TBD.\n"
    "It must use a database. No database may be installed.\n"
)
CLARIFICATIONS = [
    {
        "question": "Where are the notes stored?",
        "options": ["SQLite file", "JSON file"],
        "default": "SQLite file",
        "priority": "high",
        "kind": "contradiction",
        "phrase": "must use a database",
    },
    {
        "question": "How many notes must it handle?",
        "options": ["1,000", "100,000"],
        "default": "1,000",
        "priority": "medium",
        "kind": "vague_quantity",
        "phrase": "many notes",
    },
    {
        "question": "What does user-friendly mean here?",
        "options": ["Short commands", "Interactive prompts"],
        "default": "Short commands",
        "priority": "low",
        "kind": "subjective",
        "phrase": "user-friendly",
    },
]
NOTES = (
    "FILE: notes.py\n```python\ndef add(notes, text):\n    return [*notes, text]\n```\n"
    "FILE: tests/test_notes.py\n```python\nfrom notes import add\n\n\n"
    "def test_add():\n    assert add([], 'a') == ['a']\n```\n"
)
PROMPTS: list[str] = []


class Recorder(ScriptedChatModel):
    """A scripted model that keeps every prompt it was given (in PROMPTS)."""

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> Any:
        PROMPTS.append("\n".join(str(m.content) for m in messages))
        return super()._generate(messages, *args, **kwargs)


def _models(tmp_path: Path, clarifications: list[Any] = CLARIFICATIONS) -> dict[str, Recorder]:
    scope = {
        "title": "notes",
        "summary": "A note keeper.",
        "features": [{"id": "F1", "title": "add notes"}],
        "clarifications": clarifications,
    }
    plan = {
        "tasks": [
            {
                "id": "T1",
                "title": "notes module",
                "description": "notes.py with add(notes, text)",
                "files": ["notes.py"],
                "requirement_ids": ["F1"],
            }
        ]
    }
    replies = [
        {"role": "planner", "when": ["return a Scope"], "structured": scope},
        {"role": "planner", "when": ["into a Plan"], "structured": plan},
        {"role": "coder", "when": ["TASK T1:"], "text": NOTES},
    ]
    path = tmp_path / "transcript.json"
    path.write_text(json.dumps({"reply": replies}))
    PROMPTS.clear()
    loaded = load_transcript(path)
    return {r: Recorder(replies=loaded, role=r) for r in ("planner", "coder", "fixer")}


def _scope_file(tmp_path: Path) -> Path:
    path = tmp_path / "scope.md"
    path.write_text(SCOPE_TEXT)
    return path


def _report(out: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(Path(out.report).read_text())
    return data


# -- the scan -------------------------------------------------------------------------------


def test_scan_finds_each_kind_with_its_phrase() -> None:
    found = {(a.kind, a.phrase) for a in find_ambiguities(SCOPE_TEXT + "Should it export PDF?\n")}
    assert ("vague_quantity", "fast") in found
    assert ("vague_quantity", "many") in found
    assert ("subjective", "user-friendly") in found
    assert ("open_question", "TBD") in found
    assert ("open_question", "?") in found
    assert ("contradiction", "database") in found


def test_scan_contradiction_of_opposites_and_must_not() -> None:
    text = "The app is single-tenant.\nLater, every customer is multi-tenant.\n"
    text += "It must send emails on signup. It must not send emails."
    kinds = {(a.kind, a.phrase) for a in find_ambiguities(text)}
    assert ("contradiction", "single-tenant / multi-tenant") in kinds
    assert ("contradiction", "send") in kinds


def test_scan_of_a_precise_scope_finds_nothing_and_skips_code() -> None:
    text = (
        "Write add(a, b) returning the sum of two integers.\n"
        "```python\n# TODO: is this fast?\n```\n"
        "Tests cover negative numbers and zero.\n"
    )
    assert find_ambiguities(text) == []


def test_scan_orders_contradictions_first_and_caps() -> None:
    words = " ".join(["fast", "many", "nice", "modern", "large", "several"] * 3)
    text = f"It must use a cache. No cache at all. {words} intuitive sleek robust huge few"
    found = find_ambiguities(text, limit=5)
    assert len(found) == 5 and found[0].kind == "contradiction"
    assert len({a.phrase for a in found}) == 5


def test_findings_reach_the_scope_prompt_as_hints() -> None:
    hints = [a.render() for a in find_ambiguities(SCOPE_TEXT)]
    prompt = render("scope_user", scope_text=SCOPE_TEXT, findings=hints)
    assert "POSSIBLE AMBIGUITIES" in prompt and '"user-friendly"' in prompt
    plain = render("scope_user", scope_text="Write add(a, b).", findings=[])
    assert "POSSIBLE AMBIGUITIES" not in plain
    assert "at most 3 clarifications" in render("scope_system")


# -- the model's clarifications -------------------------------------------------------------


def test_malformed_clarifications_are_dropped_and_the_rest_capped() -> None:
    extra = {"question": "Which colour?", "default": "blue", "priority": "low"}
    raw = {
        "title": "t",
        "summary": "s",
        "clarifications": [
            extra,
            {"question": "", "default": "x"},
            {"question": "No default?", "options": ["a"]},
            {"question": "Bad priority?", "default": "a", "priority": "urgent"},
            *CLARIFICATIONS,
            {**CLARIFICATIONS[0], "question": "where are the  notes stored?"},
        ],
    }
    scope = Scope.model_validate(raw)
    assert len(scope.dropped_clarifications) == 3
    tidy, notes = tidy_clarifications(scope)
    assert [c.priority for c in tidy.clarifications] == ["high", "medium", "low"]
    assert tidy.clarifications[0].question == "Where are the notes stored?"
    assert any("duplicate" in n for n in notes)
    # Among equals the model's order stands: the first low-priority one is kept.
    assert tidy.clarifications[2].question == "Which colour?"
    assert any("over the cap" in n and "user-friendly" in n for n in notes)
    assert len(notes) == 5


def test_existing_scope_without_clarifications_still_validates() -> None:
    scope = Scope.model_validate({"title": "t", "summary": "s"})
    assert scope.clarifications == [] and scope.dropped_clarifications == []
    schema = Scope.model_json_schema()["$defs"]["Clarification"]["properties"]
    assert "answer" not in schema and "decided_by" not in schema


def test_policy_picks_what_is_asked() -> None:
    scope = Scope.model_validate({"title": "t", "summary": "s", "clarifications": CLARIFICATIONS})
    for policy, asked in (("ask", 3), ("high", 1), ("auto", 0)):
        qs = clarification_questions(scope, policy)  # type: ignore[arg-type]
        assert sum(q.status == "pending" for q in qs) == asked
        assert all(q.recommended == c["default"] for q, c in zip(qs, CLARIFICATIONS, strict=True))
        assert all(q.decided_by == "default" for q in qs if q.status == "answered")
    free = Scope.model_validate(
        {
            "title": "t",
            "summary": "s",
            "clarifications": [{"question": "Port?", "options": ["80"], "default": "8080"}],
        }
    )
    (q,) = clarification_questions(free, "ask", first=4)
    assert q.id == "clarify-4" and [o.key for o in q.options] == ["80", "8080"]
    assert q.check_answer("2") == "8080" and q.check_answer("any port") == "any port"
    with pytest.raises(ValueError, match="defaults policy"):
        clarification_questions(free, "never")  # type: ignore[arg-type]


def test_settle_and_decision_lines() -> None:
    scope = Scope.model_validate({"title": "t", "summary": "s", "clarifications": CLARIFICATIONS})
    qs = {q.id: q.model_dump() for q in clarification_questions(scope, "high")}
    qs["clarify-1"] |= {"status": "answered", "answer": "JSON file"}
    settled = settle(scope, qs)
    assert [(c.answer, c.decided_by) for c in settled.clarifications] == [
        ("JSON file", "person"),
        ("1,000", "default"),
        ("Short commands", "default"),
    ]
    lines = decisions_from(qs)
    assert "Where are the notes stored? -> JSON file" in lines
    assert "How many notes must it handle? -> 1,000 (taken by default)" in lines


def test_routing_pauses_for_clarifications_until_all_are_answered() -> None:
    pending = {"id": "clarify-1", "kind": "clarification", "status": "pending"}
    state: Any = {"scope": {"title": "t"}, "questions": {"clarify-1": pending}}
    assert after_scope(state) == "ask"
    assert after_human(state) == "ask"
    state["questions"]["clarify-1"] = {**pending, "status": "answered"}
    assert after_scope(state) == "plan"
    assert after_human(state) == "plan"


def test_defaults_setting_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UsageError, match="ask, high or auto"):
        Context(defaults="sometimes")  # type: ignore[arg-type]
    monkeypatch.setenv("OLDNEW_DEFAULTS", "auto")
    assert Context().defaults == "auto"


# -- whole runs -----------------------------------------------------------------------------


def test_ask_pauses_once_with_three_questions_and_answers_reach_plan(tmp_path: Path) -> None:
    models = _models(tmp_path)
    ws = tmp_path / "ws"
    out = asyncio.run(
        start_run(_scope_file(tmp_path), ws, models=models, context={"defaults": "ask"})
    )
    assert out.status == "waiting"
    assert [q["id"] for q in out.questions] == ["clarify-1", "clarify-2", "clarify-3"]
    assert [q["recommended"] for q in out.questions] == [c["default"] for c in CLARIFICATIONS]
    assert all(q["kind"] == "clarification" and q["free_text"] for q in out.questions)
    scope_prompt = next(p for p in PROMPTS if "return a Scope" in p)
    assert '"user-friendly"' in scope_prompt and "contradiction" in scope_prompt
    assert not any("into a Plan" in p for p in PROMPTS)

    out = asyncio.run(resume_run(ws, answers={"clarify-1": "JSON file"}, models=models))
    assert out.status == "waiting"  # the other two are asked again, not planned around
    assert [q["id"] for q in out.questions] == ["clarify-2", "clarify-3"]
    out = asyncio.run(
        resume_run(ws, answers={"clarify-2": "2", "clarify-3": "Short commands"}, models=models)
    )
    assert out.status == "delivered", out
    plan_prompt = next(p for p in PROMPTS if "into a Plan" in p)
    assert "DECIDED" in plan_prompt
    assert "Where are the notes stored? -> JSON file" in plan_prompt
    assert "How many notes must it handle? -> 100,000" in plan_prompt
    coder_prompt = next(p for p in PROMPTS if "TASK T1:" in p)
    assert "Where are the notes stored? -> JSON file" in coder_prompt
    decisions = _report(out)["decisions"]
    assert {(d["answer"], d["decided_by"]) for d in decisions} == {
        ("JSON file", "person"),
        ("100,000", "person"),
        ("Short commands", "person"),
    }


def test_auto_runs_through_and_reports_defaults(tmp_path: Path) -> None:
    models = _models(tmp_path)
    out = asyncio.run(
        start_run(
            _scope_file(tmp_path), tmp_path / "ws", models=models, context={"defaults": "auto"}
        )
    )
    assert out.status == "delivered", out
    report = _report(out)
    assert [(d["answer"], d["decided_by"]) for d in report["decisions"]] == [
        (c["default"], "default") for c in CLARIFICATIONS
    ]
    markdown = Path(out.report or "").with_suffix(".md").read_text()
    assert markdown.count("taken by default; to choose otherwise") == 3
    assert "Where are the notes stored? -> SQLite file (the proposed default)" in next(
        p for p in PROMPTS if "into a Plan" in p
    )
    coder_prompt = next(p for p in PROMPTS if "TASK T1:" in p)
    assert "Where are the notes stored? -> SQLite file (taken by default)" in coder_prompt


def test_high_asks_only_the_high_one_by_default_setting(tmp_path: Path) -> None:
    models = _models(tmp_path)
    ws = tmp_path / "ws"
    out = asyncio.run(start_run(_scope_file(tmp_path), ws, models=models))
    assert out.status == "waiting"
    assert [q["title"] for q in out.questions] == ["Where are the notes stored?"]
    out = asyncio.run(resume_run(ws, answers={"clarify-1": "1"}, models=models))
    assert out.status == "delivered", out
    by = {d["question"]: (d["answer"], d["decided_by"]) for d in _report(out)["decisions"]}
    assert by["Where are the notes stored?"] == ("SQLite file", "person")
    assert by["How many notes must it handle?"] == ("1,000", "default")


def test_no_clarifications_from_the_model_means_no_questions(tmp_path: Path) -> None:
    models = _models(tmp_path, clarifications=[])
    out = asyncio.run(
        start_run(
            _scope_file(tmp_path), tmp_path / "ws", models=models, context={"defaults": "ask"}
        )
    )
    assert out.status == "delivered" and _report(out)["decisions"] == []


def test_cli_defaults_flag_and_the_example_unchanged(tmp_path: Path, example_model: str) -> None:
    res = CliRunner().invoke(
        app, ["run", str(_scope_file(tmp_path)), "-w", str(tmp_path / "x"), "--defaults", "never"]
    )
    assert res.exit_code == 2 and "never" in res.output
    res = CliRunner().invoke(
        app,
        [
            "run",
            str(EXAMPLE / "scope.md"),
            "-w",
            str(tmp_path / "todo"),
            "-m",
            example_model,
            "--defaults",
            "ask",
        ],
    )
    # The example's transcript asks one configuration question of T3 and nothing at scoping.
    assert res.exit_code == 3, res.output
    assert "clarify-" not in res.output and "T3-q1" in res.output


def test_plan_preview_lists_clarifications_and_plans_on_defaults(tmp_path: Path) -> None:
    _models(tmp_path)
    spec = f"scripted:{tmp_path / 'transcript.json'}"
    res = CliRunner().invoke(app, ["plan", str(_scope_file(tmp_path)), "-m", spec, "--json"])
    assert res.exit_code == 0, res.output
    preview = json.loads(res.output)
    assert [c["default"] for c in preview["clarifications"]] == [
        c["default"] for c in CLARIFICATIONS
    ]
    assert any("proposed defaults of 3 clarifications" in n for n in preview["notes"])
