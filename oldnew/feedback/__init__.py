"""Feedback on a run, during or after it: a person's remarks, triaged and applied to the plan.

- ``items``: the items a person submits, their checks, and the records of what became of them.
- ``triage``: the planner's triage of one item (change, bug, feature, clarification) and
  applying it to a copy of the plan.
- ``apply``: the plan node's pass over the run's pending items: each triaged, applied, logged.
"""
