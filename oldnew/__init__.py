"""oldnew: hand it a scope; get a delivered, tested project, or a clear plan for its blockers."""

from oldnew.context import Context
from oldnew.embed import as_tool, context_of
from oldnew.graph.build import build_graph, build_task_graph

__all__ = ["Context", "as_tool", "build_graph", "build_task_graph", "context_of"]
__version__ = "0.1.0"
