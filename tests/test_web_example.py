"""The bundled web example (examples/webapp): its transcript's scope, plan and code hold up.

The scope and plan replies validate against the schemas and pass the planner's own checks;
every coder reply writes only its task's planned files; the code the transcript writes is
put together task by task in a temporary folder and the app's own pytest suite passes there,
both at the MVP (with the deliberate accessibility fault still in) and at the end; and the
fix task the MVP milestone makes is answered by the reply that repairs that fault.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT
from langchain_core.messages import BaseMessage, HumanMessage

from oldnew.context import Context
from oldnew.fileblocks import parse_file_blocks
from oldnew.gates.profiles import PROFILES
from oldnew.gates.rules import rules_for
from oldnew.models import ScriptedChatModel, ScriptedReply, load_transcript
from oldnew.planning.checks import plan_problems
from oldnew.planning.complexity import assess
from oldnew.planning.roles import ROLES
from oldnew.prompts import render
from oldnew.runs import start_run
from oldnew.schemas import WEB_STACKS, Plan, Scope, Stack
from oldnew.testing import CallInfo, FunctionModel, call_tool, prompt_text

EXAMPLE = ROOT / "examples" / "webapp"
TRANSCRIPT = EXAMPLE / "transcript.toml"
FIX_WHEN = ("MVP milestone", "image-alt")
"""What the MVP milestone's fix task prompt holds: its title and axe's rule id."""
LOGO_WITHOUT_ALT = re.compile(r"<img(?![^>]*\balt=)[^>]*>")


@pytest.fixture(scope="module")
def replies() -> list[ScriptedReply]:
    return load_transcript(TRANSCRIPT)


def structured(replies: list[ScriptedReply], phrase: str) -> dict[str, object]:
    found = [r for r in replies if r.role == "planner" and phrase in r.when]
    assert len(found) == 1, phrase
    assert found[0].structured is not None
    return found[0].structured


def coder_reply(replies: list[ScriptedReply], *when: str) -> ScriptedReply:
    found = [r for r in replies if r.role == "coder" and r.when == when]
    assert len(found) == 1, when
    return found[0]


@pytest.fixture(scope="module")
def scope(replies: list[ScriptedReply]) -> Scope:
    return Scope.model_validate(structured(replies, "Read the user's scope and return a Scope"))


@pytest.fixture(scope="module")
def plan(replies: list[ScriptedReply]) -> Plan:
    return Plan.model_validate(structured(replies, "Turn the scope into a Plan"))


def test_the_scope_reply_is_a_web_scope_with_routes(scope: Scope) -> None:
    assert scope.stack == "python-web"
    assert scope.stack in WEB_STACKS
    assert [p.route for p in scope.pages] == ["/", "/about"]
    assert [a.route for a in scope.api_endpoints] == ["GET /api/notes", "POST /api/notes"]
    assert all(m.route == "" for m in scope.data_models)


def test_the_scope_reply_is_picked_by_the_example_scope(replies: list[ScriptedReply]) -> None:
    text = (EXAMPLE / "scope.md").read_text(encoding="utf-8")
    scope_reply = next(r for r in replies if "Read the user's scope and return a Scope" in r.when)
    assert all(
        w in text for w in scope_reply.when if w != "Read the user's scope and return a Scope"
    )


def test_the_plan_reply_passes_the_planners_checks(scope: Scope, plan: Plan) -> None:
    assert plan_problems(plan, scope, complexity=assess(scope, Context())) == []


def test_the_plan_is_phased_so_work_remains_after_the_mvp(plan: Plan) -> None:
    assert [p.name for p in plan.phases] == ["mvp", "enhanced"]
    phases = {t.id: t.phase for t in plan.tasks}
    assert phases == {"T1": "mvp", "T2": "mvp", "T3": "mvp", "T4": "enhanced"}
    later = next(t for t in plan.tasks if t.phase == "enhanced")
    assert later.depends_on == ["T3"]
    assert all(t.milestone is None for t in plan.tasks)  # set by oldnew, never planned


def test_every_coder_reply_writes_only_its_tasks_files(
    replies: list[ScriptedReply], plan: Plan
) -> None:
    for task in plan.tasks:
        written = parse_file_blocks(coder_reply(replies, f"TASK {task.id}:").text)
        assert set(written) <= set(task.files), task.id
    mvp = {f for t in plan.tasks if t.phase == "mvp" for f in t.files}
    fixed = parse_file_blocks(coder_reply(replies, *FIX_WHEN).text)
    assert set(fixed) <= mvp


def test_the_fix_task_gets_the_repair_and_other_tasks_do_not(
    replies: list[ScriptedReply],
) -> None:
    model = ScriptedChatModel(replies=replies, role="coder", source=str(TRANSCRIPT))
    fix_prompt = (
        "TASK mvp-fix1: Fix what the MVP milestone's gates found\n"
        "- axe image-alt (critical) at header > a > img: Element does not have an alt attribute"
    )
    answer = str(model.invoke([HumanMessage(fix_prompt)]).content)
    assert set(parse_file_blocks(answer)) == {"app/templates/layout.html"}
    later = str(model.invoke([HumanMessage("TASK T4: Characters left while typing")]).content)
    assert "app/static/notes.js" in parse_file_blocks(later)


def write_tree(root: Path, replies: list[ScriptedReply], steps: list[tuple[str, ...]]) -> None:
    for when in steps:
        for path, text in parse_file_blocks(coder_reply(replies, *when).text).items():
            assert text is not None, f"{path} is deleted"
            target = root / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")


def run_suite(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )


MVP = [("TASK T1:",), ("TASK T2:",), ("TASK T3:",)]


def test_the_mvp_passes_its_own_tests_with_the_fault_the_milestone_will_find(
    tmp_path: Path, replies: list[ScriptedReply]
) -> None:
    write_tree(tmp_path, replies, MVP)
    layout = (tmp_path / "app/templates/layout.html").read_text(encoding="utf-8")
    assert LOGO_WITHOUT_ALT.search(layout), "the deliberate image-alt fault is gone"
    done = run_suite(tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert " passed" in done.stdout


def test_the_delivered_app_passes_its_own_tests_and_has_no_image_without_alt(
    tmp_path: Path, replies: list[ScriptedReply]
) -> None:
    write_tree(tmp_path, replies, [*MVP, FIX_WHEN, ("TASK T4:",)])
    for page in (tmp_path / "app/templates").glob("*.html"):
        assert not LOGO_WITHOUT_ALT.search(page.read_text(encoding="utf-8")), page.name
    start = (tmp_path / "pyproject.toml").read_text(encoding="utf-8")
    assert 'start = "python -m app"' in start
    assert sorted(p.name for p in (tmp_path / "e2e").iterdir()) == [
        "counter.spec.mjs",
        "notes.spec.mjs",
    ]
    done = run_suite(tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert " passed" in done.stdout


# -- the prompts of the web stacks ------------------------------------------------------------


def coder_prompt(stack: str, deps: str = "off", role: str = "frontend") -> str:
    rules = rules_for(PROFILES["default"], Path("no-such-project"), stack=stack, timeout=60)
    return render("coder_system", role=role, project="notes", deps=deps, stack=stack, rules=rules)


def test_a_library_coder_prompt_says_nothing_of_the_web() -> None:
    prompt = coder_prompt("python")
    for word in ("PORT", "Playwright", "[tool.oldnew]", "Lighthouse", "e2e/"):
        assert word not in prompt
    assert "Write pytest tests for your code under tests/." in prompt


@pytest.mark.parametrize("stack", WEB_STACKS)
def test_a_web_coder_prompt_states_the_conventions(stack: str) -> None:
    prompt = coder_prompt(stack)
    for rule in (
        "PORT and HOST from the environment",
        "127.0.0.1",
        "no CDN",
        '<html lang="en">',
        '<meta name="description">',
        'rel="icon"',
        "<main>",
        "label for every form control",
        "alt text on every image",
        "e2e/<name>.spec.mjs",
        "import { test, expect } from '@playwright/test';",
        "page.goto('/')",
        "Lighthouse",
    ):
        assert rule in prompt, (stack, rule)


def test_each_web_stack_says_how_its_app_starts() -> None:
    python = coder_prompt("python-web")
    assert 'start = "python -m app"' in python
    assert "app/templates/" in python
    assert "ThreadingHTTPServer" in python
    node = coder_prompt("node-web")
    assert "scripts.start" in node
    assert "node:http" in node
    assert "Write vitest tests" in node
    assert "Write pytest tests" not in node


def test_node_pages_are_built_with_vite_only_when_packages_are_allowed() -> None:
    assert "Vite and TypeScript" in coder_prompt("node-web", deps="ask")
    plain = coder_prompt("node-web", deps="off")
    assert "Vite" not in plain
    assert "plain static files" in plain


def test_every_stack_has_its_coder_conventions() -> None:
    stacks = typing.get_args(Stack)
    assert set(WEB_STACKS) < set(stacks)
    prompts = {s: coder_prompt(s) for s in stacks}  # a stack without a template fails here
    assert len(set(prompts.values())) == len(stacks)


@pytest.mark.parametrize("name", ["plan_system", "epic_tasks_system"])
def test_a_web_plan_prompt_plans_pages_api_and_browser_tests(name: str) -> None:
    def prompt(stack: str) -> str:
        scope = Scope(title="notes", summary="s", stack=stack)  # type: ignore[arg-type]
        return render(name, scope=scope, roles=ROLES, max_description=500)

    web = prompt("python-web")
    assert "Playwright end-to-end tests in e2e/" in web
    assert '[tool.oldnew] start = "python -m app"' in web
    assert "scripts.start" in prompt("node-web")
    library = prompt("python")
    assert "Playwright" not in library
    assert "pytest tests for it" in library
    # Only a plan made in one call is asked for phases; an epic's phase comes from the epic.
    assert ("Give the plan phases" in web) == (name == "plan_system")


def test_the_plan_prompt_shows_each_route(scope: Scope) -> None:
    text = render("requirements", scope=scope)
    assert "P2 [must]: About page at /about" in text
    assert "A2 [must]: Add a note at POST /api/notes" in text


def test_the_scope_prompt_asks_for_the_stack_and_routes() -> None:
    prompt = render("scope_system")
    assert "'python-web'" in prompt
    assert "'node-web'" in prompt
    assert "route" in prompt


def test_the_coder_is_told_the_scopes_stack(
    tmp_path: Path, replies: list[ScriptedReply], scope: Scope
) -> None:
    """The stack goes from the scope through the task's state into the coder's prompt."""
    tasks = [
        {"id": "T1", "title": "Notes", "description": "app/notes.py", "files": ["app/notes.py"]},
        {"id": "T2", "title": "Rest", "description": "the rest", "depends_on": ["T1"]},
    ]
    tasks[0]["requirement_ids"] = [r.id for _, r in scope.requirements()]
    ask = {"kind": "configuration", "question": "Which port?", "options": ["3000", "8080"]}
    calls: list[tuple[CallInfo, str]] = []

    def reply(messages: list[BaseMessage], info: CallInfo) -> Any:
        calls.append((info, prompt_text(messages)))
        if info.schema is Scope:
            return structured(replies, "Read the user's scope and return a Scope")
        if info.schema is Plan:
            return {"tasks": tasks}
        return call_tool("AskHuman", ask)  # the run waits here: no code, no gate

    out = asyncio.run(
        start_run(EXAMPLE / "scope.md", tmp_path / "ws", models=FunctionModel.per_role(reply))
    )
    assert out.status == "waiting", out
    coder = [text for info, text in calls if info.role == "coder"]
    assert len(coder) == 1
    assert "THIS PROJECT IS A WEB APP (stack python-web)" in coder[0]
    assert 'start = "python -m app"' in coder[0]
