"""The project environment seam: gates run the project's code with the environment they are given.

A virtual environment made here (offline: no pip, nothing installed from an index) holds a
package only it has; the gates given that environment run the project's tests with its
interpreter and resolve imports against its paths, and oldnew's own packages are not there.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from oldnew.gates import PROFILES, validate_tree
from oldnew.gates.runner import reuse_key
from oldnew.sandbox import EnvironmentProbeError, ProjectEnv, Sandbox, probe_host

HOST = probe_host()
OWN_SITE = Path(ProjectEnv.host().import_paths[-1])
# What pytest needs to run, and nothing else of oldnew's: the test tools the gates drive.
TEST_TOOLS = ("pytest", "_pytest", "pluggy", "iniconfig", "packaging", "pygments", "py.py")

ENV_PACKAGE = {
    "__init__.py": 'NAME: str = "from the project env"\n',
    "py.typed": "",
}


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtual environment without pip, with one package only it holds (``envonly``)."""
    root = tmp_path_factory.mktemp("projectenv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    (site,) = root.glob("lib/python*/site-packages")
    _write(site / "envonly", ENV_PACKAGE)
    return root


@pytest.fixture(scope="module")
def tools(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding only pytest and what it imports (links into oldnew's environment)."""
    folder = tmp_path_factory.mktemp("testtools")
    folder.chmod(0o755)  # the sandbox's uid reads it (mktemp makes it 0700)
    for name in TEST_TOOLS:
        (folder / name).symlink_to(OWN_SITE / name)
    return folder


def _profile(*gates: str) -> object:
    return dataclasses.replace(PROFILES["default"], gates=gates)


def test_host_environment_is_oldnews_own_by_either_route(tmp_path: Path) -> None:
    host = ProjectEnv.host()
    assert host == ProjectEnv.probe(sys.executable)
    assert str(host.python) == sys.executable and str(host.prefix) == sys.prefix
    assert host.test_tool_paths == () and host.variables() == {}
    assert "json" in host.stdlib_modules and "sys" in host.stdlib_modules
    assert host.node_modules is None
    (tmp_path / "node_modules").mkdir()
    assert ProjectEnv.host(tmp_path).node_modules == tmp_path / "node_modules"
    assert ProjectEnv.host(tmp_path).key() == host.key()  # where node_modules is: not a key
    with pytest.raises(EnvironmentProbeError, match="does not run"):
        ProjectEnv.probe(tmp_path / "no-python")
    (tmp_path / "not-python").write_text("#!/bin/sh\necho hello\n")
    (tmp_path / "not-python").chmod(0o755)
    with pytest.raises(EnvironmentProbeError, match="could not describe itself"):
        ProjectEnv.probe(tmp_path / "not-python")


def test_probe_describes_a_venv_without_running_its_pth_files(venv: Path) -> None:
    (site,) = venv.glob("lib/python*/site-packages")
    (site / "evil.pth").write_text(f"import os; open({str(venv / 'ran')!r}, 'w').close()\n")
    try:
        env = ProjectEnv.probe(venv / "bin" / "python")
    finally:
        (site / "evil.pth").unlink()
    assert not (venv / "ran").exists()
    assert env.python == venv / "bin" / "python" and env.prefix == venv
    assert env.base_prefix == Path(sys.base_prefix)
    assert site in env.import_paths and OWN_SITE not in env.import_paths
    assert env.key() != ProjectEnv.host().key()


def test_tests_run_with_the_given_environment(tmp_path: Path, venv: Path, tools: Path) -> None:
    python = venv / "bin" / "python"
    env = ProjectEnv.probe(python, test_tool_paths=(tools,))
    assert env.variables() == {"PYTHONPATH": str(tools)}
    project = _write(
        tmp_path / "p",
        {
            "app.py": "import envonly\n\n\ndef name() -> str:\n    return envonly.NAME\n",
            "tests/test_app.py": (
                "import sys\n\nfrom app import name\n\n\n"
                "def test_runs_with_the_project_env():\n"
                f"    assert sys.executable == {str(python)!r}\n"
                f"    assert sys.prefix == {str(venv)!r}\n"
                "    assert name() == 'from the project env'\n\n\n"
                "def test_oldnews_packages_are_not_there():\n"
                "    try:\n"
                "        import langgraph  # noqa: F401\n"
                "    except ImportError:\n"
                "        return\n"
                "    raise AssertionError('oldnew site-packages leaked into the project env')\n"
            ),
        },
    )
    gates = _profile("syntax", "imports", "pytest")
    result = validate_tree(project, timeout=120, profile=gates, env=env)  # type: ignore[arg-type]
    assert result.passed, [d.render() for d in result.diagnostics]
    assert result.check("pytest").metrics["tests"] == 2  # type: ignore[union-attr]

    # With oldnew's own environment the same project does not even resolve its imports.
    host = validate_tree(project, timeout=120, profile=gates)  # type: ignore[arg-type]
    assert host.check("imports").status == "failed"  # type: ignore[union-attr]
    assert any("'envonly'" in d.message for d in host.diagnostics)
    assert host.check("pytest").status == "not_run"  # type: ignore[union-attr]


def test_mypy_reads_the_packages_of_the_given_environment(tmp_path: Path, venv: Path) -> None:
    env = ProjectEnv.probe(venv / "bin" / "python")
    code = "import envonly\n\nCOUNT: int = envonly.NAME\n"
    project = _write(tmp_path / "p", {"app.py": code})
    gates = _profile("syntax", "imports", "mypy")
    result = validate_tree(project, timeout=120, profile=gates, env=env)  # type: ignore[arg-type]
    mypy = result.check("mypy")
    assert mypy is not None and mypy.status == "failed"
    assert mypy.command[mypy.command.index("--python-executable") + 1] == str(env.python)
    assert any(d.tool == "mypy" and "str" in d.message for d in result.diagnostics)


def test_imports_resolve_against_the_environments_paths(tmp_path: Path, venv: Path) -> None:
    env = ProjectEnv.probe(venv / "bin" / "python")
    only_imports = _profile("syntax", "imports")
    project = _write(tmp_path / "p", {"app.py": "import json\nimport envonly\n"})
    ok = validate_tree(project, timeout=60, profile=only_imports, env=env)  # type: ignore[arg-type]
    assert ok.check("imports").status == "passed"  # type: ignore[union-attr]
    assert ok.check("imports").version == f"python {env.version}"  # type: ignore[union-attr]

    # langgraph is installed for oldnew, not in the project's environment.
    (project / "app.py").write_text("import json\nimport langgraph\n")
    bad = validate_tree(project, timeout=60, profile=only_imports, env=env)  # type: ignore[arg-type]
    assert bad.check("imports").status == "failed"  # type: ignore[union-attr]
    assert [d.rule for d in bad.diagnostics] == ["unresolved-import"]
    assert "'langgraph'" in bad.diagnostics[0].message
    host = validate_tree(project, timeout=60, profile=only_imports)  # type: ignore[arg-type]
    assert host.check("imports").status == "passed"  # type: ignore[union-attr]


def test_reuse_key_depends_on_the_environment(tmp_path: Path, venv: Path) -> None:
    project = _write(tmp_path / "p", {"app.py": "X = 1\n"})
    profile = PROFILES["default"]
    env = ProjectEnv.probe(venv / "bin" / "python")
    assert reuse_key(project, profile, None, 60) == reuse_key(
        project, profile, None, 60, ProjectEnv.host()
    )
    assert reuse_key(project, profile, None, 60, env) != reuse_key(project, profile, None, 60)


@pytest.mark.parametrize(
    "use_bwrap",
    [
        pytest.param(True, marks=pytest.mark.skipif(HOST.bwrap is None, reason="no bubblewrap")),
        False,
    ],
)
def test_sandbox_shows_the_environments_node_modules(tmp_path: Path, use_bwrap: bool) -> None:
    project = _write(tmp_path / "p", {"index.js": "module.exports = 1;\n"})
    modules = _write(tmp_path / "elsewhere" / "node_modules", {".bin/tool": "#!/bin/sh\n"})
    env = dataclasses.replace(ProjectEnv.host(), node_modules=modules)
    with Sandbox.open(project, env=env, use_bwrap=use_bwrap, drop_uid=False) as box:
        listed = box.run(["ls", "node_modules/.bin"], timeout=30)
        written = box.run(["sh", "-c", "echo x > node_modules/new"], timeout=30)
    assert listed.stdout.split() == ["tool"]
    if use_bwrap:
        assert written.exit_code != 0 and not (modules / "new").exists()
