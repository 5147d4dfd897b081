"""Manifests of tasks that add dependencies at once merge by package name, through git."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from oldnew.deps.merge import Conflict, merge_package_json, merge_pyproject
from oldnew.safegit import run_git
from oldnew.workspace import MERGES

BASE = '[project]\nname = "p"\nversion = "0.1.0"\ndependencies = ["a>=1"]\n'


def test_one_line_arrays_merge_by_name() -> None:
    ours = BASE.replace('["a>=1"]', '["a>=1", "b>=2"]')
    theirs = BASE.replace('["a>=1"]', '["a>=1", "c"]')
    merged = merge_pyproject(BASE, ours, theirs)
    import tomllib

    data = tomllib.loads(merged)
    assert data["project"]["dependencies"] == ["a>=1", "b>=2", "c"]
    assert data["project"]["version"] == "0.1.0"


def test_groups_extras_and_removals_merge_and_other_settings_follow_the_side_that_changed() -> None:
    ours = BASE.replace('["a>=1"]', "[]") + '\n[dependency-groups]\ndev = ["pytest-mock"]\n'
    theirs = BASE.replace('version = "0.1.0"', 'version = "0.2.0"') + (
        '\n[project.optional-dependencies]\ncli = ["click"]\n'
    )
    import tomllib

    data = tomllib.loads(merge_pyproject(BASE, ours, theirs))
    assert data["project"]["dependencies"] == []  # ours removed a; theirs left it alone
    assert data["project"]["version"] == "0.2.0"
    assert data["project"]["optional-dependencies"] == {"cli": ["click"]}
    assert data["dependency-groups"] == {"dev": ["pytest-mock"]}


def test_both_sides_changing_one_package_or_a_setting_is_a_conflict() -> None:
    with pytest.raises(Conflict):
        merge_pyproject(BASE, BASE.replace("a>=1", "a>=2"), BASE.replace("a>=1", "a>=3"))
    with pytest.raises(Conflict):
        merge_pyproject(BASE, BASE.replace('"0.1.0"', '"1"'), BASE.replace('"0.1.0"', '"2"'))
    with pytest.raises(Conflict):
        merge_pyproject(BASE, BASE + "[oops\n", BASE)


def test_package_json_tables_merge_and_stay_valid_json() -> None:
    base = json.dumps({"name": "p", "dependencies": {"a": "^1.0.0"}})
    ours = json.dumps({"name": "p", "dependencies": {"a": "^1.0.0", "b": "^2.0.0"}})
    theirs = json.dumps(
        {"name": "p", "dependencies": {"a": "^1.0.0"}, "devDependencies": {"c": "1"}}
    )
    data = json.loads(merge_package_json(base, ours, theirs))
    assert data == {
        "name": "p",
        "dependencies": {"a": "^1.0.0", "b": "^2.0.0"},
        "devDependencies": {"c": "1"},
    }
    with pytest.raises(Conflict):
        merge_package_json(base, ours.replace("^2.0.0", "^3"), ours.replace("^2.0.0", "^4"))


def _git(cwd: Path, *args: str) -> str:
    proc = run_git(*args, cwd=cwd)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return str(proc.stdout)


def test_a_rebase_merges_two_tasks_manifests_through_the_driver(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    (repo / ".git" / "info").mkdir(exist_ok=True)
    (repo / ".git" / "info" / "attributes").write_text(MERGES)
    (repo / "pyproject.toml").write_text(BASE)
    (repo / "uv.lock").write_text("lock 0\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "base")
    _git(repo, "branch", "task")
    (repo / "pyproject.toml").write_text(BASE.replace('["a>=1"]', '["a>=1", "b"]'))
    (repo / "uv.lock").write_text("lock main\n")
    _git(repo, "commit", "-qam", "main adds b")
    _git(repo, "checkout", "-q", "task")
    (repo / "pyproject.toml").write_text(BASE.replace('["a>=1"]', '["a>=1", "c"]'))
    (repo / "uv.lock").write_text("lock task\n")
    _git(repo, "commit", "-qam", "task adds c")
    _git(repo, "rebase", "-q", "main")
    import tomllib

    data = tomllib.loads((repo / "pyproject.toml").read_text())
    assert data["project"]["dependencies"] == ["a>=1", "b", "c"]
    assert (repo / "uv.lock").read_text() == "lock main\n"  # locked again by oldnew after
    # A real conflict stops the rebase, as before: nothing is merged by guessing.
    _git(repo, "checkout", "-q", "-b", "other", "main~1")
    (repo / "pyproject.toml").write_text(BASE.replace('["a>=1"]', '["a>=1", "b>=9"]'))
    _git(repo, "commit", "-qam", "other pins b differently")
    proc = run_git("rebase", "-q", "main", cwd=repo)
    assert proc.returncode != 0
    run_git("rebase", "--abort", cwd=repo)
