"""iptables traversal throughput (kernels.iptables.traverse) beside a NumPy reference.

``test_traversal[<services>]``: kube-proxy's rules for ``services`` ClusterIP Services x 10
endpoints (100,000 Services = 3.2 M rules, 100,001 in KUBE-SERVICES), 1,000 first packets to
uniformly chosen ClusterIPs, every hook they cross (nat PREROUTING, filter FORWARD, nat
POSTROUTING). Reference: tests/naive/iptables.py ``numpy_traverse``, the same traversal of the
nat hook vectorised over packets in lock-step, timed once in the same session. ``extra_info``:
``rules_per_s`` (kernel), ``numpy_rules_per_s``, ``speedup_vs_numpy`` (target >= 3),
``rules_per_packet``, ``rules``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from kernels import iptables as ipt
from kernels.cluster import build_cluster
from kernels.traffic import make_packets

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from naive.iptables import numpy_traverse  # noqa: E402

N_PACKETS = 1000


@pytest.fixture(scope="module", params=[10_000, pytest.param(100_000, marks=pytest.mark.slow)])
def ruleset(request):
    c = build_cluster(request.param, 10, seed=0)
    return c, ipt.compile_cluster(c)


def test_traversal(benchmark, record_info, warm_jit, ruleset):
    c, rs = ruleset
    pk = make_packets(c, "clusterip", N_PACKETS, seed=1)
    warm_jit(ipt.traverse, rs, pk, seed=2)
    res = benchmark(ipt.traverse, rs, pk, seed=2)
    assert (res.verdict == ipt.V_ACCEPT).all() and res.dnat.all()
    rules = int(res.rules_evaluated.sum())
    t0 = time.perf_counter()
    ref = numpy_traverse(rs, pk, seed=2)
    np_s = time.perf_counter() - t0
    np_rules = int(ref["rules_nat"].sum())
    # same traversal: the mean nat path agrees within 1 % (statistic draws differ in order)
    assert abs(np_rules - int(res.rules_nat.sum())) < 0.01 * np_rules
    best = benchmark.stats.stats.min
    record_info(per_call=rules, unit="rules", services=c.n_services, rules=rs.n_rules,
                rules_per_packet=rules / N_PACKETS, numpy_rules_per_s=np_rules / np_s,
                speedup_vs_numpy=(rules / best) / (np_rules / np_s))
