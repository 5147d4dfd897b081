"""Tests that mean something: a suite counts only if it fails on deliberately broken code.

A few simple mutants of the project's own code (a comparison flipped, ``and`` and ``or``
swapped, ``+`` and ``-`` swapped, a returned constant changed, a call statement dropped), each
on a line the tests run, each in a fresh sandboxed copy. A suite that passes on every mutant
tests nothing that matters: the gate fails and names the changes the tests missed.
"""

from __future__ import annotations

import ast
import itertools
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from oldnew.gates.common import GateRun, Outcome, parse_python
from oldnew.gates.model import Check, CheckStatus, Diagnostic
from oldnew.gates.pytests import read_report, suite_command
from oldnew.gates.python import is_test_file, python_files

_FLIP: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Lt: ast.GtE,
    ast.GtE: ast.Lt,
    ast.Gt: ast.LtE,
    ast.LtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
}
_KIND_ORDER = ("compare", "return", "boolop", "arith", "call")


@dataclass(frozen=True)
class Mutant:
    """One deliberate change to one file."""

    file: str
    line: int
    kind: str
    before: str
    after: str
    start: tuple[int, int]
    end: tuple[int, int]

    def apply(self, source: str) -> str:
        """Return ``source`` with this change made (positions are UTF-8 byte offsets)."""
        lines = source.splitlines(keepends=True)
        (l0, c0), (l1, c1) = self.start, self.end
        head = lines[l0 - 1].encode()[:c0].decode()
        tail = lines[l1 - 1].encode()[c1:].decode()
        return "".join([*lines[: l0 - 1], head, self.after, tail, *lines[l1:]])

    def describe(self) -> str:
        """Return the change in words."""
        return f"`{self.before}` changed to `{self.after}`"


def _mutated(node: ast.AST) -> tuple[str, str] | None:
    """Return (kind, replacement source) for a node that can be mutated, else None."""
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _FLIP:
        new = ast.Compare(node.left, [_FLIP[type(node.ops[0])]()], node.comparators)
        return "compare", f"({ast.unparse(new)})"
    if isinstance(node, ast.BoolOp):
        op: ast.boolop = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        return "boolop", f"({ast.unparse(ast.BoolOp(op, node.values))})"
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)):
        swap: ast.operator = ast.Sub() if isinstance(node.op, ast.Add) else ast.Add()
        return "arith", f"({ast.unparse(ast.BinOp(node.left, swap, node.right))})"
    return None


def _return_constant(node: ast.Return) -> tuple[ast.AST, str] | None:
    value = node.value
    if not isinstance(value, ast.Constant):
        return None
    v = value.value
    if isinstance(v, bool):
        return value, repr(not v)
    if isinstance(v, int):
        return value, repr(v + 1)
    if isinstance(v, str):
        return value, repr(v + "x") if v else repr("x")
    if v is None:
        return None
    return None


def _inside_fstring(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.JoinedStr):
            return True
    return False


def find_sites(tree: Path, covered: dict[str, set[int]] | None) -> list[Mutant]:
    """Return every mutation site in the project's non-test code on a line the tests ran."""
    sites: list[Mutant] = []
    for path in python_files(tree):
        name = str(path.relative_to(tree))
        if is_test_file(name):
            continue
        lines_run = None if covered is None else covered.get(name, set())
        try:
            source = path.read_text(encoding="utf-8")
            module = parse_python(source)
        except (SyntaxError, UnicodeDecodeError, ValueError, RecursionError):
            continue
        parents = {c: n for n in ast.walk(module) for c in ast.iter_child_nodes(n)}
        for node in ast.walk(module):
            target: ast.AST = node
            found: tuple[str, str] | None = None
            if isinstance(node, ast.Return):
                hit = _return_constant(node)
                if hit:
                    target, found = hit[0], ("return", hit[1])
            elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
                found = ("call", "None")
            else:
                found = _mutated(node)
            if found is None or not hasattr(target, "end_lineno"):
                continue
            if _inside_fstring(target, parents):
                continue
            line = target.lineno  # type: ignore[attr-defined]
            if lines_run is not None and line not in lines_run:
                continue
            before = ast.get_source_segment(source, target) or ""
            sites.append(
                Mutant(
                    name,
                    line,
                    found[0],
                    " ".join(before.split())[:80],
                    found[1],
                    (line, target.col_offset),  # type: ignore[attr-defined]
                    (target.end_lineno, target.end_col_offset),  # type: ignore[attr-defined]
                )
            )
    return sorted(sites, key=lambda m: (m.file, m.start, m.kind))


def choose(sites: list[Mutant], count: int) -> list[Mutant]:
    """Pick up to ``count`` sites, spread over kinds and files, always the same ones."""
    queues = []
    for kind in _KIND_ORDER:
        group = [m for m in sites if m.kind == kind]
        spread = group[:: max(1, len(group) // max(1, count))]
        queues.append(spread + [m for m in group if m not in spread])
    picked: list[Mutant] = []
    for layer in itertools.zip_longest(*queues):
        picked += [m for m in layer if m is not None][: count - len(picked)]
    return picked


def _covered_lines(run: GateRun) -> dict[str, set[int]] | None:
    data = run.artifacts.get("coverage")
    if not data:
        return None
    return {path: set(info.get("executed_lines", [])) for path, info in data["files"].items()}


def _run_mutant(run: GateRun, mutant: Mutant, timeout: float) -> tuple[Mutant, str]:
    """Return the mutant and what the tests did: 'killed', 'survived', 'timeout' or 'forged'.

    The tests run exactly as in the pytest gate (:func:`suite_command`): nothing in argv,
    environment or report files tells a mutant's run from the one that reports. A mutant
    counts as survived only when pytest's exit code and its report agree that every test
    passed; when they disagree the outcome was rigged ('forged').
    """
    measure = "coverage" in run.profile.gates
    with run.new_sandbox() as box:
        source = (box.tree / mutant.file).read_text(encoding="utf-8")
        box.write_text(mutant.file, mutant.apply(source))
        argv, variables = suite_command(box, measure=measure)
        result = box.run(argv, timeout=timeout, env=variables)
        if result.killed:
            return mutant, "timeout"
        report = read_report(box, result, measure=measure)
    if report.forged:
        return mutant, "forged:" + report.forged
    return mutant, "survived" if result.exit_code == 0 else "killed"


def gate_mutation(run: GateRun) -> Outcome:
    """Fail the tests that pass on every deliberately broken copy of the code."""
    count = run.profile.mutants
    if count <= 0:
        return Check("mutation", "not_run", [], None, 0, "off in this profile"), []
    sites = find_sites(run.tree, _covered_lines(run))
    valid = []
    for mutant in sites:
        text = (run.tree / mutant.file).read_text(encoding="utf-8")
        try:
            parse_python(mutant.apply(text))
        except SyntaxError:
            continue
        valid.append(mutant)
    chosen = choose(valid, count)
    if not chosen:
        reason = "no mutation site on a line the tests run (no comparison, return or call)"
        return Check("mutation", "not_run", [], None, 0, reason, required=False), []
    start = time.monotonic()
    baseline = float(run.artifacts.get("pytest_seconds", 5.0))
    timeout = min(run.timeout, max(15.0, 4 * baseline + 5))
    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = list(pool.map(lambda m: _run_mutant(run, m, timeout), chosen))
    forged = [(m, what.split(":", 1)[1]) for m, what in outcomes if what.startswith("forged:")]
    killed = [m for m, what in outcomes if what in ("killed", "timeout")]
    survived = [m for m, what in outcomes if what == "survived"]
    score = len(killed) / len(outcomes)
    failed = bool(forged) or not killed or score < run.profile.mutation_min_score
    diags = [
        Diagnostic(
            "mutation",
            m.file,
            m.line,
            f"with {m.describe()}, the tests' outcome cannot be believed: {why}",
            "forged",
        )
        for m, why in forged
    ]
    if failed:
        diags += [
            Diagnostic(
                "mutation",
                m.file,
                m.line,
                f"the tests still pass when {m.describe()}: add a test that fails on this change",
                m.kind,
            )
            for m in survived
        ]
    status: CheckStatus = "failed" if failed else "passed"
    minimum = run.profile.mutation_min_score
    summary = f"{len(killed)} of {len(outcomes)} mutants killed" + (
        f" (minimum {minimum:.0%})" if minimum else " (at least one)"
    )
    if forged:
        summary += f"; {len(forged)} runs whose exit code and report disagree (rigged)"
    check = Check(
        "mutation",
        status,
        ["pytest on each mutant, as the pytest gate runs it, in its own sandbox"],
        None,
        round(time.monotonic() - start, 3),
        summary,
        "oldnew mutants",
        metrics={
            "mutants": len(outcomes),
            "killed": len(killed),
            "survived": [f"{m.file}:{m.line} {m.describe()}" for m in survived],
            "forged": len(forged),
            "sites": len(valid),
        },
    )
    return check, diags
