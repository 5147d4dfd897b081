"""Unit tests: path checks, file blocks, plan checks, answers, the scripted model."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from langchain_core.messages import HumanMessage

from oldnew.errors import ModelOutputError, PathViolation, WorkspaceError
from oldnew.fileblocks import parse_file_blocks
from oldnew.models import ScriptedChatModel, ScriptedReply, ainvoke_structured
from oldnew.nodes.human import apply_answers
from oldnew.nodes.plan import plan_problems
from oldnew.schemas import Feature, Option, Plan, PlannedTask, Question, Scope
from oldnew.workspace import Workspace, check_relative_path, resolve_inside


@pytest.mark.parametrize(
    "bad",
    [
        "/etc/passwd",
        "../x.py",
        "a/../../x",
        "",
        ".git/config",
        ".oldnew/run.json",
        "C:\\win.py",
        "a\\b.py",
    ],
)
def test_bad_paths_are_refused(bad: str) -> None:
    with pytest.raises(PathViolation):
        check_relative_path(bad)


@pytest.mark.parametrize(
    "bad",
    [
        "sub/.git/config",
        "a/b/.git/hooks/pre-commit",
        "sub/.git",  # a .git file ("gitdir: ...") makes sub a repository too
        ".GIT/config",
        "pkg/.Git/HEAD",
        "sub/.git /config",
        "sub/.git./config",
        "sub/.git::$INDEX_ALLOCATION/config",
        "sub/.g\u200cit/config",
        "sub/GIT~1/config",
        ".gitmodules",
        "vendor/.GitModules",
        ".hg/hgrc",
        "x/.svn/entries",
        "x/.bzr/branch.conf",
        "x/_darcs/prefs/defaults",
        "x/.jj/repo/config.toml",
    ],
)
def test_version_control_paths_are_refused_at_any_depth(bad: str) -> None:
    with pytest.raises(PathViolation, match="version control reads as its own"):
        check_relative_path(bad)


@pytest.mark.parametrize(
    "good",
    [".gitignore", ".gitattributes", ".github/workflows/ci.yml", "docs/.gitkeep", "a.git/x"],
)
def test_git_lookalike_project_files_are_allowed(good: str) -> None:
    assert str(check_relative_path(good)) == good


def test_writing_into_a_nested_repository_is_refused(tmp_path: Path) -> None:
    (tmp_path / "sub" / ".GIT").mkdir(parents=True)
    with pytest.raises(PathViolation, match="nested repository"):
        Workspace.write_files(tmp_path, {"ok.py": "x = 1\n", "sub/pkg/mod.py": "y = 2\n"})
    assert not (tmp_path / "ok.py").exists()
    assert not (tmp_path / "sub" / "pkg").exists()
    with pytest.raises(PathViolation, match="nested repository"):
        Workspace.write_files(tmp_path, {"sub/old.py": None})
    for name in ("objects", "refs"):
        (tmp_path / "bare" / name).mkdir(parents=True)
    (tmp_path / "bare" / "HEAD").write_text("ref: refs/heads/main\n")
    with pytest.raises(PathViolation, match="nested repository .*HEAD, objects/ and refs/"):
        Workspace.write_files(tmp_path, {"bare/config": "[core]\n"})
    assert Workspace.write_files(tmp_path, {"other/mod.py": "z = 3\n"}) == ["other/mod.py"]


def test_symlink_leading_out_is_refused(tmp_path: Path) -> None:
    base = tmp_path / "ws"
    base.mkdir()
    (base / "out").symlink_to(tmp_path)
    with pytest.raises(PathViolation, match="leads out"):
        resolve_inside(base, "out/evil.py")
    (base / "link.py").symlink_to(tmp_path / "target.py")
    with pytest.raises(PathViolation, match="symlink"):
        resolve_inside(base, "link.py")


def test_write_files_is_all_or_nothing(tmp_path: Path) -> None:
    with pytest.raises(PathViolation):
        Workspace.write_files(tmp_path, {"good.py": "x = 1\n", "../bad.py": "y = 2\n"})
    assert not (tmp_path / "good.py").exists()
    assert not (tmp_path.parent / "bad.py").exists()
    assert Workspace.write_files(tmp_path, {"pkg/a.py": "a = 1\n"}) == ["pkg/a.py"]
    assert (tmp_path / "pkg" / "a.py").read_text() == "a = 1\n"


def test_workspace_refuses_foreign_and_nonempty_dirs(tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    with pytest.raises(WorkspaceError, match="not empty"):
        Workspace.create(tmp_path / "full", "r1", {})
    Workspace.create(tmp_path / "ws", "r1", {})
    with pytest.raises(WorkspaceError, match="belongs to run r1"):
        Workspace.create(tmp_path / "ws", "r2", {})
    with pytest.raises(WorkspaceError, match="belongs to run r1"):
        Workspace.ensure(tmp_path / "ws", "r2")
    assert (tmp_path / "full" / "notes.txt").read_text() == "mine"


def test_workspace_lock_is_exclusive(tmp_path: Path) -> None:
    ws = Workspace.create(tmp_path / "ws", "r1", {})
    with ws.lock():
        pid = os.fork()
        if pid == 0:  # child: must be refused
            try:
                with Workspace(ws.root).lock():
                    os._exit(1)
            except WorkspaceError:
                os._exit(0)
        _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0


def test_file_blocks_parse_and_fail_clearly() -> None:
    text = (
        "Intro\nFILE: a.py\n```python\nx = 1\n```\n"
        "### FILE: `b/c.md`\n````\n```\ninner\n```\n````\nDELETE: old.py\n"
    )
    assert parse_file_blocks(text) == {
        "a.py": "x = 1\n",
        "b/c.md": "```\ninner\n```\n",
        "old.py": None,
    }
    with pytest.raises(ModelOutputError, match="no file blocks"):
        parse_file_blocks('{"files": {"a.py": "x = 1"}}')
    with pytest.raises(ModelOutputError, match="not closed"):
        parse_file_blocks("FILE: a.py\n```python\nx = 1\n")
    with pytest.raises(ModelOutputError, match="twice"):
        parse_file_blocks("FILE: a.py\n```\n1\n```\nFILE: a.py\n```\n2\n```\n")
    for empty in ("", "   \n\n"):
        with pytest.raises(ModelOutputError, match="no file blocks"):
            parse_file_blocks(empty)
    with pytest.raises(ModelOutputError, match="over the 2,000,000 limit"):
        parse_file_blocks("FILE: a.py\n```\n" + "x = 1\n" * 400_000 + "```\n")
    with pytest.raises(ModelOutputError, match="a.py is 600,001 characters"):
        parse_file_blocks("FILE: a.py\n```\n" + "#" * 600_000 + "\n```\n")


def _scope() -> Scope:
    return Scope(
        title="t",
        summary="s",
        features=[Feature(id="F1", title="one"), Feature(id="F2", title="two")],
    )


def _task(
    tid: str,
    deps: list[str] | None = None,
    files: list[str] | None = None,
    reqs: list[str] | None = None,
) -> PlannedTask:
    return PlannedTask(
        id=tid,
        title=f"task {tid}",
        description="d",
        depends_on=deps or [],
        files=files or [],
        requirement_ids=reqs or ["F1", "F2"],
    )


def test_valid_plan_has_no_problems() -> None:
    plan = Plan(tasks=[_task("T1", files=["a.py"]), _task("T2", ["T1"], files=["a.py"])])
    assert plan_problems(plan, _scope()) == []


def test_plan_problems_are_named() -> None:
    cyclic = Plan(tasks=[_task("T1", ["T3"]), _task("T2", ["T1"]), _task("T3", ["T2"])])
    (problem,) = plan_problems(cyclic, _scope())
    assert "cycle" in problem and all(t in problem for t in ("T1", "T2", "T3"))
    broken = Plan(
        tasks=[
            _task("T1", ["T9"], reqs=["F1"]),
            _task("T1", files=["../x"]),
            _task("T2", files=["s.py"]),
            _task("T3", files=["s.py"]),
        ]
    )
    found = "\n".join(plan_problems(broken, _scope()))
    assert "T1 is used by more than one task" in found
    assert "depends on T9, which is not in the plan" in found
    assert "'..'" in found
    assert "tasks T2 and T3 both change s.py" in found
    uncovered = Plan(tasks=[_task("T1", reqs=["F1"])])
    assert plan_problems(uncovered, _scope()) == ["feature F2 (two) is served by no task"]


def test_answers_are_checked_against_questions() -> None:
    q = Question(
        id="q1",
        kind="fix_limit",
        title="t",
        options=[Option(key="retry", label="r"), Option(key="skip", label="s")],
        free_text=False,
    ).model_dump()
    updated, notices = apply_answers({"q1": q}, {"q1": "2", "q9": "x"})
    assert updated == {"q1": {"status": "answered", "answer": "skip"}}
    assert notices and "no question 'q9'" in notices[0]
    updated, notices = apply_answers({"q1": q}, {"q1": "maybe"})
    assert updated == {} and "q1 takes one of: retry, skip" in notices[0]
    updated, notices = apply_answers({"q1": q}, "retry")
    assert updated == {} and "must map question ids" in notices[0]


def test_scripted_model_structured_output_retries_then_fails() -> None:
    good = {"tasks": [{"id": "T1", "title": "x", "description": "d"}]}
    model = ScriptedChatModel(
        replies=[
            ScriptedReply(
                when=("Answer again",), role=None, text="", structured=good, tool=None, args=None
            ),
            ScriptedReply(
                when=("plan please",),
                role=None,
                text="",
                structured={"tasks": "not a list"},
                tool=None,
                args=None,
            ),
        ]
    )
    plan = asyncio.run(
        ainvoke_structured(
            model, Plan, [HumanMessage("plan please")], method="function_calling", retries=1
        )
    )
    assert plan.tasks[0].id == "T1"
    bad_only = ScriptedChatModel(replies=[model.replies[1]])
    with pytest.raises(ModelOutputError, match="Plan did not parse after 3 tries"):
        asyncio.run(
            ainvoke_structured(
                bad_only, Plan, [HumanMessage("plan please")], method="json_schema", retries=2
            )
        )


def test_only_answered_decisions_reach_later_tasks() -> None:
    from oldnew.memory import decisions_from

    base = {"title": "Where to store?", "answer": "~/.todo.json", "status": "answered"}
    questions = {
        "a": {**base, "kind": "configuration"},
        "b": {**base, "kind": "fix_limit"},
        "c": {**base, "kind": "design_decision", "status": "pending", "answer": None},
    }
    assert decisions_from(questions) == ["Where to store? -> ~/.todo.json"]


def test_recover_puts_a_half_merged_checkout_back_and_keeps_copies(tmp_path: Path) -> None:
    ws = Workspace.create(tmp_path / "ws", "r1", {})
    (ws.root / "tests").mkdir()
    (ws.root / "tests" / "test_x.py").write_text("def test_x():\n    pass\n")
    (ws.root / ".git" / "index.lock").write_text("")
    cleared = ws.recover()
    assert any("stray files" in c for c in cleared) and ".git/index.lock" in cleared
    assert not (ws.root / "tests" / "test_x.py").exists()
    (copy,) = (ws.meta / "recovered").glob("*/tests/test_x.py")
    assert copy.read_text() == "def test_x():\n    pass\n"
    assert ws.recover() == []


def test_recover_finishes_a_worktree_whose_creation_was_killed(tmp_path: Path) -> None:
    ws = Workspace.create(tmp_path / "ws", "r1", {})
    (ws.root / "README.md").write_text("project\n")
    ws.git("add", "-A")
    ws.git("commit", "-q", "-m", "base")
    tree = ws.worktree("T2")
    # What a SIGKILL inside `git worktree add` leaves: a placeholder HEAD, files not checked
    # out; the task's own file written after it.
    admin = Path(ws.git("rev-parse", "--git-dir", cwd=tree))
    (admin / "HEAD").write_text("0" * 40 + "\n")
    (tree / "README.md").unlink()
    (tree / "task.py").write_text("x = 1\n")
    with pytest.raises(WorkspaceError, match="could not parse HEAD"):
        ws.commit_worktree("T2", "task two")
    assert "unfinished checkout T2" in ws.recover()
    commit = ws.commit_worktree("T2", "task two")
    assert commit is not None
    changed = ws.git("show", "--name-status", "--format=", commit, cwd=tree)
    assert changed.split() == ["A", "task.py"]  # main's files kept, nothing deleted
    assert (tree / "README.md").read_text() == "project\n"
    assert ws.recover() == []


def test_a_task_that_never_merges_is_given_up_after_the_cap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from langgraph.runtime import Runtime

    from oldnew.context import Context
    from oldnew.nodes import checks

    def broken(*_: object) -> dict[str, object]:
        raise WorkspaceError("git commit failed: fatal: could not parse HEAD")

    monkeypatch.setattr(checks, "_accept", broken)
    ws = Workspace.create(tmp_path / "ws", "r1", {})
    runtime = Runtime(context=Context(max_fix_rounds=2, workspace=str(ws.root)))
    task = {"id": "T1", "title": "one"}
    state: dict[str, object] = {"task": task, "workspace": str(ws.root), "critical": True}
    statuses = []
    for _ in range(3):
        out = asyncio.run(checks.commit(state, runtime))  # type: ignore[arg-type]
        statuses.append(out["status"])
        state |= out
    assert statuses == ["fixing", "fixing", "waiting"]
    assert state["question"]["kind"] == "fix_limit"  # type: ignore[index]
    assert "could not parse HEAD" in state["question"]["detail"]  # type: ignore[index]
    state |= {"critical": False, "merge_failures": 2}
    assert asyncio.run(checks.commit(state, runtime))["status"] == "limiting"  # type: ignore[arg-type]
