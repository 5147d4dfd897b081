"""What the dependency tests share: a one-task scope, its manifests, its runs' events."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SCOPE = {"title": "shouty", "summary": "s", "features": [{"id": "F1", "title": "shout numbers"}]}
PLAIN = (
    "FILE: app.py\n```python\ndef show(n: int) -> str:\n    return f'{n}!'\n```\n"
    "FILE: tests/test_app.py\n```python\nfrom app import show\n\n\n"
    "def test_show() -> None:\n    assert show(3) == '3!'\n```\n"
)
"""A coder's reply that needs no package."""


def plan(description: str) -> dict[str, Any]:
    """Return a plan of one task, T1, writing app.py and pyproject.toml."""
    task = {
        "id": "T1",
        "title": "number shouter",
        "description": description,
        "files": ["app.py", "pyproject.toml"],
        "requirement_ids": ["F1"],
    }
    return {"tasks": [task]}


def manifest(*deps: str, extra: str = "") -> str:
    """Return a coder's file block of pyproject.toml declaring ``deps`` (then ``extra``)."""
    lines = "".join(f"    {d}\n" for d in deps)
    text = (
        '[project]\nname = "shouty"\nversion = "0.1.0"\nrequires-python = ">=3.11"\n'
        f"dependencies = [\n{lines}]\n{extra}"
    )
    return f"FILE: pyproject.toml\n```toml\n{text}```\n"


def scope_file(tmp_path: Path, text: str) -> Path:
    """Write the scope document and return its path."""
    path = tmp_path / "scope.md"
    path.write_text(text)
    return path


def events(ws: Path, **match: Any) -> list[dict[str, Any]]:
    """Return the run's events whose fields equal ``match``."""
    lines = (ws / ".oldnew" / "events.jsonl").read_text().splitlines()
    found = [json.loads(line) for line in lines]
    return [e for e in found if all(e.get(k) == v for k, v in match.items())]
