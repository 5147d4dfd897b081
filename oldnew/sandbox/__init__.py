"""The sandbox: run generated code with no network, bounded resources, no secrets.

Every command that runs generated code (its tests, its build, linters over it) runs here, on a
scratch copy of the project that holds the files git would commit and never ``.git`` or
``.oldnew``: the code under test cannot reach the repository or the run's state, and a test
that deletes or rewrites its own sources changes nothing that will be committed.

The layers, each reported in :attr:`Sandbox.layers` (a layer this machine lacks is reported as
inactive with the reason, and the others still apply):

- bubblewrap: no network, its own pid namespace (everything dies with the sandbox), and an
  empty read-only root that shows only /usr (with the /bin, /lib links), the loader's cache and
  the time zone from /etc (users, groups and hosts are the sandbox's own), the folders of the
  project's environment and of oldnew's, a /dev and a /proc of its own, private /tmp, /var/tmp
  and /dev/shm, and the copy, read-write: nothing else of the host exists inside;
- a non-root uid (``setpriv``), so RLIMIT_NPROC bites and root's files stay read-only;
- resource limits (``prlimit``): CPU seconds, RLIMIT_DATA (RLIMIT_AS breaks Node), file size,
  open files, processes; a disk quota on everything the sandbox can write, polled;
- a scrubbed environment given to ``Popen``, so bubblewrap's own ``/proc/1/environ`` holds no
  secret either (``--clearenv`` alone would leak it);
- a wall-clock timeout that kills the process group (with bubblewrap, the pid namespace);
- a supervisor between oldnew and the command (:mod:`oldnew.sandbox.supervisor`): when oldnew
  dies, SIGKILL included, it kills the command's whole tree, so no sandbox outlives oldnew.

The environment the project's own code runs with (interpreter, import paths, node_modules) is a
:class:`ProjectEnv` the sandbox is opened with; it binds what the environment names.
"""

from oldnew.sandbox.box import NODE_MODULES, SYSTEM_DIRS, Sandbox
from oldnew.sandbox.env import EnvironmentProbeError, ProjectEnv, oldnew_env
from oldnew.sandbox.files import (
    SKIP_DIRS,
    SandboxError,
    copy_project,
    link_leaves,
    project_files,
)
from oldnew.sandbox.host import Host, Layer, Limits, probe_host
from oldnew.sandbox.process import RunResult

__all__ = [
    "NODE_MODULES",
    "SKIP_DIRS",
    "EnvironmentProbeError",
    "Host",
    "Layer",
    "Limits",
    "ProjectEnv",
    "SYSTEM_DIRS",
    "RunResult",
    "Sandbox",
    "SandboxError",
    "copy_project",
    "link_leaves",
    "oldnew_env",
    "probe_host",
    "project_files",
]
