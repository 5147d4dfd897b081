"""Sort every failure into one class, from what is known for sure first.

Exception types and HTTP status codes come first, then the validator's parsed diagnostics;
only when both are silent may a model be asked (the caller does that, with the text this
module gives it). What each class is:

- transient: timeout, rate limit, 5xx, connection reset
- recoverable: syntax, type or import error, failing test, unparseable model output
- configuration: missing environment variable, invalid API key
- design_flaw: circular dependency, impossible constraint
- external_blocker: service unavailable, package not found
- context_overflow: prompt too large

What happens to each (retried with backoff, back to the model, to a person, to the planner)
is its row in ``recovery.policy``.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal

from pydantic import ValidationError

from oldnew.errors import CallTimeout, ConfigurationError, ModelOutputError, PathViolation
from oldnew.recovery.policy import FailureClass

_OVERFLOW = re.compile(
    r"context[_ ]length|maximum context|too many tokens|prompt is too long|"
    r"context window|reduce the length",
    re.IGNORECASE,
)
_MISSING_MODULE = re.compile(
    r"No module named '([\w.]+)'|module '([\w.]+)' cannot be imported: it is not a file of the "
    r"project"
)
_MISSING_ENV = re.compile(
    r"KeyError: '([A-Z][A-Z0-9_]{2,})'|environment variable ([A-Z][A-Z0-9_]+)"
    r"|([A-Z][A-Z0-9_]*_(?:KEY|TOKEN|SECRET|PASSWORD)) (?:is )?not set"
)
_UNAVAILABLE = re.compile(
    r"Connection refused|Name or service not known|"
    r"Temporary failure in name resolution|503 Service Unavailable",
    re.IGNORECASE,
)
_DESIGN = re.compile(
    r"circular (?:dependency|import)|impossible constraint|"
    r"partially initialized module",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Classification:
    """What kind of failure this is, why we think so, and when to retry (if at all)."""

    cls: FailureClass
    reason: str
    source: Literal["exception", "http", "diagnostic", "model", "default"]
    retry_after: float | None = None
    detail: str = ""


def retry_after_seconds(headers: Any) -> float | None:
    """Return the wait a response asks for (``retry-after-ms`` or ``Retry-After``)."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _http(status: int, message: str, headers: Any) -> Classification:
    wait = retry_after_seconds(headers)
    if status == 429:
        return Classification("transient", "rate limited (429)", "http", wait)
    if status in (401, 403):
        return Classification(
            "configuration",
            f"the API key was refused ({status}): set a valid key (OLDNEW_<ROLE>_API_KEY, "
            "OLDNEW_API_KEY or the provider's own, e.g. OPENAI_API_KEY)",
            "http",
            detail=message,
        )
    if status == 404:
        return Classification(
            "configuration",
            "the model or endpoint was not found (404): check the model name and the base URL "
            "(OLDNEW_<ROLE>_BASE_URL, OLDNEW_BASE_URL or the provider's own, e.g. OPENAI_BASE_URL)",
            "http",
            detail=message,
        )
    if status in (400, 413, 422) and _OVERFLOW.search(message):
        return Classification(
            "context_overflow", "the prompt is too large for the model", "http", detail=message
        )
    if status == 413:
        return Classification("context_overflow", "the request is too large (413)", "http")
    if status >= 500:
        return Classification("transient", f"server error ({status})", "http", wait)
    return Classification(
        "recoverable", f"the request was rejected ({status})", "http", detail=message
    )


def classify(exc: BaseException) -> Classification:
    """Classify an exception raised while calling a model or a tool."""
    import openai

    if isinstance(exc, openai.APIStatusError):
        return _http(exc.status_code, str(exc), exc.response.headers)
    status = _status_of(exc)
    if status is not None:  # another provider's SDK (Anthropic, Ollama, Groq, ...)
        response = getattr(exc, "response", None)
        return _http(status, str(exc), getattr(response, "headers", None) or {})
    if isinstance(exc, CallTimeout):
        return Classification("transient", f"timed out: {exc}", "exception")
    if isinstance(exc, openai.APITimeoutError | TimeoutError | asyncio.TimeoutError) or (
        _named(exc, "Timeout")
    ):
        return Classification(
            "transient",
            "timed out: the model did not answer within model_timeout; raise "
            "OLDNEW_MODEL_TIMEOUT for a slow model or provider",
            "exception",
        )
    if isinstance(exc, openai.APIConnectionError | ConnectionError) or _named(
        exc, "ConnectionError", "ConnectError", "TransportError", "NetworkError"
    ):
        return Classification("transient", f"connection failed ({type(exc).__name__})", "exception")
    if isinstance(exc, ConfigurationError):
        return Classification("configuration", str(exc), "exception")
    if isinstance(exc, ModelOutputError | PathViolation | ValidationError):
        return Classification(
            "recoverable", f"the model's output could not be used: {exc}", "exception"
        )
    if isinstance(exc, json.JSONDecodeError):
        return Classification(
            "transient", "the server sent a malformed response", "exception", detail=str(exc)
        )
    if _OVERFLOW.search(str(exc)):
        return Classification(
            "context_overflow",
            "the prompt is too large for the model",
            "exception",
            detail=str(exc),
        )
    return Classification("recoverable", f"{type(exc).__name__}: {exc}", "default")


def _status_of(exc: BaseException) -> int | None:
    """Return the HTTP status an SDK's error carries (``status_code``), if it is one."""
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and not isinstance(status, bool) and 100 <= status <= 599:
        return status
    return None


def _named(exc: BaseException, *names: str) -> bool:
    """Say whether ``exc``'s class or one of its bases ends with one of ``names``.

    Provider SDKs (anthropic, groq, httpx under most of them) raise errors of their own whose
    names say what they are (``APIConnectionError``, ``ReadTimeout``, ``ConnectError``):
    oldnew retries them without importing every SDK.
    """
    return any(cls.__name__.endswith(names) for cls in type(exc).__mro__)


def _missing_package(text: str, own: set[str]) -> Classification | None:
    for groups in _MISSING_MODULE.findall(text):
        name = next(g for g in groups if g)
        if name.split(".")[0] not in own:
            return Classification(
                "recoverable",
                f"module {name!r} is not installed: the project must declare the package that "
                "provides it",
                "diagnostic",
                detail=name,
            )
    return None


def _missing_variable(text: str, own: set[str]) -> Classification | None:
    env = _MISSING_ENV.search(text)
    if env is None:
        return None
    var = next(g for g in env.groups() if g)
    return Classification(
        "configuration", f"the environment variable {var} is not set", "diagnostic", detail=var
    )


def _structure(text: str, own: set[str]) -> Classification | None:
    if not _DESIGN.search(text):
        return None
    return Classification(
        "design_flaw",
        "the code's structure cannot work as planned (circular dependency)",
        "diagnostic",
    )


def _unreachable(text: str, own: set[str]) -> Classification | None:
    if not _UNAVAILABLE.search(text):
        return None
    return Classification(
        "external_blocker", "a service the code needs is unreachable", "diagnostic"
    )


DiagnosticRule = Callable[[str, set[str]], Classification | None]
"""A classifier rule: the diagnostics' text and the project's own modules -> a class, or None."""
RULES: list[DiagnosticRule] = [_missing_package, _missing_variable, _structure, _unreachable]
"""The rules for failed validations, tried in order; the first that answers wins."""


def classify_diagnostics(
    diagnostics: list[str], project_modules: set[str] | None = None
) -> Classification | None:
    """Classify a failed validation from its rendered diagnostics; None when they are empty.

    A missing third-party module (not one of ``project_modules``) is the coder's to declare
    (the dependencies step installs what the project declares);
    a missing environment variable is configuration; a circular import is a design flaw;
    everything no rule of ``RULES`` claims the model can fix.
    """
    if not diagnostics:
        return None
    text = "\n".join(diagnostics)
    own = project_modules or set()
    for rule in RULES:
        found = rule(text, own)
        if found is not None:
            return found
    return Classification("recoverable", "the code fails its checks", "diagnostic")
