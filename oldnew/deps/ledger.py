"""Who asked for each dependency and who allowed it: ``.oldnew/dependencies.json``.

One entry per package (``ecosystem:name``): the task that first declared it and why, the
version the lock pins, and the decision: approved by the scope (it names the package), by
``--deps auto``, or by a person (``source_build``: a person allowed building it from source);
or rejected by a person (the coder must do without it). The report lists every entry; the
dependencies step reads the decisions. Tasks run at the same time, so every change is a
read-modify-write under a file lock.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from oldnew.deps import node, python
from oldnew.deps.errors import DependencyError
from oldnew.deps.manifest import JS_LOCK, PY_LOCK, Dependency, declared, normalise
from oldnew.locks import exclusive
from oldnew.sandbox.files import read_project_text

Decision = Literal["scope", "auto", "person", "rejected", "tool", "source_build"]
LEDGER = "dependencies.json"


class Ledger:
    """The dependency decisions of one workspace (its ``.oldnew`` folder)."""

    def __init__(self, meta: Path) -> None:
        """Use the ledger in the workspace folder ``meta`` (``.oldnew``)."""
        self.path = Path(meta) / LEDGER

    def read(self) -> dict[str, dict[str, Any]]:
        """Return every entry, by ``ecosystem:name``; {} before the first."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    @contextmanager
    def _changing(self) -> Iterator[dict[str, dict[str, Any]]]:
        with exclusive(self.path.with_suffix(".lock")):
            data = self.read()
            yield data
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
            os.replace(tmp, self.path)

    def decision(self, key: str) -> str | None:
        """Return how package ``key`` was decided, None if it never was."""
        return self.read().get(key, {}).get("decision")

    def decide(
        self,
        deps: list[Dependency],
        decision: Decision,
        *,
        task: str,
        versions: dict[str, str] | None = None,
        question: str | None = None,
    ) -> None:
        """Record ``decision`` for each of ``deps`` (asked for by ``task``)."""
        with self._changing() as data:
            for dep in deps:
                entry = data.setdefault(
                    dep.key,
                    {"ecosystem": dep.ecosystem, "name": dep.name, "requested_by": task},
                )
                entry["decision"] = decision
                if dep.spec or "spec" not in entry:
                    entry |= {"spec": dep.spec, "group": dep.group}
                if dep.why:
                    entry["why"] = dep.why
                if question:
                    entry["question"] = question
                if versions and dep.key in versions:
                    entry["version"] = versions[dep.key]

    def pin(self, versions: dict[str, str]) -> None:
        """Record the versions a lock pins for packages already in the ledger."""
        with self._changing() as data:
            for key, version in versions.items():
                if key in data:
                    data[key]["version"] = version


APPROVED_BY = {
    "scope": "named in the scope",
    "auto": "approved by --deps auto",
    "person": "approved by a person",
    "tool": "test tool or type stubs (allowed)",
    "rejected": "rejected by a person",
    "source_build": "source build allowed by a person; built on this machine, where the lock "
    "finds its wheel (elsewhere, build or serve that wheel first)",
}


def inventory(tree: Path, meta: Path) -> list[dict[str, Any]]:
    """Return every package ``tree``'s locks pin, with who asked for it and who allowed it.

    Direct dependencies (declared in a manifest) carry the ledger's record; the others are
    what those pulled in. A lock that does not read gives no entries (the gates say why).
    """
    records = Ledger(meta).read()
    try:
        direct = {d.key: d for d in declared(tree)}
    except DependencyError:
        direct = {}
    pinned: list[tuple[str, dict[str, str]]] = []
    for name, ecosystem, read in (
        (PY_LOCK, "python", python.locked_packages),
        (JS_LOCK, "node", node.locked_packages),
    ):
        text = read_project_text(tree, name)
        if text is None:
            continue
        try:
            pinned += [(ecosystem, p) for p in read(text)]
        except DependencyError:
            continue
    out = []
    for ecosystem, pkg in pinned:
        key = f"{ecosystem}:{normalise(pkg['name']) if ecosystem == 'python' else pkg['name']}"
        record = records.get(key, {})
        dep = direct.get(key)
        out.append(
            {
                "ecosystem": ecosystem,
                "name": pkg["name"],
                "version": pkg["version"],
                "direct": dep is not None,
                "group": dep.group if dep else "",
                "requested_by": record.get("requested_by", ""),
                "why": record.get("why", dep.why if dep else ""),
                "approved": APPROVED_BY.get(str(record.get("decision")), "")
                if dep
                else "pulled in by a direct dependency",
            }
        )
    return sorted(out, key=lambda e: (not e["direct"], e["ecosystem"], e["name"]))
