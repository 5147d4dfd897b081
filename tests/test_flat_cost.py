"""Per-task cost flat in project size: the evidence index, the task-commit index, the reuse
key by blob id and recycled worktrees, each right after normal use, after a kill between its
two writes, and on a workspace an earlier release made (no index yet)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from oldnew import commits
from oldnew.bench.flat import counting_git
from oldnew.evidence import INDEX, EvidenceIndex
from oldnew.gates import Check, ValidationResult
from oldnew.gates.runner import files_key
from oldnew.nodes.checks import _passed_before, next_evidence_name, record_evidence
from oldnew.report import regression_summary
from oldnew.workspace import SPARES, Workspace


def _result(key: str, passed: bool = True) -> ValidationResult:
    status = "passed" if passed else "failed"
    result = ValidationResult(checks=[Check("pytest", status, ["pytest"], 0, 0.1, status)])
    result.reuse_key = key
    return result


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return Workspace.create(tmp_path / "ws", "run1", {})


def _deliver(ws: Workspace, task_id: str, files: dict[str, str | None]) -> str:
    tree = ws.worktree(task_id)
    Workspace.write_files(tree, files)
    assert ws.commit_worktree(task_id, f"task {task_id}") is not None
    ws.rebase_onto_main(task_id)
    commit = ws.fast_forward_main(ws.task_branch(task_id))
    ws.remove_worktree(task_id)
    return commit


# -- evidence ------------------------------------------------------------------------------


def test_evidence_index_after_normal_use(ws: Workspace) -> None:
    record_evidence(ws, "T1-01", _result("k1", passed=False), task="T1")
    record_evidence(ws, "T1-02", _result("k1"), task="T1")
    reused = _result("k2")
    reused.reused_from = ".oldnew/evidence/T1-02.json"
    record_evidence(ws, "T2-01", reused, task="T2")
    found = _passed_before(ws, "k1")
    assert found is not None and found.reused_from == ".oldnew/evidence/T1-02.json"
    assert _passed_before(ws, "k2") is None  # a reuse is never reused again
    assert next_evidence_name(ws, "T1") == "T1-03"
    assert next_evidence_name(ws, "T2") == "T2-02"
    assert next_evidence_name(ws, "T1-1") == "T1-1-01"  # T1's files are not T1-1's


def test_evidence_index_after_a_kill_between_its_writes(ws: Workspace) -> None:
    index = EvidenceIndex(ws.meta)
    # Killed after the index entry, before the file: never recorded, a miss.
    index.record("T1-01", {"reuse_key": "k1", "passed": True}, lambda: None)
    assert _passed_before(ws, "k1") is None
    assert next_evidence_name(ws, "T1") == "T1-02"
    # Killed after the file, before the index knew the folder: found all the same.
    ws.write_json("evidence/T3-01.json", {"reuse_key": "k3", "passed": True})
    assert _passed_before(ws, "k3") is not None
    assert next_evidence_name(ws, "T3") == "T3-02"


def test_a_missing_or_stale_index_is_rebuilt_once(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    record_evidence(ws, "T1-01", _result("k1"), task="T1")
    shutil.rmtree(ws.meta / INDEX)
    rebuilds = []
    real = EvidenceIndex.rebuild
    monkeypatch.setattr(EvidenceIndex, "rebuild", lambda self: rebuilds.append(1) or real(self))
    for _ in range(3):
        assert _passed_before(ws, "k1") is not None
        assert next_evidence_name(ws, "T1") == "T1-02"
    (ws.meta / INDEX / "state.json").write_text("{torn", encoding="utf-8")
    monkeypatch.setattr("oldnew.evidence._known", {})  # as a new process would
    assert _passed_before(ws, "k1") is not None
    assert len(rebuilds) == 2


def test_evidence_of_an_earlier_release_is_indexed(ws: Workspace) -> None:
    for name, key in (("T1-01", "k1"), ("T1-02", "k1"), ("T2-01", "k2")):
        ws.write_json(f"evidence/{name}.json", _result(key).to_dict())
    assert not (ws.meta / INDEX).exists()
    found = _passed_before(ws, "k1")
    assert found is not None and found.reused_from.endswith("T1-01.json")  # the first, as before
    assert next_evidence_name(ws, "T1") == "T1-03"
    assert _passed_before(ws, "k9") is None


# -- task commits --------------------------------------------------------------------------


def _commit(ws: Workspace, task_id: str) -> str:
    ws.git("commit", "-q", "--allow-empty", "-m", f"task {task_id}\n\nOldnew-Task: {task_id}\n")
    return ws.head()


def test_task_commits_after_normal_use(ws: Workspace) -> None:
    first = _commit(ws, "T1")
    assert ws.find_task_commit("T1") == first
    assert ws.find_task_commit("T2") is None
    second = _commit(ws, "T2")
    again = _commit(ws, "T1")  # delivered again (feedback): the newest counts
    with counting_git() as seen:
        assert ws.find_task_commit("T2") == second
    assert [argv[0] for argv in seen] == ["rev-parse", "log"]  # the head, the commits since
    assert f"{first}..{again}" in seen[1]
    with counting_git() as seen:
        assert ws.find_task_commits(["T1", "T2", "T9"]) == {"T1": again, "T2": second}
    assert [argv[0] for argv in seen] == ["rev-parse"]  # main has not moved: nothing walked
    assert ws.find_task_commit("T1") == again
    assert ws.find_task_commit("T1-1") is None


def test_task_commits_after_a_kill_before_the_index_write(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    _commit(ws, "T1")
    assert ws.find_task_commit("T1")
    journal = ws.meta / commits.JOURNAL
    lagging = journal.read_text(encoding="utf-8")
    moved = _commit(ws, "T2")  # main moved; the process was killed before the index caught up
    journal.write_text(lagging + '{"version": 1, "bra', encoding="utf-8")  # and a torn line
    monkeypatch.setattr(commits, "_known", {})
    assert ws.find_task_commit("T2") == moved
    journal.unlink()
    monkeypatch.setattr(commits, "_known", {})
    assert ws.find_task_commit("T2") == moved


def test_task_commits_after_main_moved_back(ws: Workspace) -> None:
    base = ws.head()
    _commit(ws, "T1")
    assert ws.find_task_commit("T1")
    ws.git("reset", "-q", "--hard", base)  # a fork put main back
    assert ws.find_task_commit("T1") is None
    other = _commit(ws, "T2")
    assert ws.find_task_commit("T1") is None
    assert ws.find_task_commit("T2") == other


def test_task_commits_of_an_earlier_release(ws: Workspace) -> None:
    delivered = _commit(ws, "T1")
    _commit(ws, "T2")
    assert not (ws.meta / commits.JOURNAL).exists()
    assert ws.find_task_commit("T1") == delivered
    line = json.loads((ws.meta / commits.JOURNAL).read_text(encoding="utf-8").splitlines()[0])
    assert line["from"] is None and set(line["tasks"]) == {"T1", "T2"}


# -- reuse key -----------------------------------------------------------------------------


def test_reuse_key_is_the_same_for_the_same_files(ws: Workspace) -> None:
    tree = ws.worktree("T1")
    Workspace.write_files(tree, {"app.py": "x = 1\n", "lib/util.py": "y = 2\n"})
    staged = files_key(tree)
    (tree / "notes.txt").write_text("new\n", encoding="utf-8")  # new, not ignored: counts
    untracked = files_key(tree)
    (tree / "notes.txt").unlink()
    (tree / "app.py").write_text("x = 2\n", encoding="utf-8")  # changed, not staged: counts
    changed = files_key(tree)
    (tree / "app.py").write_text("x = 1\n", encoding="utf-8")
    (tree / "__pycache__").mkdir()
    (tree / "__pycache__" / "app.pyc").write_bytes(b"\0")  # ignored: no part of it
    assert files_key(tree) == staged
    assert len({staged, untracked, changed}) == 3
    ws.commit_worktree("T1", "task T1")
    ws.rebase_onto_main("T1")
    ws.fast_forward_main(ws.task_branch("T1"))
    assert files_key(ws.root) == staged  # main after the commit: the tree T1 validated


# -- worktrees -----------------------------------------------------------------------------


def test_a_finished_worktree_is_recycled_clean(ws: Workspace) -> None:
    tree = ws.worktree("T1")
    (tree / "__pycache__").mkdir()
    (tree / "__pycache__" / "a.pyc").write_bytes(b"\0")  # ignored: left behind by a commit
    _deliver(ws, "T1", {"a.py": "a = 1\n"})
    assert len(list((ws.meta / SPARES).iterdir())) == 1
    assert not ws.git("branch", "--list", ws.task_branch("T1"))
    with counting_git() as seen:
        again = ws.worktree("T2")
    assert [argv[0] for argv in seen] == ["checkout", "clean", "worktree"]  # no fresh add
    assert not list((ws.meta / SPARES).iterdir())
    assert ws.git("symbolic-ref", "HEAD", cwd=again) == f"refs/heads/{ws.task_branch('T2')}"
    assert ws.git("rev-parse", "HEAD", cwd=again) == ws.head()
    assert (again / "a.py").is_file() and not (again / "__pycache__").exists()
    assert not ws.git("status", "--porcelain", "--ignored", cwd=again)
    _deliver(ws, "T2", {"b.py": "b = 1\n"})
    assert ws.find_task_commit("T2") == ws.head()


def test_a_spare_that_cannot_be_recycled_is_dropped(ws: Workspace) -> None:
    (ws.meta / SPARES / "broken").mkdir(parents=True)  # a kill left half a spare
    tree = ws.worktree("T1")
    assert ws.git("symbolic-ref", "HEAD", cwd=tree) == f"refs/heads/{ws.task_branch('T1')}"
    assert not (ws.meta / SPARES / "broken").exists()


def test_a_folder_where_a_worktree_goes_is_replaced_by_the_recycled_spare(ws: Workspace) -> None:
    _deliver(ws, "T1", {"a.py": "a = 1\n"})  # a spare to recycle
    debris = ws.meta / "worktrees" / "T2"
    (debris / "pkg").mkdir(parents=True)  # a kill while T2's worktree was made or removed
    (debris / "pkg" / "left.py").write_text("x = 1\n", encoding="utf-8")
    tree = ws.worktree("T2")
    assert tree == debris and (tree / ".git").is_file()  # the spare is the worktree, not in it
    assert ws.git("symbolic-ref", "HEAD", cwd=tree) == f"refs/heads/{ws.task_branch('T2')}"
    assert not (tree / "pkg").exists() and (tree / "a.py").is_file()
    assert ws.worktree("T2") == tree


def test_reuse_key_of_a_folder_without_git(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("x = 1\n", encoding="utf-8")
    first = files_key(tmp_path)
    (tmp_path / "app.py").write_text("x = 2\n", encoding="utf-8")
    assert files_key(tmp_path) != first


def test_the_report_reads_only_the_tasks_own_evidence_newest_first(ws: Workspace) -> None:
    for name, status in (("T1-01", "failed"), ("T1-02", "passed"), ("T1-1-01", "failed")):
        result = _result(name)
        result.checks.append(Check("regression", status, [], 0, 0.1, f"{name} {status}"))
        record_evidence(ws, name, result, task=name.rsplit("-", 1)[0])
    summary = regression_summary(ws, "T1")
    assert summary is not None and summary.startswith("passed: T1-02 passed")
    assert regression_summary(ws, "T2") is None
