"""Who asked for each dependency and who allowed it: ``.oldnew/dependencies.json``.

One entry per package (``ecosystem:name``): the task that first declared it and why, the
version the lock pins, and the decision: approved by the scope (it names the package), by
``--deps auto``, or by a person; or rejected by a person (the coder must do without it). The
report lists every entry; the dependencies step reads the decisions. Tasks run at the same
time, so every change is a read-modify-write under a file lock.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from oldnew.deps.manifest import Dependency

Decision = Literal["scope", "auto", "person", "rejected", "tool"]
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
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
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
