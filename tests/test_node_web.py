"""The node-web stack with no package at all: a node:http app, node:test, Playwright specs.

Its per-task gates are its own test script (``node --test`` through package.json, run with no
npm) with eslint and vitest reported as not run (it declares no package, so it has neither),
and the milestone set runs on it for real: started from ``scripts.start``, browser tests,
axe, screenshots, Lighthouse, load.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from oldnew.gates.runner import validate_tree
from oldnew.web import toolchain
from oldnew.web.targets import WebTargets

APP = Path(__file__).parent / "fixtures" / "node-web"


def test_a_node_app_without_packages_passes_every_gate(tmp_path: Path) -> None:
    missing = toolchain.missing("lighthouse") or toolchain.missing("e2e")
    if missing:
        pytest.skip(f"the web tools are not installed: {missing}")
    tree = tmp_path / "app"
    shutil.copytree(APP, tree)
    targets = WebTargets(("/",), ("GET /api/greeting",))
    result = validate_tree(tree, timeout=120, milestone=True, web=targets)
    checks = {c.name: c for c in result.checks}
    assert result.passed, [(c.name, c.status, c.summary[:160]) for c in result.checks]
    assert checks["project-tests"].status == "passed"
    assert "node --test" in checks["project-tests"].summary
    for name in ("eslint", "vitest", "js-coverage"):
        assert checks[name].status == "not_run" and not checks[name].required
    assert {checks[g].status for g in ("web-start", "e2e", "axe", "lighthouse", "load")} == {
        "passed"
    }
    # Its own test failing fails the project-tests gate: the not-run ones do not hide it.
    server = tree / "server.mjs"
    server.write_text(server.read_text().replace("'Hello' })", "'Bye' })"))
    broken = validate_tree(tree, timeout=120)
    assert not broken.passed
    assert broken.check("project-tests").status == "failed"  # type: ignore[union-attr]
