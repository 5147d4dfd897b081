"""The example notebook runs end to end on the scripted model and leaves a delivered project.

It draws the graph offline, streams progress, pauses, resumes with ``Command(resume=...)``,
keeps its memory out of ``~/.oldnew``, and uses only public API (``oldnew`` and LangGraph).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
NOTEBOOK = NOTEBOOKS / "run_example.ipynb"


def _kernel_manager(tmp_path: Path) -> AsyncKernelManager:
    """Return a manager for a python3 kernel on this interpreter.

    The kernel spec is written here rather than looked up, so a user-level or system-wide
    ``python3`` spec pointing at another Python can never run the notebook.
    """
    kernels = tmp_path / "kernels"
    spec = kernels / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "Python 3 (test)",
                "language": "python",
            }
        ),
        encoding="utf-8",
    )
    ksm = KernelSpecManager(kernel_dirs=[str(kernels)])
    km = AsyncKernelManager(kernel_name="python3", kernel_spec_manager=ksm)
    assert km.kernel_spec is not None and km.kernel_spec.argv[0] == sys.executable
    return km


def _output_text(output: dict[str, Any]) -> str:
    if output["output_type"] == "stream":
        return str(output["text"])
    if output["output_type"] in ("execute_result", "display_data"):
        return str(output["data"].get("text/plain", ""))
    if output["output_type"] == "error":
        return "\n".join([f"{output['ename']}: {output['evalue']}", *output["traceback"]])
    return ""


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.usefixtures("smoke_gates")  # the notebook's way through is under test, not the gates
def test_notebook_runs_the_example_to_delivery(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace = tmp_path / "ws"
    monkeypatch.setenv("OLDNEW_NOTEBOOK_WORKSPACE", str(workspace))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), (
        "commit the notebook with its outputs cleared"
    )
    source = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    internal = re.findall(r"(?:from|import) oldnew\.[\w.]+", source)
    assert not internal, f"the notebook uses only public API: {internal}"
    assert "draw_mermaid_png" not in source and "mermaid.ink" not in source  # offline

    client = NotebookClient(
        nb,
        km=_kernel_manager(tmp_path),
        timeout=180,
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    # A client given its kernel manager leaves the kernel running unless told to clean up.
    client.execute(cleanup_kc=True)

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    errors = [_output_text(o) for o in outputs if o["output_type"] == "error"]
    assert not errors, errors
    text = "\n".join(_output_text(o) for o in outputs)
    assert "T3-q1" in text
    assert "~/.todo.json" in text and "./todo.json" in text
    diagrams = [o["data"]["text/markdown"] for o in outputs if "text/markdown" in o.get("data", {})]
    assert len(diagrams) == 1 and diagrams[0].startswith("```mermaid\n")
    assert "\task(ask)\n" in diagrams[0] and "human -.-> execute;" in diagrams[0]
    assert "status: waiting" in text and "status: delivered" in text  # one name for the pause
    assert "  code         T3  escalated" in text  # streamed while the run went on
    assert "  validate     T2  failed" in text and "paused for a person" in text
    (memory,) = re.findall(r"^memory: +(\S+)$", text, re.MULTILINE)
    assert Path(memory).is_file() and Path.home() / ".oldnew" not in Path(memory).parents

    log = subprocess.run(
        ["git", "log", "main", "--format=%B%x00"],
        cwd=workspace,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    trailers = [
        line.split(":", 1)[1].strip()
        for line in log.splitlines()
        if line.startswith("Oldnew-Task:")
    ]
    assert sorted(trailers) == ["T1", "T2", "T3", "acceptance-1"]  # the tasks and the suite

    report = json.loads((workspace / ".oldnew" / "report.json").read_text(encoding="utf-8"))
    assert report["status"] == "delivered"
    assert "passed" in text  # the generated project's pytest run, printed by the last cell
