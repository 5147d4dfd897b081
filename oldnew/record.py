"""Record every model exchange of a run, and replay a recording exactly.

``--record FILE`` (Context ``record``, ``OLDNEW_RECORD``) puts a :class:`Recorder` callback on
every model the seam (``models.resolve_model``) hands out, whatever the model (``openai:``,
``scripted:``, a Python override). ``--model scripted:FILE`` then replays the file offline.

The transcript is JSON Lines, append-only, one object a line, fsynced after each exchange,
under a lock (a thread lock, and a file lock for another process), so a crash loses nothing
recorded and parallel tasks never interleave. Under the file lock the writer first reads what
other processes appended (exchange numbers, occurrences and headers come from the file, not
from one process's memory; a deleted or replaced file is read again from the start) and cuts
a torn last line, a write a crash cut short (that exchange was never whole, so never used):

- a header each time a run starts recording into the file (one per process and workspace: a
  run, then each resume; a second run in a long-lived process gets its own)::

    {"transcript": "oldnew", "version": 1, "session": "3f2a...", "started": "...",
     "workspace": "/path/to/ws"}

- one line per exchange::

    {"exchange": 7, "session": "3f2a...", "role": "coder", "key": "<sha256>",
     "occurrence": 0, "model": "gpt-4.1", "structured_call": false,
     "graph": {"thread_id": "...", "checkpoint_ns": "coder:1f0c...", "step": 3,
               "node": "coder"},
     "prompt": [{"type": "system", "content": "..."}, {"type": "human", "content": "..."},
                {"type": "ai", "content": "", "tool_calls": [{"name": "ReadFile",
                 "args": {"path": "a.py"}}]}, {"type": "tool", "content": "..."}],
     "text": "FILE: a.py ...", "tool_calls": [], "structured": null,
     "invalid_tool_calls": [{"name": "ReadFile", "args": "{'path': ", "error": "..."}],
     "usage": {"input_tokens": 812, "output_tokens": 95, "total_tokens": 907}}

``key`` is the SHA-256 of the role and the prompt (each message's type, content and tool
calls' names and arguments). What differs from run to run by construction is masked first:
tool-call ids are left out, the run's workspace path reads ``<workspace>``, a sandbox's
scratch folder (``/tmp/oldnew-sbx-<random>``, seen in test failures) reads ``oldnew-sbx-*``,
memory addresses (``<Foo object at 0x7fe4...>``) read ``0x*`` and durations (``in 0.12s``,
``12.3 ms``) read ``<duration>`` (only in the key: a miss message shows the text as it was).
Replay computes the keys again from the recorded prompts. ``occurrence`` counts the earlier
exchanges of the file with the same key: the same prompt asked twice gets its answers in the
order they were given. ``text`` is the reply's content as given (a list of content blocks
stays a list). ``structured`` is the parsed object of a structured call answered in the
reply's text (``json_schema``); a structured call answered by a tool call
(``function_calling``) keeps it in ``tool_calls``. ``invalid_tool_calls`` (only when there
are some) are tool calls whose arguments did not parse, replayed as they came. ``graph`` is
where in the LangGraph run the call was made (absent outside a graph).

Replay is exact: a prompt is answered by the exchange of the same role and key, its n-th
occurrence the n-th time it is asked in the workspace (counted in ``.oldnew/replay-*.json``, so
a replay that is killed and resumed goes on where it was; past the recorded occurrences the
last one answers again). A prompt asked again at the same point of the graph (thread,
checkpoint namespace, step) by a later session was asked again after a kill that came before
the node's checkpoint: the run went on with the later session's answer, so replay keeps that
one and drops the earlier. (A node re-run after its question was answered asks again at the
same point too: its replay gets the later answer both times, the one the run went on with.)
Torn lines are skipped, and counted (``Recording.torn``). A
prompt with no recorded exchange raises :class:`~oldnew.errors.ScriptedModelError` naming the
role and showing the first line where the prompt differs from the nearest recorded one.
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
ADDRESS = re.compile(r"\b0x[0-9a-fA-F]{6,16}\b")
"""A memory address, as an object's repr shows it (``<Foo object at 0x7fe485b1ab50>``)."""
DURATION = re.compile(
    r"(?<![\w.])\d+(?:\.\d+)? ?(?:ns|us|µs|ms|s|sec|secs|seconds?|min|mins|minutes?)(?![\w])"
)
"""A duration or latency (``in 0.12s``, ``1.5 s``, ``12.3 ms``): how long something took."""


def masked(text: str, workspace: str | None) -> str:
    """Return ``text`` with the run's own paths masked (what a miss message shows)."""
    if workspace:
        text = text.replace(str(Path(workspace).resolve()), "<workspace>")
        text = text.replace(workspace, "<workspace>")
    return SCRATCH.sub("oldnew-sbx-*", text)


def keyed(text: str, workspace: str | None) -> str:
    """Return ``text`` with everything that differs between two runs of one prompt masked.

    On top of :func:`masked`: memory addresses (``0x*``) and durations (``<duration>``),
    which reach prompts through test output and gate diagnostics. Line by line, so a
    masked prompt has the lines the shown one has.
    """
    return DURATION.sub("<duration>", ADDRESS.sub("0x*", masked(text, workspace)))


def _mask_all(value: Any, workspace: str | None) -> Any:
    if isinstance(value, str):
        return keyed(value, workspace)
    if isinstance(value, list):
        return [_mask_all(v, workspace) for v in value]
    if isinstance(value, dict):
        return {k: _mask_all(v, workspace) for k, v in value.items()}
    return value


def prompt_key(role: str, prompt: list[dict[str, Any]], workspace: str | None = None) -> str:
    """Return the key an exchange is found by: a hash of its role and masked prompt.

    Each text of the prompt is masked (:func:`keyed`) before it is hashed. Replay computes
    the keys of a recording again from its prompts, so a recording outlives a change here.
    """
    text = json.dumps([role, _mask_all(prompt, workspace)], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def prompt_lines(
    prompt: list[dict[str, Any]], workspace: str | None = None, *, key: bool = False
) -> list[str]:
    """Return the prompt as lines, each message headed by its type (for a diff).

    Paths are masked (:func:`masked`); with ``key`` all that the key masks (:func:`keyed`).
    """
    mask = keyed if key else masked
    lines: list[str] = []
    for m in prompt:
        lines.append(f"[{m['type']}]")
        content = m["content"]
        text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
        lines += mask(text, workspace).splitlines()
        for call in m.get("tool_calls", []):
            lines.append(f"(tool call {call['name']} {json.dumps(call['args'], sort_keys=True)})")
    return lines


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class _Seen:
    """What one process knows of a transcript file: up to which byte, and what is in it."""

    inode: int = -1
    size: int = 0
    seq: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    sessions: set[str] = field(default_factory=set)

    def take(self, entry: dict[str, Any]) -> None:
        if "transcript" in entry:
            self.sessions.add(str(entry.get("session")))
        elif "exchange" in entry:
            self.seq = max(self.seq, _int(entry.get("exchange")))
            self.counts[str(entry.get("key"))] += 1


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


class _File:
    """One transcript file being written: a thread lock, and what this process read of it.

    Everything numbered (``exchange``, ``occurrence``) and whether this session's header is in
    the file is worked out under the file lock from the file itself: another process may have
    appended since (its exchanges are read, from where this one stopped reading), or the file
    may have been deleted, replaced or cut (it is read again from the start).
    """

    def __init__(self, path: Path) -> None:
        self.path, self.lock = path, threading.Lock()
        self.seen = _Seen()

    def _catch_up(self, fd: int) -> None:
        """Bring ``seen`` up to the file's end; cut a torn last line (a write a crash cut)."""
        st = os.fstat(fd)
        size = st.st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            keep = _last_newline(fd, size)
            os.ftruncate(fd, keep)  # that exchange was never whole: its caller never got it
            size = keep
        if st.st_ino != self.seen.inode or size < self.seen.size:
            self.seen = _Seen(inode=st.st_ino)
        if size > self.seen.size:
            data = os.pread(fd, size - self.seen.size, self.seen.size)
            for entry in _entries(data.decode("utf-8", errors="replace").splitlines())[0]:
                self.seen.take(entry)
        self.seen.size = size

    def append(self, session: _Session, entry: dict[str, Any]) -> None:
        """Append one exchange (after ``session``'s header if the file lacks it), durably."""
        with self.lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)  # another process appending: one at a time
                self._catch_up(fd)
                lines = []
                if session.id not in self.seen.sessions:
                    head = {"transcript": HEADER, "version": VERSION, "session": session.id}
                    lines.append({**head, "started": _now(), "workspace": session.workspace})
                key = entry["key"]
                lines.append(
                    {
                        "exchange": self.seen.seq + 1,
                        "session": session.id,
                        "occurrence": self.seen.counts[key],
                        **entry,
                    }
                )
                data = "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines)
                os.write(fd, data.encode("utf-8"))
                os.fsync(fd)
                for x in lines:
                    self.seen.take(x)
                self.seen.size += len(data.encode("utf-8"))
            finally:
                os.close(fd)  # closing releases the file lock


def _last_newline(fd: int, size: int) -> int:
    """Return the offset just past the last newline before ``size`` (0 when there is none)."""
    end = size
    while end > 0:
        start = max(0, end - 65536)
        at = os.pread(fd, end - start, start).rfind(b"\n")
        if at >= 0:
            return start + at + 1
        end = start
    return 0


@dataclass(frozen=True)
class _Session:
    """One recording run: a process recording one workspace's run into one file."""

    id: str
    workspace: str | None


_FILES: dict[Path, _File] = {}
_SESSIONS: dict[tuple[Path, str | None], _Session] = {}
_FILES_LOCK = threading.Lock()


def _file(path: Path, workspace: str | None) -> tuple[_File, _Session]:
    with _FILES_LOCK:
        found = _FILES.get(path)
        if found is None:
            found = _FILES[path] = _File(path)
        session = _SESSIONS.get((path, workspace))
        if session is None:
            session = _SESSIONS[(path, workspace)] = _Session(uuid.uuid4().hex[:12], workspace)
        return found, session


GRAPH_KEYS = {
    "thread_id": "thread_id",
    "checkpoint_ns": "checkpoint_ns",
    "langgraph_step": "step",
    "langgraph_node": "node",
}
"""The LangGraph metadata of a call kept with its exchange (as ``graph``), and its names."""


class Recorder(BaseCallbackHandler):
    """Append each exchange of one role's model to a transcript when its reply arrives."""

    raise_error = True  # a recording with gaps would not replay: fail loudly
    run_inline = True

    def __init__(self, path: Path, role: str, workspace: str | None = None) -> None:
        """Record the calls of ``role`` into ``path`` (shared with the process's other roles).

        One session (one header) per process, file and workspace: a second run in the same
        process (a LangGraph server's) records under its own header.
        """
        self.file, self.session = _file(path, workspace)
        self.role, self.workspace = role, workspace
        self.pending: dict[UUID, tuple[list[dict[str, Any]], bool, dict[str, Any] | None]] = {}

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        **kwargs: Any,
    ) -> None:
        """Keep the prompt, and where in the graph it is asked, until its reply arrives."""
        options = kwargs.get("options") or {}
        structured = bool(options.get("ls_structured_output_format"))
        meta = kwargs.get("metadata") or {}
        graph = {name: meta[k] for k, name in GRAPH_KEYS.items() if meta.get(k) is not None}
        self.pending[run_id] = (normalized(messages[0]), structured, graph or None)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """Forget a call that failed: it has no reply to replay (its retry is recorded)."""
        self.pending.pop(run_id, None)

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        """Write the exchange: the prompt, the reply's content, tool calls, structure, usage."""
        prompt, structured_call, graph = self.pending.pop(run_id, ([], False, None))
        message = getattr(response.generations[0][0], "message", None)
        if not isinstance(message, AIMessage):
            return
        text = message.content if isinstance(message.content, str) else message.text
        calls = [{"name": c["name"], "args": c["args"]} for c in message.tool_calls]
        invalid = [
            {"name": c.get("name"), "args": c.get("args"), "error": c.get("error")}
            for c in message.invalid_tool_calls
        ]
        structured = None
        if structured_call and not calls:
            try:
                structured = json.loads(text)
            except ValueError:
                structured = None  # replayed as text: the same parse failure as recorded
        meta = message.response_metadata or {}
        entry = {
            "role": self.role,
            "key": prompt_key(self.role, prompt, self.workspace),
            "model": meta.get("model_name") or meta.get("model"),
            "structured_call": structured_call,
            "graph": graph,
            "prompt": prompt,
            "text": _content(message.content),
            "tool_calls": calls,
            "structured": structured,
            "usage": dict(message.usage_metadata) if message.usage_metadata else None,
        }
        if invalid:
            entry["invalid_tool_calls"] = invalid
        self.file.append(self.session, entry)


def memory_warning(record: str | None, memory_path: str | None) -> dict[str, Any] | None:
    """Return the event that warns a run records with memory on (None when it does not).

    Lessons memory holds are put into prompts; a later replay on another machine, or after
    the memory learned more, asks other prompts, which the recording does not answer.
    """
    if not record or not memory_path or memory_path == "off":
        return None
    return {
        "node": "record",
        "event": "memory_on",
        "record": record,
        "memory": memory_path,
        "hint": "lessons from memory go into prompts, so a replay may not find them "
        "recorded: record with OLDNEW_MEMORY_PATH=off",
    }


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


def _entries(lines: list[str]) -> tuple[list[dict[str, Any]], int]:
    """Parse JSON Lines; return the objects and how many lines were torn (skipped).

    A torn line is a write a crash cut short (an exchange never whole, so never used). An
    older oldnew appended the next process's first line straight after such a fragment: the
    line is then read from where that header or exchange starts.
    """
    out, torn = [], 0
    for line in lines:
        if not line.strip():
            continue
        entry = _parsed(line)
        if entry is None:
            torn += 1
            for start in _RESTART.finditer(line, 1):
                entry = _parsed(line[start.start() :])
                if entry is not None:
                    break
        if entry is not None:
            out.append(entry)
    return out, torn


_RESTART = re.compile(r'\{"(?:transcript|exchange)": ')


def _parsed(line: str) -> dict[str, Any] | None:
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    return entry if isinstance(entry, dict) else None


def read_transcript(path: Path) -> tuple[list[dict[str, Any]], int]:
    """Read a JSON Lines transcript: its objects, and how many torn lines were skipped.

    Raises:
        ConfigurationError: the file cannot be read.
    """
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ConfigurationError(f"cannot read transcript {path}: {exc.strerror}") from exc
    return _entries(text.splitlines())


def read_lines(path: Path) -> list[dict[str, Any]]:
    """Read a JSON Lines transcript's objects (torn lines skipped; see read_transcript)."""
    return read_transcript(path)[0]


def is_recording(path: Path) -> bool:
    """Say whether ``path`` is a recorded transcript (its first line is the header)."""
    return _first_line(path).get("transcript") == HEADER


def is_headerless_recording(path: Path) -> bool:
    """Say whether ``path`` is JSON Lines of recorded exchanges with no header line."""
    return "exchange" in _first_line(path)


def _first_line(path: Path) -> dict[str, Any]:
    try:
        with path.open(encoding="utf-8", errors="replace") as f:
            first = f.readline()
    except OSError:
        return {}
    return _parsed(first) or {}


@dataclass(frozen=True)
class Exchange:
    """One recorded exchange, as replay needs it."""

    role: str
    key: str
    occurrence: int
    prompt: list[dict[str, Any]]
    workspace: str | None
    text: str | list[Any]
    tool_calls: list[dict[str, Any]]
    structured: Any
    usage: dict[str, int] | None
    model: str | None
    invalid_tool_calls: list[dict[str, Any]] = field(default_factory=list)
    session: str | None = None
    graph: dict[str, Any] | None = None

    @property
    def position(self) -> tuple[Any, ...] | None:
        """Where in the graph it was asked: thread, checkpoint namespace, step (None: unknown)."""
        g = self.graph or {}
        if g.get("step") is None:
            return None
        return (g.get("thread_id"), g.get("checkpoint_ns"), g.get("step"))


@dataclass
class Recording:
    """A recorded transcript: its exchanges by key, each key's answers in recorded order."""

    source: str
    by_key: dict[str, list[Exchange]] = field(default_factory=dict)
    torn: int = 0
    """Lines skipped as torn: writes a crash cut short (their exchanges were never used)."""
    discarded: int = 0
    """Exchanges a later session asked again at the same point of the graph: after a kill
    before that node's checkpoint, so the run went on with the later answer."""

    @classmethod
    def load(cls, path: Path) -> Recording:
        """Read a recording; raise ConfigurationError when it is not one."""
        entries, torn = read_transcript(path)
        if entries and "exchange" in entries[0]:
            raise ConfigurationError(
                f"{path} is a recording without a header (its first line is an exchange, "
                'not {"transcript": "oldnew", ...}): record the run again with --record'
            )
        if not entries or entries[0].get("transcript") != HEADER:
            raise ConfigurationError(f"{path} is not an oldnew recording (no header line)")
        version = entries[0].get("version")
        if version != VERSION:
            raise ConfigurationError(
                f"{path} is a version {version} recording; this oldnew reads version {VERSION}"
            )
        rec = cls(str(path), torn=torn)
        workspaces: dict[Any, str | None] = {}
        workspace = None
        found: list[Exchange] = []
        for e in entries:
            if "transcript" in e:
                workspace = workspaces[e.get("session")] = e.get("workspace")
            if "exchange" not in e:
                continue
            role, prompt = str(e.get("role")), e.get("prompt") or []
            ws = workspaces.get(e.get("session"), workspace)
            found.append(
                Exchange(
                    role=role,
                    key=prompt_key(role, prompt, ws),  # again: masks may have changed since
                    occurrence=_int(e.get("occurrence")),
                    prompt=prompt,
                    workspace=ws,
                    text=e.get("text") or "",
                    tool_calls=e.get("tool_calls") or [],
                    structured=e.get("structured"),
                    usage=e.get("usage"),
                    model=e.get("model"),
                    invalid_tool_calls=e.get("invalid_tool_calls") or [],
                    session=e.get("session"),
                    graph=e.get("graph") if isinstance(e.get("graph"), dict) else None,
                )
            )
        # The same prompt asked at the same point of the graph by a later session: the earlier
        # session was killed before the node's checkpoint, and the run kept the later answer.
        last = {(ex.key, ex.position): ex.session for ex in found if ex.position is not None}
        for ex in found:
            if ex.position is not None and last[(ex.key, ex.position)] != ex.session:
                rec.discarded += 1
                continue
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
        if self.torn:
            head += f" ({self.torn} torn line(s), writes a crash cut short, were skipped)"
        if not same_role:
            roles = sorted({ex.role for exs in self.by_key.values() for ex in exs})
            return f"{head}: it recorded no {role} calls at all (roles: {', '.join(roles)})"
        now = prompt_lines(prompt, workspace, key=True)  # compared as the key masks them

        def shared(ex: Exchange) -> int:
            then = prompt_lines(ex.prompt, ex.workspace, key=True)
            n = 0
            while n < min(len(now), len(then)) and now[n] == then[n]:
                n += 1
            return n

        nearest = max(same_role, key=shared)
        n = shared(nearest)
        shown_now = prompt_lines(prompt, workspace)  # shown as they are (paths masked)
        shown_then = prompt_lines(nearest.prompt, nearest.workspace)
        was = shown_then[n] if n < len(shown_then) else "<the recorded prompt ends here>"
        got = shown_now[n] if n < len(shown_now) else "<this prompt ends here>"
        return (
            f"{head} (were the prompt or the run's inputs changed, or was memory on while "
            "recording or replaying? Lessons memory holds are part of prompts: record and "
            f"replay with OLDNEW_MEMORY_PATH=off). It first differs from the nearest recorded "
            f"{role} prompt in {_where(now, n)}:\n"
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
