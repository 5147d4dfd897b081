"""The acceptance suite in the delivery report: who wrote it, what it checks, how it did.

Read from the run's traceability (``oldnew.planning.trace``), itself derived from the
acceptance record (``RunState.acceptance``): nothing here is stored.
"""

from __future__ import annotations

from typing import Any

from oldnew.planning.trace import criteria_passing


def acceptance_section(state: dict[str, Any], trace: dict[str, Any]) -> dict[str, Any]:
    """Return the acceptance suite as the report shows it: who wrote it, what it checks, results.

    Empty when the run has no suite record (acceptance off, or not written yet).
    """
    record = state.get("acceptance") or {}
    if not record:
        return {}
    passing, testable = criteria_passing(trace)
    files = {rid: r.get("file", "") for rid, r in (record.get("requirements") or {}).items()}
    return {
        "status": record.get("status"),
        "written_by": "tester",
        "commit": record.get("commit"),
        "checked": record.get("checked"),
        "criteria_passing": passing,
        "criteria": testable,
        "requirements": [
            {
                "id": rid,
                "title": t["title"],
                "file": files.get(rid, ""),
                "status": t["status"],
                "untestable": t.get("untestable", ""),
                "criteria": t.get("criteria", []),
                "tests": t.get("acceptance_tests", []),
            }
            for rid, t in trace.items()
        ],
        "notes": list(record.get("notes") or []),
    }


RESULT_WORDS = {"passed": "passed", "failed": "FAILED", "error": "ERROR (does not run)"}


def acceptance_markdown(acc: dict[str, Any]) -> list[str]:
    """Return the acceptance section: per requirement its criteria and tests, with results."""
    if not acc:
        return []
    lines = ["", "## Acceptance", ""]
    if acc.get("status") != "written":
        why = {"off": "acceptance is off for this run (OLDNEW_ACCEPTANCE=0)"}.get(
            str(acc.get("status")), "no requirement had criteria to test"
        )
        return [*lines, f"No acceptance suite: {why}.", *[f"- {n}" for n in acc["notes"]]]
    checked = f"`{str(acc['checked'])[:12]}`" if acc.get("checked") else "not checked yet"
    lines += [
        f"Written by the tester role from the requirements and their criteria, before any code "
        f"(commit `{str(acc.get('commit') or '')[:12]}`); the coder could not change it. "
        f"{acc['criteria_passing']} of {acc['criteria']} criteria passing on main ({checked}).",
    ]
    for r in acc["requirements"]:
        lines += ["", f"### {r['id']} {r['title']}: {r['status']}", ""]
        if r["untestable"]:
            lines += [f"Untestable: {r['untestable']}", ""]
        for c in r["criteria"]:
            lines.append(
                f"- **{c['id']}** [{c['status']}]: given {c['given']}; when {c['when']}; "
                f"then {c['then']}"
            )
            for t in (t for t in r["tests"] if t["criterion"] == c["id"]):
                lines.append(f"  - `{t['test']}`: {RESULT_WORDS.get(t['result'], 'not run')}")
        strays = [t for t in r["tests"] if t["criterion"] not in {c["id"] for c in r["criteria"]}]
        lines += [f"- `{t['test']}` (no criterion): {t['result']}" for t in strays]
    lines += [f"- note: {n}" for n in acc["notes"]]
    return lines


def trace_markdown(trace: dict[str, Any]) -> list[str]:
    """Return the traceability section: requirement -> criteria -> tests -> tasks -> commits."""
    if not trace:
        return []
    lines = ["", "## Traceability (requirement -> criteria -> tests -> tasks -> commits)", ""]
    for rid, t in trace.items():
        tasks = ", ".join(t.get("tasks", [])) or "none"
        tests = ", ".join(t.get("tests", [])) or "none"
        line = f"- {rid} {t.get('title', '')} [{t.get('status', '')}]: "
        if "criteria" in t:
            crit = ", ".join(f"{c['id']} {c['status']}" for c in t["criteria"]) or "none"
            line += f"criteria {crit}; acceptance tests {len(t['acceptance_tests'])}; "
        line += f"tasks {tasks}; tests {tests}"
        if t.get("commits"):
            line += "; commits " + ", ".join(f"`{c[:12]}`" for c in t["commits"])
        lines.append(line)
    return lines
