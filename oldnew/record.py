"""Record every model exchange of a run, and replay a recording exactly.

``--record FILE`` (Context ``record``, ``OLDNEW_RECORD``) puts a :class:`Recorder` callback on
every model the seam (``models.resolve_model``) hands out, whatever the model (``openai:``,
``scripted:``, a Python override). ``--model scripted:FILE`` then replays the file offline.

The transcript is JSON Lines, append-only, one object a line, flushed (and fsynced) after each
exchange, under a lock (a thread lock, and a file lock for another process), so a crash loses
nothing recorded and parallel tasks never interleave:

- a header each time a process starts recording into the file (a run, then each resume)::

    {"transcript": "oldnew", "version": 1, "session": "3f2a...", "started": "...",
     "workspace": "/path/to/ws"}

- one line per exchange::

    {"exchange": 7, "session": "3f2a...", "role": "coder", "key": "<sha256>",
     "occurrence": 0, "model": "gpt-4.1", "structured_call": false,
     "prompt": [{"type": "system", "content": "..."}, {"type": "human", "content": "..."},
                {"type": "ai", "content": "", "tool_calls": [{"name": "ReadFile",
                 "args": {"path": "a.py"}}]}, {"type": "tool", "content": "..."}],
     "text": "FILE: a.py ...", "tool_calls": [], "structured": null,
     "usage": {"input_tokens": 812, "output_tokens": 95, "total_tokens": 907}}

``key`` is the SHA-256 of the role and the prompt (each message's type, content and tool
calls' names and arguments). What differs from run to run by construction is masked first:
tool-call ids are left out, the run's workspace path reads ``<workspace>``, and a sandbox's
scratch folder (``/tmp/oldnew-sbx-<random>``, seen in test failures) reads ``oldnew-sbx-*``.
``occurrence`` counts the earlier exchanges of the file with the same key: the same prompt
asked twice gets its answers in the order they were given. ``structured`` is the parsed
object of a structured call answered in the reply's text (``json_schema``); a structured call
answered by a tool call (``function_calling``) keeps it in ``tool_calls``.

Replay is exact: a prompt is answered by the exchange of the same role and key, its n-th
occurrence the n-th time it is asked in the workspace (counted in ``.oldnew/replay.json``, so
a replay that is killed and resumed goes on where it was; past the recorded occurrences the
last one answers again). A prompt with no recorded exchange raises
:class:`~oldnew.errors.ScriptedModelError` naming the role and showing the first line where the
prompt differs from the nearest recorded one.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import tempfile
import threading
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import LLMResult

from oldnew.errors import ConfigurationError, ScriptedModelError, UsageError

HEADER = "oldnew"
VERSION = 1


def _content(content: Any) -> Any:
    return content if isinstance(content, str | list) else str(content)


def normalized(messages: Sequence[BaseMessage]) -> list[dict[str, Any]]:
    """Return the prompt as recorded: each message's type, content and tool calls (no ids)."""
    out = []
    for m in messages:
        item: dict[str, Any] = {"type": m.type, "content": _content(m.content)}
        calls = getattr(m, "tool_calls", None) if isinstance(m, AIMessage) else None
        if calls:
            item["tool_calls"] = [{"name": c["name"], "args": c["args"]} for c in calls]
        out.append(item)
    return out


SCRATCH = re.compile(r"oldnew-sbx-[A-Za-z0-9_]+")


def masked(text: str, workspace: str | None) -> str:
    """Return ``text`` with what differs between two runs of the same prompt masked."""
    if workspace:
        text = text.replace(str(Path(workspace).resolve()), "<workspace>")
        text = text.replace(workspace, "<workspace>")
    return SCRATCH.sub("oldnew-sbx-*", text)


def prompt_key(role: str, prompt: list[dict[str, Any]], workspace: str | None = None) -> str:
    """Return the key an exchange is found by: a hash of its role and masked prompt."""
    text = masked(json.dumps([role, prompt], sort_keys=True, ensure_ascii=False), workspace)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def prompt_lines(prompt: list[dict[str, Any]], workspace: str | None = None) -> list[str]:
    """Return the masked prompt as lines, each message headed by its type (for a diff)."""
    lines: list[str] = []
    for m in prompt:
        lines.append(f"[{m['type']}]")
        content = m["content"]
        text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
        lines += masked(text, workspace).splitlines()
        for call in m.get("tool_calls", []):
            lines.append(f"(tool call {call['name']} {json.dumps(call['args'], sort_keys=True)})")
    return lines


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class _File:
    """One transcript file being written: its lock, its session, the occurrences so far."""

    def __init__(self, path: Path, workspace: str | None) -> None:
        self.path, self.lock = path, threading.Lock()
        self.session = uuid.uuid4().hex[:12]
        self.counts: Counter[str] = Counter()
        self.seq = 0
        self.workspace = workspace
        self.started = False
        if path.is_file():
            for entry in read_lines(path):
                if "exchange" in entry:
                    self.counts[entry["key"]] += 1
                    self.seq = max(self.seq, int(entry["exchange"]))

    def append(self, entry: dict[str, Any]) -> None:
        """Append one exchange (after this session's header, the first time), durably."""
        with self.lock:
            lines = []
            if not self.started:
                head = {"transcript": HEADER, "version": VERSION, "session": self.session}
                lines.append({**head, "started": _now(), "workspace": self.workspace})
                self.started = True
            self.seq += 1
            key = entry["key"]
            lines.append(
                {
                    "exchange": self.seq,
                    "session": self.session,
                    "occurrence": self.counts[key],
                    **entry,
                }
            )
            self.counts[key] += 1
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as out:
                fcntl.flock(out, fcntl.LOCK_EX)  # another process appending: one at a time
                out.write("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines))
                out.flush()
                os.fsync(out.fileno())


_FILES: dict[Path, _File] = {}
_FILES_LOCK = threading.Lock()


def _file(path: Path, workspace: str | None) -> _File:
    with _FILES_LOCK:
        found = _FILES.get(path)
        if found is None:
            found = _FILES[path] = _File(path, workspace)
        return found


class Recorder(BaseCallbackHandler):
    """Append each exchange of one role's model to a transcript when its reply arrives."""

    raise_error = True  # a recording with gaps would not replay: fail loudly
    run_inline = True

    def __init__(self, path: Path, role: str, workspace: str | None = None) -> None:
        """Record the calls of ``role`` into ``path`` (shared with the process's other roles)."""
        self.file = _file(path, workspace)
        self.role, self.workspace = role, workspace
        self.pending: dict[UUID, tuple[list[dict[str, Any]], bool]] = {}

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        **kwargs: Any,
    ) -> None:
        """Keep the prompt until its reply arrives."""
        options = kwargs.get("options") or {}
        structured = bool(options.get("ls_structured_output_format"))
        self.pending[run_id] = (normalized(messages[0]), structured)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """Forget a call that failed: it has no reply to replay (its retry is recorded)."""
        self.pending.pop(run_id, None)

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        """Write the exchange: the prompt, the reply's text, tool calls, structure, usage."""
        prompt, structured_call = self.pending.pop(run_id, ([], False))
        message = getattr(response.generations[0][0], "message", None)
        if not isinstance(message, AIMessage):
            return
        text = message.content if isinstance(message.content, str) else message.text
        calls = [{"name": c["name"], "args": c["args"]} for c in message.tool_calls]
        structured = None
        if structured_call and not calls:
            try:
                structured = json.loads(text)
            except ValueError:
                structured = None  # replayed as text: the same parse failure as recorded
        meta = message.response_metadata or {}
        self.file.append(
            {
                "role": self.role,
                "key": prompt_key(self.role, prompt, self.workspace),
                "model": meta.get("model_name") or meta.get("model"),
                "structured_call": structured_call,
                "prompt": prompt,
                "text": text,
                "tool_calls": calls,
                "structured": structured,
                "usage": dict(message.usage_metadata) if message.usage_metadata else None,
            }
        )


def recorder_for(record: str, role: str, workspace: str | None, replaying: Path | None) -> Recorder:
    """Return the recorder of ``role`` into the file ``record``.

    Raises:
        UsageError: the file to record into is the transcript being replayed.
    """
    return Recorder(check_record_target(record, replaying), role, workspace)


def check_record_target(record: str, replaying: Path | None) -> Path:
    """Return the file to record into, as an absolute path.

    Raises:
        UsageError: it is the transcript being replayed.
    """
    path = Path(record).expanduser().resolve()
    if replaying is not None and replaying.expanduser().resolve() == path:
        raise UsageError(
            f"cannot record into {path}: it is the transcript the model replays; give "
            "--record another file (or leave it out to replay only)"
        )
    return path


def read_lines(path: Path) -> list[dict[str, Any]]:
    """Read a JSON Lines transcript; raise ConfigurationError naming a line that is broken."""
    out = []
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"cannot read transcript {path}: {exc.strerror}") from exc
    lines = text.splitlines()
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError as exc:
            if n == len(lines) and not text.endswith("\n"):
                continue  # a write cut short by a crash: the exchange before it is whole
            raise ConfigurationError(f"transcript {path}, line {n}, does not parse: {exc}") from exc
        if not isinstance(entry, dict):
            raise ConfigurationError(f"transcript {path}, line {n}, is not a JSON object")
        out.append(entry)
    return out


def is_recording(path: Path) -> bool:
    """Say whether ``path`` is a recorded transcript (its first line is the header)."""
    try:
        with path.open(encoding="utf-8") as f:
            first = f.readline()
    except OSError:
        return False
    try:
        head = json.loads(first)
    except ValueError:
        return False
    return isinstance(head, dict) and head.get("transcript") == HEADER


@dataclass(frozen=True)
class Exchange:
    """One recorded exchange, as replay needs it."""

    role: str
    key: str
    occurrence: int
    prompt: list[dict[str, Any]]
    workspace: str | None
    text: str
    tool_calls: list[dict[str, Any]]
    structured: Any
    usage: dict[str, int] | None
    model: str | None


@dataclass
class Recording:
    """A recorded transcript: its exchanges by key, each key's answers in recorded order."""

    source: str
    by_key: dict[str, list[Exchange]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Recording:
        """Read a recording; raise ConfigurationError when it is not one."""
        entries = read_lines(path)
        if not entries or entries[0].get("transcript") != HEADER:
            raise ConfigurationError(f"{path} is not an oldnew recording (no header line)")
        version = entries[0].get("version")
        if version != VERSION:
            raise ConfigurationError(
                f"{path} is a version {version} recording; this oldnew reads version {VERSION}"
            )
        rec = cls(str(path))
        workspace = None
        for e in entries:
            if "transcript" in e:
                workspace = e.get("workspace")
            if "exchange" not in e:
                continue
            ex = Exchange(
                role=e["role"],
                key=e["key"],
                occurrence=int(e.get("occurrence", 0)),
                prompt=e.get("prompt") or [],
                workspace=workspace,
                text=e.get("text") or "",
                tool_calls=e.get("tool_calls") or [],
                structured=e.get("structured"),
                usage=e.get("usage"),
                model=e.get("model"),
            )
            rec.by_key.setdefault(ex.key, []).append(ex)
        return rec

    def answer(
        self, role: str, prompt: list[dict[str, Any]], asked: int, workspace: str | None = None
    ) -> Exchange:
        """Return the recorded answer to the ``asked``-th asking (from 0) of ``prompt``.

        ``workspace`` is the replaying run's, masked in the prompt as the recording's was.

        Raises:
            ScriptedModelError: nothing of this role was recorded for this prompt; the message
                shows where the prompt differs from the nearest recorded one.
        """
        found = self.by_key.get(prompt_key(role, prompt, workspace))
        if found:
            return found[min(asked, len(found) - 1)]
        raise ScriptedModelError(self._miss(role, prompt, workspace))

    def _miss(self, role: str, prompt: list[dict[str, Any]], workspace: str | None) -> str:
        same_role = [ex for exs in self.by_key.values() for ex in exs if ex.role == role]
        head = f"recording {self.source} has no {role} exchange for this prompt"
        if not same_role:
            roles = sorted({ex.role for exs in self.by_key.values() for ex in exs})
            return f"{head}: it recorded no {role} calls at all (roles: {', '.join(roles)})"
        now = prompt_lines(prompt, workspace)

        def shared(ex: Exchange) -> int:
            then = prompt_lines(ex.prompt, ex.workspace)
            n = 0
            while n < min(len(now), len(then)) and now[n] == then[n]:
                n += 1
            return n

        nearest = max(same_role, key=shared)
        then = prompt_lines(nearest.prompt, nearest.workspace)
        n = shared(nearest)
        was = then[n] if n < len(then) else "<the recorded prompt ends here>"
        got = now[n] if n < len(now) else "<this prompt ends here>"
        return (
            f"{head} (were the prompt or the run's inputs changed?). It first differs from "
            f"the nearest recorded {role} prompt in {_where(now, n)}:\n"
            f"  recorded: {was[:300]}\n  now:      {got[:300]}"
        )


def _where(lines: list[str], n: int) -> str:
    """Say where line ``n`` (from 0) of ``prompt_lines`` is: which message, which of its lines."""
    message, kind, start = 0, "", 0
    for i, line in enumerate(lines[: n + 1]):
        if line.startswith("[") and line.endswith("]") and " " not in line:
            message, kind, start = message + 1, line[1:-1], i
    if not message:
        return "its first line"
    return f"message {message} ({kind}), line {n - start}"


class ReplayCounts:
    """How many times each prompt was asked in one workspace's replay, kept on disk."""

    def __init__(self, path: Path | None) -> None:
        """Count in ``path`` (a JSON file), or in memory only when it is None."""
        self.path, self.lock = path, threading.Lock()
        self.counts: Counter[str] = Counter()
        if path is not None and path.is_file():
            try:
                self.counts.update(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError):
                self.counts.clear()  # a count file cut short: start counting again

    def next(self, key: str) -> int:
        """Return how many times ``key`` was asked before, and count this asking."""
        with self.lock:
            n = self.counts[key]
            self.counts[key] += 1
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".replay-")
                with os.fdopen(fd, "w", encoding="utf-8") as out:
                    json.dump(self.counts, out)
                os.replace(tmp, self.path)
            return n


_COUNTS: dict[tuple[str, str | None], ReplayCounts] = {}


def replay_counts(source: str, workspace: str | None) -> ReplayCounts:
    """Return the shared counts of replaying ``source`` in ``workspace`` (None: this process)."""
    path = None
    if workspace is not None:
        digest = hashlib.sha256(source.encode()).hexdigest()[:12]
        from oldnew.workspace import META

        path = Path(workspace) / META / f"replay-{digest}.json"
    key = (source, str(path) if path else None)
    with _FILES_LOCK:
        found = _COUNTS.get(key)
        if found is None:
            found = _COUNTS[key] = ReplayCounts(path)
        return found
