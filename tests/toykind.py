"""Toy experiment kinds for the harness's own tests (fast, deterministic, a real numba kernel).

Used in-process through `harness.kinds.register` (tests/conftest.py) and in subprocesses through
KPBENCH_EXTRA_KINDS=toykind:KIND,toykind:KIND2 with tests/ on PYTHONPATH.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from numba import njit  # noqa: E402

from harness.kind import Figure, Kind, Param, Report  # noqa: E402


@njit(cache=True)
def _noisy_sum(n: int, rate: float, seed: int) -> float:
    np.random.seed(seed)
    total = 0.0
    for _ in range(n):
        total += np.random.random() * rate
    return total


def _run(params: dict, seed: int, calibration: dict) -> dict:
    if params["fail"]:
        raise RuntimeError("toy failure requested")
    if params["crash"]:
        os._exit(3)  # simulate a worker killed mid-point (use only with workers > 1)
    if params["sleep_s"]:
        time.sleep(params["sleep_s"])
    total = _noisy_sum(params["n"], params["rate"], seed)
    return {"total": total, "mean": total / params["n"], "count": params["n"],
            "scale": float(calibration.get("scale", 1.0)), "fast": params["mode"] == "fast"}


def _warmup() -> None:
    _noisy_sum(2, 1.0, 0)


def _check(point: dict) -> tuple[str, str] | None:
    if point["mode"] == "slow" and point["n"] > 100_000:
        return "n", "at most 100000 when mode = 'slow'"
    return None


def _report(df: pd.DataFrame, plots: Path) -> Report:
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for mode, sub in df.groupby("mode"):
        agg = sub.groupby("n")["mean"].mean()
        ax.plot(agg.index, agg.values, marker="o", label=f"mode={mode}")
    ax.set_xscale("log")
    ax.set_xlabel("n (draws)")
    ax.set_ylabel("mean of draws (1)")
    ax.legend()
    fig.savefig(plots / "toy_mean_vs_n.png", dpi=80)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.hist(df["wall_s"] * 1e3, bins=10, label="points")
    ax.set_xlabel("wall time per point (ms)")
    ax.set_ylabel("points (1)")
    ax.legend()
    fig.savefig(plots / "toy_wall.png", dpi=80)
    plt.close(fig)
    headline = df.groupby("n", as_index=False)["mean"].mean()
    return Report(
        figures=[Figure("toy_mean_vs_n.png", "Mean of uniform draws against the number of draws."),
                 Figure("toy_wall.png", "Distribution of per-point wall time.")],
        headline=headline,
        findings=[f"The overall mean of the draws is {df['mean'].mean():.3f} "
                  "(expected 0.5 x rate)."],
    )


PARAMS = (
    Param("n", int, 10, "number of random draws", min=1),
    Param("rate", float, 1.0, "scale of each draw", min=0.0),
    Param("mode", str, "fast", "toy mode", choices=("fast", "slow")),
    Param("scheduler", str, "rr", "toy scheduler name", choices=("rr", "wrr", "mh")),
    Param("fail", bool, False, "raise in run_point"),
    Param("crash", bool, False, "exit the worker process in run_point"),
    Param("sleep_s", float, 0.0, "sleep this long in run_point (for interruption tests)", min=0),
    Param("label", str, "x", "free-form string"),
)

KIND = Kind(name="toy", summary="toy kind for harness tests: sums seeded random draws",
            params=PARAMS, run_point=_run, warmup=_warmup, report=_report, check=_check,
            memory_bytes=lambda p: p["n"] * 8)


def _report_broken(df: pd.DataFrame, plots: Path) -> Report:
    raise ValueError("toy report is broken on purpose")


KIND2 = Kind(name="toy2", summary="second toy kind (its report always fails)",
             params=(Param("k", int, None, "required count", min=1, max=1000),
                     Param("mode", str, "a", "toy dataplane", choices=("a", "b"))),
             run_point=lambda p, seed, cal: {"value": p["k"] * 2 + seed % 7},
             warmup=lambda: None, report=_report_broken)
