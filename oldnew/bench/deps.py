"""Measure a project's Python environment: cold install, warm (same lock), one package added.

Usage::

    .venv/bin/python -m oldnew.bench.deps [--count 40] [--size-mb 30] [--repeat 3] [--json]
    .venv/bin/python -m oldnew.bench.deps --index URL --packages a,b --add c [--repeat 3]

The second measures against a real index (``https://pypi.org/simple``, a mirror, or a
``file://`` folder of real wheels; a remote one needs the network), declaring ``--packages``
and then adding ``--add``.

By default it writes a local index of ``--count`` packages (a dependency tree among them,
``--size-mb`` in all, ``--modules`` modules each) and serves it over HTTP on 127.0.0.1, so uv
fetches through its real HTTP client. Each repeat starts from an empty cache and runs the code
the dependencies step and the gates run (:mod:`oldnew.deps`):

- **cold**: a first task locks its ``pyproject.toml`` (``python.lock``) and gets its
  environment (``envs.project_env``): every package is fetched and installed;
- **warm**: a second task, in a folder of its own, with the same manifest and lock: ``uv lock``
  again (the lock does not change), then ``envs.python_env`` (the dependencies step) and the
  whole ``envs.project_env`` call (the gates) must find the environment (reused) and install
  nothing;
- **one package added**: a third task adds one package to the manifest, locks again (the old
  pins kept) and gets its environment: a new folder, in which only the new package is fetched;
  the others are hard links into uv's cache.

"wheels fetched" is what the local server counted (requests for wheel files, "metadata" for
their METADATA); "new in cache" is how many unpacked wheels uv's cache gained (that one works
on a real index too).
The disk line gives the environments' sizes and how much of the changed environment shares
its files (hard links, the same inode) with the cold one.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess  # nosec B404 - fixed argv
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from oldnew.bench.pkgindex import LocalIndex, serve
from oldnew.deps import envs, python
from oldnew.deps.manifest import PY_LOCK, PY_MANIFEST
from oldnew.deps.settings import DepSettings
from oldnew.deps.store import Installed

PHASES = (
    ("cold", "lock"),
    ("cold", "env"),
    ("cold", "task"),
    ("warm", "lock"),
    ("warm", "env"),
    ("warm", "task"),
    ("changed", "lock"),
    ("changed", "env"),
    ("changed", "task"),
)
"""Rows of the table: (scenario, step). As a task runs them: ``lock`` is ``python.lock`` (the
dependencies step locks every task's manifest), ``env`` the step's ``envs.python_env`` and
then the gates' whole ``envs.project_env``; ``task`` is both (what one task pays)."""
WARM_LIMIT_S = 1.0
"""What a second task with an unchanged lock may add, at most (issue 13)."""

ADDED = "benchpkg-added"


@dataclass
class Step:
    """One timed call of one repeat."""

    scenario: str
    step: str
    seconds: float
    reused: bool | None = None
    """For ``env``: whether the environment existed already (nothing installed)."""
    install_s: float | None = None
    """For ``env``: of its seconds, those spent making the environment (``uv sync``, its size
    checked, its marker written); the rest is finding it, describing it and lending the test
    tools."""
    changed: bool | None = None
    """For ``lock``: whether the lock file changed."""
    fetched: int | None = None
    """Distinct wheel files the local server sent during the call (None: a remote index)."""
    fetched_files: list[str] | None = None
    """Their names."""
    metadata: int | None = None
    """Requests for wheels' METADATA files (PEP 658), what resolving reads instead of wheels."""
    requests: int | None = None
    """Wheel requests the local server answered (a file asked twice counts twice)."""
    new_in_cache: int = 0
    """Unpacked wheels uv's cache gained during the call."""
    uv_prepared: int | None = None
    uv_installed: int | None = None
    """uv's own ``Prepared N`` / ``Installed N`` (None where its summary does not say)."""


@dataclass
class Disk:
    """What the environments of the last repeat hold on disk."""

    cold_env: str = ""
    warm_env: str = ""
    changed_env: str = ""
    cold_mb: float = 0.0
    changed_mb: float = 0.0
    changed_files: int = 0
    shared_files: int = 0
    """Files of the changed environment that are the same inode as one of the cold one's."""
    shared_mb: float = 0.0
    linked_files: int = 0
    """Files of the changed environment with more than one link (st_nlink > 1)."""
    envs_mb_apparent: float = 0.0
    """The environments' sizes added up (the warm one is the cold one), as if nothing were
    shared."""
    envs_mb_on_disk: float = 0.0
    """The same files, each inode counted once (uv's cache holds the same inodes)."""
    uv_cache_mb: float = 0.0


@dataclass
class Run:
    """One repeat: its steps and the checks of what they did."""

    steps: list[Step] = field(default_factory=list)
    pins_kept: bool = False
    """The changed lock pins every package of the cold lock at the same version."""
    added_by_lock: list[str] = field(default_factory=list)
    """What the changed lock pins that the cold one does not: the added package and its new
    dependencies, all that the change may fetch."""
    disk: Disk = field(default_factory=Disk)
    imports: bool | None = None
    """The changed environment imports the first and the added package (local index only)."""


@dataclass
class Source:
    """Where packages come from: the index, what the project declares, and the one it adds."""

    index: str | None
    declared: list[str]
    added: str
    requests: Counter[str] | None = None
    """The local server's request counts (None for a remote index)."""
    imports: list[str] = field(default_factory=list)
    """Modules the changed environment must import (known for the local index only)."""


# -- the local index --------------------------------------------------------------------------


def package_name(i: int, count: int) -> str:
    """Return the name of the ``i``-th generated package (``benchpkg-07``)."""
    return f"benchpkg-{i:0{len(str(max(count - 1, 1)))}d}"


def build_index(
    root: Path, count: int, size_mb: float, modules: int, *, metadata: bool = True
) -> tuple[LocalIndex, list[str]]:
    """Write ``count`` packages (and the one added later) to a local index under ``root``.

    Package ``i`` requires packages ``2i+1`` and ``2i+2`` (a tree: declaring the first pulls in
    all); the project declares package 0 and every fifth one directly, as a project names some
    of its transitive dependencies too. ``metadata``: publish each wheel's METADATA beside it
    (PEP 658, as PyPI does; without it uv downloads every wheel to lock). Returns the index and
    the declared requirements.
    """
    index = LocalIndex(root, metadata=metadata)
    padding = int(size_mb * 1e6 / (count + 1))
    for i in range(count):
        name = package_name(i, count)
        requires = [f"{package_name(c, count)}>=1.0" for c in (2 * i + 1, 2 * i + 2) if c < count]
        index.wheel(name, "1.0.0", _modules(name, modules), requires, padding=padding)
    first_dep = [f"{package_name(1 if count > 1 else 0, count)}>=1.0"]
    index.wheel(ADDED, "1.0.0", _modules(ADDED, modules), first_dep, padding=padding)
    declared = [f"{package_name(i, count)}>=1.0" for i in range(count) if i % 5 == 0]
    return index, declared


def _modules(name: str, modules: int) -> dict[str, str]:
    package = name.replace("-", "_")
    files = {f"{package}/__init__.py": f'"""{name}."""\n\nNAME = {name!r}\n'}
    for k in range(max(0, modules - 1)):
        body = "".join(f"def f{j}(x):\n    return x + {j}\n\n\n" for j in range(20))
        files[f"{package}/mod{k}.py"] = f'"""Module {k} of {name}."""\n\n\n{body}'
    return files


@contextlib.contextmanager
def local_source(
    root: Path, count: int, size_mb: float, modules: int, *, metadata: bool = True
) -> Iterator[Source]:
    """Write the local index under ``root`` and serve it while the block runs."""
    index, declared = build_index(root, count, size_mb, modules, metadata=metadata)
    requests: Counter[str] = Counter()
    with serve(index, requests) as url:
        imports = [package_name(0, count).replace("-", "_"), ADDED.replace("-", "_")]
        yield Source(url, declared, f"{ADDED}>=1.0", requests, imports)


# -- one repeat -------------------------------------------------------------------------------


def write_project(folder: Path, requirements: Sequence[str], lock: Path | None = None) -> Path:
    """Write a task's project: a manifest declaring ``requirements``, a module, maybe a lock."""
    folder.mkdir(parents=True)
    deps = "".join(f"    {json.dumps(r)},\n" for r in requirements)
    (folder / PY_MANIFEST).write_text(
        '[project]\nname = "bench-task"\nversion = "0.1.0"\nrequires-python = ">=3.11"\n'
        f"dependencies = [\n{deps}]\n",
        encoding="utf-8",
    )
    (folder / "app.py").write_text('"""The task\'s code."""\n', encoding="utf-8")
    if lock is not None:
        shutil.copyfile(lock, folder / PY_LOCK)
    return folder


_PREPARED = re.compile(r"Prepared (\d+) packages?")
_INSTALLED = re.compile(r"Installed (\d+) packages?")


def _uv_count(pattern: re.Pattern[str], summary: str) -> int | None:
    match = pattern.search(summary)
    return int(match.group(1)) if match else None


def _archives(settings: DepSettings) -> set[str]:
    """Return the unpacked wheels in uv's cache (``archive-v*/<id>``)."""
    root = settings.cache / "uv"
    if not root.is_dir():
        return set()
    return {f"{a.name}/{e.name}" for a in root.glob("archive-v*") for e in a.iterdir()}


def _timed(
    scenario: str, step: str, source: Source, settings: DepSettings, call: Callable[[], Any]
) -> tuple[Step, Any]:
    before = Counter(source.requests or {})
    cached = _archives(settings)
    start = time.perf_counter()
    value = call()
    took = time.perf_counter() - start
    out = Step(scenario, step, round(took, 4), new_in_cache=len(_archives(settings) - cached))
    if source.requests is not None:
        wheels = {p: n - before[p] for p, n in source.requests.items() if p.endswith(".whl")}
        out.fetched_files = sorted(Path(p).name for p, n in wheels.items() if n > 0)
        out.fetched = len(out.fetched_files)
        out.requests = sum(wheels.values())
        out.metadata = sum(
            n - before[p] for p, n in source.requests.items() if p.endswith(".metadata")
        )
    return out, value


def _lock_step(scenario: str, tree: Path, source: Source, settings: DepSettings) -> Step:
    step, changed = _timed(scenario, "lock", source, settings, lambda: python.lock(tree, settings))
    step.changed = bool(changed)
    return step


def _env_step(
    scenario: str, tree: Path, source: Source, settings: DepSettings
) -> tuple[Step, Installed]:
    def call() -> Installed:
        py = envs.python_env(tree, settings)  # the dependencies step (oldnew.nodes.dependencies)
        envs.project_env(tree, settings)  # the gates (oldnew.nodes.checks): finds it again
        return py

    step, py = _timed(scenario, "env", source, settings, call)
    step.reused = py.reused
    step.install_s = round(py.seconds, 4)
    step.uv_prepared = _uv_count(_PREPARED, py.summary)
    step.uv_installed = _uv_count(_INSTALLED, py.summary)
    return step, py


def _task_step(lock: Step, env: Step) -> Step:
    """Return the lock and the env steps of one task added up."""

    def total(a: int | None, b: int | None) -> int | None:
        return None if a is None or b is None else a + b

    return Step(
        lock.scenario,
        "task",
        round(lock.seconds + env.seconds, 4),
        reused=env.reused,
        install_s=env.install_s,
        changed=lock.changed,
        fetched=total(lock.fetched, env.fetched),
        fetched_files=sorted({*(lock.fetched_files or []), *(env.fetched_files or [])})
        if lock.fetched_files is not None
        else None,
        requests=total(lock.requests, env.requests),
        metadata=total(lock.metadata, env.metadata),
        new_in_cache=lock.new_in_cache + env.new_in_cache,
        uv_prepared=env.uv_prepared,
        uv_installed=env.uv_installed,
    )


def _pins(lock: Path) -> dict[str, str]:
    return {p["name"]: p["version"] for p in python.locked_packages(lock.read_text("utf-8"))}


def measure_python(work: Path, source: Source, timeout: float) -> Run:
    """Run cold, warm and one-package-added once, in ``work`` with an empty cache."""
    settings = DepSettings(
        cache=work / "cache",
        index=source.index,
        timeout=timeout,
        max_packages=0,
        max_install_mb=0,
    )
    run = Run()

    def task(scenario: str, tree: Path) -> Installed:
        lock = _lock_step(scenario, tree, source, settings)
        env, py = _env_step(scenario, tree, source, settings)
        run.steps += [lock, env, _task_step(lock, env)]
        return py

    first = write_project(work / "task-1", source.declared)
    cold = task("cold", first)
    warm = task("warm", write_project(work / "task-2", source.declared, first / PY_LOCK))
    third = write_project(work / "task-3", [*source.declared, source.added], first / PY_LOCK)
    changed = task("changed", third)

    old, new = _pins(first / PY_LOCK), _pins(third / PY_LOCK)
    run.pins_kept = all(new.get(name) == version for name, version in old.items())
    run.added_by_lock = sorted(f"{name}=={new[name]}" for name in set(new) - set(old))
    run.disk = disk_use(settings, cold.path, warm.path, changed.path)
    if source.imports:
        code = "".join(f"import {m}\n" for m in source.imports)
        argv = [str(changed.path / "bin" / "python"), "-I", "-c", code]
        proc = subprocess.run(argv, capture_output=True, check=False)  # nosec B603 - fixed argv
        run.imports = proc.returncode == 0
    return run


MEASURES: dict[str, Callable[[Path, Source, float], Run]] = {"python": measure_python}
"""What each ecosystem's benchmark runs (``--ecosystem`` picks one). npm's goes here
(``"node": measure_node``) now that :func:`oldnew.deps.node.install` is being written: the
same three tasks on a package.json (``node.lock``, then ``envs.node_env`` and
``envs.project_env``), against a local registry served on 127.0.0.1 (its own
:class:`Source`, the registry's request counter in ``requests``, tarballs ending ``.tgz``
where :func:`_timed` counts wheels); :func:`summarise`, :func:`render` and the disk line
need no change."""


# -- disk -------------------------------------------------------------------------------------


def _files(folder: Path) -> Iterator[os.stat_result]:
    for dirpath, _, names in os.walk(folder):
        for name in names:
            with contextlib.suppress(OSError):
                yield os.lstat(os.path.join(dirpath, name))


def _mb(size: float) -> float:
    return round(size / 1e6, 2)


def disk_use(settings: DepSettings, cold: Path, warm: Path, changed: Path) -> Disk:
    """Return the environments' sizes and what the changed one shares with the cold one."""
    cold_inodes = {(s.st_dev, s.st_ino) for s in _files(cold)}
    disk = Disk(str(cold), str(warm), str(changed))
    disk.cold_mb = _mb(sum(s.st_size for s in _files(cold)))
    shared = 0
    for stat in _files(changed):
        disk.changed_files += 1
        disk.changed_mb += stat.st_size
        disk.linked_files += stat.st_nlink > 1
        if (stat.st_dev, stat.st_ino) in cold_inodes:
            disk.shared_files += 1
            shared += stat.st_size
    disk.changed_mb, disk.shared_mb = _mb(disk.changed_mb), _mb(shared)
    seen: dict[tuple[int, int], int] = {}
    apparent = 0
    for folder in dict.fromkeys((cold, warm, changed)):
        for stat in _files(folder):
            apparent += stat.st_size
            seen[(stat.st_dev, stat.st_ino)] = stat.st_size
    disk.envs_mb_apparent, disk.envs_mb_on_disk = _mb(apparent), _mb(sum(seen.values()))
    disk.uv_cache_mb = _mb(sum(s.st_size for s in _files(settings.cache / "uv")))
    return disk


# -- the whole benchmark ----------------------------------------------------------------------


def _fetched_only_added(run: Run) -> bool:
    """Whether the change put in uv's cache (and took from the server) just what its lock adds."""
    steps = [s for s in run.steps if s.scenario == "changed" and s.step != "task"]
    wanted = len(run.added_by_lock)
    cached = sum(s.new_in_cache for s in steps)
    fetched = [s.fetched for s in steps if s.fetched is not None]
    return cached == wanted and (not fetched or sum(fetched) == wanted)


def summarise(runs: list[Run]) -> list[dict[str, Any]]:
    """Return one row per phase: median, min and max seconds, and what the steps did."""
    rows = []
    for scenario, step in PHASES:
        steps = [s for r in runs for s in r.steps if (s.scenario, s.step) == (scenario, step)]
        times = [s.seconds for s in steps]
        installs = [s.install_s for s in steps if s.install_s is not None]
        last = steps[-1]
        rows.append(
            {
                "scenario": scenario,
                "step": step,
                "median_s": round(statistics.median(times), 3),
                "min_s": round(min(times), 3),
                "max_s": round(max(times), 3),
                "reused": [s.reused for s in steps] if step != "lock" else None,
                "install_median_s": round(statistics.median(installs), 3) if installs else None,
                "lock_changed": [s.changed for s in steps] if step != "env" else None,
                "fetched": [s.fetched for s in steps],
                "fetched_files": last.fetched_files,
                "metadata": [s.metadata for s in steps],
                "requests": [s.requests for s in steps],
                "new_in_cache": [s.new_in_cache for s in steps],
                "uv_prepared": last.uv_prepared,
                "uv_installed": last.uv_installed,
            }
        )
    return rows


def bench(
    *,
    count: int = 40,
    size_mb: float = 30.0,
    modules: int = 10,
    metadata: bool = True,
    repeat: int = 3,
    index: str | None = None,
    packages: Sequence[str] = (),
    add: str = "",
    ecosystem: str = "python",
    timeout: float = 600.0,
    work: Path | None = None,
) -> dict[str, Any]:
    """Run the benchmark and return its numbers (what ``--json`` prints).

    Without ``index``, a local index of ``count`` packages is written and served; with it,
    ``packages`` are declared and ``add`` is the package added.
    """
    if repeat < 1:
        raise ValueError("repeat must be at least 1")
    if index and (not packages or not add):
        raise ValueError("with an index, name the packages (--packages) and the one to add (--add)")
    measure = MEASURES[ecosystem]
    root = Path(tempfile.mkdtemp(prefix="oldnew-bench-deps-", dir=work))
    try:
        with contextlib.ExitStack() as stack:
            if index:
                source = Source(index, list(packages), add)
            else:
                source = stack.enter_context(
                    local_source(root / "index", count, size_mb, modules, metadata=metadata)
                )
            runs = []
            for r in range(repeat):
                runs.append(measure(root / f"run-{r}", source, timeout))
                if r < repeat - 1:
                    shutil.rmtree(root / f"run-{r}", ignore_errors=True)
        last = runs[-1]
        phases = summarise(runs)
        warm_task = next(r for r in phases if (r["scenario"], r["step"]) == ("warm", "task"))
        return {
            "ecosystem": ecosystem,
            "config": {
                "index": index or "local (127.0.0.1)",
                "count": len(_pins(root / f"run-{repeat - 1}" / "task-1" / PY_LOCK)),
                "size_mb": size_mb if not index else None,
                "modules": modules if not index else None,
                "metadata": metadata if not index else None,
                "declared": source.declared,
                "added": source.added,
                "repeat": repeat,
            },
            "phases": phases,
            "checks": {
                "warm_under_limit": warm_task["median_s"] < WARM_LIMIT_S,
                "warm_reused": all(
                    s.reused
                    for r in runs
                    for s in r.steps
                    if s.scenario == "warm" and s.step == "env"
                ),
                "warm_same_env": last.disk.warm_env == last.disk.cold_env,
                "pins_kept": all(r.pins_kept for r in runs),
                "fetched_only_added": all(_fetched_only_added(r) for r in runs),
                "changed_env_imports": None
                if last.imports is None
                else all(bool(r.imports) for r in runs),
            },
            "added_by_lock": last.added_by_lock,
            "disk": asdict(last.disk),
            "runs": [[asdict(s) for s in r.steps] for r in runs],
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _cell(values: list[Any] | None) -> str:
    if values is None or all(v is None for v in values):
        return "-"
    distinct = sorted({str(v) for v in values})
    return ",".join(distinct)


def render(data: dict[str, Any]) -> None:
    """Print the numbers as a table, the checks and the disk line."""
    from rich.console import Console  # noqa: PLC0415 - only the table needs it
    from rich.table import Table

    config = data["config"]
    title = (
        f"{data['ecosystem']} environment: {config['count']} packages locked from "
        f"{config['index']}, +{config['added']}; {config['repeat']} repeat(s)"
    )
    table = Table(title=title)
    for column in ("scenario", "step", "median s", "min s", "max s", "installing s", "reused"):
        table.add_column(column)
    table.add_column("lock changed")
    for column in ("wheels fetched", "requests", "metadata", "new in cache", "uv prep/inst"):
        table.add_column(column, justify="right")
    for row in data["phases"]:
        uv = (
            "-"
            if row["uv_installed"] is None and row["uv_prepared"] is None
            else (
                f"{row['uv_prepared'] if row['uv_prepared'] is not None else '?'}/"
                f"{row['uv_installed'] if row['uv_installed'] is not None else '?'}"
            )
        )
        table.add_row(
            row["scenario"],
            row["step"],
            f"{row['median_s']:.3f}",
            f"{row['min_s']:.3f}",
            f"{row['max_s']:.3f}",
            "-" if row["install_median_s"] is None else f"{row['install_median_s']:.3f}",
            _cell(row["reused"]),
            _cell(row["lock_changed"]),
            _cell(row["fetched"]),
            _cell(row["requests"]),
            _cell(row["metadata"]),
            _cell(row["new_in_cache"]),
            uv,
        )
    console = Console(width=max(Console().width, 150))
    console.print(table)
    checks = data["checks"]
    console.print(
        f"checks: warm reused the cold environment: {checks['warm_reused']} "
        f"(same folder: {checks['warm_same_env']}); the added package kept the old pins: "
        f"{checks['pins_kept']}; the changed environment imports it: "
        f"{checks['changed_env_imports']}"
    )
    warm = next(r for r in data["phases"] if (r["scenario"], r["step"]) == ("warm", "task"))
    console.print(
        f"a second task with the same lock adds {warm['median_s']:.3f} s (median; under "
        f"{WARM_LIMIT_S:.0f} s: {checks['warm_under_limit']})"
    )
    console.print(
        f"the changed lock adds {', '.join(data['added_by_lock']) or 'nothing'}; the change "
        f"fetched only that: {checks['fetched_only_added']}"
    )
    added = next(r for r in data["phases"] if (r["scenario"], r["step"]) == ("changed", "env"))
    if added["fetched_files"] is not None:
        console.print(f"wheels the server sent for it: {', '.join(added['fetched_files'])}")
    d = data["disk"]
    console.print(
        f"disk: cold env {d['cold_mb']} MB; changed env {d['changed_mb']} MB in "
        f"{d['changed_files']} files, {d['shared_files']} of them ({d['shared_mb']} MB) the same "
        f"inodes as the cold env's, {d['linked_files']} with st_nlink>1; all envs "
        f"{d['envs_mb_apparent']} MB apparent, {d['envs_mb_on_disk']} MB on disk; uv cache "
        f"{d['uv_cache_mb']} MB"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its numbers."""
    parser = argparse.ArgumentParser(
        prog="python -m oldnew.bench.deps",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--count", type=int, default=40, help="packages of the local index")
    parser.add_argument("--size-mb", type=float, default=30.0, help="their total size")
    parser.add_argument("--modules", type=int, default=10, help="Python modules per package")
    parser.add_argument(
        "--no-metadata",
        action="store_true",
        help="publish no METADATA beside the wheels (uv then downloads each wheel to lock)",
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--index", help="a real index's simple-API URL instead of the local one")
    parser.add_argument("--packages", default="", help="with --index: requirements, a,b,c")
    parser.add_argument("--add", default="", help="with --index: the requirement added")
    parser.add_argument("--ecosystem", choices=sorted(MEASURES), default="python")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per uv call")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    if args.index and (not args.packages or not args.add):
        parser.error("--index needs --packages and --add")
    if args.count < 1 or args.repeat < 1:
        parser.error("--count and --repeat must be at least 1")
    data = bench(
        count=args.count,
        size_mb=args.size_mb,
        modules=args.modules,
        metadata=not args.no_metadata,
        repeat=args.repeat,
        index=args.index,
        packages=[p.strip() for p in args.packages.split(",") if p.strip()],
        add=args.add.strip(),
        ecosystem=args.ecosystem,
        timeout=args.timeout,
    )
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        render(data)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
