"""An evaluation suite on disk: its cases, and the model spec each case runs with.

A suite is a folder of cases, one folder each (folders named ``results`` or starting with
``.`` or ``_`` are not cases). A case holds:

- ``scope.md``: the scope the run is given;
- ``files/`` (optional): supporting files, handed over as ``oldnew run --with`` hands them
  (each entry of ``files/`` keeps its name in the project);
- ``acceptance/``: the hidden acceptance tests (pytest), which the run never sees: they are
  not in the workspace, nor in any prompt, and run only on the delivered tree afterwards,
  from a folder outside it, with the delivered project's folder as the working folder and
  first on ``sys.path`` (``Path.cwd()`` is the project); a ``conftest.py`` among them is the
  suite's own and is read, the project's never are;
- anything else (a ``transcript.toml`` for the scripted model, notes) is not handed over.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from oldnew.context import Context
from oldnew.errors import ConfigurationError, SuiteError
from oldnew.models import check_model_specs

SCOPE = "scope.md"
SUPPORTING = "files"
ACCEPTANCE = "acceptance"
NOT_CASES = {"results"}


@dataclass(frozen=True)
class Case:
    """One case of a suite."""

    name: str
    folder: Path

    @property
    def scope(self) -> Path:
        """The scope file the run is given."""
        return self.folder / SCOPE

    @property
    def acceptance(self) -> Path:
        """The hidden acceptance tests."""
        return self.folder / ACCEPTANCE

    @property
    def supporting(self) -> list[Path]:
        """The supporting files and folders handed to the run (the entries of ``files/``)."""
        folder = self.folder / SUPPORTING
        return sorted(folder.iterdir()) if folder.is_dir() else []


def _is_case(path: Path) -> bool:
    return path.is_dir() and path.name not in NOT_CASES and not path.name.startswith((".", "_"))


def load_suite(suite: Path | str) -> list[Case]:
    """Return the cases of the suite folder, by name.

    Raises:
        SuiteError: the folder is missing, holds no case, or a case lacks its scope file or
            its acceptance tests.

    """
    root = Path(suite)
    if not root.is_dir():
        raise SuiteError(f"suite folder {root} does not exist (or is not a folder)")
    cases = [Case(p.name, p.resolve()) for p in sorted(root.iterdir()) if _is_case(p)]
    if not cases:
        raise SuiteError(
            f"suite folder {root} holds no case: add one folder per case, each with a "
            f"{SCOPE} and an {ACCEPTANCE}/ folder of pytest tests"
        )
    for case in cases:
        if not case.scope.is_file():
            raise SuiteError(
                f"case {case.name} ({case.folder}) has no {SCOPE}: write the scope the run is "
                "given there, or move the folder out of the suite (or name it _"
                f"{case.name} to keep it there unused)"
            )
        tests = list(case.acceptance.rglob("test_*.py")) if case.acceptance.is_dir() else []
        if not tests:
            raise SuiteError(
                f"case {case.name} has no acceptance tests: put pytest files (test_*.py) in "
                f"{case.acceptance}; they are hidden from the run and judge what it delivers"
            )
    return cases


def case_model(spec: str | None, case: Case) -> str | None:
    """Return the model spec ``case`` runs with.

    A ``scripted:`` spec with a relative path names a transcript in each case's own folder
    (``scripted:transcript.toml``), and otherwise one relative to the current folder. Any
    other spec (``provider:model``) is the same for every case; None: the run's default.
    """
    if spec is None or not spec.startswith("scripted:"):
        return spec
    path = Path(spec.removeprefix("scripted:"))
    if path.is_absolute():
        return spec
    own = case.folder / path
    return f"scripted:{own if own.is_file() or not path.is_file() else path.resolve()}"


def check_models(spec: str | None, cases: list[Case]) -> dict[str, str | None]:
    """Return each case's model spec once every one of them resolves to a model.

    Raises:
        ConfigurationError: a case's spec cannot be built (a transcript that is not there or
            does not parse, a provider without its API key); the message says which case.

    """
    out: dict[str, str | None] = {}
    for case in cases:
        mine = case_model(spec, case)
        try:
            check_model_specs(Context(model=mine))
        except ConfigurationError as exc:
            hint = (
                f"put a transcript at {case.folder / spec.removeprefix('scripted:')}, or give "
                "an absolute path"
                if spec and spec.startswith("scripted:")
                else "give --model 'provider:model' (with its API key set) or "
                "'scripted:transcript.toml' (a transcript in each case folder)"
            )
            raise ConfigurationError(
                f"case {case.name}: the model spec {mine or '(none)'} does not resolve: {exc}. "
                f"{hint[0].upper()}{hint[1:]}."
            ) from exc
        out[case.name] = mine
    return out
