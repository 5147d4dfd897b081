"""Benchmark: plan a generated scope of N features with a scripted planner; print time and calls.

    .venv/bin/python scripts/bench_planning.py [--features 120] [--latency 0.0] [--repeat 3]

``--latency`` makes every model call take that many seconds, to show what the per-epic calls in
parallel save. It also writes the scope and transcript so that the same plan can be previewed
with ``oldnew plan`` (the command is printed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from synthetic import CountingModel, monster, scope_text  # noqa: E402

from oldnew.context import Context  # noqa: E402
from oldnew.planning.preview import preview_plan  # noqa: E402


def main() -> None:
    """Run the benchmark and print one JSON line per run and a summary."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--features", type=int, default=120)
    ap.add_argument("--latency", type=float, default=0.0)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="oldnew-bench-"))
    scope, replies = monster(args.features)
    (tmp / "scope.md").write_text(scope_text(scope))
    (tmp / "transcript.json").write_text(json.dumps({"reply": replies}))
    times = []
    for _ in range(args.repeat):
        model = CountingModel.from_replies(replies, tmp, delay=args.latency)
        start = time.perf_counter()
        out = asyncio.run(preview_plan(scope_text(scope), model, Context()))
        took = time.perf_counter() - start
        times.append(took)
        plan = out.plan
        print(
            json.dumps(
                {
                    "features": args.features,
                    "requirements": sum(out.complexity["counts"].values()),
                    "class": out.complexity["cls"],
                    "score": out.complexity["score"],
                    "tasks": len(plan.tasks) if plan else 0,
                    "epics": len(plan.epics) if plan else 0,
                    "problems": out.problems,
                    "model_calls": model.stats["calls"],
                    "max_calls_in_flight": model.stats["max_in_flight"],
                    "largest_answer_tasks": model.stats["largest_tasks"],
                    "latency_per_call_s": args.latency,
                    "seconds": round(took, 3),
                }
            )
        )
    print(f"median {statistics.median(times):.3f} s over {args.repeat} runs")
    print(
        "preview it: .venv/bin/python -m oldnew plan "
        f"{tmp / 'scope.md'} --model scripted:{tmp / 'transcript.json'}"
    )


if __name__ == "__main__":
    main()
