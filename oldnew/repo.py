"""A person's own git repository as the place a run works in (``--workspace REPO``).

A run on an existing repository never touches the person's checkout: it works on a branch of
its own, ``oldnew/<run id>``, made from the repository's HEAD, checked out as a linked worktree
inside the repository's git folder, with the run's records beside it::

    <git dir>/oldnew/<run id>/            the run's checkout of branch oldnew/<run id>
    <git dir>/oldnew/<run id>/.oldnew/    its records (checkpoints, events, evidence, report)
    <git dir>/oldnew/creating-<id>.json   a creation not finished yet (a kill is cleared later)

Nothing in the person's checkout, index or uncommitted changes is read or written; git's own
bookkeeping of the worktree and the branches (``<git dir>/worktrees/``, ``refs/heads/oldnew/``)
is all the repository gains. Ignore rules and merge attributes of the run are passed on git's
command line (``Workspace.git``), never written to the repository's ``info/`` files.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from oldnew.errors import WorkspaceError
from oldnew.locks import exclusive
from oldnew.safegit import run_git

HOME = "oldnew"
"""The folder in the repository's git folder that holds the runs made on it."""

_IN_PROGRESS = {
    "MERGE_HEAD": ("a merge", "git merge --continue' or 'git merge --abort"),
    "rebase-merge": ("a rebase", "git rebase --continue' or 'git rebase --abort"),
    "rebase-apply": ("a rebase or am", "git rebase --abort' or 'git am --abort"),
    "CHERRY_PICK_HEAD": ("a cherry-pick", "git cherry-pick --continue' or '--abort"),
    "REVERT_HEAD": ("a revert", "git revert --continue' or 'git revert --abort"),
    "BISECT_LOG": ("a bisect", "git bisect reset"),
}
"""Operations a repository can be in the middle of (a file in its git folder), and the way out."""


@dataclass(frozen=True)
class Repo:
    """The person's repository as a run finds it (read, never written)."""

    top: Path | None
    """The checkout the person passed; None for a bare repository."""
    git_dir: Path
    """The repository's common git folder (a linked worktree's is its main repository's)."""
    head: str
    """The commit HEAD points at: the run's branch starts there."""
    branch: str | None
    """The branch checked out, or None when HEAD is detached (or the repository is bare)."""

    @property
    def home(self) -> Path:
        """The folder holding the runs made on this repository."""
        return self.git_dir / HOME

    def describe(self) -> str:
        """Return what the person is told when a run starts on the repository."""
        where = f"branch {self.branch}" if self.branch else f"detached HEAD {self.head[:12]}"
        if self.top is None:
            where = f"HEAD ({self.branch or self.head[:12]}) of the bare repository"
        text = f"working on {self.top or self.git_dir} from {where} ({self.head[:12]})"
        dirty = self.changes()
        if dirty:
            text += (
                f"; its checkout has {dirty} uncommitted change(s): oldnew neither reads "
                "nor changes them, and works from the last commit only"
            )
        return text

    def changes(self) -> int:
        """Return how many paths of the checkout differ from HEAD (counted, never read)."""
        if self.top is None:
            return 0
        out = _git(self.top, "status", "--porcelain=v1", "-z", "--untracked-files=normal")
        entries = (out or "").split("\0")
        count, i = 0, 0
        while i < len(entries):
            entry, i = entries[i], i + 1
            if entry[:2].strip():
                count += 1
                i += entry[0] in "RC"  # a rename or copy names its source next: skip it
        return count


def _git(path: Path, *args: str) -> str | None:
    proc = run_git(*args, cwd=path, discover=True)
    return str(proc.stdout).strip() if proc.returncode == 0 else None


def find(path: Path) -> Repo | None:
    """Return the repository at ``path``, or None when ``path`` is for a new project.

    A new project is a missing or empty directory (even inside another repository), or one
    holding a run (``.oldnew/run.json``, or a creation's journal). Anything else must be a
    repository's top folder (or a bare repository).

    Raises:
        WorkspaceError: ``path`` is a folder inside a repository or its git folder, a
            non-empty directory that is no repository, a repository with no commit (or on
            a branch with none), one tracking a ``.oldnew/`` of its own, or one in the middle
            of a merge, rebase, cherry-pick, revert or bisect. Each says what to do.

    """
    if not path.is_dir():
        return None
    names = {p.name for p in path.iterdir()}
    meta = path / ".oldnew"
    if not names or (meta / "run.json").is_file() or (meta / "creating.json").is_file():
        return None
    if _git(path, "rev-parse", "--is-inside-git-dir") == "true":
        outer = _git(path, "rev-parse", "--path-format=absolute", "--git-common-dir")
        if outer and Path(outer).resolve() != path.resolve():
            raise WorkspaceError(
                f"{path} is inside the git folder {outer}: pass the repository itself "
                f"(--workspace {Path(outer).parent})"
            )
    bare = _git(path, "rev-parse", "--is-bare-repository")
    if bare is None and names == {".oldnew"}:
        return None  # a creation killed before its journal: the workspace decides
    if bare is None:
        raise WorkspaceError(
            f"{path} is not empty and is not a git repository: oldnew writes a new project "
            "into a new or empty directory, or works on a branch of an existing git "
            f"repository (make it one first: git -C {path} init && git -C {path} add -A && "
            f"git -C {path} commit -m start)"
        )
    top, common = _top(path, bare == "true")
    shown = top or common
    _refuse_in_progress(path, shown)
    if ".oldnew" in names:
        raise WorkspaceError(
            f"the repository {shown} has a .oldnew/ folder of its own, the name oldnew "
            "keeps its records under: rename that folder (git mv .oldnew <other name>, then "
            "commit), then start the run"
        )
    head, branch = _start(path, shown)
    return Repo(top=top, git_dir=common.resolve(), head=head, branch=branch)


def _top(path: Path, bare: bool) -> tuple[Path | None, Path]:
    """Return the repository's checkout (None when bare) and its common git folder."""
    common = Path(_git(path, "rev-parse", "--path-format=absolute", "--git-common-dir") or "")
    if bare:
        if common.resolve() != path.resolve():
            raise WorkspaceError(f"{path} is inside the bare repository {common}; pass that")
        return None, common
    top = Path(_git(path, "rev-parse", "--show-toplevel") or path)
    if top.resolve() != path.resolve():
        raise WorkspaceError(
            f"{path} is a folder inside the git repository {top}: oldnew works on a whole "
            f"repository, on a branch of its own; pass --workspace {top} (and say in the "
            "scope which folder the work is about)"
        )
    return top, common


def _start(path: Path, shown: Path) -> tuple[str, str | None]:
    """Return the commit HEAD points at and the branch checked out (None when detached)."""
    head = _git(path, "rev-parse", "--verify", "-q", "HEAD^{commit}")
    branch = _git(path, "symbolic-ref", "-q", "--short", "HEAD")
    if not head and _git(path, "rev-list", "-n", "1", "--all"):
        raise WorkspaceError(
            f"the repository {shown} is on branch {branch}, which has no commit yet: "
            "switch to a branch with commits (git switch <branch>), or commit on this one"
        )
    if not head:
        raise WorkspaceError(
            f"the repository {shown} has no commit yet: commit what it holds first "
            "(git add -A && git commit -m start), or start the project in an empty directory"
        )
    return head, branch


def _refuse_in_progress(path: Path, shown: Path) -> None:
    for name, (what, way_out) in _IN_PROGRESS.items():
        marker = _git(path, "rev-parse", "--path-format=absolute", "--git-path", name)
        if marker and Path(marker).exists():
            raise WorkspaceError(
                f"the repository {shown} is in the middle of {what}: finish it first "
                f"('{way_out}'), then start the run; oldnew branches from a finished commit"
            )


def check_branch_name(path: Path, branch: str) -> None:
    """Raise WorkspaceError unless the run's branches can be made: ``branch`` and its tasks'.

    The run makes ``<branch>``, and ``<branch>-<task>`` while tasks work; none may exist
    already, nor a branch named like one of their folders (git cannot have both).
    """
    if _git(path, "check-ref-format", f"refs/heads/{branch}-T1") is None:
        raise WorkspaceError(f"{branch!r} is not a valid git branch name; use another run id")
    parts = branch.split("/")
    for depth in range(1, len(parts)):
        folder = "/".join(parts[:depth])
        if _git(path, "rev-parse", "--verify", "-q", f"refs/heads/{folder}") is not None:
            raise WorkspaceError(
                f"the repository has a branch {folder!r}, so git cannot make {branch!r} "
                f"beside it: rename yours (git branch -m {folder} {folder}-old), then start "
                "the run"
            )
    refs = _git(path, "for-each-ref", "--format=%(refname)", f"refs/heads/{parts[0]}/") or ""
    names = [r.removeprefix("refs/heads/") for r in refs.splitlines()]
    clash = [b for b in names if b == branch or b.startswith(f"{branch}-")]
    if clash:
        raise WorkspaceError(
            f"the repository already has the branch {clash[0]!r}, a name this run would use: "
            "delete or rename it, or start the run with another id"
        )


@contextmanager
def home_lock(repo: Repo) -> Iterator[None]:
    """Hold the repository's run folder while a run is made on it (made in well under 1 s)."""
    with exclusive(repo.home / "lock"):
        yield


def journal_path(repo: Repo, run_id: str) -> Path:
    """Return the journal of a run being made on ``repo`` (removed once it is made)."""
    return repo.home / f"creating-{run_id}.json"


def clear_killed_creations(repo: Repo, cwd: Path) -> list[str]:
    """Remove what a creation killed half-way left (its worktree, its branch if unmoved).

    Call holding :func:`home_lock`: then every journal left is a dead creation's, and nothing
    on its branch is anyone's work unless the branch moved past its start (then it is kept).
    """
    cleared = []
    for journal in sorted(repo.home.glob("creating-*.json")):
        try:
            data = json.loads(journal.read_text(encoding="utf-8"))
            run_id, base = str(data["run_id"]), str(data["base"])
        except (OSError, ValueError, KeyError):
            journal.unlink(missing_ok=True)
            continue
        root = repo.home / run_id
        if not (root / ".oldnew" / "run.json").is_file():
            run_git("worktree", "remove", "--force", str(root), cwd=cwd)
            shutil.rmtree(root, ignore_errors=True)
            forget_worktree(repo.git_dir, root)
            tip = _git(cwd, "rev-parse", "--verify", "-q", f"refs/heads/oldnew/{run_id}")
            if tip == base:
                run_git("branch", "-q", "-D", f"oldnew/{run_id}", cwd=cwd)
            cleared.append(run_id)
        journal.unlink(missing_ok=True)
    return cleared


def forget_worktree(git_dir: Path, path: Path) -> None:
    """Drop git's record of the worktree at ``path`` once its folder is gone; only that one.

    ``git worktree prune`` would drop every worktree whose folder is missing, the person's
    too (one on a drive not mounted right now): oldnew never runs it on their repository.
    """
    target = str(path / ".git")
    for record in (git_dir / "worktrees").glob("*/gitdir"):
        try:
            points = record.read_text(encoding="utf-8").strip()
        except OSError:
            continue
        if points == target and not path.exists():
            shutil.rmtree(record.parent, ignore_errors=True)


def runs_on(path: Path) -> list[Path]:
    """Return the run folders made on the repository at ``path``, oldest first.

    Empty when ``path`` is no repository (or one without runs).
    """
    if not path.is_dir() or (path / ".oldnew").exists():
        return []
    common = _git(path, "rev-parse", "--path-format=absolute", "--git-common-dir")
    if common is None:
        return []
    home = Path(common) / HOME
    found = []
    for record in home.glob("*/.oldnew/run.json"):
        try:
            created = str(json.loads(record.read_text(encoding="utf-8")).get("created", ""))
        except (OSError, ValueError):
            created = ""
        found.append((created, record.parent.parent))
    return [root for _, root in sorted(found)]
