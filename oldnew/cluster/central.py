"""A task's work in progress, moved between machines through the central repository.

A task's files are uncommitted in its worktree until the merge queue takes them, and the
steps of one task (code, validate, fix on a worker; the merge queue on the run's holder) may
each run on another machine. At the end of each such step the worktree is saved as a
*snapshot*: a commit whose parent is the worktree's HEAD and whose tree is every file the
worktree holds (ignored files aside), pushed to ``refs/oldnew/<run>/tasks/<task>/<commit>``
and named in the task's row (``oldnew_tasks.snapshot``, written under the lease). The next
step, wherever it runs, puts the worktree back exactly: HEAD at the parent, the snapshot's
files staged. Never through shared disk.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from oldnew.errors import WorkspaceError
from oldnew.safegit import run_git
from oldnew.workspace import Workspace


def snapshot_ref(run_id: str, task_id: str, commit: str) -> str:
    """Return the central repository's ref that keeps one snapshot of a task.

    One ref per snapshot, never moved: a writer given up for dead that pushes late cannot
    take away the snapshot its successor made (the task's row names the one that counts).
    """
    return f"refs/oldnew/{run_id}/tasks/{task_id}/{commit}"


def _git(ws: Workspace, *args: str, cwd: Path, index: Path | None = None) -> str:
    proc = run_git(*args, cwd=cwd, options=ws.git_options, index=index)
    if proc.returncode != 0:
        raise WorkspaceError(f"git {args[0]} failed in {cwd}: {proc.stderr.strip()[-500:]}")
    return str(proc.stdout).strip()


def save_task(ws: Workspace, run_id: str, task_id: str) -> str:
    """Snapshot the task's worktree, push it to the central repository; return the commit.

    Raises:
        WorkspaceError: the central repository cannot be pushed to (the step is then
            retried from its start: the last snapshot pushed is intact).

    """
    tree = ws.worktree(task_id)
    with tempfile.TemporaryDirectory(prefix="oldnew-snapshot-") as tmp:
        index = Path(tmp) / "index"
        _git(ws, "add", "-A", cwd=tree, index=index)
        files = _git(ws, "write-tree", cwd=tree, index=index)
    head = _git(ws, "rev-parse", "HEAD", cwd=tree)
    message = f"oldnew: task {task_id} in progress"
    commit = _git(ws, "commit-tree", files, "-p", head, "-m", message, cwd=tree)
    ref = snapshot_ref(run_id, task_id, commit)
    ws.push_central(f"task {task_id}'s work", f"{commit}:{ref}")
    return commit


def load_task(ws: Workspace, run_id: str, task_id: str, snapshot: str | None) -> None:
    """Put the task's worktree at ``snapshot`` (None: fresh from main, as a new task's).

    Whatever this machine's worktree held before (an earlier try's files) is replaced.

    Raises:
        WorkspaceError: the snapshot cannot be fetched from the central repository.

    """
    tree = ws.worktree(task_id)
    branch = ws.task_branch(task_id)
    if snapshot is None:
        _git(ws, "checkout", "-q", "-f", "-B", branch, ws.branch, cwd=tree)
        _git(ws, "clean", "-q", "-fd", cwd=tree)
        return
    ref = snapshot_ref(run_id, task_id, snapshot)
    have = run_git("cat-file", "-e", f"{snapshot}^{{commit}}", cwd=ws.root)
    if have.returncode != 0:
        ws.fetch_central(f"task {task_id}'s work", f"+{ref}:{ref}")
    _git(ws, "checkout", "-q", "-f", "-B", branch, f"{snapshot}^", cwd=tree)
    _git(ws, "clean", "-q", "-fd", cwd=tree)
    _git(ws, "read-tree", "-u", "--reset", snapshot, cwd=tree)
