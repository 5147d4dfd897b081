"""The node-web stack with no package at all: a node:http app, node:test, Playwright specs.

Its per-task gates are its own test script (``node --test`` through package.json, run with no
npm) with eslint and vitest reported as not run (it declares no package, so it has neither),
and the milestone set runs on it for real: started from ``scripts.start``, browser tests,
axe, screenshots, Lighthouse, load.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from oldnew.gates.profiles import resolve_profile
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
    profile = replace(resolve_profile("default"), load_seconds=1.0)
    evidence = tmp_path / "evidence"
    result = validate_tree(
        tree, timeout=120, profile=profile, milestone=True, web=targets, evidence_dir=evidence
    )
    checks = {c.name: c for c in result.checks}
    assert result.passed, [(c.name, c.status, c.summary[:160]) for c in result.checks]
    assert checks["project-tests"].status == "passed"
    assert "node --test" in checks["project-tests"].summary
    for name in ("eslint", "vitest", "js-coverage"):
        assert checks[name].status == "not_run" and not checks[name].required
    assert {checks[g].status for g in ("web-start", "e2e", "axe", "lighthouse", "load")} == {
        "passed"
    }
    # What the report and verify read: the metrics, and the files they name, kept.
    assert Path(checks["screenshots"].metrics["files"]["/"]).read_bytes()[:4] == b"\x89PNG"
    report = Path(checks["lighthouse"].metrics["reports"]["/"])
    assert report.parent == evidence / "lighthouse"
    assert json.loads(report.read_text())["lighthouseVersion"] == "12.2.3"
    assert all(s >= 90 for s in checks["lighthouse"].metrics["scores"]["/"].values())
    (load,) = checks["load"].metrics["endpoints"]
    assert load["endpoint"] == "GET /api/greeting" and load["requests"] > 0
    assert (checks["e2e"].metrics["passed"], checks["e2e"].metrics["failed"]) == (1, 0)
    web = ("web-start", "e2e", "axe", "screenshots", "lighthouse", "load")
    assert all("duration_s" in checks[g].metrics for g in web)
    # Its own test failing fails the project-tests gate: the not-run ones do not hide it.
    server = tree / "server.mjs"
    server.write_text(server.read_text().replace("'Hello' })", "'Bye' })"))
    broken = validate_tree(tree, timeout=120)
    assert not broken.passed
    assert broken.check("project-tests").status == "failed"  # type: ignore[union-attr]
