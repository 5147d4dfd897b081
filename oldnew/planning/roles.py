"""Agent roles: each has its own prompt, ``prompts/role_<name>.j2``; other names are mapped."""

from __future__ import annotations

from oldnew.schemas import Plan

ROLES = ("architect", "backend", "frontend", "tests", "devops", "docs", "data")
"""Roles with their own prompt; any other role gets ``role_generic.j2``."""

_SYNONYMS = {
    "architecture": "architect",
    "design": "architect",
    "api": "backend",
    "server": "backend",
    "ui": "frontend",
    "web": "frontend",
    "qa": "tests",
    "test": "tests",
    "testing": "tests",
    "ops": "devops",
    "infra": "devops",
    "infrastructure": "devops",
    "ci": "devops",
    "doc": "docs",
    "documentation": "docs",
    "database": "data",
    "db": "data",
}


def normalize_role(role: str) -> str:
    """Return the canonical name of ``role`` (lower case; known synonyms mapped)."""
    name = role.strip().lower() or "backend"
    return _SYNONYMS.get(name, name)


def normalize_roles(plan: Plan) -> Plan:
    """Return ``plan`` with every task's role in canonical form."""
    tasks = [t.model_copy(update={"role": normalize_role(t.role)}) for t in plan.tasks]
    return plan.model_copy(update={"tasks": tasks})


def agent_roles(plan: Plan) -> dict[str, int]:
    """Return role -> number of tasks, most used first."""
    counts: dict[str, int] = {}
    for t in plan.tasks:
        counts[t.role] = counts.get(t.role, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
