"""Prompt templates as data: one Jinja file per prompt, rendered strictly.

A missing variable is an error (``StrictUndefined``), never an empty string in a prompt.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from oldnew.fileblocks import fenced


@cache
def _env() -> Environment:
    env = Environment(  # nosec B701 - prompts are plain text, not HTML
        loader=PackageLoader("oldnew", "prompts"),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        auto_reload=False,
    )
    env.filters["fenced"] = fenced  # a file shown between fences nothing inside can close
    # Load every template now: rendering inside a running graph must not touch the disk.
    for name in env.list_templates(extensions=["j2"]):
        env.get_template(name)
    return env


def render(name: str, **variables: Any) -> str:
    """Render the template ``prompts/<name>.j2`` with ``variables``."""
    return _env().get_template(f"{name}.j2").render(**variables).strip() + "\n"


_env()  # at import time, outside any event loop
