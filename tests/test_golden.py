"""The model-output gate: exact comparison of golden points tables (synthetic tables here)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from harness import bench


def points() -> pd.DataFrame:
    """A small points table laid out as harness.store.rows_frame lays it out."""
    return pd.DataFrame({
        "kind": ["iptables", "iptables", "scheduler", "scheduler"],
        "part": [1, 1, 2, 2],
        "point": [0, 1, 0, 0],
        "services": [10.0, 100.0, math.nan, math.nan],
        "scheduler": [None, None, "rr", "rr"],
        "repeat": [0, 0, 0, 1],
        "seed": [11, 12, 13, 14],
        "rules_evaluated": [41.5, 401.5, math.nan, math.nan],
        "jain": [math.nan, math.nan, 0.99, 0.98],
        "wall_s": [0.1, 0.2, 0.3, 0.4],
        "kernel_wall_ns": [100.0, 200.0, 300.0, 400.0],
    })


def diff(expected: pd.DataFrame, got: pd.DataFrame) -> list[bench.Cell]:
    keys, _ = bench.golden_columns(expected)
    return bench.golden_diff(expected, got, keys)


def test_identical_tables_match_including_nan() -> None:
    assert diff(points(), points()) == []


def test_timing_columns_are_ignored() -> None:
    got = points()
    got["wall_s"] *= 3
    got["kernel_wall_ns"] += 1
    assert diff(points(), got) == []
    keys, compared = bench.golden_columns(points())
    assert keys == ["kind", "part", "point", "repeat"]
    assert "wall_s" not in compared and "kernel_wall_ns" not in compared
    assert "rules_evaluated" in compared and "seed" in compared


def test_mismatch_names_the_cells() -> None:
    got = points()
    got.loc[1, "rules_evaluated"] = 401.50000000000006  # one ulp off: exact means exact
    got.loc[3, "jain"] = math.nan
    cells = diff(points(), got)
    assert [(c.column, c.expected, c.got) for c in cells] == [
        ("rules_evaluated", 401.5, 401.50000000000006),
        ("jain", 0.98, cells[1].got),
    ]
    assert math.isnan(cells[1].got)
    assert cells[0].key == "kind=iptables, part=1, point=1, repeat=0, services=100.0"
    assert cells[1].key == "kind=scheduler, part=2, point=0, repeat=1"  # no varying parameter
    text = bench.format_cells(cells)
    assert "[kind=iptables, part=1, point=1, repeat=0, services=100.0] rules_evaluated: " \
           "expected 401.5, got 401.50000000000006" in text


def test_missing_and_extra_rows_and_columns_are_reported() -> None:
    got = points().drop(index=2).drop(columns=["jain"])
    got["new_metric"] = 1
    cells = diff(points(), got)
    assert bench.Cell("<column>", "jain", "present", "absent") in cells
    assert bench.Cell("<column>", "new_metric", "absent", "present") in cells
    assert [c for c in cells if c.column == "<row>"] == [
        bench.Cell("kind=scheduler, part=2, point=0, repeat=0", "<row>", "present", "absent")]


def test_parquet_round_trip_is_exact(tmp_path) -> None:
    path = bench.save_golden(points(), tmp_path / "golden.parquet")
    assert bench.check_golden(points(), path) == []
    changed = points()
    changed.loc[0, "seed"] = 99
    assert [(c.column, c.expected, c.got) for c in bench.check_golden(changed, path)] == [
        ("seed", 11, 99)]


def test_missing_baseline_is_a_user_error(tmp_path) -> None:
    with pytest.raises(bench.UserError, match="--golden-only --save-baseline"):
        bench.check_golden(points(), tmp_path / "none.parquet")


def test_nondeterministic_columns_are_found() -> None:
    second = points()
    second.loc[0, "rules_evaluated"] = 0.0
    assert bench.nondeterministic_columns(points(), second) == ["rules_evaluated"]


def test_golden_command_fails_naming_cells(tmp_path, monkeypatch, capsys) -> None:
    import argparse

    from harness.commands import bench as command

    path = bench.save_golden(points(), tmp_path / "golden.parquet")
    changed = points()
    changed.loc[2, "jain"] = 0.5
    monkeypatch.setattr(bench, "run_golden", lambda config: changed)
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    args = parser.parse_args(["--golden-only", "--golden-baseline", str(path)])
    assert command.main(args) == 1
    out = capsys.readouterr().out
    assert "GOLDEN MISMATCH: 1 cells differ" in out
    assert "[kind=scheduler, part=2, point=0, repeat=0] jain: expected 0.99, got 0.5" in out
    monkeypatch.setattr(bench, "run_golden", lambda config: points())
    assert command.main(args) == 0
