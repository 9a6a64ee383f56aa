"""Userspace proxy model (spec B.4): linear portal walk vs naive, round robin (case 4)."""

import numpy as np
import pytest
from naive.userspace import RoundRobin, first_packet_rules

from kernels import userspace as us
from kernels.cluster import build_cluster
from kernels.traffic import make_packets


@pytest.mark.parametrize("seed", range(6))
def test_rules_match_naive(seed):
    c = build_cluster(120, 3, type_mix=(0.5, 0.5, 0, 0), external_ip_fraction=0.2, seed=seed)
    r = us.build_rules(c)
    portals = list(zip(r.p_dst.tolist(), r.p_proto.tolist(), r.p_dport.tolist(),
                       r.p_port.tolist(), strict=True))
    nodeports = list(zip(r.n_proto.tolist(), r.n_dport.tolist(), r.n_port.tolist(), strict=True))
    local = set(r.local_addrs.tolist())
    for traffic in ("clusterip", "nodeport", "miss"):
        pk = make_packets(c, traffic, 200, seed=seed)
        out = us.first_packets(r, pk.dst, pk.dport, pk.proto)
        for k in range(len(pk)):
            rules, port = first_packet_rules(portals, nodeports, local, int(pk.dst[k]),
                                             int(pk.dport[k]), int(pk.proto[k]), None)
            assert int(out["rules"][k]) == rules
            assert (out["dest"][k] >= 0) == (port >= 0)


def test_round_robin_counts_differ_by_at_most_one():
    """Validation case 4: strict round robin over equal endpoints."""
    c = build_cluster(1, 7, seed=0)
    r = us.build_rules(c)
    pk = make_packets(c, "clusterip", 1000, seed=1)
    out = us.first_packets(r, pk.dst, pk.dport, pk.proto)
    counts = np.bincount(out["dest"], minlength=7)
    assert counts.max() - counts.min() <= 1
    rr = RoundRobin()
    ref = [rr.pick(0, 7) for _ in range(1000)]
    assert (out["dest"] - c.ep_ptr[0]).tolist() == ref


def test_portal_walk_is_linear_in_service_ports():
    """Uniform hits on R portal rules evaluate (R+1)/2 of them on average (+ fixed rules)."""
    c = build_cluster(500, 1, seed=3)
    r = us.build_rules(c)
    pk = make_packets(c, "clusterip", 100_000, seed=4)
    out = us.first_packets(r, pk.dst, pk.dport, pk.proto)
    R = r.p_dst.shape[0]
    # 1 jump + position + (proxy connect: 2 rules + the whole HOST chain R)
    expected = 1 + (R + 1) / 2 + 2 + R
    assert out["rules"].mean() == pytest.approx(expected, rel=0.01)


def test_shuffle_seed_permutes_then_round_robins():
    """Spec B.4: LoadBalancerRR shuffles the endpoint list, resets the index to 0 and then goes
    strictly round robin: every cycle of n picks is the same permutation of the n endpoints."""
    c = build_cluster(3, 9, seed=2)
    r = us.build_rules(c)
    pk = make_packets(c, "clusterip", 900, seed=3)
    plain = us.first_packets(r, pk.dst, pk.dport, pk.proto)
    orders = []
    for seed in (5, 6):
        out = us.first_packets(r, pk.dst, pk.dport, pk.proto, shuffle_seed=seed)
        again = us.first_packets(r, pk.dst, pk.dport, pk.proto, shuffle_seed=seed)
        assert np.array_equal(out["dest"], again["dest"])
        assert np.array_equal(out["rules"], plain["rules"])
        for p in range(3):
            d = (out["dest"][pk.port == p] - c.ep_ptr[p]).tolist()
            assert sorted(d[:9]) == list(range(9))
            assert all(d[i] == d[i % 9] for i in range(len(d)))
            orders.append(tuple(d[:9]))
    assert len(set(orders)) > 1 and any(o != tuple(range(9)) for o in orders)
