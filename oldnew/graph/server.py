"""The graph ``langgraph dev`` serves (see langgraph.json).

Compiled without a checkpointer: the server supplies the run's; the task threads are kept in the
workspace's own SQLite file (``execute`` opens it).
The model spec comes from the run's context (``{"model": "scripted:/path/transcript.toml"}``).
"""

from oldnew.graph.build import build_graph

graph = build_graph()
