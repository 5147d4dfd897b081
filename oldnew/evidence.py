"""The index of a run's evidence: passed validations by reuse key, evidence numbers by task.

Evidence files (``.oldnew/evidence/<name>.json``) are never rewritten; the index beside them
answers the two questions every task asks without reading them all:

    .oldnew/evidence-index/
        keys/<reuse key>    the name of the first passed validation (not itself a reuse)
        tasks/<task id>     the highest evidence number the task has used (``T3-04``: 4)
        state.json          the evidence folder's mtime when the index last matched it

Recording writes the index entries first, then the evidence file, then ``state.json``. A
process killed after the entries leaves a key naming a file that is not there (a lookup reads
the file anyway: it is a miss) or a number skipped; one killed before ``state.json`` leaves a
folder whose mtime the index does not know, as does evidence written by an earlier release (or
any other writer): the index is then rebuilt from the files, once, by the next lookup. A
missing or unreadable index is rebuilt the same way.

One filesystem caveat: on a filesystem whose mtimes are coarser than a write (1 s), a file
another writer adds in the same second after ours goes unseen until the next change.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any
from urllib.parse import quote

INDEX = "evidence-index"
FOLDER = "evidence"
_VERSION = 1
_NUMBERED = re.compile(r"^(?P<task>.+)-(?P<n>\d+)$")
_locks: dict[str, threading.RLock] = {}
_known: dict[str, tuple[int, int]] = {}
"""Evidence folder -> its mtime and the index state's when this process last found them to
match (a change of either, or a state file gone, is looked into again)."""


def _lock(meta: Path) -> threading.RLock:
    return _locks.setdefault(str(meta), threading.RLock())


def _entry(name: str) -> str:
    return quote(name, safe="")


def _write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (a kill leaves the old content or the new)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None


def task_number(name: str) -> tuple[str, int] | None:
    """Return the task and number of an evidence name (``T3-04``: T3, 4), or None."""
    match = _NUMBERED.match(name)
    return (match["task"], int(match["n"])) if match else None


def reusable(data: dict[str, Any]) -> bool:
    """Whether recorded evidence can be reused: it passed, and is no reuse itself."""
    return bool(data.get("reuse_key") and data.get("passed") and not data.get("reused_from"))


class EvidenceIndex:
    """The evidence index of one workspace's ``.oldnew`` folder (safe across its threads)."""

    def __init__(self, meta: Path) -> None:
        """Index ``meta``/evidence in ``meta``/evidence-index."""
        self.folder = meta / FOLDER
        self.root = meta / INDEX
        self.lock = _lock(meta)

    def _mtime(self) -> int:
        try:
            return self.folder.stat().st_mtime_ns
        except FileNotFoundError:
            return 0

    def _seen(self) -> tuple[int, int]:
        """Return the mtimes of the evidence folder and of the index's state (0: missing)."""
        try:
            state = (self.root / "state.json").stat().st_mtime_ns
        except FileNotFoundError:
            state = 0
        return self._mtime(), state

    def _current(self) -> None:
        """Rebuild the index unless it matches the evidence folder (two stats when it does)."""
        seen = _known.get(str(self.folder))
        if seen is not None and seen == self._seen() and seen[1]:
            return
        with self.lock:
            mtime = self._mtime()  # again: a recording may have ended while this waited
            state = _read(self.root / "state.json")
            try:
                recorded = json.loads(state) if state else None
            except ValueError:
                recorded = None
            if recorded != {"version": _VERSION, "mtime_ns": mtime}:
                self.rebuild()
            _known[str(self.folder)] = self._seen()

    def rebuild(self) -> None:
        """Index every evidence file afresh (what a missing or stale index costs, once)."""
        with self.lock:
            shutil.rmtree(self.root, ignore_errors=True)
            keys: dict[str, str] = {}
            tasks: dict[str, int] = {}
            for path in sorted(self.folder.glob("*.json")) if self.folder.is_dir() else []:
                numbered = task_number(path.stem)
                if numbered is not None:
                    tasks[numbered[0]] = max(tasks.get(numbered[0], 0), numbered[1])
                try:
                    data = json.loads(path.read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    continue
                if isinstance(data, dict) and reusable(data):
                    keys.setdefault(str(data["reuse_key"]), path.stem)
            for key, name in keys.items():
                _write(self.root / "keys" / _entry(key), name)
            for task, n in tasks.items():
                _write(self.root / "tasks" / _entry(task), str(n))
            self._matched()

    def _matched(self) -> None:
        mtime = self._mtime()
        _write(self.root / "state.json", json.dumps({"version": _VERSION, "mtime_ns": mtime}))
        _known[str(self.folder)] = self._seen()

    def record(self, name: str, data: dict[str, Any], write: Any) -> None:
        """Index evidence ``name`` (its ``data``), then call ``write()``, which writes its file."""
        with self.lock:
            self._current()
            key = str(data.get("reuse_key") or "")
            if reusable(data) and self.passed(key) is None:
                _write(self.root / "keys" / _entry(key), name)
            numbered = task_number(name)
            if numbered is not None and numbered[1] > self.used(numbered[0]):
                _write(self.root / "tasks" / _entry(numbered[0]), str(numbered[1]))
            write()
            self._matched()

    def passed(self, key: str) -> tuple[str, dict[str, Any]] | None:
        """Return the name and content of the passed validation recorded under ``key``."""
        self._current()
        name = _read(self.root / "keys" / _entry(key)) if key else None
        if not name:
            return None
        try:
            data = json.loads((self.folder / f"{name}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None  # indexed, then killed before its file was written: never recorded
        if not isinstance(data, dict) or data.get("reuse_key") != key or not reusable(data):
            return None
        return name, data

    def used(self, task: str) -> int:
        """Return the highest evidence number ``task`` has used (0: none yet)."""
        self._current()
        text = _read(self.root / "tasks" / _entry(task))
        return int(text) if text and text.isdigit() else 0

    def next_name(self, task: str) -> str:
        """Return the name of ``task``'s next evidence file (``T3-05``), never one in use."""
        n = self.used(task) + 1
        while (self.folder / f"{task}-{n:02d}.json").exists():
            n += 1  # written by a writer the index has not seen yet
        return f"{task}-{n:02d}"

    def names(self, task: str) -> list[str]:
        """Return the names of ``task``'s evidence files there are, newest first."""
        found = [f"{task}-{n:02d}" for n in range(self.used(task), 0, -1)]
        return [n for n in found if (self.folder / f"{n}.json").is_file()]
