"""The delivery report: what was delivered with its evidence, what is blocked and why."""

from __future__ import annotations

import json
import shlex
from dataclasses import asdict
from typing import Any

from oldnew.acceptance.report import acceptance_markdown, acceptance_section, trace_markdown
from oldnew.budget import budget_markdown
from oldnew.deps.ledger import inventory
from oldnew.evidence import EvidenceIndex
from oldnew.feedback.items import render_feedback, report_section
from oldnew.gates.baseline import Baseline
from oldnew.gates.model import Diagnostic
from oldnew.planning.trace import run_traceability
from oldnew.schemas import Feature, Scope
from oldnew.web.preview import preview_status
from oldnew.web.summary import web_markdown, web_section
from oldnew.workspace import Workspace


def build_report(state: dict[str, Any], ws: Workspace, final: dict[str, Any]) -> dict[str, Any]:
    """Return the report as a JSON-ready dict."""
    tasks = list((state.get("tasks") or {}).values())
    plan_tasks = {t["id"]: t for t in (state.get("plan") or {}).get("tasks", [])}
    questions = state.get("questions") or {}
    delivered = [t for t in tasks if t["status"] == "done"]
    limited = [t for t in tasks if t["status"] != "done" and t.get("limitation")]
    # A delivered task built against a stand-in (a mock) is a known limitation too.
    limited += [
        {**t, "limitation": t["stand_in"]}
        for t in tasks
        if t["status"] == "done" and t.get("stand_in")
    ]
    blocked = [t for t in tasks if t["status"] != "done" and not t.get("limitation")]
    blockers = []
    for t in blocked:
        q = questions.get(t.get("question") or "")
        blockers.append(
            {
                "task": t["id"],
                "title": t["title"],
                "status": t["status"],
                "reason": t.get("blocker") or (q["title"] if q else "not started"),
                "options": [o["label"] for o in q["options"]] if q else [],
                "depends_on": plan_tasks.get(t["id"], {}).get("depends_on", []),
            }
        )
    pending = [q for q in questions.values() if q["status"] == "pending"]
    trace = run_traceability(state)
    return {
        "run_id": (ws.run_info() or {}).get("run_id"),
        "status": state.get("status"),
        "stop_reason": state.get("stop_reason"),
        "project": (state.get("scope") or {}).get("title"),
        "workspace": str(ws.root),
        "head": ws.head(),
        "delivered": [
            {
                "task": t["id"],
                "title": t["title"],
                "commit": t.get("commit"),
                "fix_rounds": t.get("fix_rounds", 0),
                "evidence": t.get("evidence"),
                "excused": _excused_count(ws, t.get("evidence")),
                "regression": regression_summary(ws, t["id"]),
                "superseded_by": t.get("superseded_by"),
            }
            for t in delivered
        ],
        "blocked": blockers,
        "limitations": [limitation_entry(t) for t in limited],
        "pending_questions": [q["id"] for q in pending],
        "decisions": decisions(state),
        "final_validation": final,
        "quality": final.get("quality") or {},
        "gates": gate_lines(final),
        "web": web_section(final, state.get("milestones") or {}, ws.root, preview_status(ws.root)),
        **baseline_section(ws, final),
        **branch_section(ws),
        "sandbox_degraded": [
            f"{x['name']}: {x['detail']}" for x in final.get("sandbox", []) if not x.get("active")
        ],
        "dependencies": inventory(ws.root, ws.meta),
        "traceability": trace,
        "acceptance": acceptance_section(state, trace),
        "feedback": report_section(state),
        "resume": resume_hint(ws, blocked, pending, limited),
    }


def decisions(state: dict[str, Any]) -> list[dict[str, Any]]:
    """Return every answered question: its answer, who decided, and the criteria it settled.

    A clarification that names the acceptance criteria whose expected values depend on its
    answer (``Clarification.criteria``) has them in ``criteria``, as the scope wrote them.
    """
    scope = state.get("scope") or {}
    sentences = {c.id: c.sentence() for _, r in _requirements(scope) for c in r.criteria}
    settles = {c["question"]: c.get("criteria") or [] for c in scope.get("clarifications", [])}
    out = []
    for q in (state.get("questions") or {}).values():
        if q["status"] != "answered":
            continue
        ids = settles.get(q["title"], []) if q.get("kind") == "clarification" else []
        out.append(
            {
                "question": q["title"],
                "answer": q["answer"],
                "decided_by": q.get("decided_by") or "person",
                **({"criteria": [sentences.get(i, i) for i in ids]} if ids else {}),
            }
        )
    return out


def _requirements(scope: dict[str, Any]) -> list[tuple[str, Feature]]:
    return Scope.model_validate(scope).requirements() if scope else []


def limitation_entry(task: dict[str, Any]) -> dict[str, Any]:
    """Return one known limitation as the report lists it: why, the options, the partial work."""
    lim = task.get("limitation") or {}
    return {
        "task": task["id"],
        "title": task["title"],
        "reason": lim.get("reason") or task.get("blocker") or "not finished",
        "detail": lim.get("detail", ""),
        "options": list(lim.get("options") or []),
        "branch": lim.get("branch"),
        "delivered": task["status"] == "done",
    }


def baseline_section(ws: Workspace, final: dict[str, Any]) -> dict[str, Any]:
    """Return the report's ``baseline`` and ``preexisting`` entries: failing before this run.

    The pre-existing failures are the final validation's excused findings (still there at
    the end, blamed on no task); before any final validation, the baseline's own findings.
    """
    base = Baseline.load(ws)
    if base is None:
        return {"baseline": None, "preexisting": []}
    found = final.get("excused") if final.get("checks") else None
    if found is None:
        found = [asdict(d) for d in base.findings]
    preexisting = [
        {
            "gate": d["tool"],
            "finding": Diagnostic(**d).render(),
            "evidence": base.evidence,
        }
        for d in found
    ]
    return {"baseline": base.summary(), "preexisting": preexisting}


def _excused_count(ws: Workspace, evidence: str | None) -> int:
    """Return how many pre-existing findings a task's evidence excused (0 if unreadable)."""
    path = ws.root / evidence if evidence else None
    try:
        data = json.loads(path.read_text(encoding="utf-8")) if path else {}
    except (OSError, ValueError):
        return 0
    return len(data.get("excused") or [])


def regression_summary(ws: Workspace, task_id: str) -> str | None:
    """Return what the regression gate found for a bug fix, from the newest evidence it ran in.

    None for a task that fixes no reported bug (none of its evidence ran the gate).
    """
    for name in EvidenceIndex(ws.meta).names(task_id):  # newest first, only this task's
        path = ws.meta / "evidence" / f"{name}.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        for check in data.get("checks") or []:
            if check.get("name") == "regression":
                where = path.relative_to(ws.root)
                return f"{check['status']}: {check['summary']} (evidence `{where}`)"
    return None


def gate_lines(final: dict[str, Any]) -> list[dict[str, Any]]:
    """Return one line per gate of the final validation: what it says and where the proof is."""
    return [
        {
            "gate": c["name"],
            "status": c["status"],
            "required": c.get("required", True),
            "excused": c.get("excused", ""),
            "summary": c["summary"],
            "tool": c.get("version", ""),
            "seconds": c.get("duration_s", 0.0),
            "evidence": final.get("evidence"),
        }
        for c in final.get("checks", [])
    ]


def _not_run_lines(final: dict[str, Any]) -> list[str]:
    """Return one line per gate that did not run, with its whole reason (the table cuts it)."""
    lines = []
    for check in final.get("checks", []):
        if check["status"] != "not_run":
            continue
        optional = " (optional)" if not check.get("required", True) else ""
        why = " ".join(str(check["summary"]).split())
        lines.append(f"- **{check['name']}** was not run{optional}: {why}")
    return ["", *lines] if lines else []


def _gates_markdown(report: dict[str, Any], final: dict[str, Any]) -> list[str]:
    quality = report.get("quality") or {}
    branch = (report.get("branch") or {}).get("name", "main")
    lines = [f"## Quality gates on {branch}", ""]
    if quality:
        lines += [
            f"Profile **{quality.get('name')}**: coverage at least "
            f"{quality.get('coverage_min')}%, complexity at most "
            f"{quality.get('complexity_max')}, bandit blocks {quality.get('bandit_block')} "
            f"and above, mypy {'--strict' if quality.get('mypy_strict') else 'default'}, "
            f"{quality.get('mutants')} mutants.",
            "",
        ]
    if final.get("checks"):
        lines += ["| gate | status | result | tool |", "|---|---|---|---|"]
    for check in final.get("checks", []):
        status = check["status"].replace("_", " ")
        if check["status"] == "not_run" and not check.get("required", True):
            status += " (optional)"
        if check.get("excused"):
            status += " (before this run)"
        summary = check["summary"].replace("|", "/").replace("\n", " ")[:160]
        lines.append(f"| {check['name']} | **{status}** | {summary} | {check.get('version', '')} |")
    lines += _not_run_lines(final)
    if final.get("reused_from"):
        lines += [
            "",
            f"These are the results of `{final['reused_from']}`: the same files, profile and "
            "tools passed there, so the gates were not run twice.",
        ]
    lines += [
        "",
        f"Evidence: `{final.get('evidence', '-')}`; re-check it with "
        f"`oldnew verify --workspace {report['workspace']}`.",
        "",
    ]
    for note in report.get("sandbox_degraded", []):
        lines.append(f"- sandbox layer missing: {note}")
    if report.get("sandbox_degraded"):
        lines.append("")
    return lines


def _baseline_markdown(report: dict[str, Any]) -> list[str]:
    """Return the section of failures that were there before the run, blamed on no task."""
    base = report.get("baseline") or {}
    if not base or base.get("status") == "none":
        return []
    commit = f"`{str(base.get('commit'))[:12]}`"
    lines = ["## Failing before this run (not caused by it)", ""]
    if base.get("status") != "recorded":
        return [
            *lines,
            f"The gates could not be run on the commit this run started from ({commit}): "
            f"{base.get('status')}, {base.get('reason') or 'no reason given'} (evidence "
            f"`{base.get('evidence') or '-'}`). Without that baseline, every failure above "
            "counts as this run's.",
            "",
        ]
    if not report.get("preexisting"):
        return [
            *lines,
            f"Nothing: every gate passed on the commit this run started from ({commit}).",
            "",
        ]
    lines += [
        f"The gates ran on the commit this run started from ({commit}) before the first task; "
        "these findings were there already. No task is blamed for them, and they are left "
        "as they were:",
        "",
    ]
    for p in report["preexisting"]:
        finding = " ".join(str(p["finding"]).split())
        finding = finding if len(finding) <= 300 else finding[:297] + "..."
        lines.append(f"- {p['gate']}: {finding} (baseline evidence `{p['evidence']}`)")
    return [*lines, ""]


def resume_hint(
    ws: Workspace, blocked: list[Any], pending: list[Any], limited: list[Any] | None = None
) -> str:
    """Return how to go on from here, in one or two sentences."""
    if pending:
        return (
            f"Answer the pending questions with 'oldnew answer --workspace {ws.root} "
            "QUESTION_ID ANSWER'; the run resumes where it stopped."
        )
    if blocked:
        return (
            f"Resolve the blockers above, then run 'oldnew resume --workspace {ws.root}' "
            "to retry the tasks that did not finish."
        )
    if limited:
        return (
            "Nothing to resume: every critical task is delivered. The known limitations above "
            "keep their partial work on the branches named there; finish them from there or "
            "plan them into a follow-up run."
        )
    return "Nothing to resume: every task is delivered."


CHANGE_DEFAULT = (
    "taken by default; to choose otherwise, run the scope again with `--defaults ask` "
    "or state the answer in the scope"
)


def decision_line(decision: dict[str, Any]) -> str:
    """Return one decision as a Markdown bullet, saying when it was a default nobody chose."""
    line = f"- {decision['question']} -> {decision['answer']}"
    if decision.get("decided_by") == "default":
        line += f" ({CHANGE_DEFAULT})"
    elif decision.get("decided_by") == "yes":
        line += " (approved by --yes, not by a person)"
    return line


def _tasks_markdown(report: dict[str, Any]) -> list[str]:
    """Return the delivered, blocked and known-limitation sections."""
    lines = ["## Delivered", ""]
    if not report["delivered"]:
        lines.append("Nothing yet.")
    for d in report["delivered"]:
        lines.append(
            f"- {d['task']} {d['title']}: commit `{(d['commit'] or '')[:12]}`, "
            f"{d['fix_rounds']} fix rounds, evidence `{d['evidence']}`"
            + (
                f" ({d['excused']} findings there before the run, excused)"
                if d.get("excused")
                else ""
            )
            + (f" (superseded by {d['superseded_by']})" if d.get("superseded_by") else "")
            + (f"; regression test {d['regression']}" if d.get("regression") else "")
        )
    lines += ["", "## Blocked", ""]
    if not report["blocked"]:
        lines.append("Nothing.")
    for b in report["blocked"]:
        lines.append(f"- {b['task']} {b['title']} ({b['status']}): {b['reason']}")
        for opt in b["options"]:
            lines.append(f"  - option: {opt}")
    if report.get("limitations"):
        lines += ["", "## Known limitations", ""]
        for lim in report["limitations"]:
            branch = (
                f"partial work on branch `{lim['branch']}`"
                if lim["branch"]
                else "delivered, on main"
                if lim.get("delivered")
                else "no work kept"
            )
            lines.append(f"- {lim['task']} {lim['title']}: {lim['reason']} ({branch})")
            for opt in lim["options"]:
                lines.append(f"  - option: {opt}")
    return lines


def _dependencies_markdown(deps: list[dict[str, Any]]) -> list[str]:
    """Return the dependencies section: every pinned package, who asked, who allowed it."""
    if not deps:
        return ["", "## Dependencies", "", "None: the project uses only the standard library."]
    lines = ["", "## Dependencies", ""]
    for d in deps:
        if d["direct"]:
            asked = f", asked for by {d['requested_by']}" if d["requested_by"] else ""
            why = f" ({d['why']})" if d["why"] else ""
            group = "" if d["group"] in ("", "main") else f" [{d['group']}]"
            lines.append(
                f"- {d['name']} {d['version']} ({d['ecosystem']}){group}{why}{asked}: "
                f"{d['approved'] or 'declared'}"
            )
        else:
            lines.append(f"- {d['name']} {d['version']} ({d['ecosystem']}): {d['approved']}")
    return lines


def branch_section(ws: Workspace) -> dict[str, Any]:
    """Return, for a run on a person's repository, its branch and how to review and merge it."""
    if ws.repo is None or ws.base is None:
        return {}
    repo, branch, base = ws.repo, ws.branch, ws.base
    commits = int(ws.git("rev-list", "--count", f"{base}..{branch}") or 0)
    started = (ws.run_info() or {}).get("started_from")
    git = f"git -C {shlex.quote(str(repo))}"
    merge = [f"{git} log --stat {base[:12]}..{branch}", f"{git} diff {base[:12]}...{branch}"]
    if ws.git("rev-parse", "--is-bare-repository", cwd=repo, check=False) != "true":
        back = shlex.quote(started) if started else "<your branch>"
        merge += [f"{git} switch {back}", f"{git} merge --no-ff {branch}"]
    return {
        "branch": {
            "name": branch,
            "repository": str(repo),
            "base": base,
            "started_from": started,
            "commits": commits,
            "commands": merge,
            "records": str(ws.meta),
            "checkout": str(ws.root),
        }
    }


def _branch_markdown(report: dict[str, Any]) -> list[str]:
    b = report.get("branch")
    if not b:
        return []
    where = f"from `{b['started_from']}`" if b.get("started_from") else "from a detached HEAD"
    lines = [
        "## Your branch",
        "",
        f"The work is on branch `{b['name']}` of `{b['repository']}`: {b['commits']} commit(s) "
        f"on top of `{b['base'][:12]}` ({where}). Your checkout and its uncommitted changes "
        "were not touched; commit or stash them before you merge. Review, then merge:",
        "",
        "```sh",
        *b["commands"],
        "```",
        "",
        f"The run's records (this report, evidence, checkpoints) are in `{b['records']}`; "
        f"`git -C {shlex.quote(b['repository'])} worktree remove --force "
        f"{shlex.quote(b['checkout'])}` "
        "removes them once you no longer need them (the branch stays).",
        "",
    ]
    return lines


def _decisions_markdown(made: list[dict[str, Any]]) -> list[str]:
    """Return the decisions a person (or --yes) made, then the defaults taken and what they set."""
    chosen = [d for d in made if d.get("decided_by") != "default"]
    taken = [d for d in made if d.get("decided_by") == "default"]
    lines = ["", "## Decisions", "", *map(decision_line, chosen)] if chosen else []
    if taken:
        lines += ["", "## Defaults taken", ""]
        lines += ["Nobody was asked these; the run went on with the proposed default.", ""]
    for d in taken:
        lines.append(decision_line(d))
        lines += [f"  - it decided {sentence}" for sentence in d.get("criteria", [])]
    return lines


def render_markdown(report: dict[str, Any]) -> str:
    """Return the report as Markdown for a person."""
    lines = [f"# {report['project'] or 'oldnew run'}: {report['status']}", ""]
    branch = (report.get("branch") or {}).get("name", "main")
    lines += [
        f"Run `{report['run_id']}`, workspace `{report['workspace']}`, "
        f"{branch} at `{report['head'][:12]}`.",
        "",
    ]
    lines += _branch_markdown(report)
    if report.get("stop_reason"):
        lines += [f"Stopped: {report['stop_reason']}.", ""]
    final = report["final_validation"]
    lines += _gates_markdown(report, final)
    lines += web_markdown(report.get("web") or {})
    lines += _baseline_markdown(report)
    lines += _tasks_markdown(report)
    lines += acceptance_markdown(report.get("acceptance") or {})
    lines += _decisions_markdown(report["decisions"])
    lines += render_feedback(report.get("feedback") or [])
    lines += _dependencies_markdown(report.get("dependencies") or [])
    lines += trace_markdown(report.get("traceability") or {})
    if report.get("budget"):
        lines += ["", *budget_markdown(report["budget"])]
    lines += ["", "## How to resume", "", report["resume"], ""]
    return "\n".join(lines)
