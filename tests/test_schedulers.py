"""kernels.schedulers vs the plain-Python reference (tests/naive/schedulers.py), hashes, API."""

from __future__ import annotations

import numpy as np
import pytest
from naive.schedulers import Service as NaiveService
from naive.schedulers import World, hsiphash, siphash

from harness.errors import UserError
from kernels import schedulers as S

ADDR_POOL = [0x0A000000 + i for i in range(1, 25)]
PORT_POOL = [80, 8080]
DADDRS = [0x0A600001, 0x0A600002, 0x0A600003, 0x0A600004]

CASES = [(name, 0) for name in S.SCHEDULERS] + [
    ("sh", S.SVC_F_SCHED1), ("sh", S.SVC_F_SCHED2), ("sh", S.SVC_F_SCHED1 | S.SVC_F_SCHED2),
    ("mh", S.SVC_F_SCHED1), ("mh", S.SVC_F_SCHED2), ("mh", S.SVC_F_SCHED1 | S.SVC_F_SCHED2),
]


@pytest.fixture(scope="module", autouse=True)
def _warm():
    S.warmup()


def _compare_state(st, svc, ids):
    keys = [d.key for d in svc.dests]
    got = [(int(st.addr[d]), int(st.port[d])) for d in S.service_dests(st, 0)]
    assert got == keys
    for d in svc.dests + svc.trash:
        k = ids[d.key]
        assert (int(st.weight[k]), int(st.last_weight[k])) == (d.weight, d.last_weight)
        assert (int(st.activeconns[k]), int(st.inactconns[k])) == (d.active, d.inact)
        assert int(st.flags[k]) == d.flags, d.key


def _run_sequence(sched, flags, seed, n_ops=250):
    """Random configuration changes, counter changes and decisions, applied to both models."""
    rng = np.random.default_rng(seed)
    st = S.new_state(1, 64, sched, flags, mh_table_size=251, sh_bits=6, lblc_entries=3,
                     lblcr_set_size=64, lblcr_expiration=50.0, seed=seed)
    world = World(seed, lb_entries=3, lblcr_expiration=50.0)
    svc = NaiveService(world, sched, flags, mh_m=251, sh_bits=6)
    ids: dict[tuple, int] = {}
    conns: list[list] = []  # [key, active]
    decisions = 0
    for _ in range(n_ops):
        op = rng.choice(["add", "remove", "weight", "thr", "sched", "sched", "sched", "sched",
                         "active", "inactive", "unbind", "time"],
                        p=[.12, .05, .07, .04, .16, .16, .1, .1, .06, .04, .07, .03])
        if op == "add" or not svc.dests:
            key = (int(rng.choice(ADDR_POOL)), int(rng.choice(PORT_POOL)))
            if any(d.key == key for d in svc.dests):
                continue
            w = int(rng.choice([0, 1, 1, 1, 2, 3, 5, 8]))
            svc.add(key[0], key[1], w)
            k = S.add_dest(st, 0, int(key[0]), key[1], w)
            assert k >= 0
            ids.setdefault(key, k)
            assert ids[key] == k
        elif op == "remove":
            d = svc.dests[rng.integers(len(svc.dests))]
            svc.remove(d)
            assert S.remove_dest(st, 0, ids[d.key]) == 0
        elif op == "weight":
            d = svc.dests[rng.integers(len(svc.dests))]
            w = int(rng.choice([0, 0, 1, 2, 3, 4, 6]))
            svc.set_weight(d, w)
            S.set_weight(st, 0, ids[d.key], w)
        elif op == "thr":
            d = svc.dests[rng.integers(len(svc.dests))]
            u = int(rng.choice([0, 2, 3, 4, 6]))
            lo = int(rng.integers(0, u + 1)) if u else 0
            svc.set_thresholds(d, u, lo)
            S.set_thresholds(st, 0, ids[d.key], u, lo)
        elif op == "sched":
            caddr = int(rng.integers(0, 2**32))
            cport = int(rng.integers(1024, 65536))
            daddr = int(rng.choice(DADDRS))
            want = svc.schedule(caddr, cport, daddr)
            got = S.schedule(st, 0, caddr, cport, daddr)
            decisions += 1
            if want is None:
                assert got == -1, (op, decisions)
            else:
                assert got >= 0 and (int(st.addr[got]), int(st.port[got])) == want.key, decisions
                svc.bind(want)
                S.bind(st, got)
                conns.append([want.key, False])
        elif op in ("active", "inactive", "unbind") and conns:
            c = conns[rng.integers(len(conns))]
            d = next(x for x in svc.dests + svc.trash if x.key == c[0])
            if op == "active" and not c[1]:
                svc.set_active(d)
                S.set_active(st, ids[c[0]])
                c[1] = True
            elif op == "inactive" and c[1]:
                svc.set_inactive(d)
                S.set_inactive(st, ids[c[0]])
                c[1] = False
            elif op == "unbind":
                svc.unbind(d, c[1])
                S.unbind(st, ids[c[0]], c[1])
                conns.remove(c)
        elif op == "time":
            world.now += 20.0
            S.set_time(st, world.now)
        _compare_state(st, svc, ids)
    return decisions


@pytest.mark.parametrize("sched,flags", CASES)
def test_kernel_matches_naive(sched, flags):
    total = 0
    for seed in range(6):
        total += _run_sequence(sched, flags, seed, n_ops=200)
    assert total > 250


@pytest.mark.slow
@pytest.mark.parametrize("sched,flags", CASES)
def test_kernel_matches_naive_many_seeds(sched, flags):
    for seed in range(10, 80):
        _run_sequence(sched, flags, seed, n_ops=400)


def test_hsiphash_kernel_test_vectors():
    """lib/test_siphash.c (64-bit): hsiphash of bytes 00..len-1, key 00..0f."""
    k0, k1 = 0x0706050403020100, 0x0F0E0D0C0B0A0908
    vectors = [0x050FC4DC, 0x7D57CA93, 0x4DC7D44D, 0xE7DDF7FB, 0x88D38328, 0x49533B67]
    for n, want in enumerate(vectors):
        assert hsiphash(bytes(range(n)), k0, k1) == want
    assert S.hsiphash_u32(0x03020100, k0, k1) == vectors[4]


def test_siphash24_reference_vectors():
    """The generic naive SipHash-c-d agrees with SipHash-2-4's published vectors."""
    k0, k1 = 0x0706050403020100, 0x0F0E0D0C0B0A0908
    assert siphash(b"", k0, k1, 2, 4) == 0x726FDB47DD0E0E31
    assert siphash(bytes(range(15)), k0, k1, 2, 4) == 0xA129CA6149BE45E5


def test_hsiphash_kernel_vs_naive_random_words():
    rng = np.random.default_rng(3)
    for v in rng.integers(0, 2**32, 200):
        for key in (S.MH_KEY1, S.MH_KEY2):
            assert S.hsiphash_u32(int(v), key, key) == hsiphash(int(v).to_bytes(4, "little"),
                                                                 key, key)


def test_services_are_independent():
    """Operations on one Service never change another Service's decisions."""
    n = len(S.SCHEDULERS)
    a = S.new_state(n, 8, np.arange(n), seed=1)
    b = S.new_state(n, 8, np.arange(n), seed=1)
    for s in range(n):
        S.add_dests(a, s, ADDR_POOL[:5], weights=[1, 2, 3, 1, 2])
        S.add_dests(b, s, ADDR_POOL[:5], weights=[1, 2, 3, 1, 2])
    svc = np.repeat(np.arange(n), 30)
    ca = np.arange(svc.size) * 7919 + 1
    out_a = S.schedule_batch(a, svc, ca, 5000, DADDRS[0], bind_conns=True)
    S.add_dests(b, 3, [ADDR_POOL[10]], weights=[9])  # churn in Service 3 of b only
    out_b = S.schedule_batch(b, svc, ca, 5000, DADDRS[0], bind_conns=True)
    rnd = {S.TWOS, S.STATISTIC, S.NUMGEN}  # share one random stream across Services
    for s in range(n):
        if s == 3 or s in rnd:
            continue
        sel = svc == s
        np.testing.assert_array_equal(out_a[sel], out_b[sel])


def test_rr_pointer_moves_to_previous_on_delete():
    st = S.new_state(1, 8, "rr")
    ids = S.add_dests(st, 0, [1, 2, 3, 4])  # list order 4 3 2 1
    order = list(S.service_dests(st, 0))
    assert order == list(ids[::-1])
    assert S.schedule(st, 0, 0, 0, 0) == order[0]
    assert S.schedule(st, 0, 0, 0, 0) == order[1]
    S.remove_dests(st, 0, order[1])  # pointer was on it: moves back to order[0]
    assert S.schedule(st, 0, 0, 0, 0) == order[2]


def test_weight_zero_and_overload_skip():
    for name in ("rr", "wrr", "lc", "wlc", "sed", "nq", "fo", "ovf", "twos", "lblcr"):
        st = S.new_state(1, 4, name)
        a, b = S.add_dests(st, 0, [1, 2], weights=[1, 1])
        S.update_weight(st, 0, b, 0)
        S.update_thresholds(st, 0, a, 1, 0)
        out = S.schedule_batch(st, np.zeros(3, dtype=np.int64), bind_conns=True)
        # a takes one conn, becomes OVERLOAD (1 >= u=1); b has weight 0: nothing else eligible
        assert list(out) == [a, -1, -1], name
        assert st.flags[a] & S.DEST_F_OVERLOAD
        S.unbind(st, a, False)
        assert not st.flags[a] & S.DEST_F_OVERLOAD


def test_overload_thresholds_hysteresis():
    st = S.new_state(1, 2, "rr")
    (d,) = S.add_dests(st, 0, [7])
    S.update_thresholds(st, 0, d, 8, 0)
    for _ in range(8):
        S.bind(st, d)
    assert st.flags[d] & S.DEST_F_OVERLOAD  # 8 >= u
    for _ in range(2):
        S.unbind(st, d, False)
    assert st.flags[d] & S.DEST_F_OVERLOAD  # 6*4 = 24 not < 24
    S.unbind(st, d, False)
    assert not st.flags[d] & S.DEST_F_OVERLOAD  # 5*4 < 24
    S.update_thresholds(st, 0, d, 8, 3)
    for _ in range(3):
        S.bind(st, d)
    assert st.flags[d] & S.DEST_F_OVERLOAD  # 8 >= 8
    S.unbind(st, d, False)
    S.unbind(st, d, False)
    S.unbind(st, d, False)
    S.unbind(st, d, False)
    assert st.flags[d] & S.DEST_F_OVERLOAD  # total 4, not < l=3
    S.unbind(st, d, False)
    S.unbind(st, d, False)
    assert not st.flags[d] & S.DEST_F_OVERLOAD  # 2 < 3
    S.bind(st, d)
    S.update_thresholds(st, 0, d, 1, 0)
    S.bind(st, d)
    assert st.flags[d] & S.DEST_F_OVERLOAD
    S.update_thresholds(st, 0, d, 0, 0)  # u = 0 clears
    assert not st.flags[d] & S.DEST_F_OVERLOAD


def test_mh_weight_zero_keeps_table_and_fallback():
    st = S.new_state(2, 8, "mh", [0, S.SVC_F_SCHED1], mh_table_size=251)
    for s in (0, 1):
        S.add_dests(st, s, ADDR_POOL[:4])
    t0 = st.table[st.tab_off[0]: st.tab_off[0] + 251].copy()
    victim = S.service_dests(st, 0)[1]
    S.update_weight(st, 0, victim, 0)
    np.testing.assert_array_equal(st.table[st.tab_off[0]: st.tab_off[0] + 251], t0)
    S.update_weight(st, 1, S.service_dests(st, 1)[1], 0)
    ca = (np.arange(2000, dtype=np.int64) * 2654435 + 17) % 2**32
    out0 = S.schedule_batch(st, np.zeros(2000, dtype=np.int64), ca)
    out1 = S.schedule_batch(st, np.ones(2000, dtype=np.int64), ca)
    lost = out0 == -1
    assert 0.1 < lost.mean() < 0.4  # the zero-weight dest's slots fail without fallback
    assert (out1 >= 0).all()  # fallback rehashes to an available dest
    np.testing.assert_array_equal(out1[~lost] - st.params[0], out0[~lost])


def test_work_counters():
    st = S.new_state(1, 16, "rr")
    S.add_dests(st, 0, ADDR_POOL[:10])
    S.reset_work(st)
    S.schedule_batch(st, np.zeros(100, dtype=np.int64))
    w = S.schedule_work(st)
    assert w["decisions"] == 100 and w["scanned"] == 100 and w["failed"] == 0
    st = S.new_state(1, 16, "mh", mh_table_size=251)
    S.add_dests(st, 0, ADDR_POOL[:10])
    assert S.schedule_work(st)["rebuild"] >= 251
    S.reset_work(st)
    S.schedule_batch(st, np.zeros(50, dtype=np.int64), np.arange(50))
    w = S.schedule_work(st)
    assert w["hashes"] == 50 and w["probes"] == 50


def test_lblc_gc_expires_idle_entries():
    st = S.new_state(1, 4, "lblc", lblc_bits=4, lblc_entries=8, lblc_expiration=600.0)
    S.add_dests(st, 0, [1, 2])
    S.schedule_batch(st, np.zeros(5, dtype=np.int64), 0, 0, np.arange(5) + 100)
    assert st.lb_count[0] == 5
    S.set_time(st, 100.0)
    S.schedule(st, 0, 0, 0, 100)  # refresh one entry
    S.set_time(st, 650.0)
    # runs 1..29 are partial checks (no pressure: 5 <= 16*16); run 30 is the full check
    for _ in range(30):
        S.lblc_check_expire(st, 0)
    assert st.lb_count[0] == 1  # only the entry used at t=100 (< 600 s idle) survives
    assert S.schedule(st, 0, 0, 0, 100) >= 0 and st.lb_count[0] == 1


def test_lblc_pool_full_uses_dest_without_caching():
    st = S.new_state(1, 4, "lblc", lblc_entries=2)
    S.add_dests(st, 0, [1, 2])
    out = S.schedule_batch(st, np.zeros(4, dtype=np.int64), 0, 0, [5, 6, 7, 8])
    assert (out >= 0).all() and st.lb_count[0] == 2


def test_lblcr_set_full_skips_insert():
    """A full lblcr set (lblcr_set_size) skips the insert, as a failed kmalloc does."""
    st = S.new_state(1, 4, "lblcr", lblcr_set_size=1)
    a, b = S.add_dests(st, 0, [1, 2])
    first = S.schedule(st, 0, 0, 0, 9)
    other = b if first == a else a
    st.activeconns[first] = 5  # > weight 1, and `other` has 2*0 < 1: is_overloaded
    assert S.schedule(st, 0, 0, 0, 9) == other
    e = st.lb_eoff[0]
    assert st.le_setn[e] == 1 and st.le_set[st.le_setoff[e]] == first


def test_revive_from_trash_keeps_counters():
    st = S.new_state(1, 4, "lc")
    (d,) = S.add_dests(st, 0, [9], ports=[443])
    S.bind(st, d)
    S.bind(st, d)
    S.remove_dests(st, 0, d)
    assert not st.flags[d] & S.DEST_F_AVAILABLE
    (d2,) = S.add_dests(st, 0, [9], ports=[443], weights=[3])
    assert d2 == d and st.inactconns[d] == 2 and st.weight[d] == 3


@pytest.mark.parametrize("call", [
    lambda: S.new_state(0, 4),
    lambda: S.new_state(1, 4, "bogus"),
    lambda: S.new_state(1, 4, "mh", mh_table_size=4000),
    lambda: S.new_state(1, 4, "sh", sh_bits=3),
    lambda: S.new_state(1, 4, "rr", flags=0x4),
    lambda: S.new_state(1, 300, "mh", mh_table_size=251),
    lambda: S.sched_id("round-robin"),
    lambda: S.maglev_populate([0], [1], None, 8),
    lambda: S.maglev_populate([7], [1], None, 7),
])
def test_bad_input_raises_user_error(call):
    with pytest.raises(UserError):
        call()


def test_bad_dest_operations_raise_user_error():
    st = S.new_state(2, 2, "rr")
    a, b = S.add_dests(st, 0, [1, 2])
    with pytest.raises(UserError):
        S.add_dests(st, 0, [3])  # full
    with pytest.raises(UserError):
        S.add_dests(st, 1, [5, 5])  # duplicate addr:port
    with pytest.raises(UserError):
        S.add_dests(st, 1, [6], weights=[-1])
    with pytest.raises(UserError):
        S.update_weight(st, 1, a, 2)  # a belongs to service 0
    with pytest.raises(UserError):
        S.update_thresholds(st, 0, a, 2, 3)
    with pytest.raises(UserError):
        S.schedule_batch(st, [2])
    S.remove_dests(st, 0, a)
    with pytest.raises(UserError):
        S.remove_dests(st, 0, a)
