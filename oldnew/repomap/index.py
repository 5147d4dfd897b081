"""The project's files as the context sees them, cached by git blob id.

One ``git ls-files -s`` gives every tracked file and its blob id, one ``git status`` the
files changed or added since; a file's facts (size, text or binary, definitions, imports)
are worked out once per blob and kept in memory and in ``.oldnew/repomap-cache.json``, so a
second call on a 5,000-file project reads almost nothing from disk.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from oldnew.errors import WorkspaceError
from oldnew.repomap.imports import import_words, imports_of
from oldnew.repomap.symbols import definitions
from oldnew.safegit import run_git
from oldnew.supporting import is_text

HUGE_BYTES = 256_000
"""A file larger than this is never read for the context: it is listed with its size."""
CACHE_FILE = "repomap-cache.json"
_VERSION = 1
_MAX_MEMORY = 50_000
"""Blobs kept in memory, at most, across workspaces (then the memory starts afresh)."""


@dataclass(frozen=True)
class Facts:
    """What the context needs to know of one file's content."""

    size: int
    binary: bool
    defs: tuple[str, ...] = ()
    """The file's map lines: its definitions with their signatures."""
    names: tuple[str, ...] = ()
    """The names it defines (for ranking)."""
    imports: tuple[str, ...] = ()
    """Its import statements, as :func:`oldnew.repomap.imports.resolve` reads them."""
    link: bool = False
    """A symbolic link: never followed (it may lead out of the project), never cached."""

    @cached_property
    def name_set(self) -> frozenset[str]:
        """The names it defines, as a set."""
        return frozenset(self.names)

    @cached_property
    def import_words(self) -> frozenset[str]:
        """Every name part of its imports (a quick test of whether it may import a file)."""
        return import_words(self.imports)

    @property
    def huge(self) -> bool:
        """Whether the file is too large to read into a prompt at all."""
        return self.size > HUGE_BYTES

    def to_json(self) -> list[Any]:
        """Return the facts as a compact JSON list."""
        return [self.size, self.binary, list(self.defs), list(self.names), list(self.imports)]

    @classmethod
    def from_json(cls, row: list[Any]) -> Facts:
        """Return the facts :meth:`to_json` wrote."""
        size, binary, defs, names, imports = row
        return cls(int(size), bool(binary), tuple(defs), tuple(names), tuple(imports))


_memory: dict[str, Facts] = {}
_loaded: set[str] = set()
_lock = threading.Lock()


def blob_id(data: bytes) -> str:
    """Return git's blob id of ``data`` (what ``git hash-object`` prints)."""
    header = f"blob {len(data)}\0".encode()
    return hashlib.sha1(header + data, usedforsecurity=False).hexdigest()


def facts_of(path: str, data: bytes) -> Facts:
    """Work out the facts of ``path`` from its content."""
    if not is_text(data):
        return Facts(len(data), True)
    text = data.decode("utf-8")
    defs, names = definitions(path, text)
    return Facts(len(data), False, tuple(defs), tuple(names), tuple(imports_of(path, text)))


def _git(tree: Path, *args: str) -> str:
    proc = run_git(*args, cwd=tree)
    if proc.returncode != 0:
        raise WorkspaceError(f"git {' '.join(args)} failed in {tree}: {proc.stderr.strip()}")
    return str(proc.stdout)


def listing(tree: Path) -> tuple[dict[str, str], set[str], set[str]]:
    """Return tracked path -> blob id, the paths changed or new since, and those deleted.

    A tracked symbolic link is listed as changed: it is looked at afresh, never by its blob.
    """
    blobs: dict[str, str] = {}
    links: set[str] = set()
    for entry in _git(tree, "ls-files", "-s", "-z").split("\0"):
        meta, _, path = entry.partition("\t")
        if path and not meta.startswith("160000"):  # a gitlink is no file of this project
            blobs[path] = meta.split(" ", 2)[1]
            if meta.startswith("120000"):
                links.add(path)
    changed: set[str] = set()
    deleted: set[str] = set()
    records = _git(tree, "status", "--porcelain=v1", "-z", "--untracked-files=all").split("\0")
    skip = False
    for record in records:
        if skip or len(record) < 4:
            skip = False
            continue
        code, path = record[:2], record[3:]
        if code[0] in "RC":
            skip = True  # the next record is the old name
        (deleted if "D" in code else changed).add(path)
    return blobs, (changed | links) - deleted, deleted


def _load(meta: Path | None) -> None:
    if meta is None or str(meta) in _loaded:
        return
    _loaded.add(str(meta))
    try:
        data = json.loads((meta / CACHE_FILE).read_text(encoding="utf-8"))
        if data.get("version") == _VERSION:
            for blob, row in data["facts"].items():
                _memory.setdefault(blob, Facts.from_json(row))
    except (OSError, ValueError, KeyError, TypeError):
        pass  # no cache yet, or a torn one: it is rebuilt


def _save(meta: Path, blobs: set[str]) -> None:
    rows = {b: _memory[b].to_json() for b in sorted(blobs) if b in _memory}
    meta.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=meta, prefix=CACHE_FILE, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(json.dumps({"version": _VERSION, "facts": rows}, separators=(",", ":")))
    os.replace(tmp, meta / CACHE_FILE)


def _read(tree: Path, path: str) -> tuple[str, Facts]:
    target = tree / path
    if target.is_symlink():
        return "", Facts(0, True, link=True)
    if not target.is_file():
        return "", Facts(0, True)  # a special file is never read
    size = target.stat().st_size
    if size > HUGE_BYTES:
        return "", Facts(size, False)
    data = target.read_bytes()
    blob = blob_id(data)
    known = _memory.get(blob)  # a file changed back, or changed alike in another task
    return blob, known if known is not None else facts_of(path, data)


def project_facts(tree: Path, meta: Path | None = None) -> dict[str, Facts]:
    """Return path -> facts of every file of ``tree``, tracked or new, in path order.

    ``meta`` is the workspace's ``.oldnew`` folder, where the facts are cached by blob id.
    """
    blobs, changed, deleted = listing(tree)
    out: dict[str, Facts] = {}
    with _lock:
        _load(meta)
        if len(_memory) > _MAX_MEMORY:
            _memory.clear()
    fresh: dict[str, Facts] = {}
    for path in sorted({*blobs, *changed} - deleted):
        blob = blobs.get(path)
        facts = None if path in changed or blob is None else _memory.get(blob) or fresh.get(blob)
        if facts is None:
            read_blob, facts = _read(tree, path)
            # A clean tracked file is its index blob (whatever filters git applies).
            key = blob if path not in changed and blob else read_blob
            if key and key not in _memory:
                fresh[key] = facts
        out[path] = facts
    if fresh:
        with _lock:
            _memory.update(fresh)
            if meta is not None:
                _save(meta, set(blobs.values()) | set(fresh))
    return out


def forget() -> None:
    """Drop the facts kept in memory (the disk cache stays), as a new process starts."""
    with _lock:
        _memory.clear()
        _loaded.clear()
