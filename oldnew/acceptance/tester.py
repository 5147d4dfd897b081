"""The tester: writes one requirement's acceptance tests from its criteria, never the code.

The tester sees the project's title, summary and stack, the requirement (with the person's
own words for it), its criteria and the answers that settle them, the public interface and
the design decisions the plan fixes, and the supporting files: never a task's code (the suite
is written before any task runs). Its reply is file blocks, like the coder's, checked here
(:func:`suite_problems`) and asked again with the problems until it passes or the retries
run out; it may ask a person instead (``AskHuman``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import Runnable

from oldnew.acceptance import SUITE_DIR, name_prefix, suite_file
from oldnew.acceptance.checks import suite_problems
from oldnew.nodes.coding import files_from_model  # the one loop for file-block answers
from oldnew.planning.words import ScopeWords
from oldnew.prompts import render
from oldnew.recovery.retry import RetryPolicy
from oldnew.schemas import AskHuman, Feature, Plan, Scope


@dataclass
class Brief:
    """Everything the tester is shown for one requirement (and nothing of the code)."""

    scope: Scope
    requirement: Feature
    kind: str
    plan: Plan
    answers: list[str] = field(default_factory=list)
    """The clarifications' answers that concern the requirement's criteria."""
    supporting: list[dict[str, Any]] = field(default_factory=list)
    """The supporting files' listing (``supporting.listing``)."""
    words: ScopeWords | None = None
    asked: list[str] = field(default_factory=list)
    """The tester's earlier questions to a person for this requirement, with the answers."""


def tester_messages(brief: Brief) -> list[BaseMessage]:
    """Return the tester's prompt for one requirement."""
    scope = brief.scope
    system = render("tester_system", project=scope.title, stack=scope.stack, suite_dir=SUITE_DIR)
    user = render(
        "tester_user",
        scope=scope,
        requirement=brief.requirement,
        kind=brief.kind,
        file=suite_file(brief.requirement.id),
        prefixes={c.id: name_prefix(c.id) for c in brief.requirement.criteria},
        answers=brief.answers,
        interface=brief.plan.interface,
        decisions=brief.plan.decisions,
        files=brief.supporting,
        words=brief.words,
        asked=brief.asked,
    )
    return [SystemMessage(system), HumanMessage(user)]


async def write_tests(
    model: Runnable[Any, Any],
    messages: list[BaseMessage],
    requirement: Feature,
    *,
    known: Collection[str],
    root: Path,
    retries: int,
    policy: RetryPolicy,
) -> dict[str, str] | AskHuman:
    """Ask the tester until its reply passes :func:`suite_problems`; return its files or question.

    Nothing is written: the caller commits the files. A reply with problems is asked again
    with them (``blocks_retry.j2``, as the coder's is).

    Raises:
        ModelOutputError: the reply still had problems after ``retries`` more tries.

    """

    def check(files: Mapping[str, str | None]) -> list[str]:
        return suite_problems(files, requirement, known)

    result, _, _ = await files_from_model(
        model, messages, root, retries, policy, check=check, write=False
    )
    if isinstance(result, AskHuman):
        return result
    return {path: text for path, text in result.items() if text is not None}
