"""What the coder and fixer are told beside the task: the rules, the role, the last attempt.

The system prompt is built from the task's role, the scope's stack, the run's dependency
policy and the rules of the active quality profile (:mod:`oldnew.gates.rules`); a retry after
a person was asked says what happened, and what failed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from oldnew.context import Context
from oldnew.gates.profiles import resolve_profile
from oldnew.gates.rules import Rules, rules_for
from oldnew.graph.state import TaskState
from oldnew.hitl.questions import RETRY
from oldnew.memory.learning import clip
from oldnew.prompts import render
from oldnew.schemas import PlannedTask

_PACKAGE_KINDS = ("dependency", "dependency_blocked")
MAX_FAILURE_CHARS = 1200
"""The previous attempt's failure is shown up to about this size (cut at a line or word)."""
MAX_FAILURE_DIAGNOSTICS = 5


def retry_note(state: TaskState) -> dict[str, Any] | None:
    """Return what the coder is told of the attempt before this one, if a person was asked.

    A person's answer to the model's own question; a decision on packages; a plain retry
    after a failure; or a person's guidance after one. The last two show the failure
    briefly (what the question said, the last validation's first findings), and say when it
    was the answer's format, not its code.
    """
    answer = state.get("answer")
    if not answer:
        return None
    kind = answer.get("kind")
    note: dict[str, Any] = {
        "why": "asked",
        "question": answer.get("question", ""),
        "answer": answer.get("answer", ""),
        "failure": "",
        "format": kind == "model_output",
        "diagnostics": [],
        "choice": answer.get("choice", ""),
    }
    if answer.get("asked") or "kind" not in answer:
        return note  # the model's own question (or an answer recorded before kinds were)
    if kind in _PACKAGE_KINDS:
        return {**note, "why": "packages"}
    note["failure"] = clip(
        str(answer.get("detail") or answer.get("question", "")), MAX_FAILURE_CHARS
    )
    note["diagnostics"] = list(state.get("diagnostics") or [])[:MAX_FAILURE_DIAGNOSTICS]
    note["why"] = "retry" if answer.get("answer") == RETRY else "guidance"
    return note


def gate_rules(ctx: Context, tree: Path, stack: str) -> Rules:
    """Return the rules the run's quality profile holds the code in ``tree`` to."""
    profile = resolve_profile(
        ctx.quality, coverage_min=ctx.coverage_min, complexity_max=ctx.complexity_max
    )
    return rules_for(profile, tree, stack=stack, timeout=ctx.test_timeout)


def system_prompt(state: TaskState, task: PlannedTask, deps: str, rules: Rules) -> str:
    """Return the coder's (and fixer's) system prompt: the task's role, stack and rules."""
    return render(
        "coder_system",
        role=task.role,
        project=state.get("project", ""),
        deps=deps,
        stack=state.get("stack") or "python",
        rules=rules,
    )
