"""JavaScript/TypeScript dependencies with npm: lock package.json, install the lock.

npm runs on the host, with the network, in a folder that holds only ``package.json`` and
``package-lock.json``: no ``.npmrc`` of the project's, the user's or the machine's configures
it (empty user and global config files, a scrubbed environment that keeps only the proxy and
certificate settings), and no package's code runs (``--ignore-scripts`` for locking and
installing alike). Only registry packages are fetched: git, file and directory sources are
refused, in package.json or deep in the tree (and a lock that names one is refused). The
environment is ``npm ci`` of the lock into a folder of the cache named
by the lock's hash; the gates get its ``node_modules``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import subprocess  # nosec B404 - fixed argument lists, never a shell
import tempfile
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from oldnew.deps.errors import DependencyError
from oldnew.deps.manifest import JS_LOCK, JS_MANIFEST
from oldnew.deps.process import run_manager
from oldnew.deps.settings import DepSettings
from oldnew.deps.store import Installed, built, check_caps
from oldnew.sandbox.files import read_project_text

_CODE = re.compile(r"^npm (?:error|ERR!) code (\w+)", re.M)
_UNREACHABLE_CODES = frozenset(
    {"ENOTFOUND", "ECONNREFUSED", "ETIMEDOUT", "EAI_AGAIN", "ECONNRESET", "EHOSTUNREACH"}
    | {"ENETUNREACH", "ESOCKETTIMEDOUT", "E401", "E403", "E500", "E502", "E503", "E504"}
)
_RESOLUTION_CODES = frozenset(
    {"E404", "ETARGET", "ERESOLVE", "EINVALIDTAGNAME", "EINVALIDPACKAGENAME", "EBADSEMVER"}
    | {"EALLOWGIT", "EALLOWFILE", "EALLOWDIRECTORY"}
)
_DISK_CODES = frozenset({"ENOSPC", "EDQUOT", "EROFS"})
_DISK = re.compile(r"ENOSPC|no space left on device|EDQUOT|quota exceeded", re.I)
_NOT_IN_SYNC = re.compile(r"can only install packages when your package\.json and", re.I)
_NO_LOCK = re.compile(r"can only install with an existing package-lock\.json", re.I)
_MISLEADING = re.compile(r"Note that you can also install from a|tarball, folder, http url, or git")
"""npm's hint toward sources oldnew refuses (only registry packages are locked)."""
_NOT_FOUND = re.compile(r"The requested resource '((?:@[^/'\s]+/)?[^@'\s]+)@")
_NO_MATCH = re.compile(r"No matching version found for ((?:@[^/\s]+/)?[^@\s]+)@")
_SOURCES = ("--allow-git=none", "--allow-file=none", "--allow-directory=none")
"""No git, tarball-file or folder source, in package.json or any package's dependencies.

(Remote tarball URLs stay allowed: a registry may serve its tarballs from another host, and
:mod:`oldnew.deps.manifest` refuses a URL in package.json.)"""
_KEEP = ("PATH", "LANG", "LC_ALL", "SSL_CERT_FILE", "SSL_CERT_DIR", "NODE_EXTRA_CA_CERTS") + (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
)


def npm_bin() -> str:
    """Return the npm executable on PATH.

    Raises:
        DependencyError: npm is not installed (kind ``install``: a person installs Node.js).

    """
    found = shutil.which("npm")
    if found is None:
        raise DependencyError(
            "install",
            "npm is not installed on this machine, so the project's JavaScript dependencies "
            "cannot be locked or installed: install Node.js (with npm) and retry",
        )
    return found


@functools.cache
def node_version() -> str:
    """Return ``node --version`` ("" when node does not answer): part of an environment's key."""
    node = shutil.which("node")
    if node is None:
        return ""
    try:
        proc = subprocess.run(  # nosec B603 - fixed argv
            [node, "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return proc.stdout.strip()


@contextmanager
def _config_dir(settings: DepSettings) -> Iterator[Path]:
    """Yield a new folder with empty user and global npmrc files (removed afterwards)."""
    parent = settings.cache / "tmp"
    parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="npmrc-", dir=parent))
    try:
        (folder / "user.npmrc").write_text("", encoding="utf-8")
        (folder / "global.npmrc").write_text("", encoding="utf-8")
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _variables(home: Path) -> dict[str, str]:
    """Return npm's environment: PATH, locale, proxy and certificates, nothing ``NPM_CONFIG``."""
    env = {k: os.environ[k] for k in _KEEP if k in os.environ}
    return env | {"HOME": str(home), "NO_COLOR": "1", "NO_UPDATE_NOTIFIER": "1"}


def run_npm(args: list[str], cwd: Path, settings: DepSettings) -> subprocess.CompletedProcess[str]:
    """Run ``npm args`` in ``cwd`` with oldnew's configuration only (cache, registry, limits).

    Raises:
        DependencyError: npm is missing, or took longer than ``settings.timeout`` (``install``).

    """
    fetch_timeout = int(max(1, min(settings.timeout, 60)) * 1000)
    with _config_dir(settings) as config:
        argv = [npm_bin(), *args, "--ignore-scripts", "--no-audit", "--no-fund"]
        argv += ["--userconfig", str(config / "user.npmrc")]
        argv += ["--globalconfig", str(config / "global.npmrc")]
        argv += ["--cache", str(settings.cache / "npm"), "--no-update-notifier"]
        argv += ["--fetch-retries=2", "--fetch-retry-factor=2", "--fetch-retry-mintimeout=500"]
        argv += ["--fetch-retry-maxtimeout=4000", f"--fetch-timeout={fetch_timeout}"]
        argv += ["--include=dev", "--include=optional", *_SOURCES]
        if settings.npm_registry:
            argv += ["--registry", settings.npm_registry]
        where = f"the npm registry ({settings.npm_registry or 'npm default'})"
        env = _variables(config)
        return run_manager(argv, cwd=cwd, env=env, timeout=settings.timeout, source=where)


def _declared_names(manifest: str) -> tuple[str, ...]:
    try:
        data = json.loads(manifest)
    except ValueError:
        return ()
    if not isinstance(data, dict):
        return ()
    names: set[str] = set()
    for field in ("dependencies", "devDependencies", "optionalDependencies", "peerDependencies"):
        table = data.get(field)
        if isinstance(table, dict):
            names.update(str(k) for k in table)
    return tuple(sorted(names))


def _words(stderr: str) -> str:
    """Return npm's error lines, without the prefix and the pointer to its debug log."""
    lines = []
    for line in stderr.strip().splitlines():
        text = re.sub(r"^npm (?:error|ERR!|warn|WARN)\s?", "", line)
        if text.strip() in ("Clean install a project", "Usage:"):
            break  # the rest is npm's help for the command, not about this failure
        if text.strip() == "404" or text.startswith("code ") or _MISLEADING.search(text):
            continue
        if "A complete log of this run" in text or "For a full report see" in text:
            continue
        if text.startswith(str(Path("/"))) and text.endswith(".txt"):
            continue  # the path of npm's report file, under oldnew's cache
        lines.append(text)
    return "\n".join(lines).strip()[-2500:]


def failure(stderr: str, manifest: str, settings: DepSettings, *, ci: bool) -> DependencyError:
    """Return the typed failure npm's ``stderr`` describes (npm's own words kept).

    ``ci`` says it came from ``npm ci`` (a lock out of step with package.json is the coder's
    ``lock_mismatch`` there).
    """
    codes = _CODE.findall(stderr)
    code = codes[0] if codes else ""
    words = _words(stderr)
    where = settings.npm_registry or "npm's default registry (https://registry.npmjs.org/)"
    if code in _DISK_CODES or (not code and _DISK.search(stderr)):
        return DependencyError(
            "install",
            f"the disk refused npm's writes (cache {settings.cache}): free some space or point "
            f"the dependency cache elsewhere (OLDNEW_DEPS_CACHE), then retry.\nnpm said: {words}",
        )
    if code in _UNREACHABLE_CODES:
        names = _declared_names(manifest)
        return DependencyError(
            "unreachable",
            f"the npm registry {where} could not be reached ({code}), so these packages could "
            f"not be resolved or fetched: {', '.join(names) or '(none named)'}. Check the "
            "network or proxy (HTTPS_PROXY), or point oldnew at a reachable registry or mirror "
            f"(--npm-registry URL, or OLDNEW_NPM_REGISTRY), then retry.\nnpm said: {words}",
            packages=tuple(f"node:{n}" for n in names),
        )
    if ci and (code == "EUSAGE" or _NOT_IN_SYNC.search(stderr) or _NO_LOCK.search(stderr)):
        missing = bool(_NO_LOCK.search(stderr))
        return DependencyError(
            "lock_mismatch",
            (
                f"there is no usable {JS_LOCK}"
                if missing
                else f"{JS_LOCK} does not match {JS_MANIFEST}"
            )
            + f": lock again ('npm install --package-lock-only --ignore-scripts') and commit "
            f"the new {JS_LOCK}.\nnpm said: {words[:1200]}",
        )
    if code == "EJSONPARSE":
        return DependencyError(
            "manifest", f"{JS_MANIFEST} or {JS_LOCK} is not valid JSON: fix it.\nnpm said: {words}"
        )
    if code in _RESOLUTION_CODES:
        what = {
            "E404": "a package is not in the registry: check its name",
            "ETARGET": "no published version matches a range: use a version that exists",
            "ERESOLVE": "the declared versions conflict (a peer dependency included): choose "
            "versions that agree",
            "EALLOWGIT": "a package depends on a git source, which oldnew does not install: "
            "choose another package or version",
            "EALLOWFILE": "a package depends on a local file, which oldnew does not install: "
            "choose another package or version",
            "EALLOWDIRECTORY": "a package depends on a local folder, which oldnew does not "
            "install: choose another package or version",
        }.get(code, "change the names or version ranges so that they exist and agree")
        names = tuple(_NOT_FOUND.findall(stderr) + _NO_MATCH.findall(stderr))
        return DependencyError(
            "resolution",
            f"the dependencies in {JS_MANIFEST} cannot be resolved ({code}): {what} in "
            f"{JS_MANIFEST} (registry {where}).\nnpm said: {words}",
            packages=tuple(sorted(set(names))),
        )
    return DependencyError(
        "install",
        f"npm failed ({code or 'no error code'}) with the registry {where}: read npm's words "
        f"below, fix the cause and retry.\nnpm said: {words}",
    )


def _copy_manifests(tree: Path, folder: Path) -> None:
    """Copy package.json and package-lock.json (only they, never a symlink) into ``folder``."""
    for name in (JS_MANIFEST, JS_LOCK):
        source = tree / name
        if source.is_file() and not source.is_symlink():
            shutil.copyfile(source, folder / name)


def _manifest_text(tree: Path) -> str:
    text = read_project_text(tree, JS_MANIFEST)
    if text is None:
        raise DependencyError(
            "manifest",
            f"there is no {JS_MANIFEST} (a plain file) to lock: declare the dependencies there",
        )
    return text


def _settled(manifest: str, lock_bytes: bytes, settings: DepSettings) -> Path:
    """Return the marker saying npm locked ``manifest`` to exactly ``lock_bytes`` before."""
    npm = Path(npm_bin()).resolve()
    tool = f"{node_version()} {npm} {npm.stat().st_mtime_ns}"
    digest = hashlib.sha256(f"{tool}\0{manifest}\0".encode() + lock_bytes).hexdigest()
    return settings.cache / "locks" / f"npm-{digest[:32]}"


def lock(tree: Path, settings: DepSettings) -> bool:
    """Resolve ``tree``'s package.json into package-lock.json; return whether it changed.

    An existing lock keeps its pins where they still satisfy package.json, so adding one
    package changes only what it needs. A package.json and lock that npm itself settled on
    before (same npm) are not locked again: npm would write the same bytes.

    Raises:
        DependencyError: npm failed (kind by its cause: see :func:`failure`).

    """
    manifest = _manifest_text(tree)
    old = tree / JS_LOCK
    before = old.read_bytes() if old.is_file() and not old.is_symlink() else None
    if before is not None and _settled(manifest, before, settings).is_file():
        return False
    parent = settings.cache / "tmp"
    parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="npm-lock-", dir=parent))
    try:
        _copy_manifests(tree, folder)
        _drop_foreign_lock(folder / JS_LOCK, settings)
        proc = run_npm(["install", "--package-lock-only"], folder, settings)
        if proc.returncode != 0:
            raise failure(proc.stderr, manifest, settings, ci=False)
        new = (folder / JS_LOCK).read_bytes()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    mark = _settled(manifest, new, settings)
    mark.parent.mkdir(parents=True, exist_ok=True)
    mark.touch()
    if before == new:
        return False
    old.unlink(missing_ok=True)
    old.write_bytes(new)
    return True


def _lock_data(lock_text: str) -> dict[str, Any]:
    try:
        data = json.loads(lock_text)
    except ValueError:
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("packages", {}), dict):
        raise DependencyError(
            "lock_mismatch",
            f"{JS_LOCK} is not a valid npm lock (JSON with a 'packages' object): delete it and "
            "let oldnew lock again",
        )
    if data.get("lockfileVersion", 0) < 2 or "packages" not in data:
        raise DependencyError(
            "lock_mismatch",
            f"{JS_LOCK} is an old (version 1) lock without 'packages': delete it and let "
            "oldnew lock again",
        )
    return data


def locked_packages(lock_text: str) -> list[dict[str, str]]:
    """Return the packages a package-lock.json pins (name, version), the project left out.

    Nested copies (``node_modules/a/node_modules/b``) count once per copy; a workspace link
    counts as its target.

    Raises:
        DependencyError: the lock is not JSON or not a v2/v3 lock (``lock_mismatch``).

    """
    data = _lock_data(lock_text)
    out = []
    for key, entry in data["packages"].items():
        if not key or not isinstance(entry, dict) or entry.get("link"):
            continue
        _, sep, tail = key.rpartition("node_modules/")
        if not sep:
            continue  # a workspace folder, not an installed package
        name = str(entry.get("name") or tail)
        out.append({"name": name, "version": str(entry.get("version", ""))})
    return out


DEFAULT_REGISTRY = "https://registry.npmjs.org/"


def _drop_foreign_lock(path: Path, settings: DepSettings) -> None:
    """Remove a copied lock that names other sources than the run's registry.

    npm keeps a lock's ``resolved`` URLs as they are: such a lock is resolved anew instead.
    """
    if not path.is_file():
        return
    try:
        _check_sources(_lock_data(path.read_text(encoding="utf-8")), settings)
    except (DependencyError, UnicodeDecodeError):
        path.unlink()


def _check_sources(data: dict[str, Any], settings: DepSettings) -> None:
    """Refuse a lock that installs anything but the run's registry's tarballs.

    Git, file and link sources are refused, and so is a tarball from any other host: the
    lock must not choose where its packages come from (``--npm-registry`` does).
    """
    registry = urllib.parse.urlsplit(settings.npm_registry or DEFAULT_REGISTRY)
    for key, entry in data["packages"].items():
        if not key or not isinstance(entry, dict):
            continue
        resolved = str(entry.get("resolved", ""))
        where = urllib.parse.urlsplit(resolved)
        foreign = bool(resolved) and (
            where.scheme not in ("http", "https") or where.netloc != registry.netloc
        )
        if entry.get("link") or foreign:
            raise DependencyError(
                "lock_mismatch",
                f"{JS_LOCK} installs {key} from {resolved or 'a local link'}, not from the "
                f"run's registry ({registry.geturl()}): declare it by version in "
                f"{JS_MANIFEST}, lock again and commit",
            )


_DEPENDENCY_TABLES = ("dependencies", "devDependencies", "optionalDependencies", "peerDependencies")


def _check_in_step(manifest: str, data: dict[str, Any]) -> None:
    """Refuse a lock whose root does not declare what package.json declares (as npm ci)."""
    try:
        declared = json.loads(manifest)
    except ValueError:
        raise DependencyError(
            "manifest", f"{JS_MANIFEST} is not valid JSON: fix its syntax"
        ) from None
    root = data["packages"].get("", {})
    if not isinstance(declared, dict) or not isinstance(root, dict):
        raise DependencyError("manifest", f"{JS_MANIFEST} must hold a JSON object")
    for table in _DEPENDENCY_TABLES:
        wanted, locked = declared.get(table) or {}, root.get(table) or {}
        if wanted != locked:
            changed = sorted(n for n in set(wanted) | set(locked) if wanted.get(n) != locked.get(n))
            raise DependencyError(
                "lock_mismatch",
                f"{JS_LOCK} does not match {JS_MANIFEST}: {table} differ for "
                f"{', '.join(changed)}. Lock again ('npm install --package-lock-only "
                f"--ignore-scripts') and commit the new {JS_LOCK}",
                packages=tuple(changed),
            )


def install(tree: Path, settings: DepSettings) -> Installed:
    """Return the node_modules environment of ``tree``'s package-lock.json, made once.

    The environment is a cache folder named by the lock's hash (and node's version) holding
    package.json, the lock and ``node_modules`` from ``npm ci``; a second call with the same
    lock installs nothing.

    Raises:
        DependencyError: no lock or one that does not match package.json (``lock_mismatch``),
            a cap passed, or npm failed (kind by its cause).

    """
    manifest = _manifest_text(tree)
    path = tree / JS_LOCK
    if not path.is_file() or path.is_symlink():
        raise DependencyError(
            "lock_mismatch",
            f"{JS_MANIFEST} declares dependencies but there is no {JS_LOCK}: lock them "
            "('npm install --package-lock-only --ignore-scripts') and commit the lock",
        )
    text = path.read_text(encoding="utf-8")
    packages = locked_packages(text)
    data = _lock_data(text)
    _check_in_step(manifest, data)
    _check_sources(data, settings)
    check_caps(packages, settings, JS_LOCK)
    key = hashlib.sha256(f"node {node_version()}\0{text}".encode()).hexdigest()[:16]

    def make(folder: Path) -> str:
        folder.mkdir(parents=True, exist_ok=True)
        _copy_manifests(tree, folder)
        proc = run_npm(["ci"], folder, settings)
        if proc.returncode != 0:
            raise failure(proc.stderr, manifest, settings, ci=True)
        (folder / "node_modules").mkdir(exist_ok=True)  # npm makes none for an empty lock
        return (proc.stdout.strip() or proc.stderr.strip())[-500:]

    return built("node", key, settings, packages, make)
