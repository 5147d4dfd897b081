"""oldnew's settings from a host's context: the one rule every node reads them by.

A host LangGraph app adds oldnew's compiled graph as a node; the run's ``runtime.context`` is
then the host's. :func:`context_of` turns whatever it carries into oldnew's
:class:`~oldnew.context.Context`, or says what is missing and how to pass it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from typing import Any

from pydantic import BaseModel

from oldnew.context import Context
from oldnew.errors import ConfigurationError

HOST_KEY = "oldnew"
"""The attribute or key of a host's context that holds oldnew's settings."""
SETTINGS = frozenset({f.name for f in fields(Context)} | {"gates"})
"""The names a settings mapping may use: Context's fields and the former ``gates``."""
HOW = (
    "pass oldnew's settings as the host context's 'oldnew' attribute or key (an "
    "oldnew.Context or a dict of its settings), or give the host context fields named like "
    "oldnew's (workspace, model, ...)"
)


def context_of(value: object) -> Context:
    """Return oldnew's Context from what a run's ``runtime.context`` carries.

    Taken, in this order: nothing (the defaults, with ``OLDNEW_*`` variables); an oldnew
    Context; a host context whose ``oldnew`` attribute or key holds a Context or a dict of
    settings; a dict of oldnew's settings (a server run's JSON context); a host dataclass or
    Pydantic model, whose fields named like oldnew's are taken and the others left alone.

    Raises:
        ConfigurationError: the value holds none of oldnew's settings, or a dict names
            settings oldnew does not have; the message says how to pass them.
        UsageError: a setting is outside what it allows (as when a Context is made).

    """
    if value is None:
        return Context()
    if isinstance(value, Context):
        return value
    nested = value.get(HOST_KEY) if isinstance(value, Mapping) else getattr(value, HOST_KEY, None)
    if nested is not None:
        if isinstance(nested, Context):
            return nested
        if isinstance(nested, Mapping):
            return _from_settings(dict(nested), f"the host context's {HOST_KEY!r}")
        raise ConfigurationError(
            f"the host context's {HOST_KEY!r} is a {type(nested).__name__}: {HOW}"
        )
    if isinstance(value, Mapping):
        return _from_settings(dict(value), "the run's context")
    shared = _shared_fields(value)
    if not shared:
        what = type(value).__name__
        raise ConfigurationError(
            f"the run's context ({what}) carries none of oldnew's settings (workspace, "
            f"model, ...): {HOW}"
        )
    return Context(**shared)


def _shared_fields(value: object) -> dict[str, Any]:
    """Return a host dataclass's or model's fields that oldnew has (none for other objects)."""
    if isinstance(value, BaseModel):
        names = list(type(value).model_fields)
    elif is_dataclass(value) and not isinstance(value, type):
        names = [f.name for f in fields(value)]
    else:
        return {}
    # Read, never copied: a host's context may hold a client, a connection or a lock.
    return {k: getattr(value, k) for k in names if k in SETTINGS}


def _from_settings(settings: dict[str, Any], where: str) -> Context:
    unknown = sorted(set(settings) - SETTINGS)
    if unknown:
        raise ConfigurationError(
            f"{where} names {', '.join(map(repr, unknown))}, not settings of oldnew: {HOW}"
        )
    return Context(**settings)
