"""Run memory: what a run has learned that later prompts must respect."""

from oldnew.memory.decisions import decisions_from

__all__ = ["decisions_from"]
