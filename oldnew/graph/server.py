"""The graph ``langgraph dev`` serves (see langgraph.json).

Compiled without a checkpointer: the server supplies its own, and the task threads borrow it.
The model spec comes from the run's context (``{"model": "scripted:/path/transcript.toml"}``).
"""

from oldnew.graph.build import build_graph

graph = build_graph()
