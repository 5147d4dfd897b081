"""An npm registry on this machine: tarballs of tiny packages, written here, served locally.

Tests and the dependency benchmark lock and install JavaScript dependencies against it instead
of the public registry. ``LocalRegistry.package`` writes a real npm tarball (``package/``
with its package.json and index.js, gzipped) and records the version in the package's
packument with its ``dist.integrity`` (sha512) and ``dist.shasum`` (sha1), as npm checks them;
:func:`serve` answers what ``npm install`` and ``npm ci`` ask for on 127.0.0.1: the packument
``GET /<name>`` (``/@scope%2fname`` for a scoped one) and the tarball it names. Anything else
is a 404, as from a registry that does not serve it; audits too, until ``advisory`` records
one (then ``POST /-/npm/v1/security/advisories/bulk`` answers as npm's registry does).
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import http.server
import io
import json
import tarfile
import urllib.parse
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from oldnew.bench.localhttp import serving


def _tarball(manifest: Mapping[str, Any], files: Mapping[str, str]) -> bytes:
    """Return an npm package tarball: ``package/<path>`` entries, gzipped, fixed times."""
    members = {"package.json": json.dumps(manifest, indent=2) + "\n", **files}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for path, text in sorted(members.items()):
            data = text.encode()
            item = tarfile.TarInfo(f"package/{path}")
            item.size, item.mode, item.mtime = len(data), 0o644, 499162500
            archive.addfile(item, io.BytesIO(data))
    return gzip.compress(buffer.getvalue(), mtime=0)


class LocalRegistry:
    """A folder of packuments (``<name>.json``) and tarballs (``tarballs/``), served by URL.

    Tarball URLs in the packuments are written when served (the server's own address), so the
    folder does not depend on the port it is served on.
    """

    def __init__(self, root: Path) -> None:
        """Use (or start) the registry folder ``root``."""
        self.root = Path(root)
        (self.root / "tarballs").mkdir(parents=True, exist_ok=True)
        self.requests: list[str] = []
        """``"GET /path"`` of every request served, in order (what npm asked for)."""
        self.advisories: dict[str, list[dict[str, Any]]] | None = None
        """Security advisories by package name; None: the registry serves no audits."""

    def advisory(self, name: str, vulnerable: str, severity: str = "high") -> None:
        """Record that versions ``vulnerable`` (a range) of ``name`` have a known flaw.

        ``severity`` is npm's: low, moderate, high or critical. The first call turns on the
        audit endpoint (``serve_audits`` with no advisory: an audit that finds nothing).
        """
        advisories = self.serve_audits()
        advisories.setdefault(name, []).append(
            {
                "id": 1000 + sum(map(len, advisories.values())),
                "url": f"https://example.invalid/advisories/{name}",
                "title": f"A test flaw in {name}",
                "severity": severity,
                "vulnerable_versions": vulnerable,
                "cwe": ["CWE-1333"],
                "cvss": {"score": 7.5, "vectorString": None},
            }
        )

    def serve_audits(self) -> dict[str, list[dict[str, Any]]]:
        """Answer audits (with the advisories recorded, none at first); return them."""
        if self.advisories is None:
            self.advisories = {}
        return self.advisories

    def package(
        self,
        name: str,
        version: str,
        *,
        dependencies: Mapping[str, str] | None = None,
        peer: Mapping[str, str] | None = None,
        scripts: Mapping[str, str] | None = None,
        code: str | None = None,
        files: Mapping[str, str] | None = None,
    ) -> Path:
        """Publish ``name@version`` (index.js exports its name and version unless ``code``).

        ``dependencies`` and ``peer`` (peerDependencies) are version ranges by name;
        ``scripts`` are its npm scripts (an ``install`` script to prove it never runs).
        """
        manifest: dict[str, Any] = {"name": name, "version": version, "main": "index.js"}
        for field, table in (
            ("dependencies", dependencies),
            ("peerDependencies", peer),
            ("scripts", scripts),
        ):
            if table:
                manifest[field] = dict(table)
        source = code or f"module.exports = {{ name: {name!r}, version: {version!r} }};\n"
        data = _tarball(manifest, {"index.js": source, **(files or {})})
        filename = f"{name.replace('/', '-').lstrip('@')}-{version}.tgz"
        path = self.root / "tarballs" / filename
        path.write_bytes(data)
        entry = dict(manifest)
        if scripts and any(s in scripts for s in ("preinstall", "install", "postinstall")):
            entry["hasInstallScript"] = True
        entry["dist"] = {
            "tarball": f"tarballs/{filename}",
            "shasum": hashlib.sha1(data, usedforsecurity=False).hexdigest(),
            "integrity": "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode(),
        }
        doc = self.packument(name) or {"name": name, "dist-tags": {}, "versions": {}}
        doc["versions"][version] = entry
        doc["dist-tags"]["latest"] = max(doc["versions"], key=_semver_key)
        self._packument_path(name).write_text(json.dumps(doc, indent=1), encoding="utf-8")
        return path

    def packument(self, name: str) -> dict[str, Any] | None:
        """Return the stored packument of ``name`` (relative tarball paths), None if unknown."""
        path = self._packument_path(name)
        if not path.is_file():
            return None
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return data

    def _packument_path(self, name: str) -> Path:
        return self.root / f"{urllib.parse.quote(name, safe='@')}.json"


def _semver_key(version: str) -> tuple[int, ...]:
    core = version.split("-", 1)[0].split("+", 1)[0]
    return tuple(int(p) if p.isdigit() else 0 for p in core.split("."))


@contextlib.contextmanager
def serve(registry: LocalRegistry) -> Iterator[str]:
    """Serve ``registry`` over HTTP on 127.0.0.1 while the block runs; yield its URL.

    Each request's method and path is appended to ``registry.requests``.
    """
    handler = type("_Handler", (_RegistryHandler,), {"registry": registry})
    with serving(handler) as url:
        yield url


class _RegistryHandler(http.server.BaseHTTPRequestHandler):
    registry: LocalRegistry

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        """Answer a packument or a tarball; 404 for anything else."""
        self.registry.requests.append(f"GET {self.path}")
        path = urllib.parse.urlsplit(self.path).path.lstrip("/")
        if path.startswith("tarballs/") and "/" not in path[len("tarballs/") :]:
            file = self.registry.root / path
            if file.is_file():
                self._send(200, file.read_bytes(), "application/octet-stream")
                return
        elif path and not path.startswith("-/"):
            doc = self.registry.packument(urllib.parse.unquote(path))
            if doc is not None:
                base = f"http://{self.headers.get('Host', '127.0.0.1')}/"
                for entry in doc["versions"].values():
                    entry["dist"]["tarball"] = base + entry["dist"]["tarball"]
                self._send(200, json.dumps(doc).encode(), "application/json")
                return
        self._send(404, b'{"error":"Not found"}', "application/json")

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        """Answer a bulk audit when audits are served; 404 for anything else (logins)."""
        self.registry.requests.append(f"POST {self.path}")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        advisories = self.registry.advisories
        path = urllib.parse.urlsplit(self.path).path
        if advisories is None or path != "/-/npm/v1/security/advisories/bulk":
            self._send(404, b'{"error":"Not found"}', "application/json")
            return
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        try:
            asked = json.loads(body or b"{}")
        except ValueError:
            self._send(400, b'{"error":"Bad request"}', "application/json")
            return
        found = {n: advisories[n] for n in asked if n in advisories}
        self._send(200, json.dumps(found).encode(), "application/json")

    def _send(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib's name
        """Say nothing per request."""
