"""The flat-cost micro-benchmark: what one task costs in a project of N delivered tasks.

``python -m oldnew.bench.flat --tasks 50 200 1000`` builds, for each N, a workspace whose
main holds N task commits (a module each, ``Oldnew-Task:`` trailers) and two evidence files a
task, then times the per-task calls that used to grow with N: finding a passed validation by
its reuse key, naming the next evidence file, the reuse key itself, the coder's listing of the
project (``repomap.select``), finding a task's commit after main moved, and a task worktree
made and given back. Last it runs whole task cycles (worktree, context, write, validate with
an instant stand-in for the gates, accept), counts the git processes each one starts and
the CPU it takes (this process's, and its git children's).

:func:`measure` is the function the scale benchmark can call; it returns the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from oldnew import safegit
from oldnew.context import Context
from oldnew.gates import Check, ValidationResult, resolve_profile
from oldnew.gates.runner import reuse_key
from oldnew.nodes import checks
from oldnew.repomap import index
from oldnew.repomap.history import task_files
from oldnew.repomap.select import Want, select
from oldnew.safegit import run_git
from oldnew.workspace import Workspace

REPEATS = 5
CYCLES = 5


def _module(i: int) -> str:
    prev = f"from mods.m{i - 1} import f{i - 1}\n\n\n" if i else ""
    return f'{prev}def f{i}(x: int) -> int:\n    """Add {i}."""\n    return x + {i}\n'


def _result(key: str) -> ValidationResult:
    gates = ("syntax", "imports", "ruff", "ruff-format", "mypy", "pytest", "coverage")
    result = ValidationResult(
        checks=[Check(g, "passed", [g], 0, 0.1, "ok") for g in gates],
        quality={"name": "default"},
        toolchains=["python"],
        fingerprint=key,
    )
    result.reuse_key = key
    return result


def build(root: Path, tasks: int) -> Workspace:
    """Make a workspace whose main holds ``tasks`` task commits and their evidence."""
    ws = Workspace.create(root, "bench-flat", {})
    lines: list[str] = []
    for i in range(tasks):
        body = _module(i).encode()
        message = f"T{i}: module {i}\n\nOldnew-Task: T{i}\n".encode()
        lines.append("commit refs/heads/main\n")
        lines.append(f"committer oldnew <oldnew@localhost> {1_700_000_000 + i} +0000\n")
        lines.append(f"data {len(message)}\n{message.decode()}\n")
        if i == 0:
            lines.append("from refs/heads/main^0\n")
        lines.append(f"M 100644 inline mods/m{i}.py\ndata {len(body)}\n{body.decode()}\n")
    stream = "".join(lines).encode()
    proc = run_git("fast-import", "--quiet", cwd=ws.root, text=False, input=stream)
    if proc.returncode != 0:
        raise RuntimeError(f"git fast-import failed: {bytes(proc.stderr).decode()}")
    ws.git("reset", "-q", "--hard", "main")
    for i in range(tasks):
        for n in (1, 2):
            name = f"T{i}-{n:02d}"
            checks.record_evidence(ws, name, _result(f"k{i}-{n}"), task=f"T{i}", tree="worktree")
    return ws


def _median_ms(call: Callable[[], object], repeats: int = REPEATS) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return round(statistics.median(times) * 1000, 2)


@contextmanager
def counting_git() -> Iterator[list[list[str]]]:
    """Count the git processes :mod:`oldnew.safegit` starts (their argv, in order)."""
    seen: list[list[str]] = []
    real = vars(safegit)["subprocess"]  # the module safegit runs git with

    def run(argv: list[str], *args: Any, **kwargs: Any) -> Any:
        sub = [a for a in argv[1:] if not a.startswith("-c") and "=" not in a]
        seen.append(sub)
        return real.run(argv, *args, **kwargs)

    shim = types.SimpleNamespace(
        run=run, DEVNULL=real.DEVNULL, CompletedProcess=real.CompletedProcess
    )
    vars(safegit)["subprocess"] = shim
    try:
        yield seen
    finally:
        vars(safegit)["subprocess"] = real


def _instant_gates(ctx: Context, tree: Path, *args: Any, **kwargs: Any) -> ValidationResult:
    return _result("instant")


def _cycle(ws: Workspace, i: int, ctx: Context) -> None:
    """One task through what the graph does to it, with the gates' work replaced."""
    tid = f"N{i}"
    tree = ws.worktree(tid)
    want = Want(focus=[f"mods/n{i}.py"], related=task_files(ws, ["T0", f"T{i}"]), text=tid)
    select(tree, want, ws.meta)
    Workspace.write_files(tree, {f"mods/n{i}.py": _module(i)})
    profile = resolve_profile(ctx.quality)
    for _ in range(2):  # validate, then the validation of main after the commit reuses it
        name = checks.next_evidence_name(ws, tid)
        key = reuse_key(tree, profile, None, ctx.test_timeout)
        found = checks._passed_before(ws, key)
        result = found or _result(key)
        checks.record_evidence(ws, name, result, task=tid, tree="worktree")
    state: Any = {"task": {"id": tid, "title": f"task {tid}"}, "workspace": str(ws.root)}
    out = asyncio.run(checks._accept(ws, tid, f"task {tid}", ctx, state, _instant_gates))
    if "commit" not in out:
        raise RuntimeError(f"the benchmark's task {tid} was not accepted: {out}")


def _children_cpu() -> float:
    """Return the CPU seconds of this process's finished children (git), user and system."""
    times = os.times()
    return times.children_user + times.children_system


def measure(tasks: int, root: Path | None = None) -> dict[str, Any]:
    """Return the per-call milliseconds and git processes per task at ``tasks`` tasks."""
    with tempfile.TemporaryDirectory(prefix="oldnew-flat-") as tmp:
        ws = build(Path(root or tmp) / f"ws{tasks}", tasks)
        ctx = Context()
        profile = resolve_profile(ctx.quality)
        index.forget()
        select(ws.root, Want(focus=[]), ws.meta)  # the cache warm, as in a running process
        late = f"k{tasks - 1}-2"
        checks._passed_before(ws, late)
        out: dict[str, Any] = {"tasks": tasks}
        out["passed_before_hit_ms"] = _median_ms(lambda: checks._passed_before(ws, late))
        out["passed_before_miss_ms"] = _median_ms(lambda: checks._passed_before(ws, "none"))
        out["next_evidence_name_ms"] = _median_ms(lambda: checks.next_evidence_name(ws, "T1"))
        out["reuse_key_ms"] = _median_ms(
            lambda: reuse_key(ws.root, profile, None, ctx.test_timeout)
        )
        want = Want(focus=["mods/m1.py"], related=["mods/m0.py"], text="module 1")
        out["coder_listing_ms"] = _median_ms(lambda: select(ws.root, want, ws.meta))
        out["project_facts_ms"] = _median_ms(lambda: index.project_facts(ws.root, ws.meta))
        ws.find_task_commit("T0")
        found = []
        target = f"T{tasks // 2}"
        for n in range(REPEATS):  # main moves by one commit, then a task's commit is looked up
            ws.git("commit", "-q", "--allow-empty", "-m", f"move {n}\n\nOldnew-Task: M{n}\n")
            found.append(_median_ms(lambda: ws.find_task_commit(target), repeats=1))
        out["find_task_commit_ms"] = statistics.median(found)

        def worktree_round() -> None:
            ws.worktree("W")
            ws.remove_worktree("W")

        worktree_round()  # a spare to reuse, where there are spares
        out["worktree_make_and_drop_ms"] = _median_ms(worktree_round)
        _cycle(ws, 0, ctx)  # caches warm
        start, cpu, children = time.perf_counter(), time.process_time(), _children_cpu()
        with counting_git() as seen:
            for i in range(1, CYCLES + 1):
                _cycle(ws, i, ctx)
        out["task_cycle_ms"] = round((time.perf_counter() - start) * 1000 / CYCLES, 1)
        out["task_cpu_ms"] = round((time.process_time() - cpu) * 1000 / CYCLES, 1)
        out["task_git_cpu_ms"] = round((_children_cpu() - children) * 1000 / CYCLES, 1)
        out["git_per_task"] = len(seen) / CYCLES
        commands: dict[str, int] = {}
        for argv in seen:
            commands[argv[0]] = commands.get(argv[0], 0) + 1
        out["git_commands"] = {k: v / CYCLES for k, v in sorted(commands.items())}
        return out


def table(rows: list[dict[str, Any]]) -> str:
    """Return the rows as a Markdown table, one column per project size."""
    keys = [k for k in rows[0] if k not in ("tasks", "git_commands")]
    head = "| call | " + " | ".join(f"{r['tasks']} tasks" for r in rows) + " |"
    lines = [head, "|---|" + "---:|" * len(rows)]
    lines += [f"| {k} | " + " | ".join(str(r[k]) for r in rows) + " |" for k in keys]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark at each size asked and print the table (or JSON)."""
    parser = argparse.ArgumentParser(prog="python -m oldnew.bench.flat")
    parser.add_argument("--tasks", type=int, nargs="+", default=[50, 200, 1000])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rows = [measure(n) for n in args.tasks]
    print(json.dumps(rows, indent=2) if args.json else table(rows))


if __name__ == "__main__":
    main()
