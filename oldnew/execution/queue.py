"""The merge queue: accepted tasks validated on top of each other at once, main moved in order.

Main only ever holds validated work. Before the queue, each task was rebased and validated
again inside one lock, so validations ran one at a time whatever the number of agents. Here,
as in Zuul's gate pipeline, tasks wait in the order they were accepted and each one is
*built* on the one ahead of it: its commits cherry-picked (in its own worktree, detached;
its branch is never moved) onto the commit the entry ahead will put on main, then validated
there. Those validations run in parallel (the ``GATES`` pool, at most ``depth`` at once).
The head of the queue lands when its validation passed: main is fast-forwarded to the very
commit that was validated, under the merge lock, after checking main is where that entry was
built (so nothing else moved it meanwhile). Main therefore holds, after every move, a tree
some validation passed on: the invariant the tests check commit by commit.

When an entry fails, the entries behind it are built again without it (on the entry ahead of
it) and validated again; its own failure is final only when it reaches the head (nothing is
ahead of it any more): a failure caused by an entry ahead that fails too is tried again once
that entry is out. The same goes for a cherry-pick that conflicts. An entry built on the
commit its task was validated on (main has not moved since) is not validated again.

Nothing here is saved: a run killed while tasks wait in the queue resumes each task's
``commit`` node, which finds a task that landed by its commit's trailer (``find_task_commit``)
and submits the others again; a worktree left detached on a speculative commit is put back on
its task's branch first (:func:`restore`). The queue looks for that trailer again before it
builds an entry: main may have gained the task since its ``commit`` node looked.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oldnew.errors import WorkspaceError
from oldnew.execution.pools import GATES, GIT, offload, size
from oldnew.safegit import run_git
from oldnew.workspace import Workspace

Check = Callable[[Path, list[str]], tuple[Any, str]]
"""Validate a tree with these tasks ahead of it; return (its ValidationResult, evidence)."""
Prepare = Callable[[Path], bool]
"""Make a built tree ready to validate (lock the merged manifests); say if it changed it."""


class MergeConflict(WorkspaceError):
    """A task's commits do not apply on main: the coder must redo them on main's work."""


@dataclass
class Landed:
    """A task's commit is on main."""

    commit: str
    rebased: bool
    evidence: str | None
    ahead: list[str]
    reconciled: bool = False
    """Found on main, by its trailer, instead of landed by this queue."""


@dataclass
class Rejected:
    """A task's commits failed validation on main as it is (nothing ahead of it any more)."""

    result: Any
    evidence: str
    spec: str
    base: str


@dataclass(eq=False)
class Entry:
    """One task waiting in the queue."""

    task_id: str
    branch: str
    tree: Path
    own: str
    """The task's commit on its branch: what its own validation passed on ``parent``."""
    parent: str
    prepare: Prepare
    check: Check
    done: asyncio.Future[Landed | Rejected]
    state: str = "new"
    """new, validating, passed, failed (its validation), conflict, error (``prepare`` raised)."""
    base: str | None = None
    spec: str | None = None
    ahead: list[str] = field(default_factory=list)
    result: Any = None
    evidence: str | None = None
    error: BaseException | None = None
    job: asyncio.Task[None] | None = None

    @property
    def built(self) -> bool:
        """Say whether it is built and not failed: those behind it are built on it."""
        return self.state in ("validating", "passed")


@dataclass
class QueueStats:
    """What the queue did in this process (the scale benchmark reports them)."""

    landed: int = 0
    validations: int = 0
    """Validations started (of built entries)."""
    skipped: int = 0
    """Entries landed with no validation of their own: built on what their task validated."""
    restarts: int = 0
    """Entries built again because something ahead of them changed."""
    rejected: int = 0
    most_waiting: int = 0


class MergeQueue:
    """The queue of one workspace in one event loop (:func:`merge_queue`)."""

    def __init__(self, ws: Workspace, depth: int) -> None:
        """Queue for ``ws``; at most ``depth`` validations at once."""
        self.ws = ws
        self.depth = max(1, depth)
        self.entries: list[Entry] = []
        self.stats = QueueStats()
        self.loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._pump: asyncio.Task[None] | None = None
        self._head = ""

    def members(self) -> set[str]:
        """Return the ids of the tasks waiting in the queue."""
        return {e.task_id for e in self.entries}

    async def submit(
        self, task_id: str, own: str, prepare: Prepare, check: Check
    ) -> Landed | Rejected:
        """Queue the task whose commit on its branch is ``own``; return how it ended.

        Raises:
            MergeConflict: its commits conflict with main (its worktree is back on its branch).
            DependencyError: ``prepare`` could not lock the merged manifests.

        """
        ws = self.ws
        tree, branch = await offload(GIT, lambda: (ws.worktree(task_id), ws.task_branch(task_id)))
        parent = await offload(GIT, ws.git, "merge-base", own, ws.branch)
        entry = Entry(task_id, branch, tree, own, parent, prepare, check, self.loop.create_future())
        self.entries.append(entry)
        self.stats.most_waiting = max(self.stats.most_waiting, len(self.entries))
        self._kick()
        try:
            return await asyncio.shield(entry.done)
        except asyncio.CancelledError:
            await self._leave(entry)
            raise

    # -- the pump: one coroutine moves every entry along --------------------------------------

    def _kick(self) -> None:
        self._wake.set()
        if self._pump is None or self._pump.done():
            self._pump = self.loop.create_task(self._run())

    async def _run(self) -> None:
        self._head = await offload(GIT, self.ws.head)
        while self.entries:
            self._wake.clear()
            try:
                moved = await self._step()
            except Exception as exc:  # noqa: BLE001 - every waiting task must hear of it
                for e in self.entries:
                    if not e.done.done():
                        e.done.set_exception(exc)
                self.entries.clear()
                return
            if not moved:
                await self._wake.wait()

    async def _step(self) -> bool:
        """Do the next thing the queue can do; return False when it must wait for a job."""
        first = self.entries[0]
        if first.base == self._head and first.job is None:
            if first.state == "passed":
                await self._land(first)
                return True
            if first.state in ("failed", "conflict", "error"):
                await self._finish(first)
                return True
        expected, validating = self._head, 0
        for i, e in enumerate(self.entries):
            if e.state != "new" and e.base != expected:
                self.stats.restarts += 1
                e.state = "new"  # what it was built on is not coming: build it again
            if e.state == "new":
                if e.job is not None or validating >= self.depth:
                    return False  # its last validation still reads the tree / slots are full
                await self._build(e, expected, [x.task_id for x in self.entries[:i] if x.built])
                return True
            if e.state in ("failed", "conflict", "error"):
                continue  # those behind it are built without it
            validating += e.state == "validating"
            expected = e.spec or expected
        return False

    async def _build(self, e: Entry, base: str, ahead: list[str]) -> None:
        landed = await offload(GIT, self.ws.find_task_commit, e.task_id)
        if landed is not None:
            # Main gained the task meanwhile: an earlier holder of the run landed it (on many
            # machines, its last act before it was given up for dead). It is done, not redone.
            self.entries.remove(e)
            e.done.set_result(Landed(landed, False, None, [], reconciled=True))
            return
        e.base, e.ahead, e.result, e.evidence, e.error = base, ahead, None, None, None
        try:
            e.spec = await offload(GIT, self._put, e, base)
        except MergeConflict as exc:
            e.spec, e.state, e.error = None, "conflict", exc
            return
        except Exception as exc:  # noqa: BLE001 - told to its task when it reaches the head
            e.spec, e.state, e.error = None, "error", exc
            return
        if e.spec == e.own:
            e.state = "passed"  # the very commit its task validated, on the same main
            return
        e.state = "validating"
        self.stats.validations += 1
        e.job = self.loop.create_task(self._validate(e, e.spec))

    def _put(self, e: Entry, base: str) -> str:
        """Put the task's commits on ``base`` in its worktree, detached; return the new tip.

        On the commit its task validated on, they stay as they are; else they are
        cherry-picked. Then ``prepare`` (the lock follows the merged manifests, amending).
        """
        git, tree = self.ws.git, e.tree
        # Off the task's branch first, its files untouched: git writes the files before HEAD,
        # so a kill in the middle of the checkout below must find HEAD detached (``restore``
        # then puts the task's commit back), never its branch with another commit's files.
        git("checkout", "-q", "--detach", cwd=tree)
        if base == e.parent:
            git("checkout", "-q", "--detach", "--force", e.own, cwd=tree)
        else:
            git("checkout", "-q", "--detach", "--force", base, cwd=tree)
            proc = run_git(
                "cherry-pick", "--allow-empty", f"{e.parent}..{e.own}", cwd=tree,
                options=self.ws.git_options,
            )  # fmt: skip
            if proc.returncode != 0:
                git("cherry-pick", "--abort", cwd=tree, check=False)
                raise MergeConflict(
                    f"task {e.task_id} conflicts with main: {(proc.stdout + proc.stderr).strip()}"
                )
        e.prepare(tree)
        return git("rev-parse", "HEAD", cwd=tree)

    async def _validate(self, e: Entry, spec: str) -> None:
        try:
            result, evidence = await offload(GATES, e.check, e.tree, list(e.ahead))
        except Exception as exc:  # noqa: BLE001 - told to its task when it reaches the head
            if e.spec == spec and e.state == "validating":
                e.state, e.error = "error", exc
        else:
            if e.spec == spec and e.state == "validating":
                e.result, e.evidence = result, evidence
                e.state = "passed" if result.passed else "failed"
        finally:
            e.job = None
            self._wake.set()

    async def _land(self, e: Entry) -> None:
        assert e.spec is not None
        moved = await offload(GIT, self._move_main, e.base or "", e.spec)
        if not moved:  # something else moved main: every entry is built again on it
            self._head = await offload(GIT, self.ws.head)
            return
        self._head = e.spec
        self.entries.remove(e)
        self.stats.landed += 1
        self.stats.skipped += e.spec == e.own
        e.done.set_result(Landed(e.spec, e.base != e.parent, e.evidence, e.ahead))

    def _move_main(self, base: str, commit: str) -> bool:
        """Fast-forward main to ``commit`` if main is still at ``base`` (under the merge lock)."""
        with self.ws.merge_lock():
            if self.ws.head() != base:
                return False
            if not self.ws.publish_main(commit):
                return False  # main moved in the central repository (``Workspace.central``)
            self.ws.fast_forward_main(commit)
            return True

    async def _finish(self, e: Entry) -> None:
        """End an entry whose failure is final: it is the head and was built on main."""
        self.entries.remove(e)
        await offload(GIT, restore, self.ws, e.tree, e.branch)
        if e.state == "failed":
            self.stats.rejected += 1
            assert e.spec is not None and e.base is not None and e.evidence is not None
            e.done.set_result(Rejected(e.result, e.evidence, e.spec, e.base))
        else:
            e.done.set_exception(e.error or WorkspaceError(f"task {e.task_id} did not merge"))

    async def _leave(self, e: Entry) -> None:
        """Take out an entry whose task stopped waiting (cancelled); those behind rebuild."""
        if e in self.entries:
            self.entries.remove(e)
            self._kick()
        if e.job is not None:
            await asyncio.gather(e.job, return_exceptions=True)
        await offload(GIT, restore, self.ws, e.tree, e.branch)


def restore(ws: Workspace, tree: Path, branch: str) -> None:
    """Put a worktree the queue left detached back on its task's branch (a no-op if it is)."""
    if not (tree / ".git").exists():
        return
    on = run_git("symbolic-ref", "-q", "HEAD", cwd=tree, options=ws.git_options)
    if on.returncode != 0:
        ws.git("cherry-pick", "--abort", cwd=tree, check=False)
        ws.git("checkout", "-q", "--force", branch, cwd=tree)


_queues: dict[str, MergeQueue] = {}


def merge_queue(ws: Workspace, depth: int = 0) -> MergeQueue:
    """Return the merge queue of ``ws`` in the running event loop (made on first use).

    ``depth`` (0: the gate pool's size) is how many entries are validated at once.
    """
    loop = asyncio.get_running_loop()
    key = str(ws.root)
    queue = _queues.get(key)
    if queue is None or queue.loop is not loop:
        queue = _queues[key] = MergeQueue(ws, depth or size(GATES))
    return queue


def stats_of(root: Path | str) -> QueueStats | None:
    """Return what the merge queue of the workspace at ``root`` did (None: it never ran here)."""
    queue = _queues.get(str(root))
    return queue.stats if queue is not None else None
