"""A lexical scan of a scope for what a builder would have to guess.

It flags vague quantities ("fast", "many"), subjective terms ("user-friendly", "modern"), open
questions (a "?", TBD, TODO) and simple contradictions ("must use a database" next to "no
database"). The findings only inform the scope model, which decides what, if anything, is worth
asking: the scan never turns a finding into a question by itself, so a scope the model finds
clear gets no invented questions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

AmbiguityKind = Literal["vague_quantity", "subjective", "open_question", "contradiction"]

VAGUE_QUANTITIES = (
    "many",
    "few",
    "some",
    "several",
    "various",
    "numerous",
    "a lot of",
    "lots of",
    "large",
    "huge",
    "small",
    "big",
    "fast",
    "quick",
    "quickly",
    "slow",
    "scalable",
    "high performance",
    "high-performance",
    "low latency",
    "real-time",
    "as needed",
    "as appropriate",
    "as soon as possible",
    "soon",
    "often",
    "frequently",
    "etc",
    "and so on",
)
SUBJECTIVE_TERMS = (
    "user-friendly",
    "user friendly",
    "easy to use",
    "easy",
    "simple",
    "intuitive",
    "modern",
    "nice",
    "beautiful",
    "pretty",
    "clean",
    "elegant",
    "sleek",
    "seamless",
    "robust",
    "good-looking",
    "professional",
    "polished",
    "best",
    "reasonable",
    "appropriate",
)
OPEN_MARKERS = re.compile(r"\?|\bTBD\b|\bTBC\b|\bTODO\b|\bto be (?:decided|defined|confirmed)\b")
OPPOSITES = (
    ("single-user", "multi-user"),
    ("single user", "multiple users"),
    ("single-tenant", "multi-tenant"),
    ("stateless", "stateful"),
    ("read-only", "editable"),
    ("synchronous", "asynchronous"),
)
_FILLER = r"(?:(?:be|use|have|support|store|need|require|a|an|the|any)\s+)*"
_AFFIRM = re.compile(rf"\b(?:must|should|shall|will|needs? to|has to)\s+{_FILLER}([a-z][\w-]+)")
_NEGATE = re.compile(
    rf"\b(?:must not|mustn't|should not|shouldn't|shall not|never|no|without)\s+{_FILLER}"
    r"([a-z][\w-]+)"
)
_NOT_OBJECTS = {
    "not",
    "never",
    "more",
    "longer",
    "other",
    "one",
    "need",
    "way",
    "matter",
    "later",
    "than",
}
MAX_FINDINGS = 12
CONTEXT_CHARS = 60


@dataclass(frozen=True)
class Ambiguity:
    """One place in the scope a builder would have to guess."""

    kind: AmbiguityKind
    phrase: str
    """The words that are vague, subjective, open or contradictory."""
    excerpt: str
    """The text around it, for the model and the person."""

    def render(self) -> str:
        """Return the finding as one prompt line."""
        return f'{self.kind.replace("_", " ")}: "{self.phrase}" in "{self.excerpt}"'


def _sentences(text: str) -> list[str]:
    parts = re.split(r"(?<=[.!?;])\s+|\n+", text)
    return [p.strip(" -*#>\t") for p in parts if p.strip(" -*#>\t")]


def _excerpt(sentence: str, start: int, end: int) -> str:
    lo, hi = max(0, start - CONTEXT_CHARS), min(len(sentence), end + CONTEXT_CHARS)
    core = " ".join(sentence[lo:hi].split())
    return ("..." if lo else "") + core + ("..." if hi < len(sentence) else "")


def _term_pattern(terms: tuple[str, ...]) -> re.Pattern[str]:
    alternatives = "|".join(re.escape(t) for t in sorted(terms, key=len, reverse=True))
    return re.compile(rf"(?<![\w-])(?:{alternatives})(?![\w-])", re.IGNORECASE)


_VAGUE = _term_pattern(VAGUE_QUANTITIES)
_SUBJECTIVE = _term_pattern(SUBJECTIVE_TERMS)


def _word_findings(sentences: list[str]) -> list[Ambiguity]:
    found: list[Ambiguity] = []
    for sentence in sentences:
        for kind, pattern in (("vague_quantity", _VAGUE), ("subjective", _SUBJECTIVE)):
            for m in pattern.finditer(sentence):
                found.append(
                    Ambiguity(
                        kind,  # type: ignore[arg-type]
                        m.group(0).lower(),
                        _excerpt(sentence, m.start(), m.end()),
                    )
                )
        marker = OPEN_MARKERS.search(sentence)
        if marker:
            found.append(
                Ambiguity("open_question", marker.group(0), _excerpt(sentence, 0, len(sentence)))
            )
    return found


def _stem(word: str) -> str:
    word = word.lower()
    return word[:-1] if word.endswith("s") and len(word) > 3 else word


def _contradictions(sentences: list[str]) -> list[Ambiguity]:
    found: list[Ambiguity] = []
    affirmed: dict[str, str] = {}
    negated: dict[str, str] = {}
    for sentence in sentences:
        low = sentence.lower()
        negated_here = set()
        for m in _NEGATE.finditer(low):
            word = _stem(m.group(1))
            if word not in _NOT_OBJECTS:
                negated.setdefault(word, sentence)
                negated_here.add(word)
        for m in _AFFIRM.finditer(low):
            word = _stem(m.group(1))
            if word not in _NOT_OBJECTS and word not in negated_here and m.group(1) != "not":
                affirmed.setdefault(word, sentence)
    for word in sorted(set(affirmed) & set(negated)):
        if affirmed[word] != negated[word]:
            found.append(
                Ambiguity("contradiction", word, f"{affirmed[word]} / {negated[word]}"[:240])
            )
    whole = "\n".join(sentences).lower()
    for one, other in OPPOSITES:
        if re.search(rf"(?<![\w-]){re.escape(one)}(?![\w-])", whole) and re.search(
            rf"(?<![\w-]){re.escape(other)}(?![\w-])", whole
        ):
            found.append(Ambiguity("contradiction", f"{one} / {other}", f"{one} and {other}"))
    return found


def find_ambiguities(text: str, *, limit: int = MAX_FINDINGS) -> list[Ambiguity]:
    """Return the scope's vague, subjective, open and contradictory phrases, at most ``limit``.

    Contradictions and open questions come first (they matter most), then one finding per
    distinct vague or subjective phrase. Fenced code blocks are skipped.
    """
    prose = re.sub(r"```.*?```", " ", text, flags=re.DOTALL)
    sentences = _sentences(prose)
    ordered = _contradictions(sentences) + _word_findings(sentences)
    rank = {"contradiction": 0, "open_question": 1, "vague_quantity": 2, "subjective": 2}
    ordered.sort(key=lambda a: rank[a.kind])
    out: list[Ambiguity] = []
    seen: set[tuple[str, str]] = set()
    for a in ordered:
        key = (a.kind, a.excerpt if a.kind == "open_question" else a.phrase)
        if key not in seen:
            seen.add(key)
            out.append(a)
    return out[:limit]
