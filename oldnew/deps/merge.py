"""A three-way merge of manifests, for tasks that each add dependencies at the same time.

git runs it as a merge driver (``workspace.MERGES`` names it for ``pyproject.toml`` and
``package.json``; ``safegit`` defines it): ``python -I -m oldnew.deps.merge BASE OURS THEIRS
PATH``. It merges the dependency lists and tables by package name (what either side added is
kept, what either side removed from the base goes), keeps every other setting that only one
side changed, and reports a conflict (exit 1, ours left as it was) when both sides changed the
same package differently, changed anything else differently, or a file does not parse. The
result is written to OURS, as git expects; the merged manifest is then locked again.
"""

from __future__ import annotations

import copy
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.exceptions import TOMLKitError


class Conflict(Exception):
    """The two sides cannot be merged without a person (or the fixer) deciding."""


def _name(requirement: str) -> str:
    head = re.split(r"[\s<>=!~;\[(@]", requirement.strip(), maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", head).lower()


def merge_keyed(
    base: dict[str, Any], ours: dict[str, Any], theirs: dict[str, Any]
) -> dict[str, Any]:
    """Merge three maps of package -> entry; raise Conflict when both sides differ on one."""
    out: dict[str, Any] = {}
    keys = [*ours, *[k for k in theirs if k not in ours]]
    for key in [*keys, *[k for k in base if k not in keys]]:
        b, o, t = base.get(key), ours.get(key), theirs.get(key)
        if o == t:
            value = o
        elif o == b:
            value = t
        elif t == b:
            value = o
        else:
            raise Conflict(f"both sides changed {key!r} differently")
        if value is not None:
            out[key] = value
    return out


def _requirements(items: Any) -> dict[str, Any]:
    if items is None:
        return {}
    if not isinstance(items, list):
        raise Conflict("a dependency list is not a list")
    return {(_name(i) if isinstance(i, str) else json.dumps(i, sort_keys=True)): i for i in items}


_PY_LISTS: tuple[tuple[str, ...], ...] = (("project", "dependencies"),)
_PY_TABLES: tuple[tuple[str, ...], ...] = (
    ("project", "optional-dependencies"),
    ("dependency-groups",),
)
_JS_TABLES = ("dependencies", "devDependencies", "optionalDependencies", "peerDependencies")


def _get(data: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data


def _paths(docs: list[Any]) -> list[tuple[str, ...]]:
    """Return every dependency list of the pyproject documents (groups and extras included)."""
    paths = list(_PY_LISTS)
    for table in _PY_TABLES:
        names: list[str] = []
        for doc in docs:
            for name in _get(doc, table) or {}:
                if name not in names:
                    names.append(name)
        paths += [(*table, n) for n in names]
    return paths


def _without(doc: Any, paths: list[tuple[str, ...]]) -> Any:
    """Return a plain copy of ``doc`` with the dependency entries taken out (the rest)."""
    plain = json.loads(json.dumps(doc, default=str))
    for path in paths:
        holder = _get(plain, path[:-1])
        if isinstance(holder, dict):
            holder.pop(path[-1], None)
    for table in _PY_TABLES:
        holder = _get(plain, table[:-1]) if len(table) > 1 else plain
        if isinstance(holder, dict) and holder.get(table[-1]) == {}:
            holder.pop(table[-1])
    return plain


def _winner(docs: list[Any], rest: Callable[[Any], Any]) -> Any:
    """Return the side (of base, ours, theirs) whose non-dependency settings the merge keeps."""
    b, o, t = (rest(d) for d in docs)
    if o == t or t == b:
        return docs[1]
    if o == b:
        return docs[2]
    raise Conflict("both sides changed settings other than dependencies")


def merge_pyproject(base: str, ours: str, theirs: str) -> str:
    """Return the merged pyproject.toml text; raise Conflict when it needs a decision."""
    try:
        docs = [tomlkit.parse(text) for text in (base, ours, theirs)]
    except TOMLKitError as exc:
        raise Conflict(f"a side is not valid TOML: {exc}") from None
    paths = _paths(docs)
    kept = _winner(docs, lambda d: _without(d, paths))
    out = copy.deepcopy(kept)
    for path in paths:
        b, o, t = (_requirements(_get(d, path)) for d in docs)
        merged = list(merge_keyed(b, o, t).values())
        if not merged and all(_get(d, path) is None for d in docs[1:]):
            continue
        holder = out
        for part in path[:-1]:
            if part not in holder:
                holder[part] = tomlkit.table()
            holder = holder[part]
        array = tomlkit.array()
        array.extend(merged)
        if len(merged) > 1:
            array.multiline(True)
        holder[path[-1]] = array
    return tomlkit.dumps(out)


def merge_package_json(base: str, ours: str, theirs: str) -> str:
    """Return the merged package.json text; raise Conflict when it needs a decision."""
    try:
        docs = [json.loads(text) if text.strip() else {} for text in (base, ours, theirs)]
    except json.JSONDecodeError as exc:
        raise Conflict(f"a side is not valid JSON: {exc}") from None
    if not all(isinstance(d, dict) for d in docs):
        raise Conflict("a side is not a JSON object")

    def rest(doc: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in doc.items() if k not in _JS_TABLES}

    out = dict(_winner(docs, rest))
    for table in _JS_TABLES:
        b, o, t = (d.get(table) or {} for d in docs)
        if not all(isinstance(x, dict) for x in (b, o, t)):
            raise Conflict(f"{table} is not an object")
        merged = merge_keyed(b, o, t)
        if merged:
            out[table] = merged
        else:
            out.pop(table, None)
    return json.dumps(out, indent=2) + "\n"


MERGERS = {"pyproject.toml": merge_pyproject, "package.json": merge_package_json}


def main(argv: list[str]) -> int:
    """Merge BASE OURS THEIRS for PATH into OURS; return 0 when merged, 1 on a conflict."""
    base, ours, theirs, path = Path(argv[0]), Path(argv[1]), Path(argv[2]), argv[3]
    merger = MERGERS.get(Path(path).name)
    if merger is None:
        return 1
    try:
        texts = [p.read_text(encoding="utf-8") if p.is_file() else "" for p in (base, ours, theirs)]
        merged = merger(*texts)
    except (Conflict, OSError, UnicodeDecodeError, TypeError, ValueError) as exc:
        print(f"oldnew: cannot merge {path}: {exc}", file=sys.stderr)
        return 1
    ours.write_text(merged, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
