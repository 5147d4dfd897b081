"""A web app's results for the report, read from a validation's evidence.

Preview, Lighthouse scores, browser tests, accessibility, load, screenshots and each web
gate's time.

The web gates (``gates.web``) leave their numbers in each check's ``metrics``; this module only
gathers them, for report.json (``web``), report.md and the demo.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from oldnew.web.preview import Preview
from oldnew.workspace import Workspace

WEB_GATES = ("web-build", "web-start", "e2e", "axe", "lighthouse", "load", "screenshots")


def _checks(validation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in validation.get("checks") or [] if c["name"] in WEB_GATES}


def web_section(
    validation: dict[str, Any],
    milestones: dict[str, Any],
    root: Path,
    serving: Preview | None = None,
) -> dict[str, Any]:
    """Return the report's ``web`` section ({} for a project that is not a web app).

    Files (screenshots, Lighthouse reports) are named by their path from ``root``, the
    workspace. ``serving`` is the preview serving now (a URL recorded earlier is not shown as
    serving).
    """
    checks = _checks(validation)
    if not checks and not milestones:
        return {}

    def metrics(name: str) -> dict[str, Any]:
        return dict((checks.get(name) or {}).get("metrics") or {})

    load = metrics("load")
    return {
        "preview": serving.url if serving else None,
        "preview_commit": serving.commit if serving else None,
        "gates": {
            name: {
                "status": c["status"],
                "summary": c["summary"],
                "duration_s": round(float(c.get("duration_s") or 0), 1),
            }
            for name, c in checks.items()
        },
        "lighthouse": metrics("lighthouse").get("scores", {}),
        "lighthouse_reports": _relative(metrics("lighthouse").get("reports"), root),
        "e2e": {k: v for k, v in metrics("e2e").items() if k != "duration_s"},
        "axe": {k: v for k, v in metrics("axe").items() if k != "duration_s"},
        "load": list(load.get("endpoints") or []),
        "load_skipped": list(load.get("skipped") or []),
        "screenshots": _relative(metrics("screenshots").get("files"), root),
        "milestones": {
            name: {
                k: m.get(k)
                for k in ("status", "tag", "commit", "preview", "fix_rounds", "evidence", "reason")
                if m.get(k) is not None
            }
            for name, m in milestones.items()
        },
    }


def _relative(files: Any, root: Path) -> dict[str, str]:
    """Return page -> file, each path from ``root`` when it lies under it."""
    out: dict[str, str] = {}
    for page, name in files.items() if isinstance(files, dict) else ():
        path = Path(str(name))
        out[str(page)] = str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
    return out


def evidence_files(web: dict[str, Any]) -> list[str]:
    """Return the files the web section shows: screenshots and Lighthouse reports."""
    reports = web.get("lighthouse_reports") or {}
    return [*reports.values(), *(web.get("screenshots") or {}).values()]


def web_markdown(web: dict[str, Any]) -> list[str]:
    """Return report.md's "Web app" section: preview, milestones, scores, results, screenshots.

    Links are relative to report.md, in the workspace's ``.oldnew`` folder.
    """
    if not web:
        return []
    lines = ["", "## Web app", ""]
    if web.get("preview"):
        commit = str(web.get("preview_commit") or "")[:12]
        lines.append(
            f"Preview: {web['preview']}, serving commit `{commit}` (stop it, or serve the "
            "delivered project again: `oldnew preview --workspace . [--stop]`)"
        )
    else:
        lines.append("Preview: not serving (serve it with `oldnew preview --workspace .`)")
    lines.append("")
    for name, m in (web.get("milestones") or {}).items():
        tag = f", tagged `{m['tag']}`" if m.get("tag") else ""
        why = f": {m['reason']}" if m.get("reason") else ""
        fixes = f", {m['fix_rounds']} fix task(s)" if m.get("fix_rounds") else ""
        lines.append(f"- milestone {name}: {m.get('status')}{tag}{fixes}{why}")
    for page, scores in (web.get("lighthouse") or {}).items():
        shown = ", ".join(f"{k} {v}" for k, v in scores.items())
        lines.append(f"- Lighthouse `{page}`: {shown}")
    e2e = web.get("e2e") or {}
    if e2e:
        lines.append(
            f"- browser tests: {e2e.get('passed', 0)} passed, {e2e.get('failed', 0)} failed"
            + (f", {e2e['flaky']} flaky" if e2e.get("flaky") else "")
        )
    axe = web.get("axe") or {}
    if "axe" in (web.get("gates") or {}):
        lines.append(
            f"- accessibility (axe): {axe.get('blocking', 0)} serious or critical, "
            f"{axe.get('other', 0)} other"
        )
    for load in web.get("load") or []:
        lines.append(
            f"- load `{load.get('endpoint')}`: p95 {load.get('p95_ms')} ms, error rate "
            f"{load.get('error_rate')}, {load.get('rps')} requests/s, "
            f"{load.get('requests')} requests"
        )
    lines += [f"- load: {why}" for why in web.get("load_skipped") or []]
    gates = web.get("gates") or {}
    if gates:
        lines += ["", "| web gate | status | seconds |", "| --- | --- | --- |"]
        for name, g in gates.items():
            secs = g.get("duration_s")
            lines.append(f"| {name} | {g['status']} | {secs if secs is not None else '-'} |")
    shots = web.get("screenshots") or {}
    if shots:
        lines += ["", "### Screenshots", ""]
        for page, path in shots.items():
            # report.md is in the workspace's .oldnew folder; the paths are from the workspace.
            link = path if Path(path).is_absolute() else f"../{path}"
            lines += [f"`{page}`", "", f"![{page}]({link})", ""]
    return lines


def web_evidence(ws: Workspace, label: str) -> Path:
    """Return where the web gates of the validation recorded as ``label`` keep their files."""
    return ws.meta / "evidence" / "web" / label
