"""What this machine offers for sandboxing, the limits a command gets, and sandbox uids."""

from __future__ import annotations

import functools
import os
import secrets
import shutil
import subprocess  # nosec B404 - fixed argument lists, never a shell
import threading
from dataclasses import dataclass

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
_uids_in_use: set[int] = set()


def take_uid() -> int:
    """Return a uid no other sandbox of this process is using."""
    with _uid_lock:
        while True:
            uid = UID_BASE + secrets.randbelow(UID_SLOTS)
            if uid not in _uids_in_use:
                _uids_in_use.add(uid)
                return uid


def release_uid(uid: int | None) -> None:
    """Give a sandbox's uid back to the pool."""
    with _uid_lock:
        _uids_in_use.discard(uid or -1)
