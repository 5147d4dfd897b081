"""Quality gates: every check a delivered project must pass, each a separate parsed result.

``validate_tree(tree, timeout=..., quality=...)`` runs a profile's gates (Python: syntax and
imports, secrets, ruff, complexity, bandit, mypy, pytest with coverage, mutation testing, the
dependency audit; TypeScript: tsc, eslint, vitest with coverage, npm audit) in the sandbox of
:mod:`oldnew.sandbox` and returns a :class:`ValidationResult`.
"""

from oldnew.gates.js import detect_toolchains
from oldnew.gates.model import Check, CheckStatus, Diagnostic, ValidationResult
from oldnew.gates.profiles import PROFILES, Profile, resolve_profile
from oldnew.gates.runner import GATES, validate_tree

__all__ = [
    "GATES",
    "PROFILES",
    "Check",
    "CheckStatus",
    "Diagnostic",
    "Profile",
    "ValidationResult",
    "detect_toolchains",
    "resolve_profile",
    "validate_tree",
]
