"""The sandbox's layers, one by one: what it copies, hides, limits, scrubs and kills."""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

import oldnew.sandbox.box as sandbox_box
from oldnew.sandbox import Limits, Sandbox, SandboxError, copy_project, link_leaves, probe_host

HOST = probe_host()
needs_bwrap = pytest.mark.skipif(HOST.bwrap is None, reason=f"no bubblewrap: {HOST.bwrap_error}")
PY = sys.executable


def _project(root: Path) -> Path:
    """A small git project with a tracked file, an ignored file and an untracked one."""
    root.mkdir(parents=True)
    (root / "app.py").write_text("X = 1\n")
    (root / ".gitignore").write_text("build/\n*.log\n")
    (root / "build").mkdir()
    (root / "build" / "out.bin").write_text("ignored")
    (root / "debug.log").write_text("ignored")
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    git = ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "init"], check=True)
    (root / "new.py").write_text("Y = 2\n")
    return root


def test_copy_holds_what_git_would_commit(tmp_path: Path) -> None:
    src = _project(tmp_path / "p")
    (src / "node_modules").mkdir()
    (src / "node_modules" / "m.js").write_text("")
    os.symlink("app.py", src / "alias.py")
    os.symlink("/etc/passwd", src / "leak")
    dest = tmp_path / "copy"
    dest.mkdir()
    copied = copy_project(src, dest, max_bytes=2**20)
    assert sorted(copied) == [".gitignore", "alias.py", "app.py", "leak", "new.py"]
    assert os.readlink(dest / "leak") == "/etc/passwd"  # kept as a link, never followed
    assert not (dest / ".git").exists() and not (dest / "build").exists()
    with pytest.raises(SandboxError, match="disk quota"):
        copy_project(src, tmp_path / "small", max_bytes=3)


@pytest.mark.parametrize(
    ("path", "target", "leaves"),
    [
        ("a", "/etc", True),
        ("a", "..", True),
        ("sub/a", "../b", False),
        ("sub/a", "../../b", True),
        ("a", "b/../c", False),
    ],
)
def test_links_that_leave_the_project(path: str, target: str, leaves: bool) -> None:
    assert link_leaves(path, target) is leaves


@needs_bwrap
def test_full_sandbox_hides_secrets_and_the_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = f"sk-test-{uuid.uuid4().hex}"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    src = _project(tmp_path / "ws" / "p")
    script = (
        "import os,glob\n"
        "print('ENV', sorted(os.environ))\n"
        "print('UID', os.getuid())\n"
        "seen = b''\n"
        "for p in glob.glob('/proc/[0-9]*/environ'):\n"
        "    try: seen += open(p,'rb').read()\n"
        "    except OSError: pass\n"
        f"print('LEAK', b'{key}' in seen)\n"
        f"print('HOST', os.path.exists('{src}'), os.path.exists('{tmp_path}/ws'))\n"
        "print('PROCS', len(glob.glob('/proc/[0-9]*')))\n"
    )
    with Sandbox.open(src) as box:
        assert [layer.name for layer in box.layers if not layer.active] == []
        result = box.run([PY, "-c", script], timeout=30)
    out = result.stdout
    assert result.exit_code == 0, result.output
    assert "LEAK False" in out and key not in out
    assert "OPENAI_API_KEY" not in out and "'PATH'" in out
    assert "HOST False False" in out  # the workspace and its folder are hidden
    if HOST.root:
        assert "UID 0" not in out
    procs = int(out.split("PROCS ")[1].split()[0])
    assert procs <= 3  # its own pid namespace: bwrap's init, python


@needs_bwrap
def test_writes_stay_in_the_copy_and_git_is_out_of_reach(tmp_path: Path) -> None:
    src = _project(tmp_path / "ws" / "p")
    canary = tmp_path / "canary.txt"
    canary.write_text("precious")
    before = {p: p.read_bytes() for p in src.rglob("*") if p.is_file()}
    script = (
        "import os, shutil\n"
        "for name in os.listdir('.'):\n"
        "    (shutil.rmtree if os.path.isdir(name) else os.remove)(name)\n"
        "hits = []\n"
        "open('../../canary.txt', 'a').write('lands in the sandbox /tmp, a small tmpfs')\n"
        f"for target in ['{canary}', '/etc/passwd', '{src}/.git/HEAD', '{src}/app.py']:\n"
        "    try:\n"
        "        open(target, 'a').write('pwned'); hits.append(target)\n"
        "    except OSError as exc:\n"
        "        print('refused', target, type(exc).__name__)\n"
        "print('HITS', hits)\n"
    )
    with Sandbox.open(src) as box:
        result = box.run([PY, "-c", script], timeout=30)
        assert list(box.tree.iterdir()) == []  # the copy was wiped ...
    assert result.exit_code == 0, result.output
    assert "HITS []" in result.stdout
    assert canary.read_text() == "precious"
    assert {p: p.read_bytes() for p in src.rglob("*") if p.is_file()} == before  # ... not src


@needs_bwrap
def test_no_network_and_the_host_loopback_is_out_of_reach(tmp_path: Path) -> None:
    src = _project(tmp_path / "p")
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    probe = f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=3)"
    with Sandbox.open(src) as box:
        blocked = box.run([PY, "-c", probe], timeout=30)
        dns = box.run([PY, "-c", "import socket; socket.getaddrinfo('pypi.org', 443)"], timeout=30)
        opened = box.run([PY, "-c", probe], timeout=30, network=True)
    server.close()
    assert blocked.exit_code != 0 and "ConnectionRefusedError" in blocked.stderr
    assert dns.exit_code != 0 and "gaierror" in dns.stderr
    assert opened.exit_code == 0, opened.output  # network=True (audits) keeps the host's


def test_timeout_kills_the_whole_process_tree(tmp_path: Path) -> None:
    src = _project(tmp_path / "p")
    marker = uuid.uuid4().hex
    script = (
        "import subprocess, sys, time\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)', "
        f"'{marker}'], start_new_session=True)\n"
        "time.sleep(300)\n"
    )
    with Sandbox.open(src) as box:
        start = time.monotonic()
        result = box.run([PY, "-c", script], timeout=2)
        took = time.monotonic() - start
    assert result.exit_code is None and "timed out after 2s" in result.killed
    assert took < 15
    time.sleep(0.2)
    left = [p.name for p in Path("/proc").iterdir() if p.name.isdigit() and marker in _cmdline(p)]
    assert left == [], "a process of the sandbox outlived it"


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def test_limits_are_applied(tmp_path: Path) -> None:
    src = _project(tmp_path / "p")
    limits = Limits(cpu_seconds=33, memory_mb=700, file_mb=5, open_files=99, processes=77)
    with Sandbox.open(src, limits=limits) as box:
        result = box.run(["cat", "/proc/self/limits"], timeout=30)
        big = box.run([PY, "-c", "open('big','wb').write(b'x' * 6 * 2**20)"], timeout=30)
        hog = box.run([PY, "-c", "b = bytearray(800 * 2**20)"], timeout=30)
    text = result.stdout
    assert "Max cpu time              33" in text
    assert f"Max data size             {700 * 2**20}" in text
    assert f"Max file size             {5 * 2**20}" in text
    assert "Max open files            99" in text
    assert "Max processes             77" in text
    assert big.exit_code != 0 and "File too large" in big.stderr
    assert hog.exit_code != 0 and "MemoryError" in hog.stderr


def test_limits_without_prlimit_use_the_python_launcher(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = dataclasses.replace(probe_host(), prlimit=None)
    monkeypatch.setattr(sandbox_box, "probe_host", lambda: host)
    src = _project(tmp_path / "p")
    with Sandbox.open(src, limits=Limits(open_files=77)) as box:
        result = box.run(["cat", "/proc/self/limits"], timeout=30)
        assert "Python launcher" in next(x.detail for x in box.layers if x.name == "limits")
    assert "Max open files            77" in result.stdout


def test_disk_quota_stops_a_writer(tmp_path: Path) -> None:
    src = _project(tmp_path / "p")
    writer = (
        "import itertools\n"
        "for i in itertools.count():\n"
        "    open(f'f{i}', 'wb').write(b'x' * 2**20)\n"
    )
    with Sandbox.open(src, limits=Limits(disk_mb=20, file_mb=4)) as box:
        result = box.run([PY, "-c", writer], timeout=60)
    assert result.exit_code is None and "disk quota (20 MB)" in result.killed


def test_missing_layers_are_reported_not_hidden(tmp_path: Path) -> None:
    src = _project(tmp_path / "p")
    with Sandbox.open(src, use_bwrap=False, drop_uid=False) as box:
        layers = {layer.name: layer for layer in box.layers}
        result = box.run([PY, "-c", "import os; print(sorted(os.environ))"], timeout=30)
    assert not layers["filesystem"].active
    assert "not confined" in layers["filesystem"].detail
    assert layers["network"].active is HOST.unshare_net
    if HOST.root:
        assert not layers["user"].active and "runs as root" in layers["user"].detail
    assert layers["limits"].active and layers["environment"].active
    assert "OPENAI_API_KEY" not in result.stdout and result.exit_code == 0


def test_scratch_of_a_killed_oldnew_is_swept(tmp_path: Path) -> None:
    src = _project(tmp_path / "p")
    root = tmp_path / "scratch"
    root.mkdir()
    gone = subprocess.Popen(["true"])
    gone.wait()
    stale = root / "oldnew-sbx-stale"
    (stale / "tree").mkdir(parents=True)
    (stale / "owner").write_text(str(gone.pid))
    alive = root / "oldnew-sbx-alive"
    alive.mkdir()
    (alive / "owner").write_text(str(os.getpid()))
    with Sandbox.open(src, scratch_root=root) as box:
        assert (box.scratch / "owner").read_text() == str(os.getpid())
    assert not stale.exists() and alive.exists()
    assert sorted(p.name for p in root.iterdir()) == ["oldnew-sbx-alive"]


def test_a_uid_another_process_leases_is_never_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two oldnew processes (two runs, two test workers) share the machine's uids: a uid
    # leased by one is never handed to the other, whose process count and kills would mix.
    from oldnew.sandbox import host

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    base = 65000 + os.getpid() % 200 * 2  # two uids of the test's own, in no one's use
    monkeypatch.setattr(host, "UID_BASE", base)
    monkeypatch.setattr(host, "UID_SLOTS", 2)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LEASE, str(tmp_path / "oldnew-uids" / str(base))],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        for _ in range(20):
            uid = host.take_uid()
            assert uid == base + 1  # the other process's uid is never taken
            host.release_uid(uid)
        first = host.take_uid()
        with pytest.raises(SandboxError, match="no free sandbox uid"):
            host.take_uid()  # one leased here, the other there: none is left
        host.release_uid(first)
    finally:
        holder.kill()
        holder.wait()
        assert holder.stdout is not None
        holder.stdout.close()
    both = {host.take_uid(), host.take_uid()}
    assert both == {base, base + 1}  # its lease died with it
    for uid in both:
        host.release_uid(uid)


HOLD_LEASE = """
import fcntl, os, sys, time
path = sys.argv[1]
os.makedirs(os.path.dirname(path), exist_ok=True)
fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(60)
"""
