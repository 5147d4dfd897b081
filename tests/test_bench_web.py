"""The web benchmark's memory sampler (a whole run of it: ``python -m oldnew.bench.web``)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from oldnew.bench.web import tree_pss_mb


def test_the_memory_of_the_descendants_is_summed() -> None:
    before = tree_pss_mb(os.getpid())
    hog = (
        "import time; x = bytearray(64 * 2**20); x[::4096] = b'1' * len(x[::4096]); time.sleep(30)"
    )
    child = subprocess.Popen([sys.executable, "-c", hog])
    try:
        during = before
        for _ in range(100):
            during = tree_pss_mb(os.getpid())
            if during - before > 50:
                break
            time.sleep(0.05)
        assert during - before > 50, (before, during)
    finally:
        child.kill()
        child.wait()
