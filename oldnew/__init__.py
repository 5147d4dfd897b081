"""oldnew: hand it a scope; get a delivered, tested project, or a clear plan for its blockers."""

from oldnew.context import Context
from oldnew.embed import as_tool
from oldnew.graph.build import build_graph, build_task_graph
from oldnew.host import context_of

__all__ = ["Context", "as_tool", "build_graph", "build_task_graph", "context_of"]
__version__ = "0.1.0"
