"""Measure the gates on a project and the sandbox's overhead per command.

Usage::

    bash scripts/demo.sh /tmp/todo          # the bundled example, delivered
    .venv/bin/python -m oldnew.bench.gates /tmp/todo [--repeat 5] [--json]

Prints each gate's median time over the repeats (in the sandbox, gates run as oldnew runs
them: several at once), the whole validation's wall time, and the cost of the sandbox itself:
one trivial command (``python -c pass``, with the project's interpreter) run bare, in the
sandbox without bubblewrap, and in the full sandbox, plus the cost of making the sandbox
(copying the project).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess  # nosec B404 - fixed argv
import time
from pathlib import Path
from typing import Any

from oldnew.gates.runner import sandbox_limits, validate_tree
from oldnew.sandbox import ProjectEnv, Sandbox, probe_host


def _ms(values: list[float]) -> float:
    return round(statistics.median(values) * 1000, 1)


def command_overhead(tree: Path, repeat: int, env: ProjectEnv | None = None) -> dict[str, Any]:
    """Return the median milliseconds of a trivial command bare and in each sandbox mode.

    The three are interleaved, so that a busy machine slows them alike.
    """
    env = env or ProjectEnv.host(tree)
    trivial = env.python_argv("-c", "pass")
    times: dict[str, list[float]] = {"bare": [], "no_bwrap": [], "full": []}
    opened: dict[str, list[float]] = {"no_bwrap": [], "full": []}
    layers: dict[str, list[str]] = {}
    for _ in range(repeat):
        start = time.monotonic()
        subprocess.run(trivial, check=True, env={"PATH": "/usr/bin:/bin"})  # nosec B603
        times["bare"].append(time.monotonic() - start)
        for label, bwrap in (("no_bwrap", False), ("full", True)):
            start = time.monotonic()
            with Sandbox.open(tree, env=env, limits=sandbox_limits(60), use_bwrap=bwrap) as box:
                opened[label].append(time.monotonic() - start)
                times[label].append(box.run(trivial, timeout=60).duration_s)
                layers[label] = [layer.name for layer in box.layers if layer.active]
    out: dict[str, Any] = {"bare_ms": _ms(times["bare"])}
    for label in ("no_bwrap", "full"):
        out[f"{label}_ms"] = _ms(times[label])
        out[f"{label}_overhead_ms"] = round(out[f"{label}_ms"] - out["bare_ms"], 1)
        out[f"{label}_open_ms"] = _ms(opened[label])
        out[f"{label}_layers"] = layers[label]
    return out


def gate_times(
    tree: Path, repeat: int, quality: str, env: ProjectEnv | None = None
) -> dict[str, Any]:
    """Return each gate's median seconds and the validation's median wall time."""
    per_gate: dict[str, list[float]] = {}
    walls, passed = [], []
    for _ in range(repeat):
        result = validate_tree(tree, timeout=120, quality=quality, env=env)
        walls.append(result.duration_s)
        passed.append(result.passed)
        for check in result.checks:
            per_gate.setdefault(check.name, []).append(check.duration_s)
            per_gate.setdefault(f"{check.name}:status", []).append(0.0)
    statuses = {c.name: c.status for c in result.checks}
    return {
        "quality": quality,
        "passed": all(passed),
        "wall_s": round(statistics.median(walls), 3),
        "gates": {
            name: {"median_s": round(statistics.median(v), 3), "status": statuses[name]}
            for name, v in per_gate.items()
            if not name.endswith(":status")
        },
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its numbers."""
    parser = argparse.ArgumentParser(prog="python -m oldnew.bench.gates", description=__doc__)
    parser.add_argument("tree", type=Path, help="the project to measure (a delivered workspace)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quality", default="default")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    host = probe_host()
    data = {
        "host": {"bwrap": bool(host.bwrap), "root": host.root, "setpriv": bool(host.setpriv)},
        "overhead": command_overhead(args.tree, args.repeat * 4),
        "validation": gate_times(args.tree, args.repeat, args.quality),
    }
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    over = data["overhead"]
    print(f"sandbox overhead per command (median of {args.repeat * 4}, `python -c pass`):")
    print(f"  bare {over['bare_ms']} ms")
    for label in ("no_bwrap", "full"):
        print(
            f"  {label:9} {over[f'{label}_ms']} ms (+{over[f'{label}_overhead_ms']} ms), "
            f"making the sandbox {over[f'{label}_open_ms']} ms; layers: "
            + ", ".join(over[f"{label}_layers"])
        )
    val = data["validation"]
    print(f"\ngates on {args.tree} (profile {val['quality']}, median of {args.repeat}):")
    for name, info in val["gates"].items():
        print(f"  {name:12} {info['median_s']:7.3f} s  {info['status']}")
    print(f"  {'whole run':12} {val['wall_s']:7.3f} s  passed={val['passed']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
