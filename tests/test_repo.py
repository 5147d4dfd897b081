"""Runs on a person's existing git repository: a branch of its own, their checkout untouched."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import BaseMessage
from synthetic import planned_run
from typer.testing import CliRunner

from oldnew import repo as repos
from oldnew.cli import app
from oldnew.errors import WorkspaceError
from oldnew.gates import PROFILES, Profile, validate_tree
from oldnew.runs import RunOutcome, resume_run, start_run, submit_feedback
from oldnew.schemas import FeedbackTriage
from oldnew.testing import CallInfo, FunctionModel, prompt_text
from oldnew.workspace import Workspace

SCOPE = {"title": "counter", "summary": "s", "features": [{"id": "F1", "title": "count words"}]}
PLAN = {
    "tasks": [
        {
            "id": "T1",
            "title": "word counter",
            "description": "count.py: words(text)",
            "files": ["count.py", "tests/test_count.py"],
            "requirement_ids": ["F1"],
        }
    ]
}
CODE = (
    "FILE: count.py\n```python\ndef words(text: str) -> int:\n    return len(text.split())\n```\n"
    "FILE: tests/test_count.py\n```python\nfrom count import words\n\n\n"
    "def test_words() -> None:\n    assert words('a b c') == 3\n```\n"
)


def git(cwd: Path, *args: str, check: bool = True) -> str:
    """Run the person's own git (their identity, no oldnew options)."""
    proc = subprocess.run(
        ["git", "-c", "user.name=person", "-c", "user.email=p@example.org", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"git {args}: {proc.stderr}")
    return proc.stdout.strip()


def make_repo(path: Path) -> Path:
    """Return a repository with two commits on 'trunk', a dirty file and an untracked one."""
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "trunk")
    (path / "lib.py").write_text("VALUE = 1\n")
    (path / "notes.md").write_text("# notes\n")
    git(path, "add", "-A")
    git(path, "commit", "-qm", "first")
    (path / "lib.py").write_text("VALUE = 2\n")
    git(path, "commit", "-qam", "second")
    (path / "lib.py").write_text("VALUE = 3  # the person's uncommitted change\n")
    (path / "scratch.txt").write_text("untracked, never read\n")
    return path


def snapshot(repo: Path) -> dict[str, str]:
    """Return a digest of everything of the person's: files, index, HEAD, refs, config, info."""
    out: dict[str, str] = {}
    for p in sorted(repo.rglob("*")):
        rel = p.relative_to(repo)
        if p.is_file() and rel.parts[0] != ".git":
            out[str(rel)] = hashlib.sha256(p.read_bytes()).hexdigest()
    git_dir = repo / ".git"
    for name in ("index", "HEAD", "config", "info/exclude", "info/attributes", "hooks"):
        p = git_dir / name
        out[f".git/{name}"] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "-"
    refs = git(repo, "for-each-ref", "--format=%(refname) %(objectname)")
    out["refs"] = "\n".join(r for r in refs.splitlines() if not r.startswith("refs/heads/oldnew/"))
    out["status"] = git(repo, "status", "--porcelain=v1", "--untracked-files=all")
    return out


def _scope(tmp_path: Path) -> Path:
    path = tmp_path / "scope.md"
    path.write_text("Count the words of a text.\n")
    return path


def _run(tmp_path: Path, target: Path, seen: list[dict[str, object]] | None = None) -> RunOutcome:
    """Run the one-task scope on ``target``, handing its events to ``seen``."""
    models = planned_run(SCOPE, PLAN, code={"T1": CODE})
    sink = seen.append if seen is not None else None
    return asyncio.run(start_run(_scope(tmp_path), target, models=models, on_event=sink))


@pytest.mark.usefixtures("smoke_gates")
def test_a_run_on_a_repository_works_on_its_own_branch_and_leaves_the_checkout_alone(
    tmp_path: Path,
) -> None:
    repo = make_repo(tmp_path / "repo")
    before = snapshot(repo)
    head = git(repo, "rev-parse", "HEAD")
    seen: list[dict[str, object]] = []
    out = _run(tmp_path, repo, seen)
    assert out.status == "delivered", out
    branch = f"oldnew/{out.run_id}"
    assert snapshot(repo) == before  # checkout, uncommitted change, index, refs: as they were
    # the task's commit sits on the run's branch, on top of the person's HEAD
    log = git(repo, "log", "--format=%s", f"{head}..{branch}").splitlines()
    assert log == ["word counter"]
    assert git(repo, "merge-base", branch, "trunk") == head
    files = git(repo, "ls-tree", "-r", "--name-only", branch).splitlines()
    assert sorted(files) == ["count.py", "lib.py", "notes.md", "tests/test_count.py"]
    # the committed lib.py is the person's last commit, not their uncommitted change
    assert git(repo, "show", f"{branch}:lib.py") == "VALUE = 2"
    # what the person was told when it started
    (note,) = [e for e in seen if e.get("event") == "branched"]
    assert "2 uncommitted change(s)" in str(note["note"])  # lib.py and scratch.txt
    assert "neither reads nor changes them" in str(note["note"])
    # the run's records live in the repository's git folder, never in its history
    root = Path(out.workspace)
    assert root.parent == repo / ".git" / "oldnew"
    assert (root / ".oldnew" / "report.json").is_file()
    assert not git(repo, "log", "--all", "--format=%H", "--", ".oldnew")
    # the baseline indexed the repository for the coder's context: no task's call waits on it
    (taken,) = [e for e in seen if e.get("node") == "baseline" and "indexed" in e]
    assert taken["indexed"]["files"] == 2  # lib.py and notes.md, as committed
    assert (root / ".oldnew" / "repomap-cache.json").is_file()
    # the report says where the work is and how to merge it, and the CLI prints it
    report = json.loads((root / ".oldnew" / "report.json").read_text())
    assert report["branch"]["name"] == branch and report["branch"]["commits"] == 1
    assert f"git -C {repo} merge --no-ff {branch}" in report["branch"]["commands"]
    assert f"git -C {repo} switch trunk" in report["branch"]["commands"]
    printed = CliRunner().invoke(app, ["report", "--workspace", str(repo)])
    assert printed.exit_code == 0, printed.output
    assert "## Your branch" in printed.output and f"merge --no-ff {branch}" in printed.output
    # resume and status find the run from the repository's path
    again = asyncio.run(resume_run(repo, models=planned_run(SCOPE, PLAN, code={"T1": CODE})))
    assert again.status == "delivered" and again.run_id == out.run_id
    assert snapshot(repo) == before


def _conflict(repo: Path) -> None:
    git(repo, "stash", "-q", "-u")
    git(repo, "checkout", "-qb", "other", "HEAD~1")
    (repo / "lib.py").write_text("VALUE = 'other'\n")
    git(repo, "commit", "-qam", "other")
    git(repo, "checkout", "-q", "trunk")


def _merging(repo: Path) -> None:
    _conflict(repo)
    git(repo, "merge", "other", check=False)


def _rebasing(repo: Path) -> None:
    _conflict(repo)
    git(repo, "rebase", "other", check=False)


def _cherry_picking(repo: Path) -> None:
    _conflict(repo)
    git(repo, "cherry-pick", "other", check=False)


@pytest.mark.parametrize(
    ("state", "said"),
    [
        (_merging, "in the middle of a merge"),
        (_rebasing, "in the middle of a rebase"),
        (_cherry_picking, "in the middle of a cherry-pick"),
    ],
)
def test_a_repository_in_the_middle_of_an_operation_is_refused_untouched(
    tmp_path: Path, state: Callable[[Path], None], said: str
) -> None:
    repo = make_repo(tmp_path / "repo")
    state(repo)
    before = snapshot(repo)
    with pytest.raises(WorkspaceError, match=said):
        asyncio.run(start_run(_scope(tmp_path), repo, models=planned_run(SCOPE, PLAN, code={})))
    assert snapshot(repo) == before
    assert not (repo / ".git" / "oldnew").exists()


def test_other_places_that_are_no_repository_top_get_a_message_saying_what_to_do(
    tmp_path: Path,
) -> None:
    repo = make_repo(tmp_path / "repo")
    (repo / "pkg").mkdir()
    (repo / "pkg" / "mod.py").write_text("")
    with pytest.raises(WorkspaceError, match=f"inside the git repository {repo}.*--workspace"):
        repos.find(repo / "pkg")
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "a.txt").write_text("x")
    with pytest.raises(WorkspaceError, match="not empty and is not a git repository.*git -C"):
        repos.find(plain)
    empty = tmp_path / "unborn"
    empty.mkdir()
    git(empty, "init", "-q")
    with pytest.raises(WorkspaceError, match="has no commit yet"):
        repos.find(empty)
    # a new or empty folder is a new project, even inside a repository
    assert repos.find(repo / "new") is None
    (repo / "empty").mkdir()
    assert repos.find(repo / "empty") is None


@pytest.mark.usefixtures("smoke_gates")
def test_a_bare_repository_and_a_detached_head_work(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    git(repo, "stash", "-q", "-u")
    bare = tmp_path / "bare.git"
    git(tmp_path, "clone", "-q", "--bare", str(repo), str(bare))
    out = _run(tmp_path, bare)
    assert out.status == "delivered", out
    assert git(bare, "log", "--format=%s", f"oldnew/{out.run_id}") == (
        "word counter\nsecond\nfirst"
    )
    git(repo, "checkout", "-q", "--detach", "HEAD~1")
    seen: list[dict[str, object]] = []
    out = _run(tmp_path, repo, seen)
    assert out.status == "delivered", out
    assert git(repo, "log", "--format=%s", f"oldnew/{out.run_id}") == "word counter\nfirst"
    assert git(repo, "rev-parse", "--abbrev-ref", "HEAD") == "HEAD"  # still detached
    assert any("detached HEAD" in str(e.get("note")) for e in seen)


def _made(tmp_path: Path) -> tuple[Path, Workspace]:
    repo = make_repo(tmp_path / "repo")
    ws = Workspace.create(repo, "r1", {"context": {}})
    return repo, ws


def test_recovery_clears_only_the_runs_own_git_locks(tmp_path: Path) -> None:
    repo, ws = _made(tmp_path)
    theirs = repo / ".git" / "index.lock"
    theirs.write_text("")  # the person's git is busy right now
    ours = Path(ws.git("rev-parse", "--path-format=absolute", "--git-dir")) / "index.lock"
    ours.write_text("")
    cleared = ws.recover()
    assert theirs.exists() and not ours.exists()
    assert cleared == [str(ours)]
    # the run's records are not 'stray files' of its checkout
    assert (ws.meta / "run.json").is_file() and (ws.meta / "checkpoints.sqlite").is_file()


def test_the_persons_submodules_stay_and_a_task_still_commits(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    sha = git(repo, "rev-parse", "HEAD")
    (repo / ".gitmodules").write_text('[submodule "vendor"]\n\tpath = vendor\n\turl = ../v\n')
    git(repo, "update-index", "--add", "--cacheinfo", f"160000,{sha},vendor")
    git(repo, "add", ".gitmodules")
    git(repo, "commit", "-qm", "a submodule")
    ws = Workspace.create(repo, "r2", {"context": {}})
    tree = ws.worktree("T1")
    (tree / "count.py").write_text("X = 1\n")
    commit = ws.commit_worktree("T1", "word counter")
    assert commit is not None
    shown = git(repo, "ls-tree", commit, "vendor")
    assert shown.startswith("160000 commit")
    assert ws.task_branch("T1") == "oldnew/r2-T1"


def test_a_creation_killed_half_way_is_cleared_by_the_next_run(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    found = repos.find(repo)
    assert found is not None
    home = found.home
    home.mkdir()
    dead = home / "dead"
    git(repo, "worktree", "add", "-q", "-b", "oldnew/dead", str(dead), found.head)
    (home / "creating-dead.json").write_text(json.dumps({"run_id": "dead", "base": found.head}))
    ws = Workspace.create(repo, "alive", {"context": {}})
    assert not dead.exists() and not (home / "creating-dead.json").exists()
    assert not git(repo, "branch", "--list", "oldnew/dead")
    assert ws.branch == "oldnew/alive" and ws.base == found.head
    assert Workspace.open(repo).root == ws.root


def _only(*gates: str) -> Profile:
    return dataclasses.replace(PROFILES["default"], gates=gates)


def test_the_projects_own_test_command_is_run_in_the_sandbox(tmp_path: Path) -> None:
    tree = tmp_path / "p"
    tree.mkdir()
    pyproject = '[project]\nname = "p"\nversion = "0"\n\n[tool.oldnew]\ntest = {}\n'
    script = "import pathlib, sys; print('ran in', pathlib.Path.cwd().name); sys.exit({})"
    (tree / "pyproject.toml").write_text(
        pyproject.format(json.dumps(f'python3 -c "{script.format(0)}"'))
    )
    ok = validate_tree(tree, timeout=60, profile=_only("project-tests"))
    (check,) = ok.checks
    assert check.status == "passed", check
    (tree / "pyproject.toml").write_text(
        pyproject.format(json.dumps(f'python3 -c "{script.format(4)}"'))
    )
    bad = validate_tree(tree, timeout=60, profile=_only("project-tests"))
    (check,) = bad.checks
    assert check.status == "failed" and "exited with 4" in check.summary
    assert "ran in" in check.metrics["output"]
    (diag,) = bad.diagnostics
    assert diag.message.endswith("exited with 4") and diag.line == 0  # the same before and after
    (tree / "pyproject.toml").write_text('[project]\nname = "p"\nversion = "0"\n')
    (tree / "Makefile").write_text("test:\n\t@echo made && exit 0\n")
    made = validate_tree(tree, timeout=60, profile=_only("project-tests"))
    assert made.checks[0].status == "passed" and made.checks[0].command[-1] == "test"
    (tree / "Makefile").unlink()
    none = validate_tree(tree, timeout=60, profile=_only("project-tests"))
    assert none.checks[0].status == "not_run" and not none.checks[0].required and none.passed
    (tree / "pyproject.toml").write_text("[tool.oldnew]\ntest = 3\n")
    wrong = validate_tree(tree, timeout=60, profile=_only("project-tests"))
    assert wrong.checks[0].status == "failed" and "must be a command" in wrong.checks[0].summary


@pytest.mark.usefixtures("smoke_gates")
def test_a_delivered_branch_can_be_checked_out_and_feedback_goes_on_it(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    git(repo, "stash", "-q", "-u")
    models = planned_run(SCOPE, PLAN, code={"T1": CODE})
    out = asyncio.run(start_run(_scope(tmp_path), repo, models=models))
    assert out.status == "delivered", out
    branch = f"oldnew/{out.run_id}"
    git(repo, "switch", "-q", branch)  # the person looks at the work in their own checkout
    assert (repo / "count.py").is_file()
    with pytest.raises(WorkspaceError, match="switch that one to another branch"):
        asyncio.run(resume_run(repo, models=models, restart=False, answers=None))
    git(repo, "switch", "-q", "trunk")
    Workspace.open(repo).hold_branch()  # free again: the run takes its branch back
    assert git(Path(out.workspace), "symbolic-ref", "--short", "HEAD") == branch


def test_a_server_thread_on_a_repository_gets_one_run_of_its_own(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    first = Workspace.ensure(repo, "thread-1")
    assert first.branch == "oldnew/thread-1" and first.root == repo / ".git" / "oldnew" / "thread-1"
    assert Workspace.ensure(repo, "thread-1").root == first.root  # the same run, not a new one
    other = Workspace.ensure(repo, "thread-2")
    assert other.root != first.root and other.task_branch("T1") == "oldnew/thread-2-T1"
    with pytest.raises(WorkspaceError, match="not a valid git branch name"):
        Workspace.ensure(repo, "bad..id")


def test_supporting_files_are_the_first_commit_on_the_runs_branch(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    head = git(repo, "rev-parse", "HEAD")
    ws = Workspace.create(repo, "r3", {"context": {}}, supporting={"samples/a.txt": b"sample\n"})
    assert git(repo, "log", "--format=%s", f"{head}..oldnew/r3") == "Supporting files: 1 (--with)"
    assert git(repo, "show", "oldnew/r3:samples/a.txt") == "sample"
    assert not (repo / "samples").exists() and ws.base == head


def test_the_persons_worktrees_survive_even_when_their_folders_are_away(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    git(repo, "stash", "-q", "-u")
    drive = tmp_path / "usb"
    git(repo, "worktree", "add", "-q", "-b", "feature", str(drive / "feat"))
    (drive / "feat" / "wip.py").write_text("WIP = 1\n")
    git(drive / "feat", "add", "wip.py")
    away = tmp_path / "unplugged"
    drive.rename(away)  # the drive is not mounted while the run works
    ws = Workspace.create(repo, "r4", {"context": {}})
    tree = ws.worktree("T1")
    (tree / "count.py").write_text("X = 1\n")
    assert ws.commit_worktree("T1", "t") is not None
    ws.remove_worktree("T1")
    away.rename(drive)
    assert git(drive / "feat", "diff", "--cached", "--name-only") == "wip.py"  # still theirs


def test_sparse_checkouts_fixtures_and_ignored_files_do_not_stop_a_task(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    git(repo, "stash", "-q", "-u")
    fixture = repo / "tests" / "fixtures" / "sample.git"
    for rel in ("HEAD", "objects/info/packs", "refs/heads/main"):
        (fixture / rel).parent.mkdir(parents=True, exist_ok=True)
        (fixture / rel).write_text("ref: refs/heads/main\n")
    (repo / "vendor" / "old" / ".svn").mkdir(parents=True)
    (repo / "vendor" / "old" / ".svn" / "entries").write_text("12\n")
    (repo / ".gitignore").write_text("*.txt\n")
    (repo / "docs").mkdir()
    (repo / "docs" / "a.md").write_text("# a\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "fixtures")
    git(repo, "sparse-checkout", "set", "docs")  # the person works on docs/ alone
    ws = Workspace.create(repo, "r5", {"context": {}})
    assert (ws.root / "lib.py").is_file() and (ws.root / "tests" / "fixtures").is_dir()
    tree = ws.worktree("T1")
    assert (tree / "lib.py").is_file()
    written = Workspace.write_files(tree, {"count.py": "X = 1\n", "words.txt": "a b\n"})
    assert written == ["count.py", "words.txt"]
    commit = ws.commit_worktree("T1", "t")
    assert commit is not None
    # the task's words.txt is committed, though the repository ignores *.txt
    assert git(repo, "show", f"{commit}:words.txt") == "a b"


def test_a_killed_creation_of_a_server_thread_is_made_again_under_its_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_repo(tmp_path / "repo")

    def killed(self: Workspace, journal: object) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(Workspace, "_finish", killed)
        with pytest.raises(KeyboardInterrupt):
            Workspace.ensure(repo, "thread-9")
    ws = Workspace.ensure(repo, "thread-9")
    assert ws.branch == "oldnew/thread-9" and (ws.meta / "run.json").is_file()


@pytest.mark.usefixtures("smoke_gates")
def test_a_branch_deleted_after_merging_is_made_again_for_more_work(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    git(repo, "stash", "-q", "-u")
    out = _run(tmp_path, repo)
    branch = f"oldnew/{out.run_id}"
    tip = git(repo, "rev-parse", branch)
    git(repo, "merge", "-q", "--no-ff", "-m", "merge", branch)
    git(repo, "branch", "-q", "-D", branch)  # what the person does once merged
    ws = Workspace.open(repo)
    assert ws.head() == tip  # status, report and verify still know where the work is
    assert not git(repo, "branch", "--list", branch)  # and do not bring the branch back
    ws.hold_branch()  # more work (feedback, a resume): the branch is made again, at its tip
    assert git(repo, "rev-parse", branch) == tip


def test_places_oldnew_cannot_branch_from_say_what_to_do(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    git(repo, "stash", "-q", "-u")
    with pytest.raises(WorkspaceError, match=r"inside the git folder .*--workspace"):
        repos.find(repo / ".git" / "refs")
    git(repo, "branch", "oldnew")
    with pytest.raises(WorkspaceError, match="has a branch 'oldnew'.*git branch -m oldnew"):
        Workspace.create(repo, "r6", {})
    git(repo, "branch", "-q", "-D", "oldnew")
    git(repo, "branch", "oldnew/r7-T1")
    with pytest.raises(WorkspaceError, match="already has the branch 'oldnew/r7-T1'"):
        Workspace.create(repo, "r7", {})
    git(repo, "switch", "-q", "--orphan", "fresh")
    with pytest.raises(WorkspaceError, match="on branch fresh, which has no commit yet"):
        repos.find(repo)
    git(repo, "switch", "-q", "trunk")
    (repo / ".oldnew").mkdir()
    (repo / ".oldnew" / "notes").write_text("theirs\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "a folder named like oldnew's")
    with pytest.raises(WorkspaceError, match=r"\.oldnew/ folder of its own.*git mv"):
        repos.find(repo)


@pytest.mark.usefixtures("smoke_gates")
def test_a_repository_of_a_thousand_files_and_binary_assets_works(tmp_path: Path) -> None:
    repo = tmp_path / "big"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "trunk")
    for i in range(1200):
        pkg = repo / f"pkg{i % 40}"
        pkg.mkdir(exist_ok=True)
        (pkg / "__init__.py").write_text("")
        (pkg / f"mod{i}.py").write_text(f"def f{i}(x: int) -> int:\n    return x + {i}\n")
    (repo / "assets").mkdir()
    for i in range(3):
        (repo / "assets" / f"photo{i}.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(1_000_000))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "a big project")
    models = planned_run(SCOPE, PLAN, code={"T1": CODE})
    out = asyncio.run(start_run(_scope(tmp_path), repo, models=models))
    assert out.status == "delivered", out
    events = [
        json.loads(line)
        for line in (Path(out.workspace) / ".oldnew" / "events.jsonl").read_text().splitlines()
    ]
    (context,) = [e for e in events if e.get("event") == "context" and e.get("node") == "code"]
    assert context["files"] >= 1200 and context["tokens"] <= context["budget"]
    assert context["left_out"] > 0  # named in the prompt as left out, not dropped
    (call,) = models["coder"].log.of(role="coder", task="T1")
    text = prompt_text(call.messages)
    assert "PNG" not in text and "\\x00" not in text  # no binary is pasted


@pytest.mark.usefixtures("smoke_gates")
def test_feedback_on_a_delivered_repository_run_adds_its_work_to_the_runs_branch(
    tmp_path: Path,
) -> None:
    repo = make_repo(tmp_path / "repo")
    before = snapshot(repo)
    more = (
        "FILE: shout.py\n```python\ndef shout(text: str) -> str:\n    return text.upper()\n```\n"
        "FILE: tests/test_shout.py\n```python\nfrom shout import shout\n\n\n"
        "def test_shout() -> None:\n    assert shout('a') == 'A'\n```\n"
    )
    triage = {
        "kind": "feature",
        "summary": "shout",
        "features": [{"id": "F2", "title": "shout"}],
        "tasks": [
            {
                "id": "T2",
                "title": "shouter",
                "description": "shout.py: shout(text)",
                "files": ["shout.py", "tests/test_shout.py"],
                "requirement_ids": ["F2"],
            }
        ],
    }

    def reply(messages: list[BaseMessage], info: CallInfo) -> Any:
        if info.schema is FeedbackTriage:
            return triage
        return base(messages, info)

    base = planned_run(SCOPE, PLAN, code={"T1": CODE, "T2": more})["planner"].fn
    models = FunctionModel.per_role(reply)
    out = asyncio.run(start_run(_scope(tmp_path), repo, models=models))
    assert out.status == "delivered", out
    again = asyncio.run(submit_feedback(repo, "also shout", models=models))
    assert again.status == "delivered" and again.run_id == out.run_id, again
    branch = f"oldnew/{out.run_id}"
    assert git(repo, "log", "--format=%s", f"trunk..{branch}") == "shouter\nword counter"
    assert snapshot(repo) == before


@pytest.mark.usefixtures("smoke_gates")
def test_a_file_name_that_is_not_utf8_is_carried_along_untouched(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    git(repo, "stash", "-q", "-u")
    odd = os.fsdecode(b"caf\xe9.txt")  # a Latin-1 name, as old repositories have
    (repo / odd).write_text("menu\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "a Latin-1 name")
    out = _run(tmp_path, repo)
    assert out.status == "delivered", out
    listed = subprocess.run(
        ["git", "ls-tree", "-r", "-z", "--name-only", f"oldnew/{out.run_id}"],
        cwd=repo,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    assert b"caf\xe9.txt" in listed and b"count.py" in listed
