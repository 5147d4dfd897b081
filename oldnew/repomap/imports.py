"""Who imports whom: a file's import statements, and the project files they name.

Python ``import a.b`` and ``from .x import y`` resolve to ``a/b.py``, ``a/b/__init__.py``
(also under ``src/``); JavaScript/TypeScript relative imports (``./x``, ``../y``) to the file
with its extension or an ``index`` file. Imports of packages outside the project resolve to
nothing.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Collection, Iterable
from functools import lru_cache

from oldnew.repomap.symbols import PYTHON, SCRIPT

_PY_IMPORT = re.compile(
    r"^[ \t]*(?:from[ \t]+(?P<src>\.*[\w.]*)[ \t]+import[ \t]+(?P<names>\([^)]*\)|[^\n#]*)"
    r"|import[ \t]+(?P<mods>[\w., \t]+))",
    re.M,
)
_JS_IMPORT = re.compile(
    r"""(?:\bfrom|\bimport|\brequire\(|\bimport\()[ \t]*['"](?P<spec>\.{1,2}/[^'"]*)['"]"""
)
_PART = re.compile(r"[\w$-]+")
_SCRIPT_TRIES = ("", *SCRIPT, *(f"/index{ext}" for ext in SCRIPT))


def python_imports(text: str) -> list[str]:
    """Return a Python file's imports as ``module`` or ``module:name,name`` (dots kept)."""
    out: list[str] = []
    for m in _PY_IMPORT.finditer(text):
        if m.group("mods"):
            out += [part.split()[0] for part in m.group("mods").split(",") if part.split()]
            continue
        names = [n.split()[0] for n in m.group("names").strip("()").split(",") if n.split()]
        out.append(f"{m.group('src')}:{','.join(n for n in names if n.isidentifier())}")
    return out


def script_imports(text: str) -> list[str]:
    """Return the relative module specifiers a JavaScript/TypeScript file imports."""
    return [m.group("spec") for m in _JS_IMPORT.finditer(text)]


def imports_of(path: str, text: str) -> list[str]:
    """Return the imports of ``path`` as :func:`resolve` reads them (none for other files)."""
    if path.endswith(PYTHON):
        return python_imports(text)
    if path.endswith(SCRIPT):
        return script_imports(text)
    return []


@lru_cache(maxsize=100_000)
def module_stem(path: str) -> str:
    """Return the last part of the module name of ``path`` (its package's for ``__init__``)."""
    parts = path.rsplit("/", 2)
    name = parts[-1].split(".", 1)[0]
    return parts[-2] if name in ("__init__", "index") and len(parts) > 1 else name


def import_words(specs: Iterable[str]) -> frozenset[str]:
    """Return every name part of ``specs`` (modules, names, path parts)."""
    return frozenset(_PART.findall(" ".join(specs)))


def module_index(paths: Iterable[str]) -> dict[str, str]:
    """Return Python module name -> file, for every ``.py`` file (``src/`` layout too)."""
    return _module_index(tuple(paths))


@lru_cache(maxsize=8)
def _module_index(paths: tuple[str, ...]) -> dict[str, str]:
    # The same tree is asked again and again in a run: one index per file list.
    out: dict[str, str] = {}
    for path in paths:
        if not path.endswith(".py"):
            continue
        parts = path[:-3].split("/")
        if parts[-1] == "__init__":
            parts.pop()
        for start in (0, 1) if parts and parts[0] == "src" else (0,):
            if parts[start:]:
                out.setdefault(".".join(parts[start:]), path)
    return out


def _python_targets(path: str, spec: str, modules: dict[str, str]) -> list[str]:
    source, _, names = spec.partition(":")
    if source.startswith("."):
        level = len(source) - len(source.lstrip("."))
        package = path.rsplit("/", 1)[0].split("/") if "/" in path else []
        if package and package[0] == "src":
            package = package[1:]
        base = package[: len(package) - (level - 1)] if level - 1 <= len(package) else []
        rest = source.lstrip(".")
        source = ".".join([*base, *([rest] if rest else [])])
    wanted = [n for n in names.split(",") if n]
    found = [t for n in wanted if (t := modules.get(f"{source}.{n}" if source else n))]
    module = modules.get(source)
    if module and len(found) < max(1, len(wanted)):
        found.append(module)  # some names are the module's own definitions
    return found


def _script_target(path: str, spec: str, files: Collection[str]) -> str | None:
    base = posixpath.normpath(posixpath.join(posixpath.dirname(path), spec))
    return next((base + t for t in _SCRIPT_TRIES if base + t in files), None)


def resolve(
    path: str, specs: list[str], modules: dict[str, str], files: Collection[str]
) -> set[str]:
    """Return the project files that the imports ``specs`` of ``path`` name."""
    out: set[str] = set()
    if path.endswith(PYTHON):
        for spec in specs:
            out.update(_python_targets(path, spec, modules))
    elif path.endswith(SCRIPT):
        for spec in specs:
            target = _script_target(path, spec, files)
            if target:
                out.add(target)
    out.discard(path)
    return out
