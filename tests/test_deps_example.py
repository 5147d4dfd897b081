"""The bundled dependency example (examples/mdreport) delivered from its transcript.

The public index is never reached: a local index serves stand-ins of the four packages the
example declares (markdown, tabulate and their type stubs), written here with just the API
the example uses. uv resolves, locks and installs them for real; the delivered project is
then checked in a fresh environment built from its lock.
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT

from oldnew.bench.pkgindex import LocalIndex
from oldnew.deps.python import uv_bin
from oldnew.deps.settings import DepSettings
from oldnew.gates.verify import verify_workspace
from oldnew.runs import start_run

EXAMPLE = ROOT / "examples" / "mdreport"
MARKDOWN = '''"""Stand-in for Python-Markdown: ATX headings, paragraphs and *emphasis*."""
import re


def markdown(text: str) -> str:
    out, para = [], []
    for line in [*text.splitlines(), ""]:
        head = re.match(r"^(#{1,6})\\s+(.*)$", line)
        if (head or not line.strip()) and para:
            body = re.sub(r"\\*(.+?)\\*", r"<em>\\1</em>", " ".join(para))
            out.append(f"<p>{body}</p>")
            para = []
        if head:
            n = len(head.group(1))
            out.append(f"<h{n}>{head.group(2)}</h{n}>")
        elif line.strip():
            para.append(line.strip())
    return "\\n".join(out)
'''
TABULATE = '''"""Stand-in for tabulate: a header row, a rule, the rows."""


def tabulate(rows, headers=()):
    lines = ["  ".join(str(h) for h in headers), "  ".join("-" * len(str(h)) for h in headers)]
    lines += ["  ".join(str(c) for c in row) for row in rows]
    return "\\n".join(lines)
'''


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> LocalIndex:
    idx = LocalIndex(tmp_path_factory.mktemp("index"))
    idx.wheel("markdown", "3.6", {"markdown/__init__.py": MARKDOWN})
    idx.wheel("tabulate", "0.9.0", {"tabulate/__init__.py": TABULATE})
    stubs = "def markdown(text: str) -> str: ...\n"
    idx.wheel("types-markdown", "3.6.0", {"markdown-stubs/__init__.pyi": stubs})
    table = "from typing import Any\n\ndef tabulate(rows: Any, headers: Any = ...) -> str: ...\n"
    idx.wheel("types-tabulate", "0.9.0", {"tabulate-stubs/__init__.pyi": table})
    return idx


@pytest.mark.usefixtures("smoke_gates")
def test_the_dependency_example_delivers_and_its_tests_pass_from_its_lock(
    tmp_path: Path, index: LocalIndex
) -> None:
    ws = tmp_path / "ws"
    model = f"scripted:{EXAMPLE / 'transcript.toml'}"
    context = {"model": model, "package_index": index.url}
    out = asyncio.run(start_run(EXAMPLE / "scope.md", ws, context=context))
    assert out.status == "delivered", out
    files = subprocess.run(
        ["git", "ls-files"], cwd=ws, capture_output=True, text=True, check=True
    ).stdout.split()
    assert {"pyproject.toml", "uv.lock", "README.md", ".gitignore"} <= set(files)
    lock = (ws / "uv.lock").read_text()
    for name in ("markdown", "tabulate", "types-markdown", "types-tabulate"):
        assert f'name = "{name}"' in lock
    readme = (ws / "README.md").read_text()
    assert "uv sync" in readme and "uv run python -m mdreport" in readme
    assert "`markdown>=3.5`: renders Markdown to HTML" in readme

    # The project's own tests, in a fresh virtual environment built from its lock alone.
    venv = tmp_path / "fresh"
    env = {"UV_PROJECT_ENVIRONMENT": str(venv), "UV_CACHE_DIR": str(tmp_path / "uv-cache")}
    env |= {"PATH": "/usr/bin:/bin", "UV_PYTHON_DOWNLOADS": "never", "HOME": str(tmp_path)}
    sync = [uv_bin(), "sync", "--frozen", "--no-install-project", "--default-index", index.url]
    subprocess.run(sync, cwd=ws, env=env, check=True, capture_output=True)
    tests = [str(venv / "bin" / "python"), "-c", "import mdreport.__main__, markdown, tabulate"]
    subprocess.run(tests, cwd=ws, check=True)
    # verify rebuilds that environment in an empty cache and re-runs the gates in it.
    deps = DepSettings(cache=tmp_path / "verify-cache", index=index.url, timeout=60)
    result = verify_workspace(ws, timeout=60, deps=deps)
    assert result.matches, result.differences
