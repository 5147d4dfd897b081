"""Running one confined command: its result, waiting with a deadline, killing its tree."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess  # nosec B404 - fixed argument lists, never a shell
import sys
from dataclasses import dataclass
from pathlib import Path

from oldnew.sandbox import supervisor

OUTPUT_CAP = 8 * 1024 * 1024
_PR_SET_PDEATHSIG = 1
_SIGNALS = {
    int(signal.SIGXCPU): "the CPU time limit (SIGXCPU)",
    int(signal.SIGXFSZ): "the file size limit (SIGXFSZ)",
    int(signal.SIGKILL): "SIGKILL (the memory or process limit?)",
    int(signal.SIGSEGV): "a segmentation fault",
}
LIMITS_LAUNCHER = (
    "import os,resource as r,sys\n"
    "for name,value in zip(('CPU','DATA','FSIZE','NOFILE','NPROC','CORE'),"
    "map(int,sys.argv[1].split(','))):\n"
    "    r.setrlimit(getattr(r,'RLIMIT_'+name),(value,value))\n"
    "os.execvp(sys.argv[2],sys.argv[2:])\n"
)


def supervisor_argv(lifeline: int, info: str) -> list[str]:
    """Return the argv prefix that runs a command under :mod:`oldnew.sandbox.supervisor`.

    It runs with oldnew's own interpreter in isolated mode, on the host: it is oldnew's code,
    not the project's, and needs only the standard library.
    """
    return [sys.executable, "-I", "-S", supervisor.__file__, str(lifeline), info, "--"]


@dataclass
class RunResult:
    """What one sandboxed command did."""

    argv: list[str]
    exit_code: int | None
    stdout: str
    stderr: str
    duration_s: float
    killed: str = ""
    """Why the sandbox ended the command (timeout, disk quota), or ''."""

    @property
    def output(self) -> str:
        """Return stdout and stderr together."""
        return (self.stdout + ("\n" if self.stdout and self.stderr else "") + self.stderr).strip()

    def ending(self) -> str:
        """Return how the command ended, in words, when a limit or a signal ended it."""
        if self.killed:
            return self.killed
        code = self.exit_code
        if code is None:
            return ""
        name = _SIGNALS.get(-code if code < 0 else code - 128)
        return f"ended by {name}" if name else ""


def read_capped(path: Path) -> str:
    """Return up to OUTPUT_CAP bytes of a log file as text."""
    with open(path, "rb") as fh:
        data = fh.read(OUTPUT_CAP)
    return data.decode("utf-8", "replace")


def wait_for(proc: subprocess.Popen[bytes], pidfd: int | None, seconds: float) -> bool:
    """Wait up to ``seconds`` for ``proc``; return whether it ended (pidfd: no polling lag)."""
    if pidfd is None:
        try:
            proc.wait(timeout=seconds)
            return True
        except subprocess.TimeoutExpired:
            return False
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    if poller.poll(seconds * 1000):
        proc.wait()
        return True
    return False


class SandboxInit:
    """Bubblewrap's init (pid 1 of the sandbox's pid namespace), held by a pidfd.

    When it ends, the kernel has killed every process of the namespace: waiting for it is
    waiting for the whole sandbox to be gone (the outer bwrap may exit a moment earlier).
    """

    def __init__(self, pid: int | None = None, pidfd: int | None = None) -> None:
        """Hold ``pid`` through ``pidfd`` (both None: nothing to hold, no bubblewrap)."""
        self.pid = pid
        self.pidfd = pidfd

    @classmethod
    def from_info(cls, info_r: int | None, info_w: int | None) -> SandboxInit:
        """Read the init's pid from bubblewrap's --info-fd pipe and open a pidfd on it."""
        if info_r is None or info_w is None:
            return cls()
        os.close(info_w)
        data = b""
        try:
            while b"}" not in data:
                ready, _, _ = select.select([info_r], [], [], 10)
                chunk = os.read(info_r, 4096) if ready else b""
                if not chunk:
                    break
                data += chunk
        finally:
            os.close(info_r)
        try:
            pid = int(json.loads(data)["child-pid"])
            return cls(pid, os.pidfd_open(pid))
        except (ValueError, KeyError, TypeError, OSError):
            return cls()

    def kill(self) -> None:
        """Kill the init, and with it the namespace."""
        if self.pidfd is not None:
            try:
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def finish(self, grace: float = 2.0) -> None:
        """Wait until the sandbox is gone; kill it if its init outlives ``grace`` seconds."""
        if self.pidfd is None:
            return
        try:
            poller = select.poll()
            poller.register(self.pidfd, select.POLLIN)
            if not poller.poll(grace * 1000):
                self.kill()
                poller.poll(10_000)
        finally:
            os.close(self.pidfd)
            self.pidfd = None


def die_with_parent() -> None:
    """Have this (just forked) process killed when the thread that started it ends.

    For a ``preexec_fn`` of a helper oldnew runs on the host, outside any sandbox (building a
    cache, say): a kill of oldnew then takes the helper too, instead of leaving it to run on.
    """
    import ctypes  # only here: the forked child's, never oldnew's import time

    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def kill_tree(proc: subprocess.Popen[bytes], init: SandboxInit) -> None:
    """Kill a command and everything it started.

    With bubblewrap, the sandbox's init is killed first: the kernel then kills every process
    of the pid namespace and the outer bwrap exits; the process group is killed either way.
    """
    init.kill()
    if init.pidfd is None:
        proc.terminate()  # the supervisor kills its tree, the daemons re-parented to it too
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def kill_uid(uid: int) -> None:
    """Kill every process of ``uid`` (a daemon that left its process group).

    Each process is pinned by a pidfd before its owner is read, so a pid that ends and is
    reused between the listing and the signal (another user's process) is never signalled.
    """
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            pidfd = os.pidfd_open(int(entry.name))
        except OSError:
            continue  # gone already
        try:
            if entry.stat().st_uid == uid:
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        except OSError:
            continue
        finally:
            os.close(pidfd)


def processes_of(uid: int) -> int:
    """Return how many processes ``uid`` runs now."""
    count = 0
    for entry in Path("/proc").iterdir():
        try:
            count += entry.name.isdigit() and entry.stat().st_uid == uid
        except OSError:
            continue
    return count
