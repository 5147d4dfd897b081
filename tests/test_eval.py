"""``oldnew eval``: the bundled suite run with its scripted models, and a suite that cannot run."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import xml.etree.ElementTree as ET  # nosec B405 - the test's own junit files
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from oldnew.budget import Price, ledger_of
from oldnew.cli import app
from oldnew.context import Context
from oldnew.errors import ConfigurationError
from oldnew.eval import CASE_SECONDS, cells
from oldnew.eval.acceptance import static_tests
from oldnew.eval.runner import case_context, run_case
from oldnew.eval.suite import case_model, load_suite
from oldnew.workspace import Workspace

SUITE = Path(__file__).resolve().parent.parent / "examples" / "eval"
MODEL = "scripted:transcript.toml"


def _junit(path: Path) -> tuple[int, list[str]]:
    """Return the tests pytest reported in ``path`` and the names of those that failed."""
    root = ET.parse(path).getroot()  # nosec B314
    cases = list(root.iter("testcase"))
    failed = [c.get("name", "") for c in cases if c.find("failure") is not None]
    failed += [c.get("name", "") for c in cases if c.find("error") is not None]
    return len(cases), failed


def _usage_tokens(workspace: Path) -> int:
    lines = (workspace / ".oldnew" / "usage.jsonl").read_text(encoding="utf-8").splitlines()
    calls = [json.loads(line) for line in lines if '"kind": "call"' in line]
    return sum(c["input_tokens"] + c["output_tokens"] for c in calls)


def _tracked(workspace: Path) -> str:
    """Return every path in every commit of the workspace, and every file oldnew kept."""
    log = subprocess.run(
        ["git", "-C", str(workspace), "log", "--all", "--name-only", "--format="],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    kept = [p.read_text(errors="replace") for p in (workspace / ".oldnew").rglob("*.json*")]
    return log + "\n".join(kept)


@pytest.mark.usefixtures("smoke_gates")
def test_the_bundled_suite_gives_the_table_of_what_really_happened(tmp_path: Path) -> None:
    out = tmp_path / "results"
    # Without the tester's acceptance suite: what the coders' own tests let through.
    args = ["eval", str(SUITE), "--model", MODEL, "--quality", "smoke", "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--acceptance", "off"])
    assert result.exit_code == 0, result.output
    for name in ("slugs", "tally", "wordfreq"):
        assert f"{name}: started" in result.output and f"{name}: finished" in result.output
    data = json.loads((out / "results.json").read_text(encoding="utf-8"))
    rows: dict[str, dict[str, Any]] = {r["case"]: r for r in data["cases"]}
    assert sorted(rows) == ["slugs", "tally", "wordfreq"]
    for name, row in rows.items():
        ws = Path(row["workspace"])
        report = json.loads((ws / ".oldnew" / "report.json").read_text(encoding="utf-8"))
        # Acceptance counts are pytest's own, from the report it wrote for the case.
        total, failed = _junit(out / name / "acceptance.xml")
        acc = row["acceptance"]
        assert (acc["total"], acc["passed"]) == (total, total - len(failed))
        assert [f.rsplit("::", 1)[-1] for f in acc["failed"]] == failed
        hidden = sorted((SUITE / name / "acceptance").rglob("test_*.py"))
        assert total == sum(static_tests(p) for p in hidden)  # every hidden test ran
        # Fix rounds, tokens and questions are the run's own records.
        assert row["fix_rounds"] == sum(t["fix_rounds"] for t in report["delivered"])
        assert row["tokens"] == _usage_tokens(ws) > 0
        assert row["questions"] == len(report["pending_questions"]) == 0
        assert row["status"] == report["status"] == "delivered"
        # The hidden tests never reached the run: not committed, not in any record it kept.
        for path in hidden:
            assert path.name not in _tracked(ws)
    # What the scripted coders wrote, judged honestly: wordfreq breaks ties by first
    # appearance, which no test of its own tries; its first attempt failed a test of its own.
    assert rows["slugs"]["acceptance"]["failed"] == rows["tally"]["acceptance"]["failed"] == []
    assert rows["wordfreq"]["acceptance"]["failed"] == [
        "test_wordfreq::test_ties_come_in_alphabetical_order"
    ]
    assert (rows["wordfreq"]["fix_rounds"], rows["slugs"]["fix_rounds"]) == (1, 0)
    md = (out / "results.md").read_text(encoding="utf-8")
    assert "| wordfreq (no suite) | delivered | 6/7 | 1 |" in md
    assert "acceptance tests 18/19 passed" in md and "18/19 passed" in result.output
    assert data["totals"]["acceptance_total"] == 19


def _suite(tmp_path: Path, *cases: str) -> Path:
    suite = tmp_path / "suite"
    for name in cases:
        shutil.copytree(SUITE / name, suite / name)
    return suite


def _fails(args: list[str]) -> str:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    return " ".join(result.output.split())


def test_a_suite_that_cannot_run_is_a_usage_error_saying_what_to_do(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "results").mkdir()  # earlier results are no case
    said = _fails(["eval", str(empty), "--model", MODEL])
    assert "holds no case: add one folder per case, each with a scope.md" in said

    suite = _suite(tmp_path, "slugs")
    (suite / "draft").mkdir()
    said = _fails(["eval", str(suite), "--model", MODEL])
    assert "case draft" in said and "has no scope.md" in said and "_draft" in said

    shutil.rmtree(suite / "draft")
    shutil.rmtree(suite / "slugs" / "acceptance")
    said = _fails(["eval", str(suite), "--model", MODEL])
    assert "case slugs has no acceptance tests: put pytest files" in said

    suite = _suite(tmp_path / "again", "slugs")
    said = _fails(["eval", str(suite), "--model", "scripted:missing.toml"])
    assert "case slugs: the model spec" in said and "does not resolve" in said
    assert "Put a transcript at" in said
    assert not (suite / "results").exists()  # nothing ran, nothing was written

    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "x").write_text("earlier")
    said = _fails(["eval", str(suite), "--model", MODEL, "--out", str(taken)])
    assert "is not empty: give a new --out" in said
    said = _fails(["eval", str(suite), "--model", MODEL, "--out", str(taken / "x")])
    assert "output path" in said and "is not a folder: give --out a new or empty folder" in said
    assert (taken / "x").read_text() == "earlier"


def test_a_relative_scripted_transcript_is_each_cases_own(tmp_path: Path) -> None:
    cases = load_suite(SUITE)
    assert [c.name for c in cases] == ["slugs", "tally", "wordfreq"]
    for case in cases:
        assert case_model(MODEL, case) == f"scripted:{case.folder / 'transcript.toml'}"
        assert case_model("openai:gpt-x", case) == "openai:gpt-x"
    shared = tmp_path / "shared.toml"
    shared.write_text("")
    assert case_model(f"scripted:{shared}", cases[0]) == f"scripted:{shared}"


ASKS = """
[[reply]]
role = "coder"
when = ["TASK T1:"]
tool = "AskHuman"
[reply.args]
kind = "configuration"
question = "Which slug separator does the site use?"
options = ["-", "_"]
recommended = "-"
"""


@pytest.mark.usefixtures("smoke_gates")
def test_a_case_that_waits_for_a_person_is_reported_blocked_with_its_question(
    tmp_path: Path,
) -> None:
    suite = _suite(tmp_path, "slugs")
    transcript = suite / "slugs" / "transcript.toml"
    text = transcript.read_text(encoding="utf-8")
    transcript.write_text(text[: text.index('[[reply]]\nrole = "coder"')] + ASKS)
    out = tmp_path / "out"
    args = ["eval", str(suite), "--model", MODEL, "--quality", "smoke", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output  # a blocked case is a result, not an error
    (row,) = json.loads((out / "results.json").read_text(encoding="utf-8"))["cases"]
    assert row["status"] == "waiting" and not row["delivered"]
    assert "Which slug separator does the site use?" in row["blocker"]
    assert row["questions"] == 1
    # Nothing was delivered: the hidden file cannot import slugs, and each of its tests fails.
    acc = row["acceptance"]
    assert (acc["passed"], acc["total"]) == (0, 7)
    assert "could not be collected (test_slugify.py)" in acc["error"]
    md = (out / "results.md").read_text(encoding="utf-8")
    assert "| slugs | blocked: " in md and "| 0/7 (1 acceptance test file(s)" in md


def _run_instead(monkeypatch: pytest.MonkeyPatch, run: Any) -> list[dict[str, Any]]:
    """Make every case run ``run(workspace)`` instead of a real run; return their contexts."""
    import oldnew.eval.runner as runner

    contexts: list[dict[str, Any]] = []

    async def start_run(scope: Path, workspace: Path, **kw: Any) -> Any:
        contexts.append(kw["context"])
        return run(Path(workspace))

    monkeypatch.setattr(runner, "start_run", start_run)
    return contexts


def test_a_case_that_made_no_workspace_still_counts_every_hidden_test(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refused(workspace: Path) -> None:
        raise ConfigurationError("the model is not there")

    contexts = _run_instead(monkeypatch, refused)
    suite = _suite(tmp_path, "slugs", "wordfreq")
    out = tmp_path / "out"
    args = ["eval", str(suite), "--model", MODEL, "--out", str(out), "--case-seconds", "90"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads((out / "results.json").read_text(encoding="utf-8"))
    for row in data["cases"]:
        assert row["status"] == "error" and "the model is not there" in row["blocker"]
        assert (row["acceptance"]["passed"], row["acceptance"]["total"]) == (0, 7)
        assert row["acceptance"]["error"] == "no workspace was made: nothing to test"
    assert (data["totals"]["acceptance_passed"], data["totals"]["acceptance_total"]) == (0, 14)
    assert "acceptance tests 0/14 passed" in (out / "results.md").read_text(encoding="utf-8")
    assert "0/14 passed" in result.output
    # --case-seconds is each case's budget of working time.
    assert [c["budget_seconds"] for c in contexts] == [90.0, 90.0]
    assert data["case_seconds"] == 90.0


def test_a_run_that_fails_part_way_keeps_the_spend_its_ledger_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def spends_then_crashes(workspace: Path) -> None:
        Workspace.create(workspace, "r1", {})
        ledger = ledger_of(workspace)
        for tokens in (1000, 500):
            ledger.record_call(
                role="coder",
                activity="coding",
                task="T1",
                model="m",
                input_tokens=tokens,
                output_tokens=tokens // 10,
                price=Price(2.0, 8.0),
            )
        raise RuntimeError("a node crashed at the end")

    _run_instead(monkeypatch, spends_then_crashes)
    (case,) = load_suite(_suite(tmp_path, "slugs"))
    row = asyncio.run(run_case(case, MODEL, tmp_path / "out", {}, lambda line: None))
    assert row.status == "error" and "RuntimeError: a node crashed" in row.blocker
    assert row.tokens == 1650 == ledger_of(row.workspace).spend()["tokens"]
    assert row.cost_usd == pytest.approx((1500 * 2.0 + 150 * 8.0) / 1e6)
    # The workspace holds no code: the hidden tests ran on it, and all seven count as failed.
    assert (row.acceptance.passed, row.acceptance.total) == (0, 7)
    assert "could not be collected" in row.acceptance.error
    assert cells(row)[4] == "1,650"


def test_each_case_has_a_budget_of_seconds_unless_one_is_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OLDNEW_BUDGET_SECONDS", raising=False)
    assert case_context(None, {})["budget_seconds"] == CASE_SECONDS == 1800
    assert case_context(None, {}, 0)["budget_seconds"] == 0  # no cap
    assert case_context(None, {"budget_seconds": 60}, 5)["budget_seconds"] == 60
    monkeypatch.setenv("OLDNEW_BUDGET_SECONDS", "30")
    assert "budget_seconds" not in case_context(None, {}, 5)
    assert Context(**case_context(None, {}, 5)).budget_seconds == 30
    command = typer.main.get_command(app).commands["eval"]  # type: ignore[attr-defined]
    (option,) = [p for p in command.params if "--case-seconds" in p.opts]
    assert option.default == CASE_SECONDS and "runaway case cannot stall" in option.help


@pytest.mark.usefixtures("smoke_gates")
def test_a_case_past_its_seconds_is_stopped_and_says_by_what(tmp_path: Path) -> None:
    (case,) = load_suite(_suite(tmp_path, "slugs"))
    model = case_model(MODEL, case)
    row = asyncio.run(run_case(case, model, tmp_path / "out", {}, lambda line: None, "", 0.01))
    assert row.status == "stopped" and not row.delivered
    assert "budget: the run worked" in row.blocker and "wall-clock cap" in row.blocker
    assert (row.acceptance.passed, row.acceptance.total) == (0, 7)  # nothing was delivered
