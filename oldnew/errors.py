"""Typed errors, sorted by who has to act.

Model mistakes (output that does not parse, code that fails) are not exceptions that escape:
they go back to the model, then to a person. What escapes as an exception is a usage or
configuration mistake, and its message says what to do about it.
"""

from __future__ import annotations


class OldnewError(Exception):
    """Base class of every error this package raises on purpose."""


class UsageError(OldnewError):
    """The caller asked for something that cannot be done as asked (bad file, bad argument)."""


class ConfigurationError(OldnewError):
    """Something the run needs from its environment is missing or wrong (model spec, API key)."""


class WorkspaceError(OldnewError):
    """The workspace directory cannot be used for this run."""


class PathViolation(WorkspaceError):
    """A path from the model points outside the workspace; nothing was written."""


class ModelOutputError(OldnewError):
    """The model's answer could not be used (no file blocks, wrong schema)."""


class CallTimeout(OldnewError, TimeoutError):
    """A model call sent no complete reply within its deadline (``model_timeout``).

    Transient: retried with backoff, then escalated; the message names the setting to raise.
    """


class ScriptedModelError(ConfigurationError):
    """A scripted transcript has no reply for the prompt it was given."""


class RunLockedError(WorkspaceError):
    """Another oldnew process is working on this workspace."""


class CheckpointsLost(WorkspaceError):
    """The run's checkpoint file is gone (or emptied) while its run record and work remain.

    A person decides: restore the file, or start the run over explicitly (``--restart``).
    """


class CheckpointsCorrupt(WorkspaceError):
    """The run's checkpoint file cannot be read as a database (truncated, overwritten)."""


class StorageError(WorkspaceError):
    """The disk refused a write: no space left, or the workspace is read-only.

    What was committed before the write stays; the message names the path (and the space
    free) so a person can make room or make it writable, then resume.
    """


class BudgetExceeded(OldnewError):
    """A token, cost or working-time cap is reached: no new model call starts.

    Never retried and never turned into a question: the run (``scope == "run"``) or the task
    (``scope == "task"``) stops where it is, stays resumable, and the report says which cap
    to raise (``flag``) to go on.
    """

    def __init__(
        self, reason: str, *, scope: str, flag: str, spent: float, cap: float, task: str | None
    ) -> None:
        """Say which cap (``flag``, the CLI option that raises it) stopped what, and why."""
        super().__init__(reason)
        self.reason, self.scope, self.flag = reason, scope, flag
        self.spent, self.cap, self.task = spent, cap, task

    def to_dict(self) -> dict[str, object]:
        """Return what graph state and the report keep of this stop."""
        return {
            "reason": "budget",
            "detail": self.reason,
            "scope": self.scope,
            "flag": self.flag,
            "spent": self.spent,
            "cap": self.cap,
            "task": self.task,
        }


class SuiteError(UsageError):
    """An evaluation suite cannot run as laid out (no case, a case without its scope file).

    Raised before any case runs; the message names the folder and what to add or move.
    """


class PostgresMissing(ConfigurationError):
    """PostgreSQL's server programs (``initdb``, ``pg_ctl``) are not installed on this machine."""


class StateError(ConfigurationError):
    """The run's state database (``--state URL``) cannot be used as given.

    Nothing committed is lost and the run stays resumable: the message says what to fix, then
    the same command goes on where the run stood.
    """


class StateUnreachable(StateError):
    """The state database's server does not answer (wrong host or port, down, firewalled)."""


class StateRefused(StateError):
    """The state database's server refuses the user or password of the URL."""


class StateMissing(StateError):
    """The state database's server answers, but the database named in the URL does not exist."""


class StateSchemaError(StateError):
    """The state database was set up by an oldnew of another state schema version."""


class StateElsewhere(UsageError):
    """The run's state is not where the command looks (its ``--state`` left out, or another)."""


class StateURLError(UsageError):
    """A ``--state`` value (or ``OLDNEW_STATE_URL``) that is no PostgreSQL URL."""
