"""A sandbox: a scratch copy of a project, and commands run on it behind every layer."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess  # nosec B404 - fixed argument lists, never a shell
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from oldnew.sandbox.env import ProjectEnv, oldnew_env
from oldnew.sandbox.files import copy_project, disk_usage, link_leaves
from oldnew.sandbox.host import Host, Layer, Limits, probe_host, release_uid, take_uid
from oldnew.sandbox.process import (
    LIMITS_LAUNCHER,
    RunResult,
    SandboxInit,
    kill_tree,
    kill_uid,
    processes_of,
    read_capped,
    supervisor_argv,
    wait_for,
)
from oldnew.web.toolchain import TOOLS_DIR

NODE_MODULES = "node_modules"
"""Where the environment's node_modules appears in the project's copy."""
PACKAGE_DIR = Path(__file__).resolve().parents[1]
"""oldnew's own package, shown read-only to the web driver and the preview's server: they run
from it, and an editable install imports it from there."""
WEB_TOOLS = TOOLS_DIR / NODE_MODULES
"""oldnew's own npm tools (oldnew.web.toolchain), shown read-only at ``node_modules`` beside
the copy when installed: Node resolves the project's own packages first, these as the
fallback, and nothing is written into the project."""
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
"""The host's system folders the sandbox shows, read-only (a merged-/usr link stays a link)."""
ETC_FILES = (
    "ld.so.cache",
    "ld.so.conf",
    "localtime",
    "timezone",
    "alternatives",
    "ssl/openssl.cnf",
)
"""The host's /etc entries the sandbox shows: the loader's cache, the time zone, the
alternatives links /usr/bin points through, OpenSSL's settings (Node reads them at start).
Users, groups and hosts are the sandbox's own."""
BROWSER_ETC = ("fonts",)
"""What the web driver's box also shows: fontconfig's settings, for Chromium's fonts."""
NETWORK_ETC = ("resolv.conf", "hosts", "gai.conf", "ssl", "ca-certificates", "pki")
"""What a run with the network (a dependency audit) also sees: name service, certificates."""
_python_runs_as_uid: dict[tuple[bool, str], bool] = {}


def remove_tree(root: Path) -> None:
    """Delete ``root`` even where the code under test took every permission off a folder."""
    for dirpath, dirnames, _ in os.walk(root, topdown=True):
        for name in dirnames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                try:
                    os.chmod(path, 0o700)
                except OSError:
                    continue
    shutil.rmtree(root, ignore_errors=True)


def sweep_stale(scratch_root: Path | None) -> list[Path]:
    """Remove scratch folders whose oldnew process is gone (it was killed mid-validation)."""
    removed = []
    for folder in Path(scratch_root or tempfile.gettempdir()).glob("oldnew-sbx-*"):
        try:
            pid = int((folder / "owner").read_text())
            os.kill(pid, 0)
        except ProcessLookupError:
            remove_tree(folder)
            removed.append(folder)
        except (OSError, ValueError):
            continue  # alive, not ours to judge, or still being created
    return removed


class Sandbox:
    """A scratch copy of a project and the means to run commands on it, confined.

    Use :meth:`open`; commands run with :meth:`run`, in :attr:`tree` (the copy).
    """

    def __init__(
        self,
        source: Path,
        scratch: Path,
        *,
        limits: Limits,
        host: Host,
        use_bwrap: bool,
        drop_uid: bool,
        env: ProjectEnv | None = None,
        web_tools: bool = False,
        oldnew_code: bool = False,
        exclude: tuple[str, ...] = (),
    ) -> None:
        """Prepare (but do not fill) a sandbox in ``scratch``; :meth:`open` does both."""
        self.source = source
        self.env = env or ProjectEnv.host(source)
        """The environment the project's code runs with here; the sandbox shows what it names."""
        self.scratch = scratch
        self.tree = scratch / "tree"
        self.home = scratch / "home"
        self.limits = limits
        self.host = host
        self.bwrap = host.bwrap if use_bwrap else None
        self.uid: int | None = None
        self.layers: list[Layer] = []
        self.files: list[str] = []
        self.links_out: list[tuple[str, str]] = []
        """Symlinks of the project that lead out of it: (path, target)."""
        self._counter = itertools.count(1)
        self._drop_uid = drop_uid
        self.web_tools = WEB_TOOLS if web_tools and WEB_TOOLS.is_dir() else None
        """oldnew's npm tools shown beside the copy (:data:`WEB_TOOLS`), or None."""
        self._show_package = web_tools or oldnew_code
        """Whether oldnew's own package is shown (the web driver and the preview's server run
        from it); the other commands see nothing of the checkout it may live in."""
        self._bwrap_args: list[str] = []
        self._shown: list[Path] = []
        self.exclude = exclude
        """Project folders left out of the copy (``sandbox.files.copy_project``)."""

    # -- lifecycle -------------------------------------------------------------------------

    @classmethod
    @contextmanager
    def open(
        cls,
        source: Path,
        *,
        env: ProjectEnv | None = None,
        limits: Limits | None = None,
        use_bwrap: bool = True,
        drop_uid: bool = True,
        scratch_root: Path | None = None,
        web_tools: bool = False,
        oldnew_code: bool = False,
        exclude: tuple[str, ...] = (),
    ) -> Iterator[Sandbox]:
        """Copy ``source`` into a new scratch folder, yield the sandbox, then remove it all.

        ``env`` is the environment the project's code runs with (default: oldnew's own, with
        the project's node_modules). ``use_bwrap=False`` and ``drop_uid=False`` switch those
        layers off (tests use them to exercise the fallbacks); a layer the machine lacks is off
        whatever they say. ``web_tools=True`` shows oldnew's npm tools beside the copy and
        oldnew's own package (the web gates' driver needs both), ``oldnew_code=True`` the
        package alone (the preview's server runs from it). Otherwise the code's own imports
        resolve against the project's packages only (a task cannot pass by importing a
        package it never declared), and nothing of a checkout oldnew lives in is shown.
        ``exclude`` names project folders the copy leaves out (the gates' copies leave out
        the acceptance suite: only its own gate runs it, from main).
        """
        sweep_stale(scratch_root)
        scratch = Path(tempfile.mkdtemp(prefix="oldnew-sbx-", dir=scratch_root)).resolve()
        (scratch / "owner").write_text(str(os.getpid()))
        box = cls(
            Path(source).resolve(),
            scratch,
            limits=limits or Limits(),
            host=probe_host(),
            use_bwrap=use_bwrap,
            drop_uid=drop_uid,
            env=env,
            web_tools=web_tools,
            oldnew_code=oldnew_code,
            exclude=exclude,
        )
        try:
            box._prepare()
            yield box
        finally:
            box._reap()
            release_uid(box.uid)
            remove_tree(scratch)

    def _prepare(self) -> None:
        os.chmod(self.scratch, 0o755)  # nosec B103 - the sandbox's uid must traverse it
        for folder in (self.tree, self.home, self.home / "tmp", self.scratch / "logs"):
            folder.mkdir(parents=True, exist_ok=True)
        os.chmod(self.scratch / "logs", 0o700)
        self.files = copy_project(
            self.source, self.tree, max_bytes=self.limits.disk_mb * 2**20, exclude=self.exclude
        )
        for rel in self.files:
            if (self.tree / rel).is_symlink():
                target = os.readlink(self.tree / rel)
                if link_leaves(rel, target):
                    self.links_out.append((rel, target))
        if self.host.root and self._drop_uid and self.host.setpriv:
            self.uid = take_uid()
        if not self.bwrap and self.env.node_modules is not None:
            os.symlink(self.env.node_modules, self.tree / NODE_MODULES)
        if not self.bwrap and self.web_tools is not None:
            os.symlink(self.web_tools, self.scratch / NODE_MODULES)
        self._chown_all()
        if self.bwrap:
            self._bwrap_args = self._build_bwrap_args()
        self.layers = self._describe_layers()
        unrunnable = self._python_the_uid_cannot_run() if self.uid is not None else None
        if unrunnable is not None:
            why = (
                f"uid {self.uid} cannot run {unrunnable} here (its folders are not "
                "readable by other users); commands run as root"
            )
            release_uid(self.uid)
            self.uid = None
            self._chown_all()
            self.layers = self._describe_layers(user_note=why)

    def _chown_all(self) -> None:
        for top in (self.tree, self.home):
            self.adopt(top)

    def adopt(self, top: Path) -> None:
        """Give ``top`` and everything under it to the sandbox's uid (files put in by oldnew)."""
        owner = self.uid if self.uid is not None else os.geteuid()
        os.lchown(top, owner, owner)
        for dirpath, dirnames, filenames in os.walk(top):
            for name in [*dirnames, *filenames]:
                os.lchown(os.path.join(dirpath, name), owner, owner)

    def _python_the_uid_cannot_run(self) -> Path | None:
        """Return an interpreter the sandbox's uid cannot run, or None (each checked once).

        Both count: the project's, and oldnew's own, which runs the analysis tools.
        """
        for env in (self.env, oldnew_env()):
            key = (self.bwrap is not None, str(env.python))
            if key not in _python_runs_as_uid:
                argv = env.python_argv("-I", "-c", "import sys; print(sys.base_prefix)")
                result = self.run(argv, timeout=60)
                ok = result.exit_code == 0 and result.stdout.strip() == str(env.base_prefix)
                _python_runs_as_uid[key] = ok
            if not _python_runs_as_uid[key]:
                return env.python
        return None

    # -- bubblewrap --------------------------------------------------------------------------

    def _write_etc(self) -> Path:
        """Write the /etc files the sandbox gets instead of the host's: no host user, no name."""
        etc = self.scratch / "etc"
        etc.mkdir(exist_ok=True)
        uid = self.uid if self.uid is not None else os.geteuid()
        users = {0: "root", 65534: "nobody", uid: "sandbox"}
        (etc / "passwd").write_text(
            "".join(
                f"{name}:x:{n}:{n}:{name}:{self.home if n == uid else '/'}:/bin/sh\n"
                for n, name in users.items()
            )
        )
        (etc / "group").write_text("".join(f"{name}:x:{n}:\n" for n, name in users.items()))
        (etc / "hosts").write_text("127.0.0.1 localhost\n::1 localhost ip6-localhost\n")
        (etc / "hostname").write_text("sandbox\n")
        (etc / "nsswitch.conf").write_text(
            "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n"
        )
        for path in etc.iterdir():
            path.chmod(0o644)
        etc.chmod(0o755)
        return etc

    @staticmethod
    def _parents_args(path: Path, made: set[Path]) -> list[str]:
        """Return --dir arguments that make ``path``'s parents traversable (bwrap: 0700)."""
        out: list[str] = []
        for parent in reversed(path.parents):
            if parent not in made:
                made.add(parent)
                out += ["--perms", "0755", "--dir", str(parent)]
        return out

    def _system_args(self, made: set[Path]) -> list[str]:
        """Return the binds of the host's system folders and of the sandbox's own /etc."""
        args: list[str] = []
        for top in SYSTEM_DIRS:
            path = Path(top)
            if path.is_symlink():
                args += ["--symlink", os.readlink(path), top]
            elif path.is_dir():
                args += ["--ro-bind", top, top]
        names = [*ETC_FILES, *(BROWSER_ETC if self.web_tools is not None else ())]
        shown = [(Path("/etc", name), Path("/etc", name)) for name in names]
        shown += [(own, Path("/etc", own.name)) for own in sorted(self._write_etc().iterdir())]
        for source, dest in shown:
            if source.exists():
                args += [*self._parents_args(dest, made), "--ro-bind", str(source), str(dest)]
        return args

    def _build_bwrap_args(self) -> list[str]:
        """Return bubblewrap's arguments: an empty root that shows only what the code needs.

        Shown read-only: /usr (and the /bin, /lib links into it), a few /etc files, the
        folders of the project's environment and of oldnew's (their tools run from it); a
        /dev of its own, the /proc of its pid namespace, private /tmp, /var/tmp and /dev/shm;
        read-write: the copy and the sandbox's home. Nothing else of the host exists inside.
        """
        assert self.bwrap is not None  # nosec B101 - only called with bubblewrap
        tmp_bytes = str(self.limits.tmp_mb * 2**20)
        args = [self.bwrap, "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts"]
        args += ["--die-with-parent", "--new-session", "--hostname", "sandbox"]
        made: set[Path] = {Path("/"), Path("/dev")}
        args += [*self._system_args(made), "--dev", "/dev", "--proc", "/proc"]
        for tmp in (Path("/tmp"), Path("/var/tmp"), Path("/dev/shm")):  # nosec B108 - our own
            args += [*self._parents_args(tmp, made), "--perms", "1777", "--size", tmp_bytes]
            args += ["--tmpfs", str(tmp)]
            made.add(tmp)
        exposed: list[Path] = []
        # The project's environment, and oldnew's own: its analysis tools run with oldnew's
        # interpreter whatever the project's is.
        package = {PACKAGE_DIR} if self._show_package else set()
        for folder in sorted({*self.env.read_only(), *oldnew_env().read_only(), *package}):
            if not folder.exists() or any(e == folder or e in folder.parents for e in exposed):
                continue
            if any(folder == Path(t) or Path(t) in folder.parents for t in SYSTEM_DIRS):
                continue  # shown already
            exposed.append(folder)
            args += [*self._parents_args(folder, made), "--ro-bind", str(folder), str(folder)]
        for folder in (self.tree, self.home):
            args += [*self._parents_args(folder, made), "--bind", str(folder), str(folder)]
        if self.env.node_modules is not None:
            args += ["--ro-bind", str(self.env.node_modules), str(self.tree / NODE_MODULES)]
        if self.web_tools is not None:
            args += ["--ro-bind", str(self.web_tools), str(self.scratch / NODE_MODULES)]
        self._shown = exposed
        return args

    @staticmethod
    def _network_args() -> list[str]:
        """Return the host's name-service and certificate files, for a run with the network."""
        args: list[str] = []
        for name in NETWORK_ETC:
            if os.path.exists(f"/etc/{name}"):
                args += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
        return args

    # -- layers ------------------------------------------------------------------------------

    def _describe_layers(self, user_note: str = "") -> list[Layer]:
        host, lim = self.host, self.limits
        if self.bwrap:
            net = Layer("network", True, "bubblewrap --unshare-net: loopback only")
            fs = Layer(
                "filesystem",
                True,
                "an empty read-only root showing /usr, a few /etc files, the environments' "
                "folders (" + ", ".join(str(p) for p in self._shown) + "); private /tmp, "
                "/dev and /proc; only the scratch copy is writable",
            )
            pid = Layer("processes", True, "own pid namespace: every process dies with it")
        else:
            reason = host.bwrap_error or "bubblewrap switched off for this run"
            net = Layer(
                "network",
                host.unshare_net,
                "unshare --net: no interfaces" if host.unshare_net else f"open: {reason}",
            )
            fs = Layer("filesystem", False, f"not confined beyond file permissions: {reason}")
            pid = Layer(
                "processes",
                self.uid is not None,
                f"no pid namespace ({reason}); leftover processes of uid {self.uid} are killed"
                if self.uid is not None
                else f"no pid namespace ({reason}); only the process group is killed",
            )
        if self.uid is not None:
            user = Layer("user", True, f"runs as uid {self.uid} (setpriv, no new privileges)")
        elif not host.root:
            user = Layer("user", True, f"runs as the non-root uid {os.geteuid()}")
        else:
            why = user_note or (
                "setpriv is not installed" if not host.setpriv else "uid drop switched off"
            )
            user = Layer("user", False, f"runs as root: {why}; RLIMIT_NPROC has no effect")
        limits = Layer(
            "limits",
            True,
            f"cpu {lim.cpu_seconds}s, data {lim.memory_mb} MB, file {lim.file_mb} MB, "
            f"{lim.open_files} open files, {lim.processes} processes, disk {lim.disk_mb} MB"
            + ("" if host.prlimit else " (set by a Python launcher: prlimit is missing)"),
        )
        env = Layer("environment", True, "scrubbed: PATH, HOME, TMPDIR, locale; no parent vars")
        return [net, fs, pid, user, limits, env]

    def layer_dicts(self) -> list[dict[str, object]]:
        """Return the layers as JSON-ready dicts (for evidence)."""
        return [asdict(layer) for layer in self.layers]

    # -- running -----------------------------------------------------------------------------

    def environment(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """Return the only environment a sandboxed command sees."""
        env = {
            "PATH": ":".join([*map(str, self.env.bin_dirs), "/usr/local/bin:/usr/bin:/bin"]),
            "HOME": str(self.home),
            "TMPDIR": str(self.home / "tmp"),
            "USER": "sandbox",
            "LOGNAME": "sandbox",
            "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONHASHSEED": "0",
            "PYTHONNOUSERSITE": "1",
            "NO_COLOR": "1",
            "CI": "1",
        }
        return {**env, **(extra or {})}

    def _nproc_limit(self) -> int:
        if self.uid is not None or self.host.root:
            return self.limits.processes
        return processes_of(os.getuid()) + self.limits.processes  # the count is per user

    def _limits_prefix(self) -> list[str]:
        lim = self.limits
        values = [
            lim.cpu_seconds,
            lim.memory_mb * 2**20,
            lim.file_mb * 2**20,
            lim.open_files,
            self._nproc_limit(),
            0,
        ]
        if self.host.prlimit:
            names = ("cpu", "data", "fsize", "nofile", "nproc", "core")
            return [
                self.host.prlimit,
                *(f"--{n}={v}" for n, v in zip(names, values, strict=True)),
                "--",
            ]
        # oldnew's own code, not the project's: it sets the limits and execs the command, so
        # it runs with oldnew's interpreter whatever the project's environment is.
        return [sys.executable, "-I", "-S", "-c", LIMITS_LAUNCHER, ",".join(map(str, values))]

    def wrap(
        self,
        argv: Sequence[str],
        cwd: Path,
        *,
        network: bool = False,
        info_fd: int | None = None,
    ) -> list[str]:
        """Return the full command line that runs ``argv`` confined, in ``cwd``.

        ``info_fd`` is where bubblewrap writes the pid of the sandbox's init.
        """
        inner: list[str] = []
        if self.uid is not None and self.host.setpriv:
            inner += [self.host.setpriv, f"--reuid={self.uid}", f"--regid={self.uid}"]
            inner += ["--clear-groups", "--no-new-privs", "--inh-caps=-all"]
            inner += ["--bounding-set=-all", "--"]
        inner += [*self._limits_prefix(), *argv]
        if self.bwrap:
            args = list(self._bwrap_args)
            if network:
                args.remove("--unshare-net")
                args += self._network_args()
            if info_fd is not None:
                args += ["--info-fd", str(info_fd)]
            return [*args, "--remount-ro", "/", "--chdir", str(cwd), "--", *inner]
        if self.host.unshare_net and not network:
            return ["unshare", "--net", "--", *inner]
        return inner

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        network: bool = False,
        stop: threading.Event | None = None,
        pass_fds: Sequence[int] = (),
    ) -> RunResult:
        """Run ``argv`` in the sandbox; kill it all on timeout or when it fills the disk.

        ``network=True`` (for a dependency audit, which runs no project code) keeps every
        layer but the network one. ``stop``, set from another thread, kills the whole tree
        too (a server that runs until someone stops it: the preview). ``pass_fds`` are
        descriptors of the host's the command inherits, with the same numbers (the preview's
        listening socket: the host makes it where the sandbox cannot replace it).
        """
        n = next(self._counter)
        out_path = self.scratch / "logs" / f"{n}.out"
        err_path = self.scratch / "logs" / f"{n}.err"
        workdir = cwd or self.tree
        info_r, info_w = os.pipe() if self.bwrap else (None, None)
        command = self.wrap(argv, workdir, network=network, info_fd=info_w)
        # The lifeline's write end stays here (close-on-exec): when this process dies, however
        # it dies, the supervisor sees the pipe close and kills the command's whole tree.
        life_r, life_w = os.pipe()
        info = "-" if info_w is None else str(info_w)
        command = [*supervisor_argv(life_r, info), *command]
        start = time.monotonic()
        try:
            with open(out_path, "wb") as out, open(err_path, "wb") as err:
                try:
                    proc = subprocess.Popen(  # nosec B603 - argv list built by this module
                        command,
                        cwd=workdir if not self.bwrap else "/",
                        env=self.environment(env),
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=err,
                        start_new_session=True,
                        pass_fds=(
                            (life_r, *pass_fds) if info_w is None else (life_r, info_w, *pass_fds)
                        ),
                    )
                finally:
                    os.close(life_r)
                init = SandboxInit.from_info(info_r, info_w)
                try:
                    killed = self._watch(proc, timeout, init, stop)
                finally:
                    init.finish()  # the namespace and every process in it, gone
        finally:
            os.close(life_w)
        duration = time.monotonic() - start
        self._reap()
        return RunResult(
            argv=list(argv),
            exit_code=None if killed else proc.returncode,
            stdout=read_capped(out_path),
            stderr=read_capped(err_path),
            duration_s=duration,
            killed=killed,
        )

    def _watch(
        self,
        proc: subprocess.Popen[bytes],
        timeout: float,
        init: SandboxInit,
        stop: threading.Event | None = None,
    ) -> str:
        """Wait for ``proc``; return why it was killed, or '' when it ended by itself."""
        deadline = time.monotonic() + timeout
        quota = self.limits.disk_mb * 2**20
        try:
            pidfd: int | None = os.pidfd_open(proc.pid)
        except (AttributeError, OSError):
            pidfd = None
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    self._kill(proc, init)
                    return f"timed out after {timeout:g}s: the whole process tree was killed"
                if wait_for(proc, pidfd, min(left, 0.25)):
                    return ""
                if stop is not None and stop.is_set():
                    self._kill(proc, init)
                    return "stopped on request: the whole process tree was killed"
                if disk_usage(self.scratch) > quota:
                    self._kill(proc, init)
                    return (
                        f"wrote more than the disk quota ({self.limits.disk_mb} MB): "
                        "the whole process tree was killed"
                    )
        finally:
            if pidfd is not None:
                os.close(pidfd)

    def _kill(self, proc: subprocess.Popen[bytes], init: SandboxInit) -> None:
        kill_tree(proc, init)
        self._reap()

    def _reap(self) -> None:
        """Kill whatever the sandbox's uid still runs (a daemon that escaped its group)."""
        if self.uid is not None and not self.bwrap:
            kill_uid(self.uid)  # with bubblewrap the pid namespace already took them all

    # -- files -------------------------------------------------------------------------------

    def write_text(self, rel: str, text: str) -> None:
        """Replace a file of the copy (a mutant, say), owned by the sandbox's uid."""
        path = self.tree / rel
        path.write_text(text, encoding="utf-8")
        if self.uid is not None:
            os.lchown(path, self.uid, self.uid)
