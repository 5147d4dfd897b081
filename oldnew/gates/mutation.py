"""Tests that mean something: a suite counts only if it fails on deliberately broken code.

A few simple mutants of the project's own code (a comparison flipped, ``and`` and ``or``
swapped, an arithmetic operator swapped: ``+``/``-``, ``*``/``/``, ``//`` and ``**`` to ``*``,
``%`` to ``//``, the same in an augmented assignment: ``+=`` to ``-=``, ``*=`` to ``/=``, ...;
a returned constant changed, a returned value replaced by ``None``, a call statement dropped,
a value a function assigns replaced by ``None``), each on a line the tests run, each in a fresh
sandboxed copy. A suite that passes on every mutant tests nothing that matters: the gate fails
and names the changes the tests missed.

A mutant is killed only when a test fails on an assertion: an ``AssertionError`` (``assert``,
unittest's ``assert*``, ``pytest.raises(..., match=)``) or pytest's ``Failed`` (``pytest.fail``,
``pytest.raises`` that saw nothing raised). A mutant whose tests only crash (a ``TypeError``,
an ``AttributeError`` of a ``None``, a hang: what any call of the changed code would meet,
asserted or not) is "crashed": reported, never counted as killed, nor in the score's count.
A ``pytest.raises(ValueError)`` that meets a ``TypeError`` is a crash too: the ``TypeError``
goes through it, as it would through a bare call, so it says nothing of the assertion. Kinds
that could only crash are not made at all: an operator on text or a list (``"a" + b``,
``out += "- " + item`` where ``out = ""``), an unpacking of ``None``.

Coverage says which lines the tests run; when it saw none of the project's code at all (a
command tested through ``subprocess``, out of the tests' process), the mutants are chosen from
every line instead, and the gate fails only if none of them is killed.

The gate never passes by finding nothing to do. When no mutant can be run (the tests run some
of the project's code but none of the lines a mutant could change, or no function of the
project can be mutated), it fails
and names the files; a function no mutant can be made of is named in the summary and the
metrics (``unjudged``) of a gate that ran others: the check cannot judge its tests. Only a
project whose code computes nothing (constants, imports, docstrings, empty declarations) is
"not run", and its summary says so.
"""

from __future__ import annotations

import ast
import itertools
import re
import time
import xml.etree.ElementTree as ET  # nosec B405 - parses pytest's own junit file
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from oldnew.gates.common import GateRun, Outcome, parse_python
from oldnew.gates.model import Check, CheckStatus, Diagnostic
from oldnew.gates.pytests import JUNIT, read_report, suite_command
from oldnew.gates.python import is_test_file, python_files
from oldnew.sandbox.files import UnsafeOutput, read_output

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
_ARITH: dict[type[ast.operator], type[ast.operator]] = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.Div,
    ast.Div: ast.Mult,
    ast.FloorDiv: ast.Mult,
    ast.Mod: ast.FloorDiv,
    ast.Pow: ast.Mult,
}
"""Each arithmetic operator and the one it becomes (in ``a op b`` and in ``a op= b``)."""
_KIND_ORDER = ("compare", "return", "boolop", "arith", "augassign", "call", "assign")


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


def _mutated(node: ast.AST, texts: frozenset[str] = frozenset()) -> tuple[str, str] | None:
    """Return (kind, replacement source) for a node that can be mutated, else None."""
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _FLIP:
        new = ast.Compare(node.left, [_FLIP[type(node.ops[0])]()], node.comparators)
        return "compare", f"({ast.unparse(new)})"
    if isinstance(node, ast.BoolOp):
        op: ast.boolop = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        return "boolop", f"({ast.unparse(ast.BoolOp(op, node.values))})"
    if isinstance(node, ast.BinOp) and type(node.op) in _ARITH and not _on_text(node, texts):
        swap = _ARITH[type(node.op)]()
        return "arith", f"({ast.unparse(ast.BinOp(node.left, swap, node.right))})"
    if isinstance(node, ast.AugAssign) and type(node.op) in _ARITH:
        if _textual(node.target, texts) or _textual(node.value, texts):
            return None  # ``out += "- " + item`` made ``-=`` only raises a TypeError
        aug = ast.AugAssign(node.target, _ARITH[type(node.op)](), node.value)
        return "augassign", ast.unparse(aug)
    return None


def _on_text(node: ast.BinOp, texts: frozenset[str] = frozenset()) -> bool:
    """Whether a side of ``node`` is evidently text or a list (``"a" + b``, ``"%s" % x``).

    Swapping such an operator only raises a TypeError: a mutant any run kills, which says
    nothing of the tests.
    """
    return _textual(node.left, texts) or _textual(node.right, texts)


_SEQUENCES = (ast.JoinedStr, ast.List, ast.Tuple, ast.ListComp)


def _textual(node: ast.AST, texts: frozenset[str]) -> bool:
    """Whether ``node`` is evidently text or a list.

    A string, f-string, list or tuple literal, a name the function set to one or annotated
    ``str``, ``bytes``, ``list`` or ``tuple`` (``texts``), or ``+``, ``*`` or ``%`` of such.
    """
    if isinstance(node, _SEQUENCES):
        return True
    if isinstance(node, ast.Constant):
        return isinstance(node.value, (str, bytes))
    if isinstance(node, ast.Name):
        return node.id in texts
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult, ast.Mod)):
        return _textual(node.left, texts) or _textual(node.right, texts)
    return False


_TEXT_TYPES = re.compile(r"^(str|bytes|list|tuple|List|Tuple)\b")


def _text_names(func: ast.AST) -> frozenset[str]:
    """Return the names ``func`` (a function, or a module) evidently holds text or a list in."""
    names: set[str] = set()
    if isinstance(func, _FUNCTION):
        for arg in [*func.args.posonlyargs, *func.args.args, *func.args.kwonlyargs]:
            if arg.annotation is not None and _TEXT_TYPES.match(ast.unparse(arg.annotation)):
                names.add(arg.arg)
    for node in ast.walk(func):
        if isinstance(node, ast.Assign) and _textual(node.value, frozenset()):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            typed = _TEXT_TYPES.match(ast.unparse(node.annotation))
            if typed or (node.value is not None and _textual(node.value, frozenset())):
                names.add(node.target.id)
    return frozenset(names)


def _return_constant(node: ast.Return) -> tuple[ast.AST, str] | None:
    """Return (target, replacement) of a ``return``: its constant changed, or its value None.

    ``return x`` (any value but a constant) becomes ``return None``: tests that never look
    at what a function returns let it survive.
    """
    value = node.value
    if value is None:
        return None
    if not isinstance(value, ast.Constant):
        return node, "return None"
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


_FUNCTION = (ast.FunctionDef, ast.AsyncFunctionDef)


def _site(
    node: ast.AST, parents: dict[ast.AST, ast.AST], texts: frozenset[str] = frozenset()
) -> tuple[ast.AST, str, str] | None:
    """Return (node to replace, kind, replacement source) of a mutation site, else None."""
    if isinstance(node, ast.Return):
        hit = _return_constant(node)
        return (hit[0], "return", hit[1]) if hit else None
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
        return node, "call", "None"
    if isinstance(node, (ast.Assign, ast.AnnAssign)) and _in_function(node, parents):
        value = node.value
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        # None cannot be unpacked: such a mutant only raises, whatever the tests check.
        unpacks = any(isinstance(t, (ast.Tuple, ast.List, ast.Starred)) for t in targets)
        if value is not None and not isinstance(value, ast.Constant) and not unpacks:
            return value, "assign", "None"
        return None
    found = _mutated(node, texts)
    return (node, *found) if found else None


_ROW = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$")
"""A source line as the parser counts them (not split at a form feed, as str.splitlines is)."""


def _segment(rows: list[bytes], node: ast.AST) -> str:
    """Return ``node``'s source from the file's lines, split once (positions are byte offsets).

    What :func:`ast.get_source_segment` does, without splitting the whole file again for each
    node (that was most of the gate's host-side time on a large project).
    """
    l0: int = node.lineno - 1  # type: ignore[attr-defined]
    c0: int = node.col_offset  # type: ignore[attr-defined]
    l1: int = node.end_lineno - 1  # type: ignore[attr-defined]
    c1: int = node.end_col_offset  # type: ignore[attr-defined]
    if l0 == l1:
        return rows[l0][c0:c1].decode(errors="replace")
    return b"".join([rows[l0][c0:], *rows[l0 + 1 : l1], rows[l1][:c1]]).decode(errors="replace")


def _scope_texts(
    node: ast.AST, parents: dict[ast.AST, ast.AST], cache: dict[ast.AST, frozenset[str]]
) -> frozenset[str]:
    """Return the text names of the function (else the module) ``node`` is in, cached."""
    if not isinstance(node, (ast.AugAssign, ast.BinOp)):
        return frozenset()
    scope: ast.AST = node
    while scope in parents and not isinstance(scope, _FUNCTION):
        scope = parents[scope]
    if scope not in cache:
        cache[scope] = _text_names(scope)
    return cache[scope]


def _in_function(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, _FUNCTION):
            return True
    return False


def _does_work(func: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """Whether a function's body does anything.

    Not when it is only a docstring, ``pass``, ``...`` or ``raise NotImplementedError`` (an
    abstract method, a protocol's stub).
    """
    for stmt in func.body:
        if isinstance(stmt, ast.Pass):
            continue
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
            continue  # a docstring or ``...``
        if isinstance(stmt, ast.Raise) and "NotImplementedError" in ast.unparse(stmt):
            continue
        return True
    return False


@dataclass
class Survey:
    """What the mutation gate can do with a project: its sites, and what no mutant reaches."""

    sites: list[Mutant]
    """Every site, on any line (the tests' coverage is applied later)."""
    unjudged: list[str]
    """Functions that do work but of which no mutant can be made (``file:name (line N)``)."""
    working: int
    """How many functions do work (a body beyond a docstring, pass or a stub's raise)."""
    texts: dict[str, str] = field(default_factory=dict)
    """Each surveyed file's text, read once (mutants are applied to it)."""


def survey(tree: Path) -> Survey:
    """Return every mutation site in the project's non-test code, and what has none."""
    out = Survey([], [], 0)
    for path in python_files(tree):
        name = str(path.relative_to(tree))
        if is_test_file(name):
            continue
        try:
            source = path.read_text(encoding="utf-8")
            module = parse_python(source)
        except (SyntaxError, UnicodeDecodeError, ValueError, RecursionError):
            continue
        out.texts[name] = source
        rows = [row.encode() for row in _ROW.findall(source)]
        parents = {c: n for n in ast.walk(module) for c in ast.iter_child_nodes(n)}
        scopes: dict[ast.AST, frozenset[str]] = {}
        lines: set[int] = set()
        for node in ast.walk(module):
            hit = _site(node, parents, _scope_texts(node, parents, scopes))
            if hit is None or not hasattr(hit[0], "end_lineno"):
                continue
            target, kind, after = hit
            if _inside_fstring(target, parents):
                continue
            line = target.lineno  # type: ignore[attr-defined]
            before = _segment(rows, target)
            lines.add(line)
            out.sites.append(
                Mutant(
                    name,
                    line,
                    kind,
                    " ".join(before.split())[:80],
                    after,
                    (line, target.col_offset),  # type: ignore[attr-defined]
                    (target.end_lineno, target.end_col_offset),  # type: ignore[attr-defined]
                )
            )
        for func in (n for n in ast.walk(module) if isinstance(n, _FUNCTION)):
            if not _does_work(func):
                continue
            out.working += 1
            span = range(func.lineno, (func.end_lineno or func.lineno) + 1)
            if not lines.intersection(span):
                out.unjudged.append(f"{name}:{func.name} (line {func.lineno})")
    out.sites.sort(key=lambda m: (m.file, m.start, m.kind))
    return out


def find_sites(tree: Path, covered: dict[str, set[int]] | None) -> list[Mutant]:
    """Return every mutation site in the project's non-test code on a line the tests ran."""
    return _on_lines(survey(tree).sites, covered)


def _on_lines(sites: list[Mutant], covered: dict[str, set[int]] | None) -> list[Mutant]:
    if covered is None:
        return list(sites)
    return [m for m in sites if m.line in covered.get(m.file, set())]


def _ranked(sites: list[Mutant], count: int) -> list[Mutant]:
    """Return every site, the ``count`` to pick first spread over kinds and files."""
    queues = []
    for kind in _KIND_ORDER:
        group = [m for m in sites if m.kind == kind]
        spread = group[:: max(1, len(group) // max(1, count))]
        taken = set(spread)
        queues.append(spread + [m for m in group if m not in taken])
    return [m for layer in itertools.zip_longest(*queues) for m in layer if m is not None]


def choose(sites: list[Mutant], count: int) -> list[Mutant]:
    """Pick up to ``count`` sites, spread over kinds and files, always the same ones."""
    return _ranked(sites, count)[:count]


def pick(sites: list[Mutant], count: int, texts: dict[str, str]) -> list[Mutant]:
    """Pick as :func:`choose` does, only mutants that parse: an invalid one gives way to the next.

    Only the picked are parsed (each once, against ``texts``, each file's text read once),
    not every site of the project.
    """
    picked: list[Mutant] = []
    for mutant in _ranked(sites, count):
        if len(picked) == count:
            break
        try:
            parse_python(mutant.apply(texts[mutant.file]))
        except (SyntaxError, ValueError, RecursionError):
            continue
        picked.append(mutant)
    return picked


def _covered_lines(run: GateRun) -> dict[str, set[int]] | None:
    data = run.artifacts.get("coverage")
    if not data:
        return None
    return {path: set(info.get("executed_lines", [])) for path, info in data["files"].items()}


_RAISED = re.compile(r"^([A-Za-z_][\w.]*)(?::|$)")
_EXCEPTION_NAME = re.compile(r"(Error|Exception|Exit|Interrupt|Iteration|Warning|Failed)$")
_ASSERTIONS = {"AssertionError", "Failed"}
"""What a test fails with when it asserts: ``assert`` and unittest's ``assert*``, pytest's
``fail`` and ``raises`` that saw nothing raised."""


def _raised(message: str) -> str:
    """Return the exception a failing test ended with, from its junit ``message``.

    The message is pytest's one-line account of the exception, ``TypeError: ...``; a
    rewritten ``assert`` shows only its expression (``assert 3 == 5``) or its own message.
    """
    first = (message.strip().splitlines() or [""])[0]
    found = _RAISED.match(first)
    if found and _EXCEPTION_NAME.search(found[1]):
        return found[1].rsplit(".", 1)[-1] if found[1].startswith("_pytest.") else found[1]
    return "AssertionError"


def failures_in(data: bytes) -> list[str]:
    """Return the exception of each test that failed or erred in a junit report."""
    try:
        root = ET.fromstring(data)  # nosec B314 - bounded bytes, no entities or DTDs resolved
    except ET.ParseError:
        return []
    found = []
    for case in root.iter("testcase"):
        found += [_raised(f.get("message") or f.text or "") for f in case.findall("failure")]
        found += ["error: " + (e.get("message") or "")[:80] for e in case.findall("error")]
    return found


def _run_mutant(run: GateRun, mutant: Mutant, timeout: float) -> tuple[Mutant, str]:
    """Return the mutant and what the tests did.

    'killed' (a test failed on an assertion), 'crashed:<what>' (tests failed, none on an
    assertion; or they hung), 'survived', or 'forged:<why>'.

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
            return mutant, f"crashed:the tests hung (stopped after {timeout:g} s)"
        report = read_report(box, result, measure=measure)
        if report.forged:
            return mutant, "forged:" + report.forged
        if result.exit_code == 0:
            return mutant, "survived"
        try:
            failures = failures_in(read_output(box.home, JUNIT) or b"")
        except UnsafeOutput as exc:
            return mutant, f"forged:pytest's report cannot be trusted: {exc}"
    if any(f in _ASSERTIONS for f in failures):
        return mutant, "killed"
    crashes = sorted(set(failures)) or ["pytest failed with no failing test in its report"]
    return mutant, "crashed:the tests failed only with " + ", ".join(crashes)[:200]


def _reaches_nothing(covered: dict[str, set[int]] | None) -> bool:
    """Whether coverage ran and saw no line of the project's code run (it only counts code)."""
    return covered is not None and not any(covered.values())


def gate_mutation(run: GateRun) -> Outcome:
    """Fail the tests that pass on every deliberately broken copy of the code."""
    count = run.profile.mutants
    if count <= 0:
        return Check("mutation", "not_run", [], None, 0, "off in this profile"), []
    found = survey(run.tree)
    covered = _covered_lines(run)
    # Tests that run the code only through subprocess leave coverage empty: every line may
    # be reached out of process, so every line is a candidate, and only "none killed" fails.
    out_of_process = _reaches_nothing(covered) and bool(found.sites)
    candidates = found.sites if out_of_process else _on_lines(found.sites, covered)
    chosen = pick(candidates, count, found.texts)
    if not chosen:
        return _nothing_run(found.sites, found)
    start = time.monotonic()
    baseline = float(run.artifacts.get("pytest_seconds", 5.0))
    timeout = min(run.timeout, max(15.0, 4 * baseline + 5))
    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = list(pool.map(lambda m: _run_mutant(run, m, timeout), chosen))
    forged = [(m, what.split(":", 1)[1]) for m, what in outcomes if what.startswith("forged:")]
    crashed = [(m, what.split(":", 1)[1]) for m, what in outcomes if what.startswith("crashed:")]
    killed = [m for m, what in outcomes if what == "killed"]
    survived = [m for m, what in outcomes if what == "survived"]
    # A crashed mutant says nothing of the tests: it counts neither for nor against the score.
    judged = len(killed) + len(survived)
    score = len(killed) / judged if judged else 0.0
    minimum = 0.0 if out_of_process else run.profile.mutation_min_score
    failed = bool(forged) or not killed or score < minimum
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
        diags += [
            Diagnostic(
                "mutation",
                m.file,
                m.line,
                f"when {m.describe()}, {why}: no test failed on an assertion, so this does "
                "not count as caught; add a test that asserts what this code returns or does",
                "crashed",
            )
            for m, why in crashed
        ]
    status: CheckStatus = "failed" if failed else "passed"
    summary = f"{len(killed)} of {len(outcomes)} mutants killed" + (
        f" (minimum {minimum:.0%} of those not crashed)" if minimum else " (at least one)"
    )
    if crashed:
        summary += f"; {len(crashed)} only crashed the tests (not counted)"
    if forged:
        summary += f"; {len(forged)} runs whose exit code and report disagree (rigged)"
    if out_of_process:
        summary += (
            "; coverage saw none of the project's code run in the tests' process (tested "
            "through subprocess?), so the mutants were chosen from every line"
        )
    if found.unjudged:
        shown = ", ".join(found.unjudged[:5]) + (" ..." if len(found.unjudged) > 5 else "")
        summary += f"; no mutant could be made of {shown}: this check cannot judge their tests"
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
            "crashed": [f"{m.file}:{m.line} {m.describe()}: {why}" for m, why in crashed],
            "forged": len(forged),
            "sites": len(candidates),
            "unjudged": found.unjudged,
            "out_of_process": out_of_process,
        },
    )
    return check, diags


KINDS_IN_WORDS = (
    "comparisons, boolean and arithmetic operators, augmented assignments, returned values, "
    "call statements and values a function assigns"
)


def _nothing_run(valid: list[Mutant], found: Survey) -> Outcome:
    """Return the outcome of a gate that found no mutant to run: never a silent pass.

    Sites the tests never reach fail it (the tests cannot be judged on code they do not
    run: the coder's to test); so does code that works but offers no site. Only code that
    computes nothing is not run, and says so.
    """
    metrics = {"mutants": 0, "killed": 0, "sites": len(valid), "unjudged": found.unjudged}
    if valid:
        files: dict[str, list[int]] = {}
        for m in valid:
            files.setdefault(m.file, []).append(m.line)
        diags = [
            Diagnostic(
                "mutation",
                file,
                lines[0],
                f"no test runs a line of {file} where a mutant can be made (lines "
                f"{', '.join(map(str, sorted(set(lines))[:8]))}): the mutation check cannot "
                "judge the tests of code they never run; add tests that run it",
                "unreached",
            )
            for file, lines in files.items()
        ]
        summary = f"no mutant could run: the tests run none of the {len(valid)} mutable lines"
        check = Check("mutation", "failed", [], None, 0.0, summary, metrics=metrics)
        return check, diags
    if found.working:
        diags = [
            Diagnostic(
                "mutation",
                where.split(":", 1)[0],
                int(where.rsplit("line ", 1)[1].rstrip(")")),
                f"no mutant could be made of {where}: the mutation check cannot judge its "
                f"tests (it changes {KINDS_IN_WORDS}, and this function has none)",
                "no-mutant",
            )
            for where in found.unjudged
        ]
        summary = (
            f"no mutant could be made of the project's {found.working} working functions: "
            "this check cannot judge the tests"
        )
        check = Check("mutation", "failed", [], None, 0.0, summary, metrics=metrics)
        return check, diags
    reason = (
        "nothing to mutate: the project's code computes nothing (only constants, imports, "
        f"docstrings and empty declarations; no {KINDS_IN_WORDS}), so no mutant can judge "
        "its tests; reported as not run, never as passed"
    )
    return Check("mutation", "not_run", [], None, 0.0, reason, required=False, metrics=metrics), []
