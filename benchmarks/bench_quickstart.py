"""A full quickstart run, end to end: ``kpbench run experiments/quickstart.toml`` in a fresh
interpreter (config, JIT warm-up from numba's on-disk cache, every point, parquet, report and
plots), with one worker so the figure does not depend on how many cores are free. Outside the
quick subset.
``extra_info``: points run and the run's own total of per-point ``wall_s``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "experiments" / "quickstart.toml"
CLI = "import sys; from harness.cli import main; sys.exit(main(sys.argv[1:]))"


def _run(out: Path) -> None:
    env = {**os.environ, "MPLBACKEND": "Agg"}
    subprocess.run([sys.executable, "-c", CLI, "run", str(QUICKSTART), "--out", str(out),
                    "--workers", "1", "--quiet"],
                   cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL)


def test_quickstart_run(benchmark, tmp_path: Path) -> None:
    if not QUICKSTART.exists():
        pytest.skip(f"{QUICKSTART.relative_to(REPO)} does not exist yet")
    _run(tmp_path / "warm")  # fills numba's on-disk cache, as any second run finds it

    def fresh_out() -> tuple[tuple, dict]:
        return (Path(tempfile.mkdtemp(dir=tmp_path)),), {}

    benchmark.pedantic(_run, setup=fresh_out, rounds=2, iterations=1)
    tables = sorted((tmp_path / "warm").glob("*/*/points.parquet"))
    if tables:
        points = pd.read_parquet(tables[0])
        benchmark.extra_info["point_runs"] = len(points)
        benchmark.extra_info["sum_wall_s"] = float(points["wall_s"].sum())
    shutil.rmtree(tmp_path, ignore_errors=True)
