"""The files earlier tasks wrote: what a task builds on, from their commits on main."""

from __future__ import annotations

from collections.abc import Iterable

from oldnew.safegit import run_git
from oldnew.workspace import Workspace


def task_files(ws: Workspace, task_ids: Iterable[str]) -> list[str]:
    """Return the files the commits of ``task_ids`` touched, in task order, each once.

    A task with no commit yet (or one that changed nothing) adds none. Names are read as
    bytes: one that is not UTF-8 comes escaped, as :mod:`oldnew.repomap.index` lists it.
    """
    out: dict[str, None] = {}
    for task_id in task_ids:
        commit = ws.find_task_commit(task_id)
        if commit is None:
            continue
        args = ("diff-tree", "--root", "--no-commit-id", "--name-only", "-r", "-z", commit)
        proc = run_git(*args, cwd=ws.root, options=ws.git_options, text=False)
        if proc.returncode != 0:
            continue  # a commit git cannot show adds none; the map still lists its files
        for raw in bytes(proc.stdout).split(b"\0"):
            # A name that is not UTF-8 is escaped as the index lists it (and not read).
            name = raw.decode("utf-8", "backslashreplace")
            if name:
                out[name] = None
    return list(out)
