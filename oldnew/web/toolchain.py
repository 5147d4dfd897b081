"""Where oldnew's web tools are (Chromium, Node, the pinned npm tools) and what is missing.

The browser and load steps run oldnew's own scripts (``oldnew/web/js``) with Node, against
Debian's Chromium, using the npm packages pinned in ``oldnew/web/tools/package-lock.json`` and
installed by ``npm ci --prefix oldnew/web/tools`` (scripts/setup.sh, .ci/run) into
``oldnew/web/tools/node_modules``: never into the generated project, and nothing is downloaded
at run time. A step whose tools are missing is not run, and :func:`missing` says why with the
command that fixes it: it is never a pass.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess  # nosec B404 - fixed argument lists, never a shell
from pathlib import Path

TOOLS_DIR = Path(__file__).resolve().parent / "tools"
"""oldnew's own npm tools: package.json, package-lock.json and (installed) node_modules."""
JS_DIR = Path(__file__).resolve().parent / "js"
"""oldnew's own scripts of the browser and load steps."""
SYSTEM_CHROMIUM = Path("/usr/lib/chromium/chromium")
"""Debian's Chromium binary (``/usr/bin/chromium`` is a shell wrapper that reads
/etc/chromium.d, which the sandbox does not show)."""
NODE_PATH = "/usr/local/bin:/usr/bin:/bin"
"""Where the sandbox's PATH finds Node (the system folders it shows)."""
CHROME_FLAGS: tuple[str, ...] = tuple(json.loads((JS_DIR / "chrome-flags.json").read_text("utf-8")))
"""The flags every step starts Chromium with (each adds its own fresh ``--user-data-dir``):
headless, ``--no-sandbox`` (Chromium refuses root without it; the box is the sandbox), and no
GPU, QUIC, background networking, updates, sync or extensions. The scripts read the same file."""
PACKAGES: dict[str, tuple[str, ...]] = {
    "browser": ("playwright-core",),
    "axe": ("playwright-core", "axe-core"),
    "e2e": ("@playwright/test", "playwright-core"),
    "lighthouse": ("lighthouse",),
    "load": ("autocannon",),
}
"""The npm packages each step needs, from oldnew's tools."""
NEEDS_BROWSER = frozenset({"browser", "axe", "e2e", "lighthouse"})
"""The steps that start Chromium."""
STEPS = frozenset(PACKAGES)
CHROMIUM_INSTALL = "apt-get install chromium (or set OLDNEW_CHROMIUM)"
NODE_INSTALL = "install Node 20 or newer with npm into /usr (a nodejs package)"
NODE_MIN = 20
"""The oldest Node major the pinned tools run on (playwright-core 1.65: engines >= 20)."""
VERSION_TIMEOUT = 10.0


def node_modules() -> Path:
    """Return the folder the tools are installed in (it may not exist)."""
    return TOOLS_DIR / "node_modules"


def tools_install() -> str:
    """Return the command that installs oldnew's npm tools."""
    return f"npm ci --prefix {TOOLS_DIR} (scripts/setup.sh does it)"


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def chromium() -> Path | None:
    """Return the Chromium binary the browser steps use, or None when there is none.

    ``OLDNEW_CHROMIUM`` when set (a path that is not an executable file is None, and
    :func:`missing` says so), else Debian's ``/usr/lib/chromium/chromium``.
    """
    chosen = os.environ.get("OLDNEW_CHROMIUM")
    path = Path(chosen) if chosen else SYSTEM_CHROMIUM
    return path if _executable(path) else None


def node() -> Path | None:
    """Return the Node the steps run with (from the system folders the sandbox shows)."""
    found = shutil.which("node", path=NODE_PATH)
    if found is None:
        return None
    path = Path(found)
    return path if _shown(path.resolve()) else None


def _shown(path: Path) -> bool:
    """Tell whether ``path`` lies in the system folders the sandbox shows (/usr and links)."""
    return path.parts[:2] in {("/", "usr"), ("/", "bin"), ("/", "lib")}


def script(name: str) -> Path:
    """Return oldnew's script ``name`` of the web steps (``pages.mjs``, ...)."""
    path = JS_DIR / name
    if not path.is_file():
        raise FileNotFoundError(f"oldnew's web step script {name!r} is not in {JS_DIR}")
    return path


def e2e_cli(tree: Path) -> Path:
    """Return the Playwright Test CLI to run ``tree``'s end-to-end tests with.

    It must be the copy the specs' own ``import ... from '@playwright/test'`` finds (two copies
    make Playwright refuse: "did not expect test() to be called here"): the project's own
    ``node_modules`` first, then the one beside the tree (the sandbox mounts oldnew's tools
    there), then oldnew's tools themselves (outside the sandbox).
    """
    tail = Path("@playwright", "test", "cli.js")
    for modules in (tree / "node_modules", tree.parent / "node_modules", node_modules()):
        if (modules / tail).is_file():
            return modules / tail
    return node_modules() / tail


def package_version(package: str) -> str | None:
    """Return the installed version of one of oldnew's npm tools, or None when not installed."""
    try:
        data = json.loads((node_modules() / package / "package.json").read_text("utf-8"))
    except (OSError, ValueError):
        return None
    version = data.get("version") if isinstance(data, dict) else None
    return version if isinstance(version, str) else None


def _pinned(package: str) -> str | None:
    try:
        data = json.loads((TOOLS_DIR / "package.json").read_text("utf-8"))
    except (OSError, ValueError):
        return None
    version = data.get("dependencies", {}).get(package)
    return version if isinstance(version, str) else None


def _chromium_reason() -> str | None:
    chosen = os.environ.get("OLDNEW_CHROMIUM")
    if chosen and chromium() is None:
        return f"OLDNEW_CHROMIUM={chosen} is not an executable file: point it at a Chromium binary"
    found = chromium()
    if found is None:
        return f"Chromium is not installed: {CHROMIUM_INSTALL}"
    if not _shown(found.resolve()):
        return (
            f"Chromium at {found.resolve()} is outside the system folders the sandbox shows "
            f"(/usr): {CHROMIUM_INSTALL.split(' (')[0]}"
        )
    return None


def _node_reason() -> str | None:
    found_node = node()
    if found_node is not None:
        version = _binary_version(found_node)
        major = int(version.split(".")[0]) if version else 0
        if major < NODE_MIN:
            return (
                f"Node {version or '(no version)'} at {found_node} is older than the "
                f"{NODE_MIN} oldnew's web tools need (Playwright): {NODE_INSTALL}"
            )
        return None
    found = shutil.which("node")
    if found is not None:
        return (
            f"Node at {Path(found).resolve()} is outside the system folders the sandbox shows "
            f"(/usr): {NODE_INSTALL}"
        )
    return f"Node is not installed: {NODE_INSTALL}"


def _tools_reason(step: str) -> str | None:
    if not node_modules().is_dir():
        return f"oldnew's web tools are not installed: {tools_install()}"
    absent, other = [], []
    for package in PACKAGES[step]:
        have, want = package_version(package), _pinned(package)
        if have is None:
            absent.append(package)
        elif want is not None and have != want:
            other.append(f"{package} {have} is installed where oldnew pins {want}")
    if absent:
        verb = "is" if len(absent) == 1 else "are"
        other.insert(0, f"{', '.join(absent)} {verb} missing from oldnew's web tools")
    return f"{'; '.join(other)}: {tools_install()}" if other else None


def missing(step: str) -> str | None:
    """Return why ``step`` cannot run here, with the command that fixes it; None when it can.

    ``step`` is one of ``browser``, ``e2e``, ``axe``, ``lighthouse``, ``load``.
    """
    if step not in STEPS:
        raise ValueError(f"unknown web step {step!r}: one of {', '.join(sorted(STEPS))}")
    reasons = [_node_reason(), _tools_reason(step)]
    if step in NEEDS_BROWSER:
        reasons.insert(0, _chromium_reason())
    found = [r for r in reasons if r is not None]
    return "; ".join(found) if found else None


@functools.cache
def _binary_version(path: Path) -> str | None:
    """Return the version ``path --version`` prints (``156.0.8078.114``), once per binary."""
    try:
        proc = subprocess.run(  # nosec B603 - a fixed argv: the binary and --version
            [str(path), "--version"],
            capture_output=True,
            text=True,
            check=False,
            timeout=VERSION_TIMEOUT,
            env={"PATH": NODE_PATH, "LANG": "C.UTF-8", "HOME": "/tmp"},  # nosec B108
        )
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(r"\d+(?:\.\d+)+", proc.stdout)
    return found.group(0) if proc.returncode == 0 and found else None


def versions() -> dict[str, str]:
    """Return the version of every web tool that is installed (for evidence and reuse keys).

    npm tools are read from their package.json; Chromium and Node are asked once a process.
    """
    out: dict[str, str] = {}
    for name, binary in (("chromium", chromium()), ("node", node())):
        found = _binary_version(binary) if binary is not None else None
        if found:
            out[name] = found
    for package in sorted({p for step in PACKAGES.values() for p in step}):
        version = package_version(package)
        if version is not None:
            out[package] = version
    return out
