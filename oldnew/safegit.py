"""Run git so that nothing a repository holds can run a command, and spot VCS control paths.

Generated code must never get a command run on the host through version control. Git runs
commands that configuration names (hooks, ``core.fsmonitor``, ``core.sshCommand``, editors,
pagers, credential helpers, filter, diff and merge drivers, ...) and descends into nested
repositories (a gitlink's own ``.git/config`` is read, and ``git status`` runs inside it).
Two layers close that class:

- **Nothing reaches git's configuration.** Paths that git, or another VCS, reads as its own
  control data (``.git`` at any depth and in any spelling a filesystem may fold to it,
  ``.hg``, ``.svn``, ``.bzr``, ..., and ``.gitmodules``) are refused on the write path, and a
  worktree holding one is never committed. The only configuration oldnew's git reads is the
  repository's own ``.git/config`` (written by ``git init``; on a person's existing
  repository, theirs: the filters it defines apply to oldnew's commits as to their own) and
  the ``-c`` options below: system and global files are switched off, inherited ``GIT_*``
  variables are dropped, and git never walks up into an enclosing repository.
- **Every command-running key with a fixed name is disabled** on the command line, the
  highest precedence, so even a repository config changed behind oldnew's back runs no hook,
  monitor, ssh command, prompt, credential helper, editor or pager, and nested repositories
  are never descended into. Drivers are named by the project (``filter.<name>.clean``), so
  no option can switch them all off: they stay closed by the first layer, since only a
  config file can define one and oldnew's git reads none that the project can write.

``.gitattributes`` is allowed: a project may need ``eol``, ``export-ignore`` or
``linguist`` lines, and every driver it can name (``filter=``, ``diff=``, ``merge=``) runs a
command only when configuration defines it, which no file of the project can do. git's
built-in drivers run no command. oldnew never asks git for a patch, so no diff driver or
external diff runs in its own calls either.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess  # nosec B404 - git is run with fixed argument lists, never a shell
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

MANIFEST_DRIVER = f"{shlex.quote(sys.executable)} -I -m oldnew.deps.merge %O %A %B %P"
"""The command git runs to merge a manifest (oldnew's interpreter, isolated from the tree)."""

GIT_OPTIONS = (
    # who commits, and no signing program
    *("-c", "user.name=oldnew", "-c", "user.email=oldnew@localhost"),
    *("-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false"),
    # no hook, no file-system monitor, no untracked cache a monitor would feed
    *("-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false"),
    *("-c", "core.untrackedCache=false"),
    # no transport of any kind (no ssh command, no remote helper, no submodule fetch)
    *("-c", "protocol.allow=never", "-c", "core.sshCommand=false"),
    # no prompt, credential helper, editor or pager
    *("-c", "credential.helper=", "-c", "core.askPass=", "-c", "core.editor=:"),
    *("-c", "sequence.editor=:", "-c", "core.pager=cat"),
    # never descend into a nested repository
    *("-c", "diff.ignoreSubmodules=all", "-c", "submodule.recurse=false"),
    *("-c", "status.submoduleSummary=false"),
    # the merge drivers oldnew defines (``workspace.MERGES`` names them): keep the branch
    # merged onto (a lock: it is locked again from the merged manifest afterwards), and merge
    # manifests by package name with oldnew's own code (``oldnew.deps.merge``, ``python -I``)
    *("-c", "merge.oldnew-keep.name=keep main's version", "-c", "merge.oldnew-keep.driver=true"),
    *("-c", "merge.oldnew-manifest.name=merge dependencies by package name"),
    *("-c", f"merge.oldnew-manifest.driver={MANIFEST_DRIVER}"),
)
"""Options before every git subcommand oldnew runs (command-line config wins over files)."""

CENTRAL_OPTIONS = (
    *("-c", "protocol.file.allow=always", "-c", "protocol.ssh.allow=always"),
    *("-c", "protocol.https.allow=always", "-c", "protocol.git.allow=always"),
    *("-c", "core.sshCommand=ssh -o BatchMode=yes"),
)
"""Added to :data:`GIT_OPTIONS` for the one transport oldnew opens itself: to the central
repository of a run spread over workers (``Workspace.central``), never to a project's remote."""
CENTRAL_WAITS = (0.5, 1.0, 2.0, 4.0, 8.0)
"""Seconds between the tries of a fetch from or push to the central repository: a network
that drops for a few seconds (or a server that restarts) costs a pause, not a blocked task.
A failure that outlasts them (about 15 s) is the caller's error to raise."""

_GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_ASKPASS": "",  # an empty askpass is never run, and SSH_ASKPASS is not tried
    "GIT_EDITOR": ":",  # git's own "no editor"
    "GIT_SEQUENCE_EDITOR": ":",
    "GIT_PAGER": "cat",
    "GIT_PROTOCOL_FROM_USER": "0",
    # no opportunistic write: a ``git status`` in a person's checkout leaves its index alone
    "GIT_OPTIONAL_LOCKS": "0",
}

VCS_CONTROL = {
    ".git": "git's repository folder (or file)",
    "git~1": "git's repository folder (its NTFS short name)",
    ".gitmodules": "git's submodule list",
    "gitmod~1": "git's submodule list (its NTFS short name)",
    ".hg": "a Mercurial repository",
    ".svn": "a Subversion checkout",
    ".bzr": "a Bazaar branch",
    "_darcs": "a Darcs repository",
    ".jj": "a Jujutsu repository",
    ".pijul": "a Pijul repository",
    ".fslckout": "a Fossil checkout",
    "_fossil_": "a Fossil checkout",
}
"""Names (folded by :func:`folded_name`) that a VCS reads as its own control data."""

_GIT_DIR_SHAPE = frozenset({"head", "objects", "refs"})
"""What makes git open a folder as a repository of its own (a bare one, or a ``gitdir:``)."""

# Code points HFS+ ignores in names (git's is_hfs_dotgit skips the same ones).
_IGNORABLE = re.compile("[\u200c-\u200f\u202a-\u202e\u206a-\u206f\ufeff]")


def folded_name(part: str) -> str:
    """Return the name a case-folding, NTFS or HFS+ filesystem would store ``part`` under.

    Case is folded, HFS+'s ignorable code points dropped, NTFS's trailing dots and spaces
    stripped and an NTFS stream suffix (``name:stream``) cut, so ``.GIT``, ``.git.``,
    ``.git `` and ``.git::$INDEX_ALLOCATION`` all fold to ``.git``.
    """
    return _IGNORABLE.sub("", part).split(":", 1)[0].rstrip(" .").casefold()


def control_part(parts: Iterable[str]) -> tuple[str, str] | None:
    """Return the first of ``parts`` that is VCS control data, and what it is, if any."""
    for part in parts:
        kind = VCS_CONTROL.get(folded_name(part))
        if kind is not None:
            return part, kind
    return None


def looks_like_git_dir(names: Iterable[str]) -> bool:
    """Whether a folder holding ``names`` is one git would open as a repository."""
    return _GIT_DIR_SHAPE <= {folded_name(n) for n in names}


def nested_control_paths(tree: Path) -> list[str]:
    """Return every VCS control path under ``tree`` except ``tree``'s own ``.git``.

    That is every name in :data:`VCS_CONTROL`, and every folder shaped like a git
    repository (``HEAD``, ``objects/``, ``refs/``), which ``git`` run inside it, or a
    ``gitdir:`` line, would open with its own config. Symlinks are reported, never
    followed. An unreadable folder is skipped.
    """
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(tree):
        here = Path(dirpath)
        if here != tree and looks_like_git_dir([*dirnames, *filenames]):
            found.append(f"{here.relative_to(tree)}/")
            dirnames.clear()
            continue
        for name in sorted([*dirnames, *filenames]):
            if here == tree and name == ".git":
                continue
            if folded_name(name) in VCS_CONTROL:
                found.append(str((here / name).relative_to(tree)))
        dirnames[:] = sorted(d for d in dirnames if folded_name(d) not in VCS_CONTROL)
    return found


def git_environment(cwd: Path, *, discover: bool = False) -> dict[str, str]:
    """Return the environment for a git run in ``cwd``.

    No inherited ``GIT_*`` variable, no config file but the repository's own, no prompt,
    and no search above ``cwd`` for a repository unless ``discover`` (a read-only question
    such as "which repository is this folder in?").
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(_GIT_ENV)
    if not discover:
        # A checkout that lost its .git must fail, not fall through to an enclosing
        # repository (whose config would apply, and whose files a reset or clean would touch).
        env["GIT_CEILING_DIRECTORIES"] = str(Path(cwd).resolve().parent)
    return env


def run_central(
    *args: str,
    cwd: Path,
    options: Sequence[str] = (),
    final: Callable[[subprocess.CompletedProcess[Any]], bool] | None = None,
    waits: Sequence[float] | None = None,
) -> subprocess.CompletedProcess[Any]:
    """Run a git transport command to the central repository, trying again while it fails.

    ``final`` says of a failed try that trying again cannot help (a push rejected because
    another process moved the ref): it is returned at once. Returns the last try (the caller
    checks the return code and says what failed); ``waits`` defaults to
    :data:`CENTRAL_WAITS`.
    """
    proc = run_git(*args, cwd=cwd, options=options)
    for wait in CENTRAL_WAITS if waits is None else waits:
        if proc.returncode == 0 or (final is not None and final(proc)):
            break
        time.sleep(wait)
        proc = run_git(*args, cwd=cwd, options=options)
    return proc


def run_git(
    *args: str,
    cwd: Path,
    text: bool = True,
    timeout: float | None = None,
    options: Sequence[str] = (),
    discover: bool = False,
    index: Path | None = None,
    input: bytes | None = None,
) -> subprocess.CompletedProcess[Any]:
    """Run ``git <args>`` in ``cwd`` with every config-driven command disabled.

    Every git process oldnew starts goes through here. ``options`` are more ``-c`` settings
    (a workspace's ignore and attributes files); ``discover`` lets git look above ``cwd``
    for the repository (only for read-only questions); ``index`` is an index file of the
    caller's own (``GIT_INDEX_FILE``: writing out a commit leaves the real index alone);
    ``input`` is fed to git's stdin (bytes; none: stdin is closed). Output is captured; the
    caller checks the return code.
    """
    env = git_environment(cwd, discover=discover)
    if index is not None:
        env["GIT_INDEX_FILE"] = str(Path(index).resolve())
    return subprocess.run(  # nosec B603 B607 - fixed argv, git from PATH
        ["git", *GIT_OPTIONS, *options, *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL if input is None else None,
        input=input,
        capture_output=True,
        # A path git prints need not be UTF-8 (a person's Latin-1 file name): its bytes are
        # kept as surrogates, which os and pathlib turn back into the same bytes.
        encoding="utf-8" if text else None,
        errors="surrogateescape" if text else None,
        check=False,
        timeout=timeout,
    )
