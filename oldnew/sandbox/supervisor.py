"""Supervise one sandboxed command so that nothing of it outlives oldnew.

oldnew starts every confined command through this file, run on the host with oldnew's own
interpreter (``python -I -S supervisor.py LIFELINE INFO -- argv...``); it needs only the
standard library. It forks the command (bubblewrap, or the fallback chain), is its child
subreaper, and watches two things: the command, and ``LIFELINE``, the read end of a pipe whose
only write end oldnew holds. When oldnew dies, however it dies (SIGKILL included), the kernel
closes that end; the supervisor then kills the command and every process re-parented to it
(a bubblewrap init stuck before its own ``--die-with-parent`` took effect, a daemon of the
fallback chain) and exits. A parent-death signal alone would not do: bubblewrap's init sets
its own only after a handshake with the outer bwrap, and a uid change clears it.

It ends with the command's status (re-raising the signal that killed it), so oldnew reads
the same exit code it would read from the command itself. ``INFO`` is bubblewrap's
``--info-fd`` (or ``-``): the supervisor closes its copy, so oldnew sees the pipe's end.
"""

from __future__ import annotations

import ctypes
import os
import select
import signal
import sys

PR_SET_CHILD_SUBREAPER = 36


def children() -> list[int]:
    """Return the pids of this process's children (re-parented orphans included)."""
    found: list[int] = []
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/children", encoding="ascii") as fh:
                found += [int(pid) for pid in fh.read().split()]
        except (OSError, ValueError):
            continue
    return found


def kill_all(rounds: int = 10_000) -> None:
    """Kill and reap every child until none is left (orphans re-parent here as they fall)."""
    for _ in range(rounds):
        pids = children()
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
        for pid in pids:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                continue


def end_like(status: int) -> None:
    """Exit as the command did: its exit code, or the signal that ended it."""
    code = os.waitstatus_to_exitcode(status)
    if code >= 0:
        os._exit(code)
    import resource  # only here: every import is start-up time of every sandboxed command

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # re-raising SIGSEGV dumps no core
    signal.signal(-code, signal.SIG_DFL)
    os.kill(os.getpid(), -code)
    os._exit(128 - code)


def main(argv: list[str]) -> None:
    """Run ``argv[3:]`` (after ``LIFELINE INFO --``) and end it all when oldnew is gone."""
    lifeline, info, command = int(argv[0]), argv[1], argv[3:]
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)

    def abandon(*_: object) -> None:
        kill_all()
        os._exit(137)

    signal.signal(signal.SIGTERM, abandon)
    signal.signal(signal.SIGHUP, abandon)
    pid = os.fork()
    if pid == 0:
        os.close(lifeline)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        try:
            os.execvp(command[0], command)
        except OSError as exc:
            os.write(2, f"oldnew sandbox: cannot run {command[0]}: {exc}\n".encode())
        os._exit(127)
    if info != "-":
        os.close(int(info))
    poller = select.poll()
    pidfd = os.pidfd_open(pid)
    poller.register(pidfd, select.POLLIN)
    poller.register(lifeline, select.POLLIN | select.POLLHUP)
    while True:
        ready = {fd for fd, _ in poller.poll()}
        if lifeline in ready:
            abandon()  # oldnew is gone, or hung up on us: nobody will wait for this command
        if pidfd in ready:
            break
    _, status = os.waitpid(pid, 0)
    kill_all()
    end_like(status)


if __name__ == "__main__":
    main(sys.argv[1:])
