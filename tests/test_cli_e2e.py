"""End-to-end CLI: a tiny two-kind config gives parquet, manifest, plots and a report."""

from __future__ import annotations

import argparse
import json
import re
import subprocess

import pandas as pd
import pytest

from harness import cli

TINY = """
name = "tiny"
description = "Tiny end-to-end experiment."
seed = 4
repeats = 2
[report]
title = "Tiny report"
html = true
[[part]]
kind = "toy"
grid = {n = {logspace = [1, 1000, 4]}, mode = ["fast", "slow"]}
fixed = {rate = 2.0}
[[part]]
kind = "toy2"
grid = {k = [1, 2]}
"""


@pytest.fixture
def tiny_run(toy_kinds, tmp_path, capsys):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY)
    out = tmp_path / "results"
    code = cli.main(["run", str(cfg), "--out", str(out), "--workers", "2", "--quiet"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    run = out / "tiny" / captured.out.strip().splitlines()[-1].rsplit("/", 1)[-1]
    assert run.is_dir() and captured.out.strip().endswith(str(run))
    return run, captured.err


def test_run_folder_contents(tiny_run):
    run, err = tiny_run
    for name in ("config.toml", "resolved.json", "manifest.json", "points.parquet", "report.md",
                 "report.html"):
        assert (run / name).is_file(), name
    assert not (run / "journal").exists()  # consolidated and cleaned up once complete
    df = pd.read_parquet(run / "points.parquet")
    assert len(df) == (4 * 2 + 2) * 2
    assert list(df.columns[:3]) == ["kind", "part", "point"]
    assert {"n", "mode", "rate", "k", "repeat", "seed", "total", "value", "wall_s"} <= set(df)
    assert list(df.columns).index("n") < list(df.columns).index("repeat") < \
        list(df.columns).index("total")
    assert not df.duplicated(["part", "point", "repeat"]).any()
    assert (df["wall_s"] >= 0).all()


def test_manifest_provenance(tiny_run):
    run, _ = tiny_run
    m = json.loads((run / "manifest.json").read_text())
    assert m["status"] == "complete" and m["experiment"] == "tiny"
    assert m["start_time"] and m["end_time"]
    for package in ("numba", "llvmlite", "numpy", "pandas"):
        assert m["packages"][package], package
    assert m["python"].count(".") == 2
    assert m["cpu_model"] and m["cores"] >= 1
    assert set(m["git"]) == {"commit", "dirty"}
    assert len(m["point_wall_s"]) == 20 and m["points_done"] == 20
    assert m["kinds"] == ["toy", "toy2"]
    assert m["metrics"]["toy2"] == ["value"]


def test_report_embeds_every_plot(tiny_run):
    run, err = tiny_run
    report = (run / "report.md").read_text()
    plots = sorted(p.name for p in (run / "plots").glob("*.png"))
    assert plots == ["toy_mean_vs_n.png", "toy_wall.png"]
    for name in plots:
        assert f"](plots/{name})" in report
    embedded = re.findall(r"!\[([^\]]+)\]\(plots/([^)]+)\)", report)
    assert {f for _, f in embedded} == set(plots)
    assert "Mean of uniform draws against the number of draws.\n\n![" in report
    assert report.startswith("# Tiny report")
    assert "Tiny end-to-end experiment." in report
    assert "| n | mean |" in report  # headline table
    assert "The overall mean of the draws is" in report  # findings
    # toy2's report raises: one warning line, the data stays, the rest of the report is written
    assert "report of kind toy2 failed: ValueError" in err
    assert "its points are in points.parquet" in report


def test_report_command_rewrites_report(tiny_run, capsys):
    run, _ = tiny_run
    (run / "report.md").unlink()
    assert cli.main(["report", str(run)]) == 0
    assert (run / "report.md").is_file()
    assert cli.main(["report", str(run / "nope")]) == 2
    assert "expected a run folder" in capsys.readouterr().err


def test_list_shows_kinds_dataplanes_schedulers(toy_kinds, tmp_path, capsys):
    (tmp_path / "exp.toml").write_text("name='e1'\nkind='toy'\n")
    assert cli.main(["list", "--experiments", str(tmp_path), "--params"]) == 0
    out = capsys.readouterr().out
    assert "e1" in out and "kinds: toy" in out
    assert "toy " in out and "sums seeded random draws" in out
    assert re.search(r"Dataplanes.*\n(.*\n)*\s+fast\s+\(kinds: [^)]*toy", out)
    assert re.search(r"Schedulers.*\n(.*\n)*\s+wrr\s+\(kinds: [^)]*toy", out)
    assert "n         int; default 10; >= 1 — number of random draws" in out


def _all_parsers():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return parser, sub.choices


def test_every_option_of_every_command_is_explained():
    parser, commands = _all_parsers()
    assert {"run", "report", "list"} <= set(commands)
    for name, sub in commands.items():
        assert sub.description, name
        for action in sub._actions:
            assert action.help and action.help.strip(), f"{name} {action.option_strings}"


@pytest.mark.parametrize("args", [[], ["run"], ["report"], ["list"]])
def test_help_in_subprocess(kpbench_cmd, args):
    proc = subprocess.run([*kpbench_cmd, *args, "--help"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: kpbench")
    if args == ["run"]:
        for option in ("--out", "--set", "--workers", "--resume", "--calibration", "--executor",
                       "--no-report"):
            assert option in proc.stdout


def test_unknown_subcommand_is_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["frobnicate"])
    assert info.value.code == 2
