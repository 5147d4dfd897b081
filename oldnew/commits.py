"""Which commit on the run's branch delivered each task: an index by ``Oldnew-Task:`` trailer.

The index is a journal, ``.oldnew/task-commits.jsonl``, kept with the branch head it is
true for. Each line says which commits the head gained since the line before::

    {"version": 1, "branch": "main", "from": null, "head": "<sha>", "tasks": {"T1": "<sha>"}}
    {"version": 1, "branch": "main", "from": "<sha>", "head": "<sha2>", "tasks": {"T2": ...}}

A lookup asks git for the branch's head (one process), and when it moved, for only the
commits since the indexed head (``git log --boundary <old>..<head>``: the old head must be
one of that walk's boundary commits, or the branch moved back or sideways, a fork, and the
index is made again from the whole history). So the
index is right whatever happened between main moving and the index being written (a kill in
between leaves an older head: the next lookup walks the commits since). A torn last line
(a kill mid-append) is ignored; a journal whose lines do not chain is made again.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

JOURNAL = "task-commits.jsonl"
TRAILER = "Oldnew-Task: "
_VERSION = 1

Git = Callable[..., str]
"""Runs ``git <args>`` in the workspace and returns stdout (``Workspace.git``)."""


@dataclass
class _Known:
    head: str = ""
    tasks: dict[str, str] = field(default_factory=dict)


_known: dict[tuple[str, str], _Known] = {}
_locks: dict[str, threading.Lock] = {}


def trailers(records: list[str]) -> tuple[list[str], list[str], dict[str, str]]:
    """Return the commits, the boundary commits and task -> commit of ``git log`` records.

    ``records`` are ``%m%H``, a newline and ``%B``, newest first; a task delivered twice
    maps to its newest commit.
    """
    included: list[str] = []
    boundary: list[str] = []
    tasks: dict[str, str] = {}
    for record in reversed(records):
        head, _, body = record.strip("\n").partition("\n")
        if len(head) < 2:
            continue
        mark, sha = head[0], head[1:]
        if mark == "-":
            boundary.append(sha)
            continue
        included.append(sha)
        for line in body.splitlines():
            if line.startswith(TRAILER) and line[len(TRAILER) :].strip():
                tasks[line[len(TRAILER) :].strip()] = sha
    return included[::-1], boundary, tasks


class TaskCommits:
    """The trailer index of one workspace's branch."""

    def __init__(self, meta: Path, branch: str, git: Git) -> None:
        """Index ``branch`` with ``git``; the journal lives in ``meta``."""
        self.path = meta / JOURNAL
        self.branch = branch
        self.git = git
        self.key = (str(meta), branch)
        self.lock = _locks.setdefault(str(meta), threading.Lock())

    def find(self, task_id: str) -> str | None:
        """Return the commit on the branch that delivered ``task_id``, if there is one."""
        return self.find_all([task_id]).get(task_id)

    def find_all(self, task_ids: list[str]) -> dict[str, str]:
        """Return task -> commit on the branch for those of ``task_ids`` delivered."""
        with self.lock:
            known = _known.get(self.key) or self._load()
            known = self._caught_up(known)
            _known[self.key] = known
            return {t: known.tasks[t] for t in task_ids if t in known.tasks}

    def _caught_up(self, known: _Known) -> _Known:
        """Return ``known`` brought up to the branch's head: one git when it has not moved."""
        head = self.git("rev-parse", self.branch)
        if not known.head:
            return self._rebuild(head)
        if head == known.head:
            return known
        out = self.git(
            *("log", "-z", "--boundary", "--format=%m%H%n%B"),
            f"{known.head}..{head}",
            check=False,
        )
        included, boundary, tasks = trailers([r for r in out.split("\0") if r.strip()])
        if known.head not in boundary or head not in included:
            return self._rebuild(head)  # moved back or sideways (a fork), or history is odd
        self._append({"from": known.head, "head": head, "tasks": tasks})
        return _Known(head, {**known.tasks, **tasks})

    def _rebuild(self, head: str) -> _Known:
        """Index the history of ``head`` whole (a new journal, a fork, or one that is odd)."""
        out = self.git("log", "-z", "--format=%m%H%n%B", head)
        _, _, tasks = trailers([r for r in out.split("\0") if r.strip()])
        line = {"version": _VERSION, "branch": self.branch, "from": None, "head": head}
        self.path.parent.mkdir(parents=True, exist_ok=True)  # a checkout with no run record yet
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps({**line, "tasks": tasks}) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)
        return _Known(head, tasks)

    def _append(self, line: dict[str, Any]) -> None:
        entry = {"version": _VERSION, "branch": self.branch, **line}
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry) + "\n")

    def _load(self) -> _Known:
        """Return what the journal says (nothing when it is missing, odd or not this branch)."""
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            return _Known()
        known = _Known()
        for text in lines:
            try:
                line = json.loads(text)
            except ValueError:
                break  # a torn last line: what came before stands
            if not isinstance(line, dict) or line.get("version") != _VERSION:
                return _Known()
            if line.get("branch") != self.branch or not isinstance(line.get("tasks"), dict):
                return _Known()
            if line.get("from") is None:
                known = _Known(str(line["head"]), dict(line["tasks"]))
            elif line.get("from") == known.head:
                known = _Known(str(line["head"]), {**known.tasks, **line["tasks"]})
            else:
                return _Known()  # the lines do not chain: made again
        return known
