"""Choose what one coder or fixer call sees of the project, within a budget of tokens.

In order, while the budget lasts: the supporting files the task names and the files it
touches, in full; the files of the tasks it depends on; the files that import or are
imported by those; then a map of every other file (path and definitions), ranked by how
much the task's text and the files already shown refer to the names it defines. The rest
is listed as left out (paths, or counts by folder when they are many); nothing vanishes.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oldnew.prompts import render
from oldnew.repomap.imports import module_index, module_stem, resolve
from oldnew.repomap.index import Facts, project_facts
from oldnew.repomap.read import READ_MAX_BYTES
from oldnew.repomap.symbols import words
from oldnew.repomap.tokens import ESTIMATOR, TokenCounter
from oldnew.supporting import listing, task_view

SUPPORTING_TEXT_BYTES = 20_000
"""A supporting text file the task names is pasted up to this size; a larger one is listed."""
BYTES_PER_TOKEN = 16
"""More bytes than a token holds (4 bytes a character at most, 4 characters a token): a
file larger than the room left times this cannot fit, and is not read."""
MAP_SHARE = 4
"""Files the task builds on (its dependencies, their neighbours) leave 1/MAP_SHARE of the
budget to the map; the task's own files may take it all."""


@dataclass(frozen=True)
class Want:
    """What one call needs of the project."""

    focus: list[str]
    """The files the task touches (for the fixer also those the diagnostics name)."""
    related: list[str] = field(default_factory=list)
    """The files of the tasks it depends on."""
    text: str = ""
    """The task's title and description (its words rank the map)."""
    supporting: list[str] = field(default_factory=list)
    """Every supporting file of the run (``--with``)."""
    named: list[str] = field(default_factory=list)
    """The supporting files the task names: shown like its own files (binary ones listed)."""
    budget: int = 8000
    counter: TokenCounter = ESTIMATOR
    full: bool = True
    """False after the model's context overflowed: files are only mapped, never pasted."""
    reads: int = 8
    """Files the model may fetch with ``ReadFile`` in one turn (the frame says so)."""


@dataclass
class Selection:
    """What the prompt shows: files in full, files listed, the map, and what was left out."""

    budget: int
    counter: str
    files: int = 0
    """Files in the project."""
    full: dict[str, str] = field(default_factory=dict)
    executable: set[str] = field(default_factory=set)
    """The files shown in full that are executable (shown so: the coder keeps the bit)."""
    notes: dict[str, str] = field(default_factory=dict)
    """Files listed but not pasted (binary, too large), with why."""
    map: list[str] = field(default_factory=list)
    """Blocks of the repository map: a path line, then its definitions."""
    mapped: list[str] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)
    """Lines naming what was left out: paths, or folders with a count."""
    left_out_count: int = 0
    left_out_paths: list[str] = field(default_factory=list)
    tokens: int = 0

    @property
    def empty(self) -> bool:
        """Whether the project has no files at all."""
        return self.files == 0 and not self.notes and not self.full

    def event(self) -> dict[str, Any]:
        """Return the fields of the ``context`` event."""
        return {
            "tokens": self.tokens,
            "budget": self.budget,
            "counter": self.counter,
            "files": self.files,
            "full": sorted(self.full),
            "listed": sorted(self.notes),
            "mapped": len(self.mapped),
            "left_out": self.left_out_count,
        }


class _Builder:
    def __init__(self, tree: Path, want: Want, facts: dict[str, Facts]) -> None:
        self.tree, self.want, self.facts = tree, want, facts
        self.count = want.counter.count
        self.out = Selection(want.budget, want.counter.name, files=len(facts))
        self.shown: set[str] = set()
        self.spilled: list[str] = []
        """Files that earned a place in full but did not fit: mapped first."""
        self.frame = max(frame_tokens(want), 0)
        """The headings and the how-to-ask line, rendered and counted by the counter."""
        self.reserve = self.frame + min(max(want.budget // 20, 40), 400)
        """Kept back for the frame and the list of what was left out."""

    def room(self, limit: int) -> int:
        return limit - self.out.tokens

    def note(self, path: str, why: str, limit: int) -> None:
        """List ``path`` with why it is not pasted, if the line fits; else map it first."""
        cost = self.count(f"- {path}: {why}\n")
        if cost > self.room(limit):
            self.spilled.append(path)  # mapped (its block says as much), else left out
            return
        self.out.notes[path] = why
        self.out.tokens += cost
        self.shown.add(path)

    def paste(self, path: str, text: str, limit: int) -> bool:
        cost = self.count(f"FILE: {path}\n```\n{text}\n```\n")
        if cost > self.room(limit):
            return False
        self.out.full[path] = text
        if os.access(self.tree / path, os.X_OK):
            self.out.executable.add(path)
        self.out.tokens += cost
        self.shown.add(path)
        return True

    def place(self, path: str, limit: int) -> None:
        """Paste ``path`` if it fits, list it if it never can be pasted, else map it first."""
        facts = self.facts.get(path)
        if facts is None or path in self.shown or path in self.spilled:
            return
        if facts.odd_name:
            self.note(path, f"{facts.odd_name}: not shown", limit)
        elif facts.link:
            self.note(path, "a symbolic link: not followed", limit)
        elif facts.latin:
            self.note(path, f"not UTF-8 text, {facts.size} bytes: not shown", limit)
        elif facts.binary:
            self.note(path, f"binary, {facts.size} bytes: not shown", limit)
        elif facts.huge:
            self.note(path, f"{facts.size} bytes: too large to paste; {BY_RANGES}", limit)
        elif not self.want.full:
            self.spilled.append(path)
        elif facts.size > self.room(limit) * BYTES_PER_TOKEN:
            self.spilled.append(path)  # cannot fit: not even read
        else:
            text = (self.tree / path).read_text(encoding="utf-8", errors="replace")
            if not self.paste(path, text, limit):
                self.spilled.append(path)

    def supporting(self) -> None:
        kinds = {e["path"]: e for e in listing(self.tree, self.want.named)}
        view = task_view(self.tree, self.want.named, limit=SUPPORTING_TEXT_BYTES)
        for path, shown in view.items():
            entry = kinds[path]
            pasted = entry["type"] == "text" and entry["size"] <= SUPPORTING_TEXT_BYTES
            if not pasted:
                self.note(path, shown.strip("()"), self.want.budget - self.reserve)
            elif not self.want.full or not self.paste(path, shown, self.want.budget - self.reserve):
                self.spilled.append(path)

    def neighbours(self, paths: list[str]) -> list[str]:
        """Return the files that ``paths`` import, then those that import them."""
        files = self.facts
        modules = module_index(files)
        wanted = {p for p in paths if p in files}
        imported: dict[str, None] = {}
        for path in paths:
            if path in files:
                targets = resolve(path, list(files[path].imports), modules, files)
                imported.update(dict.fromkeys(sorted(targets)))
        # Resolving every file's imports is the slow part: only a file whose imports name
        # one of the wanted modules can import it.
        stems = {module_stem(p) for p in wanted}
        importers = [
            p
            for p, f in files.items()
            if p not in wanted
            and p not in imported
            and not stems.isdisjoint(f.import_words)
            and resolve(p, list(f.imports), modules, files) & wanted
        ]
        # Many files may import a much-used module: the most relevant come first.
        return self.ranked([p for p in imported if p not in wanted]) + self.ranked(importers)

    def ranked(self, candidates: list[str]) -> list[str]:
        """Order ``candidates`` by how much the task and the files shown refer to them.

        A name's references count for the files that define it, shared among them (a
        name every module defines tells nothing); a file's own name counts too.
        """
        refs = Counter(words(self.want.text))
        for text in self.out.full.values():
            refs.update(words(text))
        hits: dict[str, tuple[frozenset[str], str]] = {}
        known = set(refs)
        for path in candidates:
            common = self.facts[path].name_set & known
            stem = module_stem(path)
            if common or stem in refs:
                hits[path] = (common, stem)
        definers = Counter(n for common, _ in hits.values() for n in common)
        scores = {
            p: sum(refs[n] / definers[n] for n in common) + refs.get(stem, 0)
            for p, (common, stem) in hits.items()
        }
        first = sorted(scores, key=lambda p: (-scores[p], p))
        return [*first, *(p for p in candidates if p not in scores)]

    def block(self, path: str) -> str:
        facts = self.facts[path]
        if facts.odd_name:
            return f"{path} ({facts.odd_name}: not shown)"
        if facts.link:
            return f"{path} (symbolic link)"
        if facts.latin:
            return f"{path} (not UTF-8 text, {facts.size} bytes)"
        if facts.binary:
            return f"{path} (binary, {facts.size} bytes)"
        head = path
        if facts.size > READ_MAX_BYTES:
            head = f"{path} ({facts.size} bytes: {BY_RANGES})"
        return "\n".join([head, *(f"  {d}" for d in facts.defs)])

    def map(self, order: list[str]) -> list[str]:
        """Map ``order`` while the budget lasts; return what did not fit."""
        limit = self.want.budget - self.reserve
        for i, path in enumerate(order):
            block = self.block(path)
            cost = self.count(block + "\n")
            if cost > self.room(limit) and "\n" in block:
                block = f"{path} ({len(self.facts[path].defs)} definitions not shown)"
                cost = self.count(block + "\n")
            if cost > self.room(limit):
                return order[i:]
            self.out.map.append(block)
            self.out.mapped.append(path)
            self.out.tokens += cost
        return []

    def left_out(self, paths: list[str]) -> None:
        """List ``paths`` as left out: one a line, else by folder, within what is left."""
        out = self.out
        out.left_out_count, out.left_out_paths = len(paths), paths
        if not paths:
            return
        room = self.want.budget - self.frame - out.tokens
        tried = 0
        for depth in (None, 3, 2, 1):
            if depth is None and len(paths) > room:
                continue  # a path is more than a token: one a line cannot fit
            lines = paths if depth is None else _by_folder(paths, depth)
            if len(lines) == tried:
                continue  # no shallower than the last try
            tried = len(lines)
            cost = self.count("".join(f"- {line}\n" for line in lines))
            if cost <= room:
                out.left_out, out.tokens = list(lines), out.tokens + cost
                return
        line = f"{len(paths)} files in {len(_by_folder(paths, 1))} top-level folders"
        out.left_out, out.tokens = [line], out.tokens + self.count(line)

    def fit(self) -> None:
        """Trim the rendered section to the budget: map blocks, listed, then full files go.

        What goes is left out (named), last first.

        The costs counted piece by piece are close to the whole's, but a tokenizer is not
        additive: the whole is rendered and counted, and trimmed while it is over.
        """
        out, want = self.out, self.want
        while True:
            shown = self.count(render("project_context", context=out, reads=want.reads))
            if shown <= want.budget or not (out.map or out.notes or out.full):
                out.tokens = shown
                return
            over = max(1, (shown - want.budget) // 8)
            dropped = []
            for _ in range(over):
                if out.map:
                    out.tokens -= self.count(out.map.pop() + "\n")
                    dropped.append(out.mapped.pop())
                elif out.notes:
                    path, why = out.notes.popitem()
                    out.tokens -= self.count(f"- {path}: {why}\n")
                    dropped.append(path)
                elif out.full:
                    path, text = out.full.popitem()
                    out.tokens -= self.count(f"FILE: {path}\n```\n{text}\n```\n")
                    dropped.append(path)
                    break  # a whole file is a lot: count again
            out.tokens -= self.count("".join(f"- {line}\n" for line in out.left_out))
            self.left_out([*reversed(dropped), *out.left_out_paths])


BY_RANGES = "too large to read whole: read it by line ranges (ReadFile start_line, end_line)"
"""What a file too large for one ``ReadFile`` answer is marked with."""


def frame_tokens(want: Want) -> int:
    """Return the tokens of the section's frame: every heading and line but the files'."""
    every = Selection(want.budget, want.counter.name, files=1, notes={"": ""}, map=[""])
    every.full, every.left_out = {"": ""}, [""]
    return want.counter.count(render("project_context", context=every, reads=want.reads))


def _by_folder(paths: list[str], depth: int) -> list[str]:
    """Return one line per folder (its first ``depth`` parts) with how many of ``paths``."""
    counts: Counter[str] = Counter()
    for folder, n in Counter(p.rpartition("/")[0] for p in paths).items():
        parts = folder.split("/")[:depth] if folder else []
        counts["/".join(parts) + "/" if parts else "(top level)"] += n
    return [f"{folder} ({n} file{'s' if n > 1 else ''})" for folder, n in sorted(counts.items())]


def select(tree: Path, want: Want, meta: Path | None = None) -> Selection:
    """Return what one call on ``tree`` sees of the project, within ``want.budget`` tokens.

    ``meta`` is the workspace's ``.oldnew`` folder (the cache of every file's outline).
    """
    facts = project_facts(tree, meta)
    b = _Builder(tree, want, facts)
    b.supporting()
    focus = list(dict.fromkeys(p for p in want.focus if p in facts))
    for path in focus:
        b.place(path, want.budget - b.reserve)
    related = [p for p in dict.fromkeys(want.related) if p in facts and p not in focus]
    related = b.ranked(related)  # what the task's text names first
    others = len(facts) > len(focus) + len(related)
    limit = want.budget - b.reserve - (want.budget // MAP_SHARE if others else 0)
    for path in related:
        b.place(path, limit)
    base = [*focus, *related]
    supporting = set(want.supporting)
    near = [p for p in b.neighbours(base) if p not in supporting]
    for path in near:
        b.place(path, limit)
    focus_set = set(focus)
    spilled = [p for p in b.spilled if p in focus_set]
    spilled += b.ranked([p for p in b.spilled if p not in focus_set])
    first = [p for p in dict.fromkeys([*spilled, *[n for n in near if n not in b.shown]])]
    placed = b.shown | set(first)
    rest = b.ranked([p for p in facts if p not in placed])
    b.left_out(b.map([*first, *rest]))
    b.fit()
    return b.out
