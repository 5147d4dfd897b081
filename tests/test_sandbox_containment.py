"""No sandbox process outlives oldnew: SIGKILL the process that runs the sandbox, at any point.

Each test starts a small driver (oldnew's sandbox, or a whole validation through the gates) in
its own process, kills it with SIGKILL while the sandboxed command runs, and then watches
/proc for a few seconds: no process whose command line or working folder names that run's
scratch folder (bwrap, the supervisor, setpriv, the launcher, the command, its children) may
be left.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from oldnew.sandbox import probe_host

HOST = probe_host()
needs_bwrap = pytest.mark.skipif(HOST.bwrap is None, reason=f"no bubblewrap: {HOST.bwrap_error}")

SANDBOX_DRIVER = """
import sys
from pathlib import Path
from oldnew.sandbox import Sandbox
src, scratch, marker, bwrap = sys.argv[1:5]
with Sandbox.open(Path(src), use_bwrap=bwrap == "1", scratch_root=Path(scratch)) as box:
    print("open", flush=True)
    box.run(
        ["sh", "-c", "sleep 300 & sleep 300; echo " + marker],
        timeout=600,
    )
"""

GATES_DRIVER = """
import sys
from pathlib import Path
from oldnew.gates import validate_tree
tree, scratch = sys.argv[1:3]
print("open", flush=True)
validate_tree(Path(tree), timeout=600, scratch_root=Path(scratch))
"""

SLEEPER = "subprocess.run([sys.executable, '-c', 'import time; time.sleep(300)', {marker!r}])"


def _left(scratch: Path, marker: str) -> list[str]:
    """Return the processes that still name ``scratch`` or ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if str(scratch) in cmdline or marker in cmdline or cwd.startswith(str(scratch)):
            found.append(f"{entry.name}: {cmdline[:160]} (cwd {cwd})")
    return found


def _wait_until(what: str, predicate: object, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.02)
    pytest.fail(f"never saw {what} within {seconds:g}s")


def _kill_and_check(driver: subprocess.Popen[str], scratch: Path, marker: str) -> None:
    driver.kill()
    driver.wait()
    assert driver.stdout is not None
    driver.stdout.close()
    deadline = time.monotonic() + 5.0
    left = _left(scratch, marker)
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = _left(scratch, marker)
    if left:  # tidy up for the next test, then fail with what was found
        for line in left:
            try:
                os.kill(int(line.split(":")[0]), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
    assert left == [], "left behind after the parent's SIGKILL:\n" + "\n".join(left)


def _start(argv: list[str]) -> subprocess.Popen[str]:
    driver = subprocess.Popen(
        [sys.executable, "-c", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,  # the test's own kill reaches the driver, not pytest
    )
    assert driver.stdout is not None and driver.stdout.readline().strip() == "open"
    return driver


@pytest.mark.parametrize("bwrap", [pytest.param(True, marks=needs_bwrap), False])
@pytest.mark.parametrize("delay", [0.0, 0.003, 0.01, 0.03, 0.1])
def test_killing_the_parent_early_leaves_no_sandbox(
    tmp_path: Path, bwrap: bool, delay: float
) -> None:
    """A kill while the sandbox starts (bwrap's handshake, setpriv, the launcher) leaves none."""
    src, scratch = tmp_path / "src", tmp_path / "scratch"
    src.mkdir()
    scratch.mkdir()
    (src / "a.py").write_text("A = 1\n")
    marker = f"mark{uuid.uuid4().hex[:10]}"
    driver = _start([SANDBOX_DRIVER, str(src), str(scratch), marker, "1" if bwrap else "0"])
    time.sleep(delay)
    _kill_and_check(driver, scratch, marker)


@pytest.mark.parametrize("bwrap", [pytest.param(True, marks=needs_bwrap), False])
def test_killing_the_parent_while_the_command_runs_leaves_no_sandbox(
    tmp_path: Path, bwrap: bool
) -> None:
    """The command, and the child it put in the background, die with the killed parent."""
    src, scratch = tmp_path / "src", tmp_path / "scratch"
    src.mkdir()
    scratch.mkdir()
    (src / "a.py").write_text("A = 1\n")
    marker = f"mark{uuid.uuid4().hex[:10]}"
    driver = _start([SANDBOX_DRIVER, str(src), str(scratch), marker, "1" if bwrap else "0"])

    def sleeping() -> bool:
        return sum("sleep 300" in line for line in _left(scratch, marker)) >= 2

    _wait_until("the sandboxed sleeps", sleeping, 30)
    _kill_and_check(driver, scratch, marker)


PROJECTS = {
    "during its tests": {
        "calc.py": '"""Calc."""\n\n\ndef add(a: int, b: int) -> int:\n    """Add."""\n'
        "    return a + b\n",
        "tests/test_calc.py": "import subprocess\nimport sys\n\nfrom calc import add\n\n\n"
        "def test_add():\n    " + SLEEPER + "\n    assert add(1, 2) == 3\n",
    },
    "while its module is imported": {
        "calc.py": '"""Calc."""\nimport subprocess\nimport sys\n\n' + SLEEPER + "\n\n\n"
        'def add(a: int, b: int) -> int:\n    """Add."""\n    return a + b\n',
        "tests/test_calc.py": "from calc import add\n\n\ndef test_add():\n"
        "    assert add(1, 2) == 3\n",
    },
}


@needs_bwrap
@pytest.mark.timeout(180)
@pytest.mark.parametrize("when", sorted(PROJECTS))
def test_killing_oldnew_during_a_gate_leaves_no_sandbox(tmp_path: Path, when: str) -> None:
    """SIGKILL a validation while the project's code runs in a gate: nothing of it is left."""
    tree, scratch = tmp_path / "project", tmp_path / "scratch"
    scratch.mkdir()
    marker = f"mark{uuid.uuid4().hex[:10]}"
    for rel, text in PROJECTS[when].items():
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_text(text.replace("{marker!r}", repr(marker)))
    driver = _start([GATES_DRIVER, str(tree), str(scratch)])

    def sleeping() -> bool:
        return any("time.sleep(300)" in line for line in _left(scratch, marker))

    _wait_until("the project's code sleeping in a gate", sleeping, 120)
    _kill_and_check(driver, scratch, marker)
