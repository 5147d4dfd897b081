"""Source builds a person allowed: fetched on the host, built into wheels in the sandbox.

A package that publishes no wheel is locked only when a person allows a source build of it
(ledger decision ``source_build``). Then, for each such package the manifest declares:

1. on the host, with the network, running no code: read the index's simple page (PEP 503) for
   the package, pick the newest source distribution whose version the manifest allows,
   download it and check it against the ``#sha256=`` of its link;
2. in the sandbox, without network: ``pip wheel --no-deps --no-build-isolation --no-index``
   on the unpacked sources, with the build tools oldnew's own environment has (a backend it
   lacks is a failed build: nothing is fetched for it);
3. the wheel is kept in the cache (``built-wheels/<sdist hash>/``: one sdist is never built
   twice) and listed, with its hash, on the package's own page (``built-wheels/<name>.html``),
   which uv reads as ``--find-links`` beside the index, still with ``--no-build``. A page per
   package, so a wheel built for one package never stands in for another one nobody allowed;
   the lock records that page as the package's source and the wheel's hash.
"""

from __future__ import annotations

import hashlib
import html
import html.parser
import os
import re
import shutil
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from oldnew.deps.errors import DependencyError
from oldnew.deps.manifest import Dependency, normalise
from oldnew.deps.settings import BUILT_WHEELS, DepSettings
from oldnew.locks import exclusive
from oldnew.sandbox import Limits, Sandbox, oldnew_env
from oldnew.sandbox.files import UnsafeOutput, read_output

PYPI_SIMPLE = "https://pypi.org/simple/"
SDIST_SUFFIXES = (".tar.gz", ".zip")
DOWNLOAD_CAP = 200 * 2**20
"""The most one source distribution may weigh (bytes)."""
_PIP_ENV = {
    "PIP_CONFIG_FILE": os.devnull,
    "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    "PIP_NO_CACHE_DIR": "1",
    "PIP_NO_INPUT": "1",
}


@dataclass(frozen=True)
class Built:
    """One package's wheel, built from its source distribution (now or before)."""

    name: str
    version: str
    sdist: str
    """The source distribution's file name."""
    sha256: str
    """The source distribution's hash: the build's key."""
    wheel: Path
    reused: bool
    """True when this sdist was built before (nothing was built now)."""


def page(settings: DepSettings, name: str) -> Path:
    """Return the find-links page listing the wheels built for package ``name``."""
    return settings.cache / BUILT_WHEELS / f"{normalise(name)}.html"


def pages(names: list[str], settings: DepSettings) -> tuple[Path, ...]:
    """Return the find-links pages of the packages ``names`` that have wheels built."""
    return tuple(p for p in (page(settings, n) for n in sorted(set(names))) if p.is_file())


def build_allowed(deps: list[Dependency], settings: DepSettings) -> list[Built]:
    """Build a wheel of each package in ``deps`` (all allowed a source build) unless built.

    Raises:
        DependencyError: ``unreachable`` when the index does not answer, ``install`` when no
            source distribution fits, its hash is wrong, or its build fails (with the
            build's last lines and what the person can do).

    """
    specs: dict[str, list[str]] = {}
    for dep in deps:
        if dep.ecosystem == "python":
            specs.setdefault(dep.name, []).extend(s for s in [dep.spec] if s)
    out = []
    for name in sorted(specs):
        out.append(_build_one(name, ",".join(specs[name]), settings))
        _write_page(name, settings)
    return out


# -- fetching, on the host --------------------------------------------------------------------


class _Links(html.parser.HTMLParser):
    """The ``<a>`` links of a simple page, with their attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[dict[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.links.append({k: v or "" for k, v in attrs})


def _where(settings: DepSettings) -> str:
    return settings.index or PYPI_SIMPLE


def _read_url(url: str, settings: DepSettings, name: str, *, cap: int) -> bytes:
    """Return what ``url`` holds (a ``file://`` one is a local file), at most ``cap`` bytes."""
    parts = urllib.parse.urlsplit(url)
    try:
        if parts.scheme == "file":
            path = Path(urllib.request.url2pathname(parts.path))
            if path.is_dir():
                path = path / "index.html"
            with open(path, "rb") as handle:
                data = handle.read(cap + 1)
        elif parts.scheme in ("http", "https"):
            request = urllib.request.Request(url, headers={"Accept": "text/html"})
            timeout = max(1.0, min(settings.timeout, 60.0))
            with urllib.request.urlopen(request, timeout=timeout) as resp:  # nosec B310
                data = resp.read(cap + 1)
        else:
            raise DependencyError(
                "install", f"the package index {url} is neither http(s) nor file: use one that is"
            )
    except FileNotFoundError:
        raise DependencyError(
            "install",
            f"the package index {_where(settings)} has no page for {name} ({url}): check the "
            "name, or provide a wheel of it on your index and retry",
            packages=(f"python:{name}",),
        ) from None
    except urllib.error.HTTPError as exc:
        raise DependencyError(
            "install",
            f"the package index {_where(settings)} answered HTTP {exc.code} for {url}: check "
            "the index, or provide a wheel of it there, and retry",
            packages=(f"python:{name}",),
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        raise DependencyError(
            "unreachable",
            f"the package index {_where(settings)} could not be reached to fetch the source of "
            f"{name} ({exc}): check the network or proxy, or point oldnew at a reachable index "
            "(--package-index), then retry",
            packages=(f"python:{name}",),
        ) from None
    if len(data) > cap:
        raise DependencyError(
            "install",
            f"{url} is larger than {cap // 2**20} MB: oldnew does not build a source "
            f"distribution that large; provide a wheel of {name} on your index instead",
            packages=(f"python:{name}",),
        )
    return data


def _sdist_version(filename: str, name: str) -> Version | None:
    """Return the version of ``filename`` if it is a source distribution of ``name``."""
    suffix = next((s for s in SDIST_SUFFIXES if filename.endswith(s)), None)
    if suffix is None:
        return None
    project, _, version = filename[: -len(suffix)].rpartition("-")
    if normalise(project) != name:
        return None
    try:
        return Version(version)
    except InvalidVersion:
        return None


def _choose(name: str, spec: str, settings: DepSettings) -> tuple[str, str, str, Version]:
    """Return the newest sdist of ``name`` that ``spec`` allows: (url, filename, sha256, ver)."""
    base = _where(settings).rstrip("/") + "/"
    listing = urllib.parse.urljoin(base, f"{name}/")
    text = _read_url(listing, settings, name, cap=20 * 2**20).decode("utf-8", "replace")
    parser = _Links()
    parser.feed(text)
    try:
        allowed = SpecifierSet(spec)
    except InvalidSpecifier:
        raise DependencyError(
            "manifest", f"{name}: {spec!r} is not a version range: fix it in pyproject.toml"
        ) from None
    python = ".".join(map(str, sys.version_info[:3]))
    found: list[tuple[Version, str, str, str]] = []
    for link in parser.links:
        href = html.unescape(link.get("href", ""))
        url, _, fragment = urllib.parse.urljoin(listing, href).partition("#")
        filename = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1])
        version = _sdist_version(filename, name)
        if version is None or "data-yanked" in link:
            continue
        needs = link.get("data-requires-python", "")
        try:
            if needs and python not in SpecifierSet(html.unescape(needs)):
                continue
        except InvalidSpecifier:
            continue
        digest = fragment[len("sha256=") :] if fragment.startswith("sha256=") else ""
        found.append((version, url, filename, digest))
    fits = [f for f in found if allowed.contains(f[0], prereleases=allowed.prereleases)]
    if not fits:
        raise DependencyError(
            "install",
            f"the package index {_where(settings)} has no source distribution of {name} that "
            f"matches '{spec or '(any version)'}' (found: "
            f"{', '.join(f[2] for f in found) or 'none'}): provide a wheel of {name} on your "
            "index, or choose another package",
            packages=(f"python:{name}",),
        )
    version, url, filename, digest = max(fits, key=lambda f: f[0])
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise DependencyError(
            "install",
            f"the package index {_where(settings)} gives no sha256 hash for {filename}, so "
            "its download cannot be checked: use an index that publishes hashes (PEP 503), or "
            f"provide a wheel of {name} there",
            packages=(f"python:{name}",),
        )
    return url, filename, digest, version


# -- building, in the sandbox -----------------------------------------------------------------


def _wheel_of(folder: Path, name: str) -> Path | None:
    """Return the one wheel of ``name`` in a finished build folder, None if there is none."""
    if not folder.is_dir():
        return None
    wheels = [p for p in folder.iterdir() if p.suffix == ".whl" and p.is_file()]
    named = [p for p in wheels if normalise(p.name.split("-", 1)[0]) == name]
    return named[0] if len(named) == 1 else None


def _build_one(name: str, spec: str, settings: DepSettings) -> Built:
    url, filename, digest, version = _choose(name, spec, settings)
    done = settings.cache / BUILT_WHEELS / digest[:32]
    with exclusive(settings.cache / BUILT_WHEELS / f".{digest[:32]}.lock"):
        wheel = _wheel_of(done, name)
        if wheel is not None:
            return Built(name, str(version), filename, digest, wheel, True)
        data = _read_url(url, settings, name, cap=DOWNLOAD_CAP)
        if hashlib.sha256(data).hexdigest() != digest:
            raise DependencyError(
                "install",
                f"{filename} from {_where(settings)} does not match the sha256 hash the index "
                "gives for it (a corrupted or altered download): nothing was built. Check the "
                f"index, or provide a wheel of {name} there, and retry",
                packages=(f"python:{name}",),
            )
        parent = settings.cache / "tmp"
        parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix="build-", dir=parent))
        try:
            built = _build_in_sandbox(name, version, (filename, data), scratch, settings)
            staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=settings.cache / BUILT_WHEELS))
            (staging / built[0]).write_bytes(built[1])
            shutil.rmtree(done, ignore_errors=True)
            os.replace(staging, done)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return Built(name, str(version), filename, digest, done / built[0], False)


def _unpack(filename: str, data: bytes, into: Path, name: str) -> Path:
    """Unpack the sdist ``data`` into ``into``; return its top folder (with its setup files)."""
    archive = into / filename
    archive.write_bytes(data)
    src = into / "src"
    src.mkdir()
    try:
        if filename.endswith(".zip"):
            with zipfile.ZipFile(archive) as zipped:
                for member in zipped.namelist():
                    parts = Path(member).parts
                    if Path(member).is_absolute() or ".." in parts:
                        raise ValueError(f"{member!r} leads out of the archive")
                zipped.extractall(src)
        else:
            with tarfile.open(archive) as tarred:
                for item in tarred.getmembers():
                    parts = Path(item.name).parts
                    if Path(item.name).is_absolute() or ".." in parts:
                        raise ValueError(f"{item.name!r} leads out of the archive")
                    if not (item.isfile() or item.isdir()):
                        raise ValueError(f"{item.name!r} is a link or a device, not a file")
                tarred.extractall(src)  # nosec B202 - every member checked above
    except (tarfile.TarError, zipfile.BadZipFile, ValueError, OSError) as exc:
        raise DependencyError(
            "install",
            f"{filename} does not unpack ({exc}): provide a wheel of {name} on your index, or "
            "choose another package",
            packages=(f"python:{name}",),
        ) from None
    tops = [p for p in src.iterdir() if p.is_dir() and not p.is_symlink()]
    top = tops[0] if len(tops) == 1 else src
    if not any((top / f).is_file() for f in ("pyproject.toml", "setup.py")):
        raise DependencyError(
            "install",
            f"{filename} has neither pyproject.toml nor setup.py at its top: it cannot be "
            f"built; provide a wheel of {name} on your index, or choose another package",
            packages=(f"python:{name}",),
        )
    return top


def _is_wheel_of(wheel: str, name: str, version: Version) -> bool:
    """Whether the wheel file name ``wheel`` is of package ``name`` at ``version``."""
    parts = wheel.split("-")
    try:
        return len(parts) >= 5 and normalise(parts[0]) == name and Version(parts[1]) == version
    except InvalidVersion:
        return False


def _build_in_sandbox(
    name: str, version: Version, sdist: tuple[str, bytes], scratch: Path, settings: DepSettings
) -> tuple[str, bytes]:
    """Build the sdist (file name, bytes) in the sandbox, offline; return the wheel's."""
    filename, data = sdist
    top = _unpack(filename, data, scratch, name)
    env = oldnew_env()  # its setuptools and pip build; nothing else is installed
    limits = Limits(cpu_seconds=max(60, int(settings.timeout)))
    start = time.monotonic()
    with Sandbox.open(top, env=env, limits=limits) as box:
        out = box.home / "wheels"
        out.mkdir()
        box.adopt(out)
        argv = env.python_argv("-I", "-m", "pip", "wheel", "--no-deps", "--no-build-isolation")
        argv += ["--no-index", "-w", str(out), "."]
        result = box.run(argv, timeout=settings.timeout, network=False, env=_PIP_ENV)
        took = time.monotonic() - start
        lines = (result.stdout + "\n" + result.stderr).strip().splitlines()
        tail = "\n".join(lines[-25:])[-2500:]
        wheels = sorted(p.name for p in out.iterdir() if p.name.endswith(".whl"))
        ok = result.exit_code == 0 and len(wheels) == 1
        wheel = wheels[0] if ok else ""
        if ok and not _is_wheel_of(wheel, name, version):
            ok = False
            tail += f"\n(the build made {wheel}, not a wheel of {name} {version})"
        try:
            content = read_output(out, wheel) if ok else None
        except UnsafeOutput as exc:
            content, tail = None, f"{tail}\n({exc})"
    if content is None:
        why = result.killed or (
            f"exit code {result.exit_code}" if result.exit_code else "it made no single wheel"
        )
        raise DependencyError(
            "install",
            f"the source build of {name} ({filename}) failed after {took:.0f} s ({why}). It "
            "ran in the sandbox without network, with the build tools oldnew's environment "
            "has: a build backend or compiler it lacks, or a build that downloads, fails "
            f"here. What you can do: provide a wheel of {name} on your package index "
            "(--package-index) and retry, or choose another package ('instead'), or leave "
            f"the feature out ('skip').\nThe build's last lines:\n{tail}",
            packages=(f"python:{name}",),
        )
    return wheel, content


def _write_page(name: str, settings: DepSettings) -> None:
    """Write ``name``'s find-links page: every wheel built for it, with its sha256.

    Two builds that made a wheel of the same file name (two sdists of one version): the
    newer one is listed.
    """
    root = settings.cache / BUILT_WHEELS
    latest: dict[str, Path] = {}
    folders = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    for folder in sorted(folders, key=lambda p: p.stat().st_mtime_ns):
        wheel = _wheel_of(folder, name)
        if wheel is not None:
            latest[wheel.name] = wheel
    links = "".join(
        f'<a href="{w.parent.name}/{urllib.parse.quote(w.name)}#sha256='
        f'{hashlib.sha256(w.read_bytes()).hexdigest()}">{html.escape(w.name)}</a>\n'
        for _, w in sorted(latest.items())
    )
    target = page(settings, name)
    handle, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=root)
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        out.write(f"<html><body>\n{links}</body></html>\n")
    os.replace(tmp, target)
