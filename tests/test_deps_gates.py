"""The gates against a project's dependencies: the audit reads the lock, mypy and the imports
gate see the project's environment and say what to declare when a package is missing.

Everything is local: packages are wheels of a :class:`LocalIndex` installed with uv into a
virtual environment made here, and the vulnerability service is an OSV-shaped server on
127.0.0.1 that this module starts.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from oldnew.bench.pkgindex import LocalIndex
from oldnew.cli import app
from oldnew.deps import python as uvpy
from oldnew.deps.envs import project_env
from oldnew.deps.settings import DepSettings
from oldnew.gates import PROFILES, Profile, ValidationResult, validate_tree
from oldnew.gates.audit import OSV_URL_VARIABLE, lock_pins, no_report_reason
from oldnew.gates.verify import export_head, not_run_line, verify_workspace
from oldnew.report import render_markdown
from oldnew.safegit import run_git
from oldnew.sandbox import ProjectEnv, RunResult
from oldnew.workspace import Workspace

PYPROJECT = (
    '[project]\nname = "shop"\nversion = "0.1.0"\nrequires-python = ">=3.11"\n'
    'dependencies = ["tinylib>=1.0", "safelib>=2"]\n'
)
LOCK = """version = 1
requires-python = ">=3.11"

[[package]]
name = "shop"
version = "0.1.0"
source = { virtual = "." }
dependencies = [{ name = "safelib" }, { name = "tinylib" }]

[[package]]
name = "safelib"
version = "2.0.0"
source = { registry = "https://example.invalid/simple" }

[[package]]
name = "tinylib"
version = "1.2.0"
source = { registry = "https://example.invalid/simple" }
dependencies = [{ name = "deeplib" }]

[[package]]
name = "deeplib"
version = "0.3.0"
source = { registry = "https://example.invalid/simple" }
"""
ADVISORY = "GHSA-2222-3333-4444"
VULNERABLE = {
    ("tinylib", "1.2.0"): ("1.2.1", "tinylib lets a crafted header run code"),
    ("deeplib", "0.3.0"): ("0.4.0", "deeplib leaks memory"),
}


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def _only(*gates: str) -> Profile:
    return dataclasses.replace(PROFILES["default"], gates=gates)


# -- a vulnerability service on 127.0.0.1 -----------------------------------------------------


class _Osv(BaseHTTPRequestHandler):
    """Answer OSV's ``/v1/query`` as api.osv.dev does: ``{}``, or the package's vulns."""

    queries: list[tuple[str, str]] = []
    failing = False
    """Answer the probe, then fail every query with 503 (a service that breaks mid-audit)."""

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        """Answer one query, recording which package and version it asked about."""
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        name, version = body["package"]["name"], body["version"]
        self.queries.append((name, version))
        if self.failing and (name, version) != PROBE:
            self.send_error(503)
            return
        out: dict[str, Any] = {}
        if (name, version) in VULNERABLE:
            fixed, summary = VULNERABLE[(name, version)]
            vuln_id = ADVISORY if name == "tinylib" else "PYSEC-2026-7"
            events = [{"introduced": "0"}, {"fixed": fixed}]
            affected: dict[str, Any] = {"package": {"name": name, "ecosystem": "PyPI"}}
            affected["ranges"] = [{"type": "ECOSYSTEM", "events": events}]
            out = {"vulns": [{"id": vuln_id, "summary": summary, "affected": [affected]}]}
        data = json.dumps(out).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """Say nothing per request."""


OWN_SITE = Path(ProjectEnv.host().import_paths[-1])
PROBE = ("pip", "0.1")
"""What the gate asks the service about before it audits (is it there at all?)."""


def _audited(queries: list[tuple[str, str]]) -> list[tuple[str, str]]:
    assert queries[0] == PROBE  # the service was probed first
    return sorted(q for q in queries if q != PROBE)


@pytest.fixture
def osv(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, str]]]:
    """Point the audit at a local OSV service; yield the queries it receives."""
    _Osv.queries, _Osv.failing = [], False
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Osv)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv(OSV_URL_VARIABLE, f"http://127.0.0.1:{server.server_address[1]}/v1/query")
    try:
        yield _Osv.queries
    finally:
        server.shutdown()
        server.server_close()


def _audit(tree: Path) -> tuple[Any, ValidationResult]:
    result = validate_tree(tree, timeout=120, profile=_only("audit"))
    (check,) = result.checks
    return check, result


# -- the audit --------------------------------------------------------------------------------


def test_audit_checks_the_versions_the_lock_pins_and_fails_on_an_advisory(
    tmp_path: Path, osv: list[tuple[str, str]]
) -> None:
    tree = _write(tmp_path / "p", {"pyproject.toml": PYPROJECT, "uv.lock": LOCK})
    check, result = _audit(tree)
    assert check.status == "failed" and not result.passed, check.summary
    # What was asked about is what the lock pins (transitive deeplib too), never the ranges
    # of the manifest, nor the project itself.
    assert _audited(osv) == [("deeplib", "0.3.0"), ("safelib", "2.0.0"), ("tinylib", "1.2.0")]
    assert check.metrics["packages"] == 3 and check.metrics["source"] == "uv.lock"
    assert "--osv-url" in check.command and "--no-deps" in check.command
    by_name = {d.message.split()[0]: d for d in result.diagnostics}
    assert set(by_name) == {"tinylib", "deeplib"}
    tiny = by_name["tinylib"]
    assert tiny.tool == "audit" and tiny.file == "uv.lock" and tiny.rule == ADVISORY
    assert "tinylib 1.2.0" in tiny.message and ADVISORY in tiny.message
    assert "1.2.1" in tiny.message and "'tinylib>=1.2.1'" in tiny.message
    # deeplib is not declared: the advice says how to raise a transitive pin.
    deep = by_name["deeplib"].message
    assert "0.4.0" in deep and "comes with another package" in deep


def test_audit_passes_a_lock_without_advisories(tmp_path: Path, osv: list[Any]) -> None:
    clean = LOCK.replace('version = "1.2.0"', 'version = "1.2.1"').replace("0.3.0", "0.4.0")
    tree = _write(tmp_path / "p", {"pyproject.toml": PYPROJECT, "uv.lock": clean})
    check, result = _audit(tree)
    assert check.status == "passed" and result.passed, check.summary
    assert ("tinylib", "1.2.1") in osv and "3 packages pinned in uv.lock" in check.summary


def test_audit_asks_about_each_version_of_a_forked_lock(tmp_path: Path, osv: list[Any]) -> None:
    forked = LOCK + (
        '\n[[package]]\nname = "tinylib"\nversion = "1.3.0"\n'
        'source = { registry = "https://example.invalid/simple" }\n'
    )
    assert ("tinylib", "1.3.0") in lock_pins(forked) and ("tinylib", "1.2.0") in lock_pins(forked)
    tree = _write(tmp_path / "p", {"pyproject.toml": PYPROJECT, "uv.lock": forked})
    check, result = _audit(tree)
    assert ("tinylib", "1.2.0") in osv and ("tinylib", "1.3.0") in osv
    assert check.status == "failed" and check.metrics["packages"] == 4
    assert [d.rule for d in result.diagnostics].count(ADVISORY) == 1


def test_audit_is_not_run_with_why_when_the_service_is_unreachable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ThreadingHTTPServer(("127.0.0.1", 0), _Osv) as closed:
        port = closed.server_address[1]  # bound, then closed: nothing listens there
    monkeypatch.setenv(OSV_URL_VARIABLE, f"http://127.0.0.1:{port}/v1/query")
    tree = _write(tmp_path / "p", {"pyproject.toml": PYPROJECT, "uv.lock": LOCK})
    check, result = _audit(tree)
    assert check.status == "not_run" and not check.required
    assert "not reachable" in check.summary and f"127.0.0.1:{port}" in check.summary
    assert "none of the 3 pinned packages was checked" in check.summary
    assert result.passed and not result.diagnostics  # optional: claims nothing, blocks nothing
    # A URL that is not http(s) is said, not crashed on.
    monkeypatch.setenv(OSV_URL_VARIABLE, "ftp://mirror/v1/query")
    check, _ = _audit(tree)
    assert check.status == "not_run" and OSV_URL_VARIABLE in check.summary


def test_a_service_that_fails_during_the_audit_is_not_a_pass(
    tmp_path: Path, osv: list[Any]
) -> None:
    _Osv.failing = True
    tree = _write(tmp_path / "p", {"pyproject.toml": PYPROJECT, "uv.lock": LOCK})
    check, result = _audit(tree)
    assert len(osv) > 1  # probed, then asked
    assert check.status == "not_run" and not result.diagnostics
    assert check.summary.startswith("not run: the vulnerability service failed"), check.summary
    assert "503" in check.summary


def test_a_package_the_service_does_not_know_is_said(tmp_path: Path) -> None:
    said = (
        "ERROR:pip_audit._cli:tinylib: Dependency not found on PyPI and could not be audited: "
        "tinylib (1.2.0)\n"
    )
    why = no_report_reason(RunResult(["pip-audit"], 1, "", said, 0.1))
    assert why.startswith("not run:") and "tinylib (1.2.0)" in why and OSV_URL_VARIABLE in why
    gone = RunResult(["pip-audit"], 1, "", "requests.exceptions.ConnectionError: refused", 0.1)
    assert "stopped answering" in no_report_reason(gone)


@pytest.mark.parametrize(
    "lock",
    [
        "version = 1\n[[package]\nname = ",  # not TOML
        'version = 1\npackage = "tinylib"\n',  # TOML, not a lock
        'version = 1\n[[package]]\nname = "tinylib"\nsource = { registry = "x" }\n',  # no version
    ],
)
def test_a_lock_that_does_not_read_fails_the_audit_with_what_to_do(
    tmp_path: Path, lock: str
) -> None:
    tree = _write(tmp_path / "p", {"pyproject.toml": PYPROJECT, "uv.lock": lock})
    check, result = _audit(tree)
    assert check.status == "failed" and not result.passed
    (diag,) = result.diagnostics
    assert diag.file == "uv.lock" and diag.rule == "lock"
    assert "lock again" in diag.message or "re-lock" in diag.message


def test_audit_of_a_real_uv_lock(tmp_path: Path, osv: list[Any]) -> None:
    index = LocalIndex(tmp_path / "index")
    index.wheel("tinylib", "1.2.0", {"tinylib/__init__.py": "X = 1\n"}, ["deeplib>=0.3"])
    index.wheel("deeplib", "0.3.0", {"deeplib/__init__.py": "Y = 1\n"})
    tree = _write(tmp_path / "p", {"pyproject.toml": PYPROJECT.replace(', "safelib>=2"', "")})
    uvpy.lock(tree, DepSettings(cache=tmp_path / "cache", index=index.url))
    assert lock_pins((tree / "uv.lock").read_text()) == [("deeplib", "0.3.0"), ("tinylib", "1.2.0")]
    check, result = _audit(tree)
    assert _audited(osv) == [("deeplib", "0.3.0"), ("tinylib", "1.2.0")]
    assert check.status == "failed" and {d.rule for d in result.diagnostics} >= {ADVISORY}


def test_without_a_lock_pinned_requirements_are_still_audited(
    tmp_path: Path, osv: list[Any]
) -> None:
    tree = _write(tmp_path / "p", {"requirements.txt": "tinylib==1.2.0\n"})
    check, result = _audit(tree)
    assert _audited(osv) == [("tinylib", "1.2.0")] and check.status == "failed"
    assert result.diagnostics[0].file == "requirements"
    (tree / "requirements.txt").write_text("tinylib>=1\n")
    check, _ = _audit(tree)
    assert check.status == "not_run" and "uv lock" in check.summary


def test_report_names_every_gate_that_did_not_run_and_why(tmp_path: Path) -> None:
    long_why = "not run: the vulnerability service is not reachable (" + "x" * 200 + ") END"
    final = {
        "checks": [
            {"name": "pytest", "status": "passed", "summary": "3 passed", "required": True},
            {"name": "audit", "status": "not_run", "summary": long_why, "required": False},
        ],
        "evidence": ".oldnew/evidence/final.json",
    }
    report = {
        "project": "p",
        "status": "delivered",
        "run_id": "r",
        "workspace": "/w",
        "head": "abc",
        "final_validation": final,
        "quality": {},
        "delivered": [],
        "blocked": [],
        "decisions": [],
        "resume": "-",
    }
    text = render_markdown(report)
    assert "| audit | **not run (optional)** |" in text
    # The table cuts long results; the reason a gate did not run is given whole below it.
    assert "- **audit** was not run (optional): " + long_why in text
    assert "- **pytest** was not run" not in text


# -- a project environment with packages from a local index ----------------------------------

TYPED = {
    "typedlib/__init__.py": "def double(x: int) -> int:\n    return 2 * x\n",
    "typedlib/py.typed": "",
}
PLAIN = {"plainmod/__init__.py": "def shout(text):\n    return text.upper()\n"}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> ProjectEnv:
    """A virtual environment holding typedlib (typed) and plainmod (dist plain-dist, untyped)."""
    root = tmp_path_factory.mktemp("depsenv")
    index = LocalIndex(root / "index")
    index.wheel("typedlib", "1.0.0", TYPED)
    index.wheel("plain-dist", "2.0.0", PLAIN)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    install = [uvpy.uv_bin(), "pip", "install", "--python", str(venv / "bin" / "python")]
    install += ["--index-url", index.url, "--no-config", "typedlib", "plain-dist"]
    variables = {"PATH": os.environ["PATH"], "UV_CACHE_DIR": str(root / "uv-cache")}
    subprocess.run(install, check=True, capture_output=True, env=variables)
    return ProjectEnv.probe(venv / "bin" / "python")


def _mypy(tree: Path, env: ProjectEnv) -> tuple[str, list[str]]:
    result = validate_tree(tree, timeout=120, profile=_only("syntax", "mypy"), env=env)
    mypy = result.check("mypy")
    assert mypy is not None
    return mypy.status, [d.message for d in result.diagnostics if d.tool == "mypy"]


def test_mypy_type_checks_a_typed_package_of_the_environment(
    tmp_path: Path, env: ProjectEnv
) -> None:
    code = "import typedlib\n\nVALUE: int = typedlib.double(2)\n"
    tree = _write(tmp_path / "p", {"app.py": code})
    assert _mypy(tree, env) == ("passed", [])
    # It did read typedlib's types: a wrong use of them is found.
    (tree / "app.py").write_text("import typedlib\n\nVALUE: str = typedlib.double(2)\n")
    status, messages = _mypy(tree, env)
    assert status == "failed" and any('"int"' in m and '"str"' in m for m in messages), messages


def test_mypy_says_how_to_handle_an_untyped_package(tmp_path: Path, env: ProjectEnv) -> None:
    tree = _write(tmp_path / "p", {"app.py": "import plainmod\n\nplainmod.shout('x')\n"})
    status, (message,) = _mypy(tree, env)
    assert status == "failed"
    assert "'plainmod' (distribution 'plain-dist') is installed" in message
    assert "no py.typed" in message
    assert '[[tool.mypy.overrides]] module = "plainmod.*" ignore_missing_imports = true' in message
    # That advice, followed, makes the gate pass.
    override = '\n[[tool.mypy.overrides]]\nmodule = "plainmod.*"\nignore_missing_imports = true\n'
    (tree / "pyproject.toml").write_text('[project]\nname = "p"\nversion = "0"\n' + override)
    assert _mypy(tree, env) == ("passed", [])


def test_mypy_names_the_stubs_package_its_hint_gives(tmp_path: Path, env: ProjectEnv) -> None:
    # mypy knows yaml's stubs (types-PyYAML) from its own table; the finding passes them on.
    tree = _write(tmp_path / "p", {"app.py": "import yaml\n\nyaml.safe_load('a: 1')\n"})
    status, (message,) = _mypy(tree, env)
    assert status == "failed"
    assert "'types-PyYAML'" in message and "dev dependency group in pyproject.toml" in message


def test_mypy_says_to_declare_a_package_missing_from_the_environment(
    tmp_path: Path, env: ProjectEnv
) -> None:
    files = {"app.py": "import absentmod\nimport shop.helper\n", "shop/__init__.py": ""}
    tree = _write(tmp_path / "p", files)
    status, messages = _mypy(tree, env)
    assert status == "failed" and len(messages) == 2, messages
    absent = next(m for m in messages if "absentmod" in m)
    assert "module 'absentmod' is not in the project's environment" in absent
    assert "[project] dependencies" in absent
    # A module of the project's own that is missing keeps mypy's words: no dependency advice.
    own = next(m for m in messages if "shop.helper" in m)
    assert "dependencies" not in own and "Cannot find implementation" in own


def test_imports_resolve_against_the_environment_and_say_what_to_declare(
    tmp_path: Path, env: ProjectEnv
) -> None:
    only = _only("syntax", "imports")
    tree = _write(tmp_path / "p", {"app.py": "import json\nimport typedlib\nimport plainmod\n"})
    ok = validate_tree(tree, timeout=60, profile=only, env=env)
    assert ok.passed, [d.render() for d in ok.diagnostics]

    (tree / "app.py").write_text("import typedlib\nimport absentmod\n")
    bad = validate_tree(tree, timeout=60, profile=only, env=env)
    (diag,) = bad.diagnostics
    assert diag.rule == "unresolved-import" and "'absentmod'" in diag.message
    assert "pyproject.toml [project] dependencies" in diag.message
    assert "not installed in the project's environment" in diag.message

    # Declared, yet absent from the environment: the lock or the module name is wrong.
    (tree / "pyproject.toml").write_text('[project]\nname = "p"\ndependencies = ["absentmod"]\n')
    declared = validate_tree(tree, timeout=60, profile=only, env=env)
    assert "'absentmod' is declared in pyproject.toml" in declared.diagnostics[0].message


def test_imports_name_the_distribution_of_a_module_when_known(
    tmp_path: Path, env: ProjectEnv
) -> None:
    pytest.importorskip("yaml")
    dist = importlib.metadata.packages_distributions()["yaml"][0]  # PyYAML, in oldnew's env
    tree = _write(tmp_path / "p", {"app.py": "import yaml\n"})
    result = validate_tree(tree, timeout=60, profile=_only("syntax", "imports"), env=env)
    (diag,) = result.diagnostics
    assert f"declare its distribution {dist!r} (which provides 'yaml')" in diag.message


def test_verify_shows_a_gate_that_did_not_run_and_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ThreadingHTTPServer(("127.0.0.1", 0), _Osv) as closed:
        port = closed.server_address[1]
    monkeypatch.setenv(OSV_URL_VARIABLE, f"http://127.0.0.1:{port}/v1/query")
    index = LocalIndex(tmp_path / "index")
    index.wheel("tinylib", "1.2.0", {"tinylib/__init__.py": "X = 1\n"})
    monkeypatch.setenv("OLDNEW_PACKAGE_INDEX", index.url)  # verify rebuilds the env from it
    ws = Workspace.create(tmp_path / "ws", "r1", {})
    manifest = PYPROJECT.replace(', "safelib>=2"', "")
    _write(ws.root, {"app.py": "import tinylib\n", "pyproject.toml": manifest})
    uvpy.lock(ws.root, DepSettings(cache=tmp_path / "cache", index=index.url))
    git = ("-c", "user.name=t", "-c", "user.email=t@t")
    assert run_git("add", "app.py", "pyproject.toml", "uv.lock", cwd=ws.root).returncode == 0
    assert run_git(*git, "commit", "-qm", "project", cwd=ws.root).returncode == 0
    head = ws.head()
    result = validate_tree(export_head(ws, tmp_path / "main"), timeout=60, profile=_only("audit"))
    assert result.passed and result.checks[0].status == "not_run"
    assert "none of the 1 pinned packages" in result.checks[0].summary
    evidence = ws.write_json("evidence/final.json", {"head": head, **result.to_dict()})
    final = {**result.to_dict(), "evidence": str(evidence.relative_to(ws.root))}
    ws.write_json("report.json", {"status": "delivered", "head": head, "final_validation": final})

    res = CliRunner().invoke(app, ["verify", "-w", str(ws.root)])
    assert res.exit_code == 0, res.output
    shown = " ".join(res.output.split())
    assert "not run, never counted as passed: audit (optional): not run: the vulnerability" in shown
    assert f"127.0.0.1:{port}" in shown
    out = verify_workspace(ws.root, deps=DepSettings(cache=tmp_path / "cache", index=index.url))
    assert out.not_run == [not_run_line(c) for c in result.checks]
    assert out.to_dict()["not_run"] == out.not_run


def test_mypy_sees_the_test_tools_lent_to_the_environment(tmp_path: Path, env: ProjectEnv) -> None:
    code = "import pytest\n\n\n@pytest.fixture\ndef number() -> int:\n    return 1\n"
    tree = _write(tmp_path / "p", {"tests/test_a.py": code})
    status, (message,) = _mypy(tree, env)
    assert status == "failed" and "module 'pytest' is not in the project's environment" in message
    assert "dev] group" in message or "dev group" in message
    # With pytest lent on PYTHONPATH (as the pytest gate runs the tests), mypy reads its types.
    tools = tmp_path / "tools"
    tools.mkdir()
    tools.chmod(0o755)
    for name in ("pytest", "_pytest", "pluggy", "iniconfig", "packaging", "pygments"):
        (tools / name).symlink_to(OWN_SITE / name)
    lent = dataclasses.replace(env, test_tool_paths=(tools,))
    assert _mypy(tree, lent) == ("passed", [])


def test_the_gates_of_a_locked_project_run_against_its_own_environment(
    tmp_path: Path, osv: list[tuple[str, str]]
) -> None:
    index = LocalIndex(tmp_path / "index")
    index.wheel("typedlib", "1.0.0", TYPED)
    index.wheel("plain-dist", "2.0.0", PLAIN)
    manifest = PYPROJECT.replace('"tinylib>=1.0", "safelib>=2"', '"typedlib>=1", "plain-dist"')
    code = "import plainmod\nimport typedlib\n\nVALUE: int = typedlib.double(2)\n"
    tree = _write(tmp_path / "p", {"pyproject.toml": manifest, "app.py": code})
    settings = DepSettings(cache=tmp_path / "cache", index=index.url)
    uvpy.lock(tree, settings)
    project = project_env(tree, settings)
    assert OWN_SITE not in project.import_paths

    gates = _only("syntax", "imports", "mypy", "audit")
    result = validate_tree(tree, timeout=120, profile=gates, env=project)
    status = {c.name: c.status for c in result.checks}
    assert status == {"syntax": "passed", "imports": "passed", "mypy": "failed", "audit": "passed"}
    (finding,) = result.diagnostics
    assert finding.rule == "import-untyped" and "'plain-dist'" in finding.message
    assert _audited(osv) == [("plain-dist", "2.0.0"), ("typedlib", "1.0.0")]
