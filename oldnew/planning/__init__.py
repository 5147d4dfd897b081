"""Scoping and adaptive planning: complexity, sections, phases, epics, splits and re-plans.

The functions here take a model and return typed results; the graph's nodes and the
``oldnew plan`` preview both call them, so a plan can be previewed without a workspace.
"""

from oldnew.planning.checks import plan_problems
from oldnew.planning.complexity import Complexity, assess
from oldnew.planning.extract import ScopeProblem, extract_scope
from oldnew.planning.llm import Asker
from oldnew.planning.planner import Planner, PlanningFailed
from oldnew.planning.trace import traceability

__all__ = [
    "Asker",
    "Complexity",
    "Planner",
    "PlanningFailed",
    "ScopeProblem",
    "assess",
    "extract_scope",
    "plan_problems",
    "traceability",
]
