"""A package index on this machine: wheels of tiny packages, written here, served locally.

Tests, the dependency benchmark and the offline example resolve and install against it instead
of the public index. ``LocalIndex.wheel`` writes a real wheel (a zip with METADATA, WHEEL and
RECORD), ``sdist`` a source-only release that setuptools builds; the index is a PEP 503
"simple" folder that uv reads as ``file://`` URL, and :func:`serve` puts it on 127.0.0.1 over
HTTP.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import http.server
import io
import re
import tarfile
import threading
import urllib.parse
import zipfile
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from oldnew.bench.localhttp import serving


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _record_hash(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


class LocalIndex:
    """A simple-API folder of packages: ``root/<name>/index.html`` lists its files."""

    def __init__(self, root: Path, *, metadata: bool = False) -> None:
        """Use (or start) the index folder ``root``.

        ``metadata``: publish each wheel's METADATA beside it (PEP 658, as PyPI does), so that
        a resolver reads a package's requirements without downloading the wheel.
        """
        self.root = Path(root)
        self.metadata = metadata
        self.root.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        """Return the index as a ``file://`` URL (what ``--package-index`` takes)."""
        return self.root.resolve().as_uri()

    def wheel(
        self,
        name: str,
        version: str,
        files: Mapping[str, str],
        requires: Sequence[str] = (),
        *,
        padding: int = 0,
    ) -> Path:
        """Write a pure-Python wheel of ``files`` (path -> text) that requires ``requires``.

        ``padding`` adds a data file of that many bytes (to give a package some size).
        """
        dist = re.sub(r"[-.]+", "_", name)
        info = f"{dist}-{version}.dist-info"
        meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        meta += "".join(f"Requires-Dist: {r}\n" for r in requires)
        entries = {p: t.encode() for p, t in files.items()}
        if padding:
            entries[f"{dist}_data/blob.bin"] = bytes(padding)
        entries[f"{info}/METADATA"] = meta.encode()
        entries[f"{info}/WHEEL"] = (
            b"Wheel-Version: 1.0\nGenerator: oldnew\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        record = [f"{p},sha256={_record_hash(d)},{len(d)}" for p, d in entries.items()]
        entries[f"{info}/RECORD"] = ("\n".join([*record, f"{info}/RECORD,,"]) + "\n").encode()
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for path, data in entries.items():
                archive.writestr(path, data)
        filename = f"{dist}-{version}-py3-none-any.whl"
        if self.metadata:
            folder = self.root / _norm(name)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{filename}.metadata").write_bytes(entries[f"{info}/METADATA"])
        return self._add(name, filename, buffer.getvalue())

    def sdist(
        self,
        name: str,
        version: str,
        files: Mapping[str, str] | None = None,
        *,
        setup_py: str | None = None,
    ) -> Path:
        """Write a source-only release of ``files`` (path -> text), built by setuptools.

        Its ``setup.py`` is ``setup_py`` when given (a build that fails, or that tries the
        network), else one that packages ``files``' top-level packages.
        """
        base = f"{name}-{version}"
        setup = setup_py or (
            "from setuptools import find_packages, setup\n"
            f"setup(name={name!r}, version={version!r}, packages=find_packages())\n"
        )
        members = {
            f"{base}/PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
            f"{base}/setup.py": setup,
            **{f"{base}/{path}": text for path, text in (files or {}).items()},
        }
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
            for path, text in members.items():
                data = text.encode()
                item = tarfile.TarInfo(path)
                item.size = len(data)
                archive.addfile(item, io.BytesIO(data))
        return self._add(name, f"{base}.tar.gz", buffer.getvalue())

    def _add(self, name: str, filename: str, data: bytes) -> Path:
        folder = self.root / _norm(name)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / filename
        path.write_bytes(data)
        links = "".join(
            f'<a href="{f.name}#sha256={_sha256(f)}"{_metadata_attributes(f)}>{f.name}</a>\n'
            for f in sorted(folder.iterdir())
            if f.name != "index.html" and f.suffix != ".metadata"
        )
        (folder / "index.html").write_text(f"<html><body>\n{links}</body></html>\n")
        names = sorted(d.name for d in self.root.iterdir() if d.is_dir())
        body = "".join(f'<a href="{n}/">{n}</a>\n' for n in names)
        (self.root / "index.html").write_text(f"<html><body>\n{body}</body></html>\n")
        return path


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _metadata_attributes(path: Path) -> str:
    """Return the PEP 714/658 attributes of a file whose METADATA is published beside it."""
    meta = path.with_name(f"{path.name}.metadata")
    if not meta.is_file():
        return ""
    digest = f"sha256={_sha256(meta)}"
    return f' data-core-metadata="{digest}" data-dist-info-metadata="{digest}"'


@contextlib.contextmanager
def serve(index: LocalIndex, requests: Counter[str] | None = None) -> Iterator[str]:
    """Serve ``index`` over HTTP on 127.0.0.1 while the block runs; yield its URL.

    ``requests``, when given, counts every request by its URL path (``/name/file.whl``): what
    a client actually fetched (the dependency benchmark's evidence of what was downloaded).
    """
    handler = functools.partial(
        _QuietHandler, directory=str(index.root), requests=requests, lock=threading.Lock()
    )
    with serving(handler) as url:
        yield url


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    # Keep-alive and no Nagle, as an index server does: over HTTP/1.0 every request is a new
    # connection, and a delayed ACK stalled each by up to 40 ms (a cold lock of 40 packages
    # took 0.2 s or 2.2 s by chance; now 0.15 s every time).
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def __init__(
        self,
        *args: Any,
        requests: Counter[str] | None = None,
        lock: threading.Lock | None = None,
        **kwargs: Any,
    ) -> None:
        self._requests, self._lock = requests, lock or threading.Lock()
        super().__init__(*args, **kwargs)

    def parse_request(self) -> bool:
        """Read the request line and headers, and count the request by its path."""
        ok = super().parse_request()
        if ok and self._requests is not None:
            path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
            with self._lock:
                self._requests[path] += 1
        return ok

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib's name
        """Say nothing per request."""
