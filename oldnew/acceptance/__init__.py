"""The acceptance suite: tests written from the requirements by the tester, not the coder.

Scoping turns each requirement into criteria (``schemas.Criterion``: given / when / then). Before
any code is written, the tester role (its own prompt and model, ``tester_model``) writes one
test file per requirement into :data:`SUITE_DIR`, seeing only the requirements, their criteria,
the public interface the plan fixes and the supporting files; oldnew commits it to main. The
coder and the fixer see the suite and may not change it: a change is the tester's, reviewed by
a person. The suite runs on main as a gate at each milestone and before delivery, outside the
project's copy with oldnew's own pytest configuration (nothing of the project's can change how
it runs); every other gate works on a copy without it.

Each test is named for the criterion it checks: ``test_<requirement>_<n>_<words>`` (``F1.2`` ->
``test_f1_2_ties_sort_alphabetically``), so its result is that criterion's.

The run's record of the suite (``RunState.acceptance``, JSON-ready) is::

    {
      "status": "written" | "off" | "none",   # off: the setting; none: no criteria to test
      "commit": "<main commit that added it>",
      "plan_version": 1,
      "requirements": {
        "F1": {"file": "tests/acceptance/test_f1.py",
               "tests": {"test_f1_1_counts_words": "F1.1"},
               "untestable": ""},
      },
      "results": {"tests/acceptance/test_f1.py::test_f1_1_counts_words": "passed"},
      "checked": "<main commit the results are of>",
      "notes": ["..."],
    }

``results`` values are ``passed``, ``failed`` (an assertion: the code's), ``error`` (the test
could not run: the tester's) and ``not_run``.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

from oldnew.schemas import Scope

SUITE_DIR = "tests/acceptance"
"""Where the acceptance suite lives in the project."""
RESULTS = ("passed", "failed", "error", "not_run")

_NOT_ID = re.compile(r"[^0-9a-z]+")
_PLAIN_ID = re.compile(r"[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*")


def is_suite_path(path: str) -> bool:
    """Say whether ``path`` (project-relative) is in the acceptance suite's folder.

    Read as the file system would: ``./tests//acceptance/x`` and ``tests/x/../acceptance/x``
    are in it.
    """
    clean = posixpath.normpath(path.replace("\\", "/").lstrip("/"))
    return PurePosixPath(clean).parts[:2] == tuple(SUITE_DIR.split("/"))


def slug(requirement_id: str) -> str:
    """Return a requirement or criterion id as it appears in names: ``F1.2`` -> ``f1_2``.

    An id with other characters than ASCII letters, digits and ``._-`` (``Req 1``, ``需求1``)
    gets a short hash of itself too, so that two such ids never share a file or a test prefix.
    """
    plain = _NOT_ID.sub("_", requirement_id.lower()).strip("_")
    if _PLAIN_ID.fullmatch(requirement_id):
        return plain
    digest = hashlib.sha1(requirement_id.encode(), usedforsecurity=False).hexdigest()[:6]
    return f"{plain}_{digest}" if plain else f"r{digest}"


def suite_file(requirement_id: str) -> str:
    """Return the path of the suite's file for one requirement: ``tests/acceptance/test_f1.py``."""
    return f"{SUITE_DIR}/test_{slug(requirement_id)}.py"


def name_prefix(criterion_id: str) -> str:
    """Return the name every test of a criterion starts with: ``F1.2`` -> ``test_f1_2_``."""
    return f"test_{slug(criterion_id)}_"


def criterion_of(test_name: str, criterion_ids: list[str]) -> str | None:
    """Return the criterion a test checks, by its name (the longest prefix that fits), or None.

    ``test_f1_12_x`` is F1.12's, never F1.1's: the prefix ends at an underscore.
    """
    base = test_name.split("[", 1)[0].split("::")[-1]
    fits = [c for c in criterion_ids if base.startswith(name_prefix(c))]
    return max(fits, key=len) if fits else None


_KINDS = ("features", "integrations", "pages", "data_models", "api_endpoints")
"""The scope's lists of requirements (``Scope.requirements``)."""


def _any_criteria(scope: Mapping[str, Any]) -> bool:
    return any(
        isinstance(r, dict) and r.get("criteria") for kind in _KINDS for r in scope.get(kind) or []
    )


def due(state: Mapping[str, Any]) -> bool:
    """Say whether the tester has tests to write (never when the setting is off).

    It has when there is a plan and a requirement with criteria (or a test a person
    described) that the record has no entry for.
    """
    record = state.get("acceptance") or {}
    scope = state.get("scope") or {}
    if record.get("status") == "off" or not state.get("plan") or not _any_criteria(scope):
        return False  # a scope with no criteria asks no test (nor how to test one)
    from oldnew.acceptance.criteria import testable  # a submodule: imported once the package is

    written = record.get("requirements") or {}
    wanted = testable(Scope.model_validate(scope), state.get("questions") or {})
    return any(rid not in written for rid in wanted)
