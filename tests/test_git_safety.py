"""Generated files never get a command run through git, on the write path or in oldnew's git.

The hostile cases are TOML files in tests/hostile/git/: files a model writes to smuggle a
repository, a hook or a submodule into the project. Each one is run three ways:

- through the write path the coder and fixer use: refused with the case's message, nothing
  written;
- planted on disk behind oldnew's back: the commit is refused before ``git add``, and
  oldnew's own git calls in that worktree (and inside the planted repository) run nothing;
- for the cases marked ``live``, with plain git in a scratch repository: the command runs
  there, which proves the case is real and the two checks above are not vacuous.
"""

from __future__ import annotations

import ast
import asyncio
import hashlib
import os
import subprocess
import tomllib
import uuid
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import HumanMessage

from oldnew.errors import PathViolation
from oldnew.models import ScriptedChatModel, ScriptedReply
from oldnew.nodes.coding import files_from_model
from oldnew.recovery.retry import RetryPolicy
from oldnew.safegit import git_environment, nested_control_paths, run_git
from oldnew.workspace import Workspace

HOSTILE = Path(__file__).parent / "hostile"
CASES_DIR = HOSTILE / "git"
CASES = sorted(p.stem for p in CASES_DIR.glob("*.toml"))
BASE = tomllib.loads((HOSTILE / "_base.toml").read_text())["files"]
PACKAGE = Path(__file__).resolve().parent.parent / "oldnew"


def _plain_git(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run git as a person would: their config, no oldnew options."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    return subprocess.run(
        ["git", "-c", "user.name=p", "-c", "user.email=p@localhost", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def _snapshot(root: Path, skip: tuple[Path, ...] = ()) -> dict[str, str]:
    """Return path -> hash of every file, link and folder under ``root``.

    Git's index files are left out: a status may refresh them, which is git's own business.
    """
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if Path(dirpath, d) not in skip]
        for name in filenames + dirnames:
            path = Path(dirpath, name)
            if name == "index" and ".git" in path.parts:
                continue
            if path.is_symlink():
                out[str(path)] = "link:" + os.readlink(path)
            elif path.is_dir():
                out[str(path)] = "dir"
            else:
                out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def _case(name: str) -> dict[str, Any]:
    return tomllib.loads((CASES_DIR / f"{name}.toml").read_text())


def _fill(files: dict[str, str], subs: dict[str, str]) -> dict[str, str]:
    out = {}
    for path, text in files.items():
        for key, value in subs.items():
            text = text.replace(key, value)
        out[path] = text
    return out


def _plant(tree: Path, files: dict[str, str]) -> None:
    """Write ``files`` under ``tree`` directly, as something other than oldnew might."""
    for rel, text in files.items():
        target = tree / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        if "/hooks/" in rel:
            target.chmod(0o755)


def _subs(repo: Path, marker: Path, outside: Path, head: str) -> dict[str, str]:
    return {
        "@MARKER@": str(marker),
        "@OUTSIDE@": str(outside),
        "@OBJECTS@": str(repo / ".git" / "objects"),
        "@COMMIT@": head,
    }


def test_the_corpus_has_cases() -> None:
    assert len(CASES) >= 2
    assert sum(1 for c in CASES if _case(c).get("live")) >= 2


@pytest.mark.parametrize("name", CASES)
def test_hostile_git_case_is_refused_and_runs_nothing(name: str, tmp_path: Path) -> None:
    case = _case(name)
    tag = uuid.uuid4().hex[:8]
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "canary.txt").write_text("precious")
    ws = Workspace.create(tmp_path / "ws", f"run-{name}", {})
    tree = ws.worktree("T1")
    Workspace.write_files(tree, BASE)
    marker = tmp_path / f"ran-{tag}"
    files = _fill(case["files"], _subs(ws.root, marker, outside, ws.head()))
    refs = ws.git("for-each-ref")

    # 1. The write path: refused, with the case's message, and nothing written.
    before = _snapshot(tmp_path)
    with pytest.raises(PathViolation) as refused:
        Workspace.write_files(tree, files)
    assert case["message"] in str(refused.value)
    assert _snapshot(tmp_path) == before

    # 2. Planted behind oldnew's back: no commit, nothing staged, and no git call runs it.
    _plant(tree, files)
    before = _snapshot(tmp_path)
    with pytest.raises(PathViolation, match="version-control data oldnew never commits"):
        ws.commit_worktree("T1", "hostile")
    ws.git("status", "--porcelain", "--untracked-files=all", cwd=tree)
    ws.git("status", "--porcelain")
    ws.tracked_files(tree)
    # only the task's own files are staged (as they were written), nothing planted
    assert ws.git("diff", "--cached", "--name-only", cwd=tree).split() == sorted(BASE)
    for rel in {str(Path(p).parent) for p in files}:
        # Even git started inside the planted folder (where git may open the hostile
        # repository itself) runs none of its commands.
        ws.git("status", "--porcelain", cwd=tree / rel, check=False)
        ws.git("log", "-1", cwd=tree / rel, check=False)
    assert not marker.exists()
    assert _snapshot(tmp_path) == before
    assert ws.git("for-each-ref") == refs
    assert (outside / "canary.txt").read_text() == "precious"

    # 3. With plain git the case is live: the command runs.
    live = case.get("live")
    if live is None:
        return
    control = tmp_path / "control"
    control.mkdir()
    _plain_git("init", "-q", "-b", "main", cwd=control)
    _plain_git("commit", "-q", "--allow-empty", "-m", "start", cwd=control)
    head = _plain_git("rev-parse", "HEAD", cwd=control).stdout.strip()
    control_marker = tmp_path / f"control-ran-{tag}"
    _plant(control, _fill(case["files"], _subs(control, control_marker, outside, head)))
    _plain_git("add", "-A", cwd=control)
    _plain_git("status", "--porcelain", cwd=control / live)
    assert control_marker.exists(), "the case no longer runs its command with plain git"


def test_the_coder_gets_the_refusal_back_and_writes_nothing(tmp_path: Path) -> None:
    """A coder answer with a nested .git goes back to the model; its next answer is used."""
    hostile = "FILE: sub/.git/config\n```\n[core]\n\tfsmonitor = touch /tmp/x\n```\n"
    hostile += "FILE: sub/lib.py\n```python\nVALUE = 1\n```\n"
    good = "FILE: sub/lib.py\n```python\nVALUE = 2\n```\n"
    model = ScriptedChatModel(
        replies=[
            ScriptedReply(
                when=("version control reads",),
                role=None,
                text=good,
                structured=None,
                tool=None,
                args=None,
            ),
            ScriptedReply(
                when=("write sub",), role=None, text=hostile, structured=None, tool=None, args=None
            ),
        ]
    )
    files, calls, _ = asyncio.run(
        files_from_model(model, [HumanMessage("write sub")], tmp_path, 2, RetryPolicy())
    )
    assert calls == 2
    assert files == {"sub/lib.py": "VALUE = 2\n"}
    assert (tmp_path / "sub" / "lib.py").read_text() == "VALUE = 2\n"
    assert not (tmp_path / "sub" / ".git").exists()


def test_a_gitlink_is_never_committed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the scan (here switched off), ``git add`` staging a gitlink is caught and undone."""
    ws = Workspace.create(tmp_path / "ws", "run-gitlink", {})
    tree = ws.worktree("T1")
    Workspace.write_files(tree, {"app.py": "X = 1\n"})
    sub = tree / "sub"
    sub.mkdir()
    _plain_git("init", "-q", "-b", "main", cwd=sub)
    _plain_git("commit", "-q", "--allow-empty", "-m", "inner", cwd=sub)
    monkeypatch.setattr("oldnew.workspace.nested_control_paths", lambda tree: [])
    with pytest.raises(PathViolation, match="would commit sub as a gitlink"):
        ws.commit_worktree("T1", "t")
    assert ws.git("diff", "--cached", "--name-only", cwd=tree) == ""
    assert ws.git("rev-parse", "HEAD", cwd=tree) == ws.head()
    assert (tree / "app.py").read_text() == "X = 1\n"  # the task's work is still there
    assert (sub / ".git").is_dir()


def test_the_scan_finds_every_kind_of_nested_control_path(tmp_path: Path) -> None:
    _plant(
        tmp_path,
        {
            "a/.git/config": "",
            "b/.GIT": "gitdir: x\n",
            "c/d/.gitmodules": "",
            "e/.hg/hgrc": "",
            "f/HEAD": "",
            "f/objects/x": "",
            "f/refs/x": "",
            "fine/.gitignore": "",
            "fine/.gitattributes": "",
        },
    )
    (tmp_path / ".git").mkdir()  # the checkout's own .git is not nested
    assert nested_control_paths(tmp_path) == ["a/.git", "b/.GIT", "c/d/.gitmodules", "e/.hg", "f/"]


def test_a_tampered_repository_config_runs_nothing(tmp_path: Path) -> None:
    """Hooks, monitor, pager and editor set in .git/config: oldnew's whole task flow runs none."""
    marker = tmp_path / "ran"
    ws = Workspace.create(tmp_path / "ws", "run-tampered", {})
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    for hook in ("pre-commit", "commit-msg", "post-commit", "post-checkout", "post-rewrite"):
        (hooks / hook).write_text(f"#!/bin/sh\ntouch {marker}\n")
        (hooks / hook).chmod(0o755)
        (ws.root / ".git" / "hooks" / hook).write_text(f"#!/bin/sh\ntouch {marker}\n")
        (ws.root / ".git" / "hooks" / hook).chmod(0o755)
    command = f"touch {marker}; false"
    settings = {
        "core.hooksPath": str(hooks),
        "core.fsmonitor": command,
        "core.pager": command,
        "core.editor": command,
        "sequence.editor": command,
        "core.sshCommand": command,
        "credential.helper": f"!{command}",
    }
    for key, value in settings.items():
        _plain_git("config", key, value, cwd=ws.root)
    # Two tasks, the second rebased over the first: commit, rebase, fast-forward, cleanup.
    for task in ("T1", "T2"):
        tree = ws.worktree(task)
        Workspace.write_files(tree, {f"{task}.py": "X = 1\n"})
    for task in ("T1", "T2"):
        assert ws.commit_worktree(task, f"task {task}")
        ws.rebase_onto_main(task)
        ws.fast_forward_main(ws.task_branch(task))
        ws.remove_worktree(task)
    ws.git("status", "--porcelain")
    ws.git("log", "--format=%H")
    assert not marker.exists()
    assert ws.tracked_files() == ["T1.py", "T2.py"]
    _plain_git("status", cwd=ws.root)
    assert marker.exists(), "plain git runs the monitor: the setup above is live"


def test_git_ignores_inherited_git_variables_and_enclosing_repositories(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    _plain_git("init", "-q", "-b", "main", cwd=other)
    ws = Workspace.create(other / "ws", "run-env", {})
    monkeypatch.setenv("GIT_DIR", str(other / ".git"))
    monkeypatch.setenv("GIT_WORK_TREE", str(other))
    monkeypatch.setenv("GIT_CONFIG_PARAMETERS", "'core.fsmonitor'='touch /tmp/x'")
    assert ws.git("rev-parse", "--show-toplevel") == str(ws.root)
    env = git_environment(ws.root)
    assert not {"GIT_DIR", "GIT_WORK_TREE", "GIT_CONFIG_PARAMETERS"} & set(env)
    assert env["GIT_CONFIG_NOSYSTEM"] == "1" and env["GIT_TERMINAL_PROMPT"] == "0"
    # A workspace that lost its .git fails, instead of working on the enclosing repository.
    (ws.root / "keep.txt").write_text("mine")
    os.rename(ws.root / ".git", tmp_path / "moved-git")
    proc = run_git("status", "--porcelain", cwd=ws.root)
    assert proc.returncode != 0 and "not a git repository" in proc.stderr
    assert (ws.root / "keep.txt").read_text() == "mine"


def _git_call_sites() -> list[str]:
    """Return every place in oldnew that starts git other than oldnew/safegit.py."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "safegit.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.List)
                and node.elts
                and isinstance(node.elts[0], ast.Constant)
                and node.elts[0].value == "git"
            ):
                found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    return found


def test_every_git_process_goes_through_run_git() -> None:
    assert _git_call_sites() == []
