"""Count tokens: the model's own tokenizer when it loads offline, else 4 characters a token.

``tiktoken`` fetches its BPE files on first use, and nothing but package registries is
reachable here; an encoding is used only when its file is already in tiktoken's cache and
matches its published hash, so counting never touches the network.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ESTIMATE = "estimate (4 characters a token)"

_BLOBS = {
    "o200k_base": (
        "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    ),
    "cl100k_base": (
        "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    ),
}
"""The encodings OpenAI's current models use: where tiktoken fetches each, and its hash."""


@dataclass(frozen=True)
class TokenCounter:
    """Counts the tokens of a text; ``name`` says how (for the ``context`` event)."""

    name: str
    count: Callable[[str], int]


def estimate(text: str) -> int:
    """Return the 4-characters-a-token estimate of ``text``, rounded up."""
    return (len(text) + 3) // 4


ESTIMATOR = TokenCounter(ESTIMATE, estimate)


def cached_bpe(encoding: str) -> Path | None:
    """Return tiktoken's cached file of ``encoding`` if it is there and intact, else None."""
    if encoding not in _BLOBS:
        return None
    url, digest = _BLOBS[encoding]
    folder = os.environ.get("TIKTOKEN_CACHE_DIR", os.environ.get("DATA_GYM_CACHE_DIR"))
    if folder is None:
        folder = str(Path(tempfile.gettempdir()) / "data-gym-cache")
    if not folder:
        return None  # caching disabled: tiktoken would always download
    path = Path(folder) / hashlib.sha1(url.encode(), usedforsecurity=False).hexdigest()
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return path if hashlib.sha256(data).hexdigest() == digest else None


@cache
def _tiktoken_counter(encoding: str) -> TokenCounter | None:
    if cached_bpe(encoding) is None:
        return None
    try:
        import tiktoken

        enc = tiktoken.get_encoding(encoding)
    except Exception:  # noqa: BLE001 - any failure to load means: estimate instead
        return None
    return TokenCounter(f"tiktoken {encoding}", lambda text: len(enc.encode_ordinary(text)))


def model_name(spec: str | None) -> str | None:
    """Return the model name of a provider's spec or a bare name, else None (scripted, unset).

    Only OpenAI's names have a tiktoken encoding; any other name is counted by the estimate.
    """
    if not spec or spec.startswith("scripted:"):
        return None
    provider, sep, name = spec.partition(":")
    return (name if provider in ("openai", "azure_openai") else None) if sep else spec


def counter_for(spec: str | None) -> TokenCounter:
    """Return the counter for the model ``spec`` names: its tokenizer offline, else the estimate."""
    name = model_name(spec)
    if name is None:
        return ESTIMATOR
    try:
        import tiktoken

        encoding = tiktoken.encoding_name_for_model(name.rsplit("/", 1)[-1])
    except (ImportError, KeyError):
        return ESTIMATOR
    return _tiktoken_counter(encoding) or ESTIMATOR
