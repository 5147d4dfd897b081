"""Delivery hands over what a person needs to use the project: README and .gitignore."""

from __future__ import annotations

from pathlib import Path

from oldnew.handover import GITIGNORE, hand_over
from oldnew.safegit import run_git
from oldnew.workspace import Workspace


def _workspace(tmp_path: Path, files: dict[str, str]) -> Workspace:
    ws = Workspace.create(tmp_path / "ws", "r1", {})
    for name, text in files.items():
        (ws.root / name).parent.mkdir(parents=True, exist_ok=True)
        (ws.root / name).write_text(text)
    ws.git("add", "-A")
    ws.git("commit", "-qm", "project")
    return ws


def _tracked(ws: Workspace) -> list[str]:
    return str(run_git("ls-files", cwd=ws.root).stdout).split()


def test_a_project_without_readme_gets_one_from_its_manifest_and_lock(tmp_path: Path) -> None:
    manifest = (
        '[project]\nname = "tool"\nversion = "1"\ndependencies = [\n'
        '    "rich>=13",  # pretty output\n]\n[project.scripts]\ntool = "tool.cli:main"\n'
    )
    ws = _workspace(
        tmp_path,
        {
            "pyproject.toml": manifest,
            "uv.lock": "version = 1\n",
            "tool/__init__.py": "",
            "tool/__main__.py": "",
        },
    )
    assert hand_over(ws, "tool", "Does things.") == [".gitignore", "README.md"]
    readme = (ws.root / "README.md").read_text()
    assert readme.startswith("# tool\n\nDoes things.")
    assert "uv sync" in readme and "uv run tool" in readme and "uv run python -m tool" in readme
    assert "- `rich>=13`: pretty output" in readme
    assert (ws.root / ".gitignore").read_text() == GITIGNORE
    assert {"README.md", ".gitignore"} <= set(_tracked(ws))
    assert ws.git("log", "-1", "--format=%s").startswith("Hand-over")
    assert hand_over(ws, "tool", "Does things.") == []  # delivered again: nothing to add


def test_what_the_tasks_wrote_is_kept(tmp_path: Path) -> None:
    own = "# mine\n\nInstall with pip install .\n"
    ws = _workspace(tmp_path, {"README.md": own, ".gitignore": "dist/\n", "app.py": ""})
    assert hand_over(ws, "app", "") == []
    assert (ws.root / "README.md").read_text() == own
    assert (ws.root / ".gitignore").read_text() == "dist/\n"


def test_a_readme_that_says_nothing_of_installing_gets_a_section(tmp_path: Path) -> None:
    ws = _workspace(tmp_path, {"README.md": "# app\n\nIt adds numbers.\n", "app.py": ""})
    assert hand_over(ws, "app", "") == [".gitignore", "README.md"]
    text = (ws.root / "README.md").read_text()
    assert text.startswith("# app\n\nIt adds numbers.\n\n## Install and run")
    assert "standard library only" in text
