"""Complexity: score a scope, name its class, and size the plan and the team from it.

Weights, thresholds, task ranges and agent counts come from the run's Context, written as
``name=value`` pairs ("features=2,integrations=3", "simple=6-8,..."), so an operator can change
them with an environment variable or a server run's context.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from oldnew.context import CLASSES, PARTS, Context, parse_pairs, parse_range, setting_number
from oldnew.schemas import Scope

__all__ = ["Complexity", "assess"]


@dataclass(frozen=True)
class Complexity:
    """How big a scope is and what that implies for its plan."""

    score: float
    """Weighted sum of the scope's items."""
    parts: dict[str, float]
    """Kind -> points it contributed."""
    counts: dict[str, int]
    """Kind -> number of items."""
    cls: str
    """simple, medium, complex or monster."""
    tasks: tuple[int, int]
    """Task count the planner is asked for."""
    accepted: tuple[int, int]
    """Task count outside which a plan is rejected as grossly mis-sized."""
    agents: int
    """Agents to run at once unless the run sets max_agents."""
    phased: bool
    """Whether the plan is made in phases, epic by epic."""

    def to_dict(self) -> dict[str, object]:
        """Return a JSON-ready dict (what state and ``oldnew plan --json`` hold)."""
        return asdict(self)

    def size_problem(self, n_tasks: int) -> str | None:
        """Say why ``n_tasks`` is far from this class's plan size, or None when it fits."""
        lo, hi = self.accepted
        if lo <= n_tasks <= hi:
            return None
        parts = ", ".join(f"{k} {v:g}" for k, v in self.parts.items() if v)
        return (
            f"the plan has {n_tasks} tasks, but a {self.cls} scope (score {self.score:g}: "
            f"{parts or 'nothing'}) takes about {self.tasks[0]} to {self.tasks[1]} tasks; "
            f"plans of {lo} to {hi} tasks are accepted"
        )


def _class_of(score: float, thresholds: dict[str, float]) -> tuple[str, float]:
    """Return the class of ``score`` and the score where that class starts."""
    floor = 0.0
    for cls in CLASSES[:-1]:
        if score < thresholds[cls]:
            return cls, floor
        floor = thresholds[cls]
    return CLASSES[-1], floor


def assess(scope: Scope, ctx: Context) -> Complexity:
    """Score ``scope`` with the run's weights and size its plan from its class."""
    weights = {
        k: setting_number(v, "complexity_weights")
        for k, v in parse_pairs(ctx.complexity_weights, "complexity_weights", PARTS).items()
    }
    thresholds = {
        k: setting_number(v, "complexity_thresholds")
        for k, v in parse_pairs(
            ctx.complexity_thresholds, "complexity_thresholds", CLASSES[:-1]
        ).items()
    }
    counts = {
        "features": len(scope.features),
        "integrations": len(scope.integrations),
        "pages": len(scope.pages),
        "models": len(scope.data_models),
        "apis": len(scope.api_endpoints),
    }
    parts = {k: counts[k] * weights[k] for k in PARTS}
    score = round(sum(parts.values()), 2)
    cls, floor = _class_of(score, thresholds)
    lo, hi = parse_range(parse_pairs(ctx.class_tasks, "class_tasks", CLASSES)[cls], "class_tasks")
    n_req = sum(counts.values())
    if cls == CLASSES[-1]:
        hi = max(hi, n_req)  # "100+": a monster plan has room for a task per requirement
    a_lo, a_hi = parse_range(
        parse_pairs(ctx.class_agents, "class_agents", CLASSES)[cls], "class_agents"
    )
    # Within a range of agents, grow with how far the score is past the class's floor.
    reach = min(1.0, (score - floor) / floor) if floor else 0.0
    agents = a_lo + round((a_hi - a_lo) * reach)
    tol = max(1.0, ctx.plan_size_tolerance)
    accepted = (max(1, min(math.floor(lo / tol), n_req)), math.ceil(hi * tol))
    phased = cls in {c.strip() for c in ctx.phased_classes.split(",")}
    return Complexity(score, parts, counts, cls, (lo, hi), accepted, agents, phased)
