"""Which declared packages a task may have: the ``--deps`` policy applied to a manifest.

- already on main, or decided before in this run: as decided (a person's rejection stands);
- test tools oldnew drives (pytest, pytest-cov, coverage) in a development group: allowed
  (oldnew lends them anyway);
- ``--deps off``: nothing else new is allowed;
- type stubs (``types-*``, ``@types/*``) in a development group: allowed, as the prompts
  ask the coder to declare them;
- named by the scope: allowed;
- ``--deps auto``: allowed; ``--deps ask``: a person approves each.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from oldnew.deps.ledger import Decision
from oldnew.deps.manifest import Dependency, normalise

LENT = frozenset({"pytest", "pytest-cov", "coverage"})
"""What oldnew lends every environment anyway: declaring them is always allowed."""
TEST_TOOLS = LENT | {"pytest-timeout", "pytest-mock"}


@dataclass
class Review:
    """What the policy says of a task's declared packages."""

    allowed: list[tuple[Dependency, Decision]] = field(default_factory=list)
    """New packages allowed without asking, and by what."""
    ask: list[Dependency] = field(default_factory=list)
    """New packages a person must approve first."""
    refused: list[tuple[Dependency, str]] = field(default_factory=list)
    """Packages the task may not have, and why (the coder's to remove)."""


def is_extra(dep: Dependency) -> bool:
    """Whether ``dep`` is in an optional extra (installed for users, not only for tests)."""
    return dep.group.startswith("extra:") or dep.group in ("optional", "peer")


def is_tool(dep: Dependency) -> bool:
    """Whether ``dep`` is a test tool or type stubs, in a development group only."""
    tool = dep.name in TEST_TOOLS or dep.name.startswith(("types-", "@types/"))
    return tool and dep.group != "main" and not is_extra(dep)


def review(
    declared: list[Dependency],
    *,
    mode: str,
    named: set[str],
    on_main: set[str],
    decided: dict[str, str],
) -> Review:
    """Apply the ``--deps`` ``mode`` to ``declared``.

    ``named`` are package names the scope names, ``on_main`` the keys of packages main
    already declares, ``decided`` the ledger's decisions by key.
    """
    out = Review()
    wanted = {normalise(n) for n in named}
    seen: set[str] = set()
    for dep in declared:
        if dep.key in seen or dep.key in on_main:
            continue
        seen.add(dep.key)
        before = decided.get(dep.key)
        if before == "rejected":
            out.refused.append((dep, "a person rejected it for this run"))
        elif before is not None:
            continue
        elif dep.name in LENT and dep.group != "main" and not is_extra(dep):
            out.allowed.append((dep, "tool"))  # what oldnew lends anyway
        elif mode == "off":
            out.refused.append((dep, "new third-party packages are off for this run (--deps off)"))
        elif is_tool(dep):
            out.allowed.append((dep, "tool"))
        elif normalise(dep.name) in wanted or dep.name in named:
            out.allowed.append((dep, "scope"))
        elif mode == "auto":
            out.allowed.append((dep, "auto"))
        else:
            out.ask.append(dep)
    return out
