"""The merge queue on a real repository: parallel validations, main green after every move."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from oldnew.execution import pools
from oldnew.execution.queue import Landed, MergeConflict, Rejected, merge_queue, restore
from oldnew.workspace import Workspace
from tests.queue_plan import clashes, run_plan, sixty


@dataclass
class Verdict:
    """The little of a ValidationResult the queue reads."""

    passed: bool
    why: str = ""


def rule(files: dict[str, str]) -> Verdict:
    """The project's 'gates': no file says BAD, and a.txt and b.txt never both exist."""
    bad = [name for name, text in files.items() if "BAD" in text]
    if bad:
        return Verdict(False, f"{bad[0]} is bad")
    if "a.txt" in files and "b.txt" in files:
        return Verdict(False, "a.txt and b.txt clash")
    return Verdict(True)


def tree_files(tree: Path) -> dict[str, str]:
    return {
        str(p.relative_to(tree)): p.read_text()
        for p in tree.rglob("*")
        if p.is_file() and ".git" not in p.parts
    }


def commit_files(ws: Workspace, commit: str) -> dict[str, str]:
    names = ws.git("ls-tree", "-r", "--name-only", commit).splitlines()
    return {n: ws.git("show", f"{commit}:{n}") + "\n" for n in names}


class Gates:
    """Checks a tree by the rule; counts validations and how many ran at once."""

    def __init__(self, hold: float = 0.0, together: int = 0, slow: str = "") -> None:
        self.lock = threading.Lock()
        self.running = self.most = self.calls = 0
        self.hold, self.together, self.slow = hold, together, slow
        self.met = threading.Event()

    def __call__(self, tree: Path, ahead: list[str]) -> tuple[Verdict, str]:
        with self.lock:
            self.calls += 1
            self.running += 1
            self.most = max(self.most, self.running)
            if self.together and self.running >= self.together:
                self.met.set()
        try:
            verdict = rule(tree_files(tree))
            if self.together:
                self.met.wait(10)  # several validations must be under way at once
            time.sleep(self.hold if self.slow in ("", tree.name) else 0)
            return verdict, f"evidence of {tree.name} with {ahead}"
        finally:
            with self.lock:
                self.running -= 1


def start(ws: Workspace, tid: str, files: dict[str, str]) -> str:
    tree = ws.worktree(tid)
    Workspace.write_files(tree, files)
    own = ws.commit_worktree(tid, f"task {tid}")
    assert own is not None
    return own


async def submit_all(
    ws: Workspace, owns: dict[str, str], gates: Gates, depth: int = 4
) -> dict[str, Any]:
    queue = merge_queue(ws, depth)

    async def one(tid: str) -> Any:
        try:
            return await queue.submit(tid, owns[tid], lambda tree: False, gates)
        except MergeConflict as exc:
            return exc

    waiting = []
    for tid in owns:  # in this order: each is in the queue before the next is submitted
        waiting.append(asyncio.ensure_future(one(tid)))
        while tid not in queue.members() and not waiting[-1].done():
            await asyncio.sleep(0.005)
    results = await asyncio.gather(*waiting)
    return {"out": dict(zip(owns, results, strict=True)), "stats": queue.stats}


def main_commits(ws: Workspace, since: str) -> list[str]:
    return ws.git("rev-list", "--first-parent", "--reverse", f"{since}..{ws.branch}").splitlines()


def assert_green(ws: Workspace, since: str) -> list[str]:
    """Every commit main moved to passes the rule; return the task of each, in order."""
    tasks = []
    for commit in main_commits(ws, since):
        assert rule(commit_files(ws, commit)).passed, f"main went red at {commit}"
        tasks.append(ws.git("log", "-1", "--format=%(trailers:key=Oldnew-Task,valueonly)", commit))
    return [t.strip() for t in tasks]


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    pools.configure(4)  # four validations at once, whatever this machine's CPUs
    yield Workspace.create(tmp_path / "ws", "run-queue", {})
    pools.configure(0)


def test_independent_tasks_validate_at_once_and_land_in_order(ws: Workspace) -> None:
    base = ws.head()
    owns = {f"T{i}": start(ws, f"T{i}", {f"m{i}.txt": f"module {i}\n"}) for i in range(1, 7)}
    gates = Gates(together=3)
    got = asyncio.run(submit_all(ws, owns, gates))
    assert all(isinstance(o, Landed) for o in got["out"].values())
    assert gates.most >= 3, "validations ran one at a time"
    order = assert_green(ws, base)
    assert order == list(owns)  # each task exactly once, in the order it was queued
    # The first was built on what it validated (main had not moved): nothing to re-check.
    assert got["stats"].skipped == 1 and gates.calls == 5
    for i, tid in enumerate(order):  # each was validated with tasks that landed before it
        assert set(got["out"][tid].ahead) <= set(order[:i])
    assert max(len(o.ahead) for o in got["out"].values()) >= 2  # built on unlanded work
    assert sorted(commit_files(ws, ws.head())) == [f"m{i}.txt" for i in range(1, 7)]


def test_a_failure_ahead_rebuilds_those_behind_without_it(ws: Workspace) -> None:
    base = ws.head()
    start(ws, "T0", {"zero.txt": "first\n"})  # lands first, so T1..T3 are all re-checked
    owns = {
        "T0": ws.git("rev-parse", ws.task_branch("T0")),
        "T1": start(ws, "T1", {"one.txt": "BAD\n"}),
        "T2": start(ws, "T2", {"two.txt": "fine\n"}),
        "T3": start(ws, "T3", {"three.txt": "fine\n"}),
    }
    got = asyncio.run(submit_all(ws, owns, Gates(hold=0.5, slow="T1")))
    out = got["out"]
    assert isinstance(out["T1"], Rejected) and not out["T1"].result.passed
    assert out["T1"].base == ws.git("rev-parse", f"{ws.head()}~2")  # judged on main as it was
    assert all(isinstance(out[t], Landed) for t in ("T0", "T2", "T3"))
    assert sorted(assert_green(ws, base)) == ["T0", "T2", "T3"]
    assert all("T1" not in out[t].ahead for t in ("T0", "T2", "T3"))
    assert got["stats"].restarts >= 2  # T2 and T3 had been built on T1's commit


def test_a_clash_with_a_task_ahead_is_the_later_ones_to_fix(ws: Workspace) -> None:
    base = ws.head()
    owns = {"T1": start(ws, "T1", {"a.txt": "a\n"}), "T2": start(ws, "T2", {"b.txt": "b\n"})}
    out = asyncio.run(submit_all(ws, owns, Gates()))["out"]
    assert isinstance(out["T1"], Landed) and isinstance(out["T2"], Rejected)
    assert out["T2"].result.why == "a.txt and b.txt clash"
    assert assert_green(ws, base) == ["T1"]
    # Its worktree is back on its branch (never left detached on a speculative commit).
    tree = ws.worktree("T2")
    assert ws.git("symbolic-ref", "HEAD", cwd=tree) == f"refs/heads/{ws.task_branch('T2')}"


def test_a_conflict_is_told_and_the_worktree_is_back_on_its_branch(ws: Workspace) -> None:
    base = ws.head()
    owns = {
        "T1": start(ws, "T1", {"same.txt": "one\n"}),
        "T2": start(ws, "T2", {"same.txt": "two\n"}),
    }
    out = asyncio.run(submit_all(ws, owns, Gates()))["out"]
    assert isinstance(out["T1"], Landed)
    assert isinstance(out["T2"], MergeConflict) and "conflicts with main" in str(out["T2"])
    assert assert_green(ws, base) == ["T1"]
    tree = ws.worktree("T2")
    assert (tree / "same.txt").read_text() == "two\n"
    assert ws.git("rev-parse", "HEAD", cwd=tree) == owns["T2"]


def test_main_moved_by_someone_else_rebuilds_on_it(ws: Workspace) -> None:
    """A commit on main the queue did not make (a person's, say) is built on, not lost."""
    base = ws.head()
    owns = {"T1": start(ws, "T1", {"one.txt": "1\n"})}
    Workspace.write_files(ws.root, {"person.txt": "theirs\n"})
    ws.git("add", "person.txt")
    ws.git("commit", "-q", "-m", "a person's commit")
    out = asyncio.run(submit_all(ws, owns, Gates()))["out"]
    assert isinstance(out["T1"], Landed) and out["T1"].rebased
    assert "person.txt" in commit_files(ws, ws.head())
    assert assert_green(ws, base)[-1] == "T1"


def test_a_task_main_gained_meanwhile_is_found_not_landed_again(ws: Workspace) -> None:
    """An earlier holder of the run landed the task after its commit node looked: it is done."""
    base = ws.head()
    owns = {"T1": start(ws, "T1", {"one.txt": "1\n"})}
    ws.git("cherry-pick", owns["T1"])  # what an earlier holder published, trailer and all
    landed = ws.head()
    gates = Gates()
    out = asyncio.run(submit_all(ws, owns, gates))["out"]
    assert isinstance(out["T1"], Landed) and out["T1"].reconciled
    assert out["T1"].commit == landed == ws.head()  # not cherry-picked onto itself again
    assert gates.calls == 0 and assert_green(ws, base) == ["T1"]


def test_restore_puts_a_detached_worktree_back_on_its_branch(ws: Workspace) -> None:
    own = start(ws, "T1", {"one.txt": "1\n"})
    tree = ws.worktree("T1")
    ws.git("checkout", "-q", "--detach", ws.head(), cwd=tree)  # as a killed queue leaves it
    restore(ws, tree, ws.task_branch("T1"))
    assert ws.git("rev-parse", "HEAD", cwd=tree) == own
    assert (tree / "one.txt").read_text() == "1\n"


REPO = Path(__file__).resolve().parent.parent


def _log(root: Path) -> list[dict[str, Any]]:
    path = root / ".oldnew" / "events.jsonl"
    out = []
    for line in path.read_text().splitlines() if path.exists() else []:
        with contextlib.suppress(json.JSONDecodeError):
            out.append(json.loads(line))
    return out


def _in_queue(events: list[dict[str, Any]]) -> set[str]:
    """Return the tasks queued and not yet out of the queue (landed, rejected, in conflict)."""
    waiting: set[str] = set()
    for e in events:
        if e.get("node") == "commit" and e.get("event") == "queued":
            waiting.add(e["task"])
        elif e.get("node") == "commit":
            waiting.discard(e.get("task", ""))
    return waiting


def test_sixty_tasks_keep_main_green_through_the_queue_and_a_kill(tmp_path: Path) -> None:
    """60 tasks, three pairs that clash on main; SIGKILL while tasks wait in the queue."""
    root = tmp_path / "ws"
    argv = [sys.executable, "-m", "tests.queue_plan", str(root), "start"]
    with open(tmp_path / "run.log", "wb") as log:
        proc = subprocess.Popen(argv, cwd=REPO, stdout=log, stderr=log, start_new_session=True)
    deadline, killed_with = time.monotonic() + 240, set()
    while proc.poll() is None and time.monotonic() < deadline:
        events = _log(root)
        landed = sum(1 for e in events if e.get("event") == "committed")
        if landed >= 15 and len(_in_queue(events)) >= 2:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            killed_with = _in_queue(events)
            break
        time.sleep(0.01)
    assert killed_with, f"never killed in the queue: {(tmp_path / 'run.log').read_text()[-3000:]}"
    before = _task_trailers(Workspace(root))
    run_plan(root, sixty(), 0.05, resume=True, max_agents=8, gate_slots=8)
    ws = Workspace(root)
    tasks = _task_trailers(ws)
    assert sorted(tasks) == sorted(f"T{i}" for i in range(1, 61))  # each landed exactly once
    assert tasks[: len(before)] == before  # nothing on main was redone or lost
    for commit in main_commits(ws, ws.git("rev-list", "--max-parents=0", ws.branch)):
        files = {n: t for n, t in commit_files(ws, commit).items() if n.endswith(".py")}
        assert not clashes(files), f"main went red at {commit}: {clashes(files)}"
    events = ws.events()
    assert any(e.get("event") == "rejected" for e in events)  # the queue kept a clash off main
    assert [e["event"] for e in events if e.get("node") == "deliver"][-1] == "delivered"


def _task_trailers(ws: Workspace) -> list[str]:
    out = ws.git(
        "log", "--reverse", "--first-parent", "--format=%(trailers:key=Oldnew-Task,valueonly)"
    )
    return [line.strip() for line in out.splitlines() if line.strip()]
