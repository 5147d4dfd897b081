"""Runs: open a run's session, read its outcome, and the commands people use on it."""

from oldnew.runs.commands import (
    answer_run,
    approve_gate,
    memory_listing,
    read_scope,
    resume_run,
    run_status,
    start_run,
    submit_feedback,
)
from oldnew.runs.outcome import RunOutcome, outcome_of
from oldnew.runs.session import EventSink, open_graph, run_config, stream

__all__ = [
    "EventSink",
    "RunOutcome",
    "answer_run",
    "approve_gate",
    "memory_listing",
    "open_graph",
    "outcome_of",
    "read_scope",
    "resume_run",
    "run_config",
    "run_status",
    "start_run",
    "stream",
    "submit_feedback",
]
