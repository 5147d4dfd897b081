"""The person's own words beside the extracted requirements, for the planner's prompts.

The scope's requirements are a model's summary of what the person wrote; a name, a format, a
limit or an example can be lost on the way. So the planning prompts also carry the text: the
whole of it for a short scope (read in one section), and for a long one the sections its
requirements were read from (``Feature.sections``, spans of the text in ``Scope.sections``),
within a token budget. What is left out is said, section by section, never dropped silently.
The choice is deterministic: the same scope and text always give the same excerpt.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from oldnew.schemas import Scope, SourceSection

CHARS_PER_TOKEN = 4
"""How the budget counts: an estimate of 4 characters a token, the same on every machine."""


@dataclass(frozen=True)
class Excerpt:
    """One piece of the person's text shown to the planner."""

    text: str
    index: int = 0
    """The section's number (0: the whole text of a scope read in one piece)."""
    heading: str = ""
    requirement_ids: tuple[str, ...] = ()
    """The requirements read from it (of those the prompt is about)."""


@dataclass(frozen=True)
class ScopeWords:
    """What a planning prompt shows of the person's text, and what it leaves out."""

    whole: bool
    """True when the whole text is shown."""
    sections: int
    """How many sections the text was read in (1: a short scope)."""
    excerpts: list[Excerpt] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)
    """One line per piece not shown, with why."""


def _spans(scope: Scope, text: str) -> list[SourceSection]:
    """Return the scope's sections as spans of ``text``, clipped to it.

    The text read may have held more than the person's words after them (the supporting
    files' listing): what lies past ``text`` is not the person's and is cut off.
    """
    out = []
    for s in scope.sections:
        start, end = max(0, s.start), min(s.end, len(text))
        if end > start:
            out.append(s.model_copy(update={"start": start, "end": end}))
    return out or [SourceSection(index=1, start=0, end=len(text))]


def _cut(text: str, chars: int) -> str:
    """Return the start of ``text`` up to ``chars`` characters, ending at a line's end."""
    head = text[:chars]
    return head[: head.rfind("\n") + 1] or head


def _ids(ids: list[str]) -> str:
    return ", ".join(ids[:12]) + (f" and {len(ids) - 12} more" if len(ids) > 12 else "")


def _whole(text: str, budget: int) -> ScopeWords:
    if len(text) <= budget:
        return ScopeWords(whole=True, sections=1, excerpts=[Excerpt(text)])
    head = _cut(text, budget)
    rest = text[len(head) :]
    note = (
        f"the rest of the text, {len(rest):,} characters ({rest.count(chr(10)) + 1} lines) "
        f"from line {head.count(chr(10)) + 1}: over the budget of {budget // CHARS_PER_TOKEN:,} "
        "tokens (plan_scope_tokens)"
    )
    return ScopeWords(whole=False, sections=1, excerpts=[Excerpt(head)], left_out=[note])


def scope_words(
    scope: Scope, text: str, budget_tokens: int, wanted: Collection[str] | None = None
) -> ScopeWords | None:
    """Return what of the person's ``text`` a planning prompt shows; None: nothing to show.

    ``wanted`` names the requirements the prompt is about (an epic's, a task's); None: all.
    A short scope is shown whole (cut at a line's end past the budget, and said so). A long
    one shows the sections its wanted requirements were read from, those that are the source
    of the most requirements first while they fit, in the document's order.
    """
    if not text.strip() or budget_tokens <= 0:
        return None
    budget = budget_tokens * CHARS_PER_TOKEN
    spans = _spans(scope, text)
    if len(spans) == 1:
        return _whole(text, budget)
    sources: dict[int, list[str]] = {s.index: [] for s in spans}
    unplaced: list[str] = []
    for _, req in scope.requirements():
        if wanted is not None and req.id not in wanted:
            continue
        known = [i for i in req.sections if i in sources]
        for i in known:
            sources[i].append(req.id)
        if not known:
            unplaced.append(req.id)
    by_index = {s.index: s for s in spans}
    ranked = sorted((i for i in sources if sources[i]), key=lambda i: (-len(sources[i]), i))
    chosen: list[int] = []
    left_out: list[str] = []
    room = budget
    for i in ranked:
        s = by_index[i]
        size = s.end - s.start
        if size <= room:
            chosen.append(i)
            room -= size
            continue
        where = f" ({s.heading})" if s.heading else ""
        left_out.append(
            f"section {i} of {len(spans)}{where}, {size:,} characters, source of "
            f"{_ids(sources[i])}: over the budget of {budget // CHARS_PER_TOKEN:,} tokens "
            "(plan_scope_tokens)"
        )
    silent = [i for i in sources if not sources[i]]
    if silent:
        why = "none of the requirements planned here" if wanted is not None else "no requirement"
        left_out.append(
            f"{len(silent)} of {len(spans)} sections ({', '.join(map(str, silent[:20]))}"
            f"{' ...' if len(silent) > 20 else ''}): {why} was read from them"
        )
    if unplaced:
        left_out.append(f"no section is known for {_ids(unplaced)}")
    excerpts = [
        Excerpt(
            text[by_index[i].start : by_index[i].end],
            index=i,
            heading=by_index[i].heading,
            requirement_ids=tuple(sources[i]),
        )
        for i in sorted(chosen)
    ]
    return ScopeWords(whole=False, sections=len(spans), excerpts=excerpts, left_out=left_out)
