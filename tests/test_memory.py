"""Memory: decisions reach related prompts only, fixes carry across runs, templates are reused,
prompts stay within budget, and a broken memory never stops a run."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLE
from langchain_core.messages import BaseMessage
from langgraph.store.base import PutOp
from langgraph.store.sqlite.aio import AsyncSqliteStore
from typer.testing import CliRunner

from oldnew.cli import app
from oldnew.context import ROLES, Context
from oldnew.memory.learning import (
    MAX_LESSON_FIX,
    clip,
    coder_context,
    fix_hints,
    lesson_lines,
    signatures,
)
from oldnew.memory.signature import ErrorSignature, signature_of
from oldnew.memory.store import FixRecord, Memory, MemoryEntry, tokens
from oldnew.models import ScriptedChatModel, load_transcript
from oldnew.runs import resume_run, start_run

pytestmark = pytest.mark.usefixtures("smoke_gates")  # graph logic, not the gates

PROMPTS: list[str] = []


class Recorder(ScriptedChatModel):
    """A scripted model that keeps every prompt it was given (in PROMPTS)."""

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> Any:
        PROMPTS.append("\n".join(str(m.content) for m in messages))
        return super()._generate(messages, *args, **kwargs)


def _models(path: Path) -> tuple[dict[str, Recorder], list[str]]:
    replies = load_transcript(path)
    PROMPTS.clear()
    return {r: Recorder(replies=replies, role=r) for r in ROLES}, PROMPTS


def _events(ws: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (ws / ".oldnew" / "events.jsonl").read_text().splitlines()]


def _code(name: str, body: str, test: str) -> str:
    func = body.split("def ", 1)[1].split("(", 1)[0]
    return (
        f"FILE: {name}.py\n```python\n{body}\n```\n"
        f"FILE: tests/test_{name}.py\n```python\nfrom {name} import {func}\n\n\n"
        f"{test}\n```\n"
    )


SETTINGS = _code(
    "settings",
    "PORT = 8080\n\n\ndef port():\n    return PORT",
    "def test_port():\n    assert port() == 8080",
)
SERVER = _code(
    "server",
    "from settings import port\n\n\ndef address():\n    return f'127.0.0.1:{port()}'",
    "def test_address():\n    assert address() == '127.0.0.1:8080'",
)
SLUG = _code(
    "slug",
    "def slug(text):\n    return text.lower().replace(' ', '-')",
    "def test_slug():\n    assert slug('A b') == 'a-b'",
)


def _decision_transcript(tmp_path: Path) -> Path:
    scope = {
        "title": "svc",
        "summary": "s",
        "features": [
            {"id": "F1", "title": "settings"},
            {"id": "F2", "title": "server"},
            {"id": "F3", "title": "slugs"},
        ],
    }
    plan = {
        "tasks": [
            {
                "id": "T1",
                "title": "settings module",
                "description": "settings.py with the port",
                "files": ["settings.py"],
                "requirement_ids": ["F1"],
            },
            {
                "id": "T2",
                "title": "server address",
                "description": "server.py uses the port from settings.py",
                "depends_on": ["T1"],
                "files": ["server.py", "settings.py"],
                "requirement_ids": ["F2", "F1"],
            },
            {
                "id": "T3",
                "title": "slug helper",
                "description": "slug.py turns titles into slugs",
                "depends_on": ["T1"],
                "files": ["slug.py"],
                "requirement_ids": ["F3"],
            },
        ]
    }
    replies = [
        {"role": "planner", "when": ["return a Scope"], "structured": scope},
        {"role": "planner", "when": ["into a Plan"], "structured": plan},
        {"role": "coder", "when": ["TASK T1:", "Answer: 8080"], "text": SETTINGS},
        {
            "role": "coder",
            "when": ["TASK T1:"],
            "tool": "AskHuman",
            "args": {
                "question": "Which port should the service listen on?",
                "options": ["8080", "9000"],
                "recommended": "8080",
            },
        },
        {"role": "coder", "when": ["TASK T2:"], "text": SERVER},
        {"role": "coder", "when": ["TASK T3:"], "text": SLUG},
    ]
    path = tmp_path / "transcript.json"
    path.write_text(json.dumps({"reply": replies}))
    return path


def _scope(tmp_path: Path, text: str = "Build a small service.\n") -> Path:
    path = tmp_path / "scope.md"
    path.write_text(text)
    return path


def test_decision_reaches_related_task_only(tmp_path: Path) -> None:
    models, prompts = _models(_decision_transcript(tmp_path))
    ws = tmp_path / "ws"
    out = asyncio.run(start_run(_scope(tmp_path), ws, models=models))
    assert out.status == "waiting" and out.questions[0]["id"] == "T1-q1"
    out = asyncio.run(resume_run(ws, answers={"T1-q1": "8080"}, models=models))
    assert out.status == "delivered", out
    decision = "Which port should the service listen on? -> 8080"
    t2 = next(p for p in prompts if "TASK T2:" in p)
    t3 = next(p for p in prompts if "TASK T3:" in p)
    assert "RUN MEMORY" in t2 and decision in t2
    assert decision not in t3 and "RUN MEMORY" not in t3


BROKEN = _code(
    "calc", "def add(a, b):\n    return a - b", "def test_add():\n    assert add(2, 3) == 5"
)
STILL_BROKEN = _code(
    "calc", "def add(a, b):\n    return b - a", "def test_add():\n    assert add(2, 3) == 5"
)
FIXED = "Addition must add, not subtract.\n\n" + _code(
    "calc", "def add(a, b):\n    return a + b", "def test_add():\n    assert add(2, 3) == 5"
)


def _fix_transcript(tmp_path: Path, name: str) -> Path:
    scope = {"title": name, "summary": "s", "features": [{"id": "F1", "title": "add"}]}
    plan = {
        "tasks": [
            {
                "id": "T1",
                "title": "adder",
                "description": "calc.py with add(a, b)",
                "files": ["calc.py"],
                "requirement_ids": ["F1"],
            }
        ]
    }
    replies = [
        {"role": "planner", "when": ["return a Scope"], "structured": scope},
        {"role": "planner", "when": ["into a Plan"], "structured": plan},
        {"role": "coder", "when": ["TASK T1:"], "text": BROKEN},
        # A model that uses a fix offered from an earlier run gets it right at once;
        # without one, it needs a second round.
        {"role": "fixer", "when": ["FIXES THAT WORKED BEFORE", "Addition must add"], "text": FIXED},
        {"role": "fixer", "when": ["round 2 of"], "text": FIXED},
        {"role": "fixer", "when": ["TASK T1:"], "text": STILL_BROKEN},
    ]
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"reply": replies}))
    return path


def _fix_rounds(out: Any) -> int:
    return sum(t["fix_rounds"] for t in out.tasks)


def test_fix_learned_in_one_run_is_offered_in_the_next(tmp_path: Path) -> None:
    first = asyncio.run(
        start_run(
            _scope(tmp_path),
            tmp_path / "one",
            context={"model": f"scripted:{_fix_transcript(tmp_path, 'one')}"},
        )
    )
    assert first.status == "delivered" and _fix_rounds(first) == 2
    second = asyncio.run(
        start_run(
            _scope(tmp_path),
            tmp_path / "two",
            context={"model": f"scripted:{_fix_transcript(tmp_path, 'two')}"},
        )
    )
    assert second.status == "delivered"
    assert _fix_rounds(second) == 1 < _fix_rounds(first)
    wrote = [
        e for e in _events(tmp_path / "two") if e.get("node") == "fix" and e["event"] == "wrote"
    ]
    assert wrote[0]["known_fixes"] >= 1
    res = CliRunner().invoke(app, ["memory", "--global", "--json"])
    listing = json.loads(res.output)
    fixes = [e for e in listing["entries"] if e["kind"] == "fix"]
    assert any("AssertionError" in f["text"] or "assert" in f["text"] for f in fixes)
    assert any(f["helped"] >= 1 for f in fixes)


def test_template_from_one_run_seeds_another(tmp_path: Path, example_model: str) -> None:
    ws1, ws2 = tmp_path / "one", tmp_path / "two"
    asyncio.run(start_run(EXAMPLE / "scope.md", ws1, context={"model": example_model}))
    assert not [e for e in _events(ws1) if e["event"] == "template_reused"]
    models, prompts = _models(EXAMPLE / "transcript.toml")
    asyncio.run(start_run(EXAMPLE / "scope.md", ws2, models=models))
    reused = {e["task"] for e in _events(ws2) if e["event"] == "template_reused"}
    assert {"T1", "T2"} <= reused
    t1 = next(p for p in prompts if "TASK T1:" in p)
    assert "STARTING POINT" in t1 and "class TodoList" in t1
    res = CliRunner().invoke(app, ["memory", "-w", str(ws2), "--json"])
    learnings = [e for e in json.loads(res.output)["entries"] if e["kind"] == "learning"]
    assert any("started from saved template" in e["text"] for e in learnings)


def test_five_thousand_entries_stay_within_budget(tmp_path: Path) -> None:
    async def scenario() -> tuple[list[MemoryEntry], float]:
        async with AsyncSqliteStore.from_conn_string(str(tmp_path / "m.sqlite")) as store:
            await store.setup()
            memory = Memory(store, "run-1")
            ops = [
                PutOp(
                    memory.run_ns,
                    f"e{i}",
                    MemoryEntry(
                        kind="learning",
                        text=f"endpoint {i} of the billing api returns cents as "
                        f"integers, never floats; route /api/v{i % 7}/invoices",
                        files=[f"billing/api_{i % 50}.py"],
                        requirement_ids=[f"F{i % 30}"],
                    ).model_dump(),
                )
                for i in range(5000)
            ]
            await store.abatch(ops)
            start = time.perf_counter()
            chosen = await memory.relevant(
                text="invoice totals in the billing api",
                files=["billing/api_3.py"],
                requirement_ids=["F3"],
                budget_tokens=300,
            )
            return chosen, time.perf_counter() - start

    chosen, _ = asyncio.run(scenario())
    assert chosen, "related entries should be found"
    assert sum(tokens(e.render()) + 1 for e in chosen) <= 300
    assert all("billing/api_3.py" in e.files or "F3" in e.requirement_ids for e in chosen[:3])


def test_bad_entries_are_left_out_and_named(tmp_path: Path) -> None:
    async def scenario() -> tuple[list[str], list[str]]:
        async with AsyncSqliteStore.from_conn_string(str(tmp_path / "m.sqlite")) as store:
            await store.setup()
            memory = Memory(store, "r")
            await memory.remember("decision", "use SQLite", reason="no server")
            await store.aput(memory.run_ns, "broken", {"v": 1, "kind": "nonsense"})
            await store.aput(memory.run_ns, "old", {"v": 0, "kind": "decision", "text": "x"})
            texts = [e.text for _, e in await memory.entries()]
            return texts, memory.problems

    texts, problems = asyncio.run(scenario())
    assert texts == ["use SQLite"]
    assert any("broken does not parse" in p for p in problems)
    assert any("old is from format version 0" in p for p in problems)


def test_corrupted_memory_file_does_not_stop_the_run(
    tmp_path: Path, example_model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "memory.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    monkeypatch.setenv("OLDNEW_MEMORY_PATH", str(bad))
    ws = tmp_path / "ws"
    out = asyncio.run(start_run(EXAMPLE / "scope.md", ws, context={"model": example_model}))
    assert out.status == "waiting"
    unavailable = [e for e in _events(ws) if e["event"] == "unavailable"]
    assert unavailable and "DatabaseError" in unavailable[0]["error"]
    with pytest.raises(sqlite3.DatabaseError):
        sqlite3.connect(bad).execute("select 1 from sqlite_master").fetchall()


def test_signatures_ignore_paths_and_numbers() -> None:
    a = signature_of(
        "t/a.py:3: [pytest failure] t.a::test_x: FileNotFoundError: [Errno 2] "
        "No such file or directory: '/tmp/x/1.json'"
    )
    b = signature_of(
        "t/b.py:90: [pytest failure] t.b::test_y: FileNotFoundError: [Errno 2] "
        "No such file or directory: '/home/u/data.json'"
    )
    c = signature_of("calc.py:1: [ruff F401] `os` imported but unused")
    assert a is not None and b is not None and c is not None
    assert a.key == b.key != c.key
    assert "/tmp" not in a.message and "2" not in a.message


def test_memory_cli_removes_entries(tmp_path: Path, example_model: str) -> None:
    ws = tmp_path / "ws"
    asyncio.run(start_run(EXAMPLE / "scope.md", ws, context={"model": example_model}))
    asyncio.run(resume_run(ws, answers={"T3-q1": "1"}))
    runner = CliRunner()
    rows = json.loads(runner.invoke(app, ["memory", "-w", str(ws), "--json"]).output)["entries"]
    decision = next(r for r in rows if r["kind"] == "decision")
    assert "~/.todo.json" in decision["text"]
    res = runner.invoke(app, ["memory", "-w", str(ws), "--remove", decision["key"]])
    assert res.exit_code == 0 and f"removed {decision['key']}" in res.output
    res = runner.invoke(app, ["memory", "-w", str(ws), "--remove", decision["key"]])
    assert res.exit_code == 2 and "no memory entry" in res.output
    res = runner.invoke(app, ["memory"])
    assert res.exit_code == 2 and "either --workspace DIR or --global" in res.output


def test_locked_memory_degrades_with_a_notice(tmp_path: Path) -> None:
    path = tmp_path / "m.sqlite"

    async def scenario() -> tuple[str | None, list[str]]:
        async with AsyncSqliteStore.from_conn_string(str(path)) as store:
            await store.setup()
            holder = sqlite3.connect(path, timeout=0)
            holder.execute("BEGIN EXCLUSIVE")
            try:
                memory = Memory(store, "r")
                key = await memory.remember("learning", "the webhook route needs /api")
                entries = await memory.entries()
                assert entries == []
                return key, memory.problems
            finally:
                holder.rollback()
                holder.close()

    _, problems = asyncio.run(scenario())
    assert any("locked" in p and "going on without it" in p for p in problems)


def test_plan_decisions_and_scope_constraints_reach_related_tasks(tmp_path: Path) -> None:
    path = _decision_transcript(tmp_path)
    data = json.loads(path.read_text())
    data["reply"][0]["structured"]["constraints"] = ["settings come from environment variables"]
    data["reply"][1]["structured"]["decisions"] = [
        {
            "decision": "slugs are ASCII only, lower case, words joined by '-'",
            "reason": "they appear in URLs",
            "requirement_ids": ["F3"],
        }
    ]
    path.write_text(json.dumps(data))
    models, prompts = _models(path)
    ws = tmp_path / "ws"
    asyncio.run(start_run(_scope(tmp_path), ws, models=models))
    asyncio.run(resume_run(ws, answers={"T1-q1": "8080"}, models=models))
    t2 = next(p for p in prompts if "TASK T2:" in p)
    t3 = next(p for p in prompts if "TASK T3:" in p)
    assert "slugs are ASCII only" in t3 and "they appear in URLs" in t3
    assert "slugs are ASCII only" not in t2
    assert "settings come from environment variables" in t2


# -- lessons of earlier runs ----------------------------------------------------------------


def test_lessons_are_distinct_cut_at_a_word_and_never_this_runs_own(tmp_path: Path) -> None:
    task = "todo/storage.py: load and save the items as JSON"
    long_fix = "Removed the unused import and kept the module small. " * 20

    async def scenario() -> tuple[list[str], list[str]]:
        async with AsyncSqliteStore.from_conn_string(str(tmp_path / "m.sqlite")) as store:
            await store.setup()
            earlier, now = Memory(store, "run-1"), Memory(store, "run-2")
            unused = ErrorSignature("ruff", "F401", "`os` imported but unused")
            for fix in (
                "Removed the unused import os.",
                "Removed the unused import `os`",
                long_fix,
            ):
                await earlier.record_fix(unused, fix, task)  # one error, three near-same fixes
            other = ErrorSignature("mypy", "arg-type", "Argument 1 has incompatible type")
            await earlier.record_fix(other, "Passed a str, not a Path.", task)
            # This run's own fix: in its run memory, never among the lessons of earlier runs.
            mine = ErrorSignature("pytest", "failure", "test_save: FileNotFoundError")
            await now.record_fix(mine, "Created the folder before writing.", task)
            context = await coder_context(
                now, {"title": "JSON storage", "description": task}, "todo", Context()
            )
            return context.lessons, (
                await coder_context(
                    earlier, {"title": "JSON storage", "description": task}, "todo", Context()
                )
            ).lessons

    lessons, seen_by_earlier = asyncio.run(scenario())
    assert len(lessons) == 2, lessons  # one per error: the near-duplicates are one lesson
    assert sum("F401" in line for line in lessons) == 1
    assert not any("FileNotFoundError" in line for line in lessons)
    assert any("FileNotFoundError" in line for line in seen_by_earlier)  # run-2 is earlier to it
    for line in lessons:
        fix = line.split("-> fixed by: ", 1)[1]
        assert len(fix) <= MAX_LESSON_FIX
        assert fix.endswith((".", "`", " …")), fix  # whole, or cut at a word and marked


def test_a_known_fix_says_whether_it_worked_in_this_run_or_an_earlier_one(tmp_path: Path) -> None:
    diagnostics = ["calc.py:3: [ruff F401] `os` imported but unused"]
    (sig,) = signatures(diagnostics)

    async def scenario() -> list[str]:
        async with AsyncSqliteStore.from_conn_string(str(tmp_path / "m.sqlite")) as store:
            await store.setup()
            await Memory(store, "run-1").record_fix(sig, "Removed the import.", "calc")
            now = Memory(store, "run-2")
            await now.record_fix(sig, "Used os.path in main.", "calc")
            lines, _ = await fix_hints(now, diagnostics)
            return lines

    lines = asyncio.run(scenario())
    assert sorted(line.split("\n  ")[1] for line in lines) == [
        "worked earlier in this run: Used os.path in main.",
        "worked in an earlier run: Removed the import.",
    ]


def test_near_duplicate_lessons_of_different_errors_are_one() -> None:
    def record(name: str, fix: str) -> FixRecord:
        sig = ErrorSignature("ruff", "F401", f"`{name}` imported but unused")
        return FixRecord(signature=sig.key, tool="ruff", rule="F401", message=sig.message, fix=fix)

    lines = lesson_lines(
        [
            record("os", "Removed the unused import."),
            record("sys", "Removed the unused import."),  # another error, the same lesson
            record("json", "Used json.dumps for the report instead of str()."),
        ]
    )
    assert len(lines) == 2 and "`os`" in lines[0] and "json.dumps" in lines[1]


def test_clip_cuts_at_a_line_or_word_and_marks_the_cut() -> None:
    assert clip("short text", 40) == "short text"
    assert clip("alpha beta gamma delta", 15) == "alpha beta …"
    assert clip("first line is long enough\nsecond line", 30) == "first line is long enough …"
    assert clip("x" * 50, 10) == "x" * 8 + " …"  # one token longer than the room: cut, marked
    assert len(clip("word " * 100, 60)) <= 60
