"""Budgets: token and cost accounting of every model call, caps per run and task, wall clock.

- ``ledger``: the append-only usage file of a run and its sums; the price table.
- ``meter``: the caps, and the callback that checks them before each call and records it after.
- ``summary``: spend against budget for the report, ``oldnew status`` and the resume plan.
- ``wait``: each task's model-wait clock, so a task's time limit counts its own work only.
"""

from oldnew.budget.ledger import Ledger, Price, ledger_at, parse_prices, price_for
from oldnew.budget.meter import Caps, cap_reached, ledger_of, metered, run_cap_reached
from oldnew.budget.summary import (
    BUDGET_FIELDS,
    budget_lines,
    budget_markdown,
    budget_summary,
    resume_command,
    save_budget,
)
from oldnew.budget.wait import WaitClock, wait_clock

__all__ = [
    "BUDGET_FIELDS",
    "Caps",
    "Ledger",
    "Price",
    "WaitClock",
    "budget_lines",
    "budget_markdown",
    "budget_summary",
    "cap_reached",
    "ledger_at",
    "ledger_of",
    "metered",
    "parse_prices",
    "price_for",
    "resume_command",
    "run_cap_reached",
    "save_budget",
    "wait_clock",
]
