"""Python dependencies with uv: resolve ``pyproject.toml`` to ``uv.lock``, install the lock.

uv runs on the host, with the network, on a scratch folder that holds only the manifest and
the lock: no file of the project's can configure it (``--no-config``, ``--no-sources``), and
it never builds a package (``--no-build``: wheels only), so no code of the project's or of a
package runs while anything is fetched or installed. A package that publishes no wheel is a
question for a person (:class:`DependencyError` of kind ``source_only``); one they allow a
source build of is built in the sandbox (:mod:`oldnew.deps.builds`) and offered to uv as a
page of wheels (``DepSettings.find_links``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess  # nosec B404 - fixed argument lists, never a shell
import sys
import tempfile
import tomllib
from dataclasses import replace
from pathlib import Path

from oldnew.deps.errors import DependencyError
from oldnew.deps.manifest import PY_LOCK, PY_MANIFEST, normalise
from oldnew.deps.process import run_manager
from oldnew.deps.settings import BUILT_WHEELS, DepSettings

_UNREACHABLE = re.compile(
    r"Failed to fetch|tcp connect error|dns error|Connection refused|error sending request|"
    r"Could not connect|timed out|Name or service not known|failed to lookup address",
    re.I,
)
_NO_WHEEL = re.compile(r"(\S+?)==\S+ has no usable wheels|Wheels are required for `([^`]+)`")
_NOT_FOUND = re.compile(r"Because (\S+) was not found in the (?:package registry|provided)")
_DISK = re.compile(r"No space left on device|Disk quota exceeded|Read-only file system", re.I)


def uv_bin() -> str:
    """Return the uv executable installed with oldnew (the ``uv`` package from PyPI)."""
    from uv import find_uv_bin  # noqa: PLC0415 - the package is only needed here

    return str(find_uv_bin())


def base_python() -> str:
    """Return the interpreter project environments are made from: oldnew's own Python."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    base = Path(sys.base_prefix) / "bin" / version
    return str(base) if base.exists() else sys.executable


def _variables(settings: DepSettings) -> dict[str, str]:
    """Return uv's environment: its cache, no Python downloads, the user's proxy settings."""
    keep = ("PATH", "HOME", "LANG", "SSL_CERT_FILE", "SSL_CERT_DIR", "UV_HTTP_RETRIES") + (
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "http_proxy",
        "https_proxy",
        "no_proxy",
    )
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env |= {
        "UV_CACHE_DIR": str(settings.cache / "uv"),
        "UV_PYTHON_DOWNLOADS": "never",
        "UV_NO_PROGRESS": "1",
        "UV_LINK_MODE": "hardlink",
        "UV_HTTP_TIMEOUT": str(int(max(1, min(settings.timeout, 60)))),
        "NO_COLOR": "1",
    }
    return env


def _index(settings: DepSettings) -> list[str]:
    links = [a for page in settings.find_links for a in ("--find-links", str(page))]
    return (["--default-index", settings.index] if settings.index else []) + links


def run_uv(
    args: list[str], cwd: Path, settings: DepSettings, extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``uv args`` in ``cwd``; a time-out is a DependencyError of kind ``install``."""
    env = {**_variables(settings), **(extra or {})}
    where = f"the package index ({settings.index or 'PyPI'})"
    return run_manager([uv_bin(), *args], cwd=cwd, env=env, timeout=settings.timeout, source=where)


def _declared_names(manifest: str) -> tuple[str, ...]:
    try:
        data = tomllib.loads(manifest)
    except tomllib.TOMLDecodeError:
        return ()
    items = list(data.get("project", {}).get("dependencies", []))
    for group in (data.get("dependency-groups") or {}).values():
        items += [i for i in group if isinstance(i, str)]
    names = {re.split(r"[\s<>=!~;\[(@]", i.strip(), maxsplit=1)[0] for i in items}
    return tuple(sorted(names))


def failure(stderr: str, manifest: str, settings: DepSettings) -> DependencyError:
    """Return the typed failure uv's ``stderr`` describes (the resolver's own words kept)."""
    words = "\n".join(
        line for line in stderr.strip().splitlines() if not line.startswith("Using CPython")
    )[-2500:]
    if _DISK.search(words):
        return DependencyError(
            "install", f"the disk refused uv's writes (cache {settings.cache}): {words}"
        )
    if _UNREACHABLE.search(words) and "No solution found" not in words:
        names = _declared_names(manifest)
        where = settings.index or "PyPI (uv's default index)"
        return DependencyError(
            "unreachable",
            f"the package index {where} could not be reached, so these packages could not be "
            f"resolved or fetched: {', '.join(names) or '(none named)'}. Check the network or "
            "proxy, or point oldnew at a reachable index or mirror (--package-index URL, or "
            f"OLDNEW_PACKAGE_INDEX), then retry.\nuv said: {words}",
            packages=tuple(f"python:{normalise(n)}" for n in names),
        )
    no_wheel = [a or b for a, b in _NO_WHEEL.findall(words)]
    if no_wheel:
        names = tuple(sorted(set(no_wheel)))
        return DependencyError(
            "source_only",
            f"{', '.join(names)} publish only source distributions (no wheel for this "
            "platform): installing them would run their build code, and oldnew installs "
            "wheels only. Allow a source build (built in the sandbox, without network), name "
            "another package for the coder to use, or build a wheel of it yourself, serve it "
            f"from an index (--package-index) and retry, or leave the feature out.\nuv said: "
            f"{words}",
            packages=tuple(f"python:{normalise(n)}" for n in names),
        )
    return DependencyError(
        "resolution",
        f"the dependencies in {PY_MANIFEST} cannot be resolved: change the names or version "
        f"ranges so that they exist on the index and agree.\nuv said: {words}",
        packages=tuple(f"python:{normalise(n)}" for n in _NOT_FOUND.findall(words)),
    )


def _scratch(tree: Path, parent: Path) -> Path:
    """Copy the manifest and the lock (only they) into a new folder under ``parent``."""
    parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="lock-", dir=parent))
    for name in (PY_MANIFEST, PY_LOCK):
        source = tree / name
        if source.is_file() and not source.is_symlink():
            shutil.copyfile(source, folder / name)
    return folder


def _lock_args(settings: DepSettings) -> list[str]:
    return [
        "--no-config",
        "--no-sources",
        "--no-build",
        "--python",
        base_python(),
        *_index(settings),
    ]


def lock(tree: Path, settings: DepSettings) -> bool:
    """Resolve ``tree``'s pyproject.toml into its uv.lock; return whether the lock changed.

    An existing lock keeps its pins where they still satisfy the manifest, so adding one
    package changes only what it needs (a package built from source included: the pages of
    built wheels it names are offered again).

    Raises:
        DependencyError: the resolver failed (kind by its cause: see :func:`failure`).

    """
    manifest = (tree / PY_MANIFEST).read_text(encoding="utf-8")
    settings = _with_built_pages(tree, settings)
    folder = _scratch(tree, settings.cache / "tmp")
    try:
        proc = run_uv(["lock", *_lock_args(settings)], folder, settings)
        if proc.returncode != 0:
            raise failure(proc.stderr, manifest, settings)
        new = (folder / PY_LOCK).read_bytes()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    old = tree / PY_LOCK
    if old.is_file() and not old.is_symlink() and old.read_bytes() == new:
        return False
    old.unlink(missing_ok=True)
    old.write_bytes(new)
    return True


def check_lock(tree: Path, settings: DepSettings) -> None:
    """Check that ``tree``'s uv.lock matches its pyproject.toml (nothing resolved anew).

    Pages of wheels built from source that the lock names are offered again (see
    :func:`built_pages`): without them, a package built here would not be found.

    Raises:
        DependencyError: kind ``lock_mismatch`` when it does not (or is missing); the
            person's kinds (``unreachable``, ``install``, ``source_only``: a built wheel this
            machine no longer has) as they are.

    """
    if not (tree / PY_LOCK).is_file():
        raise DependencyError(
            "lock_mismatch",
            f"{PY_MANIFEST} declares dependencies but there is no {PY_LOCK}: run 'uv lock' "
            "and commit it",
        )
    manifest = (tree / PY_MANIFEST).read_text(encoding="utf-8")
    settings = _with_built_pages(tree, settings)
    folder = _scratch(tree, settings.cache / "tmp")
    try:
        proc = run_uv(["lock", "--check", *_lock_args(settings)], folder, settings)
        error = failure(proc.stderr, manifest, settings) if proc.returncode else None
        if error is not None and error.kind == "unreachable":
            # Offline, the cache may still hold what the check needs.
            args = ["lock", "--check", "--offline", *_lock_args(settings)]
            proc = run_uv(args, folder, settings)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if proc.returncode == 0:
        return
    error = failure(proc.stderr, manifest, settings)
    if error.kind in ("unreachable", "install", "source_only"):
        raise error
    raise DependencyError(
        "lock_mismatch",
        f"{PY_LOCK} does not match {PY_MANIFEST}: run 'uv lock' and commit the new lock.\n"
        f"uv said: {proc.stderr.strip()[-800:]}",
    )


def built_pages(lock_text: str, settings: DepSettings) -> list[Path]:
    """Return the pages of wheels built from source (``deps.builds``) that a uv.lock names.

    A package a person allowed a source build of is locked from its page in this cache, which
    every later lock or check of that lock must be offered again. Only pages in this cache's
    folder of built wheels count: a lock is the project's file, and a page it names anywhere
    else (in the project, say) would install wheels nobody built or allowed.
    """
    try:
        data = tomllib.loads(lock_text)
    except tomllib.TOMLDecodeError:
        return []
    ours = (settings.cache / BUILT_WHEELS).resolve()
    out = []
    for pkg in data.get("package", []):
        source = pkg.get("source", {})
        path = Path(str(source.get("registry", ""))) if isinstance(source, dict) else Path()
        if path.suffix != ".html" or not path.is_absolute() or path.is_symlink():
            continue
        if path.parent.resolve() == ours and path.is_file() and path not in out:
            out.append(path)
    return out


def _with_built_pages(tree: Path, settings: DepSettings) -> DepSettings:
    """Return ``settings`` offering also the built-wheel pages ``tree``'s uv.lock names."""
    lock = tree / PY_LOCK
    if not lock.is_file() or lock.is_symlink():
        return settings
    pages = built_pages(lock.read_text(encoding="utf-8"), settings)
    return replace(settings, find_links=tuple(dict.fromkeys([*settings.find_links, *pages])))


def locked_packages(lock_text: str) -> list[dict[str, str]]:
    """Return the packages a uv.lock pins (name, version), the project itself left out."""
    try:
        data = tomllib.loads(lock_text)
    except tomllib.TOMLDecodeError:
        raise DependencyError(
            "lock_mismatch", f"{PY_LOCK} is not valid TOML: delete it and let oldnew lock again"
        ) from None
    out = []
    for pkg in data.get("package", []):
        source = pkg.get("source", {})
        if "virtual" in source or "editable" in source or source.get("directory") == ".":
            continue
        out.append({"name": str(pkg.get("name")), "version": str(pkg.get("version", ""))})
    return out


def sync(tree: Path, target: Path, settings: DepSettings) -> str:
    """Install the packages ``tree``'s uv.lock pins into the new environment ``target``.

    Every group and extra is installed (test tools included); the project itself is not
    (its code is found from its folder, as the gates run it). Returns uv's summary.

    Raises:
        DependencyError: the install failed (kind by its cause).

    """
    manifest = (tree / PY_MANIFEST).read_text(encoding="utf-8")
    folder = _scratch(tree, settings.cache / "tmp")
    # Bytecode compiled once here: the sandbox mounts the environment read-only, so a package
    # not compiled now would be compiled again by every test run that imports it.
    args = ["sync", "--frozen", "--no-install-project", "--all-groups", "--all-extras"]
    args.append("--compile-bytecode")
    args += ["--no-config", "--no-build", "--python", base_python(), *_index(settings)]
    try:
        proc = run_uv(args, folder, settings, {"UV_PROJECT_ENVIRONMENT": str(target)})
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if proc.returncode != 0:
        raise failure(proc.stderr, manifest, settings)
    # uv's counts ("Prepared 3 packages", "Installed 12 packages"), not its list of names.
    counts = [line for line in proc.stderr.splitlines() if not line.startswith((" +", " -"))]
    return "\n".join(counts).strip()[-500:]


def bare_venv(target: Path, settings: DepSettings) -> None:
    """Create an environment with no third-party package (a project that declares none)."""
    proc = run_uv(
        ["venv", "--no-config", "--python", base_python(), str(target)], target.parent, settings
    )
    if proc.returncode != 0:
        raise failure(proc.stderr, "", settings)
