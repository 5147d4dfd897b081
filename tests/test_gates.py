"""Quality gates: profiles, not-run semantics, TypeScript detection, mutants, feedback, the
report, and ``oldnew verify`` on the delivered example.
"""

from __future__ import annotations

import ast
import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import EXAMPLE
from typer.testing import CliRunner

from oldnew.bench import gates as bench
from oldnew.cli import app
from oldnew.context import Context
from oldnew.errors import ConfigurationError
from oldnew.gates import PROFILES, Check, ValidationResult, validate_tree
from oldnew.gates.audit import declared_dependencies
from oldnew.gates.common import py_tool
from oldnew.gates.js import detect_toolchains
from oldnew.gates.model import not_run
from oldnew.gates.mutation import choose, find_sites
from oldnew.gates.profiles import resolve_profile
from oldnew.gates.pytests import SuiteReport, read_report, suite_command
from oldnew.nodes.checks import (
    _report_sandbox,
    environment_blockers,
    fixer_diagnostics,
    gates_question,
)
from oldnew.report import render_markdown
from oldnew.runs import resume_run, start_run
from oldnew.sandbox import oldnew_env
from oldnew.sandbox.files import UnsafeOutput, read_output, read_project_text
from oldnew.workspace import Workspace

CALC = {
    "calc.py": (
        "def add(a: int, b: int) -> int:\n"
        '    """Return a + b."""\n'
        "    return a + b\n\n\n"
        "def is_even(n: int) -> bool:\n"
        '    """Return whether n is even."""\n'
        "    return n % 2 == 0\n"
    ),
    "tests/test_calc.py": (
        "from calc import add, is_even\n\n\n"
        "def test_add():\n    assert add(2, 3) == 5\n\n\n"
        "def test_is_even():\n    assert is_even(4)\n    assert not is_even(3)\n"
    ),
}


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def _check(name: str, status: str, required: bool = True, summary: str = "") -> Check:
    return Check(name, status, [], 0, 0.0, summary or status, required=required)  # type: ignore[arg-type]


# -- profiles and configuration ---------------------------------------------------------------


def test_profiles_choose_gates_and_thresholds(monkeypatch: pytest.MonkeyPatch) -> None:
    default, strict, fast = PROFILES["default"], PROFILES["strict"], PROFILES["fast"]
    assert default.coverage_min == 80 and strict.coverage_min == 90
    assert "ruff-format" in strict.gates and "ruff-format" not in default.gates
    assert not default.mypy_strict and strict.mypy_strict
    assert "mutation" not in fast.gates and "mypy" not in fast.gates
    assert set(fast.gates) < set(default.gates) < set(strict.gates)
    tuned = resolve_profile("strict", coverage_min="85", complexity_max=12)
    assert (tuned.coverage_min, tuned.complexity_max) == (85.0, 12)
    with pytest.raises(ConfigurationError, match="unknown quality profile 'lax'"):
        resolve_profile("lax")
    with pytest.raises(ConfigurationError, match="not a number"):
        resolve_profile("default", coverage_min="most")
    monkeypatch.setenv("OLDNEW_QUALITY", "fast")
    monkeypatch.setenv("OLDNEW_COVERAGE_MIN", "70")
    ctx = Context()
    assert ctx.quality == "fast"
    assert resolve_profile(ctx.quality, coverage_min=ctx.coverage_min).coverage_min == 70


def test_not_run_never_counts_as_passed() -> None:
    assert not ValidationResult().passed
    ok = [_check("syntax", "passed"), _check("audit", "not_run", required=False)]
    assert ValidationResult(checks=ok).passed
    assert not ValidationResult(checks=[*ok, _check("mypy", "not_run")]).passed
    assert not ValidationResult(checks=[*ok, _check("audit2", "failed", required=False)]).passed
    blocked = ValidationResult(checks=[*ok, not_run("tsc", "node_modules/.bin/tsc is missing")])
    assert [c.name for c in blocked.blocking()] == ["tsc"]


def test_audit_is_not_run_unless_its_service_answers(tmp_path: Path) -> None:
    # The test suite's network guard makes the service unreachable, as offline machines are.
    tree = _write(tmp_path / "p", {**CALC, "requirements.txt": "requests==2.31.0\n"})
    result = validate_tree(tree, timeout=60, profile=_only("audit"))
    (audit,) = result.checks
    assert audit.status == "not_run" and not audit.required
    assert "not reachable" in audit.summary and "No known vulnerabilities" in audit.summary
    assert result.passed  # optional: it blocks nothing, and it claims nothing
    (tree / "requirements.txt").unlink()
    (tree / "pyproject.toml").write_text('[project]\nname = "p"\ndependencies = ["rich>=13"]\n')
    assert declared_dependencies(tree) == ["rich>=13"]


def _only(*gates: str) -> object:
    import dataclasses

    return dataclasses.replace(PROFILES["default"], gates=gates)


# -- toolchains -------------------------------------------------------------------------------


def test_toolchain_detection(tmp_path: Path) -> None:
    assert detect_toolchains(_write(tmp_path / "py", CALC)) == ["python"]
    ts = _write(tmp_path / "ts", {"package.json": "{}", "src/a.ts": "export const a = 1;\n"})
    assert detect_toolchains(ts) == ["typescript"]
    both = _write(tmp_path / "both", {**CALC, "tsconfig.json": "{}"})
    assert detect_toolchains(both) == ["python", "typescript"]
    assert detect_toolchains(_write(tmp_path / "empty", {"README.md": "hi"})) == ["python"]


TS_PROJECT = {
    "package.json": json.dumps(
        {
            "name": "tiny",
            "private": True,
            "type": "module",
            "devDependencies": {
                "typescript": "^5.4.0",
                "vitest": "^2.1.0",
                "@vitest/coverage-v8": "^2.1.0",
                "eslint": "^9.0.0",
                "@eslint/js": "^9.0.0",
            },
        }
    ),
    "tsconfig.json": json.dumps(
        {
            "compilerOptions": {
                "strict": True,
                "module": "ESNext",
                "moduleResolution": "Bundler",
                "target": "ES2022",
                "noEmit": True,
                "skipLibCheck": True,
            },
            "include": ["src"],
        }
    ),
    "eslint.config.js": (
        'import js from "@eslint/js";\n'
        'export default [js.configs.recommended, { ignores: ["**/*.ts"] }];\n'
    ),
    "src/math.ts": (
        "export function clamp(value: number, low: number, high: number): number {\n"
        "  if (value < low) return low;\n"
        "  if (value > high) return high;\n"
        "  return value;\n"
        "}\n"
    ),
    "src/math.test.ts": (
        'import { expect, test } from "vitest";\n'
        'import { clamp } from "./math";\n\n'
        'test("clamp", () => {\n'
        "  expect(clamp(5, 0, 10)).toBe(5);\n"
        "  expect(clamp(-1, 0, 10)).toBe(0);\n"
        "  expect(clamp(11, 0, 10)).toBe(10);\n"
        "});\n"
    ),
}


def test_typescript_gates_say_why_they_did_not_run(tmp_path: Path) -> None:
    tree = _write(tmp_path / "ts", TS_PROJECT)
    result = validate_tree(tree, timeout=60)
    status = {c.name: c.status for c in result.checks}
    assert result.toolchains == ["typescript"]
    assert "pytest" not in status and "syntax" not in status
    assert status["secrets"] == "passed" and status["complexity"] == "passed"
    for gate in ("tsc", "eslint", "vitest"):
        check = result.check(gate)
        assert check is not None and check.status == "not_run" and check.required
        assert f"node_modules/.bin/{gate} is not installed" in check.summary
    assert result.check("js-coverage").status == "not_run"  # type: ignore[union-attr]
    npm_audit = result.check("npm-audit")
    assert npm_audit is not None and not npm_audit.required
    assert not result.passed
    assert [c.name for c in environment_blockers(result)] == ["tsc", "eslint", "vitest"]


@pytest.fixture(scope="module")
def node_modules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny TS project's tools, installed once from the npm registry (about 10 s)."""
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed")
    root = _write(tmp_path_factory.mktemp("npm"), {"package.json": TS_PROJECT["package.json"]})
    proc = subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0:
        pytest.skip(f"npm install failed (registry unreachable?): {proc.stderr[-500:]}")
    return root / "node_modules"


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_typescript_project_through_tsc_eslint_vitest(tmp_path: Path, node_modules: Path) -> None:
    tree = _write(tmp_path / "ts", TS_PROJECT)
    (tree / "node_modules").symlink_to(node_modules)
    result = validate_tree(tree, timeout=120)
    status = {c.name: c.status for c in result.checks}
    shown = [(c.name, c.status, c.summary[:200]) for c in result.checks]
    assert status["tsc"] == status["eslint"] == status["vitest"] == "passed", shown
    assert status["js-coverage"] == "passed", shown
    assert result.check("js-coverage").metrics["percent"] == 100  # type: ignore[union-attr]
    assert status["npm-audit"] == "not_run"  # no package-lock.json in the copy
    # A type error and a failing test, each caught by its own gate with file and line.
    (tree / "src" / "math.ts").write_text(
        TS_PROJECT["src/math.ts"].replace("return value;", 'return "value";')
    )
    (tree / "src" / "math.test.ts").write_text(
        TS_PROJECT["src/math.test.ts"].replace("toBe(10)", "toBe(9)")
    )
    broken = validate_tree(tree, timeout=120)
    tsc = [d for d in broken.diagnostics if d.tool == "tsc"]
    vitest = [d for d in broken.diagnostics if d.tool == "vitest"]
    assert tsc and tsc[0].file == "src/math.ts" and tsc[0].line == 4 and tsc[0].rule == "TS2322"
    assert vitest and "clamp" in vitest[0].message and vitest[0].file == "src/math.test.ts"
    assert not broken.passed


# -- mutants ----------------------------------------------------------------------------------


def test_mutants_are_valid_code_on_lines_the_tests_run(tmp_path: Path) -> None:
    tree = _write(tmp_path / "p", CALC)
    sites = find_sites(tree, {"calc.py": {3, 8}})
    assert {m.kind for m in sites} == {"arith", "compare", "return"}
    assert all(m.file == "calc.py" for m in sites)  # never the tests
    for mutant in sites:
        changed = mutant.apply((tree / mutant.file).read_text())
        ast.parse(changed)
        assert changed != (tree / mutant.file).read_text()
    assert find_sites(tree, {"calc.py": set()}) == []
    assert choose(sites, 1) == choose(sites, 1) and len(choose(sites, 5)) == len(sites)


def test_good_tests_kill_mutants_and_weak_tests_do_not(tmp_path: Path) -> None:
    tree = _write(tmp_path / "good", CALC)
    good = validate_tree(
        tree, timeout=60, profile=_only("syntax", "imports", "pytest", "coverage", "mutation")
    )
    mutation = good.check("mutation")
    assert mutation is not None and mutation.status == "passed", good.checks
    assert mutation.metrics["killed"] == mutation.metrics["mutants"] >= 2
    weak = _write(
        tmp_path / "weak",
        {
            **CALC,
            "tests/test_calc.py": "from calc import add\n\n\ndef test_add():\n    add(1, 2)\n",
        },
    )
    bad = validate_tree(
        weak, timeout=60, profile=_only("syntax", "imports", "pytest", "coverage", "mutation")
    )
    assert bad.check("mutation").status == "failed"  # type: ignore[union-attr]
    diags = [d for d in bad.diagnostics if d.tool == "mutation"]
    assert {(d.file, d.line) for d in diags} == {("calc.py", 3)}
    messages = " ".join(d.message for d in diags)
    assert "the tests still pass when `a + b` changed to `(a - b)`" in messages
    assert "`return a + b` changed to `return None`" in messages


# -- feedback for the fixer and questions for a person ----------------------------------------


def test_fixer_diagnostics_are_parsed_and_ordered_by_gate(tmp_path: Path) -> None:
    broken = {
        **CALC,
        "calc.py": "import os\n" + CALC["calc.py"].replace("return a + b", "return a - b"),
    }
    tree = _write(tmp_path / "p", broken)
    result = validate_tree(tree, timeout=60)
    lines = fixer_diagnostics(result)
    assert lines[0] == "calc.py:1: [ruff F401] `os` imported but unused"
    failing = next(x for x in lines if "[pytest failure]" in x)
    assert failing.startswith("tests/test_calc.py:5:") and "assert -1 == 5" in failing
    assert result.check("mutation").status == "not_run"  # type: ignore[union-attr]
    assert "skipped: pytest did not pass" in result.check("coverage").summary  # type: ignore[union-attr]


def test_syntax_errors_stop_the_gates_that_cannot_pass(tmp_path: Path) -> None:
    tree = _write(tmp_path / "p", {**CALC, "calc.py": "def add(a, b)\n    return a + b\n"})
    result = validate_tree(tree, timeout=60)
    status = {c.name: c.status for c in result.checks}
    assert status["syntax"] == "failed"
    for gate in ("imports", "ruff", "mypy", "pytest", "coverage", "mutation", "bandit"):
        assert status[gate] == "not_run", gate
    assert status["secrets"] == "passed"  # independent of parsing
    assert [d.render() for d in result.diagnostics] == ["calc.py:1: [syntax E999] expected ':'"]
    assert environment_blockers(result) == []  # a code problem: the fixer's, not a person's


def test_gates_that_cannot_run_go_to_a_person() -> None:
    result = ValidationResult(
        checks=[
            _check("syntax", "passed"),
            not_run("vitest", "node_modules/.bin/vitest is not installed"),
        ]
    )
    blockers = environment_blockers(result)
    state = {"task": {"id": "T4", "title": "ui"}, "questions_asked": 1}
    question = gates_question(state, blockers, ".oldnew/evidence/T4-01.json")  # type: ignore[arg-type]
    assert question.id == "T4-q2" and question.kind == "configuration"
    assert "vitest: node_modules/.bin/vitest is not installed" in question.detail
    assert [o.key for o in question.options] == ["retry", "skip"]


def test_missing_sandbox_layers_become_an_event(tmp_path: Path) -> None:
    ws = Workspace.create(tmp_path / "ws", "run-1", {})
    result = ValidationResult(
        checks=[_check("syntax", "passed")],
        sandbox=[
            {"name": "network", "active": False, "detail": "open: bubblewrap is not installed"},
            {"name": "limits", "active": True, "detail": "cpu 60s"},
        ],
    )
    asyncio.run(_report_sandbox(ws, "T1", result))
    (event,) = [e for e in ws.events() if e["event"] == "sandbox_degraded"]
    assert event["task"] == "T1"
    assert event["layers"] == ["network: open: bubblewrap is not installed"]


def test_report_shows_profile_gates_and_missing_layers() -> None:
    final = ValidationResult(
        checks=[
            _check("pytest", "passed", summary="3 passed"),
            not_run("audit", "service unreachable", required=False),
        ],
        quality=PROFILES["default"].to_dict(),
        sandbox=[{"name": "network", "active": False, "detail": "open: no bwrap"}],
    ).to_dict() | {"evidence": ".oldnew/evidence/final.json"}
    report = {
        "project": "p",
        "status": "delivered",
        "run_id": "r",
        "workspace": "/w",
        "head": "abc",
        "final_validation": final,
        "quality": final["quality"],
        "delivered": [],
        "blocked": [],
        "decisions": [],
        "resume": "-",
        "sandbox_degraded": ["network: open: no bwrap"],
    }
    text = render_markdown(report)
    assert "Profile **default**: coverage at least 80.0%" in text
    assert "| pytest | **passed** | 3 passed |" in text
    assert "| audit | **not run (optional)** | service unreachable |" in text
    assert "oldnew verify --workspace /w" in text
    assert "sandbox layer missing: network: open: no bwrap" in text


# -- the delivered example: evidence, report, verify ------------------------------------------


@pytest.fixture(scope="module")
def delivered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled example, run to delivery once for this module."""
    ws = tmp_path_factory.mktemp("example") / "ws"
    model = f"scripted:{EXAMPLE / 'transcript.toml'}"
    out = asyncio.run(start_run(EXAMPLE / "scope.md", ws, context={"model": model}))
    assert out.status == "waiting"
    out = asyncio.run(resume_run(ws, answers={"T3-q1": "1"}))
    assert out.status == "delivered"
    return ws


@pytest.mark.timeout(300)
def test_example_passes_every_gate_with_evidence(delivered: Path) -> None:
    report = json.loads((delivered / ".oldnew" / "report.json").read_text())
    final = report["final_validation"]
    assert final["passed"] and report["quality"]["name"] == "default"
    status = {c["name"]: c["status"] for c in final["checks"]}
    assert status == {
        "links": "passed",
        "syntax": "passed",
        "imports": "passed",
        "secrets": "passed",
        "ruff": "passed",
        "complexity": "passed",
        "bandit": "passed",
        "mypy": "passed",
        "pytest": "passed",
        "coverage": "passed",
        "mutation": "passed",
        "project-tests": "not_run",  # the example declares no test command of its own
        "audit": "not_run",
        "acceptance": "passed",  # the tester's suite, on the commit handed over
    }
    assert all(layer["active"] for layer in final["sandbox"]) or not shutil.which("bwrap")
    for check in final["checks"]:
        if check["name"] in ("ruff", "mypy", "bandit", "pytest", "secrets", "complexity"):
            assert check["command"] and check["exit_code"] is not None
            assert check["duration_s"] > 0 and check["version"].split()[0]
    for item in report["delivered"]:
        evidence = json.loads((delivered / item["evidence"]).read_text())
        assert evidence["passed"] and evidence["task"] == item["task"]
    assert [g["gate"] for g in report["gates"]] == list(status)
    # Delivery added the hand-over (README, .gitignore) after T3: main's files are not those
    # T3 validated, so the final validation ran anew on main's head, not reused.
    assert final["reused_from"] == ""
    recorded = json.loads((delivered / final["evidence"]).read_text())
    assert recorded["head"] == report["head"]
    last = json.loads((delivered / report["delivered"][-1]["evidence"]).read_text())
    assert last["fingerprint"] != final["fingerprint"]
    assert (delivered / "README.md").is_file() and (delivered / ".gitignore").is_file()


@pytest.mark.timeout(300)
def test_bench_measures_gates_and_sandbox_overhead(
    delivered: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert bench.main([str(delivered), "--repeat", "1", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    over = data["overhead"]
    assert over["bare_ms"] > 0 and over["full_ms"] > 0 and "full_overhead_ms" in over
    validation = data["validation"]
    assert validation["passed"] and validation["wall_s"] > 0
    assert validation["gates"]["mypy"]["status"] == "passed"
    assert validation["gates"]["audit"]["status"] == "not_run"


@pytest.mark.timeout(300)
def test_verify_confirms_the_report_and_catches_a_changed_main(delivered: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["verify", "-w", str(delivered)])
    assert res.exit_code == 0, res.output
    assert "the report holds" in res.output and "T2: commit" in res.output
    (again,) = [line for line in res.output.splitlines() if "passed again" in line]
    assert again.endswith("mutation, acceptance passed again")  # the tester's suite re-run
    # Someone weakens a test and commits it behind oldnew's back.
    test_file = delivered / "tests" / "test_model.py"
    test_file.write_text(test_file.read_text().replace("== 2", "== 3", 1))
    git = ["git", "-c", "user.name=x", "-c", "user.email=x@x", "commit", "-qam", "tweak"]
    subprocess.run(git, cwd=delivered, check=True)
    res = runner.invoke(app, ["verify", "-w", str(delivered), "--json"])
    assert res.exit_code == 6, res.output
    data = json.loads(res.output)
    assert not data["matches"]
    joined = "\n".join(data["differences"])
    assert "main moved since the report" in joined
    assert "differ from the files the evidence was made for" in joined
    assert "pytest: the evidence says passed" in joined
    res = runner.invoke(app, ["verify", "-w", str(delivered.parent / "nowhere")])
    assert res.exit_code == 2


# -- what the host reads back from a sandbox run ------------------------------------------


def test_sandbox_output_is_read_only_from_plain_bounded_files(tmp_path: Path) -> None:
    """Links, FIFOs, devices, hard links and oversized files are refused, never followed."""
    home = tmp_path / "home"
    (home / "sub").mkdir(parents=True)
    (home / "ok.json").write_bytes(b"{}")
    assert read_output(home, "ok.json") == b"{}"
    assert read_output(home, "missing.json") is None
    secret = tmp_path / "secret.txt"
    secret.write_text("root only")
    os.symlink(secret, home / "link.json")
    os.symlink("/dev/zero", home / "zero.json")
    os.mkfifo(home / "fifo.xml")  # nobody writes: a blocking open would hang
    os.link(home / "ok.json", home / "hard.json")
    (home / "big.json").write_bytes(b"x" * 2048)
    os.symlink(tmp_path, home / "updir")
    (tmp_path / "inner.json").write_text("{}")
    cases = {
        "link.json": "symbolic link",
        "zero.json": "symbolic link",
        "fifo.xml": "a FIFO",
        "hard.json": "hard-linked",
        "big.json": "over the 1024 byte cap",
        "updir/inner.json": "symbolic link",
        "../secret.txt": "not a path inside",
        "sub": "a folder",
    }
    for name, why in cases.items():
        with pytest.raises(UnsafeOutput, match=why):
            read_output(home, name, max_bytes=1024)
    assert read_project_text(home, "link.json") is None  # project files: a link reads as none


def _suite_run(tmp_path: Path, junit: str, exit_code: int) -> SuiteReport:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    (home / "junit.xml").write_text(junit)
    box = SimpleNamespace(home=home, tree=tmp_path / "tree")
    result = SimpleNamespace(exit_code=exit_code, output="pytest said something")
    return read_report(box, result, measure=False)  # type: ignore[arg-type]


PASSING_JUNIT = (
    '<testsuite tests="2" failures="0" errors="0" skipped="0"><testcase name="a"/></testsuite>'
)
FAILING_JUNIT = (
    '<testsuite tests="1" failures="1" errors="0" skipped="0">'
    '<testcase classname="t" name="a"><failure message="boom">x</failure></testcase></testsuite>'
)


def test_exit_code_and_report_must_agree(tmp_path: Path) -> None:
    """A report that says pass while pytest failed, or the reverse, is a rigged outcome."""
    assert _suite_run(tmp_path, PASSING_JUNIT, 0).passed
    honest_failure = _suite_run(tmp_path, FAILING_JUNIT, 1)
    assert not honest_failure.passed and not honest_failure.forged
    assert (
        "exited 0 but its report lists 1 failing" in _suite_run(tmp_path, FAILING_JUNIT, 0).forged
    )
    assert "says every test passed" in _suite_run(tmp_path, PASSING_JUNIT, 1).forged
    (tmp_path / "home" / "junit.xml").unlink()
    box = SimpleNamespace(home=tmp_path / "home", tree=tmp_path)
    missing = read_report(box, SimpleNamespace(exit_code=0, output=""), measure=False)  # type: ignore[arg-type]
    assert "wrote no report" in missing.forged and not missing.passed


def test_every_run_of_the_tests_has_one_shape(tmp_path: Path) -> None:
    """The reporting run and a mutant's run differ only in their sandbox's scratch folder."""
    shapes = []
    for name in ("a", "b"):
        home, tree = tmp_path / name / "home", tmp_path / name / "tree"
        home.mkdir(parents=True)
        tree.mkdir()
        box = SimpleNamespace(home=home, tree=tree, env=oldnew_env())
        argv, variables = suite_command(box, measure=True)  # type: ignore[arg-type]
        shapes.append(([a.replace(str(tmp_path / name), "@") for a in argv], variables))
    assert shapes[0] == shapes[1]
    argv = shapes[0][0]
    assert "-m" not in argv[:3] and argv[1:3] == ["-s", "-c"]  # never `python -m pytest`


def test_oldnew_tools_and_the_tests_never_import_a_project_stand_in(tmp_path: Path) -> None:
    """A project package named like a tool is not what runs, and the project still imports."""
    for name in ("pytest", "ruff"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text("raise SystemExit(42)\n")
        (tmp_path / name / "__main__.py").write_text("raise SystemExit(42)\n")
    (tmp_path / "calc.py").write_text("VALUE = 7\n")
    (tmp_path / "test_calc.py").write_text(
        "from calc import VALUE\n\ndef test_v():\n    assert VALUE == 7\n"
    )
    tool = subprocess.run(
        py_tool("ruff", "--version"), cwd=tmp_path, capture_output=True, text=True
    )
    assert tool.returncode == 0 and tool.stdout.startswith("ruff"), tool.stderr
    argv = oldnew_env().module_argv("pytest", "-q", "-p", "no:cacheprovider", preload=("pytest",))
    tests = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True)
    assert tests.returncode == 0 and "1 passed" in tests.stdout, tests.stdout + tests.stderr
