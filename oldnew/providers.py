"""Chat models of any provider, through LangChain's own ``init_chat_model``.

A spec is ``provider:model`` (``anthropic:claude-sonnet-4-5``, ``ollama:llama3.1:8b``) or a
bare model name whose provider LangChain infers (``gpt-4o-mini``, ``claude-3-5-sonnet-latest``).
The providers of :data:`PROVIDERS` are built the way oldnew needs them: no retries of their
own (oldnew's RetryPolicy retries), the run's ``model_timeout``, and the optional extra that
installs their package named when it is missing. Any other provider LangChain knows works
too once its package is installed, with that package's own defaults.

Where a role's model is served, and with which key (:func:`endpoint`), first match wins:

- base URL: the role's ``<role>_base_url`` (``OLDNEW_<ROLE>_BASE_URL``), then the run's
  ``base_url`` (``OLDNEW_BASE_URL``), then the provider's own variable (``OPENAI_BASE_URL``).
- API key: ``OLDNEW_<ROLE>_API_KEY``, then ``OLDNEW_API_KEY``, then the provider's own
  variable (``OPENAI_API_KEY``). Keys are read from the environment when the model is made:
  never a setting, so never in a run's context, run.json or checkpoints.

A server on this machine or a private network (a loopback or private address, ``localhost``,
a ``.local`` or ``.internal`` name, a one-label host such as a compose service) needs no key:
with none set, the placeholder :data:`NO_KEY` is sent, which Ollama, vLLM and LM Studio
ignore. Elsewhere a missing key is a ConfigurationError before any work.
"""

from __future__ import annotations

import importlib
import ipaddress
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
from langchain_core.language_models import BaseChatModel

from oldnew.context import Role
from oldnew.errors import ConfigurationError

_HOSTNAME = re.compile(r"[a-z0-9_.:-]+")
"""What a host name or address is made of (an IPv6 address has colons)."""

NO_KEY = "EMPTY"
"""The API key sent to a local server when none is set (vLLM's convention; ignored)."""


@dataclass(frozen=True)
class Provider:
    """How oldnew builds one provider's chat model, and what a person installs for it."""

    package: str
    """The pip package of its LangChain integration."""
    extra: str | None
    """oldnew's optional extra that installs the package (None: a core dependency)."""
    key_variable: str | None
    """The provider's own API key variable; None: it needs no key (Ollama) or uses a
    credential chain of its own (AWS, Google Cloud)."""
    base_url_variable: str | None = None
    """The provider's own base URL variable, if it has one."""
    openai_client: bool = False
    """Built on the ``openai`` SDK: it gets an async HTTP client of the running event loop."""
    options: Callable[[str | None, str | None, float], dict[str, Any]] | None = None
    """Keyword arguments for (base URL, key, timeout); None: the common ones (see
    :func:`_common_options`)."""


def _common_options(base_url: str | None, key: str | None, timeout: float) -> dict[str, Any]:
    """Return the arguments most LangChain chat models take under these names."""
    # No retries of the SDK's own: oldnew's RetryPolicy retries, honouring Retry-After.
    out: dict[str, Any] = {"max_retries": 0, "timeout": timeout}
    if base_url:
        out["base_url"] = base_url
    if key:
        out["api_key"] = key
    return out


class BearerAuth(httpx.Auth):
    """Sends a bearer token; its repr (in a model's repr, a trace) never shows the key."""

    def __init__(self, key: str) -> None:
        """Send ``key`` as the bearer token of every request."""
        self._key = key

    def auth_flow(self, request: httpx.Request) -> Any:
        """Add the Authorization header."""
        request.headers["Authorization"] = f"Bearer {self._key}"
        yield request

    def __repr__(self) -> str:
        """Say what it is, not the key."""
        return "BearerAuth(key=***)"


def _ollama_options(base_url: str | None, key: str | None, timeout: float) -> dict[str, Any]:
    """Return ChatOllama's arguments: its httpx client takes the timeout and any key."""
    client: dict[str, Any] = {"timeout": timeout}
    if key:  # an Ollama behind a proxy that checks a bearer token
        client["auth"] = BearerAuth(key)
    return {"client_kwargs": client} | ({"base_url": base_url} if base_url else {})


PROVIDERS: dict[str, Provider] = {
    "openai": Provider(
        "langchain-openai", None, "OPENAI_API_KEY", "OPENAI_BASE_URL", openai_client=True
    ),
    "anthropic": Provider(
        "langchain-anthropic", "anthropic", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"
    ),
    "ollama": Provider("langchain-ollama", "ollama", None, "OLLAMA_HOST", options=_ollama_options),
    "google_genai": Provider("langchain-google-genai", "google", "GOOGLE_API_KEY"),
    "google_vertexai": Provider("langchain-google-vertexai", "vertexai", None),
    "mistralai": Provider("langchain-mistralai", "mistral", "MISTRAL_API_KEY"),
    "groq": Provider("langchain-groq", "groq", "GROQ_API_KEY"),
    "deepseek": Provider("langchain-deepseek", "deepseek", "DEEPSEEK_API_KEY", openai_client=True),
    "xai": Provider("langchain-xai", "xai", "XAI_API_KEY", openai_client=True),
    "bedrock_converse": Provider("langchain-aws", "aws", None),
}
"""The providers oldnew builds itself (retries, timeout) and names an extra for; pyproject.toml's
``[project.optional-dependencies]`` has one extra per ``extra`` here (a test checks it)."""


@dataclass(frozen=True)
class Endpoint:
    """Where one role's model is served and the key it sends; the key is never saved."""

    base_url: str | None
    """The base URL given to the model; None: the provider's default."""
    key: str | None
    """The API key given to the model; None: the provider reads its own variable."""


def endpoint(provider: str, role: Role | None, base_url: str | None, *, spec: str = "") -> Endpoint:
    """Return the base URL and key ``role`` uses with ``provider``.

    ``base_url`` is the run's setting for the role (its own, else the run-wide one; see
    ``Context.model_base_url``). A local server with no key set gets :data:`NO_KEY`.

    Raises:
        ConfigurationError: the provider needs a key and none is set for a remote endpoint.
    """
    row = PROVIDERS.get(provider)
    ours = bool(base_url)  # set by oldnew's own setting, not the provider's variable
    if not base_url and row is not None and row.base_url_variable:
        base_url = os.environ.get(row.base_url_variable) or None
    key = _key(role)
    if not key and ours and base_url and is_local(base_url):
        # A local server oldnew was pointed at gets no key of the provider's own (a real
        # OPENAI_API_KEY is not sent to a model on this machine): its OLDNEW key, or none.
        return Endpoint(base_url, NO_KEY if row is not None and row.key_variable else None)
    if key or row is None or row.key_variable is None or os.environ.get(row.key_variable):
        return Endpoint(base_url, key)
    if base_url and is_local(base_url):
        return Endpoint(base_url, NO_KEY)
    names = [f"OLDNEW_{role.upper()}_API_KEY"] if role else []
    names += ["OLDNEW_API_KEY", row.key_variable]
    raise ConfigurationError(
        f"model '{spec or provider}' needs an API key: set {', '.join(names[:-1])} or "
        f"{names[-1]} (a server on this machine or a private network needs none: set "
        "OLDNEW_BASE_URL, or OLDNEW_<ROLE>_BASE_URL, to its address)"
    )


def _key(role: Role | None) -> str | None:
    """Return the key set for ``role``: its own variable, then the run-wide one."""
    names = ([f"OLDNEW_{role.upper()}_API_KEY"] if role else []) + ["OLDNEW_API_KEY"]
    return next((os.environ[n] for n in names if os.environ.get(n)), None)


def is_local(base_url: str) -> bool:
    """Say whether ``base_url`` is on this machine or a private network (no key needed).

    Decided from the URL alone, with no DNS lookup: a loopback, private or link-local
    address, ``localhost``, a ``.localhost``/``.local``/``.internal`` name, or a one-label
    host (a compose service such as ``http://vllm:8000/v1``).
    """
    host = (urlsplit(base_url if "//" in base_url else f"//{base_url}").hostname or "").lower()
    if not _HOSTNAME.fullmatch(host):
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return (
            host == "localhost"
            or "." not in host
            or host.endswith((".localhost", ".local", ".internal"))
        )
    return address.is_loopback or address.is_private or address.is_link_local


def split_spec(spec: str) -> tuple[str, str]:
    """Return (provider, model) of a spec: ``provider:model``, or a bare name LangChain infers.

    Raises:
        ConfigurationError: the provider is not one LangChain knows, or cannot be inferred.
    """
    known = _known_providers()
    head, sep, rest = spec.partition(":")
    if sep and head in known:
        if not rest:
            raise ConfigurationError(f"model spec '{spec}' names no model: write '{head}:<model>'")
        return head, rest
    provider = _infer(spec)
    if provider is None:
        raise ConfigurationError(
            f"cannot tell the provider of model '{spec}': write 'provider:model' "
            f"(e.g. 'ollama:{spec}', or 'openai:{spec}' for an OpenAI-compatible server) with a "
            f"provider init_chat_model knows ({', '.join(sorted(PROVIDERS))}, ...), "
            "or 'scripted:<transcript file>'"
        )
    return provider, spec


def _known_providers() -> dict[str, str]:
    """Return init_chat_model's providers and the module each one imports.

    LangChain has no public list of them, nor a public way to infer a provider: this and
    :func:`_infer` read what ``init_chat_model`` itself uses, and fall back to oldnew's own
    table should a LangChain release move them.
    """
    try:
        from langchain.chat_models.base import _BUILTIN_PROVIDERS
    except ImportError:
        return {name: row.package.replace("-", "_") for name, row in PROVIDERS.items()}
    return {name: entry[0] for name, entry in _BUILTIN_PROVIDERS.items()}


def _infer(name: str) -> str | None:
    """Return the provider LangChain infers from a bare model name, else None."""
    try:
        from langchain.chat_models.base import _attempt_infer_model_provider
    except ImportError:
        return None
    provider: str | None = _attempt_infer_model_provider(name)
    return provider


def build(
    spec: str,
    *,
    role: Role | None,
    base_url: str | None,
    timeout: float,
    async_http_client: Callable[[str | None, float], Any],
) -> BaseChatModel:
    """Build the chat model of a ``provider:model`` spec or a bare model name.

    ``async_http_client`` returns the running event loop's HTTP client for an SDK built on
    ``openai`` (see ``models._async_http_client``).

    Raises:
        ConfigurationError: the spec is bad, a key is missing, or the provider's package is
            not installed (the message names the extra that installs it).
    """
    from langchain.chat_models import init_chat_model

    provider, model = split_spec(spec)
    _require_package(spec, provider)
    where = endpoint(provider, role, base_url, spec=spec)
    row = PROVIDERS.get(provider)
    options: dict[str, Any] = {}
    if row is not None:
        options = (row.options or _common_options)(where.base_url, where.key, timeout)
        if row.openai_client:
            options["http_async_client"] = async_http_client(where.base_url, timeout)
    else:
        options = {k: v for k, v in (("base_url", where.base_url), ("api_key", where.key)) if v}
    try:
        chat: BaseChatModel = init_chat_model(model, model_provider=provider, **options)
    except Exception as exc:  # noqa: BLE001 - each SDK says "no credentials" its own way
        raise ConfigurationError(
            f"model '{spec}' cannot be built: {type(exc).__name__}: {exc} (check its "
            "credentials and settings)"
        ) from exc
    return chat


def _require_package(spec: str, provider: str) -> None:
    """Import ``provider``'s integration, as init_chat_model will, or say what to install.

    Raises:
        ConfigurationError: the package is missing; the message names oldnew's extra for it,
            else the package LangChain needs.
    """
    module = _known_providers().get(provider)
    if module is None:
        return  # init_chat_model says what it makes of the name
    try:
        importlib.import_module(module)
    except ImportError as exc:
        row = PROVIDERS.get(provider)
        package = row.package if row else module.split(".")[0].replace("_", "-")
        install = f"'oldnew[{row.extra}]'" if row and row.extra else package
        raise ConfigurationError(
            f"model '{spec}' needs the {package} package: pip install {install}"
        ) from exc
