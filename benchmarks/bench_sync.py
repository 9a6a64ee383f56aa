"""Sync-loop kernel (kernels.sync.simulate_sync) against the plain-Python runner, same run.

Events = endpoint changes + syncs simulated. The plain-Python reference (tests/naive/sync.py) is
timed in the same process on the same stream; ``extra_info`` holds both rates and their ratio.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest

from kernels import sync as K

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from naive.sync import NaiveRunner  # noqa: E402

CASES = {"iptables-partial": ("iptables", True), "ipvs-full": ("ipvs", False)}


def _inputs(mode: str, n_services: int, rate: float, horizon: float):
    sizes, const = K.sizes_from_counts(mode, np.full(n_services, 10), np.ones(n_services),
                                       np.zeros(n_services))
    arr, sv = K.change_stream("poisson", rate, horizon, n_services, seed=1)
    return arr, sv, sizes, const, K.cost_vector(mode, K.COST_DEFAULTS)


@pytest.mark.parametrize("case", list(CASES))
def test_sync_loop_events_per_s(benchmark, warm_jit, record_info, case) -> None:
    mode, partial = CASES[case]
    horizon = 300.0
    arr, sv, sizes, const, cost = _inputs(mode, 1000, 50.0, horizon)
    kw = dict(partial_sync=partial, t_end=2 * horizon)
    out = warm_jit(K.simulate_sync, arr, sv, sizes, const, cost, mode, **kw)
    events = arr.size + out["start"].size

    best_ref = float("inf")
    for _ in range(2):
        t0 = time.perf_counter()
        ref = NaiveRunner(arr, sv, sizes, const, cost, mode, partial, True, 1.0, 30.0, 2,
                          3600.0, 2 * horizon).loop()
        best_ref = min(best_ref, time.perf_counter() - t0)
    assert len(ref.syncs) == out["start"].size

    benchmark(K.simulate_sync, arr, sv, sizes, const, cost, mode, **kw)
    best = benchmark.stats.stats.min
    record_info(per_call=events, unit="events", changes=int(arr.size),
                syncs=int(out["start"].size), reference_events_per_s=events / best_ref,
                speedup_vs_python=best_ref / best)
