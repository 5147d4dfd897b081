"""Text similarity behind one interface, so an embedding model can replace the lexical one.

No model can be downloaded on the machines this runs on, so the default is lexical: cosine
similarity of word counts, with common English and code filler words left out.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Protocol

_WORD = re.compile(r"[a-z][a-z0-9_]+")
_STOP = frozenset(
    "the and for with that this from into are was were has have not but can its it's you your "
    "all any each use uses using when then than them they will should must may a an of to in "
    "on by or as is be at if do does so no yes one two new".split()
)


class Similarity(Protocol):
    """Scores how close two texts are, from 0 (unrelated) to 1 (the same)."""

    def score(self, a: str, b: str) -> float:
        """Return the similarity of ``a`` and ``b``."""
        ...


def words(text: str) -> Counter[str]:
    """Return the counted content words of ``text`` (lower case, no filler words)."""
    return Counter(w for w in _WORD.findall(text.lower()) if w not in _STOP)


class LexicalSimilarity:
    """Cosine similarity of word counts: cheap, deterministic, no model needed."""

    def score(self, a: str, b: str) -> float:
        """Return the cosine of the two texts' word-count vectors."""
        return cosine(words(a), words(b))


def cosine(va: Counter[str], vb: Counter[str]) -> float:
    """Return the cosine of two word-count vectors."""
    if not va or not vb:
        return 0.0
    dot = sum(n * vb[w] for w, n in va.items() if w in vb)
    norm = math.sqrt(sum(n * n for n in va.values())) * math.sqrt(sum(n * n for n in vb.values()))
    return dot / norm if norm else 0.0
