"""Run one of oldnew's web modules light: without ``oldnew/__init__``.

``oldnew/__init__`` loads the whole run's graph (seconds of imports); the web driver and the
preview's processes need only the standard library and a few of oldnew's modules. The
launcher makes ``oldnew`` a bare namespace on oldnew's package folder (shown read-only in the
sandboxes that run these), then runs the module as ``python -m`` would.
"""

from __future__ import annotations

import sys
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1]
LAUNCHER = (
    "import runpy, sys, types\n"
    "package = types.ModuleType('oldnew')\n"
    "package.__path__ = [sys.argv[1]]\n"
    "sys.modules['oldnew'] = package\n"
    "sys.argv[:] = sys.argv[2:]\n"
    "runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)\n"
)


def launch_argv(module: str, *args: str) -> list[str]:
    """Return the argv that runs ``python -m module args`` light, with oldnew's interpreter.

    ``-I``: no project folder on ``sys.path``, no ``PYTHON*`` variables, no user site.
    """
    return [sys.executable, "-I", "-c", LAUNCHER, str(PACKAGE_DIR), module, *args]
