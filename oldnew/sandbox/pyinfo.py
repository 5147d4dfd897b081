"""Describe the Python interpreter this code runs in: where it imports from, and its version.

oldnew imports it to describe its own interpreter, and runs it as a script with another
interpreter (``python -I -S pyinfo.py``) to describe that one, so it needs nothing but the
standard library. ``-S`` keeps that interpreter's ``.pth`` files (code a package may have put
there) from running on the host; this module finds the virtual environment and its
site-packages folders the way ``site`` would instead.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any


def venv_config() -> tuple[str, bool] | None:
    """Return (prefix, sees the base's site-packages) of the interpreter's venv, else None.

    The same files and defaults as ``site.venv``: ``pyvenv.cfg`` beside the executable or one
    folder up; a file without ``include-system-site-packages`` sees them.
    """
    exe_dir = os.path.dirname(os.path.abspath(sys.executable))
    prefix = os.path.dirname(exe_dir)
    for cfg in (os.path.join(exe_dir, "pyvenv.cfg"), os.path.join(prefix, "pyvenv.cfg")):
        if not os.path.isfile(cfg):
            continue
        system_site = True
        with open(cfg, encoding="utf-8") as fh:
            for line in fh:
                key, sep, value = line.partition("=")
                if sep and key.strip().lower() == "include-system-site-packages":
                    system_site = value.strip().lower() == "true"
        return prefix, system_site
    return None


def import_paths() -> list[str]:
    """Return the folders the interpreter imports from: its stdlib, then its site-packages.

    The current directory and PYTHONPATH are not among them: they belong to a command, not to
    the environment.
    """
    import site  # under -S, importing it adds nothing to sys.path
    import sysconfig

    paths = sysconfig.get_paths()
    prefixes = [sys.prefix]
    venv = venv_config()
    if venv is not None and venv[1] and sys.base_prefix != sys.prefix:
        prefixes.append(sys.base_prefix)
    found = [paths["stdlib"], paths["platstdlib"], *site.getsitepackages(prefixes)]
    out: list[str] = []
    for path in [*found, paths["purelib"], paths["platlib"]]:
        if path not in out and os.path.isdir(path):
            out.append(path)
    return out


def describe() -> dict[str, Any]:
    """Return the running interpreter's description (JSON-ready)."""
    names = getattr(sys, "stdlib_module_names", sys.builtin_module_names)
    return {
        "python": sys.executable,
        "prefix": sys.prefix,
        "base_prefix": sys.base_prefix,
        "version": sys.version.split()[0],
        "import_paths": import_paths(),
        "stdlib_modules": sorted(names),
    }


def main() -> None:
    """Print the description of the interpreter running this file as a script."""
    venv = venv_config()
    if venv is not None and sys.flags.no_site:
        # What site.venv() would have done before sysconfig is first imported, minus the
        # .pth files: this process exists only to print its own paths.
        sys.prefix = sys.exec_prefix = venv[0]
    print(json.dumps(describe()))


if __name__ == "__main__":
    main()
