"""The graphs ``langgraph dev`` serves (see langgraph.json).

Compiled without a checkpointer: the server supplies the run's; the task threads are kept in the
workspace's own SQLite file (``execute`` opens it).
The model spec comes from the run's context (``{"model": "scripted:/path/transcript.toml"}``).
``task`` is one task's pipeline, registered so that Studio draws it; the run's ``execute``
runs it once per task, each on the task's own thread.
"""

from oldnew.graph.build import build_graph, build_task_graph

graph = build_graph()
task_graph = build_task_graph()
