"""The dependency benchmark, tiny: cold installs all, warm reuses, one package fetches one wheel."""

from __future__ import annotations

import json

import pytest

from oldnew.bench import deps


def _phase(data: dict, scenario: str, step: str) -> dict:
    return next(r for r in data["phases"] if (r["scenario"], r["step"]) == (scenario, step))


def test_cold_warm_and_one_package_added(capsys: pytest.CaptureFixture[str]) -> None:
    """Counted at the local server: cold fetches every wheel, warm none, the change only its own."""
    code = deps.main(
        ["--count", "3", "--size-mb", "0.03", "--modules", "2", "--repeat", "1", "--json"]
    )
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert [(r["scenario"], r["step"]) for r in data["phases"]] == list(deps.PHASES)
    assert data["config"]["count"] == 3
    for row in data["phases"]:
        assert 0 <= row["min_s"] <= row["median_s"] <= row["max_s"]
    cold, warm = _phase(data, "cold", "env"), _phase(data, "warm", "env")
    assert cold["reused"] == [False] and cold["fetched"] == [3] and cold["new_in_cache"] == [3]
    assert warm["reused"] == [True] and warm["fetched"] == [0] and warm["requests"] == [0]
    assert cold["install_median_s"] <= cold["median_s"]
    assert warm["install_median_s"] < cold["install_median_s"]
    assert _phase(data, "warm", "lock")["lock_changed"] == [False]
    assert _phase(data, "changed", "lock")["lock_changed"] == [True]
    assert _phase(data, "changed", "lock")["fetched"] == [0]  # resolved from METADATA alone
    task = _phase(data, "cold", "task")
    assert task["median_s"] == pytest.approx(
        _phase(data, "cold", "lock")["median_s"] + cold["median_s"], abs=0.002
    )
    assert task["metadata"] == [3] and task["fetched"] == [3]  # 3 METADATA to lock, 3 wheels
    changed = _phase(data, "changed", "env")
    assert changed["reused"] == [False] and changed["fetched"] == [1]
    assert changed["fetched_files"] == ["benchpkg_added-1.0.0-py3-none-any.whl"]
    assert changed["uv_prepared"] == 1 and changed["uv_installed"] == 4
    assert data["checks"] == {
        "warm_under_limit": True,
        "warm_reused": True,
        "warm_same_env": True,
        "pins_kept": True,
        "fetched_only_added": True,
        "changed_env_imports": True,
    }
    assert data["added_by_lock"] == ["benchpkg-added==1.0.0"]
    disk = data["disk"]
    assert disk["changed_env"] != disk["cold_env"] == disk["warm_env"]
    assert 0 < disk["shared_files"] <= disk["linked_files"] <= disk["changed_files"]
    assert disk["envs_mb_on_disk"] < disk["envs_mb_apparent"]


def test_table_output(capsys: pytest.CaptureFixture[str]) -> None:
    """Without --json it prints the table, the checks and the disk line."""
    deps.render(
        {
            "ecosystem": "python",
            "config": {"count": 3, "index": "local", "added": "x", "repeat": 1},
            "phases": [
                {
                    "scenario": s,
                    "step": t,
                    "median_s": 0.5,
                    "min_s": 0.4,
                    "max_s": 0.6,
                    "reused": [True] if t != "lock" else None,
                    "install_median_s": 0.25 if t != "lock" else None,
                    "lock_changed": [False] if t != "env" else None,
                    "fetched": [0],
                    "fetched_files": ["x-1-py3-none-any.whl"],
                    "requests": [0],
                    "metadata": [0],
                    "new_in_cache": [0],
                    "uv_prepared": None,
                    "uv_installed": 2,
                }
                for s, t in deps.PHASES
            ],
            "checks": {
                "warm_under_limit": True,
                "warm_reused": True,
                "warm_same_env": True,
                "pins_kept": True,
                "fetched_only_added": True,
                "changed_env_imports": True,
            },
            "added_by_lock": ["x==1"],
            "disk": {k: 1 for k in deps.Disk().__dict__},
        }
    )
    out = capsys.readouterr().out
    assert "warm" in out and "0.500" in out and "0.250" in out and "?/2" in out
    assert "the changed lock adds x==1; the change fetched only that: True" in out
    assert "wheels the server sent for it: x-1-py3-none-any.whl" in out
    assert "st_nlink>1" in out
    assert "a second task with the same lock adds 0.500 s (median; under 1 s: True)" in out


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--index", "http://127.0.0.1:9/simple"], "--index needs --packages and --add"),
        (["--index", "u", "--packages", "a"], "--index needs --packages and --add"),
        (["--repeat", "0"], "must be at least 1"),
    ],
)
def test_bad_arguments(argv: list[str], said: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A remote index needs the packages and the one to add; repeats are at least one."""
    with pytest.raises(SystemExit) as exc:
        deps.main(argv)
    assert exc.value.code == 2
    assert said in capsys.readouterr().err
