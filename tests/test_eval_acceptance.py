"""Hidden acceptance tests judge the delivered code, whatever the delivered tree configures."""

from __future__ import annotations

from pathlib import Path

import pytest

from oldnew.context import Context
from oldnew.deps.settings import DepSettings
from oldnew.eval.acceptance import Acceptance, run_acceptance, static_tests, suite_tests
from oldnew.workspace import Workspace

HIDDEN = Path(__file__).resolve().parent.parent / "examples" / "eval" / "slugs" / "acceptance"
RIGHT = '''"""URL slugs from titles."""

import re
import unicodedata


def slugify(text: str, max_length: int = 40) -> str:
    """Return ``text`` as a lower-case ASCII slug of at most ``max_length`` characters."""
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", plain.lower()).strip("-")
    if len(slug) <= max_length:
        return slug
    cut = slug[:max_length]
    if slug[max_length] != "-" and "-" in cut:
        cut = cut.rsplit("-", 1)[0]
    return cut.rstrip("-")
'''
WRONG = 'def slugify(*args, **kwargs):\n    return "WRONG"\n'
RIGS = {
    # Every outcome rewritten to "passed".
    "conftest_passes_everything": {
        "conftest.py": "import pytest\n\n\n@pytest.hookimpl(hookwrapper=True)\n"
        "def pytest_runtest_makereport(item, call):\n    out = yield\n"
        "    rep = out.get_result()\n    rep.outcome = 'passed'\n    rep.longrepr = None\n",
    },
    # All but one test deselected, so the total shrinks.
    "conftest_deselects": {
        "conftest.py": "def pytest_collection_modifyitems(config, items):\n"
        "    items[:] = items[:1]\n",
    },
    # Nothing collected: no test function matches.
    "pytest_ini_collects_nothing": {"pytest.ini": "[pytest]\npython_functions = nomatch\n"},
    "pyproject_addopts_deselect": {
        "pyproject.toml": '[project]\nname = "slugs"\nversion = "0.1.0"\n'
        'requires-python = ">=3.11"\n\n[tool.pytest.ini_options]\n'
        'addopts = "-k test_the_default_length"\n',
    },
    # Started by Python itself when the project's folder is on the path as the interpreter starts.
    "sitecustomize_sets_addopts": {
        "sitecustomize.py": "import os\nos.environ['PYTEST_ADDOPTS'] = '-k default_length'\n",
    },
}
IN_PROCESS = """
import gc

import _pytest.config


class _Keep1:
    def pytest_collection_modifyitems(self, items):
        items[:] = items[:1]


for _obj in gc.get_objects():
    if isinstance(_obj, _pytest.config.Config):
        _obj.pluginmanager.register(_Keep1())
"""
"""Delivered code that, on import, registers a plugin that deselects the other tests."""


def _delivered(tmp_path: Path, files: dict[str, str]) -> Workspace:
    ws = Workspace.create(tmp_path / "ws", "r1", {})
    Workspace.write_files(ws.root, files)
    ws.git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "delivered")
    return ws


def _judge(tmp_path: Path, files: dict[str, str]) -> Acceptance:
    ctx = Context(model="scripted:x", memory_path="off", deps="auto")
    return run_acceptance(
        _delivered(tmp_path, files),
        HIDDEN,
        deps=DepSettings.of(ctx),
        timeout=60,
        keep=tmp_path / "keep",
    )


def test_the_suite_defines_seven_tests() -> None:
    assert suite_tests(HIDDEN) == static_tests(HIDDEN / "test_slugify.py") == 7


@pytest.mark.parametrize("rig", sorted(RIGS))
def test_the_delivered_trees_configuration_cannot_change_the_score(
    tmp_path: Path, rig: str
) -> None:
    acc = _judge(tmp_path, {"slugs.py": WRONG, **RIGS[rig]})
    # The rig did nothing: every hidden test ran, under oldnew's configuration, and failed.
    assert (acc.passed, acc.total, acc.error) == (0, 7, "")
    assert len(acc.failed) == 7 and all(f.startswith("test_slugify::") for f in acc.failed)


def test_the_same_rig_with_right_code_passes(tmp_path: Path) -> None:
    acc = _judge(tmp_path, {"slugs.py": RIGHT, **RIGS["conftest_deselects"]})
    assert (acc.passed, acc.total, acc.error, acc.failed) == (7, 7, "", [])


def test_fewer_tests_collected_than_the_suite_defines_count_as_failed(tmp_path: Path) -> None:
    acc = _judge(tmp_path, {"slugs.py": WRONG + IN_PROCESS})
    assert (acc.passed, acc.total) == (0, 7)
    assert acc.error.startswith("collected fewer tests than the suite defines (1 of 7)")
    right = _judge(tmp_path / "right", {"slugs.py": RIGHT + IN_PROCESS})
    assert (right.passed, right.total) == (1, 7)  # the one that ran passed; six did not run
    assert "collected fewer tests than the suite defines" in right.error


def test_a_tree_with_no_code_counts_every_hidden_test(tmp_path: Path) -> None:
    acc = _judge(tmp_path, {"README.md": "nothing here\n"})
    assert (acc.passed, acc.total) == (0, 7)
    assert "could not be collected (test_slugify.py)" in acc.error
