"""nf_conntrack hash model: sizing rules, kernel vs naive, probe expectations."""

import numpy as np
import pytest
from naive.conntrack import build, find

from kernels import conntrack as ct


def test_default_sizes():
    assert ct.default_sizes("kube-proxy", ncpu=2) == (32768, 131072)
    assert ct.default_sizes("kube-proxy", ncpu=16) == (131072, 524288)
    assert ct.default_sizes("kernel", ram_bytes=8 << 30) == (262144, 262144)
    assert ct.default_sizes("kernel", ram_bytes=2 << 30) == (65536, 65536)
    assert ct.default_sizes("kernel", ram_bytes=64 << 20) == (1024, 1024)


@pytest.mark.parametrize("seed", range(6))
def test_table_and_lookups_match_naive(seed):
    tab = ct.build_table(800, 64 << (seed % 3), max_entries=10**6, seed=seed)
    tuples = list(zip(tab.saddr.tolist(), tab.sport.tolist(), tab.daddr.tolist(),
                      tab.dport.tolist(), tab.proto.tolist(), strict=True))
    ref = build(tuples, tab.rnd, tab.buckets)
    for b in range(tab.buckets):
        chain, i = [], tab.head[b]
        while i >= 0:
            chain.append(int(i))
            i = tab.nxt[i]
        assert chain == [i for i, _ in ref[b]]
    rng = np.random.default_rng(seed)
    sa = rng.integers(0, 2**32, 50)
    got = ct.first_packet_probes(tab, sa, np.full(50, 1234), np.full(50, 0x0A600001),
                                 np.full(50, 80), np.full(50, 6), np.full(50, 0x0A400001),
                                 np.full(50, 8080))
    for k in range(50):
        p1 = find(ref, (int(sa[k]), 1234, 0x0A600001, 80, 6), tab.rnd)[1]
        p3 = find(ref, (0x0A400001, 8080, int(sa[k]), 1234, 6), tab.rnd)[1]
        assert got[k] == 2 * p1 + p3


def test_established_probes_follow_chain_lengths():
    tab = ct.build_table(20_000, 4096, max_entries=10**6, seed=1)
    b = np.array([ct._bucket(*t, tab.rnd, tab.buckets) for t in zip(
        tab.saddr, tab.sport, tab.daddr, tab.dport, tab.proto, strict=True)])
    loads = np.bincount(b, minlength=tab.buckets)
    # uniform over tuples, first match: 1 + sum L(L+1)/2 / N (duplicates can only lower it)
    expected = 1 + (loads * (loads + 1) / 2).sum() / tab.saddr.shape[0]
    got = ct.established_probes(tab, 50_000, seed=2).mean()
    assert got == pytest.approx(expected, rel=0.03)


def test_table_full_is_refused():
    with pytest.raises(ValueError, match="nf_conntrack_max"):
        ct.build_table(200, 32, max_entries=100)
