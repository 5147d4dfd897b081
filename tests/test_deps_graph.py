"""Dependencies through the graph: declared, approved, locked, installed, validated, reported.

A local package index (wheels of tiny packages this module writes) stands in for PyPI; uv
resolves and installs from it for real. Each bad input of issue 13 is a run whose coder
declares it, and the test checks where it went: back to the fixer with the resolver's words,
or to a person with a question that says what to do.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from depsrun import PLAIN, SCOPE, events, manifest, plan, scope_file
from synthetic import planned_run

from oldnew.bench.pkgindex import LocalIndex
from oldnew.deps.python import uv_bin
from oldnew.gates.verify import verify_workspace
from oldnew.runs import resume_run, start_run
from oldnew.testing import prompt_text

PLAN = plan("app.py with show(n) using numfmt")
APP = (
    "FILE: app.py\n```python\nfrom numfmt import fmt\n\n\ndef show(n: int) -> str:\n"
    "    return fmt(n)\n```\n"
    "FILE: tests/test_app.py\n```python\nfrom app import show\n\n\n"
    "def test_show() -> None:\n    assert show(3) == '3!'\n```\n"
)


GOOD = manifest('"numfmt>=2",  # formats the numbers')


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> LocalIndex:
    idx = LocalIndex(tmp_path_factory.mktemp("index"))
    idx.wheel("textkit", "1.0", {"textkit/__init__.py": "def shout(s):\n    return s + '!'\n"})
    idx.wheel(
        "numfmt",
        "2.0",
        {"numfmt/__init__.py": "from textkit import shout\nfmt = lambda n: shout(str(n))\n"},
        ["textkit>=1"],
    )
    idx.wheel("oldtext", "1.0", {"oldtext/__init__.py": ""}, ["textkit<1"])
    idx.wheel("loudtext", "1.0", {"loudtext/__init__.py": ""})
    idx.sdist("srconly", "1.0")
    return idx


def _context(index: LocalIndex, **more: Any) -> dict[str, Any]:
    return {"package_index": index.url, "deps": "auto", "max_fix_rounds": 2, **more}


def _scope(tmp_path: Path) -> Path:
    return scope_file(tmp_path, "Build shouty: show(n) shouts a number, with the numfmt package.\n")


_events = events


def _git(ws: Path, *args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=ws, capture_output=True, text=True, check=True)
    return proc.stdout


def _run(tmp_path: Path, index: LocalIndex, code: Any, fix: Any = None, **ctx: Any) -> Any:
    models = planned_run(SCOPE, PLAN, code={"T1": code}, fix={"T1": fix} if fix else None)
    ws = tmp_path / "ws"
    out = asyncio.run(
        start_run(_scope(tmp_path), ws, context=_context(index, **ctx), models=models)
    )
    return ws, out, models


@pytest.mark.usefixtures("smoke_gates")
def test_declared_package_is_locked_installed_validated_and_reported(
    tmp_path: Path, index: LocalIndex
) -> None:
    ws, out, _ = _run(tmp_path, index, APP + GOOD)
    assert out.status == "delivered", out
    files = _git(ws, "ls-files").split()
    assert {"pyproject.toml", "uv.lock", "app.py"} <= set(files)
    lock = (ws / "uv.lock").read_text()
    assert 'name = "numfmt"' in lock and 'name = "textkit"' in lock
    (installed,) = _events(ws, node="dependencies", event="installed")
    (env,) = installed["environments"]
    assert env["packages"] == 2
    # The gates ran in that environment: its interpreter, not oldnew's.
    evidence = json.loads((ws / ".oldnew" / "evidence" / "T1-01.json").read_text())
    pytest_check = next(c for c in evidence["checks"] if c["name"] == "pytest")
    assert pytest_check["status"] == "passed"
    assert env["path"] in " ".join(pytest_check["command"])
    report = json.loads((ws / ".oldnew" / "report.json").read_text())
    deps = {d["name"]: d for d in report["dependencies"]}
    assert deps["numfmt"]["direct"] and deps["numfmt"]["version"] == "2.0"
    assert deps["numfmt"]["requested_by"] == "T1" and deps["numfmt"]["why"] == "formats the numbers"
    assert deps["numfmt"]["approved"] == "approved by --deps auto"
    assert not deps["textkit"]["direct"]
    md = (ws / ".oldnew" / "report.md").read_text()
    assert "## Dependencies" in md and "numfmt 2.0 (python)" in md


@pytest.mark.usefixtures("smoke_gates")
def test_verify_rebuilds_the_environment_from_the_lock(tmp_path: Path, index: LocalIndex) -> None:
    from oldnew.deps.settings import DepSettings

    ws, out, _ = _run(tmp_path, index, APP + GOOD)
    assert out.status == "delivered"
    fresh = DepSettings(cache=tmp_path / "fresh-cache", index=index.url, timeout=60)
    result = verify_workspace(ws, timeout=60, deps=fresh)
    assert result.matches, result.differences
    assert any((tmp_path / "fresh-cache" / "envs").glob("py-*/bin/python"))
    # A lock that no longer matches its manifest is a difference, not a pass.
    (ws / "pyproject.toml").write_text(
        (ws / "pyproject.toml").read_text().replace('"numfmt>=2"', '"numfmt>=2", "textkit"')
    )
    _git(ws, "commit", "-qam", "edit the manifest by hand")
    result = verify_workspace(ws, timeout=60, deps=fresh)
    assert not result.matches
    assert any("does not match" in d for d in result.differences), result.differences


@pytest.mark.usefixtures("smoke_gates")
def test_the_delivered_project_runs_its_tests_in_a_fresh_venv_from_its_lock(
    tmp_path: Path, index: LocalIndex
) -> None:
    ws, out, _ = _run(tmp_path, index, APP + GOOD)
    assert out.status == "delivered"
    venv = tmp_path / "fresh-venv"
    env = {"UV_PROJECT_ENVIRONMENT": str(venv), "UV_CACHE_DIR": str(tmp_path / "uvc")}
    env |= {"PATH": "/usr/bin:/bin", "UV_PYTHON_DOWNLOADS": "never", "HOME": str(tmp_path)}
    sync = [uv_bin(), "sync", "--frozen", "--no-install-project", "--default-index", index.url]
    subprocess.run(sync, cwd=ws, env=env, check=True, capture_output=True)
    probe = [str(venv / "bin" / "python"), "-c", "import app; print(app.show(7))"]
    proc = subprocess.run(probe, cwd=ws, capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "7!"


BAD_MANIFESTS = {
    "unknown package": (manifest('"nosuchpkg>=1",'), "nosuchpkg was not found"),
    "unknown version": (manifest('"numfmt>=9",'), "only numfmt==2.0 is available"),
    "conflict": (manifest('"numfmt>=2",', '"oldtext",'), "unsatisfiable"),
    "invalid toml": (manifest('"numfmt>=2"', extra="[oops\n"), "is not valid TOML"),
    "url dependency": (manifest('"numfmt @ https://example.invalid/numfmt.whl",'), "URLs"),
}


@pytest.mark.usefixtures("smoke_gates")
@pytest.mark.parametrize("case", sorted(BAD_MANIFESTS))
def test_a_bad_manifest_goes_back_to_the_fixer_with_the_resolvers_words(
    tmp_path: Path, index: LocalIndex, case: str
) -> None:
    bad, words = BAD_MANIFESTS[case]
    ws, out, models = _run(tmp_path, index, APP + bad, fix=GOOD)
    assert out.status == "delivered", out
    (failed,) = _events(ws, node="dependencies", event="failed")
    assert failed["kind"] in ("manifest", "resolution")
    (fix_call,) = models["fixer"].log.of(role="fixer", task="T1")
    assert words in prompt_text(fix_call.messages), prompt_text(fix_call.messages)[-2000:]
    assert "pyproject.toml" in prompt_text(fix_call.messages)
    # The failed step left evidence like any failed validation.
    first = json.loads((ws / ".oldnew" / "evidence" / "T1-01.json").read_text())
    assert [c["name"] for c in first["checks"]] == ["dependencies"]
    assert first["checks"][0]["status"] == "failed"


@pytest.mark.usefixtures("smoke_gates")
def test_a_package_with_only_a_source_build_asks_a_person(
    tmp_path: Path, index: LocalIndex
) -> None:
    ws, out, models = _run(tmp_path, index, PLAIN + manifest('"srconly>=1",'))
    assert out.status == "waiting"
    (q,) = out.questions
    assert q["kind"] == "dependency_blocked" and "publish no wheel" in q["title"]
    assert "srconly" in q["detail"] and "wheels only" in q["detail"]
    assert [o["key"] for o in q["options"]] == ["retry", "build", "instead", "skip"]
    # 'instead': the coder is told to use another package, and does without.
    models["coder"].fn = _recode(models, PLAIN + manifest())
    out = asyncio.run(resume_run(ws, answers={q["id"]: "instead"}, models=models))
    assert out.status == "delivered", out
    second = models["coder"].log.of(role="coder", task="T1")[-1]
    assert "Do not use srconly" in prompt_text(second.messages)


def _recode(models: Any, reply: str) -> Any:
    original = models["coder"].fn

    def fn(messages: Any, info: Any) -> Any:
        if info.role == "coder" and info.task == "T1":
            return reply
        return original(messages, info)

    return fn


@pytest.mark.usefixtures("smoke_gates")
def test_an_unreachable_index_names_every_package_and_what_to_do(
    tmp_path: Path, index: LocalIndex
) -> None:
    code = APP + manifest('"numfmt>=2",', '"textkit>=1",')
    ws, out, models = _run(
        tmp_path, LocalIndex(tmp_path / "unused"), code, package_index="http://127.0.0.1:9/simple"
    )
    assert out.status == "waiting"
    (q,) = out.questions
    assert q["kind"] == "dependency_blocked" and "does not answer" in q["title"]
    assert "numfmt" in q["detail"] and "textkit" in q["detail"]
    assert "http://127.0.0.1:9/simple" in q["detail"] and "--package-index" in q["detail"]
    assert q["packages"] == ["python:numfmt", "python:textkit"]
    # Retry goes straight back to the dependencies step: no coding call is spent on it.
    calls = len(models["coder"].log.of(role="coder"))
    out = asyncio.run(resume_run(ws, answers={q["id"]: "retry"}, models=models))
    assert out.status == "waiting"
    assert len(models["coder"].log.of(role="coder")) == calls


@pytest.mark.usefixtures("smoke_gates")
def test_ask_lists_each_new_package_and_approve_installs_it(
    tmp_path: Path, index: LocalIndex
) -> None:
    ws, out, models = _run(tmp_path, index, APP + GOOD, deps="ask")
    assert out.status == "waiting"
    (q,) = out.questions
    assert q["kind"] == "dependency" and q["packages"] == ["python:numfmt"]
    assert "numfmt >=2 -> 2.0 (python), wanted by Task T1" in q["detail"]
    assert "formats the numbers" in q["detail"]
    assert [o["key"] for o in q["options"]] == ["approve", "without"]
    out = asyncio.run(resume_run(ws, answers={q["id"]: "approve"}, models=models))
    assert out.status == "delivered", out
    report = json.loads((ws / ".oldnew" / "report.json").read_text())
    numfmt = next(d for d in report["dependencies"] if d["name"] == "numfmt")
    assert numfmt["approved"] == "approved by a person"


@pytest.mark.usefixtures("smoke_gates")
def test_ask_reject_has_the_coder_do_without(tmp_path: Path, index: LocalIndex) -> None:
    ws, out, models = _run(tmp_path, index, APP + GOOD, deps="ask")
    (q,) = out.questions
    models["coder"].fn = _recode(models, PLAIN + manifest())
    out = asyncio.run(resume_run(ws, answers={q["id"]: "without"}, models=models))
    assert out.status == "delivered", out
    second = models["coder"].log.of(role="coder", task="T1")[-1]
    assert "A person rejected numfmt: do the task without them" in prompt_text(second.messages)
    assert "PACKAGES A PERSON REJECTED" in prompt_text(second.messages)
    ledger = json.loads((ws / ".oldnew" / "dependencies.json").read_text())
    assert ledger["python:numfmt"]["decision"] == "rejected"


@pytest.mark.usefixtures("smoke_gates")
def test_ask_answered_with_another_package_uses_it(tmp_path: Path, index: LocalIndex) -> None:
    ws, out, models = _run(tmp_path, index, PLAIN + manifest('"loudtext",'), deps="ask")
    (q,) = out.questions
    assert q["packages"] == ["python:loudtext"]
    models["coder"].fn = _recode(models, APP + GOOD)
    out = asyncio.run(resume_run(ws, answers={q["id"]: "numfmt"}, models=models))
    assert out.status == "delivered", out
    second = models["coder"].log.of(role="coder", task="T1")[-1]
    assert "A person chose numfmt instead of loudtext" in prompt_text(second.messages)
    ledger = json.loads((ws / ".oldnew" / "dependencies.json").read_text())
    assert ledger["python:loudtext"]["decision"] == "rejected"
    assert ledger["python:numfmt"]["decision"] == "person"


@pytest.mark.usefixtures("smoke_gates")
def test_a_package_the_scope_names_needs_no_approval(tmp_path: Path, index: LocalIndex) -> None:
    scope = {**SCOPE, "packages": ["numfmt"]}
    models = planned_run(scope, PLAN, code={"T1": APP + GOOD})
    ws = tmp_path / "ws"
    ctx = _context(index, deps="ask")
    out = asyncio.run(start_run(_scope(tmp_path), ws, context=ctx, models=models))
    assert out.status == "delivered", out
    (call,) = models["coder"].log.of(role="coder", task="T1")
    assert "PACKAGES THE SCOPE NAMES" in prompt_text(call.messages) and "- numfmt" in prompt_text(
        call.messages
    )
    ledger = json.loads((ws / ".oldnew" / "dependencies.json").read_text())
    assert ledger["python:numfmt"]["decision"] == "scope"


@pytest.mark.usefixtures("smoke_gates")
def test_deps_off_sends_a_declared_package_back_to_the_coder(
    tmp_path: Path, index: LocalIndex
) -> None:
    ws, out, models = _run(tmp_path, index, APP + GOOD, fix=PLAIN + manifest(), deps="off")
    assert out.status == "delivered", out
    (fix_call,) = models["fixer"].log.of(role="fixer", task="T1")
    assert "numfmt (python): new third-party packages are off for this run" in prompt_text(
        fix_call.messages
    )
    (call,) = models["coder"].log.of(role="coder", task="T1")
    assert "Use only the standard library" in prompt_text(call.messages)


@pytest.mark.usefixtures("smoke_gates")
def test_an_undeclared_import_goes_to_the_fixer_not_to_a_person(
    tmp_path: Path, index: LocalIndex
) -> None:
    # numfmt is on the index but not declared: the project's environment lacks it.
    ws, out, models = _run(tmp_path, index, APP, fix=GOOD)
    assert out.status == "delivered", out
    (fix_call,) = models["fixer"].log.of(role="fixer", task="T1")
    assert "numfmt" in prompt_text(fix_call.messages) and "imports" in prompt_text(
        fix_call.messages
    )


@pytest.mark.usefixtures("smoke_gates")
def test_install_caps_ask_a_person(tmp_path: Path, index: LocalIndex) -> None:
    ws, out, _ = _run(tmp_path, index, APP + GOOD, max_packages=1)
    assert out.status == "waiting"
    (q,) = out.questions
    assert q["kind"] == "dependency_blocked" and "more packages than the run allows" in q["title"]
    assert "--max-packages" in q["detail"]


@pytest.mark.usefixtures("smoke_gates")
def test_a_hand_written_lock_that_does_not_match_is_locked_again(
    tmp_path: Path, index: LocalIndex
) -> None:
    stale = 'FILE: uv.lock\n```toml\nversion = 1\nrequires-python = ">=3.11"\n```\n'
    ws, out, _ = _run(tmp_path, index, APP + GOOD + stale)
    assert out.status == "delivered", out
    assert 'name = "numfmt"' in (ws / "uv.lock").read_text()


@pytest.mark.usefixtures("smoke_gates")
def test_a_mocked_dependency_is_a_known_limitation(tmp_path: Path, index: LocalIndex) -> None:
    refused = PLAIN.replace(
        "    return f'{n}!'", "    raise ConnectionRefusedError(111, 'Connection refused')"
    )
    replies = iter([refused, PLAIN + manifest()])
    models = planned_run(SCOPE, PLAN, code={"T1": lambda m, i: next(replies)})
    ws = tmp_path / "ws"
    out = asyncio.run(start_run(_scope(tmp_path), ws, context=_context(index), models=models))
    (q,) = out.questions
    assert q["kind"] == "external_service" and "mock" in [o["key"] for o in q["options"]]
    out = asyncio.run(resume_run(ws, answers={q["id"]: "mock"}, models=models))
    assert out.status == "delivered_with_limitations", out
    report = json.loads((ws / ".oldnew" / "report.json").read_text())
    (lim,) = report["limitations"]
    assert "stand-in" in lim["reason"] and "unavailable service" in lim["reason"]
    md = (ws / ".oldnew" / "report.md").read_text()
    assert "## Known limitations" in md and "stand-in" in md and "(delivered, on main)" in md


@pytest.mark.usefixtures("smoke_gates")
def test_a_project_cannot_configure_the_resolver(tmp_path: Path, index: LocalIndex) -> None:
    # [tool.uv] settings and sources of the project's own are refused: no index, cache or
    # local path of its choosing is used, and the fixer is told why.
    hostile = (
        '\n[tool.uv]\nindex-url = "http://127.0.0.1:1/simple"\n'
        f'cache-dir = "{tmp_path / "evil-cache"}"\n'
        '[tool.uv.sources]\nnumfmt = { path = "/etc" }\n'
    )
    code = APP + manifest('"numfmt>=2",', extra=hostile)
    ws, out, models = _run(tmp_path, index, code, fix=GOOD)
    assert out.status == "delivered", out
    (fix_call,) = models["fixer"].log.of(role="fixer", task="T1")
    assert "has a [tool.uv] table" in prompt_text(fix_call.messages)
    lock = (ws / "uv.lock").read_text()
    assert "127.0.0.1:1" not in lock and '"/etc"' not in lock
    assert not (tmp_path / "evil-cache").exists()


@pytest.mark.usefixtures("smoke_gates")
def test_an_install_script_in_package_json_goes_back_to_the_fixer(
    tmp_path: Path, index: LocalIndex
) -> None:
    package = (
        'FILE: package.json\n```json\n{"name": "shouty", "version": "1.0.0", '
        '"scripts": {"postinstall": "node fetch.js"}}\n```\n'
    )
    ws, out, models = _run(tmp_path, index, PLAIN + package, fix="DELETE: package.json\n")
    assert out.status == "delivered", out
    (fix_call,) = models["fixer"].log.of(role="fixer", task="T1")
    text = prompt_text(fix_call.messages)
    assert "package.json has install scripts (postinstall)" in text and "--ignore-scripts" in text


@pytest.mark.usefixtures("smoke_gates")
def test_an_unreachable_npm_registry_asks_a_person(tmp_path: Path, index: LocalIndex) -> None:
    package = (
        'FILE: package.json\n```json\n{"name": "shouty", "version": "1.0.0", '
        '"dependencies": {"left-pad": "^1.3.0"}}\n```\n'
    )
    ws, out, _ = _run(tmp_path, index, PLAIN + package, npm_registry="http://127.0.0.1:9/")
    assert out.status == "waiting"
    (q,) = out.questions
    assert q["kind"] == "dependency_blocked" and "left-pad" in q["detail"]
    assert "http://127.0.0.1:9/" in q["detail"] and "--npm-registry" in q["detail"]


@pytest.mark.usefixtures("smoke_gates")
def test_an_install_that_runs_out_of_time_asks_a_person(tmp_path: Path, index: LocalIndex) -> None:
    ws, out, _ = _run(tmp_path, index, APP + GOOD, install_timeout=0.001)
    assert out.status == "waiting"
    (q,) = out.questions
    assert q["kind"] == "dependency_blocked" and "could not install" in q["title"]
    assert "--install-timeout" in q["detail"]
    # Nothing the task wrote is lost: its worktree keeps its files for the retry.
    tree = ws / ".oldnew" / "worktrees" / "T1"
    assert (tree / "app.py").is_file() and (tree / "pyproject.toml").is_file()


def test_a_full_disk_is_a_persons_to_fix_and_says_where() -> None:
    from oldnew.deps.python import failure
    from oldnew.deps.settings import DepSettings

    words = "error: Failed to write to the cache: No space left on device (os error 28)"
    error = failure(words, "", DepSettings(cache=Path("/var/cache/x")))
    assert error.kind == "install" and not error.for_coder
    assert "/var/cache/x" in error.message and "No space left" in error.message


@pytest.mark.usefixtures("smoke_gates")
def test_a_package_json_that_is_not_json_goes_back_to_the_fixer(
    tmp_path: Path, index: LocalIndex
) -> None:
    broken = 'FILE: package.json\n```json\n{"name": "shouty", "dependencies": {\n```\n'
    ws, out, models = _run(tmp_path, index, PLAIN + broken, fix="DELETE: package.json\n")
    assert out.status == "delivered", out
    (fix_call,) = models["fixer"].log.of(role="fixer", task="T1")
    assert "package.json is not valid JSON" in prompt_text(fix_call.messages)
    assert "package.json:0: [dependencies manifest]" in prompt_text(fix_call.messages)


@pytest.mark.usefixtures("smoke_gates")
def test_parallel_tasks_that_each_add_a_package_merge_and_lock_again(
    tmp_path: Path, index: LocalIndex
) -> None:
    tasks = [
        {"id": "T1", "title": "base", "description": "pyproject", "requirement_ids": ["F1"]},
        *[
            {
                "id": tid,
                "title": f"feature {tid}",
                "description": f"{name}.py",
                "depends_on": ["T1"],
                "requirement_ids": ["F1"],
            }
            for tid, name in (("T2", "shout"), ("T3", "loud"))
        ],
    ]
    base = manifest() + PLAIN
    shout = manifest('"numfmt>=2",') + (
        "FILE: shout.py\n```python\nfrom numfmt import fmt\n\nX = fmt(1)\n```\n"
    )
    loud = manifest('"loudtext",') + "FILE: loud.py\n```python\nimport loudtext\n\nY = 1\n```\n"
    models = planned_run(SCOPE, {"tasks": tasks}, code={"T1": base, "T2": shout, "T3": loud})
    ws = tmp_path / "ws"
    ctx = _context(index, max_agents=2)
    out = asyncio.run(start_run(_scope(tmp_path), ws, context=ctx, models=models))
    assert out.status == "delivered", out
    text = (ws / "pyproject.toml").read_text()
    assert '"numfmt>=2",' in text and '"loudtext",' in text
    lock = (ws / "uv.lock").read_text()
    assert 'name = "numfmt"' in lock and 'name = "loudtext"' in lock
    # main's lock matches its manifest: nothing would be resolved anew.
    from oldnew.deps import python
    from oldnew.deps.settings import DepSettings

    python.check_lock(ws, DepSettings(cache=tmp_path / "c", index=index.url, timeout=60))


@pytest.mark.usefixtures("smoke_gates")
def test_a_stand_in_never_hides_a_critical_task_skipped_later(
    tmp_path: Path, index: LocalIndex
) -> None:
    refused = PLAIN.replace(
        "    return f'{n}!'", "    raise ConnectionRefusedError(111, 'Connection refused')"
    )
    models = planned_run(SCOPE, PLAN, code={"T1": refused})
    ws = tmp_path / "ws"
    out = asyncio.run(start_run(_scope(tmp_path), ws, context=_context(index), models=models))
    (q,) = out.questions
    out = asyncio.run(resume_run(ws, answers={q["id"]: "mock"}, models=models))
    (q,) = out.questions  # the mocked attempt fails the same way
    out = asyncio.run(resume_run(ws, answers={q["id"]: "skip"}, models=models))
    assert out.status == "blocked", out
    report = json.loads((ws / ".oldnew" / "report.json").read_text())
    assert [b["task"] for b in report["blocked"]] == ["T1"] and report["limitations"] == []


@pytest.mark.usefixtures("smoke_gates")
def test_an_index_down_when_merging_asks_a_person_and_spends_no_fix_round(
    tmp_path: Path, index: LocalIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    from oldnew.deps.errors import DependencyError
    from oldnew.nodes import checks

    real = checks.relock_merged

    def down(*args: Any) -> bool:
        raise DependencyError("unreachable", "the package index does not answer (test)")

    monkeypatch.setattr(checks, "relock_merged", down)
    ws, out, models = _run(tmp_path, index, APP + GOOD)
    assert out.status == "waiting"
    (q,) = out.questions
    assert q["kind"] == "dependency_blocked" and "does not answer" in q["title"]
    assert models["fixer"].log.of(role="fixer") == []
    monkeypatch.setattr(checks, "relock_merged", real)
    out = asyncio.run(resume_run(ws, answers={q["id"]: "retry"}, models=models))
    assert out.status == "delivered", out
    assert models["fixer"].log.of(role="fixer") == []


def test_the_policy_reviews_what_each_manifest_can_bring_in(tmp_path: Path) -> None:
    from oldnew.deps.errors import DependencyError
    from oldnew.deps.manifest import declared
    from oldnew.deps.review import review

    def read(name: str, text: str) -> list[Any]:
        tree = tmp_path / str(len(list(tmp_path.iterdir())))
        tree.mkdir()
        (tree / name).write_text(text)
        return declared(tree)

    uv = '[project]\nname = "x"\nversion = "1"\n[tool.uv]\ndev-dependencies = ["sneaky"]\n'
    for name, text, words in (
        ("pyproject.toml", uv, "[tool.uv]"),
        ("package.json", '{"dependencies": {"pad": "npm:sneaky@^1"}}', "npm: aliases"),
        ("package.json", '{"overrides": {"pad": "1.0.0"}}', "overrides"),
        ("package.json", '{"workspaces": ["a"]}', "workspaces"),
    ):
        with pytest.raises(DependencyError) as info:
            read(name, text)
        assert info.value.kind == "manifest" and words in info.value.message
    deps = read(
        "package.json",
        '{"optionalDependencies": {"opt": "^1"}, "devDependencies": {"@types/node": "^20"}}',
    )
    verdict = review(deps, mode="ask", named=set(), on_main=set(), decided={})
    assert [d.name for d in verdict.ask] == ["opt"]  # optional ones are reviewed too
    assert [(d.name, why) for d, why in verdict.allowed] == [("@types/node", "tool")]
    stubs = read(
        "pyproject.toml",
        '[project]\nname = "x"\nversion = "1"\n[project.optional-dependencies]\n'
        'x = ["types-evil"]\n[dependency-groups]\ndev = ["pytest", "types-requests"]\n',
    )
    off = review(stubs, mode="off", named=set(), on_main=set(), decided={})
    assert [d.name for d, _ in off.allowed] == ["pytest"]  # what oldnew lends anyway
    assert sorted(d.name for d, _ in off.refused) == ["types-evil", "types-requests"]
    ask = review(stubs, mode="ask", named=set(), on_main=set(), decided={})
    assert [d.name for d in ask.ask] == ["types-evil"]  # stubs only in a development group
