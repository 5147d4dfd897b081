"""Milestones: the points of a run where main is checked as a whole, tagged, and previewed.

A web app's plan has one milestone per phase (``mvp``, ``enhanced``, ``polish``), each due
when every task of that phase and of the phases before it has ended; an unphased plan has one,
``mvp``: the whole plan. A task without a phase in a phased plan (one feedback added, say)
counts in the last phase. Another project has one, ``mvp`` (the whole plan, whatever its
phases), when its run has an acceptance suite (``oldnew.acceptance``); else none: its delivery
is its check, and its later phases run beside the MVP.

At a milestone the ``milestone`` node runs the gates on main, for a web app with the milestone
set (the app started, browser tests, accessibility, Lighthouse, load), and with an acceptance
suite the acceptance gate, for the requirements whose serving tasks are all in the milestone
(at the last one, every requirement: :func:`acceptance_requirements`). Passing, main is tagged
with the milestone's name and a web app's preview starts. Failing, the findings become a fix
task of that phase, validated with the same gate set (:func:`fix_task`); failing acceptance
tests (and nothing else) become one routed to the role and files of the tasks that serve the
failing requirements (:func:`acceptance_fix_task`); after ``milestone_fixes`` of those the
milestone is reported failed and the run goes on. A test that cannot run is the tester's,
never a coder's fix task (``nodes.milestone``).

While the MVP milestone is not settled, the later phases' tasks wait: their work builds on an
MVP that is known to run. A milestone one of whose tasks ended without being done (blocked,
a known limitation) is settled as failed at once, and says which: nothing waits for it.

Every function here reads state; none writes anything.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from oldnew.acceptance import SUITE_DIR, criterion_of, is_suite_path
from oldnew.schemas import PHASES, WEB_STACKS, Plan, PlannedTask, Scope

MilestoneStatus = Literal["fixing", "reached", "failed", "not_checked"]
SETTLED: frozenset[str] = frozenset({"reached", "failed", "not_checked"})
"""Statuses after which a milestone is not checked again (unless its tasks change)."""
RECORD_FIELDS = ("tag", "preview", "preview_error", "fix_task", "reason", "suite_errors")
"""Fields of a milestone's record that one check sets and the next may not: each check
writes them all ("" when unset), so nothing of an earlier check is shown as current."""
MAX_FINDINGS = 25


def is_web(state: Mapping[str, Any]) -> bool:
    """Say whether the run builds a web app (the scope's stack is a web one)."""
    return (state.get("scope") or {}).get("stack") in WEB_STACKS


def is_phased(plan: Plan) -> bool:
    """Say whether ``plan`` is made in phases."""
    return bool(plan.phases) or any(t.phase for t in plan.tasks)


def has_suite(state: Mapping[str, Any]) -> bool:
    """Say whether the run has an acceptance suite on main (the tester wrote it)."""
    return (state.get("acceptance") or {}).get("status") == "written"


def milestones_of(plan: Plan, state: Mapping[str, Any]) -> list[tuple[str, list[str]]]:
    """Return each milestone of ``plan`` with the ids of the tasks it needs ended, in order."""
    if not plan.tasks or not (is_web(state) or has_suite(state)):
        return []
    if not is_web(state) or not is_phased(plan):
        return [("mvp", [t.id for t in plan.tasks])]
    used = [p for p in PHASES if any(t.phase == p for t in plan.tasks)]
    last = used[-1]
    out: list[tuple[str, list[str]]] = []
    needed: list[str] = []
    for phase in used:
        needed = needed + [t.id for t in plan.tasks if (t.phase or last) == phase]
        out.append((phase, list(needed)))
    return out


def _record(state: Mapping[str, Any], name: str) -> dict[str, Any]:
    return dict((state.get("milestones") or {}).get(name) or {})


def ended(state: Mapping[str, Any], ids: list[str]) -> tuple[list[str], list[str]] | None:
    """Return (done, not done) of ``ids`` once every one of them has ended, else None."""
    tasks = state.get("tasks") or {}
    statuses = {t: (tasks.get(t) or {}).get("status") for t in ids}
    if not all(s in ("done", "blocked") for s in statuses.values()):
        return None
    return sorted(t for t, s in statuses.items() if s == "done"), sorted(
        t for t, s in statuses.items() if s != "done"
    )


def due(state: Mapping[str, Any]) -> str | None:
    """Return the milestone to check now, or None.

    That is the first milestone whose tasks have all ended and which is not settled for them:
    never checked, its fix task just finished, or tasks added to it or finished since.
    """
    if not state.get("plan"):
        return None
    plan = Plan.model_validate(state["plan"])
    for name, ids in milestones_of(plan, state):
        outcome = ended(state, ids)
        if outcome is None:
            return None  # a later milestone needs this one's tasks too
        record = _record(state, name)
        seen = (sorted(record.get("tasks") or []), sorted(record.get("done") or []))
        if record.get("status") not in SETTLED or seen != (sorted(ids), outcome[0]):
            return name
    return None


def suite_requirements(state: Mapping[str, Any]) -> list[str]:
    """Return the requirements the run's acceptance suite has a test file for."""
    record = (state.get("acceptance") or {}).get("requirements") or {}
    return sorted(r for r, info in record.items() if isinstance(info, dict) and info.get("file"))


def acceptance_requirements(plan: Plan, state: Mapping[str, Any], name: str) -> list[str]:
    """Return the requirements whose acceptance tests run at milestone ``name``.

    Those whose serving tasks are all in the milestone; at the last milestone, all of them
    (a requirement no task serves too: its tests say it is not delivered).
    """
    if not has_suite(state):
        return []
    stages = milestones_of(plan, state)
    ids = set(dict(stages).get(name, []))
    wanted = suite_requirements(state)
    if stages and stages[-1][0] == name:
        return wanted
    serving = {r: [t.id for t in plan.tasks if r in t.requirement_ids] for r in wanted}
    return [r for r in wanted if serving[r] and set(serving[r]) <= ids]


def holds_later_phases(state: Mapping[str, Any], plan: Plan) -> bool:
    """Say whether the later phases' tasks wait: a web app's MVP milestone is not settled."""
    names = [name for name, _ in milestones_of(plan, state)]
    if "mvp" not in names or len(names) < 2:
        return False
    return _record(state, "mvp").get("status") not in SETTLED


def fix_role(tasks: Iterable[PlannedTask], files: Iterable[str], default: str) -> str:
    """Return the role a task that fixes ``files`` keeps: that of the tasks that wrote them.

    The role of most of the files among ``tasks`` (a fix of a README is the docs writer's);
    with no file in common, the role most of ``tasks`` have; with no task, ``default``.
    """
    wanted, tasks = set(files), list(tasks)
    counts = Counter(t.role for t in tasks for f in t.files if f in wanted)
    if not counts:
        counts = Counter(t.role for t in tasks)
    return counts.most_common(1)[0][0] if counts else default


def _shown(findings: list[str]) -> str:
    """Return findings as a list for a task's description, capped."""
    shown = "\n".join(f"- {f}" for f in findings[:MAX_FINDINGS])
    more = len(findings) - MAX_FINDINGS
    if more > 0:
        shown += f"\n- ... and {more} more (see the milestone's evidence)"
    return shown


def fix_task(
    plan: Plan,
    name: str,
    ids: list[str],
    round_no: int,
    findings: list[str],
    files: list[str],
    requirement_ids: list[str] | None = None,
) -> PlannedTask:
    """Return the task that fixes what milestone ``name``'s gates found on main.

    It serves the requirements of the milestone's tasks (so it is as critical as they are;
    ``requirement_ids`` narrows them: those whose acceptance tests ran at the milestone, so
    its validation runs no test of a requirement a later phase serves too), and has the
    milestone's phase only in a phased plan.
    """
    shown = _shown(findings)
    label = "MVP" if name == "mvp" else name
    return PlannedTask(
        id=f"{name}-fix{round_no}",
        title=f"Fix what the {label} milestone's gates found",
        description=(
            f"The {label} milestone's gates failed on main. Change the project so that every "
            f"finding below is gone; the task is validated with the same gates (for a web "
            f"app: the app started, its browser tests, accessibility, Lighthouse and load).\n"
            f"Findings:\n{shown}"
        ),
        role=fix_role([t for t in plan.tasks if t.id in ids], files, "frontend"),
        files=files,
        requirement_ids=requirement_ids
        or sorted({r for t in plan.tasks if t.id in ids for r in t.requirement_ids}),
        phase=name if is_phased(plan) else None,  # type: ignore[arg-type]
        milestone=name,  # type: ignore[arg-type]
    )


def criterion_sentences(scope: Scope) -> dict[str, str]:
    """Return each criterion of the scope's requirements by id: its given / when / then."""
    return {c.id: c.sentence() for _, f in scope.requirements() for c in f.criteria}


def acceptance_findings(
    failing: Mapping[str, str], tests: Mapping[str, str], sentences: Mapping[str, str]
) -> list[str]:
    """Return what an acceptance fix task is told of each failing test.

    ``failing`` is ``file::test`` -> why it failed, ``tests`` test name -> criterion (the
    run's record), ``sentences`` criterion -> its sentence (:func:`criterion_sentences`).
    """
    out = []
    for key, why in sorted(failing.items()):
        test = key.partition("::")[2] or key
        base = test.split("[", 1)[0].split("::")[-1]
        cid = tests.get(base) or criterion_of(base, list(sentences)) or ""
        said = sentences.get(cid) or cid or "no criterion named"
        out.append(f"{key} checks {said}; it fails: {why}")
    return out


def acceptance_fix_task(
    plan: Plan, name: str, round_no: int, requirement_ids: list[str], findings: list[str]
) -> PlannedTask:
    """Return the task that makes milestone ``name``'s failing acceptance tests pass.

    It serves the failing requirements, keeps the role of the tasks that serve them
    (:func:`fix_role`) and changes those tasks' files, never the suite's: the tests are the
    tester's, and a test that contradicts its requirement is a question, not an edit.
    """
    serving = [t for t in plan.tasks if set(t.requirement_ids) & set(requirement_ids)]
    files = list(dict.fromkeys(f for t in serving for f in t.files if not is_suite_path(f)))
    label = "MVP" if name == "mvp" else name
    return PlannedTask(
        id=f"{name}-fix{round_no}",
        title=f"Make the {label} milestone's failing acceptance tests pass",
        description=(
            f"Acceptance tests of {', '.join(requirement_ids)} fail on main at the {label} "
            "milestone. Change the project's code so that each passes; the task is validated "
            "with the same acceptance tests, as main holds them. They are the tester's, "
            f"written from the requirements, and live in {SUITE_DIR}/: do not change them. If "
            "one contradicts its requirement, say so (AskHuman with kind "
            "'test_contradiction', naming the test and why): its tester reviews it, then a "
            f"person decides.\nFailing tests:\n{_shown(findings)}"
        ),
        role=fix_role(serving, files, "backend"),
        files=files,
        requirement_ids=sorted(requirement_ids),
        phase=name if is_phased(plan) else None,  # type: ignore[arg-type]
        milestone=name,  # type: ignore[arg-type]
    )


def preview_url(state: Mapping[str, Any]) -> str | None:
    """Return the URL of the newest preview a milestone started, if any."""
    urls = [
        r.get("preview")
        for r in (state.get("milestones") or {}).values()
        if isinstance(r, dict) and r.get("preview")
    ]
    return str(urls[-1]) if urls else None
