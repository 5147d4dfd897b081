"""Faults that must never lose work or leave a person stuck.

A kill while the workspace is made, lost or damaged checkpoints, a read-only workspace, a
full disk: each ends with a clear error (exit 2) that says what is intact and what to do,
and the commits on main are untouched.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import EXAMPLE
from typer.testing import CliRunner

from oldnew.cli import app
from oldnew.errors import CheckpointsCorrupt
from oldnew.runs import session
from oldnew.workspace import new_checkpoints

pytestmark = pytest.mark.usefixtures("smoke_gates")
SCOPE = str(EXAMPLE / "scope.md")


def _git(ws: Path, *args: str) -> str:
    out = subprocess.run(["git", *args], cwd=ws, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def _task_commits(ws: Path) -> list[str]:
    """Return the steps committed on main by their trailers: the tasks and the tester's suite."""
    out = _git(ws, "log", "main", "--format=%(trailers:key=Oldnew-Task,valueonly)")
    return sorted(line.strip() for line in out.splitlines() if line.strip())


class Waiting:
    """The example's run at its one question, made once per module, restored per test."""

    def __init__(self, slot: Path, copy: Path, main: str) -> None:
        self.slot = slot
        """The folder the run was made in (as ``slot / "ws"``), empty between tests."""
        self.copy = copy
        self.main = main
        """Main's commit id at the question."""

    @property
    def ws(self) -> Path:
        """The workspace's path: the one it was made at (git and the run hold it)."""
        return self.slot / "ws"

    def restore(self) -> str:
        """Put a fresh copy of the run at :attr:`ws`; return main's commit id."""
        shutil.copytree(self.copy, self.ws, symlinks=True)
        return self.main


@pytest.fixture(scope="module")
def _waiting_once(tmp_path_factory: pytest.TempPathFactory) -> Waiting:
    """Run the example to its one question (the module's faults start there: ~10 s a run)."""
    top = tmp_path_factory.mktemp("waiting")
    slot = top / "slot"
    slot.mkdir()
    ws = slot / "ws"
    with pytest.MonkeyPatch.context() as mp:  # the function-scoped fixtures are not set yet
        mp.setenv("OLDNEW_QUALITY", os.environ.get("OLDNEW_TEST_QUALITY", "smoke"))
        mp.setenv("OLDNEW_MEMORY_PATH", str(top / "memory.sqlite"))
        model = f"scripted:{EXAMPLE / 'transcript.toml'}"
        res = CliRunner().invoke(app, ["run", SCOPE, "-w", str(ws), "-m", model])
    assert res.exit_code == 3, res.output
    assert _task_commits(ws) == ["T1", "T2", "acceptance-1"]
    main = _git(ws, "rev-parse", "main")
    ws.rename(top / "copy")
    return Waiting(slot, top / "copy", main)


@pytest.fixture
def waiting(_waiting_once: Waiting) -> Iterator[Waiting]:
    """The module's waiting run, for a test to restore; its slot is emptied afterwards."""
    yield _waiting_once
    shutil.rmtree(_waiting_once.ws, ignore_errors=True)


def _finish(ws: Path) -> None:
    res = CliRunner().invoke(app, ["answer", "-w", str(ws), "T3-q1", "~/.todo.json"])
    assert res.exit_code == 0, res.output
    assert _task_commits(ws) == ["T1", "T2", "T3", "acceptance-1"]


# -- a kill while the workspace is made ----------------------------------------------------

# Runs `oldnew run` in processes that SIGKILL themselves at the Nth step of Workspace.create
# (before or after each file, directory, git or database operation it makes): deterministic
# kill points, one process per point. The script imports oldnew once, then forks a child per
# point (nothing has run yet, no thread is started): each child is a fresh `oldnew run` whose
# output goes to out<N>.txt; the parent prints each child's exit as a JSON line.
KILLER = """
import json, os, shutil, signal, sqlite3, subprocess, sys
from pathlib import Path
import oldnew.workspace as w

target, steps = 0, [0]
inside = [False]

def step():
    if inside[0]:
        steps[0] += 1
        if steps[0] == target:
            os.kill(os.getpid(), signal.SIGKILL)

def around(owner, name):
    real = getattr(owner, name)
    def wrapped(*a, **k):
        step()
        out = real(*a, **k)
        step()
        return out
    setattr(owner, name, wrapped)

for owner, name in [(subprocess, "run"), (os, "replace"), (Path, "mkdir"),
                    (Path, "write_text"), (Path, "unlink"), (shutil, "rmtree"),
                    (sqlite3, "connect")]:
    around(owner, name)
real_create = w.Workspace.create.__func__

def create(cls, *a, **k):
    inside[0] = True
    try:
        return real_create(cls, *a, **k)
    finally:
        inside[0] = False
        print(f"STEPS {steps[0]}", flush=True)

w.Workspace.create = classmethod(create)
from oldnew.cli import app
from oldnew.errors import CheckpointsCorrupt

folder, points, argv = Path(sys.argv[1]), [int(n) for n in sys.argv[2].split(",")], sys.argv[3:]
for point in points:
    pid = os.fork()
    if pid == 0:
        out = os.open(folder / f"out{point}.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(out, 1)
        os.dup2(out, 2)
        target = point
        try:
            app([arg.replace("{N}", str(point)) for arg in argv])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    status = os.waitpid(pid, 0)[1]
    print(json.dumps({"at": point, "rc": os.waitstatus_to_exitcode(status)}), flush=True)
"""


GOES_ON = ("--approvals", "scope")
"""A killed creation's run stops at the scope's approval once it goes on: past creation, cheap.
Every fourth one is approved and run on to the example's question (all its tasks' work)."""


def _run_killed(
    tmp_path: Path, ws: str, model: str, points: list[int]
) -> dict[int, tuple[int, str]]:
    """Run `oldnew run` killed at each of ``points``; return each one's exit code and output.

    ``ws`` is the workspace's path with ``{N}`` for the point.
    """
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    argv = [sys.executable, str(script), str(tmp_path), ",".join(map(str, points))]
    argv += ["run", SCOPE, "-w", ws, "-m", model, *GOES_ON]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    exits = [json.loads(line) for line in done.stdout.splitlines()]
    assert [e["at"] for e in exits] == points, done.stdout + done.stderr
    return {e["at"]: (e["rc"], (tmp_path / f"out{e['at']}.txt").read_text()) for e in exits}


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.usefixtures("smoke_gates")  # creation is under test: each run's gates are not
def test_kill_at_every_step_of_creation_leaves_a_run_that_goes_on(
    tmp_path: Path, example_model: str
) -> None:
    # Unkilled (target 0 is never reached): how many steps creation takes.
    ((code, output),) = _run_killed(tmp_path, str(tmp_path / "probe"), example_model, [0]).values()
    assert code == 3, output
    total = int(output.split("STEPS ")[1].split()[0])
    assert total >= 20, output

    points = list(range(1, total + 1))
    for at in points:
        if at % 3 == 0:
            (tmp_path / f"ws{at}").mkdir()  # a directory the person made empty beforehand
    kills = _run_killed(tmp_path, str(tmp_path / "ws{N}"), example_model, points)
    outcomes = {"run": 0, "resume": 0}
    for at in points:
        ws = tmp_path / f"ws{at}"
        code, output = kills[at]
        if code != -9:  # a directory made beforehand saves creation a step
            steps = int(output.split("STEPS ")[1].split()[0])
            assert code == 3 and steps < at, f"step {at}: {output}"
            continue
        # The person goes on: 'resume' when a run is there (or being made), else 'run'.
        has_run = (ws / ".oldnew" / "run.json").exists() or (
            ws / ".oldnew" / "creating.json"
        ).exists()
        if at % 2 and has_run:
            res = CliRunner().invoke(app, ["resume", "-w", str(ws)])
            outcomes["resume"] += 1
        else:
            again = ["run", SCOPE, "-w", str(ws), "-m", example_model, *GOES_ON]
            res = CliRunner().invoke(app, again)
            if res.exit_code == 2 and "belongs to run" in res.output:
                res = CliRunner().invoke(app, ["resume", "-w", str(ws)])
                outcomes["resume"] += 1
            else:
                outcomes["run"] += 1
        assert res.exit_code == 3 and "scope" in res.output, f"step {at}: {res.output}"
        assert not (ws / ".oldnew" / "creating.json").exists()
        info = json.loads((ws / ".oldnew" / "run.json").read_text())
        assert info["context"]["model"] == example_model
        if at % 4 == 0:
            res = CliRunner().invoke(app, ["approve", "-w", str(ws), "scope"])
            assert res.exit_code == 3, f"step {at}: {res.output}"
            assert _task_commits(ws) == ["T1", "T2", "acceptance-1"], f"step {at}: {res.output}"
    # Both ways on were taken: kills before the journal (run) and after it (resume).
    assert outcomes["run"] >= 3 and outcomes["resume"] >= 3, outcomes


def test_killed_creation_refuses_a_directory_someone_wrote_into(
    tmp_path: Path, example_model: str
) -> None:
    ws = tmp_path / "ws"
    meta = ws / ".oldnew"
    meta.mkdir(parents=True)
    (meta / "creating.json").write_text(
        json.dumps({"run_id": "r0", "created": "x", "settings": {}, "files": {}})
    )
    (ws / "mine.txt").write_text("precious")
    res = CliRunner().invoke(app, ["run", SCOPE, "-w", str(ws), "-m", example_model])
    assert res.exit_code == 2 and "is not empty" in res.output
    assert (ws / "mine.txt").read_text() == "precious"


# -- checkpoints lost or damaged -----------------------------------------------------------


def test_deleted_checkpoints_are_explained_and_restart_is_explicit(waiting: Waiting) -> None:
    ws = waiting.ws
    main = waiting.restore()
    (ws / ".oldnew" / "checkpoints.sqlite").unlink()
    for argv in (["status", "-w", str(ws)], ["resume", "-w", str(ws)]):
        res = CliRunner().invoke(app, argv)
        assert res.exit_code == 2, res.output
        assert "checkpoints" in res.output and "are missing" in res.output
        assert "T1" in res.output and "T2" in res.output  # what is intact
        assert f"oldnew resume --workspace {ws.resolve()} --restart" in res.output
    assert not (ws / ".oldnew" / "checkpoints.sqlite").exists()  # nothing silently re-made
    assert _git(ws, "rev-parse", "main") == main
    res = CliRunner().invoke(app, ["resume", "-w", str(ws), "--restart"])
    assert res.exit_code == 3, res.output
    assert _git(ws, "rev-list", "--count", "main") == "4"  # start + suite + T1 + T2, none twice
    _finish(ws)


def test_emptied_checkpoints_do_not_rerun_silently(waiting: Waiting) -> None:
    ws = waiting.ws
    main = waiting.restore()
    db = ws / ".oldnew" / "checkpoints.sqlite"
    db.unlink()
    new_checkpoints(db)  # an empty database in its place (a restored blank file)
    res = CliRunner().invoke(app, ["resume", "-w", str(ws)])
    assert res.exit_code == 2, res.output
    assert "hold nothing of run" in res.output and "--restart" in res.output
    assert _git(ws, "rev-parse", "main") == main


def test_restart_is_refused_while_checkpoints_hold_the_run(waiting: Waiting) -> None:
    ws = waiting.ws
    main = waiting.restore()
    res = CliRunner().invoke(app, ["resume", "-w", str(ws), "--restart"])
    assert res.exit_code == 2 and "are intact" in res.output, res.output
    assert _git(ws, "rev-parse", "main") == main
    _finish(ws)


@pytest.mark.parametrize("damage", ["truncate", "overwrite"])
def test_damaged_checkpoints_are_reported_with_what_is_intact(
    waiting: Waiting, damage: str
) -> None:
    ws = waiting.ws
    main = waiting.restore()
    db = ws / ".oldnew" / "checkpoints.sqlite"
    data = db.read_bytes()
    damaged = data[: len(data) // 3] if damage == "truncate" else b"\0" * 100 + data[100:]
    db.write_bytes(damaged)
    res = CliRunner().invoke(app, ["status", "-w", str(ws)])
    assert res.exit_code == 2, res.output
    assert "are damaged" in res.output and "T1" in res.output and "--restart" in res.output
    assert "Traceback" not in res.output
    assert _git(ws, "rev-parse", "main") == main
    res = CliRunner().invoke(app, ["resume", "-w", str(ws), "--restart"])
    assert res.exit_code == 3, res.output
    kept = list((ws / ".oldnew").glob("checkpoints.sqlite.damaged-*"))
    assert len(kept) == 1 and kept[0].read_bytes() == damaged  # set aside, not deleted
    _finish(ws)


# -- read-only workspace, full disk --------------------------------------------------------


@contextlib.contextmanager
def _mounted(*argv: str, target: Path) -> Iterator[None]:
    proc = subprocess.run(["mount", *argv, str(target)], capture_output=True, check=False)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount here: {proc.stderr.decode().strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


def test_read_only_workspace_is_a_clear_error(waiting: Waiting, example_model: str) -> None:
    ws = waiting.ws
    main = waiting.restore()
    # A read-only bind mount of the workspace over itself stops root too (chmod does not).
    with _mounted("--bind", "-o", "ro", str(ws), target=ws):
        probe = ws / "probe"
        with pytest.raises(OSError):
            probe.write_text("x")
        res = CliRunner().invoke(app, ["answer", "-w", str(ws), "T3-q1", "~/.todo.json"])
        assert res.exit_code == 2, res.output
        assert "cannot write" in res.output and str(ws.resolve()) in res.output
        assert "Read-only file system" in res.output and "make it writable" in res.output
        assert "Traceback" not in res.output
        res = CliRunner().invoke(app, ["status", "-w", str(ws)])
        assert res.exit_code in (2, 3), res.output  # shown, or refused with a reason
        assert "Traceback" not in res.output
        if res.exit_code == 2:
            assert "make it writable" in res.output
        new = ws / "sub"
        res = CliRunner().invoke(app, ["run", SCOPE, "-w", str(new), "-m", example_model])
        assert res.exit_code == 2 and f"cannot write {new.resolve()}" in res.output, res.output
    assert _git(ws, "rev-parse", "main") == main
    _finish(ws)


def _fill(disk: Path, leave: int) -> Path:
    """Fill the filesystem of ``disk`` until ``leave`` bytes or fewer are free."""
    ballast = disk / "ballast"
    with open(ballast, "wb") as fh:
        while True:
            free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
            if free <= leave:
                break
            try:
                fh.write(b"\0" * min(1 << 20, free - leave))
                fh.flush()
            except OSError:
                break
    return ballast


def test_full_disk_before_a_step_names_the_space_needed(
    waiting: Waiting, example_model: str
) -> None:
    disk = waiting.slot
    with _mounted("-t", "tmpfs", "-o", "size=64m", "tmpfs", target=disk):
        ws = waiting.ws
        main = waiting.restore()
        ballast = _fill(disk, 1_000_000)
        res = CliRunner().invoke(app, ["answer", "-w", str(ws), "T3-q1", "~/.todo.json"])
        assert res.exit_code == 2, res.output
        assert f"the disk of {ws.resolve()} has" in res.output
        assert "MB free; a run needs at least 20.0 MB" in res.output
        assert _git(ws, "rev-parse", "main") == main
        res = CliRunner().invoke(app, ["run", SCOPE, "-w", str(disk / "new"), "-m", example_model])
        assert res.exit_code == 2 and "a run needs at least" in res.output, res.output
        assert not (disk / "new").exists()
        ballast.unlink()
        _finish(ws)


@pytest.mark.parametrize("leave", [0, 50_000, 150_000, 300_000])
def test_disk_filling_up_mid_run_is_a_clear_error(
    waiting: Waiting,
    monkeypatch: pytest.MonkeyPatch,
    leave: int,
) -> None:
    disk = waiting.slot
    with _mounted("-t", "tmpfs", "-o", "size=64m", "tmpfs", target=disk):
        ws = waiting.ws
        main = waiting.restore()
        monkeypatch.setattr(session, "MIN_FREE_BYTES", 0)  # let the run start, then hit it
        ballast = _fill(disk, leave)
        res = CliRunner().invoke(app, ["answer", "-w", str(ws), "T3-q1", "~/.todo.json"])
        assert res.exit_code == 2, res.output
        assert "no space left to write" in res.output and "MB free" in res.output
        assert f"oldnew resume --workspace {ws.resolve()}" in res.output
        assert "Traceback" not in res.output
        # Work may have landed before the disk filled up; none that was there is lost.
        _git(ws, "merge-base", "--is-ancestor", main, "main")
        _git(ws, "fsck", "--no-dangling")
        ballast.unlink()
        monkeypatch.undo()
        res = CliRunner().invoke(app, ["resume", "-w", str(ws)])
        if res.exit_code == 3:  # the answer was not taken before the disk filled up
            _finish(ws)
        else:
            assert res.exit_code == 0, res.output
            assert _task_commits(ws) == ["T1", "T2", "T3", "acceptance-1"]


def test_creation_killed_inside_git_init_is_finished_by_resume(
    tmp_path: Path, example_model: str
) -> None:
    # What a kill while git itself writes can leave: a journal and a half-made .git.
    ws = tmp_path / "ws"
    (ws / ".git" / "objects").mkdir(parents=True)
    (ws / ".git" / "HEAD").write_text("ref: refs/heads/ma")
    settings = {"scope_file": SCOPE, "context": {"model": example_model}}
    journal = {"run_id": "r1", "created": "now", "settings": settings, "files": {}}
    journal["files"] = {"scope.md": (EXAMPLE / "scope.md").read_text()}
    (ws / ".oldnew").mkdir()
    (ws / ".oldnew" / "creating.json").write_text(json.dumps(journal))
    res = CliRunner().invoke(app, ["resume", "-w", str(ws)])
    assert res.exit_code == 3, res.output
    assert json.loads((ws / ".oldnew" / "run.json").read_text())["run_id"] == "r1"
    assert _task_commits(ws) == ["T1", "T2", "acceptance-1"]
    assert not (ws / ".oldnew" / "creating.json").exists()


def test_damage_met_while_working_is_reported_not_a_traceback(
    tmp_path: Path, waiting: Waiting
) -> None:
    ws = waiting.ws
    main = waiting.restore()
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"not a database at all" * 500)
    with pytest.raises(CheckpointsCorrupt, match="found damaged") as caught:
        with session.disk_faults(ws):
            sqlite3.connect(garbage).execute("SELECT * FROM checkpoints")
    assert "T1" in str(caught.value) and "oldnew status" in str(caught.value)
    with pytest.raises(ZeroDivisionError), session.disk_faults(ws):
        _ = 1 / 0  # anything else is no disk fault and goes through unchanged
    assert _git(ws, "rev-parse", "main") == main


def test_verify_and_memory_report_a_full_disk_as_what_to_do(
    waiting: Waiting, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from oldnew.gates import verify

    ws = waiting.ws
    head = waiting.restore()

    def full(*_: object, **__: object) -> object:
        raise OSError(errno.ENOSPC, "No space left on device", str(ws / ".oldnew" / "evidence"))

    monkeypatch.setattr(verify, "verify_workspace", full)
    res = CliRunner().invoke(app, ["verify", "-w", str(ws)])
    assert res.exit_code == 2 and "no space left to write" in res.output, res.output
    assert "the commits on main are intact" in res.output
    monkeypatch.setattr("oldnew.cli.memory_listing", full)
    res = CliRunner().invoke(app, ["memory", "-w", str(ws)])
    assert res.exit_code == 2 and "no space left to write" in res.output, res.output
    assert _git(ws, "rev-parse", "main") == head
