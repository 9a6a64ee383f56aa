"""Validation cases 3-11 of spec/validation.md for kernels.schedulers (fixed seeds, tolerances
stated per test)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from naive.schedulers import Service as NaiveService
from naive.schedulers import World

from kernels import schedulers as S


@pytest.fixture(scope="module", autouse=True)
def _warm():
    S.warmup()


def _chi2_sf(x: float, df: int) -> float:
    """Upper tail of the chi-square distribution, Q(df/2, x/2), by the gamma series."""
    a, z = df / 2.0, x / 2.0
    if z <= 0:
        return 1.0
    term = total = 1.0 / a
    k = 1
    while term > 1e-17 * total:
        term *= z / (a + k)
        total += term
        k += 1
    lower = math.exp(-z + a * math.log(z) - math.lgamma(a)) * total
    return max(0.0, 1.0 - lower)


def _counts(st, out, ids):
    return np.array([(out == d).sum() for d in ids])


def test_chi2_helper_against_known_quantiles():
    # chi2.ppf(0.999, df) = 16.266 (df 3), 27.877 (df 9)
    assert abs(_chi2_sf(16.266, 3) - 0.001) < 2e-5
    assert abs(_chi2_sf(27.877, 9) - 0.001) < 2e-5


@pytest.mark.parametrize("n", [2, 7, 10])
def test_case3_statistic_cascade_uniform(n):
    """Case 3: each endpoint 1/n overall; chi-square over 1e6 draws must not reject at
    p = 0.001. Also case 16's LB part: rules evaluated average (n+1)/2 within 1 %."""
    m = 1_000_000
    st = S.new_state(1, 16, "statistic", seed=20 + n)
    ids = S.add_dests(st, 0, np.arange(n) + 1)
    S.reset_work(st)
    out = S.schedule_batch(st, np.zeros(m, dtype=np.int64))
    counts = _counts(st, out, ids)
    assert counts.sum() == m
    chi2 = float(((counts - m / n) ** 2 / (m / n)).sum())
    assert _chi2_sf(chi2, n - 1) > 0.001, (chi2, counts)
    rules = S.schedule_work(st)["scanned"] / m
    assert abs(rules - (n + 1) / 2) / ((n + 1) / 2) < 0.01


def test_case3_probabilities_are_ten_decimal_strings():
    thr = S.statistic_thresholds(1001)
    assert thr[3] == round(0.3333333333 * 2**31)
    assert thr[7] == round(0.1428571429 * 2**31)
    assert thr[1] == 2**31


@pytest.mark.parametrize("name", ["rr", "userspace_rr"])
@pytest.mark.parametrize("n", [3, 7, 10])
def test_case4_round_robin_counts_differ_by_at_most_one(name, n):
    st = S.new_state(1, 16, name, seed=n)
    ids = S.add_dests(st, 0, np.arange(n) + 1)
    for m in (n * 10, 1000, 1001):
        counts = _counts(st, S.schedule_batch(st, np.zeros(m, dtype=np.int64)), ids)
        assert counts.sum() == m and counts.max() - counts.min() <= 1


def test_case5_wrr_cycle():
    """Case 5: weights A=4, B=3, C=2 in list order A, B, C -> A A B A B C A B C, exactly.
    Adding the dests one by one leaves cw = 1 (wrr_dest_changed keeps cw <= mw), so the first
    three decisions are the tail pass of a cycle (A B C) before full cycles begin."""
    st = S.new_state(1, 4, "wrr")
    c, b, a = S.add_dests(st, 0, [3, 2, 1], weights=[2, 3, 4])
    assert list(S.service_dests(st, 0)) == [a, b, c]
    out = list(S.schedule_batch(st, np.zeros(3 + 9 * 5, dtype=np.int64)))
    cycle = [a, a, b, a, b, c, a, b, c]
    assert out[:3] == [a, b, c]
    assert out[3:] == cycle * 5


def _with_counters(name, spec):
    """Service with dests (A, I, weight) given in list order (first = newest)."""
    st = S.new_state(1, 8, name)
    ids = S.add_dests(st, 0, np.arange(len(spec))[::-1] + 1, weights=[w for *_, w in spec][::-1])
    ids = ids[::-1]
    for d, (a, i, _) in zip(ids, spec, strict=True):
        st.activeconns[d] = a
        st.inactconns[d] = i
    return st, ids


def test_case6_ties_go_to_newest_and_overhead_definitions():
    """Case 6: ties -> first in list = most recently added; lc overhead 256A+I; sed/nq A+1."""
    for name in ("lc", "wlc", "sed", "nq"):
        st, ids = _with_counters(name, [(0, 0, 1), (0, 0, 1), (0, 0, 1)])
        assert S.schedule(st, 0, 0, 0, 0) == ids[0], name
    # lc: X = (A=1, I=0) -> 256 ; Y = (0, I) -> I
    for inact, want in ((255, 1), (256, 0), (257, 0)):
        st, ids = _with_counters("lc", [(1, 0, 1), (0, inact, 1)])
        assert S.schedule(st, 0, 0, 0, 0) == ids[want], inact
    st, ids = _with_counters("lc", [(0, 257, 1), (1, 0, 1)])
    assert S.schedule(st, 0, 0, 0, 0) == ids[1]
    # wlc: 512/2 == 256/1 -> tie -> first
    st, ids = _with_counters("wlc", [(2, 0, 2), (1, 0, 1)])
    assert S.schedule(st, 0, 0, 0, 0) == ids[0]
    st, ids = _with_counters("wlc", [(2, 1, 2), (1, 0, 1)])
    assert S.schedule(st, 0, 0, 0, 0) == ids[1]
    # sed ignores inactconns: (A+1)/w
    st, ids = _with_counters("sed", [(1, 0, 1), (0, 10_000, 1)])
    assert S.schedule(st, 0, 0, 0, 0) == ids[1]
    st, ids = _with_counters("sed", [(1, 0, 2), (0, 0, 1)])  # 2/2 == 1/1 -> first
    assert S.schedule(st, 0, 0, 0, 0) == ids[0]
    # nq: first idle dest wins outright, even against a better SED score
    st, ids = _with_counters("nq", [(3, 0, 100), (0, 50, 1), (0, 0, 1)])
    assert S.schedule(st, 0, 0, 0, 0) == ids[1]
    st, ids = _with_counters("nq", [(3, 0, 100), (1, 0, 1)])  # 4/100 < 2/1
    assert S.schedule(st, 0, 0, 0, 0) == ids[0]


def test_case7_twos_first_draw_shares():
    """Case 7: with 4 equal weights and no connections, per-draw shares are 0.4/0.2/0.2/0.2
    (the first dest gets (w1+1)/(W+1)); within 1 percentage point over 1e6 draws."""
    m = 1_000_000
    st = S.new_state(1, 4, "twos", seed=7)
    S.add_dests(st, 0, [1, 2, 3, 4])
    order = S.service_dests(st, 0)
    shares = _counts(st, S.schedule_batch(st, np.zeros(m, dtype=np.int64)), order) / m
    np.testing.assert_allclose(shares, [0.4, 0.2, 0.2, 0.2], atol=0.01)


@pytest.mark.parametrize("name", ["sh", "dh"])
@pytest.mark.parametrize("n,allowed", [(3, {85, 86}), (4, {64}), (8, {32}), (10, {25, 26})])
def test_case8_hash_bucket_counts(name, n, allowed):
    st = S.new_state(1, 16, name)
    ids = S.add_dests(st, 0, np.arange(n) + 1)
    table = st.table[st.tab_off[0]: st.tab_off[0] + 256]
    counts = np.array([(table == d).sum() for d in ids])
    assert counts.sum() == 256 and set(counts.tolist()) <= allowed
    if n == 3:
        assert sorted(counts.tolist()) == [85, 85, 86]


def test_case9_maglev_toy_table():
    """Case 9 (Maglev NSDI'16 Table 1): M=7; B1 (3, 4), B2 (0, 2), B3 (3, 1)."""
    t = S.maglev_populate([3, 0, 3], [4, 2, 1], None, 7)
    assert list(t) == [1, 0, 1, 0, 2, 2, 0]  # B2 B1 B2 B1 B3 B3 B1
    t = S.maglev_populate([3, 3], [4, 1], None, 7)
    assert list(t) == [0, 0, 0, 0, 1, 1, 1]  # B1 B1 B1 B1 B3 B3 B3


def test_case10_maglev_balance():
    """Case 10: unweighted, every backend owns floor(M/N) or ceil(M/N) slots: N=1000,
    M=65537 -> 65 or 66 (kernel hashes for the permutations; M outside the kernel list)."""
    n = 1000
    addrs = 0x0A000000 + np.arange(n, dtype=np.int64)
    ports = np.full(n, 8080, dtype=np.int64)
    for m in (65537, 65521):
        offs, skips = S.maglev_permutation(addrs, ports, m)
        t = S.maglev_populate(offs, skips, None, m)
        counts = np.bincount(t, minlength=n)
        assert counts.sum() == m and set(counts.tolist()) <= {m // n, m // n + 1}
    st = S.new_state(1, n, "mh", mh_table_size=65521)
    ids = S.add_dests(st, 0, addrs, 8080)
    table = st.table[: 65521]
    counts = np.bincount(table - ids.min(), minlength=n)
    assert set(counts.tolist()) <= {65, 66}


def _moved_fraction(name, n, k, seed, keys=100_000):
    st = S.new_state(1, n, name, mh_table_size=4093, seed=seed)
    ids = S.add_dests(st, 0, 0x0A000000 + np.arange(n))
    rng = np.random.default_rng(seed)
    caddr = rng.integers(0, 2**32, keys)
    svc = np.zeros(keys, dtype=np.int64)
    before = S.schedule_batch(st, svc, caddr, 0, caddr)
    gone = rng.choice(ids, k, replace=False)
    S.remove_dests(st, 0, gone)
    after = S.schedule_batch(st, svc, caddr, 0, caddr)
    assert (after >= 0).all() and not np.isin(after, gone).any()
    return float((before != after).mean())


@pytest.mark.parametrize("n,k", [(10, 1), (20, 3), (100, 1)])
def test_case11_disruption(n, k):
    """Case 11: removing k of N moves at least k/N of the keys (sampling slack 1 pp); mh stays
    within 3 points of the optimum; sh and dh (cyclic refill) move most keys (> 50 %)."""
    optimum = k / n
    mh = _moved_fraction("mh", n, k, 1)
    assert optimum - 0.01 <= mh <= optimum + 0.03, mh
    for name in ("sh", "dh"):
        moved = _moved_fraction(name, n, k, 1)
        assert moved > 0.5, (name, moved)


def test_mh_large_weights_shift_rule_matches_naive():
    """mh turns = (last_weight / gcd) >> rshift, rshift = fls(max/gcd) - 6 (spec A.8), with
    weights big enough to make rshift > 0; kernel and naive tables identical."""
    weights = [1, 1000, 250, 64, 3]
    st = S.new_state(1, 8, "mh", mh_table_size=251)
    ids = S.add_dests(st, 0, 0x0A000001 + np.arange(5), 80, weights)
    svc = NaiveService(World(0), "mh", 0, mh_m=251)
    for i, w in enumerate(weights):
        svc.add(0x0A000001 + i, 80, w)
    assert st.mh_gcd[0] == 1 and st.mh_rshift[0] == 10 - 4  # M=251: IP_VS_MH_TAB_BITS = 4
    key_of = {int(d): (int(st.addr[d]), int(st.port[d])) for d in ids}
    table = [key_of[int(d)] for d in st.table[:251]]
    assert table == [d.key for d in svc.table]
    counts = {k: table.count(k) for k in set(table)}
    assert counts[(0x0A000002, 80)] > 10 * counts[(0x0A000001, 80)]
