"""The dependency audit: pip-audit on pinned requirements, where its service answers.

pip-audit offline prints "No known vulnerabilities found" and exits 0 without having checked
anything: here a service that does not answer makes the gate "not run", never "passed".
"""

from __future__ import annotations

import json
import socket
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from oldnew.gates.common import (
    GateRun,
    Outcome,
    make_check,
    py_tool,
    stopped,
    tool_version,
    unreadable,
)
from oldnew.gates.model import Check, CheckStatus, Diagnostic
from oldnew.sandbox.files import read_project_text

PYPI_PROBE = "https://pypi.org/pypi/pip/json"

# -- dependency audit -------------------------------------------------------------------------


def declared_dependencies(tree: Path) -> list[str]:
    """Return the third-party requirements the project declares.

    They come from requirements*.txt and pyproject's ``[project] dependencies``.
    """
    reqs: list[str] = []
    for path in sorted(tree.glob("requirements*.txt")):
        for line in (read_project_text(tree, path.name) or "").splitlines():
            line = line.split("#", 1)[0].strip()
            if line and not line.startswith("-"):
                reqs.append(line)
    text = read_project_text(tree, "pyproject.toml")
    if text is not None:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError:
            data = {}
        reqs += [str(r) for r in data.get("project", {}).get("dependencies", [])]
    return reqs


def _tcp_reachable(host: str, port: int, timeout: float) -> str:
    """Return '' when a TCP connection to host:port opens, else why not (socket closed)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except Exception as exc:  # noqa: BLE001 - any failure means: not reachable
        return f"{host} does not resolve ({type(exc).__name__}: {exc})"
    try:
        sock.settimeout(timeout)
        sock.connect(address)
    except Exception as exc:  # noqa: BLE001
        return f"{host}:{port} is not reachable ({type(exc).__name__}: {exc})"
    finally:
        sock.close()
    return ""


def audit_service_reachable(url: str = PYPI_PROBE, timeout: float = 5.0) -> str:
    """Return '' when pip-audit's vulnerability service answers, else why it does not."""
    host = urllib.parse.urlsplit(url).hostname or ""
    why = _tcp_reachable(host, 443, timeout)
    if why:
        return why[:300]
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # nosec B310 - fixed https URL
            data = json.loads(resp.read(2_000_000))
            return "" if "info" in data else "the service answered without package data"
    except urllib.error.HTTPError as exc:
        return f"{url} answered HTTP {exc.code}"
    except Exception as exc:  # noqa: BLE001 - any failure means: not reachable
        return f"{url} is not reachable ({type(exc).__name__}: {exc})"[:300]


def gate_audit(run: GateRun) -> Outcome:
    """Audit pinned dependencies with pip-audit, where its service is reachable."""
    reqs = declared_dependencies(run.tree)
    if not reqs:
        return Check(
            "audit",
            "not_run",
            [],
            None,
            0,
            "nothing to audit: the project declares no third-party dependencies",
            required=False,
        ), []
    why = audit_service_reachable()
    if why:
        return Check(
            "audit",
            "not_run",
            [],
            None,
            0,
            f"the vulnerability service is not reachable, so nothing was checked ({why}); "
            "pip-audit would still print 'No known vulnerabilities found'",
            required=False,
        ), []
    unpinned = [r for r in reqs if "==" not in r]
    if unpinned:
        return Check(
            "audit",
            "not_run",
            [],
            None,
            0,
            f"dependencies are not pinned with '==' ({', '.join(unpinned[:5])}): pin them "
            "to audit them without installing them",
            required=False,
        ), []
    req_file = run.box.home / "audit-requirements.txt"
    req_file.write_text("\n".join(reqs) + "\n", encoding="utf-8")
    argv = py_tool("pip_audit", "-r", str(req_file), "--strict", "--no-deps", "--disable-pip")
    argv += ["--progress-spinner", "off", "-f", "json"]
    # The one gate with the network runs no project code: pip-audit from oldnew's environment
    # (``-I``: the project is not on its sys.path), on a list oldnew wrote, away from the tree.
    result = run.box.run(argv, timeout=run.timeout, network=True, cwd=run.box.home)
    ver = tool_version("pip-audit")
    if result.killed:
        return stopped("audit", result, ver)
    try:
        deps = json.loads(result.stdout)["dependencies"]
    except (json.JSONDecodeError, KeyError, TypeError):
        check, _ = unreadable("audit", result, ver, "pip-audit output")
        check.required = False
        return check, []
    diags = [
        Diagnostic(
            "audit",
            "requirements",
            0,
            f"{d['name']} {d.get('version', '')} has {v['id']}: upgrade to "
            f"{', '.join(v.get('fix_versions', [])) or 'a fixed version'}",
            v["id"],
        )
        for d in deps
        for v in d.get("vulns", [])
    ]
    status: CheckStatus = "failed" if diags else "passed"
    check = make_check("audit", status, result, f"{len(deps)} packages, {len(diags)} vulns", ver)
    check.required = False
    return check, diags
