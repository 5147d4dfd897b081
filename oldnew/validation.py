"""The validation runner's public names; the gates live in :mod:`oldnew.gates`.

Kept so that ``from oldnew.validation import validate_tree, ValidationResult, Diagnostic``
goes on working; new code imports from :mod:`oldnew.gates`.
"""

from oldnew.gates import Check, CheckStatus, Diagnostic, ValidationResult, validate_tree

__all__ = ["Check", "CheckStatus", "Diagnostic", "ValidationResult", "validate_tree"]
