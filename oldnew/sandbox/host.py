"""What this machine offers for sandboxing, the limits a command gets, and sandbox uids."""

from __future__ import annotations

import fcntl
import functools
import os
import secrets
import shutil
import subprocess  # nosec B404 - fixed argument lists, never a shell
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from oldnew.sandbox.files import SandboxError
from oldnew.sandbox.process import processes_of

UID_BASE = 61000
UID_SLOTS = 1000


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandboxed command."""

    cpu_seconds: int = 600
    memory_mb: int = 4096
    file_mb: int = 256
    open_files: int = 1024
    processes: int = 256
    disk_mb: int = 1024
    tmp_mb: int = 128


@dataclass
class Layer:
    """One protection of the sandbox and whether it is in force here."""

    name: str
    active: bool
    detail: str


@dataclass(frozen=True)
class Host:
    """What this machine offers for sandboxing; probed once per process."""

    bwrap: str | None
    bwrap_error: str
    setpriv: str | None
    prlimit: str | None
    unshare_net: bool
    root: bool


@functools.cache
def probe_host() -> Host:
    """Find which sandbox tools work on this machine."""
    bwrap, error = shutil.which("bwrap"), ""
    if bwrap is None:
        error = "bubblewrap is not installed (Debian: apt-get install bubblewrap)"
    else:
        # Every option the sandbox uses (--size and --perms need bubblewrap 0.5 or later).
        argv = [bwrap, "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev"]
        argv += ["--perms", "1777", "--size", "1048576", "--tmpfs", "/tmp"]  # nosec B108
        argv += ["--unshare-net", "--unshare-pid", "--die-with-parent", "--new-session", "true"]
        proc = subprocess.run(  # nosec B603 - fixed argv
            argv, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"}, check=False
        )
        if proc.returncode != 0:
            bwrap, error = None, f"bubblewrap does not work here: {proc.stderr.strip()[:300]}"
    unshare = shutil.which("unshare")
    unshare_net = False
    if unshare:
        probe = subprocess.run(  # nosec B603 - fixed argv
            [unshare, "--net", "true"], capture_output=True, check=False
        )
        unshare_net = probe.returncode == 0
    return Host(
        bwrap=bwrap,
        bwrap_error=error,
        setpriv=shutil.which("setpriv"),
        prlimit=shutil.which("prlimit"),
        unshare_net=unshare_net,
        root=os.geteuid() == 0,
    )


_uid_lock = threading.Lock()
_leases: dict[int, int | None] = {}
"""The uids this process holds, each with the descriptor of its lease (None: no lease file)."""


def _lease_dir() -> Path | None:
    """Return the machine's folder of uid leases (made if missing), or None if it cannot be."""
    path = Path(tempfile.gettempdir()) / "oldnew-uids"
    try:
        path.mkdir(mode=0o755, exist_ok=True)
    except OSError:
        return None
    return path


def _lease(folder: Path, uid: int) -> int | None:
    """Lock ``uid``'s lease file; return its descriptor, or None when another process holds it."""
    fd = os.open(folder / str(uid), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def take_uid() -> int:
    """Return a uid that no other sandbox on this machine is using, this process's or another's.

    Each uid is leased with an exclusive lock on a file of its own, held until
    :func:`release_uid` (the kernel drops it if this process dies): two oldnew processes (two
    runs, a server and a command, two test workers) never share a uid, so the per-user process
    limit and the kill of a sandbox's leftover processes never reach another's sandbox. A uid
    that still runs processes (left by a process that died) is skipped as well.
    """
    folder = _lease_dir()
    with _uid_lock:
        start = secrets.randbelow(UID_SLOTS)  # each slot tried once, from a random one
        for n in range(UID_SLOTS):
            uid = UID_BASE + (start + n) % UID_SLOTS
            if uid in _leases:
                continue
            fd = None
            if folder is not None:
                try:
                    fd = _lease(folder, uid)
                except OSError:
                    folder = None  # the folder is unusable: this process's own set still holds
                else:
                    if fd is None:
                        continue
            if processes_of(uid):
                if fd is not None:
                    os.close(fd)
                continue
            _leases[uid] = fd
            return uid
    raise SandboxError(
        f"no free sandbox uid in {UID_BASE}..{UID_BASE + UID_SLOTS - 1}: every one is leased "
        "or runs processes; wait for other oldnew runs to finish"
    )


def release_uid(uid: int | None) -> None:
    """Give a sandbox's uid back to the pool (its lease ends)."""
    with _uid_lock:
        fd = _leases.pop(uid, None) if uid is not None else None
    if fd is not None:
        os.close(fd)
