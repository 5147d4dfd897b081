"""The run's git workspace: path checks, one worktree per task, one commit per accepted task.

Layout of a workspace directory::

    <root>/                 the delivered project, branch ``main``
    <root>/.oldnew/         run metadata, ignored by the project's git
        run.json            run id and the settings it was started with
        creating.json       the journal of a creation not finished yet (killed half-way)
        checkpoints.sqlite  LangGraph checkpoints of the run and of every task
        events.jsonl        what happened, one JSON object a line
        evidence/           validation results, one file per run of the validator
        worktrees/<task>/   a task's private checkout while it is being worked on
        report.md, report.json

A task works in its own worktree on branch ``oldnew/<task>``, so parallel agents never share a
checkout. Accepting a task rebases its branch onto ``main`` and fast-forwards ``main``: one
commit per task, found again after a crash by its ``Oldnew-Task:`` trailer.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import sqlite3
import subprocess  # nosec B404 - only the type of a finished git process
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from oldnew import repo as repos
from oldnew.commits import TaskCommits
from oldnew.errors import PathViolation, RunLockedError, WorkspaceError
from oldnew.locks import exclusive
from oldnew.safegit import (
    CENTRAL_OPTIONS,
    control_part,
    looks_like_git_dir,
    nested_control_paths,
    run_central,
    run_git,
)

log = logging.getLogger(__name__)

META = ".oldnew"
MAIN = "main"
_IGNORED = f"{META}/\n__pycache__/\n*.pyc\n.pytest_cache/\n.ruff_cache/\n.mypy_cache/\n.coverage\n"
_merge_locks: dict[str, threading.RLock] = {}
_merge_held: dict[str, float] = {}
"""Workspace root -> seconds its merge lock was held in this process (``merge_held``)."""
_worktree_locks: dict[str, threading.RLock] = {}
CENTRAL_SEEN = "refs/oldnew/central"
"""The central repository's main as this clone last fetched or pushed it."""
DIVERGED = "refs/oldnew/diverged/"
"""Where main's commits that never reached the central repository are kept (``sync_main``)."""


def check_relative_path(path: str) -> PurePosixPath:
    """Return ``path`` as a clean relative path, or raise PathViolation saying why not."""
    text = path.strip()
    if not text:
        raise PathViolation("empty file path")
    if "\\" in text or "\0" in text:
        raise PathViolation(f"{text!r}: use forward slashes and no NUL bytes")
    pure = PurePosixPath(text)
    if pure.is_absolute() or (len(text) > 1 and text[1] == ":"):
        raise PathViolation(f"{text!r} is absolute; paths must be relative to the workspace")
    if ".." in pure.parts:
        raise PathViolation(f"{text!r} contains '..'; paths must stay inside the workspace")
    if pure.parts and pure.parts[0] == META:
        raise PathViolation(f"{text!r} points into {META}/, which only oldnew writes")
    control = control_part(pure.parts)
    if control is not None:
        raise PathViolation(_control_message(text, *control))
    return pure


def _control_message(path: str, part: str, kind: str) -> str:
    return (
        f"{path!r}: {part!r} is {kind}, which version control reads as its own settings "
        "and hooks (and may run commands from); write only the project's own files, "
        "without any .git, .gitmodules, .hg or .svn at any level"
    )


def _moved(proc: subprocess.CompletedProcess[Any]) -> bool:
    """Whether a push of main failed because another process moved main there (no retry)."""
    return "[rejected]" in proc.stdout


def resolve_inside(base: Path, path: str) -> Path:
    """Return the absolute target of ``path`` under ``base``; refuse symlinks that lead out.

    A path inside a nested repository (a folder below ``base`` that holds a ``.git``,
    another VCS's control folder, or is shaped like a git repository) is refused too: git
    would treat it as a submodule, or open it with its own config.
    """
    rel = check_relative_path(path)
    root = base.resolve()
    target = base / rel
    if target.is_symlink():
        raise PathViolation(f"{path!r} is a symlink; oldnew does not write through links")
    resolved = target.resolve()
    if resolved != root and root not in resolved.parents:
        raise PathViolation(f"{path!r} leads out of the workspace (to {resolved})")
    for depth in range(1, len(rel.parts)):
        folder = base.joinpath(*rel.parts[:depth])
        try:
            names = os.listdir(folder) if folder.is_dir() else []
        except OSError:
            continue
        control = control_part(names)
        if control is not None or looks_like_git_dir(names):
            held = f"{control[0]!r}, {control[1]}" if control else "HEAD, objects/ and refs/"
            raise PathViolation(
                f"{path!r} is inside {'/'.join(rel.parts[:depth])}/, a nested repository "
                f"(it holds {held}); oldnew keeps one repository: put the file elsewhere"
            )
    return target


def _refuse_git_dirs(base: Path, written: list[PurePosixPath]) -> None:
    """Refuse files that would give a folder the shape of a git repository."""
    children: dict[PurePosixPath, set[str]] = {}
    for rel in written:
        for parent, child in zip(rel.parents, [rel, *rel.parents], strict=False):
            children.setdefault(parent, set()).add(child.name)
    for folder, names in children.items():
        if folder == PurePosixPath("."):
            continue
        try:
            names |= set(os.listdir(base / folder)) if (base / folder).is_dir() else set()
        except OSError:
            pass
        if looks_like_git_dir(names):
            raise PathViolation(
                f"{folder}/ would hold HEAD, objects/ and refs/: git opens such a folder as "
                "a repository of its own and runs what its config names; give the folder "
                "another layout"
            )


def _index(base: Path, argv: list[str], paths: list[str]) -> None:
    """Run ``git <argv> -- <paths>`` on the index of the checkout ``base`` (none: nothing)."""
    if not paths:
        return
    proc = run_git(*argv, "--", *[str(check_relative_path(p)) for p in paths], cwd=base)
    if proc.returncode != 0:
        raise WorkspaceError(f"git {argv[0]} of the files written failed: {proc.stderr}")


class Workspace:
    """A run's workspace directory and the git operations the graph needs."""

    def __init__(self, root: Path | str) -> None:
        """Point at ``root``; use :meth:`create` or :meth:`open` to check it first."""
        self.root = Path(root).resolve()
        self.meta = self.root / META
        self.checkpoints = self.meta / "checkpoints.sqlite"
        """The SQLite file of the run's checkpoints (and, on a server, of its task threads)."""
        self._record: dict[str, Any] | None = None

    def _settings(self) -> dict[str, Any]:
        """Return run.json (read once it exists), or {} before the run is made."""
        if self._record is None:
            info = self.run_info()
            if info is None:
                return {}
            self._record = info
        return self._record

    @property
    def branch(self) -> str:
        """The branch the run delivers on: ``main`` of a new project, ``oldnew/<run id>``."""
        return str(self._settings().get("branch") or MAIN)

    @property
    def repo(self) -> Path | None:
        """The person's repository a run works on, or None for a new project."""
        repo = self._settings().get("repo")
        return Path(repo) if repo else None

    def task_branch(self, task_id: str) -> str:
        """Return the branch a task works on in its worktree until it is accepted."""
        return f"{self._settings().get('branch_prefix') or 'oldnew/'}{task_id}"

    def partial_branch(self, task_id: str) -> str:
        """Return the branch that keeps an unfinished task's work."""
        return f"{self._settings().get('branch_prefix') or 'oldnew/'}partial/{task_id}"

    def fork_branch(self, name: str) -> str:
        """Return the branch that keeps what the run's branch held when a fork moved it back."""
        return f"{self._settings().get('branch_prefix') or 'oldnew/'}fork/{name}"

    @property
    def git_options(self) -> tuple[str, ...]:
        """Return the ``-c`` settings of every git command in this workspace.

        A run on a person's repository keeps its ignore rules and merge attributes in its
        own folder, out of the repository's ``info/``.
        """
        if not (self.meta / GIT_EXCLUDE).is_file():
            return ()
        return (
            *REPO_OPTIONS,
            *("-c", f"core.excludesFile={self.meta / GIT_EXCLUDE}"),
            *("-c", f"core.attributesFile={self.meta / GIT_ATTRIBUTES}"),
        )

    # -- lifecycle -------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        root: Path | str,
        run_id: str,
        settings: Mapping[str, Any],
        files: Mapping[str, str] | None = None,
        supporting: Mapping[str, bytes] | None = None,
    ) -> Workspace:
        """Make a new workspace for ``run_id``; refuse a directory that holds anything.

        ``files`` (name -> text) are written into ``.oldnew/`` as part of the run record
        (the scope's copy). ``supporting`` (path -> bytes, from ``supporting.collect``) are
        the person's supporting files: the run's first commit after its start. Creation is
        atomic for its callers: a journal,
        ``.oldnew/creating.json``, is written before anything else and removed after
        ``run.json``; a process killed in between leaves a directory that :meth:`open`
        finishes (``oldnew resume``) and that a new :meth:`create` clears (``oldnew run``).
        """
        repo = repos.find(Path(root))
        if repo is not None:
            return cls._create_on(repo, run_id, settings, files or {}, supporting or {})
        ws = cls(root)
        ws._refuse_unless_free()  # nothing is written into a directory that is refused
        ws.meta.mkdir(parents=True, exist_ok=True)
        with ws._creation_lock():
            ws._refuse_unless_free()  # another process may have made a run here meanwhile
            ws._stage(supporting or {})  # staged before the journal names them
            journal = {
                "run_id": run_id,
                "created": datetime.now(UTC).isoformat(),
                "settings": {**settings, "supporting": sorted(supporting or {})},
                "files": dict(files or {}),
            }
            ws._write_json(ws.meta / CREATING, journal)
            ws._build(journal)
        return ws

    @classmethod
    def _create_on(
        cls,
        repo: repos.Repo,
        run_id: str,
        settings: Mapping[str, Any],
        files: Mapping[str, str],
        supporting: Mapping[str, bytes],
    ) -> Workspace:
        """Make a run on the person's repository: a branch from its HEAD, in a worktree.

        The person's checkout is never touched (``oldnew.repo`` has the layout). A creation
        killed half-way is cleared by the next one (its journal says what it made).
        """
        cwd = repo.top or repo.git_dir
        branch = f"oldnew/{run_id}"
        with repos.home_lock(repo):
            repos.clear_killed_creations(repo, cwd)  # first: a killed try of this very run
            repos.check_branch_name(cwd, branch)
            root = repo.home / run_id
            if root.exists():
                raise WorkspaceError(f"{root} exists already: run {run_id} was made before")
            record: dict[str, Any] = {
                **settings,
                "repo": str(repo.top or repo.git_dir),
                "git_dir": str(repo.git_dir),
                "base": repo.head,
                "branch": branch,
                "branch_prefix": f"{branch}-",
                "started_from": repo.branch,
                "supporting": sorted(supporting),
            }
            journal = {
                "run_id": run_id,
                "base": repo.head,  # what a killed creation's branch started at
                "created": datetime.now(UTC).isoformat(),
                "settings": record,
                "files": dict(files),
            }
            started = repos.journal_path(repo, run_id)
            cls._write_json(started, journal)
            proc = run_git(
                *("worktree", "add", "-q", "-b", branch, str(root), repo.head),
                cwd=cwd,
                options=REPO_OPTIONS,
            )
            if proc.returncode != 0:
                started.unlink(missing_ok=True)
                raise WorkspaceError(f"git worktree add failed: {proc.stderr.strip()}")
            ws = cls(root)
            # What the repository already holds that looks like another repository (a
            # fixture, a vendored checkout) is the person's: only new ones are refused.
            record["inherited_control"] = [*nested_control_paths(root), *ws._gitlinks(root)]
            ws.meta.mkdir()
            (ws.meta / GIT_EXCLUDE).write_text(_IGNORED, encoding="utf-8")
            (ws.meta / GIT_ATTRIBUTES).write_text(MERGES, encoding="utf-8")
            ws._stage(supporting)
            ws._finish(journal)
            started.unlink()
        ws.log_event(node="workspace", event="branched", note=repo.describe(), branch=branch)
        return ws

    @classmethod
    def clone(
        cls, root: Path | str, central: str, record: Mapping[str, Any], files: Mapping[str, str]
    ) -> Workspace:
        """Make (or bring up to date) this machine's copy of a run spread over workers.

        A clone of the ``central`` repository on the run's branch, and the run's record
        (``record``, its run.json; ``files``, its scope's copy) naming ``central`` as the
        repository main is published to. Made in a folder beside ``root`` and moved into
        place: a kill leaves no half-made workspace.
        """
        ws = cls(root)
        if ws.run_info() is None:
            tmp = ws.root.with_name(f".{ws.root.name}.{uuid.uuid4().hex[:8]}")
            branch = str(record.get("branch") or MAIN)
            ws.root.parent.mkdir(parents=True, exist_ok=True)
            proc = run_git(
                *("clone", "-q", "--branch", branch, central, str(tmp)),
                cwd=ws.root.parent,
                options=CENTRAL_OPTIONS,
            )
            if proc.returncode != 0:
                shutil.rmtree(tmp, ignore_errors=True)
                raise WorkspaceError(
                    f"cannot clone the central repository {central}: "
                    f"{proc.stderr.strip()[-500:]}; check that this machine can reach it"
                )
            (tmp / ".git" / "info").mkdir(parents=True, exist_ok=True)
            (tmp / ".git" / "info" / "exclude").write_text(_IGNORED, encoding="utf-8")
            (tmp / ".git" / "info" / "attributes").write_text(MERGES, encoding="utf-8")
            made = cls(tmp)
            made.meta.mkdir()
            for name, text in files.items():
                (made.meta / name).write_text(text, encoding="utf-8")
            new_checkpoints(made.checkpoints)
            cls._write_json(made.meta / "run.json", {**record, "central": central})
            os.replace(tmp, ws.root)
        ws = cls(root)
        ws.sync_main()
        return ws

    @classmethod
    def open(cls, root: Path | str) -> Workspace:
        """Open an existing run's workspace, or raise WorkspaceError saying what is wrong.

        A workspace whose creation was killed half-way is finished first, from its journal.
        A person's repository opens its newest run (``oldnew.repo.runs_on``).
        """
        ws = cls(root)
        made = repos.runs_on(ws.root)
        if made:
            ws = cls(made[-1])
        if not ws.root.is_dir():
            raise WorkspaceError(f"{ws.root} does not exist; start a run with 'oldnew run'")
        if (ws.meta / CREATING).is_file():
            with ws._creation_lock():
                journal = ws._read_journal()
                if ws.run_info() is not None:  # killed after run.json: only the journal is left
                    (ws.meta / CREATING).unlink(missing_ok=True)
                elif journal is not None:
                    ws._build(journal)
        if ws.run_info() is None:
            raise WorkspaceError(
                f"{ws.root} holds no oldnew run (no {META}/run.json); start one with 'oldnew run'"
            )
        return ws

    @classmethod
    def ensure(
        cls,
        root: Path | str,
        run_id: str,
        supporting: Callable[[], Mapping[str, bytes]] | None = None,
    ) -> Workspace:
        """Open the workspace of ``run_id``, creating it when the directory is new or empty.

        ``supporting`` gives the supporting files of a workspace made here (read only then).
        """
        ws = cls(root)
        repo = repos.find(ws.root)
        if repo is not None:
            made = repo.home / run_id
            if (made / META / "run.json").is_file():
                ws = cls(made)
                ws.hold_branch()
                return ws
            return cls.create(root, run_id, {}, supporting=supporting() if supporting else None)
        info = ws.run_info()
        if info is None:
            journal = ws._read_journal() if ws.root.is_dir() else None
            if journal is not None and journal["run_id"] == run_id:
                return cls.open(root)
            return cls.create(root, run_id, {}, supporting=supporting() if supporting else None)
        if info["run_id"] != run_id:
            raise WorkspaceError(f"{ws.root} belongs to run {info['run_id']}, not {run_id}")
        return ws

    def run_info(self) -> dict[str, Any] | None:
        """Return the contents of run.json, or None when this is not a run's workspace."""
        path = self.meta / "run.json"
        if not path.is_file():
            return None
        try:
            data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise WorkspaceError(
                f"{path} cannot be read ({exc}); it records the run's id and settings: "
                "restore it from a backup, or start a new run in a new directory (the "
                "commits on main are untouched)"
            ) from exc
        return data

    @property
    def base(self) -> str | None:
        """The commit a run on an existing repository started from; None for a new project.

        The tree of that commit is the user's project as it was: what fails there already
        (the baseline) is no task's doing.
        """
        base = self._settings().get("base")
        return str(base) if base else None

    # -- creation --------------------------------------------------------------------------

    def _refuse_unless_free(self) -> None:
        """Raise WorkspaceError unless ``root`` is new, empty, or a killed creation's."""
        info = self.run_info()
        if info is not None:
            raise WorkspaceError(
                f"{self.root} belongs to run {info['run_id']} (started {info['created']}): "
                f"continue it with 'oldnew resume --workspace {self.root}', change or extend "
                f"it with 'oldnew feedback --workspace {self.root} TEXT', or choose a new "
                "directory"
            )
        if self.root.exists() and not self.root.is_dir():
            raise WorkspaceError(f"{self.root} is a file; choose a new or empty directory")
        if not self.root.exists():
            return
        # A bare .oldnew/ (a caller's checkpoint file, opened before the first node runs)
        # does not count: run.json, checked above, is what marks a directory as a run's.
        # Nor does the .git of a creation that was killed before its run.json.
        ours = {META, ".git"} if self._read_journal() is not None else {META}
        if any(p.name not in ours for p in self.root.iterdir()):
            raise WorkspaceError(
                f"{self.root} is not empty; oldnew only writes into a new or empty directory"
            )

    @contextmanager
    def _creation_lock(self) -> Iterator[None]:
        """Hold the creation of this workspace (blocking: creating takes well under a second)."""
        with exclusive(self.meta / "creating.lock"):
            yield

    def _read_journal(self) -> dict[str, Any] | None:
        """Return the journal of a creation that did not finish, or None if there is none."""
        path = self.meta / CREATING
        try:
            data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return None  # written atomically, so unreadable means not ours: refuse as usual
        return data if isinstance(data.get("run_id"), str) else None

    def _build(self, journal: Mapping[str, Any]) -> None:
        """Make the repository and the run record from ``journal``, from scratch each time.

        Whatever a killed creation left of ``.git`` is removed first: until run.json is
        written, nothing in it is anyone's work.
        """
        shutil.rmtree(self.root / ".git", ignore_errors=True)
        self.git("init", "-q", "-b", MAIN)
        (self.root / ".git" / "info").mkdir(parents=True, exist_ok=True)
        (self.root / ".git" / "info" / "exclude").write_text(_IGNORED, encoding="utf-8")
        (self.root / ".git" / "info" / "attributes").write_text(MERGES, encoding="utf-8")
        self.git("commit", "-q", "--allow-empty", "-m", f"oldnew: start run {journal['run_id']}")
        self._finish(journal)

    def _stage(self, supporting: Mapping[str, bytes]) -> None:
        """Keep the supporting files in the run's folder until :meth:`_finish` commits them."""
        for name, data in supporting.items():
            staged = self.meta / SUPPORTING / name
            staged.parent.mkdir(parents=True, exist_ok=True)
            staged.write_bytes(data)

    def _finish(self, journal: Mapping[str, Any]) -> None:
        """Commit the supporting files, write the run record: the run exists once run.json does."""
        names = list(journal["settings"].get("supporting") or [])
        for name in names:
            target = resolve_inside(self.root, name)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.meta / SUPPORTING / name, target)
        if names:
            self.git("add", "-f", "--", *names)
            self.git("commit", "-q", "-m", f"Supporting files: {len(names)} (--with)")
        for name, text in journal["files"].items():
            tmp = self.meta / f"{name}.tmp"
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, self.meta / name)
        new_checkpoints(self.checkpoints)
        record = {"run_id": journal["run_id"], "created": journal["created"]}
        self._write_json(self.meta / "run.json", record | dict(journal["settings"]))
        (self.meta / CREATING).unlink(missing_ok=True)

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the workspace for this process; raise RunLockedError if another holds it."""
        self.meta.mkdir(parents=True, exist_ok=True)
        with open(self.meta / "lock", "a+", encoding="utf-8") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.seek(0)
                holder = fh.read().strip() or "unknown"
                raise RunLockedError(
                    f"another oldnew process (pid {holder}) is working on {self.root}; wait for "
                    "it to finish or stop it, then try again"
                ) from None
            fh.seek(0)
            fh.truncate()
            fh.write(str(os.getpid()))
            fh.flush()
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def recover(self) -> list[str]:
        """Undo what a killed process can leave behind in git; return what was cleared.

        Call only while holding :meth:`lock`: then no other oldnew process runs git here,
        so a git lock file is stale, and a half-done rebase in a task's worktree is aborted
        (the task's work is still in its commit or working tree).
        """
        cleared = []
        for lock in self._own_locks():
            lock.unlink(missing_ok=True)
            cleared.append(
                str(lock.relative_to(self.root) if lock.is_relative_to(self.root) else lock)
            )
        status = self.git("status", "--porcelain=v1", "-z", "--untracked-files=all")
        stray = [entry[3:] for entry in status.split("\0") if entry[:2].strip()]
        if stray:
            # A merge killed half-way leaves the main checkout ahead of main. Keep a copy of
            # every such file (nothing is lost), then put the checkout back to main.
            keep = self.meta / "recovered" / datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
            for rel in stray:
                source = self.root / rel
                if source.is_file():
                    (keep / rel).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(source, keep / rel)
            self.git("reset", "-q", "--hard", "HEAD")
            self.git("clean", "-q", "-fd")
            cleared.append(
                f"{len(stray)} stray files in the main checkout (copies in "
                f"{keep.relative_to(self.root)})"
            )
        for tree, admin in self._task_trees():
            if any(admin.glob("rebase-*")):
                self.git("rebase", "--abort", cwd=tree, check=False)
                cleared.append(f"rebase in {tree.name}")
            if self._repair_head(tree):
                cleared.append(f"unfinished checkout {tree.name}")
        return cleared

    def hold_branch(self) -> None:
        """Put the run's checkout back on the run's branch before work goes on.

        A delivered run on a person's repository lets go of its branch (:meth:`release_branch`)
        so that the person can check it out; work on it again (feedback, a resume) needs it.

        Raises:
            WorkspaceError: the person has the branch checked out; says how to free it.

        """
        if self.repo is None or self._on_branch():
            return
        if not self._has_branch():
            # Deleted (merged, say): made again where the run's checkout stands, its tip.
            self.git("branch", self.branch, "HEAD")
            self.log_event(node="workspace", event="branch_restored", branch=self.branch)
        proc = run_git("checkout", "-q", self.branch, cwd=self.root, options=self.git_options)
        if proc.returncode != 0:
            raise WorkspaceError(
                f"the run's branch {self.branch} cannot be worked on: {proc.stderr.strip()}. "
                f"If it is checked out in a checkout of yours, switch that one to another "
                "branch (git switch -), then try again: oldnew adds its work to the branch"
            )

    def release_branch(self) -> None:
        """Let the person check the run's branch out: the run's checkout stays at its tip.

        Only on a person's repository (a new project's ``main`` is the project's own).
        """
        if self.repo is not None and self._on_branch():
            self.git("checkout", "-q", "--detach")

    def _on_branch(self) -> bool:
        ref = self.git("symbolic-ref", "-q", "HEAD", check=False)
        return ref == f"refs/heads/{self.branch}"

    def _task_trees(self) -> list[tuple[Path, Path]]:
        """Return each task worktree with its folder in git's bookkeeping (``gitdir:``)."""
        folder = self.meta / "worktrees"
        out = []
        for tree in sorted(folder.iterdir()) if folder.is_dir() else []:
            try:
                line = (tree / ".git").read_text(encoding="utf-8").strip()
            except OSError:
                continue
            if line.startswith("gitdir:"):
                out.append((tree, (tree / line[len("gitdir:") :].strip()).resolve()))
        return out

    def _own_locks(self) -> list[Path]:
        """Return the git lock files only this run's git commands can have left.

        A new project's repository is the run's alone: every lock in it is. On a person's
        repository only the locks of the run's own worktrees and branches are, never the
        repository's shared ones (the person's git may hold them right now).
        """
        git_dir = self.root / ".git"
        if git_dir.is_dir():
            return [
                *git_dir.glob("*.lock"),
                *git_dir.glob("worktrees/*/*.lock"),
                *git_dir.glob("refs/heads/**/*.lock"),
            ]
        common = Path(str(self._settings().get("git_dir") or self.root))
        own = self.git("rev-parse", "--path-format=absolute", "--git-dir", check=False)
        admins = [Path(own)] if own else []
        admins += [admin for _, admin in self._task_trees()]
        branches = common / "refs" / "heads" / self.branch
        return [
            *[lock for admin in admins for lock in admin.glob("*.lock")],
            *branches.parent.glob(f"{branches.name}.lock"),
            *branches.parent.glob(f"{branches.name}-*.lock"),
            *branches.parent.glob(f"{branches.name}-*/**/*.lock"),
        ]

    def _repair_head(self, tree: Path) -> bool:
        """Finish a task worktree whose creation was killed half-way; return whether it was.

        ``git worktree add`` writes a placeholder HEAD before it points HEAD at the task's
        branch and checks the files out; killed in between, every commit there fails with
        "could not parse HEAD". Point HEAD at the branch (made at main if it is missing too),
        rebuild the index, and write the files of main that are not there, keeping the ones
        the task wrote.
        """
        if self.git("rev-parse", "--verify", "-q", "HEAD^{commit}", cwd=tree, check=False):
            return False
        branch = f"refs/heads/{self.task_branch(tree.name)}"
        if not self.git("rev-parse", "--verify", "-q", f"{branch}^{{commit}}", check=False):
            self.git("update-ref", branch, self.branch)
        self.git("symbolic-ref", "HEAD", branch, cwd=tree)
        self.git("reset", "-q", cwd=tree)
        self.git("checkout-index", "-a", "-q", cwd=tree, check=False)
        return True

    # -- files -----------------------------------------------------------------------------

    @staticmethod
    def write_files(
        base: Path, files: Mapping[str, str | None], executable: Collection[str] = ()
    ) -> list[str]:
        """Write ``files`` (path -> text, None deletes) under ``base``, all or nothing.

        Every path is checked before anything is written, so a violation leaves no trace.
        In a checkout the files written are staged at once, whatever the ignore rules say
        (a repository's ``.gitignore`` may match a file the task needs): what oldnew writes
        is validated and committed with the task, never left out of either silently.
        The ``executable`` paths get the executable bit, on disk and in the index (mode
        100755, whatever the repository's ``core.fileMode``); a file rewritten keeps its mode.
        """
        targets = {path: resolve_inside(base, path) for path in files}
        _refuse_git_dirs(
            base, [check_relative_path(p) for p, text in files.items() if text is not None]
        )
        for path, text in files.items():
            target = targets[path]
            if text is None:
                target.unlink(missing_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
            if path in executable:
                mode = target.stat().st_mode
                target.chmod(mode | (mode & 0o444) >> 2)  # executable wherever readable
        if (base / ".git").exists():
            _index(base, ["add", "-f"], [p for p, t in files.items() if t is not None])
            marked = [p for p in executable if files.get(p) is not None]
            _index(base, ["update-index", "--chmod=+x"], sorted(marked))
            _index(
                base,
                ["rm", "-q", "--cached", "--ignore-unmatch"],
                [p for p, t in files.items() if t is None],
            )
        return sorted(str(check_relative_path(p)) for p in files)

    def tracked_files(self, cwd: Path | None = None) -> list[str]:
        """Return the files git tracks in ``cwd`` (default: the main checkout)."""
        return [p for p in self.git("ls-files", cwd=cwd).splitlines() if p]

    # -- git -------------------------------------------------------------------------------

    def git(self, *args: str, cwd: Path | None = None, check: bool = True) -> str:
        """Run git in the workspace (or ``cwd``) and return its stdout.

        Goes through :func:`oldnew.safegit.run_git`: no hook, monitor, helper or driver
        from any configuration runs, and nested repositories are never entered.
        """
        proc = run_git(*args, cwd=cwd or self.root, options=self.git_options)
        if check and proc.returncode != 0:
            raise WorkspaceError(f"git {' '.join(args)} failed: {proc.stderr.strip()}")
        return str(proc.stdout).strip()

    def _git_ok(self, *args: str, cwd: Path | None = None) -> bool:
        """Run git as :meth:`git` does; return whether it succeeded."""
        return run_git(*args, cwd=cwd or self.root, options=self.git_options).returncode == 0

    def head(self, ref: str | None = None) -> str:
        """Return the commit id ``ref`` (default: the run's branch) points at.

        A run's branch the person deleted (after merging it, say) is where the run's own
        checkout stands.
        """
        if ref is None and self.repo is not None and not self._has_branch():
            return self.git("rev-parse", "HEAD")
        return self.git("rev-parse", ref or self.branch)

    def tag(self, name: str) -> str:
        """Tag the run's branch head as milestone ``name``; return the tag (moved if it was).

        A new project's tags are the milestone's own name (``mvp``); on a person's repository
        they carry the run's branch (``oldnew/<run id>-mvp``), so no tag of theirs is touched.
        """
        tag = name if self.repo is None else f"{self.branch}-{name}"
        self.git("tag", "-f", tag, self.head())
        return tag

    def _has_branch(self) -> bool:
        ref = f"refs/heads/{self.branch}"
        return bool(self.git("rev-parse", "--verify", "-q", ref, check=False))

    def worktree(self, task_id: str) -> Path:
        """Return the task's private checkout, made from the run's branch on first use."""
        path = self.meta / "worktrees" / task_id
        if (path / ".git").exists():
            return path
        # git's worktree bookkeeping is not safe against itself: one task's prune can remove
        # another's half-made entry. Parallel tasks create their worktrees one at a time.
        with _worktree_locks.setdefault(str(self.root), threading.RLock()):
            if (path / ".git").exists():
                return path
            path.parent.mkdir(parents=True, exist_ok=True)
            # No worktree there, but something: what a kill while one was made or removed
            # left. It goes (a spare moved onto it would land inside it).
            if path.is_symlink() or path.is_file():
                path.unlink()
            elif path.exists():
                shutil.rmtree(path)
            branch = self.task_branch(task_id)
            if self._recycle(path, branch):
                return path
            self._prune(path)
            self.git("worktree", "add", "-q", "-B", branch, str(path), self.branch)
        return path

    def _recycle(self, path: Path, branch: str) -> bool:
        """Make a finished task's spare worktree ``path``, on ``branch`` at the run's branch.

        ``checkout -B`` rewrites only the files that differ from main and ``clean`` drops
        what git does not track, where ``worktree add`` would write every file again. The
        spare is made right in its own folder before it is moved to ``path``: a kill in
        between leaves a spare, never a task's worktree holding another task's files. A
        spare that cannot be made right is removed; returns False then (and with no spare).
        """
        spares = self.meta / SPARES
        for spare in sorted(spares.iterdir()) if spares.is_dir() else []:
            for argv in (
                ("checkout", "-q", "-f", "-B", branch, self.branch),
                ("clean", "-q", "-ffdx"),
            ):
                if not self._git_ok(*argv, cwd=spare):
                    break
            else:
                if self._git_ok("worktree", "move", str(spare), str(path)):
                    return True
            self.git("worktree", "remove", "--force", str(spare), check=False)
            shutil.rmtree(spare, ignore_errors=True)
            self._prune(spare)
        return False

    def _prune(self, path: Path) -> None:
        """Drop git's records of worktrees whose folders are gone.

        A new project's repository is the run's: all of them. On a person's repository only
        the run's own ``path``, never one of theirs (on a drive not mounted right now, say).
        """
        if self.repo is None:
            self.git("worktree", "prune", check=False)
        else:
            repos.forget_worktree(Path(str(self._settings().get("git_dir"))), path)

    def find_task_commit(self, task_id: str) -> str | None:
        """Return the commit on ``main`` that delivered ``task_id``, if there is one.

        Read from the trailer index (``oldnew.commits``): only the commits since it was last
        brought up to date are walked, never the whole history.
        """
        return TaskCommits(self.meta, self.branch, self.git).find(task_id)

    def find_task_commits(self, task_ids: list[str]) -> dict[str, str]:
        """Return task -> its commit on ``main``, for those of ``task_ids`` delivered."""
        return TaskCommits(self.meta, self.branch, self.git).find_all(task_ids)

    def commit_worktree(self, task_id: str, title: str) -> str | None:
        """Commit everything the task changed in its worktree; return the commit id.

        Returns None when the task changed nothing. Idempotent: a worktree whose HEAD is
        already the task's commit returns that commit.

        Raises:
            PathViolation: the worktree holds a nested repository or other VCS control
                path, or something would be committed as a gitlink; nothing is staged.

        """
        tree = self.worktree(task_id)
        inherited = self._inherited_control()
        nested = [p for p in nested_control_paths(tree) if p.rstrip("/") not in inherited]
        if nested:
            raise PathViolation(
                f"task {task_id}'s files hold version-control data oldnew never commits: "
                f"{', '.join(nested[:5])}; remove {'them' if len(nested) > 1 else 'it'} "
                f"from {tree} (oldnew's write path refuses such paths, so it came from "
                "elsewhere), then resume"
            )
        self.git("add", "-A", cwd=tree)
        # One look at what is staged: whether there is anything, and any new gitlink (one in
        # HEAD already is the person's, inherited, or was refused when it was committed).
        # (``--cached`` compares recorded ids only: no nested repository is entered.)
        staged = self.git(
            *("diff", "--cached", "--raw", "--no-renames", "-z", "--ignore-submodules=none"),
            cwd=tree,
        )
        fields = staged.split("\0")
        changes = list(zip(fields[0::2], fields[1::2], strict=False))
        links = [path for meta, path in changes if meta.split(" ")[1:2] == ["160000"]]
        links = [p for p in links if p not in inherited]
        if links:
            self.git("reset", "-q", cwd=tree)  # unstage; the files stay as they are
            raise PathViolation(
                f"task {task_id} would commit {', '.join(links[:5])} as a gitlink "
                "(a submodule); oldnew delivers one repository: put the code in the "
                "project itself"
            )
        if changes:
            message = f"{title}\n\nOldnew-Task: {task_id}\n"
            self.git("commit", "-q", "-m", message, cwd=tree)
        head, _, head_msg = self.git("log", "-1", "--format=%H%n%B", cwd=tree).partition("\n")
        return head if f"Oldnew-Task: {task_id}" in head_msg else None

    def _inherited_control(self) -> set[str]:
        """Return the control paths and gitlinks the person's repository had at the start.

        A repository may have submodules (a ``.gitmodules`` and gitlinks) or fixtures shaped
        like repositories: they are the person's, recorded when the run was made, and stay as
        they are; only new ones are refused.
        """
        return {p.rstrip("/") for p in self._settings().get("inherited_control") or []}

    def _gitlinks(self, tree: Path) -> list[str]:
        """Return the paths the index of ``tree`` holds as gitlinks (mode 160000)."""
        out = self.git("ls-files", "-s", "-z", cwd=tree)
        entries = [e.split("\t", 1) for e in out.split("\0") if e]
        return [path for meta, path in entries if meta.startswith("160000 ")]

    @contextmanager
    def merge_lock(self) -> Iterator[None]:
        """Serialise integration into ``main`` within this process."""
        key = str(self.root)
        lock = _merge_locks.setdefault(key, threading.RLock())  # re-entered: publish_main
        with lock:
            start = time.perf_counter()
            try:
                yield
            finally:
                _merge_held[key] = _merge_held.get(key, 0.0) + time.perf_counter() - start

    def merge_held(self) -> float:
        """Return the seconds this process held the merge lock of this workspace."""
        return _merge_held.get(str(self.root), 0.0)

    def rebase_onto_main(self, task_id: str) -> bool:
        """Rebase the task's branch onto ``main``; return True if ``main`` had moved.

        Raises:
            WorkspaceError: the rebase conflicts (it is aborted; the worktree is unchanged).

        """
        tree = self.worktree(task_id)
        base = self.git("merge-base", "HEAD", self.branch, cwd=tree)
        if base == self.head():
            return False
        proc = run_git("rebase", "-q", self.branch, cwd=tree, options=self.git_options)
        if proc.returncode != 0:
            self.git("rebase", "--abort", cwd=tree, check=False)
            raise WorkspaceError(f"task {task_id} conflicts with main: {proc.stdout.strip()}")
        return True

    @property
    def central(self) -> str | None:
        """The central repository main lives in when the run is spread over workers."""
        central = self._settings().get("central")
        return str(central) if central else None

    def publish_main(self, commit: str) -> bool:
        """Move the central repository's main on to ``commit``; whether it moved.

        Always True without a central repository. With one, the push is a fast-forward or
        nothing: ``commit`` is built on main here (what was last fetched from there, and this
        holder's own commits since, the acceptance suite say, published with it). It fails,
        and main here is brought up to the central one, when another process moved main there
        meanwhile; a holder given up for dead can therefore never take back what its
        successor published.

        Raises:
            WorkspaceError: the central repository cannot be reached or pushed to.

        """
        if self.central is None:
            return True
        with self._clone_lock():
            proc = run_central(
                *("push", "-q", "--porcelain", self.central, f"{commit}:refs/heads/{self.branch}"),
                cwd=self.root,
                options=(*self.git_options, *CENTRAL_OPTIONS),
                final=_moved,
            )
            if proc.returncode == 0:
                self.git("update-ref", CENTRAL_SEEN, commit)
                return True
        if _moved(proc):
            self.sync_main()
            return False
        raise WorkspaceError(
            f"cannot push main to the central repository {self.central}: "
            f"{(proc.stderr or proc.stdout).strip()[-500:]}; main there is unchanged: check "
            "that it can be reached and pushed to, then resume the run"
        )

    def publish_head(self) -> bool:
        """Publish main here if it is ahead of the central main last seen (a holder's end)."""
        if self.central is None:
            return True
        head = self.head()
        known = self.git("rev-parse", "-q", "--verify", CENTRAL_SEEN, check=False)
        return head == known or self.publish_main(head)

    def push_central(self, what: str, *refspecs: str) -> None:
        """Push ``refspecs`` (``what`` they are, for errors) to the central repository.

        Raises:
            WorkspaceError: the central repository cannot be reached or pushed to.

        """
        self._transfer("push", "--force", what=what, refspecs=refspecs, to="to")

    def fetch_central(self, what: str, *refspecs: str) -> None:
        """Fetch ``refspecs`` (``what`` they are, for errors) from the central repository.

        One transfer at a time per clone, never beside a worktree being made.

        Raises:
            WorkspaceError: the central repository cannot be reached.

        """
        self._transfer("fetch", what=what, refspecs=refspecs, to="from")

    def _transfer(
        self, verb: str, *flags: str, what: str, refspecs: Sequence[str], to: str
    ) -> None:
        """Run ``git VERB`` with the central repository (tried again through short losses)."""
        if self.central is None:
            raise WorkspaceError(f"{self.root} names no central repository: it is no worker's")
        with self._clone_lock():
            proc = run_central(
                *(verb, "-q", *flags, self.central, *refspecs),
                cwd=self.root,
                options=(*self.git_options, *CENTRAL_OPTIONS),
            )
        if proc.returncode != 0:
            raise WorkspaceError(
                f"cannot {verb} {what} {to} the central repository {self.central}: "
                f"{proc.stderr.strip()[-500:]}; check that it can be reached"
                + (" and pushed to" if verb == "push" else "")
                + ", then resume"
            )

    def sync_main(self) -> str:
        """Bring main here up to the central repository's; return its id.

        Main here follows the central one: commits here that never reached it (a holder that
        was given up for dead made them) cannot be fast-forwarded to it. They are kept under
        ``refs/oldnew/diverged/``, named in the log, and main here becomes the central one.
        """
        if self.central is None:
            return self.head()
        self.fetch_central("main", f"+refs/heads/{self.branch}:{CENTRAL_SEEN}")
        with self.merge_lock():
            self.hold_branch()
            if not self._git_ok("merge", "-q", "--ff-only", CENTRAL_SEEN):
                kept = f"{DIVERGED}{self.head()}"
                self.git("update-ref", kept, "HEAD")
                self.git("reset", "-q", "--hard", CENTRAL_SEEN)
                log.warning(
                    "main in %s had commits the central repository's main does not: kept as "
                    "%s; main here is the central one now",
                    self.root,
                    kept,
                )
            return self.head()

    def _clone_lock(self) -> threading.RLock:
        """Return the lock of this clone's git bookkeeping: worktrees made, refs fetched."""
        return _worktree_locks.setdefault(str(self.root), threading.RLock())

    def fast_forward_main(self, commit: str) -> str:
        """Move the run's branch (and its checkout) on to ``commit``; return its id."""
        self.hold_branch()  # a merge on a detached checkout would leave the branch behind
        self.git("merge", "-q", "--ff-only", commit)
        return self.head()

    def take_rebased(self, task_id: str, commit: str, base: str | None) -> None:
        """Put the task's branch at ``commit`` (its work on main's); with ``base``, uncommitted.

        The fixer then sees main's work with the task's changes on top, staged, as they
        were when it failed the merge queue's validation.
        """
        tree = self.worktree(task_id)
        self.git("checkout", "-q", "--force", "-B", self.task_branch(task_id), commit, cwd=tree)
        if base is not None:
            self.git("reset", "-q", "--soft", base, cwd=tree)

    def remove_worktree(self, task_id: str) -> None:
        """Drop the task's worktree and branch once its commit is on ``main``.

        The worktree is kept as a spare (``.oldnew/spare-worktrees/``, at most
        :data:`MAX_SPARES`) for the next task to recycle (:meth:`worktree`); the rest removed.
        """
        path = self.meta / "worktrees" / task_id
        with _worktree_locks.setdefault(str(self.root), threading.RLock()):
            if not self._keep_spare(path):
                if path.exists():
                    self.git("worktree", "remove", "--force", str(path), check=False)
                self._prune(path)
        self.git("branch", "-q", "-D", self.task_branch(task_id), check=False)

    def _keep_spare(self, path: Path) -> bool:
        """Move the worktree ``path`` among the spares, off its branch; whether it was."""
        spares = self.meta / SPARES
        if not (path / ".git").is_file() or (
            spares.is_dir() and len(os.listdir(spares)) >= MAX_SPARES
        ):
            return False
        spares.mkdir(parents=True, exist_ok=True)
        spare = spares / uuid.uuid4().hex[:12]
        if not self._git_ok("worktree", "move", str(path), str(spare)):
            return False
        self.git("checkout", "-q", "--detach", cwd=spare, check=False)  # frees the branch
        return True

    # -- records ---------------------------------------------------------------------------

    def log_event(self, **event: Any) -> None:
        """Append one event to events.jsonl (the run's audit trail)."""
        self.meta.mkdir(parents=True, exist_ok=True)
        record = {"ts": datetime.now(UTC).isoformat(timespec="milliseconds"), **event}
        with open(self.meta / "events.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, default=str) + "\n")

    def events(self) -> list[dict[str, Any]]:
        """Return every event logged so far; a torn last line (from a kill) is skipped."""
        path = self.meta / "events.jsonl"
        if not path.exists():
            return []
        out = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out

    @staticmethod
    def _write_json(path: Path, data: Any) -> None:
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
        os.replace(tmp, path)

    def write_json(self, name: str, data: Any) -> Path:
        """Atomically write ``data`` as JSON to ``.oldnew/<name>`` and return the path."""
        path = self.meta / name
        path.parent.mkdir(parents=True, exist_ok=True)
        self._write_json(path, data)
        return path


# -- creation and opening ----------------------------------------------------------------

CREATING = "creating.json"
"""The journal of a workspace being created; run.json replaces it once creation is done."""
SUPPORTING = "supporting"
"""Where a new workspace stages the supporting files (``--with``) before committing them."""
REPO_OPTIONS = ("-c", "core.sparseCheckout=false", "-c", "core.sparseCheckoutCone=false")
"""Every file of the run's commits is checked out, whatever sparse checkout the person uses."""
SPARES = "spare-worktrees"
"""Where finished tasks' worktrees wait, detached, to be recycled by the next tasks."""
MAX_SPARES = 16
GIT_EXCLUDE = "git-exclude"
GIT_ATTRIBUTES = "git-attributes"
"""A run on a person's repository: its ignore rules and merge attributes (``git_options``)."""


MERGES = (
    "# Tasks that each add a dependency edit the same lists: merged by package name; the\n"
    "# locks are derived, so main's is kept and the merged manifest is locked again.\n"
    "pyproject.toml merge=oldnew-manifest\n"
    "package.json merge=oldnew-manifest\n"
    "uv.lock merge=oldnew-keep\n"
    "package-lock.json merge=oldnew-keep\n"
)
"""``.git/info/attributes`` of a workspace (never committed): how task merges treat manifests."""


def new_checkpoints(path: Path) -> None:
    """Create the run's empty checkpoint database unless a caller's file is already there.

    Made with the workspace, so that a run.json without it means the checkpoints were lost,
    never that the run had not started.
    """
    if path.exists():
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    conn = sqlite3.connect(tmp)
    try:
        conn.execute("PRAGMA user_version = 1")  # writes the header: never a 0-byte file
        conn.commit()
    finally:
        conn.close()
    os.replace(tmp, path)
