"""What the milestone gates check on a running app: the scope's pages and API endpoints."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

DEFAULT_PAGES = ("/",)
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_ENDPOINT = re.compile(r"^\s*(?:([A-Za-z]+)\s+)?(/\S*)\s*$")


@dataclass(frozen=True)
class WebTargets:
    """The pages (URL paths) and endpoints (``"GET /api/todos"``) the gates visit."""

    pages: tuple[str, ...] = DEFAULT_PAGES
    endpoints: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, list[str]]:
        """Return the targets as JSON-ready data (evidence, reuse keys)."""
        return {"pages": list(self.pages), "endpoints": list(self.endpoints)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WebTargets:
        """Rebuild targets from :meth:`to_dict`'s data (recorded evidence)."""
        pages = tuple(str(p) for p in data.get("pages") or ()) or DEFAULT_PAGES
        return cls(pages, tuple(str(e) for e in data.get("endpoints") or ()))


def page_route(route: str) -> str | None:
    """Return a page's URL path (``/about``), or None when ``route`` is none."""
    found = _ENDPOINT.match(route or "")
    if not found or (found[1] and found[1].upper() != "GET"):
        return None
    return found[2].split("#", 1)[0] or "/"


def endpoint_route(route: str) -> str | None:
    """Return an endpoint as ``"METHOD /path"`` (GET when no method is named), else None."""
    found = _ENDPOINT.match(route or "")
    if not found:
        return None
    method = (found[1] or "GET").upper()
    return f"{method} {found[2]}" if method in METHODS else None


def _unique(items: Iterable[str | None]) -> tuple[str, ...]:
    out: list[str] = []
    for item in items:
        if item and item not in out:
            out.append(item)
    return tuple(out)


def _routes(items: Any) -> list[str]:
    if not isinstance(items, list):
        return []
    routes = []
    for item in items:
        route = item.get("route") if isinstance(item, dict) else getattr(item, "route", None)
        if isinstance(route, str):
            routes.append(route)
    return routes


def from_scope(scope: dict[str, Any]) -> WebTargets:
    """Return the routes of ``scope``'s pages and API endpoints (a ``Scope.model_dump()``).

    Items without a route are left out; a scope naming no page gets ``("/",)``.
    """
    pages = _unique(page_route(r) for r in _routes(scope.get("pages")))
    endpoints = _unique(endpoint_route(r) for r in _routes(scope.get("api_endpoints")))
    return WebTargets(pages or DEFAULT_PAGES, endpoints)
