"""A web app run whole, with the real web gates: delivered, reported, and confirmed by verify.

The scripted model writes a one-page app on the python-web stack (standard library only) and a
Playwright test; the MVP milestone runs the web gates on main in the sandbox with the system's
Chromium, tags ``mvp``, and delivery runs them once more; ``oldnew verify`` then re-runs them on
main and confirms the report. The routing of failing milestones is tests/test_milestones.py's
(fast doubles); the bundled example end to end is ``scripts/demo_web.sh``.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from oldnew.gates.verify import verify_workspace
from oldnew.runs import start_run
from oldnew.safegit import run_git
from oldnew.web import toolchain

pytestmark = pytest.mark.usefixtures("smoke_gates")  # per task; the web gates run in full

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="description" content="A greeting, served by a tiny Python app.">
<title>Hello</title>
<link rel="icon" href="data:,">
</head>
<body>
<main>
<h1>Hello</h1>
<p>This page is served by the standard library.</p>
</main>
</body>
</html>
"""
SERVER = '''"""The app: the home page and robots.txt, on HOST:PORT."""

import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

PAGE = (Path(__file__).parent / "index.html").read_bytes()
ROBOTS = b"User-agent: *\\nAllow: /\\n"


def route(path: str) -> tuple[int, str, bytes]:
    """Return the status, content type and body for ``path``."""
    if path == "/":
        return 200, "text/html; charset=utf-8", PAGE
    if path == "/robots.txt":
        return 200, "text/plain", ROBOTS
    return 404, "text/plain", b"not found"


class Handler(BaseHTTPRequestHandler):
    """Answer GET requests from :func:`route`."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - the standard library's name
        status, kind, body = route(self.path)
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """Keep the output quiet."""


def main() -> None:
    """Serve until stopped."""
    host = os.environ.get("HOST", "127.0.0.1")
    ThreadingHTTPServer((host, int(os.environ.get("PORT", "3000"))), Handler).serve_forever()
'''
T1 = f"""FILE: pyproject.toml
```toml
[project]
name = "hello"
version = "0.1.0"

[tool.oldnew]
start = "python -m app"
health = "/"
```
FILE: app/__init__.py
```python
```
FILE: app/__main__.py
```python
from app.server import main

if __name__ == "__main__":
    main()
```
FILE: app/server.py
```python
{SERVER}```
FILE: app/index.html
```html
{PAGE}```
FILE: tests/test_server.py
```python
from app.server import route


def test_the_home_page_and_a_missing_one() -> None:
    assert route("/")[0] == 200 and b"<h1>Hello</h1>" in route("/")[2]
    assert route("/nope")[0] == 404
```
"""
T2 = """FILE: e2e/home.spec.mjs
```javascript
import { test, expect } from '@playwright/test';

test('the home page shows its heading', async ({ page }) => {
  await page.goto('/');
  await expect(page.getByRole('heading', { level: 1 })).toHaveText('Hello');
});
```
"""


def _model(tmp_path: Path) -> str:
    scope = {
        "title": "hello",
        "summary": "A one-page web app.",
        "stack": "python-web",
        "features": [{"id": "F1", "title": "a home page"}],
        "pages": [{"id": "P1", "title": "home", "route": "/"}],
    }
    tasks = [
        {
            "id": "T1",
            "title": "Home page and server",
            "description": "app/ serves the home page",
            "files": ["pyproject.toml", "app/server.py", "app/index.html", "tests/test_server.py"],
            "requirement_ids": ["F1", "P1"],
        },
        {
            "id": "T2",
            "title": "Browser test",
            "description": "e2e/home.spec.mjs",
            "depends_on": ["T1"],
            "files": ["e2e/home.spec.mjs"],
            "requirement_ids": ["P1"],
        },
    ]
    replies: list[dict[str, Any]] = [
        {"role": "planner", "when": ["return a Scope"], "structured": scope},
        {"role": "planner", "when": ["into a Plan"], "structured": {"tasks": tasks}},
        {"role": "coder", "when": ["TASK T1:"], "text": T1},
        {"role": "coder", "when": ["TASK T2:"], "text": T2},
    ]
    path = tmp_path / "transcript.json"
    path.write_text(json.dumps({"reply": replies}))
    return f"scripted:{path}"


def test_a_web_app_is_delivered_with_its_web_gates_and_verify_confirms_them(
    tmp_path: Path,
) -> None:
    missing = toolchain.missing("lighthouse") or toolchain.missing("e2e")
    if missing:
        pytest.skip(f"the web tools are not installed: {missing}")
    scope = tmp_path / "scope.md"
    scope.write_text("A one-page web app that says hello.\n")
    ws = tmp_path / "ws"
    context = {"model": _model(tmp_path), "preview_port": 0}
    out = asyncio.run(start_run(scope, ws, context=context))
    assert out.status == "delivered", out
    assert out.milestones["mvp"]["status"] == "reached"
    assert (
        run_git("rev-parse", "mvp^{commit}", cwd=ws).stdout.strip()
        == out.milestones["mvp"]["commit"]
    )
    report = json.loads((ws / ".oldnew" / "report.json").read_text())
    web = report["web"]
    assert all(s >= 90 for s in web["lighthouse"]["/"].values()), web["lighthouse"]
    assert (web["e2e"]["passed"], web["e2e"]["failed"]) == (1, 0)
    assert web["axe"]["blocking"] == 0
    shot = ws / web["screenshots"]["/"]
    assert shot.read_bytes()[:4] == b"\x89PNG"
    assert f"](../{web['screenshots']['/']})" in (ws / ".oldnew" / "report.md").read_text()
    # verify runs the web gates again on main and finds what the report says.
    result = verify_workspace(ws, timeout=120)
    assert result.matches, result.differences
    rerun = {c["name"]: c["status"] for c in result.rerun["checks"]}
    assert {rerun[g] for g in ("web-start", "e2e", "axe", "lighthouse", "screenshots")} == {
        "passed"
    }
