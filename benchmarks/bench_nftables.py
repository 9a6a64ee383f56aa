"""nftables dispatch per second (kernels.nftables), beside a NumPy reference in the same run.

* ``test_dispatch[<services>]``: the ``services`` chain's ``service-ips`` verdict-map lookup
  (rhash, jhash over the 12-byte concat key) for 100,000 ClusterIP packets, at 1,000 and 100,000
  Services. ``extra_info``: ``lookups_per_s``, ``probes_per_lookup`` (flat in Services),
  ``numpy_lookups_per_s`` (NumPy lock-step chain walk with the kernel's bucket indices) and
  ``speedup_vs_numpy``.
* ``test_first_packets``: the whole first-packet path (filter checks, services, numgen vmap,
  endpoint chain, masquerading) at 100,000 Services.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from bench_ipvs import _np_walk, np_jhash3

from kernels import nftables as nft
from kernels.cluster import build_cluster
from kernels.traffic import make_packets

N = 100_000


@pytest.mark.parametrize("services", [1000, 100_000])
def test_dispatch(benchmark, record_info, warm_jit, services):
    c = build_cluster(services, 1, seed=0)
    t = nft.build_tables(c)
    pk = make_packets(c, "clusterip", N, seed=1)
    a, p, pr = pk.dst.astype(np.int64), pk.dport.astype(np.int64), pk.proto.astype(np.int64)
    warm_jit(nft.dispatch, t, a, p, pr)
    got, probes = benchmark(nft.dispatch, t, a, p, pr)
    assert (got >= 0).all()
    m = t.service_ips
    t0 = time.perf_counter()
    b = np_jhash3(a, pr, p, m.seed) & (m.buckets - 1)
    ref = _np_walk(m.head, m.nxt, b, lambda cur, k: (m.keys[cur, 0] == a[k])
                   & (m.keys[cur, 1] == pr[k]) & (m.keys[cur, 2] == p[k]))
    np_s = time.perf_counter() - t0
    assert (ref == probes).all()
    best = benchmark.stats.stats.min
    record_info(per_call=N, unit="lookups", services=services, elements=m.elements,
                buckets=m.buckets, probes_per_lookup=float(probes.mean()),
                numpy_lookups_per_s=N / np_s, speedup_vs_numpy=np_s / best)


def test_first_packets(benchmark, record_info, warm_jit):
    c = build_cluster(100_000, 10, seed=0)
    t = nft.build_tables(c)
    pk = make_packets(c, "clusterip", N, seed=1)
    args = (pk.src, pk.dst, pk.dport, pk.proto, 3)
    warm_jit(nft.first_packets, t, *args)
    out = benchmark(nft.first_packets, t, *args)
    record_info(per_call=N, unit="packets", services=100_000,
                ops_per_packet=float((out["lookups"] + out["rules"]).mean()))
