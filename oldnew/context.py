"""Run configuration: one keyword-only dataclass that nodes read from ``runtime.context``.

Precedence for every field: the value passed explicitly (CLI flag, Python argument, the
``context`` of a LangGraph server run), then the ``OLDNEW_*`` environment variable, then the
default below.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Literal

Role = Literal["planner", "coder", "fixer"]
ROLES: tuple[Role, ...] = ("planner", "coder", "fixer")


@dataclass(kw_only=True)
class Context:
    """How one run behaves; every loop in the graph takes its cap from here."""

    model: str | None = field(
        default=None,
        metadata={
            "description": "Model spec for every role: 'openai:<model>' or "
            "'scripted:<transcript file>'. Env: OLDNEW_MODEL."
        },
    )
    planner_model: str | None = field(
        default=None, metadata={"description": "Spec for the planner role; falls back to model."}
    )
    coder_model: str | None = field(
        default=None, metadata={"description": "Spec for the coder role; falls back to model."}
    )
    fixer_model: str | None = field(
        default=None, metadata={"description": "Spec for the fixer role; falls back to model."}
    )
    structured_output_method: Literal["json_schema", "function_calling"] = field(
        default="json_schema",
        metadata={
            "description": "How structured output is requested from OpenAI-compatible servers; "
            "'function_calling' for servers without json_schema support."
        },
    )
    workspace: str | None = field(
        default=None,
        metadata={
            "description": "Directory of the run's git workspace. When unset (a LangGraph "
            "server run), runs/<thread id> under the current directory."
        },
    )
    max_agents: int = field(
        default=3, metadata={"description": "Tasks that run at the same time, at most."}
    )
    max_fix_rounds: int = field(
        default=3,
        metadata={"description": "Fix rounds per task before a person is asked."},
    )
    max_output_retries: int = field(
        default=2,
        metadata={"description": "Re-asks when model output does not parse, before escalating."},
    )
    max_plan_repairs: int = field(
        default=2,
        metadata={"description": "Times an invalid plan is sent back to the planner."},
    )
    test_timeout: float = field(
        default=120.0,
        metadata={"description": "Seconds a validation command may run before it is killed."},
    )

    def __post_init__(self) -> None:
        """Fill unset fields from ``OLDNEW_<FIELD>`` environment variables."""
        for f in fields(self):
            env = os.environ.get(f"OLDNEW_{f.name.upper()}")
            if env is None or getattr(self, f.name) != f.default:
                continue
            current = getattr(self, f.name)
            if isinstance(current, bool):
                setattr(self, f.name, env.lower() in {"1", "true", "yes"})
            elif isinstance(current, int):
                setattr(self, f.name, int(env))
            elif isinstance(current, float):
                setattr(self, f.name, float(env))
            else:
                setattr(self, f.name, env)

    def model_spec(self, role: Role) -> str | None:
        """Return the spec for ``role``: its own field, else the shared ``model``."""
        own: str | None = getattr(self, f"{role}_model")
        return own or self.model
