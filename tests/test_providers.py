"""Any provider through init_chat_model: specs, extras, each role's endpoint and key.

OpenAI-compatible paths talk to the local fake server (``tests/fake_openai.py``), which
records the Authorization header of every request; providers whose package is not installed
are shown by their error, which names the extra to install.
"""

from __future__ import annotations

import asyncio
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import EXAMPLE, ROOT
from fake_openai import FakeOpenAIServer, Reply
from langchain_openai import ChatOpenAI

from oldnew.context import ROLES, Context, Role
from oldnew.errors import ConfigurationError
from oldnew.models import (
    _async_http_client,
    aclose_http_clients,
    check_model_specs,
    make_chat_model,
    resolve_model,
)
from oldnew.providers import NO_KEY, PROVIDERS, is_local
from oldnew.runs import start_run

KEY_VARIABLES = [f"OLDNEW_{r.upper()}_API_KEY" for r in ROLES] + ["OLDNEW_API_KEY"]
URL_VARIABLES = [f"OLDNEW_{r.upper()}_BASE_URL" for r in ROLES] + ["OLDNEW_BASE_URL"]


@pytest.fixture(autouse=True)
def _no_endpoint_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [*KEY_VARIABLES, *URL_VARIABLES, "OPENAI_API_KEY", "OPENAI_BASE_URL"]:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def servers() -> Iterator[tuple[FakeOpenAIServer, FakeOpenAIServer]]:
    with (
        FakeOpenAIServer(lambda request: Reply.text("from A")) as a,
        FakeOpenAIServer(lambda request: Reply.text("from B")) as b,
    ):
        yield a, b


def _ask(role: Role, ctx: Context) -> str:
    return str(resolve_model(role, ctx).invoke("hello").content)


def test_each_role_reaches_its_own_endpoint_with_its_own_key(
    servers: tuple[FakeOpenAIServer, FakeOpenAIServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = servers
    monkeypatch.setenv("OPENAI_API_KEY", "sk-provider")  # the provider's own: the last resort
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("OLDNEW_BASE_URL", a.base_url)
    monkeypatch.setenv("OLDNEW_API_KEY", "sk-run")
    monkeypatch.setenv("OLDNEW_CODER_BASE_URL", b.base_url)
    monkeypatch.setenv("OLDNEW_CODER_API_KEY", "sk-coder")
    ctx = Context(model="openai:fake-model")
    assert _ask("planner", ctx) == "from A" and _ask("coder", ctx) == "from B"
    assert _ask("fixer", ctx) == "from A"  # no fixer variables: the run-wide ones
    assert a.authorizations == ["Bearer sk-run", "Bearer sk-run"]
    assert b.authorizations == ["Bearer sk-coder"]
    # A role's setting in the run's context beats the run-wide variable.
    assert _ask("tester", Context(model="openai:fake-model", tester_base_url=b.base_url)) == (
        "from B"
    )
    assert b.authorizations[-1] == "Bearer sk-run"


def test_the_providers_own_variables_come_last(
    servers: tuple[FakeOpenAIServer, FakeOpenAIServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, _ = servers
    monkeypatch.setenv("OPENAI_API_KEY", "sk-provider")
    monkeypatch.setenv("OPENAI_BASE_URL", a.base_url)
    assert _ask("coder", Context(model="gpt-4o-mini")) == "from A"  # provider inferred
    assert a.authorizations == ["Bearer sk-provider"]
    assert a.last_request["model"] == "gpt-4o-mini"


def test_a_local_server_needs_no_key(
    servers: tuple[FakeOpenAIServer, FakeOpenAIServer],
) -> None:
    a, _ = servers
    assert _ask("planner", Context(model="openai:qwen2.5-coder", base_url=a.base_url)) == "from A"
    assert a.authorizations == [f"Bearer {NO_KEY}"]
    # The provider's own key (a real OpenAI key, say) is not sent to a local server either.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OPENAI_API_KEY", "sk-real-openai")
        _ask("planner", Context(model="openai:qwen2.5-coder", base_url=a.base_url))
    assert a.authorizations[-1] == f"Bearer {NO_KEY}"
    remote = Context(model="openai:gpt-4o", coder_base_url="https://api.example.com/v1")
    with pytest.raises(ConfigurationError) as info:
        resolve_model("coder", remote)
    assert "OLDNEW_CODER_API_KEY, OLDNEW_API_KEY or OPENAI_API_KEY" in str(info.value)
    with pytest.raises(ConfigurationError, match="needs an API key"):
        check_model_specs(remote)  # before any work


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("http://localhost:11434/v1", True),
        ("http://127.0.0.1:8000/v1", True),
        ("http://[::1]:8000/v1", True),
        ("http://192.168.1.20:1234/v1", True),
        ("http://10.0.0.5/v1", True),
        ("http://vllm:8000/v1", True),
        ("http://host.docker.internal:11434", True),
        ("http://gpu.local:8000/v1", True),
        ("https://openrouter.ai/api/v1", False),
        ("https://8.8.8.8/v1", False),
        ("not a url", False),
    ],
)
def test_what_counts_as_a_local_server(url: str, local: bool) -> None:
    assert is_local(url) is local


def test_the_openai_guarantees_hold_through_init_chat_model(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OLDNEW_API_KEY", "sk-run")
    base = "http://127.0.0.1:9/v1"

    async def build() -> None:
        chat = make_chat_model("openai:gpt-4o", role="coder", timeout=12.5, base_url=base)
        assert isinstance(chat, ChatOpenAI)
        assert chat.max_retries == 0 and chat.request_timeout == 12.5
        assert chat.openai_api_base == base
        # The event loop's own client, so a second asyncio.run in the process works.
        assert chat.http_async_client is _async_http_client(base, 12.5)
        await aclose_http_clients()

    asyncio.run(build())
    asyncio.run(build())


@pytest.mark.parametrize(
    ("spec", "model"),
    [("gpt-4o-mini", "gpt-4o-mini"), ("o3-mini", "o3-mini"), ("openai:a:b", "a:b")],
)
def test_a_bare_name_is_inferred(spec: str, model: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLDNEW_API_KEY", "sk-run")
    chat = make_chat_model(spec)
    assert isinstance(chat, ChatOpenAI) and chat.model_name == model


@pytest.mark.parametrize("spec", ["llama3.1:8b", "qwen2.5-coder", "foo:bar", "openai:"])
def test_a_spec_without_a_provider_says_to_write_one(spec: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        make_chat_model(spec)
    message = str(info.value)
    assert f"'{spec}'" in message
    assert "provider:model" in message or "openai:<model>" in message


@pytest.fixture
def uninstalled(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Make the packages of anthropic, ollama and fireworks fail to import."""
    from langchain.chat_models.base import _get_chat_model_creator

    for module in ("langchain_anthropic", "langchain_ollama", "langchain_fireworks"):
        monkeypatch.setitem(sys.modules, module, None)  # import raises ImportError
    _get_chat_model_creator.cache_clear()
    yield
    _get_chat_model_creator.cache_clear()


@pytest.mark.parametrize(
    ("spec", "install"),
    [
        ("anthropic:claude-sonnet-4-5", "pip install 'oldnew[anthropic]'"),
        ("claude-3-5-sonnet-latest", "pip install 'oldnew[anthropic]'"),
        ("ollama:llama3.1:8b", "pip install 'oldnew[ollama]'"),
        ("fireworks:accounts/fireworks/models/x", "pip install langchain-fireworks"),
    ],
)
@pytest.mark.usefixtures("uninstalled")
def test_a_missing_provider_package_names_what_to_install(spec: str, install: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        make_chat_model(spec, role="coder")
    assert install in str(info.value) and f"'{spec}'" in str(info.value)
    with pytest.raises(ConfigurationError, match="needs the langchain-"):
        check_model_specs(
            Context(model=f"scripted:{EXAMPLE / 'transcript.toml'}", fixer_model=spec)
        )


def test_every_extra_is_in_pyproject() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    for name, row in PROVIDERS.items():
        if row.extra is None:
            continue
        assert row.extra in extras, f"{name}: pyproject.toml has no extra {row.extra!r}"
        assert any(dep.startswith(f"{row.package}>=") for dep in extras[row.extra])


def test_ollama_gets_the_timeout_and_a_key_through_its_http_client() -> None:
    options = PROVIDERS["ollama"].options
    assert options is not None
    assert options(None, None, 9.0) == {"client_kwargs": {"timeout": 9.0}}
    given = options("http://gpu:11434", "sk-hidden", 9.0)
    assert given["base_url"] == "http://gpu:11434" and given["client_kwargs"]["timeout"] == 9.0
    auth = given["client_kwargs"]["auth"]
    request = next(auth.auth_flow(httpx.Request("GET", "http://gpu:11434/api/chat")))
    assert request.headers["Authorization"] == "Bearer sk-hidden"
    # The model's repr (what a LangSmith trace serializes) never shows the key.
    assert "sk-hidden" not in repr(given) and "sk-hidden" not in repr(auth)


def test_a_provider_that_cannot_be_built_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import langchain.chat_models

    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError("Missing credentials")  # as openai.OpenAIError, say

    monkeypatch.setattr(langchain.chat_models, "init_chat_model", refuse)
    monkeypatch.setenv("OLDNEW_API_KEY", "sk-test")
    with pytest.raises(ConfigurationError, match="'openai:gpt-4o' cannot be built: RuntimeError"):
        make_chat_model("openai:gpt-4o", role="coder")


@pytest.mark.timeout(60)
def test_keys_never_reach_run_json_or_the_checkpoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = tmp_path / "ws"
    # The planner never answers with a Scope, so the run stops at a question.
    with FakeOpenAIServer(lambda request: Reply.text("I would rather chat.")) as srv:
        monkeypatch.setenv("OLDNEW_PLANNER_API_KEY", "sk-secret-planner")
        monkeypatch.setenv("OLDNEW_API_KEY", "sk-secret-run")
        context = {
            "model": "openai:fake-model",
            "planner_base_url": srv.base_url,
            "structured_output_method": "function_calling",
        }
        out = asyncio.run(start_run(EXAMPLE / "scope.md", ws, context=context))
        assert out.status == "waiting"
        assert srv.authorizations and set(srv.authorizations) == {"Bearer sk-secret-planner"}
    run_json = (ws / ".oldnew" / "run.json").read_text()
    assert srv.base_url in run_json  # a base URL is a setting, kept for resumes
    leaks = [
        str(p.relative_to(ws))
        for p in ws.rglob("*")
        if p.is_file() and b"sk-secret" in p.read_bytes()
    ]
    assert not leaks, f"a key was written to {leaks}"


@pytest.mark.usefixtures("uninstalled")
def test_the_cli_prints_the_extra_to_install(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from oldnew.cli import app

    ws = tmp_path / "ws"
    res = CliRunner().invoke(
        app, ["run", str(EXAMPLE / "scope.md"), "-w", str(ws), "-m", "ollama:qwen2.5-coder"]
    )
    assert res.exit_code == 2
    assert "pip install 'oldnew[ollama]'" in res.output  # not eaten as rich markup
    assert not ws.exists()


def test_a_model_is_priced_by_its_name_whatever_the_attribute() -> None:
    from langchain_core.language_models import FakeListChatModel

    from oldnew.budget.meter import model_name

    class Named(FakeListChatModel):
        model: str = "claude-sonnet-4-5"  # as ChatAnthropic and ChatOllama name it

    assert model_name(Named(responses=["hi"])) == "claude-sonnet-4-5"
    assert model_name(FakeListChatModel(responses=["hi"])) == "fake-list-chat-model"
