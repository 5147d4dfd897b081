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


class ScriptedModelError(ConfigurationError):
    """A scripted transcript has no reply for the prompt it was given."""


class RunLockedError(WorkspaceError):
    """Another oldnew process is working on this workspace."""
