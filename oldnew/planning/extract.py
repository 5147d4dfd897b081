"""Scope extraction: the user's text, of any length up to the run's limit, as a typed Scope."""

from __future__ import annotations

import asyncio
import re
from typing import Literal

from oldnew.errors import OldnewError
from oldnew.planning.ambiguity import find_ambiguities
from oldnew.planning.clarify import tidy_clarifications
from oldnew.planning.llm import Asker
from oldnew.planning.sections import Section, merge_scopes, normalize_ids, split_sections
from oldnew.prompts import render
from oldnew.schemas import Scope


class ScopeProblem(OldnewError):
    """The scope text cannot be read into requirements as it stands; a person must act."""

    def __init__(self, kind: Literal["unclear", "too_large"], message: str) -> None:
        """Say what is wrong (``kind`` picks the options a person is offered)."""
        super().__init__(message)
        self.kind = kind


def _has_words(text: str) -> bool:
    return len(re.findall(r"[^\W\d_]{2,}", text)) >= 2


def _read_whole(scope: Scope, section: Section) -> Scope:
    """Mark every requirement of a scope read in one call as read from its one section."""
    out = scope.model_copy(deep=True, update={"sections": [section.source()]})
    for _, item in out.requirements():
        item.sections = [section.index]
    return out


def _hints(text: str) -> list[str]:
    return [a.render() for a in find_ambiguities(text)]


async def extract_scope(ask: Asker, text: str, *, allow_many: bool = False) -> Scope:
    """Read ``text`` into a Scope: in one call, or section by section and merged.

    The ambiguity scan's findings go into the prompt as hints; the model alone decides which
    clarifications (at most three are kept) are worth asking. When it returns none, none are
    asked, whatever the scan found.

    Raises:
        ScopeProblem: the text names nothing to build, or needs more sections than allowed.
        ModelOutputError: the model's answer never parsed.

    """
    ctx = ask.ctx
    if not _has_words(text):
        raise ScopeProblem(
            "unclear", "the scope has no words to read; describe what to build in sentences"
        )
    sections = split_sections(text, ctx.scope_chunk_chars)
    if len(sections) > ctx.max_scope_sections and not allow_many:
        raise ScopeProblem(
            "too_large",
            f"the scope is {len(text):,} characters: {len(sections)} sections of up to "
            f"{ctx.scope_chunk_chars:,} characters each, more than max_scope_sections="
            f"{ctx.max_scope_sections}. Split it into several runs, or raise max_scope_sections "
            "(OLDNEW_MAX_SCOPE_SECTIONS) to read it all.",
        )
    system = render("scope_system")
    if len(sections) == 1:
        scope = await ask(
            Scope, system, render("scope_user", scope_text=text, findings=_hints(text))
        )
        dropped = scope.dropped_clarifications
        scope = _read_whole(scope, sections[0])
    else:
        await ask.emit(event="sections", count=len(sections), chars=len(text))
        parts = await asyncio.gather(
            *(
                ask(
                    Scope,
                    system,
                    render(
                        "scope_section", section=s, total=len(sections), findings=_hints(s.text)
                    ),
                )
                for s in sections
            )
        )
        dropped = [note for p in parts for note in p.dropped_clarifications]
        scope = merge_scopes(list(parts), sections)
    scope, notes = normalize_ids(scope)
    if notes:
        await ask.emit(event="ids_renumbered", notes=notes[:20])
    scope, dropped = tidy_clarifications(scope, dropped)
    if dropped:
        await ask.emit(event="clarifications_dropped", notes=dropped[:20])
    if not scope.requirements():
        why = "; ".join(scope.unknowns[:5])
        raise ScopeProblem(
            "unclear",
            "the scope names nothing to build (no feature, page, integration, data model or "
            f"API endpoint){': ' + why if why else ''}. Describe at least one thing the "
            "software must do.",
        )
    return scope
