"""Settings files: ``oldnew.toml`` or ``[tool.oldnew]`` in ``pyproject.toml``, and ``.env``.

Both are read from the directory oldnew is started in, and only there: not its parents, never
a run's workspace (a generated project's own ``pyproject.toml`` is the project's, not
oldnew's). :func:`load` reads them; the CLI calls it once at startup, a Python caller may call
it too. A LangGraph server run does not read them (its settings come from the run's
``context`` and the server's environment).

Keys are :class:`~oldnew.context.Context` field names, with the values the field takes::

    # oldnew.toml                      # or pyproject.toml
    model = "openai:gpt-4o-mini"       # [tool.oldnew]
    max_agents = 4                     # max_agents = 4

``.env`` sets environment variables (``OLDNEW_MODEL=...``, ``OPENAI_API_KEY=...``) that are
not set already: the environment a person gives wins over the file. Precedence for a setting
is the explicit value (flag, argument), then ``OLDNEW_*`` (``.env`` included), then the
settings file, then the default.

A web app's own keys in ``[tool.oldnew]`` (``start``, ``build``, ``health``: how oldnew starts
a Python app it built, ``oldnew.web.start``) are no settings and are skipped, so running
oldnew in a project it generated never mistakes them for settings.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from dotenv import dotenv_values

from oldnew.context import FILE_LAYER, Context, read_setting
from oldnew.errors import UsageError

OWN_FILE = "oldnew.toml"
PYPROJECT = "pyproject.toml"
DOTENV = ".env"
APP_KEYS = frozenset({"start", "build", "health", "test"})
"""A project's own ``[tool.oldnew]`` keys, never settings: how a web app starts
(``oldnew.web.start``: start, build, health) and how its tests run (``gates.project``: test)."""
PER_RUN = {
    "workspace": "it is given per run (--workspace)",
    "gates": "the former name of 'approvals': write approvals = ...",
}
"""Keys a settings file may not set, and why."""


@dataclass(frozen=True)
class FileSettings:
    """The settings one file gave: where they came from and the values, checked."""

    path: Path | None = None
    values: dict[str, Any] = field(default_factory=dict)
    table: str = ""
    """Where in the file the keys are: '' (top level of oldnew.toml) or '[tool.oldnew]'."""

    def where(self, key: str) -> str:
        """Say where ``key`` was set, for messages: the file, its table and the key."""
        table = f" {self.table}" if self.table else ""
        return f"{self.path}{table} {key}"


_loaded = FileSettings()


def load(directory: Path | str | None = None) -> FileSettings:
    """Read the settings of ``directory`` (the working directory): ``.env``, then the file.

    ``.env`` goes into ``os.environ`` without overriding a variable already set; the file's
    settings become the layer every Context made afterwards in this process takes for the
    fields nothing else set. Calling it again replaces that layer.

    Raises:
        UsageError: the file does not parse, names no setting, or a value is not allowed;
            the message names the file, the key and what is allowed.

    """
    global _loaded
    where = Path(directory) if directory is not None else Path.cwd()
    dotenv = where / DOTENV
    if dotenv.is_file():
        try:
            values = dotenv_values(dotenv, encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(
                f"{dotenv} does not read as UTF-8 text ({exc}): fix or remove it"
            ) from None
        fresh = {k: v for k, v in values.items() if k not in os.environ and v is not None}
        os.environ.update(fresh)  # never over a variable already set
        FILE_LAYER.dotenv.update({k: str(dotenv.resolve()) for k in fresh})
    _loaded = read(where)
    FILE_LAYER.values = dict(_loaded.values)
    return _loaded


def loaded() -> FileSettings:
    """Return the settings :func:`load` read last (none before it is called)."""
    return _loaded


def reset() -> None:
    """Forget the settings :func:`load` read (the environment it set stays)."""
    global _loaded
    _loaded = FileSettings()
    FILE_LAYER.values, FILE_LAYER.dotenv = {}, {}


def read(directory: Path) -> FileSettings:
    """Return the checked settings of ``oldnew.toml`` or ``pyproject.toml`` in ``directory``.

    Raises:
        UsageError: as :func:`load`; also when both files carry settings.

    """
    own, project = directory / OWN_FILE, directory / PYPROJECT
    found = []
    if own.is_file():
        found.append(_check(own, "", _toml(own)))
    if project.is_file():
        tool = _toml(project).get("tool", {}).get("oldnew", {})
        keys = (
            {k: v for k, v in tool.items() if k not in APP_KEYS} if isinstance(tool, dict) else {}
        )
        if keys:
            found.append(_check(project, "[tool.oldnew]", keys))
    if len(found) == 2:
        raise UsageError(
            f"settings in both {own} and {project} [tool.oldnew]: keep them in one of the two"
        )
    return found[0] if found else FileSettings()


def _toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path} does not parse as TOML ({exc}): fix or remove it") from None


def _check(path: Path, table: str, raw: dict[str, Any]) -> FileSettings:
    names = [f.name for f in fields(Context)]
    out = FileSettings(path, {}, table)
    for key, value in raw.items():
        if key in PER_RUN:
            raise UsageError(f"{out.where(key)}: not a file setting, {PER_RUN[key]}")
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise UsageError(
                f"{out.where(key)}: no such setting; {hint}the keys are the settings' names, "
                "as in OLDNEW_<NAME> without the prefix (README, 'Settings files')"
            )
        out.values[key] = read_setting(key, value, out.where(key))
    return out
