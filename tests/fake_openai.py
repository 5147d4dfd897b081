"""A tiny OpenAI-compatible Chat Completions server for tests.

The server speaks just enough of ``POST /v1/chat/completions`` for the real
``openai`` SDK (and therefore ``langchain_openai.ChatOpenAI``) to talk to it over
loopback.  What it answers is decided by a *responder*: a callable that receives
the parsed JSON request body and returns a :class:`Reply`.

Typical use::

    from fake_openai import FakeOpenAIServer, Reply, ScriptedResponder

    script = ScriptedResponder([
        Reply.with_tool_calls(("search", {"query": "cats"})),
        Reply.text("Cats are great."),
    ])
    with FakeOpenAIServer(script) as srv:
        llm = ChatOpenAI(model="gpt-test", api_key="test-key",
                         base_url=srv.base_url, max_retries=0)
        ...
        assert srv.requests[0]["tools"]

Supported reply kinds (see the ``Reply`` constructors):

* ``Reply.text(...)`` - plain assistant content, ``finish_reason="stop"``.
* ``Reply.with_tool_calls(...)`` - one or more tool calls, ``finish_reason="tool_calls"``.
* ``Reply.json(...)`` - content that is a JSON document (for ``response_format``
  ``json_schema`` / ``json_object`` requests).
* ``Reply.http_error(...)``, ``Reply.rate_limited(...)``, ``Reply.server_error(...)`` -
  an HTTP error status with an OpenAI-style JSON error body and optional headers.
* ``Reply.hanging()`` - accept the request and never answer (until the server closes);
  use it with a short client timeout to provoke ``openai.APITimeoutError``.
* ``Reply.malformed(...)`` - status 200 with a body that is not valid JSON.
* ``Reply.trickle_text(...)`` - status 200, then a keep-alive byte (a space) every ``every``
  seconds, ``pad`` times, before the body: each read is quick, the whole reply is slow (as
  some proxies do), so only a deadline on the whole call ends it.

Requests with ``"stream": true`` are answered as Server-Sent Events, with content
and tool-call deltas, a final chunk carrying ``finish_reason``, a usage chunk when
``stream_options.include_usage`` is set, and ``data: [DONE]``.

Only the standard library is used.  The server binds ``127.0.0.1`` on an ephemeral
port and runs in a daemon thread; every connection is handled on its own thread.
"""

from __future__ import annotations

import itertools
import json
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = [
    "CHAT_COMPLETIONS_PATH",
    "FakeOpenAIServer",
    "Reply",
    "Responder",
    "ScriptExhausted",
    "ScriptedResponder",
    "ToolCall",
]

#: The only path the server answers (relative to the server root).
CHAT_COMPLETIONS_PATH = "/v1/chat/completions"

#: Upper bound for ``Reply.hanging()`` so a forgotten server cannot pin a thread forever.
DEFAULT_HANG_LIMIT_S = 120.0

_ids = itertools.count(1)


def _next_id(prefix: str) -> str:
    return f"{prefix}{next(_ids):06d}"


@dataclass(frozen=True)
class ToolCall:
    """One tool call requested by the fake assistant.

    ``arguments`` is normally a dict (serialised with ``json.dumps``); a ``str`` is
    sent verbatim, which lets a test send deliberately broken arguments.
    """

    name: str
    arguments: dict[str, Any] | str = field(default_factory=dict)
    id: str | None = None

    def arguments_json(self) -> str:
        """Return the arguments exactly as they go over the wire."""
        if isinstance(self.arguments, str):
            return self.arguments
        return json.dumps(self.arguments)


ToolCallLike = ToolCall | tuple[str, dict[str, Any] | str] | dict[str, Any]


def _as_tool_call(call: ToolCallLike) -> ToolCall:
    if isinstance(call, ToolCall):
        return call
    if isinstance(call, tuple):
        name, arguments = call
        return ToolCall(name=name, arguments=arguments)
    return ToolCall(
        name=call["name"], arguments=call.get("arguments", call.get("args", {})), id=call.get("id")
    )


@dataclass(frozen=True)
class Reply:
    """What the server should send back for one request.

    Prefer the classmethod constructors; the fields are public so a test can build
    unusual combinations (e.g. text *and* tool calls, or ``finish_reason="length"``).

    Attributes:
        content: Assistant message content (``None`` means JSON ``null``).
        tool_calls: Tool calls to include in the assistant message.
        finish_reason: Overrides the default (``"tool_calls"`` if there are tool
            calls, else ``"stop"``).
        status: HTTP status.  Anything other than 200 sends ``error`` as the body.
        error: The ``{"message", "type", "code"}`` object for error replies.
        headers: Extra response headers (e.g. ``{"Retry-After": "2"}``).
        hang: Never answer; the handler waits until the server is closed.
        raw_body: Send these bytes verbatim (with ``status``) instead of JSON/SSE.
        delay: Seconds to wait before answering (cut short if the server closes).
        trickle: Seconds between the ``pad`` keep-alive bytes sent before the body (0: none).
        pad: How many keep-alive bytes a ``trickle`` reply sends.
    """

    content: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: str | None = None
    status: int = 200
    error: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False
    raw_body: bytes | None = None
    delay: float = 0.0
    trickle: float = 0.0
    pad: int = 0

    # -- constructors -------------------------------------------------------------

    @classmethod
    def text(cls, content: str, *, finish_reason: str = "stop") -> Reply:
        """Plain assistant text."""
        return cls(content=content, finish_reason=finish_reason)

    @classmethod
    def with_tool_calls(cls, *calls: ToolCallLike, content: str | None = None) -> Reply:
        """Assistant tool calls, ``finish_reason="tool_calls"``.

        Each call may be a :class:`ToolCall`, a ``(name, arguments)`` tuple or a dict
        with ``name`` and ``arguments`` (or ``args``) and optional ``id``.
        """
        if not calls:
            raise ValueError("Reply.with_tool_calls() needs at least one call")
        return cls(
            content=content,
            tool_calls=tuple(_as_tool_call(c) for c in calls),
            finish_reason="tool_calls",
        )

    @classmethod
    def json(cls, obj: Any) -> Reply:
        """Content that is a JSON document, for ``response_format`` requests.

        ``obj`` may be a dict/list, a pydantic model (``model_dump_json`` is used),
        or an already-serialised ``str``.
        """
        if isinstance(obj, str):
            text = obj
        elif hasattr(obj, "model_dump_json"):
            text = obj.model_dump_json()
        else:
            text = json.dumps(obj)
        return cls(content=text, finish_reason="stop")

    @classmethod
    def http_error(
        cls,
        status: int,
        message: str,
        *,
        type: str = "server_error",
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        """An HTTP error with an OpenAI-style ``{"error": {...}}`` body."""
        return cls(
            status=status,
            error={"message": message, "type": type, "param": None, "code": code},
            headers=dict(headers or {}),
        )

    @classmethod
    def rate_limited(
        cls, retry_after: float | str = 1, message: str = "Rate limit reached"
    ) -> Reply:
        """HTTP 429 with a ``Retry-After`` header."""
        return cls.http_error(
            429,
            message,
            type="rate_limit_error",
            code="rate_limit_exceeded",
            headers={"Retry-After": str(retry_after)},
        )

    @classmethod
    def server_error(cls, message: str = "The fake server had an error") -> Reply:
        """HTTP 500."""
        return cls.http_error(500, message, type="server_error")

    @classmethod
    def hanging(cls) -> Reply:
        """Accept the request and never answer (until the server closes)."""
        return cls(hang=True)

    @classmethod
    def trickle_text(cls, content: str, *, every: float = 0.2, pad: int = 100) -> Reply:
        """Plain text, sent after ``pad`` keep-alive bytes, one every ``every`` seconds."""
        return cls(content=content, finish_reason="stop", trickle=every, pad=pad)

    @classmethod
    def malformed(cls, body: bytes | str = b'{"id": "chatcmpl-broken", "choices": [') -> Reply:
        """Status 200 with a body that is not valid JSON."""
        raw = body.encode() if isinstance(body, str) else body
        return cls(raw_body=raw)

    # -- helpers used by the server -----------------------------------------------

    def effective_finish_reason(self) -> str:
        """``finish_reason`` as sent: explicit value, else inferred from tool calls."""
        if self.finish_reason is not None:
            return self.finish_reason
        return "tool_calls" if self.tool_calls else "stop"


Responder = Callable[[dict[str, Any]], Reply | str]
"""``(request_body) -> Reply``; returning a ``str`` is shorthand for ``Reply.text``."""


class ScriptExhausted(AssertionError):
    """Raised by :class:`ScriptedResponder` when more requests arrive than scripted."""


class ScriptedResponder:
    """Return scripted replies in order, one per request.

    When the script runs out it raises :class:`ScriptExhausted` (an
    ``AssertionError``); the server turns that into an HTTP 500 whose message says
    the script ran out, so the client sees ``openai.InternalServerError`` instead of
    a silent hang.  Each item may be a :class:`Reply`, a ``str`` (plain text), or a
    callable responder used for that one request.

    Attributes:
        calls: Number of requests seen (including ones past the end of the script).
    """

    def __init__(self, replies: Iterable[Reply | str | Responder]) -> None:
        self._replies = list(replies)
        self._lock = threading.Lock()
        self.calls = 0

    def __call__(self, request: dict[str, Any]) -> Reply | str:
        with self._lock:
            index = self.calls
            self.calls += 1
            if index >= len(self._replies):
                raise ScriptExhausted(
                    f"ScriptedResponder ran out of replies: request #{index + 1} arrived "
                    f"but only {len(self._replies)} were scripted"
                )
            item = self._replies[index]
        return item(request) if callable(item) else item

    @property
    def remaining(self) -> int:
        """How many scripted replies have not been used yet."""
        with self._lock:
            return max(0, len(self._replies) - self.calls)

    def assert_exhausted(self) -> None:
        """Fail if some scripted replies were never requested."""
        left = self.remaining
        assert left == 0, f"ScriptedResponder: {left} scripted replies were never requested"


# ---------------------------------------------------------------------------------
# Response bodies
# ---------------------------------------------------------------------------------


def _rough_tokens(text: str) -> int:
    return max(1, len(text) // 4) if text else 0


def _usage(request: dict[str, Any], reply: Reply) -> dict[str, int]:
    prompt = _rough_tokens(json.dumps(request.get("messages", [])))
    completion_text = (reply.content or "") + "".join(
        tc.name + tc.arguments_json() for tc in reply.tool_calls
    )
    completion = _rough_tokens(completion_text)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _tool_call_ids(reply: Reply) -> list[str]:
    return [tc.id or _next_id("call_fake") for tc in reply.tool_calls]


def _completion_body(request: dict[str, Any], reply: Reply) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.content, "refusal": None}
    if reply.tool_calls:
        message["tool_calls"] = [
            {
                "id": call_id,
                "type": "function",
                "function": {"name": tc.name, "arguments": tc.arguments_json()},
            }
            for tc, call_id in zip(reply.tool_calls, _tool_call_ids(reply), strict=True)
        ]
    return {
        "id": _next_id("chatcmpl-fake"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.get("model", "fake-model"),
        "system_fingerprint": "fp_fake",
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": reply.effective_finish_reason(),
            }
        ],
        "usage": _usage(request, reply),
    }


def _pieces(text: str, size: int = 8) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def _stream_chunks(request: dict[str, Any], reply: Reply) -> Iterator[dict[str, Any]]:
    """Yield ``chat.completion.chunk`` objects for a streamed reply."""
    include_usage = bool((request.get("stream_options") or {}).get("include_usage"))
    base = {
        "id": _next_id("chatcmpl-fake"),
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": request.get("model", "fake-model"),
        "system_fingerprint": "fp_fake",
    }

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        body = {
            **base,
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
        }
        if include_usage:
            body["usage"] = None
        return body

    yield chunk({"role": "assistant", "content": "" if reply.content is not None else None})
    for piece in _pieces(reply.content or ""):
        yield chunk({"content": piece})
    for index, (tc, call_id) in enumerate(
        zip(reply.tool_calls, _tool_call_ids(reply), strict=True)
    ):
        head = {"index": index, "id": call_id, "type": "function"}
        head["function"] = {"name": tc.name, "arguments": ""}
        yield chunk({"tool_calls": [head]})
        for piece in _pieces(tc.arguments_json()):
            yield chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
    yield chunk({}, reply.effective_finish_reason())
    if include_usage:
        yield {**base, "choices": [], "usage": _usage(request, reply)}


# ---------------------------------------------------------------------------------
# HTTP plumbing
# ---------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""

    def do_GET(self) -> None:
        self._send_json(404, _error_body(f"No route for GET {self.path}", "invalid_request_error"))

    def do_POST(self) -> None:
        body = self._read_body()
        if body is None:
            return
        if self.path.split("?", 1)[0].rstrip("/") != CHAT_COMPLETIONS_PATH:
            self._send_json(404, _error_body(f"No route for POST {self.path}", "not_found"))
            return
        try:
            request = json.loads(body)
        except ValueError as exc:
            self._send_json(400, _error_body(f"Request body is not JSON: {exc}", "invalid_json"))
            return
        self.server.fake.record(request, self.headers.get("Authorization"))
        reply = self.server.fake.respond(request)
        self._answer(request, reply)

    # -- helpers -------------------------------------------------------------------

    def _read_body(self) -> bytes | None:
        length = self.headers.get("Content-Length")
        if length is None:
            self._send_json(411, _error_body("Content-Length required", "invalid_request_error"))
            return None
        return self.rfile.read(int(length))

    def _answer(self, request: dict[str, Any], reply: Reply) -> None:
        stop = self.server.fake.stop_event
        if reply.delay and stop.wait(reply.delay):
            self.close_connection = True
            return
        if reply.hang:
            stop.wait(self.server.fake.hang_limit)
            self.close_connection = True  # drop the socket without answering
            return
        if reply.trickle:
            self._send_trickle(json.dumps(_completion_body(request, reply)).encode(), reply)
        elif reply.raw_body is not None:
            self._send_bytes(reply.status, reply.raw_body, "application/json", reply.headers)
        elif reply.status != 200 or reply.error is not None:
            self._send_json(reply.status, {"error": reply.error or {}}, reply.headers)
        elif request.get("stream"):
            self._send_stream(_stream_chunks(request, reply), reply.headers)
        else:
            self._send_json(200, _completion_body(request, reply), reply.headers)

    def _send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self._send_bytes(status, json.dumps(obj).encode(), "application/json", headers or {})

    def _send_bytes(
        self, status: int, data: bytes, content_type: str, headers: dict[str, str]
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-request-id", _next_id("req_fake"))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _send_trickle(self, data: bytes, reply: Reply) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data) + reply.pad))
        self.end_headers()
        try:
            for _ in range(reply.pad):
                self.wfile.write(b" ")
                self.wfile.flush()
                if self.server.fake.stop_event.wait(reply.trickle):
                    break
            else:
                self.wfile.write(data)
        except OSError:
            pass  # the client gave up on the reply: what a trickle is for
        self.close_connection = True

    def _send_stream(self, chunks: Iterable[dict[str, Any]], headers: dict[str, str]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("x-request-id", _next_id("req_fake"))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        for obj in chunks:
            self._write_chunk(f"data: {json.dumps(obj)}\n\n".encode())
        self._write_chunk(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):X}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


def _error_body(message: str, type_: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": None}}


class _Server(ThreadingHTTPServer):
    """Threading server that remembers open connections so close() can drop them."""

    daemon_threads = True
    block_on_close = False  # hung handlers must never block close()
    fake: FakeOpenAIServer

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__(address, _Handler)
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        """Shut down every open connection (idle keep-alive ones included)."""
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class FakeOpenAIServer:
    """OpenAI-compatible Chat Completions server on ``127.0.0.1:<ephemeral port>``.

    The server starts serving in the constructor; use it as a context manager (or
    call :meth:`close`) to stop it.  Closing also releases any ``hang`` replies.

    Args:
        responder: ``(request_body) -> Reply`` (or ``str``).  A sequence of replies
            is accepted as a shortcut for ``ScriptedResponder(sequence)``.  If the
            responder raises, the client receives HTTP 500 whose message contains the
            exception, and the exception is kept in :attr:`errors`.
        hang_limit: Maximum seconds a ``hang`` reply waits if the server is never
            closed.

    Attributes:
        base_url: ``http://127.0.0.1:PORT/v1`` - pass as ``base_url`` to the client.
        errors: Exceptions raised by the responder, in order.
    """

    def __init__(
        self,
        responder: Responder | Sequence[Reply | str],
        *,
        hang_limit: float = DEFAULT_HANG_LIMIT_S,
    ) -> None:
        if not callable(responder):
            responder = ScriptedResponder(responder)
        self.responder: Responder = responder
        self.hang_limit = hang_limit
        self.stop_event = threading.Event()
        self.errors: list[BaseException] = []
        self._requests: list[dict[str, Any]] = []
        self._authorizations: list[str | None] = []
        self._lock = threading.Lock()
        self._closed = False
        self._httpd = _Server(("127.0.0.1", 0))
        self._httpd.fake = self
        self.host, self.port = self._httpd.server_address[:2]
        self.base_url = f"http://{self.host}:{self.port}/v1"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"FakeOpenAIServer:{self.port}",
            daemon=True,
        )
        self._thread.start()

    # -- recorded traffic ----------------------------------------------------------

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Snapshot of the parsed JSON request bodies received so far, in order."""
        with self._lock:
            return list(self._requests)

    @property
    def last_request(self) -> dict[str, Any]:
        """The most recent request body (``AssertionError`` if there was none)."""
        reqs = self.requests
        assert reqs, "FakeOpenAIServer received no requests"
        return reqs[-1]

    @property
    def authorizations(self) -> list[str | None]:
        """The ``Authorization`` header of each request so far (None: none sent), in order."""
        with self._lock:
            return list(self._authorizations)

    def record(self, request: dict[str, Any], authorization: str | None = None) -> None:
        """Append a request body and its Authorization header (called by the handler threads)."""
        with self._lock:
            self._requests.append(request)
            self._authorizations.append(authorization)

    def respond(self, request: dict[str, Any]) -> Reply:
        """Ask the responder for a reply; exceptions become an HTTP 500 reply."""
        try:
            reply = self.responder(request)
        except Exception as exc:
            with self._lock:
                self.errors.append(exc)
            detail = "".join(traceback.format_exception_only(exc)).strip()
            return Reply.http_error(
                500, f"fake responder failed: {detail}", type="fake_responder_error"
            )
        if isinstance(reply, str):
            return Reply.text(reply)
        if not isinstance(reply, Reply):
            return Reply.http_error(
                500,
                f"fake responder returned {type(reply).__name__}, expected Reply or str",
                type="fake_responder_error",
            )
        return reply

    # -- lifecycle -----------------------------------------------------------------

    def close(self) -> None:
        """Stop serving, release hanging handlers, drop open connections (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self.stop_event.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._httpd.drop_connections()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeOpenAIServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<FakeOpenAIServer {self.base_url} {state}>"
