"""`kpbench compare`: join on parameters, deltas and ratios, the changed parameter, overlay PNGs."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from harness import cli
from harness.compare import compare_kind, compare_runs
from harness.store import kind_frame, load_run

CONFIG = """
name = "cmptoy"
kind = "toy"
seed = 8
repeats = 2
[grid]
n = [1, 10, 100, 1000]
mode = ["fast", "slow"]
[fixed]
rate = 1.0
"""
PNG = b"\x89PNG\r\n\x1a\n"


def _run(tmp_path: Path, *overrides: str) -> Path:
    cfg = tmp_path / "cmptoy.toml"
    cfg.write_text(CONFIG)
    out = tmp_path / "out"
    before = set(out.glob("cmptoy/*"))
    args = ["run", str(cfg), "--out", str(out), "--workers", "1", "--quiet", "--no-report"]
    assert cli.main(args + [f"--set={o}" for o in overrides]) == 0
    (run,) = set(out.glob("cmptoy/*")) - before
    return run


@pytest.fixture(scope="module")
def toy():
    """The toy kinds registered in-process for the module (runs use --workers 1)."""
    from toykind import KIND

    from harness import kinds

    kinds.register(KIND)
    yield KIND
    kinds.unregister(KIND.name)


@pytest.fixture(scope="module")
def runs(toy, tmp_path_factory) -> tuple[Path, Path]:
    """A: rate 1 on n = 1..1000; B: rate 2 and one more grid value (n = 10000)."""
    tmp = tmp_path_factory.mktemp("runs")
    a = _run(tmp)
    b = _run(tmp, "fixed.rate=2.0", "grid.n=[1, 10, 100, 1000, 10000]")
    return a, b


def test_compare_joins_and_computes_deltas(runs, toy):
    a, b = runs
    (df_a, man_a), (df_b, man_b) = load_run(a), load_run(b)
    kind = toy
    comp = compare_kind(kind, kind_frame(df_a, kind, man_a), kind_frame(df_b, kind, man_b))
    assert comp.keys == ["n", "mode"]
    assert comp.changed == {"rate": (1.0, 2.0)}
    assert (comp.matched, comp.only_a, comp.only_b) == (8, 0, 2)
    # recompute independently: mean over repeats per (n, mode), then B - A and B / A
    ma = df_a.groupby(["n", "mode"])["mean"].mean()
    mb = df_b.groupby(["n", "mode"])["mean"].mean()
    rows = comp.long[comp.long["metric"] == "mean"].set_index(["n", "mode"]).sort_index()
    assert len(rows) == 8
    for key, row in rows.iterrows():
        assert row["A"] == ma[key] and row["B"] == mb[key]
        assert row["delta"] == mb[key] - ma[key]
        assert row["ratio"] == mb[key] / ma[key]
    # doubling the rate doubles the mean of 1000 draws (seeds differ: tolerance 7.5%, ~3 sigma)
    assert rows.loc[(1000, "fast"), "ratio"] == pytest.approx(2.0, rel=0.075)
    count = comp.summary.set_index("metric").loc["count"]
    assert count["points differing"] == 0 and count["median B/A"] == 1.0
    assert comp.summary.set_index("metric").loc["mean", "points differing"] == 8
    assert "wall_s" in set(comp.summary["metric"])


def test_compare_writes_markdown_csv_and_pngs(runs, tmp_path, capsys):
    a, b = runs
    out = tmp_path / "cmp"
    assert cli.main(["compare", str(a), str(b), "--out", str(out)]) == 0
    md = out / "compare.md"
    assert capsys.readouterr().out.strip() == str(md)
    text = md.read_text()
    assert f"`cmptoy/{a.name}` vs B `cmptoy/{b.name}`" in text
    assert "- Joined on: n, mode" in text
    assert "- Changed between the runs: rate: 1 -> 2" in text
    assert "- Points: 8 in both, 0 only in A, 2 only in B" in text
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert images and "toy_mean.png" in images and "toy_wall_s.png" not in images
    for name in images:
        assert (out / name).read_bytes()[:8] == PNG
    csv = pd.read_csv(out / "compare.csv")
    assert set(csv.columns) >= {"kind", "n", "mode", "metric", "A", "B", "delta", "ratio"}
    assert len(csv) == 8 * csv["metric"].nunique()


def test_compare_a_run_with_itself_is_identical(runs, tmp_path):
    a, _ = runs
    md = compare_runs(a, a, tmp_path / "self", metrics=["total"])
    text = md.read_text()
    assert "_Every model metric is identical in both runs._" in text
    assert "Changed between the runs" not in text
    assert (tmp_path / "self" / "toy_total.png").read_bytes()[:8] == PNG


def test_compare_default_out_and_errors(runs, tmp_path, capsys):
    a, b = runs
    assert cli.main(["compare", str(a), str(b)]) == 0
    default = b.parent.parent / "_compare" / f"{a.name}_vs_{b.name}" / "compare.md"
    assert capsys.readouterr().out.strip() == str(default) and default.is_file()
    assert cli.main(["compare", str(a), str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "RUN_B" in err and "expected a run folder" in err
