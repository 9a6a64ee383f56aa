"""Scheduler decisions per second (kernels.schedulers), beside the plain-Python reference.

* ``test_decisions[<sched>-<n>]``: one timed call makes K decisions for one Service with n
  equal-weight backends (n = 10 and 1,000), clients drawn at random, one VIP (as under
  kube-proxy). No connections are bound, so lc/wlc/... scan the full list every time.
  ``extra_info``: ``decisions_per_s`` (fastest round), the pure-Python reference's rate measured
  in the same session (``naive_decisions_per_s``) and their ratio (``speedup_vs_naive``), plus
  the kernel's own work counters per decision (``scanned_per_decision``, ``probes_...``).
* ``test_mh_table_build``: one Maglev table rebuild (ip_vs_mh_reassign) with M = 65521 and
  N = 1,000 dests, vs the naive Python populate.

Target (issue 8): every O(1) scheduler (``O1_SCHEDULERS``) >= 20 M decisions/s on one core.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest

from kernels import schedulers as S

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from naive.schedulers import MH_KEY1, MH_KEY2, World, maglev_populate, mh_hashkey  # noqa: E402
from naive.schedulers import Service as NaiveService  # noqa: E402

VIP = 0x0A600001
SIZES = (10, pytest.param(1000, marks=pytest.mark.slow))


def _decisions_per_call(name: str, n: int) -> int:
    linear = name not in S.O1_SCHEDULERS and name != "lblc"
    return 20_000 if (linear and n >= 1000) else 200_000


def _inputs(k: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    svc = np.zeros(k, dtype=np.int64)
    caddr = rng.integers(0, 2**32, k, dtype=np.int64)
    cport = rng.integers(1024, 65536, k, dtype=np.int64)
    daddr = np.full(k, VIP, dtype=np.int64)
    return svc, caddr, cport, daddr


def _state(name: str, n: int) -> S.SchedState:
    st = S.new_state(1, n, name, S.SVC_F_SCHED2 if name == "mh" else 0, seed=1)
    S.add_dests(st, 0, 0x0A000000 + np.arange(n), 8080)
    return st


def _naive_rate(name: str, n: int, k: int = 2000) -> float:
    world = World(1)
    svc = NaiveService(world, name, S.SVC_F_SCHED2 if name == "mh" else 0)
    for i in range(n):
        svc.add(0x0A000000 + i, 8080, 1)
    _, caddr, cport, _ = _inputs(k, 2)
    t0 = time.perf_counter()
    for i in range(k):
        svc.schedule(int(caddr[i]), int(cport[i]), VIP)
    return k / (time.perf_counter() - t0)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("name", S.SCHEDULERS)
def test_decisions(benchmark, record_info, warm_jit, name, n):
    k = _decisions_per_call(name, n)
    st = _state(name, n)
    svc, caddr, cport, daddr = _inputs(k)
    out = np.empty(k, dtype=np.int64)
    warm_jit(S._schedule_batch, st, svc, caddr, cport, daddr, out, False)
    assert (out >= 0).all()
    S.reset_work(st)
    S._schedule_batch(st, svc, caddr, cport, daddr, out, False)
    work = S.schedule_work(st)
    benchmark(S._schedule_batch, st, svc, caddr, cport, daddr, out, False)
    naive = _naive_rate(name, n, 2000 if n == 10 else 200)
    best = benchmark.stats.stats.min
    record_info(
        per_call=k, unit="decisions", scheduler=name, backends=n, decisions_per_call=k,
        naive_decisions_per_s=naive, speedup_vs_naive=(k / best) / naive,
        o1=name in S.O1_SCHEDULERS,
        scanned_per_decision=work["scanned"] / k, probes_per_decision=work["probes"] / k,
        hashes_per_decision=work["hashes"] / k, random_per_decision=work["random"] / k,
    )


def test_mh_table_build(benchmark, record_info, warm_jit):
    n, m = 1000, 65521
    st = S.new_state(1, n, "mh", mh_table_size=m)
    ids = S.add_dests(st, 0, 0x0A000000 + np.arange(n), 8080)
    warm_jit(S.set_weight, st, 0, ids[0], 1)
    benchmark(S.set_weight, st, 0, ids[0], 1)
    t0 = time.perf_counter()
    offs = [mh_hashkey(0x0A000000 + i, 8080, MH_KEY1, 0) % m for i in range(n)]
    skips = [mh_hashkey(0x0A000000 + i, 8080, MH_KEY2, 0) % (m - 1) + 1 for i in range(n)]
    maglev_populate(offs, skips, [1] * n, m)
    naive_s = time.perf_counter() - t0
    best = benchmark.stats.stats.min
    record_info(per_call=m, unit="slots", table_size=m, dests=n, naive_build_s=naive_s,
                speedup_vs_naive=naive_s / best, build_ms=best * 1e3)
