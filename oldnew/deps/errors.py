"""Why a project's dependencies could not be locked or installed, typed by who must act."""

from __future__ import annotations

from typing import Literal

from oldnew.errors import OldnewError

DependencyKind = Literal[
    "manifest", "resolution", "source_only", "unreachable", "install", "caps", "lock_mismatch"
]
CODER_KINDS = frozenset({"manifest", "resolution", "lock_mismatch"})
"""Kinds a code change fixes: the message goes back to the coder as a diagnostic."""


class DependencyError(OldnewError):
    """A manifest, a resolution or an installation failed; ``kind`` says which.

    ``manifest``, ``resolution`` and ``lock_mismatch`` are the coder's to fix (the resolver's
    own words are the diagnostic); ``source_only`` (a package with no wheel), ``unreachable``
    (the index does not answer), ``install`` (time, disk) and ``caps`` (too many or too large
    packages) need a person.
    """

    def __init__(
        self, kind: DependencyKind, message: str, *, packages: tuple[str, ...] = ()
    ) -> None:
        """Keep the kind, the message (what to do) and the packages concerned."""
        super().__init__(message)
        self.kind: DependencyKind = kind
        self.message = message
        self.packages = packages

    @property
    def for_coder(self) -> bool:
        """Whether changing the project's files can fix it."""
        return self.kind in CODER_KINDS
