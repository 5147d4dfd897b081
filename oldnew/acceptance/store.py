"""The suite in git: committed to main as the tester's own step, read back from main.

The suite is written through the same path as a task's files (its own checkout, one commit
marked ``Oldnew-Task: <key>``, rebased and fast-forwarded onto main under the merge lock), so a
run killed half-way finds the commit on resume instead of making a second one. What the gates
run and the coder is shown is always main's copy, never a task's checkout: a task's own files
under the suite's folder cannot change which tests judge it.
"""

from __future__ import annotations

from collections.abc import Mapping

from oldnew.acceptance import SUITE_DIR, is_suite_path
from oldnew.errors import WorkspaceError
from oldnew.workspace import Workspace

MAX_SUITE_FILE = 256 * 1024
"""Bytes one suite file may hold when read back (a larger one is the tester's to fix)."""


def commit_suite(ws: Workspace, files: Mapping[str, str | None], key: str, title: str) -> str:
    """Commit ``files`` (path -> text, None deletes; all under the suite) to main; return it.

    ``key`` names the step (``acceptance-1``, ``acceptance-rev-2``): a step already on main
    returns its commit and writes nothing (a resumed run). Blocking: call it in a thread.

    Raises:
        ValueError: a path is outside the suite's folder.
        WorkspaceError: git failed, or main cannot take the commit.

    """
    outside = [p for p in files if not is_suite_path(p)]
    if outside:
        raise ValueError(f"the acceptance suite lives in {SUITE_DIR}/; not: {', '.join(outside)}")
    with ws.merge_lock():
        done = ws.find_task_commit(key)
        if done is not None:
            return done
        tree = ws.worktree(key)
        Workspace.write_files(tree, files)
        if ws.commit_worktree(key, title) is None:
            ws.remove_worktree(key)
            return ws.head()  # the same files are on main already: nothing to commit
        ws.rebase_onto_main(key)
        commit = ws.fast_forward_main(ws.task_branch(key))
    ws.remove_worktree(key)
    return commit


def suite_on_main(ws: Workspace, ref: str | None = None) -> dict[str, str]:
    """Return the suite's files on main (or ``ref``): path -> text.

    A file that is not UTF-8 text or is over :data:`MAX_SUITE_FILE` is returned as a one-line
    note of what is wrong with it, so a reader sees it and the tests fail on it.
    """
    commit = ref or ws.head()
    try:
        listed = ws.git("ls-tree", "-r", "-z", "--name-only", commit, "--", SUITE_DIR)
    except WorkspaceError:
        return {}
    out: dict[str, str] = {}
    for path in sorted(p for p in listed.split("\0") if p):
        size = int(ws.git("cat-file", "-s", f"{commit}:{path}") or 0)
        if size > MAX_SUITE_FILE:
            out[path] = f"# {path} holds {size} bytes, over the {MAX_SUITE_FILE} a suite file may"
            continue
        out[path] = ws.git("show", f"{commit}:{path}") + "\n"
    return out
