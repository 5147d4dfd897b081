"""oldnew: hand it a scope; get a delivered, tested project, or a clear plan for its blockers."""

from oldnew.context import Context
from oldnew.graph.build import build_graph, build_task_graph

__all__ = ["Context", "build_graph", "build_task_graph"]
__version__ = "0.1.0"
