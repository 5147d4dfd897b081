"""oldnew's web tools: what is missing and why, and each JS step run for real in the sandbox.

The real runs share one sandboxed command (the app and the tools must share its network
namespace): ``tests/fixtures/web/run_steps.py`` starts a good site, a bad site and a small API,
then runs pages.mjs, lighthouse.mjs (once: it costs seconds), load.mjs and the Playwright config
against them. A machine without Chromium, Node or the tools skips those tests with the command
that installs what is missing; none of them passes without running.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from oldnew.sandbox import Sandbox, probe_host
from oldnew.web import toolchain

FIXTURES = Path(__file__).parent / "fixtures" / "web"
HOST = probe_host()
STEP_OF = {
    "pages-good": "axe",
    "pages-bad": "axe",
    "pages-hang": "axe",
    "lighthouse": "lighthouse",
    "load-ok": "load",
    "load-fail": "load",
    "e2e": "e2e",
}
"""Each run of run_steps.py and the toolchain step whose tools it needs."""


# -- toolchain.missing(): the reason, with the command that fixes it ---------------------------


@pytest.fixture
def fake_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A tools folder pinning lighthouse 12.2.3 and autocannon 9.0.0, installed as given."""
    tools = tmp_path / "tools"
    tools.mkdir()
    pins = {"lighthouse": "12.2.3", "autocannon": "9.0.0"}
    (tools / "package.json").write_text(json.dumps({"dependencies": pins}))
    monkeypatch.setattr(toolchain, "TOOLS_DIR", tools)
    return tools


def _install(tools: Path, package: str, version: str) -> None:
    folder = tools / "node_modules" / package
    folder.mkdir(parents=True)
    (folder / "package.json").write_text(json.dumps({"name": package, "version": version}))


def _fake_binary(path: Path, prints: str) -> Path:
    path.write_text(f"#!/bin/sh\necho '{prints}'\n")
    path.chmod(0o755)
    return path


def test_unknown_step_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown web step 'screenshots'"):
        toolchain.missing("screenshots")


def test_chromium_not_installed_names_the_apt_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OLDNEW_CHROMIUM", raising=False)
    monkeypatch.setattr(toolchain, "SYSTEM_CHROMIUM", tmp_path / "no-chromium")
    assert toolchain.chromium() is None
    reason = toolchain.missing("lighthouse")
    assert reason is not None
    assert reason.startswith("Chromium is not installed: apt-get install chromium")
    assert "OLDNEW_CHROMIUM" in reason


def test_oldnew_chromium_that_is_no_binary_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLDNEW_CHROMIUM", str(tmp_path / "chrome"))
    reason = toolchain.missing("e2e")
    assert reason is not None
    assert f"OLDNEW_CHROMIUM={tmp_path / 'chrome'} is not an executable file" in reason


def test_oldnew_chromium_wins_but_must_be_where_the_sandbox_shows_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chrome = _fake_binary(tmp_path / "chrome", "Chromium 1.2.3.4 test")
    monkeypatch.setenv("OLDNEW_CHROMIUM", str(chrome))
    assert toolchain.chromium() == chrome
    assert toolchain.versions()["chromium"] == "1.2.3.4"
    reason = str(toolchain.missing("browser"))
    assert f"Chromium at {chrome} is outside the system folders the sandbox shows" in reason


def test_load_needs_no_browser(
    fake_tools: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLDNEW_CHROMIUM", str(tmp_path / "none"))
    _install(fake_tools, "autocannon", "9.0.0")
    monkeypatch.setattr(toolchain, "node", lambda: Path("/usr/bin/node"))
    assert toolchain.missing("load") is None
    assert "Chromium" in (toolchain.missing("lighthouse") or "")


def test_tools_not_installed_names_npm_ci(
    fake_tools: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(toolchain, "node", lambda: Path("/usr/bin/node"))
    reason = toolchain.missing("load")
    assert reason == (
        f"oldnew's web tools are not installed: npm ci --prefix {fake_tools} "
        "(scripts/setup.sh does it)"
    )


def test_a_package_of_another_version_than_pinned_is_missing(
    fake_tools: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(toolchain, "node", lambda: Path("/usr/bin/node"))
    _install(fake_tools, "lighthouse", "12.0.0")
    _install(fake_tools, "autocannon", "9.0.0")
    assert toolchain.missing("load") is None
    assert toolchain.missing("lighthouse") is not None
    assert "lighthouse 12.0.0 is installed where oldnew pins 12.2.3" in str(
        toolchain.missing("lighthouse")
    )
    reason = str(toolchain.missing("axe"))
    assert "playwright-core, axe-core are missing from oldnew's web tools: npm ci" in reason
    assert toolchain.versions()["lighthouse"] == "12.0.0"
    assert "axe-core" not in toolchain.versions()


def test_node_missing_or_outside_the_sandbox(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(toolchain, "NODE_PATH", str(tmp_path / "empty"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert toolchain.node() is None
    assert "Node is not installed: install Node 20 or newer" in str(toolchain.missing("load"))
    mine = tmp_path / "nvm"
    mine.mkdir()
    _fake_binary(mine / "node", "v20.0.0")
    monkeypatch.setenv("PATH", str(mine))
    reason = str(toolchain.missing("load"))
    assert f"Node at {mine / 'node'} is outside the system folders the sandbox shows" in reason


def test_a_node_too_old_for_the_tools_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = _fake_binary(tmp_path / "node", "v18.19.0")
    monkeypatch.setattr(toolchain, "node", lambda: old)
    reason = str(toolchain.missing("load"))
    assert f"Node 18.19.0 at {old} is older than the 20 oldnew's web tools need" in reason


def test_scripts_and_flags() -> None:
    for name in ("pages.mjs", "lighthouse.mjs", "load.mjs", "playwright.config.mjs"):
        assert toolchain.script(name).is_file()
    with pytest.raises(FileNotFoundError, match="nope.mjs"):
        toolchain.script("nope.mjs")
    assert {"--headless=new", "--no-sandbox", "--disable-gpu"} <= set(toolchain.CHROME_FLAGS)


def test_every_script_parses_with_node() -> None:
    if toolchain.node() is None:
        pytest.skip(str(toolchain.missing("load")))
    for script in sorted(toolchain.JS_DIR.glob("*.mjs")):
        done = subprocess.run(
            [str(toolchain.node()), "--check", str(script)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, f"{script.name}: {done.stderr}"


def test_e2e_cli_is_the_copy_the_specs_import(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    beside = tmp_path / "node_modules" / "@playwright" / "test"
    beside.mkdir(parents=True)
    (beside / "cli.js").write_text("")
    assert toolchain.e2e_cli(tree) == beside / "cli.js"
    own = tree / "node_modules" / "@playwright" / "test"
    own.mkdir(parents=True)
    (own / "cli.js").write_text("")
    assert toolchain.e2e_cli(tree) == own / "cli.js"


# -- the sandbox shows the tools beside the copy --------------------------------------------


def _skip_unless(*steps: str) -> None:
    if HOST.bwrap is None:
        pytest.skip(f"needs bubblewrap (apt-get install bubblewrap): {HOST.bwrap_error}")
    for step in steps:
        reason = toolchain.missing(step)
        if reason is not None:
            pytest.skip(reason)


def test_the_projects_own_packages_win_over_oldnews_tools(tmp_path: Path) -> None:
    _skip_unless("load")
    project = tmp_path / "project"
    (project / "node_modules" / "autocannon").mkdir(parents=True)
    (project / "node_modules" / "autocannon" / "package.json").write_text('{"version": "own"}')
    (project / "check.js").write_text(
        "console.log(require('autocannon/package.json').version,"
        " require('lighthouse/package.json').version)\n"
    )
    with Sandbox.open(project, web_tools=True) as box:
        result = box.run([str(toolchain.node()), "check.js"], timeout=60)
        write = box.run(["/bin/sh", "-c", "touch ../node_modules/x"], timeout=30)
        fonts = box.run(["/bin/sh", "-c", "test -d /etc/fonts"], timeout=30)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.split() == ["own", toolchain.package_version("lighthouse")]
    assert write.exit_code != 0 and "Read-only" in write.stderr
    assert fonts.exit_code == (0 if Path("/etc/fonts").is_dir() else 1)


def test_without_web_tools_they_are_left_out(tmp_path: Path) -> None:
    # The gates but the web driver keep a project from importing packages it never declared.
    _skip_unless("load")
    project = tmp_path / "project"
    project.mkdir()
    (project / "check.js").write_text("require('autocannon')\n")
    with Sandbox.open(project) as box:
        result = box.run([str(toolchain.node()), "check.js"], timeout=60)
    assert result.exit_code != 0 and "Cannot find module 'autocannon'" in result.stderr


# -- the steps, run for real ------------------------------------------------------------------


@pytest.fixture(scope="module")
def steps(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """Run every step whose tools are installed, once, in one sandbox; return (out, steps.json)."""
    if HOST.bwrap is None:
        pytest.skip(f"needs bubblewrap (apt-get install bubblewrap): {HOST.bwrap_error}")
    runnable = [name for name, step in STEP_OF.items() if toolchain.missing(step) is None]
    if not runnable:
        pytest.skip(str(toolchain.missing("axe")))
    project = tmp_path_factory.mktemp("web") / "project"
    shutil.copytree(FIXTURES, project)
    out = tmp_path_factory.mktemp("web-out")
    with Sandbox.open(project, web_tools=True) as box:
        argv = [*box.env.python_argv("run_steps.py"), str(box.home / "out"), ",".join(runnable)]
        result = box.run(argv, timeout=240)
        assert result.exit_code == 0, result.stderr[-3000:]
        shutil.copytree(box.home / "out", out, dirs_exist_ok=True)
    return out, json.loads((out / "steps.json").read_text())


def _ran(steps: tuple[Path, dict[str, Any]], name: str) -> Path:
    """Return the output folder after checking ``name`` ran (skip when its tools are missing)."""
    out, done = steps
    if name not in done:
        pytest.skip(str(toolchain.missing(STEP_OF[name])))
    return out


def _pages(out: Path, name: str) -> list[dict[str, Any]]:
    report = json.loads((out / name / "pages.json").read_text())
    assert report["complete"] is True
    pages: list[dict[str, Any]] = report["pages"]
    return pages


def test_pages_good_site_has_no_violation_and_full_page_screenshots(
    steps: tuple[Path, dict[str, Any]],
) -> None:
    out = _ran(steps, "pages-good")
    assert steps[1]["pages-good"]["rc"] == 0, steps[1]["pages-good"]
    pages = _pages(out, "pages-good")
    assert [p["path"] for p in pages] == ["/", "/about.html"]
    assert [p["screenshot"] for p in pages] == [
        "screenshots/index.png",
        "screenshots/about.html.png",
    ]
    for page in pages:
        assert (page["status"], page["error"], page["axe"]) == (200, None, [])
        assert page["page_errors"] == page["console_errors"] == []
        png = (out / "pages-good" / page["screenshot"]).read_bytes()
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000


def test_pages_bad_site_reports_axe_and_what_the_page_threw(
    steps: tuple[Path, dict[str, Any]],
) -> None:
    out = _ran(steps, "pages-bad")
    page, _ = _pages(out, "pages-bad")
    assert page["status"] == 200 and page["error"] is None
    rules = {v["id"]: v for v in page["axe"]}
    assert rules["image-alt"]["impact"] == "critical"
    (node,) = rules["image-alt"]["nodes"]
    assert node["target"] == "img" and "alt attribute" in node["failureSummary"]
    assert rules["image-alt"]["helpUrl"].startswith("https://dequeuniversity.com/rules/axe/")
    assert rules["html-has-lang"]["impact"] == "serious"
    assert any("the page throws" in e for e in page["page_errors"])
    assert any("the page logs an error" in e for e in page["console_errors"])


def test_pages_a_page_cannot_hide_from_axe_nor_tell_the_check_by_its_user_agent(
    steps: tuple[Path, dict[str, Any]],
) -> None:
    # site-bad/hostile.html answers for window.axe (a non-configurable getter) and lies through
    # Element.prototype: axe runs in a world of its own, and still sees the image with no alt.
    out = _ran(steps, "pages-bad")
    _, page = _pages(out, "pages-bad")
    assert page["path"] == "/hostile.html" and page["error"] is None
    rules = {v["id"]: v["impact"] for v in page["axe"]}
    assert rules["image-alt"] == "critical" and rules["html-has-lang"] == "serious"
    (seen,) = [e for e in page["console_errors"] if e.startswith("user agent: ")]
    assert "Headless" not in seen and "webdriver: false" in seen
    major = toolchain.versions().get("chromium", "156").split(".")[0]
    assert f"X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{major}.0.0.0" in seen


def test_pages_a_page_that_never_answers_is_that_pages_error(
    steps: tuple[Path, dict[str, Any]],
) -> None:
    out = _ran(steps, "pages-hang")
    assert steps[1]["pages-hang"]["rc"] == 0
    hang, ok = _pages(out, "pages-hang")
    assert hang["status"] is None and hang["screenshot"] is None
    assert "Timeout 2000ms exceeded" in hang["error"]
    assert ok["status"] == 200 and ok["error"] is None  # the next page still checked


def test_lighthouse_good_page_scores_at_least_90_everywhere(
    steps: tuple[Path, dict[str, Any]],
) -> None:
    out = _ran(steps, "lighthouse")
    assert steps[1]["lighthouse"]["rc"] == 0, steps[1]["lighthouse"]
    (page,) = json.loads((out / "lighthouse" / "lighthouse.json").read_text())["pages"]
    assert page["error"] is None
    assert set(page["scores"]) == {"performance", "accessibility", "best-practices", "seo"}
    assert all(score >= 0.9 for score in page["scores"].values()), page["scores"]
    assert page["audits"] == []
    report = json.loads((out / "lighthouse" / page["report"]).read_text())
    assert report["lighthouseVersion"] == toolchain.package_version("lighthouse")
    assert report["categories"]["seo"]["score"] == page["scores"]["seo"]


def test_load_reports_p95_and_error_rate(steps: tuple[Path, dict[str, Any]]) -> None:
    out = _ran(steps, "load-ok")
    ok = json.loads((out / "load-ok.json").read_text())
    assert ok["requests"] > 100 and ok["errors"] == ok["non2xx"] == 0
    assert ok["error_rate"] == 0 and ok["status_codes"] == {"200": ok["responses"]}
    assert 0 < ok["p50_ms"] <= ok["p95_ms"] <= ok["p99_ms"]
    assert 0.9 <= ok["duration_s"] < 3
    fail = json.loads((out / "load-fail.json").read_text())
    assert fail["non2xx"] == fail["responses"] > 0 and fail["error_rate"] == 1
    assert fail["p95_ms"] is not None


def test_playwright_config_runs_the_projects_specs_each_with_its_timeout(
    steps: tuple[Path, dict[str, Any]],
) -> None:
    out = _ran(steps, "e2e")
    assert steps[1]["e2e"]["rc"] == 1, steps[1]["e2e"]  # tests failed
    report = json.loads((out / "e2e.json").read_text())
    assert (report["stats"]["expected"], report["stats"]["unexpected"]) == (2, 2)
    results = {
        spec["title"]: test["results"][0]
        for suite in report["suites"]
        for spec in suite["specs"]
        for test in spec["tests"]
    }
    assert results["home shows the task list"]["status"] == "passed"
    # a desktop Chrome's user agent, no navigator.webdriver (the spec checks them)
    assert results["the app sees a desktop Chrome, not a headless robot"]["status"] == "passed"
    failed = results["home has a heading it does not have"]
    assert failed["status"] == "failed" and "toHaveText" in failed["errors"][0]["message"]
    hung = results["a test that hangs the browser"]  # E2E_TIMEOUT_MS=2500 in run_steps.py
    assert hung["status"] == "timedOut"
    assert "Test timeout of 2500ms exceeded" in hung["errors"][0]["message"]


# -- could not run at all: non-zero, one line ----------------------------------------------


@pytest.mark.parametrize("name", ["pages.mjs", "lighthouse.mjs"])
def test_a_browser_step_without_chrome_exits_with_one_line(name: str, tmp_path: Path) -> None:
    if toolchain.node() is None:
        pytest.skip(str(toolchain.missing("load")))
    argv = [str(toolchain.node()), str(toolchain.script(name)), "--base", "http://127.0.0.1:9"]
    env = {"PATH": "/usr/bin:/bin", "CHROME_PATH": str(tmp_path / "no-chrome")}
    done = subprocess.run(
        [*argv, "--out", str(tmp_path)], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 3  # could not run here: the driver makes it "not run", with the fix
    assert done.stderr.strip().splitlines() == [
        f"Chromium is not installed at {tmp_path / 'no-chrome'}: apt-get install chromium"
        " (or set CHROME_PATH)"
    ]
    assert not any(tmp_path.iterdir())  # nothing written: no half a report


@pytest.mark.parametrize("name", ["pages.mjs", "lighthouse.mjs"])
def test_a_chromium_that_does_not_start_is_said_at_once(name: str, tmp_path: Path) -> None:
    # chrome-launcher would poll its port for 30 s; Playwright sees the exit itself.
    step = "lighthouse" if name == "lighthouse.mjs" else "axe"
    if toolchain.missing(step) is not None:
        pytest.skip(str(toolchain.missing(step)))
    argv = [str(toolchain.node()), str(toolchain.script(name)), "--base", "http://127.0.0.1:9"]
    env = {"PATH": "/usr/bin:/bin", "CHROME_PATH": "/usr/bin/false", "HOME": str(tmp_path)}
    started = time.monotonic()
    done = subprocess.run(
        [*argv, "--out", str(tmp_path / "out")], env=env, capture_output=True, text=True, timeout=60
    )
    assert time.monotonic() - started < 10
    assert done.returncode == 3
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("Chromium could not start (/usr/bin/false): ")
    assert not (tmp_path / "out" / name.replace(".mjs", ".json")).exists()


def test_load_with_a_bad_url_could_not_run(tmp_path: Path) -> None:
    if toolchain.missing("load") is not None:
        pytest.skip(str(toolchain.missing("load")))
    argv = [str(toolchain.node()), str(toolchain.script("load.mjs")), "--url", "ftp://x"]
    done = subprocess.run(
        [*argv, "--out", str(tmp_path / "l.json")], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stderr.strip() == "--url ftp://x is not an HTTP address: ftp: is not HTTP"
    assert not (tmp_path / "l.json").exists()
