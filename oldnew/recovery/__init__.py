"""Recovery: classify every failure, and the policy each class gets."""

from oldnew.recovery.classify import Classification, classify, classify_diagnostics
from oldnew.recovery.policy import FailureClass

__all__ = ["Classification", "FailureClass", "classify", "classify_diagnostics"]
