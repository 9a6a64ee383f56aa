"""IPVS lookups per second (kernels.ipvs), beside a NumPy reference measured in the same run.

* ``test_service_lookups``: 100,000 ClusterIP Services + their NodePort virtual servers in the
  kernel's 256-bucket service table (~390 per bucket), 100,000 lookups of random virtual
  servers. Reference: the same lookups vectorised in NumPy (hash, then a masked walk of the
  chains in lock-step). ``extra_info``: ``lookups_per_s``, ``probes_per_lookup``,
  ``numpy_lookups_per_s``, ``speedup_vs_numpy``.
* ``test_conn_lookups[<bits>]`` (both outside the quick subset, see conftest.SLOW_NAMES): 10^6
  live connections in a 2^12 / 2^20-bucket connection
  table, 100,000 established-packet lookups; same reference.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from kernels import ipvs
from kernels.cluster import build_cluster

N_LOOKUPS = 100_000
M32 = 0xFFFFFFFF


def _np_rol(x, k):
    return ((x << k) | (x >> (32 - k))) & M32


def np_jhash3(w0, w1, w2, initval):
    """Linux jhash over three words (= jhash_3words), vectorised on int64 arrays."""
    a = b = c = (0xDEADBEEF + 12 + initval) & M32
    a, b, c = (a + w0) & M32, (b + w1) & M32, (c + w2) & M32
    for x, y, z, k in (("c", "b", "c", 14), ("a", "c", "a", 11), ("b", "a", "b", 25),
                       ("c", "b", "c", 16), ("a", "c", "a", 4), ("b", "a", "b", 14),
                       ("c", "b", "c", 24)):
        v = {"a": a, "b": b, "c": c}
        r = ((v[x] ^ v[y]) - _np_rol(v[y], k)) & M32
        if z == "a":
            a = r
        elif z == "b":
            b = r
        else:
            c = r
    return c


def _bswap32(x):
    return (((x & 0xFF) << 24) | ((x & 0xFF00) << 8) | ((x >> 8) & 0xFF00) | ((x >> 24) & 0xFF))


def _np_walk(head, nxt, buckets, match):
    """Walk chains for many keys in lock-step with NumPy; returns probes per key."""
    cur = head[buckets]
    probes = np.ones(buckets.shape[0], dtype=np.int64)
    active = np.ones(buckets.shape[0], dtype=bool)
    while True:
        live = active & (cur >= 0)
        if not live.any():
            return probes
        probes[live] += 1
        hit = np.zeros_like(live)
        hit[live] = match(cur[live], np.nonzero(live)[0])
        active &= ~hit
        cur = np.where(live & ~hit, nxt[np.maximum(cur, 0)], np.where(hit, cur, -1))


@pytest.fixture(scope="module")
def big_tables():
    c = build_cluster(100_000, 1, type_mix=(0.365, 0.635, 0, 0), nodeport_range=(1024, 65535),
                      seed=0)
    return ipvs.build_tables(c)


def test_service_lookups(benchmark, record_info, warm_jit, big_tables):
    t = big_tables
    rng = np.random.default_rng(1)
    idx = rng.integers(0, t.virtual_servers, N_LOOKUPS)
    a, p, pr = t.vs_addr[idx], t.vs_port[idx], t.vs_proto[idx]
    warm_jit(ipvs.service_lookups, t, a, p, pr)
    hit, probes = benchmark(ipvs.service_lookups, t, a, p, pr)
    assert (hit == idx).all()
    t0 = time.perf_counter()
    b = (pr ^ ((a ^ t.fold) & 0xFFFFFFFF) ^ (p >> t.svc_bits) ^ p) & ((1 << t.svc_bits) - 1)
    ref = _np_walk(t.svc_head, t.svc_next, b,
                   lambda cur, k: (t.vs_addr[cur] == a[k]) & (t.vs_port[cur] == p[k])
                   & (t.vs_proto[cur] == pr[k]))
    np_s = time.perf_counter() - t0
    assert (ref == probes).all()
    best = benchmark.stats.stats.min
    record_info(per_call=N_LOOKUPS, unit="lookups", virtual_servers=t.virtual_servers,
                probes_per_lookup=float(probes.mean()), numpy_lookups_per_s=N_LOOKUPS / np_s,
                speedup_vs_numpy=np_s / best)


@pytest.mark.parametrize("bits", [12, 20])
def test_conn_lookups(benchmark, record_info, warm_jit, big_tables, bits):
    conn = ipvs.build_conn_table(big_tables, 1_000_000, conn_bits=bits, seed=2)
    rng = np.random.default_rng(3)
    j = rng.integers(0, conn.entries, N_LOOKUPS)
    args = (conn.caddr[j], conn.cport[j], conn.proto[j], conn.vaddr[j], conn.vport[j])
    warm_jit(ipvs.conn_lookups, conn, *args)
    hit, probes = benchmark(ipvs.conn_lookups, conn, *args)
    assert (hit >= 0).all()
    t0 = time.perf_counter()
    port_raw = ((args[1] & 0xFF) << 8) | ((args[1] >> 8) & 0xFF)
    b = (np_jhash3(_bswap32(args[0]), port_raw, args[2], conn.rnd) ^ conn.fold) & ((1 << bits) - 1)
    ref = _np_walk(conn.head, conn.nxt, b,
                   lambda cur, k: (conn.cport[cur] == args[1][k]) & (conn.caddr[cur] == args[0][k])
                   & (conn.vaddr[cur] == args[3][k]) & (conn.vport[cur] == args[4][k]))
    np_s = time.perf_counter() - t0
    assert (ref == probes).all()
    best = benchmark.stats.stats.min
    record_info(per_call=N_LOOKUPS, unit="lookups", live_connections=conn.entries,
                buckets=1 << bits, probes_per_lookup=float(probes.mean()),
                numpy_lookups_per_s=N_LOOKUPS / np_s, speedup_vs_numpy=np_s / best)
