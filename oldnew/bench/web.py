"""Time the milestone gate set on a web app, and its memory peak.

``python -m oldnew.bench.web --tree DIR [--pages /,/about] [--endpoints "GET /api/notes"]``
runs the web gates (build, start, browser tests, axe and screenshots, Lighthouse, load) once on
the project in DIR, in the sandbox, as a milestone runs them, and prints each gate's time, the
whole set's, the Lighthouse scores and the peak memory (PSS, summed over every process this
command started: the sandbox, the app, Chromium, Lighthouse, the load tool), sampled every
50 ms. A delivered workspace of ``scripts/demo_web.sh`` is such a DIR.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from oldnew.gates.profiles import Profile
from oldnew.gates.runner import validate_tree
from oldnew.web.targets import WebTargets


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(parent, []).append(int(entry))
    return tree


def _pss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_pss_mb(root: int) -> float:
    """Return the summed PSS of ``root``'s descendants (not ``root`` itself), in MB."""
    kids = _children()
    total, todo = 0, list(kids.get(root, []))
    while todo:
        pid = todo.pop()
        total += _pss_kb(pid)
        todo += kids.get(pid, [])
    return total / 1024


class Peak(threading.Thread):
    """Sample the memory of this process's descendants until stopped; keep the peak."""

    def __init__(self) -> None:
        """Prepare the sampler (``start`` it)."""
        super().__init__(daemon=True)
        self.peak_mb = 0.0
        self.done = threading.Event()

    def run(self) -> None:
        """Sample every 50 ms."""
        while not self.done.wait(0.05):
            self.peak_mb = max(self.peak_mb, tree_pss_mb(os.getpid()))


def measure(tree: Path, targets: WebTargets) -> dict[str, Any]:
    """Run the milestone gate set on ``tree``; return times, scores and the memory peak."""
    peak = Peak()
    peak.start()
    start = time.monotonic()
    result = validate_tree(
        tree,
        timeout=120,
        profile=Profile("bench", gates=("web-build",)),
        toolchains=["web"],
        milestone=True,
        web=targets,
    )
    seconds = time.monotonic() - start
    peak.done.set()
    peak.join()
    lighthouse = result.check("lighthouse")
    return {
        "passed": result.passed,
        "seconds": round(seconds, 1),
        "gates": {c.name: [c.status, round(c.duration_s, 1)] for c in result.checks},
        "lighthouse": lighthouse.metrics.get("scores") if lighthouse else None,
        "peak_pss_mb": round(peak.peak_mb),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its result as JSON."""
    parser = argparse.ArgumentParser(prog="python -m oldnew.bench.web", description=__doc__)
    parser.add_argument("--tree", required=True, type=Path, help="the web project's folder")
    parser.add_argument("--pages", default="/", help="comma-separated routes (default: /)")
    parser.add_argument("--endpoints", default="", help="comma-separated, e.g. 'GET /api/x'")
    args = parser.parse_args(argv)
    pages = tuple(p for p in args.pages.split(",") if p)
    endpoints = tuple(e.strip() for e in args.endpoints.split(",") if e.strip())
    print(json.dumps(measure(args.tree, WebTargets(pages, endpoints)), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
