"""Hidden acceptance tests of the tally case: never shown to the run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path.cwd()  # the delivered project: hidden tests run in its folder, from outside it


def tally(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tally", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_one_file_gives_lines_words_characters_and_name(tmp_path: Path) -> None:
    f = tmp_path / "notes.txt"
    f.write_text("one two\nthree\n", encoding="utf-8")
    out = tally(f)
    assert out.returncode == 0
    assert out.stdout.splitlines() == [f"2 3 14 {f}"]


def test_characters_not_bytes(tmp_path: Path) -> None:
    f = tmp_path / "crème.txt"
    f.write_text("crème\n", encoding="utf-8")
    assert tally(f).stdout.split()[:3] == ["1", "1", "6"]


def test_several_files_end_with_a_total(tmp_path: Path) -> None:
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("x\n", encoding="utf-8")
    b.write_text("y z\nw\n", encoding="utf-8")
    lines = tally(a, b).stdout.splitlines()
    assert lines == [f"1 1 2 {a}", f"2 3 6 {b}", "3 4 8 total"]


def test_lines_only(tmp_path: Path) -> None:
    f = tmp_path / "n.txt"
    f.write_text("a\nb\nc\n", encoding="utf-8")
    assert tally("--lines", f).stdout.splitlines() == [f"3 {f}"]


def test_a_missing_file_is_reported_and_the_rest_counted(tmp_path: Path) -> None:
    f = tmp_path / "here.txt"
    f.write_text("hi\n", encoding="utf-8")
    missing = tmp_path / "gone.txt"
    out = tally(missing, f)
    assert out.returncode == 1
    assert f"tally: cannot read {missing}" in out.stderr
    assert out.stdout.splitlines()[0] == f"1 1 3 {f}"
