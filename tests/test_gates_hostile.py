"""The hostile corpus: broken or malicious projects, each caught by the right gate or stopped
by the sandbox, with nothing outside the sandbox's copy touched.

Each case is a TOML file in tests/hostile/: the files it adds to a decent base project, the gate
that must be the first to fail (``expect``; empty for a project that must pass), and a phrase
that gate's findings must contain. Around every case the harness checks that a canary file
outside the workspace, the workspace's .git and the task's worktree are byte-for-byte unchanged,
that no API key from the parent's environment reached the output, and that no process is left.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import tomllib
import uuid
from pathlib import Path
from typing import Any

import pytest

from oldnew.gates import validate_tree
from oldnew.sandbox import Limits, probe_host
from oldnew.workspace import Workspace

CASES_DIR = Path(__file__).parent / "hostile"
BASE = tomllib.loads((CASES_DIR / "_base.toml").read_text())["files"]
CASES = sorted(p.stem for p in CASES_DIR.glob("*.toml") if not p.name.startswith("_"))
HOST = probe_host()
FULL_SANDBOX = HOST.bwrap is not None and (not HOST.root or HOST.setpriv is not None)
TIMEOUT = 6.0
LIMITS = Limits(
    cpu_seconds=20, memory_mb=1024, file_mb=64, open_files=256, processes=64, disk_mb=256
)


def _snapshot(root: Path, skip: Path) -> dict[str, str]:
    """Return path -> content hash (or link target) of every file under ``root``."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if Path(dirpath, d) != skip]
        for name in filenames + [d for d in dirnames if Path(dirpath, d).is_symlink()]:
            path = Path(dirpath, name)
            if path.is_symlink():
                out[str(path)] = "link:" + os.readlink(path)
            else:
                out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def _leftovers(scratch: Path, marker: str) -> list[str]:
    """Return processes still working in ``scratch`` or carrying ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if marker in cmdline or cwd.startswith(str(scratch)):
            found.append(f"{entry.name}: {cmdline[:120]} (cwd {cwd})")
    return found


def _describe(result: Any) -> str:
    lines = [f"{c.name}: {c.status} ({c.summary[:200]})" for c in result.checks]
    lines += [d.render()[:300] for d in result.diagnostics[:15]]
    return "\n".join(lines)


@pytest.mark.parametrize("name", CASES)
def test_hostile_project_is_caught(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    case = tomllib.loads((CASES_DIR / f"{name}.toml").read_text())
    if case.get("needs_sandbox") and not FULL_SANDBOX:
        pytest.skip(f"needs bubblewrap and a non-root uid: {HOST.bwrap_error}")
    marker = f"mark{uuid.uuid4().int % 10**8:08d}"  # low entropy: no secret-scan alarm
    outside = tmp_path / "outside"
    outside.mkdir()
    canary = outside / "canary.txt"
    canary.write_text("precious")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    ws = Workspace.create(tmp_path / "ws", f"run-{name}", {})
    tree = ws.worktree("T1")
    listener = socket.create_server(("127.0.0.1", 0))
    subs = {
        "@CANARY@": str(canary),
        "@OUTSIDE@": str(outside),
        "@WORKSPACE@": str(ws.root),
        "@MARKER@": marker,
        "@PORT@": str(listener.getsockname()[1]),
    }

    def fill(text: str) -> str:
        for key, value in subs.items():
            text = text.replace(key, value)
        return text

    files = {**(BASE if case.get("base", True) else {}), **case["files"]}
    Workspace.write_files(tree, {path: fill(text) for path, text in files.items()})
    for link, target in case.get("symlinks", {}).items():
        os.symlink(fill(target), tree / link)
    key = f"sk-oldnew-canary-{marker}"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key)
    before = _snapshot(tmp_path, scratch)

    result = validate_tree(tree, timeout=TIMEOUT, limits=LIMITS, scratch_root=scratch)

    # Nothing outside the sandbox's own copy changed: canary, .git, the worktree itself.
    assert _snapshot(tmp_path, scratch) == before
    assert canary.read_text() == "precious"
    assert ws.git("rev-parse", "HEAD") and ws.git("status", "--porcelain", cwd=tree)
    assert not Path(f"/tmp/oldnew-hostile-{marker}").exists()
    assert not Path(f"/root/.oldnew-hostile-{marker}").exists()
    listener.setblocking(False)
    with pytest.raises(BlockingIOError):
        listener.accept()  # nobody reached the host's loopback
    listener.close()
    assert key not in json.dumps(result.to_dict())
    assert _leftovers(scratch, marker) == []
    assert list(scratch.iterdir()) == []  # the scratch copies are gone
    if case.get("needs_sandbox"):
        assert result.degraded_layers() == []

    failed = [c.name for c in result.checks if c.status == "failed"]
    shown = _describe(result)
    if not case["expect"]:
        assert result.passed, shown
        return
    assert not result.passed
    assert failed and failed[0] == case["expect"], shown
    check = result.check(case["expect"])
    assert check is not None
    found = (
        check.summary
        + "\n"
        + "\n".join(
            d.message + " " + d.rule + " " + d.file
            for d in result.diagnostics
            if d.tool == check.name
        )
    )
    # Some cases are stopped by whichever limit trips first (a fork bomb: the process limit
    # or the timeout); "message_any" lists the acceptable ones.
    wanted = case.get("message_any") or [case.get("message", "")]
    assert any(w in found for w in wanted), shown
    if case.get("stopped"):
        # Stopped by the sandbox: killed on a limit, or refused a resource by one.
        signs = case.get("stopped_by_any") or ["stopped"]
        assert any(s in found for s in signs), shown


HOSTILE_CODE = """FILE: calc.py
```python
def add(a: int, b: int) -> int:
    return a + b
```
FILE: tests/test_calc.py
```python
import os
import shutil

from calc import add


def test_add_and_vandalise():
    for target in ["@WORKSPACE@/.git", "../../../.git"]:
        shutil.rmtree(target, ignore_errors=True)
    try:
        with open("@CANARY@", "w") as fh:
            fh.write("pwned")
    except OSError:
        pass
    assert add(2, 2) == 4
    while True:
        os.getpid()
```
"""


@pytest.mark.skipif(not FULL_SANDBOX, reason="needs bubblewrap and a non-root uid")
@pytest.mark.timeout(300)
def test_a_run_survives_hostile_generated_code(tmp_path: Path) -> None:
    """A coder that writes vandalism and an endless loop: the run goes on and stays whole."""
    import asyncio

    from test_graph import _scope_file, _transcript

    from oldnew.runs import resume_run, run_status, start_run

    canary = tmp_path / "canary.txt"
    canary.write_text("precious")
    ws = tmp_path / "ws"
    code = HOSTILE_CODE.replace("@WORKSPACE@", str(ws)).replace("@CANARY@", str(canary))
    model = _transcript(tmp_path, {"text": code}, fixer=code)
    context = {"model": model, "max_fix_rounds": 1, "test_timeout": 5.0}
    out = asyncio.run(start_run(_scope_file(tmp_path), ws, context=context))
    assert out.status == "waiting"
    (question,) = out.questions
    assert question["kind"] == "fix_limit" and "timed out after 5s" in question["detail"]
    assert canary.read_text() == "precious"
    log = subprocess.run(
        ["git", "-C", str(ws), "log", "--format=%s"], capture_output=True, text=True
    )
    assert log.returncode == 0 and log.stdout.startswith("oldnew: start run")
    assert asyncio.run(run_status(ws)).status == "waiting"  # the checkpoints are whole
    out = asyncio.run(resume_run(ws, answers={question["id"]: "skip"}))
    assert out.status == "blocked" and (ws / ".oldnew" / "report.md").is_file()
