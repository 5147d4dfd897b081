"""The suite stays the tester's: the coder sees it and may not change it; the tester reviews it.

- A coder's or fixer's answer that writes or deletes a file under the suite's folder is
  refused before anything is written (:func:`refuse_suite_edits`, a :class:`SuiteEdit`: the
  model's mistake, asked again).
- The coder and the fixer are shown, for their task's requirements, the criteria and the
  suite's files as they are on main, read-only (:func:`task_suite`).
- A fixer (or coder) that says a test contradicts its requirement
  (``AskHuman(kind="test_contradiction")``) has the tester review the claim
  (:func:`review_contest`) before a person decides: keep the test, or take the tester's
  revision, committed to main as the tester's (``nodes.escalate``).
- Tests that do not run (the gate's ``error``: the tester's, not the coder's) go back to the
  tester to repair (:func:`repair_suite`).

The tester sees the requirement, its criteria, the test file, the interface the plan fixes and
what failed; never the implementation.
"""

from __future__ import annotations

import asyncio
import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from pydantic import BaseModel, Field, model_validator

from oldnew.acceptance import SUITE_DIR, criterion_of, is_suite_path, suite_file
from oldnew.acceptance.checks import suite_problems, tests_by_criterion
from oldnew.acceptance.store import commit_suite, suite_on_main
from oldnew.budget import metered
from oldnew.context import Context
from oldnew.errors import ModelOutputError
from oldnew.gates.common import parse_python
from oldnew.gates.python import defined_tests
from oldnew.memory.learning import clip
from oldnew.models import ModelOverrides, ainvoke_structured, aresolve_model
from oldnew.prompts import render
from oldnew.schemas import AskHuman, Plan, Scope
from oldnew.workspace import Workspace

MAX_SUITE_CHARS = 16_000
"""The suite's files a task's prompt shows, in all (a file past it is named, to be read)."""
MAX_REVISION_CHARS = 16_000
"""A revised test file the question keeps (in the task's state) is at most this long."""
MAX_OUTPUT_CHARS = 4_000
"""What failed, as the tester is shown it."""
MAX_DIFF_CHARS = 3_000
"""The revision's diff, as a person is shown it in the question."""
SUITE_RULE = (
    f"{SUITE_DIR}/ is the acceptance suite the tester wrote from the requirements; the coder "
    "may not change it. Make the code pass it. If a test contradicts the requirement, say so "
    "with AskHuman(kind='test_contradiction') naming the test and why."
)
"""What a coder is told when its answer touched the suite (and what its prompt says)."""


class SuiteEdit(ModelOutputError):
    """A coder's answer writes or deletes files of the acceptance suite; nothing was written."""


def refuse_suite_edits(files: Mapping[str, str | None]) -> None:
    """Refuse an answer that writes or deletes any path under the suite's folder.

    Raises:
        SuiteEdit: naming the paths, with :data:`SUITE_RULE`.

    """
    touched = sorted(p for p in files if is_suite_path(p.strip()))
    if touched:
        raise SuiteEdit(f"your answer changes {', '.join(touched)}. {SUITE_RULE}")


# -- what the coder and fixer see ---------------------------------------------------------------


def task_requirements(scope: Mapping[str, Any], requirement_ids: Sequence[str]) -> dict[str, Any]:
    """Return what a task's state keeps of its requirements: id -> title, criteria.

    ``criteria`` maps each criterion's id to its sentence (``Criterion.sentence()``); a
    requirement with no criteria is left out (no suite file tests it).
    """
    features = Scope.model_validate(scope).features if scope else []
    out: dict[str, Any] = {}
    for feature in features:
        if feature.id in requirement_ids and feature.criteria:
            out[feature.id] = {
                "title": feature.title,
                "description": clip(feature.description, 600),
                "criteria": {c.id: c.sentence() for c in feature.criteria},
            }
    return out


@dataclass
class SuiteView:
    """The acceptance suite as a task's prompt shows it: per requirement, criteria and file."""

    requirements: list[dict[str, Any]] = field(default_factory=list)
    """Each: id, title, criteria (sentences), file (path), text (None: too long to show)."""
    rule: str = SUITE_RULE

    @property
    def files(self) -> dict[str, str]:
        """Return the test files shown: path -> text."""
        return {r["file"]: r["text"] for r in self.requirements if r["text"] is not None}


def task_suite(
    ws: Workspace, requirements: Mapping[str, Any], budget: int = MAX_SUITE_CHARS
) -> SuiteView | None:
    """Return the suite of a task's ``requirements`` (its state's) as on main, or None.

    A file past what is left of ``budget`` is named, not shown (the task's checkout holds it,
    to read). Blocking (git): call it in a thread.
    """
    if not requirements:
        return None
    on_main = suite_on_main(ws)
    view, room = SuiteView(), budget
    for rid, req in requirements.items():
        path = suite_file(rid)
        text = on_main.get(path)
        if text is None:
            continue
        shown = text if len(text) <= room else None
        room -= len(text) if shown is not None else 0
        view.requirements.append(
            {
                "id": rid,
                "title": req.get("title", ""),
                "criteria": list((req.get("criteria") or {}).values()),
                "file": path,
                "text": shown,
            }
        )
    return view if view.requirements else None


# -- the tester's model calls -------------------------------------------------------------------


def static_problems(path: str, text: str, criterion_ids: Sequence[str]) -> list[str]:
    """Return what is wrong with a suite file before it runs: syntax, tests, their names.

    For a revision of one file from a task's state (no ``Feature`` at hand); the repair of a
    file is checked by the tester's own ``suite_problems``, as its writing is.
    """
    try:
        parse_python(text)
    except SyntaxError as exc:
        return [f"{path} does not parse: line {exc.lineno}: {exc.msg}"]
    except (ValueError, RecursionError) as exc:
        return [f"{path} does not parse: {exc}"]
    names = list(defined_tests(text))
    if not names:
        return [f"{path} defines no test function (def test_...)"]
    return [
        f"{path}: {n} is named for no criterion: start it with test_<criterion id>_ "
        f"({', '.join(criterion_ids)})"
        for n in names
        if criterion_of(n, list(criterion_ids)) is None
    ]


async def _tester(
    ctx: Context, models: ModelOverrides, ws: Workspace, activity: str, task: str | None = None
) -> Any:
    model = await aresolve_model("tester", ctx, models)
    return metered(model, ctx, ws.root, role="tester", activity=activity, task=task)


async def _ask_checked(
    model: Any,
    schema: type[Any],
    messages: list[BaseMessage],
    ctx: Context,
    check: Any,
) -> Any:
    """Ask for ``schema`` until ``check(answer)`` finds no problem; raise ModelOutputError."""
    history = list(messages)
    problems: list[str] = []
    for _ in range(ctx.max_output_retries + 1):
        answer = await ainvoke_structured(
            model,
            schema,
            history,
            method=ctx.structured_output_method,
            retries=ctx.max_output_retries,
            policy=ctx.retry_policy(),
        )
        problems = check(answer)
        if not problems:
            return answer
        history += [
            AIMessage(answer.model_dump_json()[:4000]),
            HumanMessage(render("output_retry", problem="; ".join(problems)[:2000])),
        ]
    raise ModelOutputError(f"the tester's {schema.__name__} stayed unusable: {'; '.join(problems)}")


def _system(project: str, stack: str) -> SystemMessage:
    return SystemMessage(render("tester_system", project=project, stack=stack, suite_dir=SUITE_DIR))


class ContestReview(BaseModel):
    """The tester's verdict on a claim that an acceptance test contradicts its requirement."""

    verdict: Literal["test_right", "test_wrong"] = Field(
        description="'test_right' when the test checks what the requirement and its criteria "
        "say (the code must meet it); 'test_wrong' when the test contradicts them."
    )
    reason: str = Field(min_length=1, description="Why, citing the requirement or criterion.")
    revised: str = Field(
        default="",
        description="For 'test_wrong' only: the whole corrected test file, every test of it "
        "(not only the one contested), named as before.",
    )

    @model_validator(mode="after")
    def _revision(self) -> ContestReview:
        if self.verdict == "test_wrong" and not self.revised.strip():
            raise ValueError("a 'test_wrong' verdict needs the whole corrected file in 'revised'")
        return self


def _contested(claim: str, view: SuiteView) -> dict[str, Any]:
    """Return the requirement of the suite whose test the claim names (else the first)."""
    for req in view.requirements:
        names = [n.split("::")[-1] for n in defined_tests(req["text"] or "")]
        if any(n in claim for n in names) or req["file"] in claim:
            return req
    return view.requirements[0]


async def review_contest(
    ws: Workspace,
    ctx: Context,
    models: ModelOverrides,
    *,
    task: Mapping[str, Any],
    project: str,
    stack: str,
    requirements: Mapping[str, Any],
    ask: AskHuman,
    diagnostics: Sequence[str],
) -> dict[str, Any] | None:
    """Have the tester review a claim that a test contradicts its requirement; return it.

    The tester sees the requirement, its criteria, the test file (main's), the claim and what
    failed, never the implementation. Returns the review as the question keeps it: claim,
    requirement, file, verdict, reason, revision (capped) and its diff; None when the task's
    requirements have no suite file on main (nothing to review).

    Raises:
        ModelOutputError: the tester's answer stayed unusable.

    """
    view = await asyncio.to_thread(task_suite, ws, requirements, MAX_REVISION_CHARS * 4)
    if view is None:
        return None
    req = _contested(ask.question, view)
    text = req["text"] or (await asyncio.to_thread(suite_on_main, ws)).get(req["file"], "")
    ids = list((requirements.get(req["id"]) or {}).get("criteria") or {})
    user = render(
        "tester_review",
        requirement={**requirements[req["id"]], "id": req["id"]},
        criteria=req["criteria"],
        file=req["file"],
        text=text,
        claim=ask.question,
        failed=clip("\n".join(diagnostics), MAX_OUTPUT_CHARS),
        task=task,
    )

    def check(answer: ContestReview) -> list[str]:
        if answer.verdict == "test_right":
            return []
        if len(answer.revised) > MAX_REVISION_CHARS:
            return [f"the revised file is over {MAX_REVISION_CHARS} characters: keep it short"]
        return static_problems(req["file"], answer.revised, ids)

    model = await _tester(ctx, models, ws, "review", str(task.get("id") or "") or None)
    review: ContestReview = await _ask_checked(
        model, ContestReview, [_system(project, stack), HumanMessage(user)], ctx, check
    )
    revised = review.revised if review.verdict == "test_wrong" else ""
    return {
        "claim": ask.question,
        "requirement": req["id"],
        "file": req["file"],
        "verdict": review.verdict,
        "reason": review.reason,
        "revision": revised,
        "diff": clip(_diff(req["file"], text, revised), MAX_DIFF_CHARS) if revised else "",
    }


def _diff(path: str, before: str, after: str) -> str:
    lines = difflib.unified_diff(
        before.splitlines(keepends=True),
        after.splitlines(keepends=True),
        f"a/{path}",
        f"b/{path}",
    )
    return "".join(lines)


def commit_revision(ws: Workspace, task_id: str, n: str, review: Mapping[str, Any]) -> str:
    """Commit the tester's revision a person approved to main, as the tester's; return it.

    Blocking: call it in a thread. A revision already on main (a resumed run) is not made
    twice (its key names the task and the question).
    """
    title = (
        "Acceptance test revised by the tester, approved by a person: "
        f"{review['file']} ({clip(str(review.get('reason', '')), 120)})"
    )
    return commit_suite(
        ws, {review["file"]: review["revision"]}, key=f"acceptance-rev-{task_id}-{n}", title=title
    )


# -- tests that do not run ----------------------------------------------------------------------


class SuiteRepair(BaseModel):
    """The tester's repair of one acceptance test file whose tests did not run."""

    reason: str = Field(min_length=1, description="What made the tests fail to run.")
    text: str = Field(
        min_length=1,
        description="The whole repaired test file, every test of it, named as before; the "
        "tests still check the criteria, with the same expected values.",
    )


def _errors_by_file(errors: Mapping[str, str]) -> dict[str, list[str]]:
    """Group the gate's errors (``file::test`` or a file -> output) by suite file."""
    out: dict[str, list[str]] = {}
    for where, output in errors.items():
        path = where.split("::", 1)[0]
        if is_suite_path(path):
            out.setdefault(path, []).append(f"{where}: {output}")
    return out


async def _repair_one(
    model: Any,
    ctx: Context,
    scope: Scope,
    plan: Plan,
    rid: str,
    path: str,
    text: str,
    errors: list[str],
    known: list[str],
) -> tuple[str, SuiteRepair]:
    feature = next(f for _, f in scope.requirements() if f.id == rid)
    user = render(
        "tester_repair",
        requirement=feature,
        criteria=[c.sentence() for c in feature.criteria],
        interface=plan.interface,
        file=path,
        text=text,
        errors=clip("\n".join(errors), MAX_OUTPUT_CHARS),
    )
    repair: SuiteRepair = await _ask_checked(
        model,
        SuiteRepair,
        [_system(scope.title, scope.stack), HumanMessage(user)],
        ctx,
        lambda answer: suite_problems({path: answer.text}, feature, known),
    )
    return path, repair


async def repair_suite(
    ws: Workspace,
    ctx: Context,
    scope: Scope,
    plan: Plan,
    record: Mapping[str, Any],
    errors: Mapping[str, str],
    models: ModelOverrides = None,
) -> dict[str, Any]:
    """Have the tester repair the suite's files whose tests did not run; commit the repair.

    ``errors`` are the gate's tests with result ``error`` (``file::test``, or a file that did
    not collect) -> their output; ``record`` is ``RunState.acceptance``. One tester call per
    affected requirement's file, in parallel, each checked statically and asked again while
    it has problems; one commit on main (key ``acceptance-repair-<n>``). Returns the run's
    state update: ``{"acceptance": {"commit", "repairs", "requirements", "results", "notes"}}``
    (the repaired files' tests renamed in the record, their results ``not_run``).

    Raises:
        ModelOutputError: the tester's repair stayed unusable.

    """
    n = int(record.get("repairs") or 0) + 1
    notes = list(record.get("notes") or [])
    owners = {req.get("file"): rid for rid, req in (record.get("requirements") or {}).items()}
    grouped = {p: e for p, e in _errors_by_file(errors).items() if p in owners}
    if not grouped:
        return {}
    on_main = await asyncio.to_thread(suite_on_main, ws)
    # What a test may open: the project's files on main and what the plan's tasks make.
    known = [*await asyncio.to_thread(ws.tracked_files), *(f for t in plan.tasks for f in t.files)]
    model = await _tester(ctx, models, ws, "repair")
    repairs = await asyncio.gather(
        *(
            _repair_one(model, ctx, scope, plan, owners[p], p, on_main.get(p, ""), e, known)
            for p, e in sorted(grouped.items())
        )
    )
    files: dict[str, str | None] = {path: r.text for path, r in repairs}
    title = f"Acceptance tests repaired by the tester: {', '.join(sorted(files))}"
    commit = await asyncio.to_thread(
        commit_suite, ws, files, key=f"acceptance-repair-{n}", title=title
    )
    # Whole, so the milestone's merge of them into its own update keeps its fresh results.
    requirements: dict[str, Any] = dict(record.get("requirements") or {})
    results: dict[str, str | None] = dict(record.get("results") or {})
    for path, repair in repairs:
        rid = owners[path]
        feature = next(f for _, f in scope.requirements() if f.id == rid)
        tests = tests_by_criterion({path: repair.text}, feature)
        requirements[rid] = {**record["requirements"][rid], "tests": tests}
        results |= {k: None for k in (record.get("results") or {}) if k.startswith(f"{path}::")}
        results |= {f"{path}::{name}": "not_run" for name in tests}
        notes.append(f"repair {n}: the tester repaired {path}: {clip(repair.reason, 300)}")
    return {
        "acceptance": {
            "commit": commit,
            "repairs": n,
            "requirements": requirements,
            "results": results,
            "notes": notes,
        }
    }
