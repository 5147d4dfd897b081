"""Settings files (oldnew.settings): oldnew.toml, [tool.oldnew], .env and their precedence."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT
from test_tracing import greet_model

from oldnew import cli, settings
from oldnew.context import Context
from oldnew.errors import UsageError
from oldnew.runs import start_run
from oldnew.runs.session import run_context
from oldnew.workspace import Workspace

VARS = ("OLDNEW_MAX_AGENTS", "OLDNEW_QUALITY", "OLDNEW_MODEL", "OLDNEW_YES", "OLDNEW_SETTINGS_T")


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Start from no file layer and none of the variables; undo what a .env set."""
    for var in VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    before = set(os.environ)
    yield
    settings.reset()
    for var in set(os.environ) - before:
        del os.environ[var]


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_precedence_is_flag_then_environment_then_file_then_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(tmp_path / "oldnew.toml", 'max_agents = 4\nquality = "fast"\nmodel = "openai:x"\n')
    assert Context().max_agents == 0  # nothing read yet: a server run, a plain Python caller
    settings.load(tmp_path)
    monkeypatch.setenv("OLDNEW_QUALITY", "strict")
    ctx = Context(model="openai:flag")
    assert (ctx.model, ctx.quality, ctx.max_agents) == ("openai:flag", "strict", 4)
    assert Context().model == "openai:x"
    assert Context().context_tokens == 8000  # default: no layer sets it
    # A flag at the default value is still the flag: it beats the environment and the file.
    assert Context(max_agents=0, quality="default").max_agents == 0
    assert Context(max_agents=0, quality="default").quality == "default"


def test_dotenv_sets_only_what_the_environment_does_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(tmp_path / ".env", "OLDNEW_QUALITY=smoke\nOLDNEW_MAX_AGENTS=7\nOLDNEW_SETTINGS_T=1\n")
    _write(tmp_path / "oldnew.toml", "max_agents = 4\n")
    monkeypatch.setenv("OLDNEW_QUALITY", "strict")
    settings.load()  # the working directory
    assert os.environ["OLDNEW_QUALITY"] == "strict"
    assert os.environ["OLDNEW_SETTINGS_T"] == "1"
    ctx = Context()
    assert (ctx.quality, ctx.max_agents) == ("strict", 7)  # .env is environment: over the file


def test_a_dotenv_that_is_not_text_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / ".env").write_bytes(b"OLDNEW_MAX_AGENTS=\xff\xfe\n")
    with pytest.raises(UsageError, match="does not read as UTF-8 text"):
        settings.load(tmp_path)


def test_a_bad_variable_from_dotenv_names_the_file(tmp_path: Path) -> None:
    dotenv = _write(tmp_path / ".env", "OLDNEW_MAX_AGENTS=many\n")
    settings.load(tmp_path)
    with pytest.raises(UsageError, match=f"not 'many' \\(from OLDNEW_MAX_AGENTS in {dotenv}\\)"):
        Context()


def test_pyproject_table_is_read_and_a_web_apps_own_keys_are_skipped(tmp_path: Path) -> None:
    project = _write(
        tmp_path / "pyproject.toml",
        '[project]\nname = "app"\n[tool.oldnew]\nstart = "python -m app"\nhealth = "/h"\n'
        "yes = true\nmax_fix_rounds = 5\n",
    )
    layer = settings.load(tmp_path)
    assert layer.values == {"yes": True, "max_fix_rounds": 5}
    assert layer.where("yes") == f"{project} [tool.oldnew] yes"
    assert (Context().yes, Context().max_fix_rounds) == (True, 5)
    _write(project, '[tool.oldnew]\nstart = "python -m app"\nbuild = "make"\ntest = "make check"\n')
    assert settings.load(tmp_path).values == {}  # a generated app's keys only: no settings


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("max_agent = 4\n", "max_agent: no such setting; did you mean 'max_agents'?"),
        ("max_agents = -1\n", "whole number of at least 0"),
        ("max_agents = 2.5\n", "whole number"),
        ('quality = "best"\n', "quality must be strict, default, fast or smoke, not 'best'"),
        ('yes = "true"\n', "yes must be true or false"),
        ("model = 4\n", "model must be a string"),
        ('class_agents = "simple=2"\n', "class_agents must name exactly"),
        ('workspace = "/tmp/x"\n', "given per run (--workspace)"),
        ('gates = "all"\n', "the former name of 'approvals'"),
        ("max_agents = \n", "does not parse as TOML"),
    ],
)
def test_a_bad_file_names_the_file_the_key_and_what_is_allowed(
    tmp_path: Path, text: str, said: str
) -> None:
    path = _write(tmp_path / "oldnew.toml", text)
    with pytest.raises(UsageError) as caught:
        settings.load(tmp_path)
    assert str(path) in str(caught.value)
    assert said in str(caught.value)
    assert settings.loaded().values == {}


def test_settings_in_both_files_are_refused(tmp_path: Path) -> None:
    _write(tmp_path / "oldnew.toml", "max_agents = 4\n")
    _write(tmp_path / "pyproject.toml", "[tool.oldnew]\nmax_agents = 5\n")
    with pytest.raises(UsageError, match="keep them in one of the two"):
        settings.load(tmp_path)


def test_only_the_working_directory_is_read(tmp_path: Path) -> None:
    _write(tmp_path / "oldnew.toml", "max_agents = 4\n")
    inner = tmp_path / "sub"
    inner.mkdir()
    assert settings.load(inner).values == {}
    assert Context().max_agents == 0


def test_a_resume_keeps_the_run_json_context_over_the_file(tmp_path: Path) -> None:
    ws = Workspace.create(tmp_path / "ws", "r1", {"context": {"max_agents": 2}})
    _write(tmp_path / "oldnew.toml", 'max_agents = 4\nquality = "fast"\n')
    settings.load(tmp_path)
    ctx = run_context(ws, {})
    assert (ctx.max_agents, ctx.quality) == (2, "fast")  # saved flag, then the file


def test_cli_reads_the_file_at_startup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    memory = tmp_path / "mem" / "memory.sqlite"
    monkeypatch.delenv("OLDNEW_MEMORY_PATH", raising=False)
    _write(tmp_path / "oldnew.toml", f'memory_path = "{memory}"\n')
    monkeypatch.setattr(sys, "argv", ["oldnew", "memory", "--global"])
    with pytest.raises(SystemExit) as done:
        cli.main()
    assert done.value.code == 0
    assert str(memory) in capsys.readouterr().out.replace("\n", "")


def test_cli_stops_on_a_bad_file_with_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _write(tmp_path / "oldnew.toml", "max_agents = -1\n")
    monkeypatch.setattr(sys, "argv", ["oldnew", "memory"])
    with pytest.raises(SystemExit) as done:
        cli.main()
    assert done.value.code == cli.EXIT_USAGE
    said = capsys.readouterr().err.replace("\n", "")
    assert "oldnew.toml max_agents" in said and "at least 0" in said


@pytest.mark.parametrize("asks", [["-h"], ["status", "--help"], ["--version"]])
def test_help_and_version_still_work_beside_a_bad_file_and_say_what_to_fix(
    asks: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _write(tmp_path / "oldnew.toml", "max_agents = -1\n")
    monkeypatch.setattr(sys, "argv", ["oldnew", *asks])
    with pytest.raises(SystemExit) as done:
        cli.main()
    assert done.value.code == 0
    said = capsys.readouterr()
    assert "warning:" in said.err and "oldnew.toml max_agents" in said.err.replace("\n", "")
    assert "Usage" in said.out or "oldnew" in said.out


DEMOS = ("demo.sh", "demo_web.sh", "demo_deps.sh")


def _demo_memory(script: str, workspace: Path) -> Path:
    """Return the memory path ``script`` sets for a demo in ``workspace`` (its own line, run)."""
    text = (ROOT / "scripts" / script).read_text(encoding="utf-8")
    line = next(x for x in text.splitlines() if x.startswith("export OLDNEW_MEMORY_PATH="))
    first_run = next(x for x in text.splitlines() if ".venv/bin/oldnew " in x)
    assert text.index(line) < text.index(first_run), f"{script} sets the memory path too late"
    shell = f'WS={shlex.quote(str(workspace))}; {line}; printf %s "$OLDNEW_MEMORY_PATH"'
    said = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, check=True)
    return Path(said.stdout)


@pytest.mark.parametrize("script", DEMOS)
def test_demo_scripts_keep_memory_in_their_workspace(script: str, tmp_path: Path) -> None:
    memory = _demo_memory(script, tmp_path / "ws")
    assert memory == tmp_path / "ws" / ".oldnew" / "memory.sqlite"


def _demo_like_run(tmp_path: Path, name: str, memory: Path, model: str) -> list[tuple[Any, ...]]:
    """Run the one-task greeter as a demo would; return its events' (task, node, event)."""
    scope = tmp_path / "scope.md"
    scope.write_text("Build a friendly greeter.\n")
    os.environ["OLDNEW_MEMORY_PATH"] = str(memory)  # as the script exports it
    ws = tmp_path / name
    out = asyncio.run(start_run(scope, ws, context={"model": model, "acceptance": False}))
    assert out.status == "delivered", out
    lines = (ws / ".oldnew" / "events.jsonl").read_text(encoding="utf-8").splitlines()
    return [(e.get("task"), e.get("node"), e.get("event")) for e in map(json.loads, lines)]


@pytest.mark.usefixtures("smoke_gates")
def test_two_demo_like_runs_in_a_row_behave_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLDNEW_MEMORY_PATH", "")  # restored after the test
    model = greet_model(tmp_path)
    first, second = (
        _demo_like_run(tmp_path, name, _demo_memory("demo.sh", tmp_path / name), model)
        for name in ("first", "second")
    )
    assert first == second
    assert (tmp_path / "second" / ".oldnew" / "memory.sqlite").is_file()
    # What the demo avoids: a run on a memory another run taught behaves otherwise.
    shared = _demo_like_run(tmp_path, "third", tmp_path / "first/.oldnew/memory.sqlite", model)
    assert ("T1", "code", "template_reused") in set(shared) - set(first)
