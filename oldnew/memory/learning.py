"""What the nodes ask of memory: context for a prompt, and what to learn from an outcome."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Any

from langgraph.runtime import Runtime

from oldnew.context import Context
from oldnew.memory.signature import ErrorSignature, signature_of
from oldnew.memory.store import FIXES, FixRecord, Memory, Template
from oldnew.planning.clarify import decision_text

MAX_FIX_TEXT = 3000
MAX_LESSONS = 3
"""Lessons of earlier runs shown to a coder, at most (distinct ones)."""
MAX_LESSON_FIX = 400
"""A lesson's fix is shown up to about this size, cut at a word."""
NEAR_DUPLICATE = 0.85
"""Two lessons this alike (difflib's ratio, of their normalised text) are one lesson."""
ELLIPSIS = " …"


def clip(text: str, limit: int) -> str:
    """Return ``text`` cut to about ``limit`` characters at a line or word boundary, marked.

    Never mid-token: the cut falls at the last line break in the second half of the room,
    else at the last space; a single token longer than ``limit`` is cut there, marked too.
    """
    text = text.strip()
    if len(text) <= limit:
        return text
    room = text[: max(1, limit - len(ELLIPSIS))]
    line = room.rfind("\n")
    if line >= len(room) // 2:
        return room[:line].rstrip() + ELLIPSIS
    space = max(room.rfind(" "), room.rfind("\t"))
    cut = room[:space] if space > 0 else room
    return cut.rstrip() + ELLIPSIS


def _normal(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"\d+", "0", text.lower())).strip()


def _near(a: str, b: str) -> bool:
    x, y = _normal(a), _normal(b)
    return x == y or difflib.SequenceMatcher(None, x, y).ratio() >= NEAR_DUPLICATE


def lesson_lines(records: list[FixRecord], limit: int = MAX_LESSONS) -> list[str]:
    """Return one prompt line per distinct lesson: one per error, near-duplicates dropped."""
    lines: list[str] = []
    seen: set[str] = set()
    for r in records:
        fix = clip(" ".join(r.fix.split()), MAX_LESSON_FIX)
        line = f"{r.tool} {r.rule}: {r.message} -> fixed by: {fix}"
        if r.signature in seen or any(_near(line, other) for other in lines):
            continue
        seen.add(r.signature)
        lines.append(line)
        if len(lines) == limit:
            break
    return lines


def memory_of(runtime: Runtime[Context], run_id: str) -> Memory:
    """Return the run's memory on the graph's store (a no-op memory without one)."""
    return Memory(runtime.store, run_id)


@dataclass
class CoderContext:
    """What memory adds to a coder's prompt."""

    memory: list[str] = field(default_factory=list)
    lessons: list[str] = field(default_factory=list)
    template: dict[str, str] | None = None
    template_key: str | None = None
    template_score: float = 0.0


async def coder_context(
    memory: Memory, task: dict[str, Any], project: str, ctx: Context
) -> CoderContext:
    """Return the relevant run memory, lessons of earlier runs and a matching template."""
    text = f"{task['title']}\n{task['description']}"
    out = CoderContext()
    if not memory.available:
        return out
    entries = await memory.relevant(
        text=text,
        files=task.get("files", []),
        requirement_ids=task.get("requirement_ids", []),
        budget_tokens=ctx.memory_token_budget,
    )
    out.memory = [e.render() for e in entries]
    # More candidates than are shown: near-duplicates and repeats of one error are dropped.
    out.lessons = lesson_lines(await memory.lessons_for(text, limit=4 * MAX_LESSONS))
    found = await memory.find_template(task["description"], ctx.template_threshold)
    if found is not None:
        key, template, score = found
        out.template, out.template_key, out.template_score = (
            template.instantiate(project),
            key,
            score,
        )
        await memory.mark_template_used(key, template)
    return out


def signatures(diagnostics: list[str]) -> list[ErrorSignature]:
    """Return the distinct error signatures of rendered diagnostics."""
    seen: dict[str, ErrorSignature] = {}
    for d in diagnostics:
        sig = signature_of(d)
        if sig is not None:
            seen.setdefault(sig.key, sig)
    return list(seen.values())


async def fix_hints(memory: Memory, diagnostics: list[str]) -> tuple[list[str], list[str]]:
    """Return fixes that worked before for these errors (as prompt lines) and their keys."""
    found = await memory.fixes_for(signatures(diagnostics))
    lines = [
        f"{r.tool} {r.rule}: {r.message}\n  worked "
        f"{'earlier in this run' if r.run_id == memory.run_id else 'in an earlier run'}: "
        f"{clip(r.fix, MAX_FIX_TEXT)}"
        for _, r in found
    ]
    return lines, [k for k, _ in found]


def fix_summary(explanation: str, before: dict[str, str], after: dict[str, str | None]) -> str:
    """Return what a fix changed: the fixer's own words and a unified diff, capped."""
    parts = [explanation.strip()] if explanation.strip() else []
    for path, new in sorted(after.items()):
        diff = difflib.unified_diff(
            (before.get(path) or "").splitlines(),
            (new or "").splitlines(),
            f"a/{path}",
            f"b/{path}",
            lineterm="",
            n=1,
        )
        parts.append("\n".join(diff))
    return "\n".join(parts)[:MAX_FIX_TEXT]


def pending_fix(diagnostics: list[str], summary: str, offered: list[str]) -> dict[str, Any]:
    """Return the task-state record of a fix whose outcome is not known yet."""
    return {
        "signatures": [s.__dict__ for s in signatures(diagnostics)],
        "fix": summary,
        "offered": offered,
    }


async def settle_fix(
    memory: Memory, pending: dict[str, Any] | None, *, worked: bool, task_text: str, task_id: str
) -> int:
    """Learn from a fix once its outcome is known; return how many fixes were recorded.

    A fix that worked goes into the knowledge base under each error it removed, and into
    the run memory as a mistake and how it was avoided; the fixes offered to the fixer are
    counted as helpful or not.
    """
    if not pending:
        return 0
    for key in pending.get("offered", []):
        await memory.mark_fix(key, helped=worked)
    if not worked:
        return 0
    recorded = 0
    for raw in pending.get("signatures", []):
        sig = ErrorSignature(**raw)
        if await memory.record_fix(sig, pending["fix"], task_text):
            recorded += 1
        await memory.remember(
            "mistake",
            f"{sig.describe()} in task {task_id}",
            reason=f"fixed by: {clip(' '.join(pending['fix'].split()), 300)}",
            task_id=task_id,
        )
    return recorded


__all__ = [
    "FIXES",
    "CoderContext",
    "Template",
    "clip",
    "coder_context",
    "fix_hints",
    "fix_summary",
    "lesson_lines",
    "memory_of",
    "pending_fix",
    "settle_fix",
    "signatures",
]


def _committed_files(ws: Any, commit: str) -> dict[str, str]:
    names = ws.git("show", "--name-only", "--format=", commit).splitlines()
    return {n: ws.git("show", f"{commit}:{n}") for n in names if n}


async def learn_from_accepted_task(
    runtime: Runtime[Context], state: dict[str, Any], ws: Any, commit: str
) -> dict[str, Any]:
    """Learn from a task whose work passed every check and landed on main.

    Its last fix (if any) worked: the knowledge base gets it. Its files become a template
    for similar tasks in later runs. Returns what was learned, for the event log.
    """
    import asyncio

    run_id = str((await asyncio.to_thread(ws.run_info) or {}).get("run_id", ""))
    memory = memory_of(runtime, run_id)
    if not memory.available:
        return {"memory": "off"}
    task = state["task"]
    fixes = await settle_fix(
        memory,
        state.get("pending_fix"),
        worked=True,
        task_text=f"{task['title']}\n{task['description']}",
        task_id=task["id"],
    )
    files = await asyncio.to_thread(_committed_files, ws, commit)
    evidence = (state.get("evidence") or [""])[-1]
    template = await memory.save_template(
        task["description"], files, project=state.get("project", ""), evidence=evidence
    )
    return {"fixes_recorded": fixes, "template": template, "problems": memory.problems[:5]}


async def remember_scope_and_plan(
    memory: Memory, scope: dict[str, Any], plan: dict[str, Any]
) -> int:
    """Record the scope's constraints, non-goals and clarification answers; the plan's decisions.

    Each is tied to the requirements and files of the tasks it concerns, so that only
    related tasks see it. Returns how many entries were written.
    """
    if not memory.available:
        return 0
    tasks = plan.get("tasks", [])
    all_files = sorted({f for t in tasks for f in t.get("files", [])})
    written = 0
    for text in scope.get("constraints", []):
        await memory.remember("constraint", text, reason="stated in the scope", files=all_files)
        written += 1
    for text in scope.get("non_goals", []):
        await memory.remember(
            "constraint",
            f"not in scope: {text}",
            reason="an explicit non-goal of the scope",
            files=all_files,
        )
        written += 1
    for c in scope.get("clarifications", []):
        if c.get("answer"):
            by = c.get("decided_by")
            await memory.remember(
                "decision",
                decision_text(c["question"], c["answer"], by),
                reason="the proposed default of a scope clarification"
                if by == "default"
                else "a person answered a scope clarification",
                files=all_files,
            )
            written += 1
    for d in plan.get("decisions", []):
        related = [
            t
            for t in tasks
            if set(t.get("requirement_ids", [])) & set(d.get("requirement_ids", []))
        ]
        await memory.remember(
            "decision",
            d["decision"],
            reason=d.get("reason", ""),
            files=sorted({f for t in related for f in t.get("files", [])}),
            requirement_ids=d.get("requirement_ids", []),
        )
        written += 1
    return written
