"""Recovery: classify every failure, and the policy each class gets."""

from oldnew.recovery.classify import Classification, FailureClass, classify, classify_diagnostics

__all__ = ["Classification", "FailureClass", "classify", "classify_diagnostics"]
