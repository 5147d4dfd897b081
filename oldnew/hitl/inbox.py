"""The inbox: answers and feedback given while a run is busy, picked up between tasks.

``oldnew answer`` on a workspace another process is working on cannot resume the run (the
workspace lock is held), so it drops its answers here as one JSON file each (written to a
temporary name, then renamed: a reader never sees half a file). The running scheduler reads
the inbox whenever a task settles or every ``POLL`` seconds while tasks wait, applies each
answer to the task waiting on it, and moves the file to ``inbox/taken``. Answers left when
the run paused are folded into the next resume. Feedback (``oldnew feedback``) travels the
same way: the scheduler starts no new task, lets the running ones finish, and hands it to
the planner.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oldnew.schemas import Question
from oldnew.workspace import Workspace

POLL = 0.5
"""Seconds between two looks at the inbox while a task waits for an answer."""


@dataclass
class Letter:
    """One file of answers in the inbox."""

    path: Path
    answers: dict[str, str]
    feedback: str | None = None


def _folder(ws: Workspace) -> Path:
    return ws.meta / "inbox"


def post(ws: Workspace, answers: dict[str, str], feedback: str | None = None) -> Path:
    """Drop ``answers`` (question id -> answer) or ``feedback`` into the inbox; return the file."""
    folder = _folder(ws)
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.json"
    tmp = folder / f".{name}.tmp"
    tmp.write_text(json.dumps({"answers": answers, "feedback": feedback}), encoding="utf-8")
    os.replace(tmp, folder / name)
    return folder / name


def letters(ws: Workspace) -> list[Letter]:
    """Return the unread letters, oldest first; an unreadable one is set aside, not lost."""
    folder = _folder(ws)
    out: list[Letter] = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            answers = {str(k): str(v) for k, v in dict(data["answers"]).items()}
            feedback = data.get("feedback")
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            _move(path, "unreadable")
            continue
        out.append(Letter(path, answers, str(feedback) if feedback else None))
    return out


def taken(letter: Letter) -> None:
    """Mark a letter as applied (it moves to ``inbox/taken``)."""
    _move(letter.path, "taken")


def _move(path: Path, to: str) -> None:
    target = path.parent / to
    target.mkdir(exist_ok=True)
    try:
        os.replace(path, target / path.name)
    except FileNotFoundError:
        pass  # another reader took it first


@dataclass
class Applied:
    """What one read of the inbox changed."""

    answered: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Question id -> the question, answered."""
    resumed: set[str] = field(default_factory=set)
    """Tasks whose answer arrived: they can run on."""
    feedback: list[str] = field(default_factory=list)
    """Feedback texts, oldest first, for the planner."""
    notices: list[str] = field(default_factory=list)
    """Answers that were not applied, and why."""


def read_answers(
    ws: Workspace,
    waiting: Mapping[str, tuple[str, dict[str, Any]]],
    known: Mapping[str, Mapping[str, Any]],
) -> Applied:
    """Apply the unread letters (blocking); ``waiting`` maps question ids to (task, question).

    An answer is applied when a task waits on its question and nobody answered it yet (``known``
    holds the questions as far as the run knows them), and when it fits the question's options.
    """
    out = Applied()
    for letter in letters(ws):
        if letter.feedback:
            out.feedback.append(letter.feedback)
        for qid, raw in letter.answers.items():
            prior = out.answered.get(qid) or known.get(qid)
            if qid not in waiting or (prior or {}).get("status") == "answered":
                why = "it was already answered" if prior else "no task is waiting on it"
                out.notices.append(f"the answer to {qid} was not applied: {why}")
                continue
            tid, asked = waiting[qid]
            q = Question.model_validate(asked)
            try:
                answer = q.check_answer(raw)
            except ValueError as exc:
                out.notices.append(f"the answer to {qid} was not applied: {exc}")
                continue
            out.answered[qid] = {**q.model_dump(), "status": "answered", "answer": answer}
            out.resumed.add(tid)
        taken(letter)
    return out
