"""The dependency audit: pip-audit on the versions the project pins, where its service answers.

What is audited is what gets installed: the versions ``uv.lock`` pins when the project has a
lock (every group and extra, transitive packages included), else the ``==`` pins of
requirements*.txt and ``[project] dependencies``. pip-audit gets them as a requirements file
oldnew writes, with ``--no-deps --disable-pip``: it resolves and installs nothing and runs no
code of the project's, which is why it is the one gate that keeps the network.

pip-audit offline prints "No known vulnerabilities found" and exits 0 without having checked
anything: here a service that does not answer makes the gate "not run", with why, never
"passed". The service is PyPI's JSON API (pip-audit's default, at a fixed address), or an
OSV-compatible query URL named by ``OLDNEW_AUDIT_OSV_URL`` (a mirror, or a test's server).
"""

from __future__ import annotations

import json
import os
import re
import socket
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from oldnew.deps.errors import DependencyError
from oldnew.deps.manifest import PY_LOCK, PY_MANIFEST, normalise, python_dependencies
from oldnew.deps.python import locked_packages
from oldnew.errors import ConfigurationError
from oldnew.gates.common import (
    GateRun,
    Outcome,
    make_check,
    py_tool,
    stopped,
    tool_version,
)
from oldnew.gates.model import Check, CheckStatus, Diagnostic
from oldnew.sandbox import RunResult
from oldnew.sandbox.files import read_project_text

PYPI_PROBE = "https://pypi.org/pypi/pip/json"
"""What pip-audit's default service (PyPI's JSON API) is probed with before an audit."""
OSV_URL_VARIABLE = "OLDNEW_AUDIT_OSV_URL"
"""An OSV-compatible query URL (``.../v1/query``) to audit with instead of PyPI's service."""

_UNREACHABLE = re.compile(
    r"ConnectionError|Could not connect|Max retries exceeded|Connection refused|"
    r"Name or service not known|Temporary failure in name resolution|timed out",
    re.I,
)
_HTTP_ERROR = re.compile(r"HTTPError: ([^\n]+)")
_NOT_ON_SERVICE = re.compile(r"Dependency not found on PyPI and could not be audited: ([^\n]+)")


# -- the vulnerability service ----------------------------------------------------------------


@dataclass(frozen=True)
class AuditService:
    """The vulnerability service pip-audit asks: PyPI's JSON API, or an OSV query URL."""

    kind: Literal["pypi", "osv"]
    """``pypi`` or ``osv`` (pip-audit's ``--vulnerability-service``)."""
    url: str
    """What is probed: PyPI's JSON document of ``pip``, or the OSV query URL itself."""

    def args(self) -> list[str]:
        """Return pip-audit's arguments that select this service."""
        if self.kind == "osv":
            return ["--vulnerability-service", "osv", "--osv-url", self.url]
        return ["--vulnerability-service", "pypi"]

    def unreachable(self, timeout: float = 5.0) -> str:
        """Return '' when the service answers a query, else why it does not."""
        parts = urllib.parse.urlsplit(self.url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        why = _tcp_reachable(parts.hostname or "", port, timeout)
        if why:
            return why[:300]
        body = None
        if self.kind == "osv":
            query = {"package": {"name": "pip", "ecosystem": "PyPI"}, "version": "0.1"}
            body = json.dumps(query).encode()
        request = urllib.request.Request(self.url, data=body)  # noqa: S310 - http(s) checked
        try:
            with urllib.request.urlopen(request, timeout=timeout) as resp:  # nosec B310
                data = json.loads(resp.read(2_000_000))
        except urllib.error.HTTPError as exc:
            return f"{self.url} answered HTTP {exc.code}"
        except Exception as exc:  # noqa: BLE001 - any failure means: not reachable
            return f"{self.url} is not reachable ({type(exc).__name__}: {exc})"[:300]
        if not isinstance(data, dict) or (self.kind == "pypi" and "info" not in data):
            return f"{self.url} answered without vulnerability data"
        return ""


def audit_service() -> AuditService:
    """Return the service to audit with: ``OLDNEW_AUDIT_OSV_URL`` if set, else PyPI's.

    Raises:
        ConfigurationError: the variable is set to something else than an http(s) URL.

    """
    url = os.environ.get(OSV_URL_VARIABLE, "").strip()
    if url:
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            raise ConfigurationError(
                f"{OSV_URL_VARIABLE} must be an http(s) URL (an OSV '/v1/query' endpoint), "
                f"not {url!r}: fix it or unset it to use PyPI's service"
            )
        return AuditService("osv", url)
    return AuditService("pypi", PYPI_PROBE)


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


# -- what is audited --------------------------------------------------------------------------


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
    text = read_project_text(tree, PY_MANIFEST)
    if text is not None:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError:
            data = {}
        reqs += [str(r) for r in data.get("project", {}).get("dependencies", [])]
    return reqs


def lock_pins(text: str) -> list[tuple[str, str]]:
    """Return the (name, version) pairs a uv.lock's text pins, the project left out.

    Raises:
        DependencyError: kind ``lock_mismatch`` when the lock does not read as a uv lock.

    """
    try:
        packages = locked_packages(text)
    except (AttributeError, TypeError):  # TOML, but not shaped like a uv lock
        packages = [{"name": "", "version": ""}]
    bad = [p["name"] or "?" for p in packages if p["name"] in ("", "None") or not p["version"]]
    if bad:
        raise DependencyError(
            "lock_mismatch",
            f"{PY_LOCK} does not read as a uv lock (no name or version for "
            f"{', '.join(bad[:5])}): delete it and re-lock ('uv lock'), then commit the new lock",
        )
    return sorted({(p["name"], p["version"]) for p in packages})


def _rounds(reqs: list[str]) -> list[list[str]]:
    """Split requirements into lists that name each package once (pip-audit's rule).

    A lock pins two versions of one package when its resolution forks (one per platform or
    Python version): each version is audited, in a list of its own.
    """
    rounds: list[list[str]] = []
    seen: dict[str, int] = {}
    for req in reqs:
        name = normalise(re.split(r"[\s\[<>=!~;]", req.strip(), maxsplit=1)[0])
        n = seen.get(name, 0)
        seen[name] = n + 1
        if n == len(rounds):
            rounds.append([])
        rounds[n].append(req)
    return rounds


def _declared_names(tree: Path) -> set[str]:
    try:
        return {d.name for d in python_dependencies(tree)}
    except DependencyError:
        return set()


def _optional(check: Check) -> Outcome:
    check.required = False
    return check, []


def _not_run(summary: str) -> Outcome:
    return _optional(Check("audit", "not_run", [], None, 0, summary))


# -- the gate ---------------------------------------------------------------------------------


def gate_audit(run: GateRun) -> Outcome:
    """Audit the pinned versions (the lock's, else the requirements') with pip-audit.

    Not required: where the service cannot be reached the gate is "not run" with why, and
    delivery goes on with that said in the report.
    """
    lock = read_project_text(run.tree, PY_LOCK)
    if lock is not None:
        try:
            pins = [f"{name}=={version}" for name, version in lock_pins(lock)]
        except DependencyError as exc:
            diag = Diagnostic("audit", PY_LOCK, 0, exc.message, "lock")
            check = Check(
                "audit", "failed", [], None, 0, f"{PY_LOCK} does not read", required=False
            )
            return check, [diag]
        source = PY_LOCK
        if not pins:
            return _not_run(f"nothing to audit: {PY_LOCK} pins no third-party package")
    else:
        reqs = declared_dependencies(run.tree)
        if not reqs:
            return _not_run("nothing to audit: the project declares no third-party dependencies")
        unpinned = [r for r in reqs if "==" not in r]
        if unpinned:
            return _not_run(
                f"not run: dependencies are not pinned with '==' and there is no {PY_LOCK} "
                f"({', '.join(unpinned[:5])}): lock them ('uv lock') to audit what is installed"
            )
        pins = reqs
        source = "requirements"
    try:
        service = audit_service()
    except ConfigurationError as exc:
        return _not_run(f"not run: {exc}")
    why = service.unreachable()
    if why:
        return _not_run(
            f"not run: the vulnerability service is not reachable ({why}), so none of the "
            f"{len(pins)} pinned packages was checked; pip-audit alone would still print "
            "'No known vulnerabilities found'"
        )
    return _audit(run, pins, source, service)


def _audit(run: GateRun, pins: list[str], source: str, service: AuditService) -> Outcome:
    ver = tool_version("pip-audit")
    deps: list[dict[str, Any]] = []
    runs: list[RunResult] = []
    for i, reqs in enumerate(_rounds(pins)):
        req_file = run.box.home / f"audit-requirements-{i}.txt"
        req_file.write_text("\n".join(reqs) + "\n", encoding="utf-8")
        argv = py_tool("pip_audit", "-r", str(req_file), "--strict", "--no-deps", "--disable-pip")
        argv += ["--progress-spinner", "off", "-f", "json", *service.args()]
        argv += ["--cache-dir", str(run.box.home / "pip-audit-cache")]
        # The one gate with the network runs no project code: pip-audit from oldnew's
        # environment (``-I``: the project is not on its sys.path), on a list oldnew wrote.
        result = run.box.run(argv, timeout=run.timeout, network=True, cwd=run.box.home)
        runs.append(result)
        if result.killed:
            check, diags = stopped("audit", result, ver)
            check.required = False
            return check, diags
        try:
            deps += json.loads(result.stdout)["dependencies"]
        except (json.JSONDecodeError, KeyError, TypeError):
            return _optional(make_check("audit", "not_run", result, no_report_reason(result), ver))
    declared = _declared_names(run.tree)
    diags = [_finding(d, v, source, declared) for d in deps for v in d.get("vulns") or []]
    status: CheckStatus = "failed" if diags else "passed"
    summary = (
        f"{len(deps)} packages pinned in {source} audited ({service.kind}), {len(diags)} vulns"
    )
    check = make_check("audit", status, runs[-1], summary, ver)
    check.required = False
    check.metrics = {"packages": len(deps), "vulns": len(diags), "source": source}
    return check, diags


def no_report_reason(result: RunResult) -> str:
    """Return why pip-audit gave no report (a not-run summary: nothing was checked)."""
    text = result.stderr or result.output
    missing = _NOT_ON_SERVICE.findall(text)
    if missing:
        return (
            f"not run: the service knows nothing of {'; '.join(missing[:5])}, so the audit "
            "would be incomplete (a package from another index than PyPI?); audit with an OSV "
            f"service ({OSV_URL_VARIABLE}) that covers it"
        )
    http = _HTTP_ERROR.search(text)
    if http is not None:
        return (
            f"not run: the vulnerability service failed during the audit ({http.group(1)[:200]})"
            ", so nothing was checked"
        )
    if _UNREACHABLE.search(text):
        return "not run: the vulnerability service stopped answering during the audit"
    tail = (text.strip().splitlines() or [""])[-1][-300:]
    return f"not run: pip-audit gave no report ({tail or 'no output'})"


def _finding(
    dep: dict[str, Any], vuln: dict[str, Any], source: str, declared: set[str]
) -> Diagnostic:
    name, version = str(dep.get("name")), str(dep.get("version", ""))
    fixes = [str(f) for f in vuln.get("fix_versions") or []]
    aliases = [str(a) for a in vuln.get("aliases") or []]
    advisory = str(vuln.get("id")) + (f" (also {', '.join(aliases)})" if aliases else "")
    if not fixes:
        todo = f"no fixed version is published: replace {name} or leave it out"
    elif normalise(name) in declared:
        todo = (
            f"upgrade to {fixes[0]} or later: declare '{name}>={fixes[0]}' in {PY_MANIFEST} "
            "and re-lock ('uv lock')"
        )
    else:
        todo = (
            f"upgrade to {fixes[0]} or later: it comes with another package; declare "
            f"'{name}>={fixes[0]}' in {PY_MANIFEST} [project] dependencies (or upgrade the "
            "package that requires it) and re-lock ('uv lock')"
        )
    text = str(vuln.get("description") or "")[:200]
    message = f"{name} {version} (pinned in {source}) has the advisory {advisory}"
    message += f": {text}. " if text else ". "
    return Diagnostic("audit", source, 0, message + todo, str(vuln.get("id")))
