"""The notification hook: tell someone when a run needs a person and when it finishes.

The hook (``Context.notify``) is an http(s) URL, which gets the payload POSTed as JSON, or a
command line, run without a shell (``shlex`` split) with the payload as JSON on stdin and the
event name in ``OLDNEW_NOTIFY_EVENT``. Events:

- ``needs_person``: the run id, workspace, every pending question with its options, and the
  commands that answer them;
- ``finished``: the status (delivered, blocked, aborted) and where the report is.

A hook that fails never fails the run: the failure goes to the workspace's events.jsonl and
comes back as a notice. Each pause is announced once: ``notified.json`` in the workspace's meta
folder remembers the questions and the finished report already announced, so ``oldnew status``
(which never calls the hook) or a resume that stops on the same questions stays quiet.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shlex
import subprocess  # nosec B404 - the person's own hook, run without a shell
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

import httpx

from oldnew.context import Context
from oldnew.errors import OldnewError
from oldnew.workspace import Workspace


class Outcome(Protocol):
    """Where a run stopped, as a hook is told it (``runner.RunOutcome`` is one)."""

    status: str
    run_id: str
    workspace: str
    tasks: list[dict[str, Any]]
    questions: list[dict[str, Any]]
    report: str | None
    preview: str | None


@dataclass
class Stop:
    """Where a run stopped, as a node of the graph knows it (no runner needed)."""

    status: str
    run_id: str
    workspace: str
    tasks: list[dict[str, Any]] = field(default_factory=list)
    questions: list[dict[str, Any]] = field(default_factory=list)
    report: str | None = None
    preview: str | None = None
    """The URL a web app's preview serves on, when one does."""


Event = Literal["needs_person", "finished"]
RECORD = "notified.json"
FINISHED = ("delivered", "blocked", "aborted")
MAX_ERROR = 500


class NotifyFailed(OldnewError):
    """The hook could not be reached, failed, or took too long."""


def is_url(target: str) -> bool:
    """Return whether the hook is a webhook URL (else it is a command line)."""
    return target.startswith(("http://", "https://"))


def describe(target: str) -> str:
    """Return the hook without secrets for logs: a URL's scheme and host, a command's name."""
    if is_url(target):
        parts = urlsplit(target)
        return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}"
    argv = shlex.split(target)
    return argv[0] if argv else ""


def _answer_command(workspace: str, qid: str) -> str:
    return f"oldnew answer --workspace {shlex.quote(workspace)} {shlex.quote(qid)} ANSWER"


def payload_of(out: Outcome) -> tuple[Event, dict[str, Any]] | None:
    """Return the event and payload for where the run stands; None when nobody is needed."""
    base = {"run_id": out.run_id, "workspace": out.workspace, "status": out.status}
    if out.preview:
        base["preview"] = out.preview
    if out.status == "waiting" and out.questions:
        questions = [
            {
                "id": q["id"],
                "kind": q.get("kind"),
                "task_id": q.get("task_id"),
                "title": q.get("title"),
                "detail": q.get("detail", ""),
                "options": [{"key": o["key"], "label": o["label"]} for o in q.get("options", [])],
                "recommended": q.get("recommended"),
                "free_text": q.get("free_text", True),
                "answer_command": _answer_command(out.workspace, q["id"]),
            }
            for q in out.questions
        ]
        commands = {
            "answer": _answer_command(out.workspace, "QUESTION_ID"),
            "status": f"oldnew status --workspace {shlex.quote(out.workspace)}",
        }
        return "needs_person", {
            "event": "needs_person",
            **base,
            "questions": questions,
            "commands": commands,
        }
    if out.status in FINISHED:
        report = out.report
        return "finished", {
            "event": "finished",
            **base,
            "report": report,
            "report_markdown": str(Path(report).with_suffix(".md")) if report else None,
            "tasks": {
                "done": sum(t.get("status") == "done" for t in out.tasks),
                "not_done": sum(t.get("status") != "done" for t in out.tasks),
            },
        }
    return None


def send(target: str, event: Event, payload: dict[str, Any], timeout: float) -> str:
    """Deliver ``payload`` to the hook; return what answered, or raise NotifyFailed."""
    body = json.dumps(payload, default=str)
    if is_url(target):
        try:
            response = httpx.post(
                target,
                content=body,
                headers={"Content-Type": "application/json", "X-Oldnew-Event": event},
                timeout=timeout,
            )
        except httpx.HTTPError as exc:
            raise NotifyFailed(f"{type(exc).__name__}: {exc}"[:MAX_ERROR]) from exc
        if response.is_error:
            raise NotifyFailed(f"HTTP {response.status_code}: {response.text[:200]}")
        return f"HTTP {response.status_code}"
    argv = shlex.split(target)
    if not argv:
        raise NotifyFailed("the notify command is empty")
    try:
        done = subprocess.run(  # nosec B603 - argv from the person's own setting, no shell
            argv,
            input=body,
            text=True,
            capture_output=True,
            timeout=timeout,
            env={**os.environ, "OLDNEW_NOTIFY_EVENT": event},
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise NotifyFailed(f"the command took longer than {timeout:g} s") from exc
    except OSError as exc:
        raise NotifyFailed(f"cannot run {argv[0]}: {exc.strerror or exc}") from exc
    if done.returncode:
        raise NotifyFailed(
            f"the command exited with {done.returncode}: {done.stderr.strip()[-300:]}"[:MAX_ERROR]
        )
    return "exit 0"


def _read_record(ws: Workspace) -> dict[str, Any]:
    try:
        data = json.loads((ws.meta / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _fingerprint(payload: dict[str, Any]) -> str:
    """Return what identifies one finish: its status and its report's contents."""
    digest = ""
    if payload.get("report"):
        try:
            digest = hashlib.sha256(Path(payload["report"]).read_bytes()).hexdigest()
        except OSError:
            digest = "unreadable"
    return f"{payload['status']}:{payload.get('report')}:{digest}"


def _is_new(record: dict[str, Any], event: Event, payload: dict[str, Any]) -> bool:
    if event == "needs_person":
        told = set(record.get("questions", []))
        return any(q["id"] not in told for q in payload["questions"])
    return bool(record.get("finished") != _fingerprint(payload))


def _remember(ws: Workspace, record: dict[str, Any], event: Event, payload: dict[str, Any]) -> None:
    if event == "needs_person":
        told = set(record.get("questions", [])) | {q["id"] for q in payload["questions"]}
        record["questions"] = sorted(told)
    else:
        record["finished"] = _fingerprint(payload)
    (ws.meta / RECORD).write_text(json.dumps(record, indent=1), encoding="utf-8")


async def notify_outcome(ws: Workspace, ctx: Context, out: Outcome) -> list[str]:
    """Call the run's hook for ``out`` unless it already announced it; return notices.

    A failure is logged in events.jsonl and returned as a notice; it never raises. A hook that
    failed is tried again the next time the run stops (nothing is recorded as announced).
    """
    target = (ctx.notify or "").strip()
    found = payload_of(out) if target else None
    if found is None:
        return []
    event, payload = found
    record = await asyncio.to_thread(_read_record, ws)
    if not _is_new(record, event, payload):
        return []
    where = describe(target)
    try:
        answer = await asyncio.to_thread(send, target, event, payload, ctx.notify_timeout)
    except NotifyFailed as exc:
        await asyncio.to_thread(
            ws.log_event, node="notify", event="failed", kind=event, hook=where, error=str(exc)
        )
        return [f"the notification hook ({where}) failed for '{event}': {exc}; the run goes on"]
    await asyncio.to_thread(
        ws.log_event, node="notify", event="sent", kind=event, hook=where, answer=answer
    )
    await asyncio.to_thread(_remember, ws, record, event, payload)
    return []
