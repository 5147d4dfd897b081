"""LangSmith tracing of a run: named traces, task and role tags, one line when it cannot send.

Tracing is LangChain's own: on with ``LANGSMITH_TRACING=true`` (and ``LANGSMITH_API_KEY``,
``LANGSMITH_ENDPOINT``, ``LANGSMITH_PROJECT``). oldnew adds what makes a run's trace
navigable:

- each command's pass over a run is one trace named ``oldnew <run id>``, tagged
  ``oldnew`` and ``run:<run id>``, with ``oldnew_run`` in its metadata (a run that pauses and
  resumes gives one trace per command, grouped in LangSmith by that id);
- each task's thread is a span named ``task <id>`` inside it, tagged ``task:<id>`` with
  ``task_id`` in its metadata, and every model call of the task under it;
- each model call is tagged ``role:<role>`` with ``role`` in its metadata.

The langsmith client logs each failed upload (an endpoint that is down or unreachable) as a
warning of many lines; :func:`quiet_langsmith` turns the first one into one line on stderr
and drops the rest, unless the host program configured logging itself.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TypeVar

from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import RunnableConfig
from langsmith.utils import tracing_is_enabled

LOGGER = "langsmith"
"""The logger the langsmith client (and its background uploader) logs through."""
DEFAULT_ENDPOINT = "https://api.smith.langchain.com"
_NOISE = ("Run compression is not enabled",)
"""Warnings that only follow from a failure already said (no /info: no compression)."""

Model = TypeVar("Model", bound=BaseChatModel)


def run_trace(config: RunnableConfig, run_id: str) -> RunnableConfig:
    """Return ``config`` naming and tagging the run's trace; quiet the client's failures."""
    quiet_langsmith()
    return {
        **config,
        "run_name": f"oldnew {run_id}",
        "tags": [*config.get("tags", []), "oldnew", f"run:{run_id}"],
        "metadata": {**config.get("metadata", {}), "oldnew_run": run_id},
    }


def task_trace(config: RunnableConfig, task_id: str) -> RunnableConfig:
    """Return ``config`` naming and tagging one task's span (its thread's graph run)."""
    return {
        **config,
        "run_name": f"task {task_id}",
        "tags": [*config.get("tags", []), f"task:{task_id}"],
        "metadata": {**config.get("metadata", {}), "task_id": task_id},
    }


def with_role(model: Model, role: str) -> Model:
    """Return ``model`` tagging its calls with ``role`` when tracing is on (else ``model``).

    On, the client's failures are quieted first (:func:`quiet_langsmith`).
    Off, the model is handed back as it is: a caller's own model object stays the one called.
    """
    if not tracing_is_enabled():
        return model
    quiet_langsmith()  # a command that runs no graph (plan, verify) calls models too
    return model.model_copy(
        update={
            "tags": [*(model.tags or []), f"role:{role}"],
            "metadata": {**(model.metadata or {}), "role": role},
        }
    )


class OneLine(logging.Handler):
    """Say the langsmith client's first failure in one line on stderr; drop the rest."""

    def __init__(self) -> None:
        """Make the handler for warnings and worse; nothing said yet."""
        super().__init__(logging.WARNING)
        self.said = False

    def emit(self, record: logging.LogRecord) -> None:
        """Write the first failure as one warning line; later ones are dropped."""
        text = record.getMessage()
        if self.said or text.startswith(_NOISE):
            return
        self.said = True
        endpoint = os.environ.get("LANGSMITH_ENDPOINT") or os.environ.get(
            "LANGCHAIN_ENDPOINT", DEFAULT_ENDPOINT
        )
        first = " ".join(text.split())[:120]
        print(
            f"warning: LangSmith tracing cannot send to {endpoint}, traces of this run may be "
            f"lost (said once; LANGSMITH_TRACING=false turns tracing off): {first}",
            file=sys.stderr,
            flush=True,
        )


def quiet_langsmith() -> None:
    """Put :class:`OneLine` on the langsmith logger, once, unless logging is configured.

    A host program with its own logging (a root handler, or one on the langsmith logger)
    keeps the client's messages as it set them up.
    """
    log = logging.getLogger(LOGGER)
    if log.handlers or logging.getLogger().handlers:
        return
    log.addHandler(OneLine())
    log.propagate = False
