"""The context benchmark, small: within the budget, and every file shown, mapped or listed."""

from __future__ import annotations

import json

import pytest

from oldnew.bench import context


def test_at_100_files_the_context_fits_and_nothing_is_dropped(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = context.main(["--sizes", "100", "--repeat", "1", "--budget", "3000", "--json"])
    data = json.loads(capsys.readouterr().out)
    (row,) = data["rows"]
    assert row["files"] == 100 and row["budget"] == 3000
    assert 0 < row["tokens"] <= 3000
    assert row["accounted"]  # each file in full, listed, mapped or left out
    assert row["mapped"] > 0 and row["left_out"] > 0
    assert row["mapped"] + row["left_out"] + len(row["full"]) + row["listed"] == 100
    assert "app/store/store.py" in row["full"]  # the dependency's file
    assert "app/pkg0/mod0.py" in row["full"]  # the file the task changes
    assert len(row["cold_all_ms"]) == len(row["warm_all_ms"]) == 1
    timing = data["timing"]
    assert timing["files"] == 100 and timing["goal_ms"] == context.GOAL_MS
    for kind in ("cold", "disk", "warm"):  # each timing judged, none hidden
        assert timing[f"{kind}_under_goal"] == (row[f"{kind}_ms"] < context.GOAL_MS)
    assert data["checks"] == {
        "within_budget": True,
        "every_file_accounted": True,
        "dependency_in_full": True,
    }
    assert code == 0
