"""The results table of an evaluation: rows as cells, written as JSON and Markdown.

Run with and without the tester's acceptance suite (``--acceptance both``), a second table sets
each case's hidden tests passed side by side, with each side's totals.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from oldnew.eval.runner import CaseResult

COLUMNS = ("case", "result", "tests", "fixes", "tokens", "USD", "wall s", "asked")
"""The table's columns, short enough for 80 characters: see CAPTION."""
CAPTION = (
    "tests: hidden acceptance tests passed/total; fixes: fix rounds; USD: cost from the price "
    "table; wall s: the run's seconds; asked: questions the run raised for a person"
)


def result_cell(row: CaseResult) -> str:
    """Return delivered, delivered (limitations), blocked: <blocker>, or error: <why>."""
    if row.status == "delivered":
        return "delivered"
    if row.status == "delivered_with_limitations":
        return "delivered (known limitations)"
    kind = "error" if row.status == "error" else "blocked"
    return f"{kind}: {row.blocker[:160]}" if row.blocker else kind


def acceptance_cell(row: CaseResult) -> str:
    """Return ``passed/total``, with why when the tests could not run."""
    acc = row.acceptance
    cell = f"{acc.passed}/{acc.total}"
    return f"{cell} ({acc.error[:120]})" if acc.error else cell


def case_cell(row: CaseResult) -> str:
    """Return the case's name, marked when it ran without the acceptance suite."""
    return row.case if row.suite else f"{row.case} (no suite)"


def cells(row: CaseResult) -> list[str]:
    """Return one row of the table, as text, in the order of COLUMNS."""
    return [
        case_cell(row),
        result_cell(row),
        acceptance_cell(row),
        str(row.fix_rounds),
        f"{row.tokens:,}",
        f"{row.cost_usd:.4f}",
        f"{row.seconds:.1f}",
        str(row.questions),
    ]


def totals(rows: list[CaseResult]) -> dict[str, Any]:
    """Return the suite's sums: cases delivered, acceptance tests passed, spend."""
    return {
        "cases": len(rows),
        "delivered": sum(r.delivered for r in rows),
        "acceptance_passed": sum(r.acceptance.passed for r in rows),
        "acceptance_total": sum(r.acceptance.total for r in rows),
        "fix_rounds": sum(r.fix_rounds for r in rows),
        "tokens": sum(r.tokens for r in rows),
        "cost_usd": round(sum(r.cost_usd for r in rows), 6),
        "seconds": round(sum(r.seconds for r in rows), 2),
        "questions": sum(r.questions for r in rows),
    }


COMPARE_COLUMNS = ("case", "with suite", "without suite")
"""The side-by-side table's columns: hidden acceptance tests passed/total on each side."""


def _share(passed: int, total: int) -> str:
    return f"{passed}/{total} ({100 * passed / total:.0f}%)" if total else "0/0"


def side_totals(rows: list[CaseResult]) -> dict[str, dict[str, Any]]:
    """Return the totals of each side a suite ran (``with_suite``, ``without_suite``)."""
    with_suite = [r for r in rows if r.suite]
    without = [r for r in rows if not r.suite]
    sides = {"with_suite": with_suite, "without_suite": without}
    return {name: totals(part) for name, part in sides.items() if part}


def comparison(rows: list[CaseResult]) -> list[list[str]]:
    """Return the side-by-side table (COMPARE_COLUMNS), its last row the totals; [] unless both.

    Each cell is the hidden acceptance tests passed of total, and their share.
    """
    sides = side_totals(rows)
    if len(sides) < 2:
        return []
    table = []
    for case in dict.fromkeys(r.case for r in rows):
        pair = {r.suite: r.acceptance for r in rows if r.case == case}
        table.append(
            [case]
            + [_share(a.passed, a.total) if a else "-" for a in (pair.get(True), pair.get(False))]
        )
    on, off = sides["with_suite"], sides["without_suite"]
    table.append(
        [
            "total",
            _share(on["acceptance_passed"], on["acceptance_total"]),
            _share(off["acceptance_passed"], off["acceptance_total"]),
        ]
    )
    return table


def _comparison_markdown(rows: list[CaseResult]) -> list[str]:
    table = comparison(rows)
    if not table:
        return []
    lines = ["", "Hidden acceptance tests passed, with and without the tester's suite:", ""]
    lines += ["| " + " | ".join(COMPARE_COLUMNS) + " |", "|---|---|---|"]
    return lines + ["| " + " | ".join(_md(c) for c in row) + " |" for row in table]


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(rows: list[CaseResult], title: str) -> str:
    """Return the table as Markdown, with the totals under it."""
    lines = [f"# {title}", "", "| " + " | ".join(COLUMNS) + " |"]
    lines.append("|" + "|".join("---" for _ in COLUMNS) + "|")
    lines += ["| " + " | ".join(_md(c) for c in cells(r)) + " |" for r in rows]
    t = totals(rows)
    lines += [
        "",
        f"{CAPTION}.",
        "",
        f"{t['delivered']} of {t['cases']} cases delivered; acceptance tests "
        f"{t['acceptance_passed']}/{t['acceptance_total']} passed; {t['tokens']:,} tokens, "
        f"${t['cost_usd']:.4f}, {t['seconds']:.1f} s of runs.",
    ]
    failing = [(case_cell(r), name) for r in rows for name in r.acceptance.failed]
    if failing:
        lines += ["", "Failing acceptance tests:", ""]
        lines += [f"- {case}: `{_md(name)}`" for case, name in failing]
    lines += _comparison_markdown(rows)
    return "\n".join(lines) + "\n"


def write_results(rows: list[CaseResult], out_dir: Path, meta: dict[str, Any]) -> list[Path]:
    """Write ``results.json`` and ``results.md`` in ``out_dir``; return their paths."""
    data = {**meta, "totals": totals(rows), "cases": [r.to_dict() for r in rows]}
    if comparison(rows):
        data["sides"] = side_totals(rows)
    path_json = out_dir / "results.json"
    path_json.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    path_md = out_dir / "results.md"
    path_md.write_text(markdown(rows, f"oldnew eval: {meta.get('suite', '')}"), encoding="utf-8")
    return [path_json, path_md]
