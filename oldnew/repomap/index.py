"""The project's files as the context sees them, cached by git blob id.

One ``git ls-files --stage`` gives every tracked file and its blob id, and tags the files
changed or added since; a file's facts (size, text or binary, definitions, imports)
are worked out once per blob and kind of file (the same bytes in a ``.txt`` and a ``.py``
have different facts) and kept in memory and in ``.oldnew/repomap-cache.json``, so a
second call on a 5,000-file project reads almost nothing from disk. A cache that does not
read as this module wrote it is ignored (started afresh), never trusted or fatal.

Git's output is read as bytes: a file whose name is not UTF-8 is listed by an escaped name
(``name not UTF-8: not shown``), never read, and never stops the context.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import threading
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from oldnew.errors import WorkspaceError
from oldnew.repomap.imports import import_words, imports_of
from oldnew.repomap.symbols import definitions, kind
from oldnew.safegit import run_git
from oldnew.sandbox.files import SKIP_DIRS
from oldnew.supporting import is_text

HUGE_BYTES = 256_000
"""A file larger than this is never read for the context: it is listed with its size."""
CACHE_FILE = "repomap-cache.json"
_VERSION = 2
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
    odd_name: str = ""
    """Why the name cannot be pasted (not UTF-8, control characters): listed escaped, never
    read, never cached."""
    latin: bool = False
    """Text that is not UTF-8 (Latin-1, say): listed as such, not as binary."""

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
        return [
            self.size,
            self.binary,
            list(self.defs),
            list(self.names),
            list(self.imports),
            self.latin,
        ]

    @classmethod
    def from_json(cls, row: Any) -> Facts:
        """Return the facts :meth:`to_json` wrote; ValueError for anything else."""
        if not isinstance(row, list) or len(row) != 6:
            raise ValueError("a cache row is not a list of six")
        size, binary, defs, names, imports, latin = row
        if type(size) is not int or size < 0 or type(binary) is not bool or type(latin) is not bool:
            raise ValueError("a cache row's size or kind is not what was written")
        for part in (defs, names, imports):
            if not isinstance(part, list):
                raise ValueError("a cache row's lists are not lists")
            try:
                "".join(part)  # a TypeError for anything but text, at C speed
            except TypeError:
                raise ValueError("a cache row's lists are not lists of text") from None
        return cls(size, binary, tuple(defs), tuple(names), tuple(imports), latin=latin)


_memory: dict[str, Facts] = {}
_loaded: set[str] = set()
_lock = threading.Lock()


def blob_id(data: bytes) -> str:
    """Return git's blob id of ``data`` (what ``git hash-object`` prints)."""
    header = f"blob {len(data)}\0".encode()
    return hashlib.sha1(header + data, usedforsecurity=False).hexdigest()


def cache_key(blob: str, path: str) -> str:
    """Return the key of a file's facts: its blob and its kind (what the outline reads)."""
    return f"{blob}:{kind(path)}"


def facts_of(path: str, data: bytes) -> Facts:
    """Work out the facts of ``path`` from its content."""
    if not is_text(data):
        latin = b"\0" not in data[:8192]
        return Facts(len(data), True, latin=latin)
    text = data.decode("utf-8")
    defs, names = definitions(path, text)
    return Facts(len(data), False, tuple(defs), tuple(names), tuple(imports_of(path, text)))


def _git(tree: Path, *args: str) -> list[bytes]:
    """Return the NUL-separated records of ``git <args>`` (run with ``-z``), as bytes."""
    proc = run_git(*args, cwd=tree, text=False)
    if proc.returncode != 0:
        stderr = bytes(proc.stderr).decode("utf-8", "replace").strip()
        raise WorkspaceError(f"git {' '.join(args)} failed in {tree}: {stderr}")
    return bytes(proc.stdout).split(b"\0")


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
NOT_UTF8 = "name not UTF-8"
CONTROL = "name with control characters"


def _name(raw: bytes, odd: dict[str, str]) -> str:
    """Return ``raw`` as a path; an odd name comes escaped, added to ``odd`` with why."""
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError:
        name = raw.decode("utf-8", "backslashreplace")
        odd[name] = NOT_UTF8
        return name
    if _CONTROL.search(name):
        escaped = name.encode("unicode_escape").decode("ascii")
        odd[escaped] = CONTROL  # a newline in a name would break the prompt's lines
        return escaped
    return name


def listing(tree: Path) -> tuple[dict[str, str], set[str], set[str], dict[str, str]]:
    """Return tracked path -> blob id, the paths changed or new since, deleted, and odd.

    One ``git ls-files --stage`` that also tags the files changed on disk since the index
    (``-m``: by their stat data, their content where that cannot tell), deleted (``-d``) and
    new ones git does not ignore (``-o``): a staged file is its index blob, never read again.
    Odd names (escaped as they are listed) are those that are not UTF-8 or hold control
    characters, with why.

    A tracked symbolic link is listed as changed: it is looked at afresh, never by its blob.
    A file staged for removal that is still on disk is a new file, not a deleted one.
    """
    blobs: dict[str, str] = {}
    links: set[str] = set()  # and unmerged files: looked at afresh
    odd: dict[str, str] = {}
    changed: set[str] = set()
    deleted: set[str] = set()
    args = ("ls-files", "-z", "-t", "--stage", "-m", "-d", "-o", "--exclude-standard")
    for entry in _git(tree, *args):
        tag, _, rest = entry.partition(b" ")
        if tag == b"?":
            changed.add(_name(rest, odd))
            continue
        meta, _, raw = rest.partition(b"\t")
        if not raw or meta.startswith(b"160000"):  # a gitlink is no file of this project
            continue
        path = _name(raw, odd)
        if tag == b"H" or tag == b"M":  # cached (M: unmerged, one line a stage: read afresh)
            blobs[path] = meta.split(b" ", 2)[1].decode("ascii")
            if meta.startswith(b"120000") or tag == b"M":
                links.add(path)
        elif tag == b"R":
            deleted.add(path)
        else:
            changed.add(path)  # C: changed on disk since the index; K: in the way
    deleted = {p for p in deleted if p in odd or not os.path.lexists(tree / p)}
    # What the sandbox never holds is no file of the project's either: oldnew's records (a
    # run's checkout on a person's repository holds .oldnew/), environments, caches.
    blobs = {p: b for p, b in blobs.items() if not _skipped(p)}
    changed = {p for p in changed | links if not _skipped(p)}
    return blobs, changed - deleted, deleted, odd


def _skipped(path: str) -> bool:
    return not SKIP_DIRS.isdisjoint(path.split("/"))  # as ``sandbox.files.project_files``


def _read_cache(path: Path) -> dict[str, Facts]:
    """Return the facts the cache file at ``path`` holds; none if it is not as written."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("version") != _VERSION:
            return {}
        rows = data.get("facts")
        if not isinstance(rows, dict):
            return {}
        return {str(key): Facts.from_json(row) for key, row in rows.items()}
    except (OSError, ValueError, RecursionError, MemoryError):
        return {}  # no cache yet, a torn or an odd one: it is started afresh


def _load(meta: Path | None) -> None:
    if meta is None or str(meta) in _loaded:
        return
    _loaded.add(str(meta))
    for key, facts in _read_cache(meta / CACHE_FILE).items():
        _memory.setdefault(key, facts)


def _save(meta: Path, blobs: set[str]) -> None:
    rows = {b: _memory[b].to_json() for b in sorted(blobs) if b in _memory}
    meta.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=meta, prefix=CACHE_FILE, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(json.dumps({"version": _VERSION, "facts": rows}, separators=(",", ":")))
    os.replace(tmp, meta / CACHE_FILE)


def _read(tree: Path, path: str) -> tuple[str, Facts]:
    """Return the file's cache key (none for a file never cached) and its facts."""
    target = tree / path
    if target.is_symlink():
        return "", Facts(0, True, link=True)
    if not target.is_file():
        return "", Facts(0, True)  # a special file is never read
    size = target.stat().st_size
    if size > HUGE_BYTES:
        return "", Facts(size, False)
    data = target.read_bytes()
    key = cache_key(blob_id(data), path)
    known = _memory.get(key)  # a file changed back, or changed alike in another task
    return key, known if known is not None else facts_of(path, data)


def project_facts(tree: Path, meta: Path | None = None) -> dict[str, Facts]:
    """Return path -> facts of every file of ``tree``, tracked or new, in path order.

    ``meta`` is the workspace's ``.oldnew`` folder, where the facts are cached by blob id.
    """
    blobs, changed, deleted, odd = listing(tree)
    out: dict[str, Facts] = {}
    with _lock:
        _load(meta)
        if len(_memory) > _MAX_MEMORY:
            _memory.clear()
    fresh: dict[str, Facts] = {}
    keys: set[str] = set()
    for path in sorted({*blobs, *changed} - deleted):
        if path in odd:
            out[path] = Facts(0, True, odd_name=odd[path])
            continue
        blob = blobs.get(path)
        key = cache_key(blob, path) if blob and path not in changed else ""
        facts = _memory.get(key) or fresh.get(key) if key else None
        if facts is None:
            read_key, facts = _read(tree, path)
            # A clean tracked file is its index blob (whatever filters git applies).
            key = key or read_key
            if key and key not in _memory:
                fresh[key] = facts
        if key:
            keys.add(key)
        out[path] = facts
    if fresh:
        with _lock:
            _memory.update(fresh)
            if meta is not None:
                _save(meta, keys | set(fresh))
    return out


def forget() -> None:
    """Drop the facts kept in memory (the disk cache stays), as a new process starts."""
    with _lock:
        _memory.clear()
        _loaded.clear()
