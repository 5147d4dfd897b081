"""Long scopes: split a document into sections that fit one model call, merge what they say.

Sections follow the document's Markdown headings; a heading's block that is still too long is
cut at paragraphs, then lines, then characters. Nothing is dropped: the sections together hold
the whole text. Merging renumbers every requirement in order of first appearance, so the same
document always yields the same ids, and folds a requirement repeated across sections into one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from oldnew.schemas import Feature, Scope, ScopeItem, SourceSection

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
PREFIXES = {
    "features": "F",
    "integrations": "I",
    "pages": "P",
    "data_models": "M",
    "api_endpoints": "A",
}
_RANK = {"must": 0, "should": 1, "could": 2}


@dataclass(frozen=True)
class Section:
    """One piece of a scope document, small enough for one model call."""

    index: int
    heading: str
    """The headings above it, outermost first ("Billing > Invoices"), or ""."""
    text: str
    start: int = 0
    """Offset of its first character in the whole text (the sections are consecutive)."""

    def source(self) -> SourceSection:
        """Return where this section lies in the text, as the Scope keeps it."""
        return SourceSection(
            index=self.index,
            heading=self.heading,
            start=self.start,
            end=self.start + len(self.text),
        )


def _blocks(text: str) -> list[tuple[str, str]]:
    """Cut ``text`` before each Markdown heading (not inside code fences)."""
    blocks: list[tuple[str, str]] = []
    trail: list[tuple[int, str]] = []
    current: list[str] = []
    heading = ""
    fenced = False
    for line in text.splitlines(keepends=True):
        if _FENCE.match(line):
            fenced = not fenced
        m = None if fenced else _HEADING.match(line.rstrip("\n"))
        if m:
            if current:
                blocks.append((heading, "".join(current)))
            level = len(m.group(1))
            trail = [(lv, t) for lv, t in trail if lv < level] + [(level, m.group(2))]
            heading = " > ".join(t for _, t in trail)
            current = []
        current.append(line)
    if current:
        blocks.append((heading, "".join(current)))
    return blocks


def _cut(text: str, budget: int) -> list[str]:
    """Cut ``text`` into pieces of at most ``budget`` characters at natural boundaries."""
    if len(text) <= budget:
        return [text]
    for pattern in (r"(?<=\n\n)", r"(?<=\n)"):  # after blank lines, then after any line
        parts = [p for p in re.split(pattern, text) if p]
        if len(parts) > 1:
            return [piece for part in parts for piece in _cut(part, budget)]
    return [text[i : i + budget] for i in range(0, len(text), budget)]


def split_sections(text: str, budget: int) -> list[Section]:
    """Return ``text`` as sections of at most ``budget`` characters (one when it fits)."""
    budget = max(200, budget)
    if len(text) <= budget:
        return [Section(1, "", text)]
    pieces = [(h, p) for h, block in _blocks(text) for p in _cut(block, budget)]
    out: list[Section] = []
    heading, buf, start = pieces[0][0], "", 0
    for h, piece in pieces:
        if buf and len(buf) + len(piece) > budget:
            out.append(Section(len(out) + 1, heading, buf, start))
            heading, buf, start = h, "", start + len(buf)
        buf += piece
    if buf:
        out.append(Section(len(out) + 1, heading, buf, start))
    return out


def _key(title: str) -> str:
    return " ".join(re.sub(r"[^\w\s/{}]", " ", title.casefold()).split())


def _fold(kept: Feature, again: Feature) -> None:
    kept.sections = sorted({*kept.sections, *again.sections})
    if again.description and again.description not in kept.description:
        kept.description = f"{kept.description} {again.description}".strip()[:2000]
    if _RANK[again.priority] < _RANK[kept.priority]:
        kept.priority = again.priority


def _unique(lines: list[str]) -> list[str]:
    seen: dict[str, str] = {}
    for line in lines:
        seen.setdefault(_key(line), line)
    return list(seen.values())


def merge_scopes(parts: list[Scope], sections: list[Section]) -> Scope:
    """Merge the scopes read from each section into one, with fresh sequential ids."""
    merged: dict[str, list[Feature]] = {}
    for field, prefix in PREFIXES.items():
        by_key: dict[str, Feature] = {}
        for part, section in zip(parts, sections, strict=True):
            for item in getattr(part, field):
                key = _key(item.title)
                if key in by_key:
                    _fold(by_key[key], item.model_copy(update={"sections": [section.index]}))
                    continue
                cls = Feature if field == "features" else ScopeItem
                by_key[key] = cls(
                    **{
                        **item.model_dump(),
                        "id": f"{prefix}{len(by_key) + 1}",
                        "source": item.source or section.heading,
                        "sections": [section.index],
                    }
                )
        merged[field] = list(by_key.values())
    first = next((p for p in parts if p.title.strip()), parts[0])
    summaries = _unique([p.summary for p in parts if p.summary.strip()])
    return Scope(
        title=first.title,
        summary=" ".join(summaries[:3])[:1500],
        language=first.language,
        constraints=_unique([c for p in parts for c in p.constraints]),
        unknowns=_unique([u for p in parts for u in p.unknowns]),
        non_goals=_unique([n for p in parts for n in p.non_goals]),
        clarifications=[c for p in parts for c in p.clarifications],
        sections=[s.source() for s in sections],
        **merged,  # type: ignore[arg-type]
    )


def normalize_ids(scope: Scope) -> tuple[Scope, list[str]]:
    """Give every requirement a unique id, keeping the model's ids where they are usable.

    Returns the scope and a note for each id that was changed.
    """
    data = scope.model_copy(deep=True)
    taken: set[str] = set()
    notes: list[str] = []
    fresh: dict[str, int] = {}
    items = [(p, item) for field, p in PREFIXES.items() for item in getattr(data, field)]
    usable = [item.id.strip() for _, item in items]
    for (prefix, item), wanted in zip(items, usable, strict=True):
        if wanted and re.fullmatch(r"[A-Za-z0-9][\w.-]{0,39}", wanted) and wanted not in taken:
            item.id = wanted
            taken.add(wanted)
            continue
        n = fresh.get(prefix, 0)
        while f"{prefix}{n + 1}" in taken or f"{prefix}{n + 1}" in usable:
            n += 1
        fresh[prefix] = n + 1
        item.id = f"{prefix}{n + 1}"
        taken.add(item.id)
        notes.append(f"requirement {wanted or '(no id)'} ({item.title}) is now {item.id}")
    return data, notes
