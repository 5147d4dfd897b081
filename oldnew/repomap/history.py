"""The files earlier tasks wrote: what a task builds on, from their commits on main."""

from __future__ import annotations

from collections.abc import Iterable

from oldnew.workspace import Workspace


def task_files(ws: Workspace, task_ids: Iterable[str]) -> list[str]:
    """Return the files the commits of ``task_ids`` touched, in task order, each once.

    A task with no commit yet (or one that changed nothing) adds none.
    """
    out: dict[str, None] = {}
    for task_id in task_ids:
        commit = ws.find_task_commit(task_id)
        if commit is None:
            continue
        names = ws.git("diff-tree", "--root", "--no-commit-id", "--name-only", "-r", "-z", commit)
        out.update(dict.fromkeys(p for p in names.split("\0") if p))
    return list(out)
