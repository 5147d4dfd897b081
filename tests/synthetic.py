"""Generated scopes and scripted planner replies, for the planning tests and the benchmark.

``monster(n)`` builds a scope with ``n`` features (plus integrations, pages, models and
endpoints) and the replies a planner would give it, epic by epic: one reply for the scope, one
for the epics, one per epic and one for the wiring. Replies are chosen by prompt content, so
each epic's call gets its own epic's tasks.

``planned_run(scope, plan, code=..., fix=...)`` answers a whole run by what each call is for
(its schema, role and task), never by the prompt's wording.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatResult

from oldnew.context import Role
from oldnew.errors import ScriptedModelError
from oldnew.models import ScriptedChatModel, ScriptedReply, load_transcript
from oldnew.schemas import Plan, Scope
from oldnew.testing import CallInfo, FunctionModel

Answer = Any
"""A reply (text, AIMessage, dict), or ``fn(messages, info)`` returning one (maybe awaitable)."""

KINDS = {
    "features": "F",
    "integrations": "I",
    "pages": "P",
    "data_models": "M",
    "api_endpoints": "A",
}


def scope_dict(
    n_features: int,
    *,
    integrations: int = 0,
    pages: int = 0,
    models: int = 0,
    apis: int = 0,
    title: str = "big",
) -> dict[str, Any]:
    """Return a Scope as a dict: the first 40% of features must, the next 35% should."""
    counts = {
        "features": n_features,
        "integrations": integrations,
        "pages": pages,
        "data_models": models,
        "api_endpoints": apis,
    }
    scope: dict[str, Any] = {"title": title, "summary": f"A generated {title} project."}
    for kind, n in counts.items():
        items = []
        for i in range(1, n + 1):
            share = i / max(1, n)
            prio = "must" if kind != "features" or share <= 0.4 else "should"
            if kind == "features" and share > 0.75:
                prio = "could"
            items.append({"id": f"{KINDS[kind]}{i}", "title": f"{kind} item {i}", "priority": prio})
        scope[kind] = items
    return scope


def requirement_ids(scope: dict[str, Any]) -> list[tuple[str, str]]:
    """Return (id, priority) of every requirement in scope order."""
    return [(r["id"], r["priority"]) for kind in KINDS for r in scope.get(kind, [])]


def flat_plan(scope: dict[str, Any], n_tasks: int) -> dict[str, Any]:
    """Return a valid flat plan of ``n_tasks`` tasks covering every requirement."""
    reqs = [rid for rid, _ in requirement_ids(scope)]
    tasks = []
    for i in range(1, n_tasks + 1):
        serves = [r for j, r in enumerate(reqs) if j % n_tasks == i - 1]
        tasks.append(
            {
                "id": f"T{i}",
                "title": f"task {i}",
                "description": f"Build part {i}.",
                "role": "backend" if i % 3 else "tests",
                "depends_on": [] if i == 1 else ["T1"],
                "files": [f"pkg/part{i}.py", f"tests/test_part{i}.py"],
                "requirement_ids": serves,
            }
        )
    return {"tasks": tasks}


def epics_of(scope: dict[str, Any], per_epic: int = 11) -> list[dict[str, Any]]:
    """Group the requirements into epics by priority: must -> mvp, should -> enhanced, ..."""
    phase = {"must": "mvp", "should": "enhanced", "could": "polish"}
    epics: list[dict[str, Any]] = []
    for prio in ("must", "should", "could"):
        ids = [rid for rid, p in requirement_ids(scope) if p == prio]
        for start in range(0, len(ids), per_epic):
            n = len(epics) + 1
            epics.append(
                {
                    "id": f"E{n}",
                    "title": f"epic {n}",
                    "phase": phase[prio],
                    "requirement_ids": ids[start : start + per_epic],
                    # Later phases build on the first epic (the core).
                    "depends_on": [] if phase[prio] == "mvp" else ["E1"],
                }
            )
    return epics


def epic_tasks(epic: dict[str, Any]) -> dict[str, Any]:
    """Return one task per requirement of ``epic``; all but the first build on the first.

    Every epic's first task also registers the epic in a shared file, so the plan must
    order those tasks across epics.
    """
    tasks = []
    for i, rid in enumerate(epic["requirement_ids"], start=1):
        files = [f"pkg/{epic['id'].lower()}/{rid.lower()}.py", f"tests/test_{rid.lower()}.py"]
        if i == 1:
            files.append("pkg/registry.py")
        tasks.append(
            {
                "id": f"T{i}",
                "title": f"{rid} in {epic['id']}",
                "description": f"Implement requirement {rid} with its tests.",
                "role": "frontend" if rid.startswith("P") else "backend",
                "depends_on": [] if i == 1 else ["T1"],
                "files": files,
                "requirement_ids": [rid],
            }
        )
    return {"tasks": tasks}


PHASES = [
    {"name": "mvp", "milestone": "The core works", "acceptance_criteria": ["must-haves pass"]},
    {"name": "enhanced", "milestone": "Better", "acceptance_criteria": ["should-haves pass"]},
    {"name": "polish", "milestone": "Polished", "acceptance_criteria": ["could-haves pass"]},
]


def monster_replies(scope: dict[str, Any], per_epic: int = 11) -> list[dict[str, Any]]:
    """Return the planner replies for a phased plan of ``scope`` (after its Scope reply)."""
    epics = epics_of(scope, per_epic)
    replies: list[dict[str, Any]] = [
        {
            "role": "planner",
            "when": ["into epics and phases"],
            "structured": {"phases": PHASES, "epics": epics},
        },
    ]
    for e in epics:
        replies.append(
            {"role": "planner", "when": [f"EPIC {e['id']}:"], "structured": epic_tasks(e)}
        )
    # Cross-epic wiring: each enhanced epic's second task needs the MVP's second epic's first.
    wiring = [
        {"task": f"{e['id']}-T2", "depends_on": ["E2-T1"]}
        for e in epics
        if e["phase"] == "enhanced" and len(e["requirement_ids"]) > 1
    ]
    replies.append(
        {"role": "planner", "when": ["Wire the cross-epic"], "structured": {"dependencies": wiring}}
    )
    return replies


def monster(n_features: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Return a monster scope with ``n_features`` features and every planner reply for it."""
    scope = scope_dict(n_features, integrations=4, pages=10, models=12, apis=20)
    replies = [{"role": "planner", "when": ["return a Scope"], "structured": scope}]
    return scope, replies + monster_replies(scope)


def scope_text(scope: dict[str, Any]) -> str:
    """Return a Markdown scope document listing the scope's requirements."""
    lines = [f"# {scope['title']}", "", scope["summary"], ""]
    for kind in KINDS:
        lines += [f"## {kind}", ""]
        lines += [f"- {r['title']} ({r['priority']})" for r in scope.get(kind, [])]
        lines.append("")
    return "\n".join(lines)


def write_transcript(path: Path, replies: list[dict[str, Any]]) -> str:
    """Write ``replies`` as a JSON transcript; return its model spec."""
    path.write_text(json.dumps({"reply": replies}))
    return f"scripted:{path}"


class CountingModel(ScriptedChatModel):
    """A scripted model that counts its calls, how many overlap, and what each answered."""

    delay: float = 0.0
    stats: dict[str, Any] = {}

    @classmethod
    def from_replies(cls, replies: list[dict[str, Any]], tmp: Path, **kw: Any) -> CountingModel:
        """Build one from replies written as a transcript in ``tmp``."""
        path = tmp / "counting.json"
        path.write_text(json.dumps({"reply": replies}))
        return cls(
            replies=load_transcript(path),
            role="planner",
            stats={"calls": 0, "in_flight": 0, "max_in_flight": 0, "largest_tasks": 0},
            **kw,
        )

    async def _agenerate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        s = self.stats
        s["calls"] += 1
        s["in_flight"] += 1
        s["max_in_flight"] = max(s["max_in_flight"], s["in_flight"])
        try:
            await asyncio.sleep(self.delay)
            reply: ScriptedReply = self._pick(messages)
            tasks = (reply.structured or {}).get("tasks") or []
            s["largest_tasks"] = max(s["largest_tasks"], len(tasks))
            return self._generate(messages, stop)
        finally:
            s["in_flight"] -= 1


def planned_run(
    scope: dict[str, Any],
    plan: dict[str, Any],
    *,
    code: Mapping[str, Answer],
    fix: Mapping[str, Answer] | None = None,
) -> dict[Role, FunctionModel]:
    """Return models that answer a run by what each call is for, never by its prompt's words.

    The Scope and Plan calls get ``scope`` and ``plan``; the coder and the fixer get
    ``code[task]`` and ``fix[task]``, each a reply or a function of the messages and the call's
    info. Any other call raises an error naming what it was for, which the run shows.
    """
    fixes = fix or {}

    def reply(messages: list[BaseMessage], info: CallInfo) -> Any:
        if info.schema is Scope:
            return scope
        if info.schema is Plan:
            return plan
        answers = {"coder": code, "fixer": fixes}.get(info.role or "", {})
        if info.task not in answers:
            raise ScriptedModelError(f"planned_run has no reply for {info}")
        answer = answers[info.task]
        return answer(messages, info) if callable(answer) else answer

    return FunctionModel.per_role(reply)


GREET_CODE = (
    "FILE: greet.py\n```python\ndef greet(name):\n    return f'hi {name}'\n```\n"
    "FILE: tests/test_greet.py\n```python\nfrom greet import greet\n\n\n"
    "def test_greet():\n    assert greet('a') == 'hi a'\n```\n"
)


def greet_transcript(tmp_path: Path, clarifications: list[dict[str, Any]] | None = None) -> str:
    """Write a scripted run of one task (a greeter) that delivers; return its model spec.

    ``clarifications`` are the scope's (high-priority ones make the run ask a person first).
    """
    scope: dict[str, Any] = {
        "title": "greet",
        "summary": "s",
        "features": [{"id": "F1", "title": "greet"}],
    }
    if clarifications:
        scope["clarifications"] = clarifications
    task = {
        "id": "T1",
        "title": "greeter",
        "description": "greet.py with greet(name)",
        "files": ["greet.py"],
        "requirement_ids": ["F1"],
    }
    replies = [
        {"role": "planner", "when": ["return a Scope"], "structured": scope},
        {"role": "planner", "when": ["into a Plan"], "structured": {"tasks": [task]}},
        {"role": "coder", "when": ["TASK T1:"], "text": GREET_CODE},
    ]
    path = tmp_path / "transcript.json"
    path.write_text(json.dumps({"reply": replies}))
    return f"scripted:{path}"
