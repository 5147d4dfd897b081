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
    ids = list(task_ids)
    found = ws.find_task_commits(ids)
    commits = [found[t] for t in ids if t in found]
    if not commits:
        return []
    # One git for all of them: each commit's files, in the order the commits are given.
    args = ("diff-tree", "--stdin", "--root", "--no-commit-id", "--name-only", "-r", "-z")
    stdin = "".join(f"{c}\n" for c in commits).encode()
    proc = run_git(*args, cwd=ws.root, options=ws.git_options, text=False, input=stdin)
    if proc.returncode != 0:
        return []  # a commit git cannot show: the map still lists the files
    out: dict[str, None] = {}
    for raw in bytes(proc.stdout).split(b"\0"):
        # A name that is not UTF-8 is escaped as the index lists it (and not read).
        name = raw.decode("utf-8", "backslashreplace")
        if name:
            out[name] = None
    return list(out)
