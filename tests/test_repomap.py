"""Context that scales (issue 14): what a coder or fixer call sees of a project, and ReadFile."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import BaseMessage, HumanMessage, ToolMessage
from langgraph.runtime import Runtime

from oldnew.context import Context
from oldnew.errors import ModelOutputError
from oldnew.nodes import coding
from oldnew.recovery.retry import RetryPolicy
from oldnew.repomap import index, tokens
from oldnew.repomap.imports import module_index, python_imports, resolve, script_imports
from oldnew.repomap.read import READ_MAX_BYTES, read_for_model
from oldnew.repomap.select import Want, select
from oldnew.repomap.symbols import python_defs, script_defs
from oldnew.schemas import PlannedTask
from oldnew.testing import CallInfo, FunctionModel, call_tool, prompt_text
from oldnew.workspace import Workspace

WRITE = "FILE: zzz/feature.py\n```python\nfrom zzz.core import Core\n\nFEATURE = Core()\n```\n"


def _module(i: int) -> str:
    body = "".join(
        f"def early_{i}_{k}(x: int) -> int:\n    return x + {k}\n\n\n" for k in range(12)
    )
    return f'"""Early module {i}."""\n\n\n' + body


def _project(tmp_path: Path, tasks: dict[str, dict[str, str | bytes]]) -> Workspace:
    """Return a workspace whose main holds one commit per task, made as the graph makes them."""
    ws = Workspace.create(tmp_path / "ws", "r1", {})
    for tid, files in tasks.items():
        tree = ws.worktree(tid)
        for path, body in files.items():
            target = tree / path
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(body, bytes):
                target.write_bytes(body)
            else:
                target.write_text(body)
        ws.commit_worktree(tid, f"task {tid}")
        ws.fast_forward_main(ws.task_branch(tid))
        ws.remove_worktree(tid)
    return ws


CORE = {
    "zzz/__init__.py": "",
    "zzz/core.py": '"""The core."""\n\n\nclass Core:\n    def run(self, n: int) -> int:\n'
    "        return n\n",
}


def _late_project(tmp_path: Path) -> Workspace:
    """150 files: 147 that come first alphabetically, then the late task's dependency T1."""
    early = {f"aaa/early{i:03}.py": _module(i) for i in range(147)}
    return _project(tmp_path, {"T0": early, "T1": CORE})


LATE = PlannedTask(
    id="T2",
    title="feature",
    description="zzz/feature.py builds a FEATURE from Core",
    depends_on=["T1"],
    files=["zzz/feature.py"],
)


def _code(ws: Workspace, task: PlannedTask, fn: Any, **settings: Any) -> tuple[dict, FunctionModel]:
    model = FunctionModel(fn=fn)
    state: dict[str, Any] = {"task": task.model_dump(), "workspace": str(ws.root), "project": "p"}
    runtime = Runtime(context=Context(**settings))
    return asyncio.run(coding.code(state, runtime, models=model)), model  # type: ignore[arg-type]


def _events(ws: Workspace, event: str) -> list[dict[str, Any]]:
    return [e for e in ws.events() if e.get("event") == event]


# -- the outline and the imports ------------------------------------------------------------


def test_outline_of_python_and_typescript() -> None:
    lines, names = python_defs(
        "LIMIT = 3\n_HIDDEN = 1\nname: str = 'x'\n\n\nclass Store(Base):\n"
        "    def __init__(self) -> None:\n        pass\n\n    def _private(self):\n        pass\n\n"
        "    async def get(\n        self, key: str,\n        default: int = f(1),\n    ) -> int:\n"
        "        return 1\n\n\ndef _helper():\n    pass\n\n\ndef load(path: str) -> 'Store':\n"
        "    def inner():\n        pass\n"
    )
    assert lines == [
        "LIMIT = ...",
        "name: str",
        "class Store(Base)",
        "    def __init__(self) -> None",
        "    async def get( self, key: str, default: int = f(1), ) -> int",
        "def load(path: str) -> 'Store'",
    ]
    assert names == ["LIMIT", "name", "Store", "load"]
    lines, names = script_defs(
        "import x from './x'\nexport function add(a: number, b: number): number {\n}\n"
        "export default class Cart extends Base {\n}\nexport const total = (c) => 1\n"
        "interface Item { id: string }\n"
    )
    assert lines == [
        "export function add(a: number, b: number): number",
        "export default class Cart extends Base",
        "export const total",
        "interface Item",
    ]
    assert names == ["add", "Cart", "total", "Item"]


def test_imports_resolve_to_project_files() -> None:
    files = [
        "app/__init__.py",
        "app/core.py",
        "app/sub/__init__.py",
        "app/sub/util.py",
        "src/lib/api.py",
        "web/cart.ts",
        "web/items/index.ts",
        "web/main.ts",
    ]
    modules = module_index(files)
    specs = python_imports(
        "import os\nimport app.core as c\nfrom .sub import util\nfrom lib.api import (\n"
        "    get,\n    put,\n)\nfrom . import core\n"
    )
    assert specs == ["os", "app.core", ".sub:util", "lib.api:get,put", ".:core"]
    assert resolve("app/main.py", specs, modules, set(files)) == {
        "app/core.py",
        "app/sub/util.py",
        "src/lib/api.py",
    }
    from_sub = resolve("app/sub/util.py", python_imports("from ..core import X\n"), modules, files)
    assert from_sub == {"app/core.py"}
    js = script_imports(
        "import { a } from './cart'\nconst i = require('./items')\nimport 'react'\n"
    )
    assert js == ["./cart", "./items"]
    assert resolve("web/main.ts", js, modules, set(files)) == {"web/cart.ts", "web/items/index.ts"}


# -- what is chosen -------------------------------------------------------------------------


def test_ranking_puts_the_files_the_task_builds_on_first(tmp_path: Path) -> None:
    files: dict[str, str | bytes] = {f"pkg/m{i:02}.py": _module(i) for i in range(40)}
    files["pkg/ledger.py"] = (
        "class Ledger:\n    def post(self, amount: int) -> None:\n        pass\n"
    )
    files["pkg/uses.py"] = "from pkg.ledger import Ledger\n\nL = Ledger()\n"
    files["pkg/task.py"] = "from pkg.uses import L\n"
    ws = _project(tmp_path, {"T0": files})
    want = Want(focus=["pkg/task.py"], text="post entries to the Ledger", budget=1500)
    chosen = select(ws.root, want, ws.meta)
    assert list(chosen.full)[:2] == ["pkg/task.py", "pkg/uses.py"]  # the task, then its import
    assert chosen.mapped[0] == "pkg/ledger.py"  # what the task and its neighbours refer to
    assert chosen.map[0].splitlines() == [
        "pkg/ledger.py",
        "  class Ledger",
        "      def post(self, amount: int) -> None",
    ]
    everything = {*chosen.full, *chosen.notes, *chosen.mapped, *chosen.left_out_paths}
    assert everything == set(ws.tracked_files()) and chosen.left_out_count > 0
    assert chosen.tokens <= want.budget


def test_typescript_import_neighbours_come_in_full(tmp_path: Path) -> None:
    files: dict[str, str | bytes] = {
        f"web/a{i:02}.ts": "export const X = 1\n" * 300 for i in range(9)
    }
    files["web/main.ts"] = "import { total } from './cart'\nexport const run = () => total()\n"
    files["web/cart.ts"] = "export function total(): number {\n  return 1\n}\n"
    files["web/page.tsx"] = "import { run } from './main'\nexport default function Page() {}\n"
    ws = _project(tmp_path, {"T0": files})
    chosen = select(ws.root, Want(focus=["web/main.ts"], budget=1000), ws.meta)
    assert list(chosen.full) == ["web/main.ts", "web/cart.ts", "web/page.tsx"]
    assert chosen.left_out_count + len(chosen.mapped) == 9 and chosen.tokens <= 1000


def test_a_late_task_sees_its_dependencys_files_in_full_and_left_out_files_are_named(
    tmp_path: Path,
) -> None:
    ws = _late_project(tmp_path)
    out, model = _code(ws, LATE, lambda m, i: WRITE)
    assert out["status"] == "validating"
    (call,) = model.log.calls
    text = prompt_text(call.messages)
    assert "FILE: zzz/core.py" in text and "class Core" in text
    assert "FILE: aaa/" not in text  # not the first files alphabetically
    assert "LEFT OUT TO FIT THE CONTEXT" in text and "aaa/early146.py" in text
    assert "ReadFile" in text and "ReadFile" in call.info.tools
    (event,) = _events(ws, "context")
    assert event["node"] == "code" and event["budget"] == 8000
    assert 0 < event["tokens"] <= 8000 and event["counter"] == tokens.ESTIMATE
    assert "zzz/core.py" in event["full"] and event["left_out"] > 0
    assert event["mapped"] + event["left_out"] + len(event["full"]) == event["files"]


def test_the_60000_character_cut_is_gone(tmp_path: Path) -> None:
    assert not hasattr(coding, "_CONTEXT_LIMIT")
    big = {
        f"big/part{i}.py": f'"""Part {i}."""\n\n' + "X = 1  # padding\n" * 1800 for i in range(3)
    }
    ws = _project(tmp_path, {"T1": big})
    task = PlannedTask(id="T2", title="t", description="d", depends_on=["T1"], files=["x.py"])
    _, model = _code(ws, task, lambda m, i: "FILE: x.py\n```\nY = 2\n```\n", context_tokens=40_000)
    text = prompt_text(model.log.calls[0].messages)
    assert all(f"FILE: big/part{i}.py" in text for i in range(3))
    assert sum(len(t) for t in big.values()) > 60_000


def test_binary_and_huge_files_are_never_pasted(tmp_path: Path) -> None:
    png = b"\x89PNG\r\n\x1a\n\0" + bytes(range(256)) * 4
    huge = "row\n" * (index.HUGE_BYTES // 4 + 10)
    ws = _project(tmp_path, {"T1": {"logo.png": png, "data.csv": huge, "other.bin": png}})
    secret = tmp_path / "secret.txt"
    secret.write_text("the secret outside\n")
    (ws.root / "leak.txt").symlink_to(secret)
    ws.git("add", "leak.txt")
    ws.git("commit", "-q", "-m", "a link that leads out")
    task = PlannedTask(
        id="T2", title="t", description="d", files=["logo.png", "data.csv", "leak.txt"]
    )
    _, model = _code(ws, task, lambda m, i: "FILE: x.py\n```\nY = 2\n```\n")
    text = prompt_text(model.log.calls[0].messages)
    assert "- leak.txt: a symbolic link: not followed" in text
    assert "the secret outside" not in text
    assert f"- logo.png: binary, {len(png)} bytes: not shown" in text
    assert f"- data.csv: {len(huge)} bytes: too large" in text
    assert f"other.bin (binary, {len(png)} bytes)" in text  # in the map, as a line
    assert "PNG" not in text and "row\nrow" not in text


def test_every_text_file_the_task_touches_is_shown_whatever_its_suffix(tmp_path: Path) -> None:
    files: dict[str, str | bytes] = {
        "scripts/release.sh": "#!/bin/sh\necho releasing\n",
        ".gitignore": "dist/\n",
        "Makefile": "check:\n\tpytest -q\n",
        ".github/workflows/ci.yml": "on: push\njobs: {}\n",
        "Dockerfile": "FROM python:3.11-slim\n",
        "docs/notes.rst": "Notes\n=====\n",
        "assets/logo.png": b"\x89PNG\r\n\x1a\n\0" + bytes(range(256)),
    }
    ws = _project(tmp_path, {"T1": files})
    (ws.root / "scripts" / "release.sh").chmod(0o755)
    ws.git("add", "--chmod=+x", "scripts/release.sh")
    ws.git("commit", "-q", "-m", "the script is executable")
    task = PlannedTask(id="T2", title="t", description="d", files=sorted(files))
    _, model = _code(ws, task, lambda m, i: "FILE: x.py\n```\nY = 2\n```\n")
    text = prompt_text(model.log.calls[0].messages)
    for path, body in files.items():
        if isinstance(body, str):
            marked = " (executable)" if path.endswith(".sh") else ""
            assert f"FILE: {path}{marked}\n```\n{body}```" in text, path
    assert "- assets/logo.png: binary, 265 bytes: not shown" in text  # listed, never pasted


# -- the ReadFile tool ----------------------------------------------------------------------


def test_a_read_file_call_is_answered_and_the_turn_goes_on(tmp_path: Path) -> None:
    ws = _late_project(tmp_path)

    def reply(messages: list[BaseMessage], info: CallInfo) -> Any:
        if info.index == 0:
            return call_tool("ReadFile", {"path": "aaa/early007.py"})
        return WRITE

    out, model = _code(ws, LATE, reply, max_output_retries=0)
    assert out["status"] == "validating" and out["model_calls"] == 2
    answer = model.log.calls[1].messages[-1]
    assert isinstance(answer, ToolMessage) and answer.content == _module(7)
    assert (ws.worktree("T2") / "zzz" / "feature.py").exists()


def test_the_cap_on_reads_holds(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("A = 1\n")

    def greedy(messages: list[BaseMessage], info: CallInfo) -> Any:
        return call_tool("ReadFile", {"path": "a.py"})

    model = FunctionModel(fn=greedy)
    with pytest.raises(ModelOutputError, match="more than 2 files"):
        asyncio.run(
            coding.files_from_model(model, [HumanMessage("go")], tmp_path, 1, RetryPolicy(), 2)
        )
    answers = [m for m in model.log.calls[-1].messages if isinstance(m, ToolMessage)]
    assert [a.content for a in answers[:2]] == ["A = 1\n", "A = 1\n"]
    assert all("Not read" in a.content for a in answers[2:]) and len(answers) == 3
    assert len(model.log.calls) == 4  # 2 reads, then 2 replies past the cap: 1 retry, no more


def test_a_refused_read_goes_back_to_the_model_and_the_turn_goes_on(tmp_path: Path) -> None:
    def reply(messages: list[BaseMessage], info: CallInfo) -> Any:
        if info.index == 0:
            return call_tool("ReadFile", {"path": "../outside.py"})
        return "FILE: a.py\n```\nA = 1\n```\n"

    model = FunctionModel(fn=reply)
    files, calls, _ = asyncio.run(
        coding.files_from_model(model, [HumanMessage("go")], tmp_path, 0, RetryPolicy(), 3)
    )
    assert files == {"a.py": "A = 1\n"} and calls == 2
    answer = model.log.calls[1].messages[-1]
    assert isinstance(answer, ToolMessage) and "outside the project" in answer.content


def test_read_file_refuses_clearly(tmp_path: Path) -> None:
    (tmp_path / "logo.png").write_bytes(b"\x89PNG\0\0")
    (tmp_path / "big.txt").write_text("x" * (READ_MAX_BYTES + 1))
    assert "outside the project" in read_for_model(tmp_path, "../etc/passwd")
    assert "outside the project" in read_for_model(tmp_path, "/etc/passwd")
    assert "no file 'nope.py'" in read_for_model(tmp_path, "nope.py")
    assert "binary file" in read_for_model(tmp_path, "logo.png")
    (tmp_path / "min.js").write_text("var a=1;" * 130_000)  # one line of 1 MB
    cut = read_for_model(tmp_path, "min.js")  # one line over the cap: its start, and why
    assert cut.startswith("min.js: line 1 of 1, cut: the line is 1040000 bytes")
    assert len(cut) < READ_MAX_BYTES + 200
    two = read_for_model(tmp_path, "big.txt")
    assert two.startswith("big.txt: line 1 of 1, cut") and len(two) < READ_MAX_BYTES + 200


# -- the fixer and the shrink path ----------------------------------------------------------


def test_the_fixer_sees_the_files_the_diagnostics_name_and_can_read(tmp_path: Path) -> None:
    ws = _late_project(tmp_path)
    tree = ws.worktree("T2")
    (tree / "zzz" / "feature.py").write_text("from zzz.core import Core\nFEATURE = Core(\n")
    state: dict[str, Any] = {
        "task": LATE.model_dump(),
        "workspace": str(ws.root),
        "files": ["zzz/feature.py"],
        "diagnostics": ["zzz/feature.py:2:1: E999 SyntaxError", "aaa/early005.py:1: F401"],
    }
    model = FunctionModel(fn=lambda m, i: WRITE)
    out = asyncio.run(coding.fix(state, Runtime(context=Context()), models=model))  # type: ignore[arg-type]
    assert out["status"] == "validating"
    (call,) = model.log.calls
    text = prompt_text(call.messages)
    assert "FILE: zzz/feature.py" in text and "FEATURE = Core(" in text  # the untracked file
    assert "FILE: aaa/early005.py" in text and "FILE: zzz/core.py" in text
    assert call.info.tools == ("ReadFile",)
    (event,) = _events(ws, "context")
    assert event["node"] == "fix" and event["tokens"] <= event["budget"]


def test_a_context_overflow_retries_once_with_the_map_only(tmp_path: Path) -> None:
    ws = _late_project(tmp_path)
    prompts: list[str] = []

    def reply(messages: list[BaseMessage], info: CallInfo) -> Any:
        prompts.append(prompt_text(messages))
        if len(prompts) == 1:  # a call that raises is not in the model's log
            raise ValueError("This model's maximum context length is 8192 tokens")
        return WRITE

    out, model = _code(ws, LATE, reply, max_transient_retries=1)
    assert out["status"] == "validating"
    assert "FILE: zzz/core.py" in prompts[0]
    text = prompts[1]
    assert "FILE: zzz/core.py" not in text and "REPOSITORY MAP" in text
    assert "zzz/core.py\n  class Core" in text  # the dependency is mapped first
    (shrunk,) = _events(ws, "context_shrunk")
    assert shrunk["files_left_out"] > 0
    assert [e["full"] for e in _events(ws, "context")][1] == []


# -- counting and caching -------------------------------------------------------------------


def test_tokens_are_estimated_unless_a_tokenizer_loads_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert tokens.counter_for(None) is tokens.ESTIMATOR
    assert tokens.counter_for("scripted:x.json") is tokens.ESTIMATOR
    assert tokens.counter_for("openai:no-such-model") is tokens.ESTIMATOR
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    tokens._tiktoken_counter.cache_clear()
    assert tokens.cached_bpe("o200k_base") is None  # nothing cached: never downloaded
    assert tokens.counter_for("openai:gpt-4o") is tokens.ESTIMATOR
    url = "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"
    import hashlib

    (tmp_path / hashlib.sha1(url.encode()).hexdigest()).write_bytes(b"tampered")  # noqa: S324
    assert tokens.cached_bpe("o200k_base") is None  # a file that fails its hash is not used
    assert tokens.counter_for("openai:gpt-4o").count("abcdefgh") == 2


def test_outlines_are_cached_by_blob_and_changes_are_seen(tmp_path: Path) -> None:
    ws = _project(tmp_path, {"T1": {"a.py": "def one() -> int:\n    return 1\n"}})
    index.forget()
    first = index.project_facts(ws.root, ws.meta)
    assert first["a.py"].defs == ("def one() -> int",)
    assert (ws.meta / index.CACHE_FILE).exists()
    index.forget()
    (ws.root / "a.py").write_text("def two(x: str) -> str:\n    return x\n")  # not committed
    (ws.root / "new.py").write_text("class New:\n    pass\n")  # not tracked
    seen = index.project_facts(ws.root, ws.meta)
    assert seen["a.py"].defs == ("def two(x: str) -> str",)
    assert seen["new.py"].defs == ("class New",)
    written = (ws.meta / index.CACHE_FILE).stat().st_mtime_ns
    assert index.project_facts(ws.root, ws.meta) == seen
    assert (ws.meta / index.CACHE_FILE).stat().st_mtime_ns == written  # nothing new: no write
    (ws.root / "a.py").unlink()
    assert "a.py" not in index.project_facts(ws.root, ws.meta)


# -- the budget holds, whatever is listed, ranked or counted -----------------------------------


def _rendered(chosen: Any, reads: int = 8) -> str:
    from oldnew.prompts import render

    return render("project_context", context=chosen, reads=reads)


@pytest.mark.parametrize("budget", [500, 8000])
@pytest.mark.parametrize("how", ["task files", "supporting files"])
def test_listed_files_take_budget_and_are_grouped_past_it(
    tmp_path: Path, budget: int, how: str
) -> None:
    files: dict[str, str | bytes] = {
        f"assets/img{i:04}.png": b"\x89PNG\0" + bytes([i % 256]) * 50 for i in range(300)
    }
    files["main.py"] = "X = 1\n"
    ws = _project(tmp_path, {"T0": files})
    pngs = [p for p in files if p.endswith(".png")]
    if how == "task files":
        want = Want(focus=list(files), budget=budget)
    else:
        want = Want(focus=["main.py"], supporting=pngs, named=pngs, budget=budget)
    chosen = select(ws.root, want, ws.meta)
    shown = _rendered(chosen)
    assert tokens.estimate(shown) <= budget and chosen.tokens <= budget
    everything = {*chosen.full, *chosen.notes, *chosen.mapped, *chosen.left_out_paths}
    assert everything == set(ws.tracked_files())
    if budget == 500:  # 300 lines cannot fit: what does not is counted by folder
        assert chosen.left_out_count > 200 and any("assets/ (" in x for x in chosen.left_out)
    elif how == "task files":  # short lines: all 300 fit in 8000
        assert len(chosen.notes) == 300 and chosen.left_out_count == 0
    else:  # longer lines: most are listed, the rest mapped or counted, none dropped
        assert len(chosen.notes) > 200


def test_a_dependencys_file_the_task_names_comes_first(tmp_path: Path) -> None:
    t1: dict[str, str | bytes] = {f"lib/a{i:02}.py": _module(i) * 3 for i in range(40)}
    t1["lib/zz_ledger.py"] = (
        "class Ledger:\n    def post(self, amount: int) -> None:\n        pass\n" + _module(99) * 3
    )
    ws = _project(tmp_path, {"T1": t1})
    from oldnew.repomap.history import task_files

    want = Want(
        focus=["app/report.py"],
        related=task_files(ws, ["T1"]),
        text="app/report.py posts totals to the Ledger from lib.zz_ledger",
        budget=8000,
    )
    chosen = select(ws.root, want, ws.meta)
    assert list(chosen.full)[0] == "lib/zz_ledger.py"


def test_the_frame_is_counted_by_the_counter(tmp_path: Path) -> None:
    from oldnew.bench.context import write_repo

    ws = write_repo(tmp_path / "r", 200)
    one = tokens.TokenCounter("1 character a token", len)
    for budget in (500, 8000):
        want = Want(focus=["app/pkg0/mod0.py"], text="Store", budget=budget, counter=one)
        chosen = select(ws.root, want, ws.meta)
        assert len(_rendered(chosen)) <= budget and chosen.tokens <= budget
        assert chosen.left_out_count + len(chosen.mapped) + len(chosen.full) == 200
    assert chosen.mapped  # 8000 characters show something
    # A counter whose whole is more than the sum of its parts: the whole is what is judged.
    grows = tokens.TokenCounter("superadditive", lambda t: len(t) // 4 + (len(t) // 400) ** 2)
    for budget in (1000, 3000):
        want = Want(focus=["app/pkg0/mod0.py"], text="Store", budget=budget, counter=grows)
        chosen = select(ws.root, want, ws.meta)
        assert grows.count(_rendered(chosen)) <= budget and chosen.left_out_count > 0


# -- a file too large for one answer, and what the map leaves out -----------------------------


def test_a_file_over_the_read_cap_is_read_by_line_ranges(tmp_path: Path) -> None:
    lines = [f"ROW_{i:06} = {i}  # {'x' * 60}\n" for i in range(2000)]  # ~150 KB
    body = "".join(lines)
    ws = _project(tmp_path, {"T1": {"big/table.py": body}})
    assert READ_MAX_BYTES < len(body) < index.HUGE_BYTES
    first = read_for_model(ws.root, "big/table.py")
    head, _, text = first.partition("\n")
    assert head.startswith("big/table.py: lines 1-") and "of 2000" in head
    assert "start_line=" in head and len(text.encode()) <= READ_MAX_BYTES
    assert text == "".join(lines[: text.count("\n")])
    some = read_for_model(ws.root, "big/table.py", 1999, 2005)
    assert some == "big/table.py: lines 1999-2000 of 2000\n" + lines[1998] + lines[1999]
    assert "past its end" in read_for_model(ws.root, "big/table.py", 3000)
    chosen = select(ws.root, Want(focus=["big/table.py"], budget=8000), ws.meta)
    text = _rendered(chosen)
    assert "big/table.py" not in chosen.full
    assert f"big/table.py ({len(body)} bytes: too large to read whole: read it by line" in text
    assert "... and 1960 more definitions (read the file)" in text  # 40 shown, the rest counted

    def reply(messages: list[BaseMessage], info: CallInfo) -> Any:
        if info.index == 0:
            return call_tool("ReadFile", {"path": "big/table.py", "start_line": 5, "end_line": 6})
        return "FILE: x.py\n```\nX = 1\n```\n"

    model = FunctionModel(fn=reply)
    asyncio.run(coding.files_from_model(model, [HumanMessage("go")], ws.root, 0, RetryPolicy(), 2))
    answer = model.log.calls[1].messages[-1]
    assert answer.content == "big/table.py: lines 5-6 of 2000\n" + lines[4] + lines[5]


# -- every tool call is answered ----------------------------------------------------------------


def _unanswered(messages: list[BaseMessage]) -> list[str]:
    from langchain_core.messages import AIMessage

    answered = {m.tool_call_id for m in messages if isinstance(m, ToolMessage)}
    return [
        str(c["id"])
        for m in messages
        if isinstance(m, AIMessage)
        for c in [*m.tool_calls, *m.invalid_tool_calls]
        if c["id"] not in answered
    ]


def test_every_tool_call_of_a_reply_is_answered(tmp_path: Path) -> None:
    from langchain_core.messages import AIMessage

    (tmp_path / "a.py").write_text("A = 1\n")
    blocks = "FILE: b.py\n```\nB = 1\n```\n"
    firsts: dict[str, Any] = {
        "unknown tool": call_tool("Bash", {"cmd": "ls"}),
        "malformed args": AIMessage(
            content="",
            invalid_tool_calls=[{"name": "ReadFile", "args": "{no", "id": "x1", "error": "bad"}],
        ),
        "malformed AskHuman": call_tool("AskHuman", {"bogus": 1}),
        "read and blocks": call_tool("ReadFile", {"path": "a.py"}, text=blocks),
    }
    for case, first in firsts.items():

        def reply(messages: list[BaseMessage], info: CallInfo, first: Any = first) -> Any:
            return first if info.index == 0 else blocks

        model = FunctionModel(fn=reply)
        files, calls, _ = asyncio.run(
            coding.files_from_model(model, [HumanMessage("go")], tmp_path, 1, RetryPolicy(), 2)
        )
        assert files == {"b.py": "B = 1\n"} and calls == 2, case
        second = model.log.calls[1].messages
        assert _unanswered(second) == [], case
        answers = [m.content for m in second if isinstance(m, ToolMessage)]
        if case == "malformed AskHuman":
            assert "AskHuman's arguments do not validate" in answers[0]
        if case == "malformed args":
            assert "did not parse (bad)" in answers[0]
        if case == "read and blocks":
            assert answers == ["A = 1\n"] and "NOT APPLIED" in str(second[-1].content)


def test_read_file_serves_only_files_the_listing_knows(tmp_path: Path) -> None:
    ws = _project(tmp_path, {"T1": {".gitignore": ".env\nsecrets/\n", "app.py": "A = 1\n"}})
    (ws.root / ".env").write_text("OPENAI_API_KEY=sk-SECRET\n")
    (ws.root / "secrets").mkdir()
    (ws.root / "secrets" / "key.txt").write_text("TOPSECRET\n")
    (ws.root / "new.py").write_text("N = 1\n")  # new, not ignored: served
    for path in (".env", "secrets/key.txt"):
        assert read_for_model(ws.root, path) == (
            f"ERROR: {path} is ignored by the project's git: not shown."
        )
    assert read_for_model(ws.root, "new.py") == "N = 1\n"
    assert read_for_model(ws.root, "app.py") == "A = 1\n"


# -- what git and the cache hand over -----------------------------------------------------------


def test_a_file_name_that_is_not_utf8_is_listed_never_fatal(tmp_path: Path) -> None:
    import os

    ws = _project(tmp_path, {"T1": {"app.py": "A = 1\n"}})
    os.chdir(ws.root)
    try:
        with open(b"caf\xe9.py", "wb") as fh:  # noqa: PTH123 - a bytes name, as git keeps it
            fh.write(b"Z = 3\n")
        ws.git("add", "-A")
        ws.git("commit", "-q", "-m", "a Latin-1 name")
        with open(b"new\xff.txt", "wb") as fh:  # noqa: PTH123 - untracked, not UTF-8 either
            fh.write(b"x\n")
    finally:
        os.chdir(tmp_path)
    index.forget()
    chosen = select(ws.root, Want(focus=["app.py", "caf\\xe9.py"], budget=8000), ws.meta)
    text = _rendered(chosen)
    assert "- caf\\xe9.py: name not UTF-8: not shown" in text
    assert "new\\xff.txt (name not UTF-8: not shown)" in text
    assert "FILE: app.py" in text and chosen.files == 3


def test_an_odd_cache_is_started_afresh(tmp_path: Path) -> None:
    import json

    ws = _project(tmp_path, {"T1": {"a.py": "def one() -> int:\n    return 1\n"}})
    cache = ws.meta / index.CACHE_FILE
    index.forget()
    index.project_facts(ws.root, ws.meta)
    key = next(iter(json.loads(cache.read_text())["facts"]))
    odd = [
        "[1, 2, 3]",
        json.dumps({"version": 2, "facts": [1, 2]}),
        json.dumps({"version": 2, "facts": {key: [1]}}),
        json.dumps({"version": 2, "facts": {key: [10, False, 5, [], [], False]}}),
        json.dumps({"version": 2, "facts": {key: [10, False, "abc", "xyz", [], False]}}),
        "[" * 100_000 + "]" * 100_000,
        "\0\0",
    ]
    for text in odd:
        cache.write_text(text)
        index.forget()
        assert index.project_facts(ws.root, ws.meta)["a.py"].defs == ("def one() -> int",), text


def test_the_same_bytes_in_another_kind_of_file_have_their_own_facts(tmp_path: Path) -> None:
    code = "import os\n\n\ndef public_api(x: int) -> int:\n    return x\n"
    ws = _project(tmp_path, {"T1": {"a_notes.txt": code, "z_mod.py": code}})
    index.forget()
    facts = index.project_facts(ws.root, ws.meta)
    assert facts["a_notes.txt"].defs == ()
    assert facts["z_mod.py"].defs == ("def public_api(x: int) -> int",)
    assert facts["z_mod.py"].imports == ("os",)


def test_a_file_staged_for_removal_but_on_disk_is_still_listed(tmp_path: Path) -> None:
    ws = _project(tmp_path, {"T1": {"a.py": "A = 1\n", "b.py": "B = 2\n"}})
    ws.git("rm", "-q", "--cached", "b.py")
    index.forget()
    assert set(index.project_facts(ws.root, ws.meta)) == {"a.py", "b.py"}
    (ws.root / "b.py").unlink()
    assert set(index.project_facts(ws.root, ws.meta)) == {"a.py"}


def test_latin1_text_is_said_to_be_not_utf8_not_binary(tmp_path: Path) -> None:
    ws = _project(tmp_path, {"T1": {"latin.py": b"# caf\xe9\nX = 1\n", "a.py": "A = 1\n"}})
    chosen = select(ws.root, Want(focus=["a.py", "latin.py"], budget=8000), ws.meta)
    assert chosen.notes["latin.py"] == "not UTF-8 text, 13 bytes: not shown"
    assert "not UTF-8 text" in read_for_model(ws.root, "latin.py")


def test_a_file_name_with_a_newline_is_escaped_never_pasted_raw(tmp_path: Path) -> None:
    ws = _project(tmp_path, {"T1": {"weird\nname.py": "Y = 2\n", "a.py": "A = 1\n"}})
    index.forget()
    chosen = select(ws.root, Want(focus=["a.py"], budget=8000), ws.meta)
    text = _rendered(chosen)
    assert "weird\\nname.py (name with control characters: not shown)" in text
    assert "weird\nname" not in text


def test_no_reads_allowed_binds_no_read_tool_and_says_so(tmp_path: Path) -> None:
    ws = _late_project(tmp_path)
    _, model = _code(ws, LATE, lambda m, i: WRITE, max_file_reads=0)
    (call,) = model.log.calls
    text = prompt_text(call.messages)
    assert "ReadFile" not in call.info.tools and "AskHuman" in call.info.tools
    assert "at most 0" not in text and "this run reads no more files" in text


def test_oldnews_records_and_environments_are_no_files_of_the_project(tmp_path: Path) -> None:
    tree = tmp_path / "t"
    tree.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=tree, check=True)
    for rel in ("app.py", ".oldnew/run.json", ".venv/lib/x.py", "node_modules/m/index.js"):
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_text("X = 1\n")
    assert sorted(index.project_facts(tree)) == ["app.py"]
