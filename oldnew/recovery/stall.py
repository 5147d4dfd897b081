"""Stall detection: a task that fails the same way twice is stuck, not nearly there.

Every failed validation leaves a small record: a fingerprint of its errors (each diagnostic
without its line number, so moving code around does not count as progress) and one of the
files it validated. Same errors or same files as the previous failed round means the last fix
changed nothing; more fix rounds would loop. The task then gets ONE fresh
regeneration from scratch (its worktree reset to main, the coder told why the last approach
failed), and after that it escalates.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from oldnew.workspace import Workspace

_LINE = re.compile(r"^([^\n]*?):\d+:")
_HEX = re.compile(r"\b0x[0-9a-fA-F]+\b")

REGENERATIONS = 1
"""Fresh regenerations a task gets before it escalates (repair studies: one helps, more do not)."""


def error_fingerprint(diagnostics: list[str], failed_gates: list[str]) -> str:
    """Return a short hash of what failed: the gates and each diagnostic but its line number.

    Values stay in: ``assert -1 == 5`` then ``assert 1 == 5`` is a fix that changed the
    outcome, not a repeat. Memory addresses, which differ from run to run, are left out.
    """
    keys = set()
    for line in diagnostics:
        keys.add(_HEX.sub("<hex>", _LINE.sub(r"\1:", line, count=1)))
    raw = "\n".join([*sorted(failed_gates), "--", *sorted(keys)])
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Round:
    """What one failed validation looked like, in two fingerprints."""

    errors: str
    files: str

    def to_dict(self) -> dict[str, str]:
        """Return the record kept in task state."""
        return {"errors": self.errors, "files": self.files}


def stuck_reason(previous: dict[str, Any] | None, current: Round) -> str | None:
    """Say why ``current`` repeats ``previous`` (the last failed round), or None if it does not."""
    if not previous:
        return None
    if previous.get("errors") == current.errors:
        return "the same errors as the round before"
    if current.files and previous.get("files") == current.files:
        return "the fix changed no file that is validated"
    return None


def fresh_start_note(reason: str, diagnostics: list[str], limit: int = 5) -> str:
    """Return what the coder is told when its task starts over: why the last approach failed."""
    shown = "; ".join(diagnostics[:limit]) or "no parsed diagnostics"
    return f"{reason}. The errors it ended with: {shown}"


def reset_worktree(ws: Workspace, task_id: str) -> None:
    """Put the task's worktree back to ``main``: every file the task wrote is discarded."""
    tree = ws.worktree(task_id)
    ws.git("reset", "-q", "--hard", ws.branch, cwd=tree)
    ws.git("clean", "-q", "-fdx", cwd=tree)


def keep_partial(ws: Workspace, task_id: str, title: str, reason: str) -> str | None:
    """Save the task's worktree as a commit on ``ws.partial_branch``; return the branch.

    ``main`` and the worktree's own branch do not move. Returns None when the task wrote
    nothing (or has no worktree).
    """
    path = ws.meta / "worktrees" / task_id
    if not (path / ".git").exists():
        return None
    ws.git("add", "-A", cwd=path)
    tree = ws.git("write-tree", cwd=path)
    base = ws.git("rev-parse", "HEAD", cwd=path)
    if tree == ws.git("rev-parse", "HEAD^{tree}", cwd=path):
        return None
    message = f"partial: {title}\n\n{reason}\n\nOldnew-Partial: {task_id}\n"
    commit = ws.git("commit-tree", tree, "-p", base, "-m", message, cwd=path)
    branch = ws.partial_branch(task_id)
    ws.git("branch", "-f", branch, commit)
    return branch
