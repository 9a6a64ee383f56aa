"""kernels.iptables.traverse: ipt_do_table semantics (spec C.1) against plain-Python and NumPy
references, and validation cases 2, 3 and 16 (spec/validation.md)."""

from __future__ import annotations

import numpy as np
import pytest
from naive.iptables import naive_traverse, numpy_traverse

from harness.iptables_text import parse_save
from kernels import iptables as ipt
from kernels.cluster import build_cluster
from kernels.traffic import TRAFFIC_CLASSES, make_packets, packets

FIELDS = ("verdict", "dnat", "dnat_addr", "dnat_port", "marked", "masquerade", "mark",
          "rules_evaluated", "matches_tested", "jumps", "rules_nat", "rules_filter",
          "rules_post", "watch_rules")


def _assert_same(kernel: ipt.TraversalResult, naive: dict, what: str) -> None:
    for f in FIELDS:
        got = getattr(kernel, f)
        assert np.array_equal(got, naive[f].astype(got.dtype)), f"{what}: {f}"


def _mixed_cluster(seed: int):
    return build_cluster(
        12, 3, endpoint_dist="poisson", type_mix=(0.4, 0.3, 0.2, 0.1), affinity_fraction=0.3,
        affinity_timeout_s=50, external_ip_fraction=0.3, lb_source_range_fraction=0.5,
        ext_local_fraction=0.4, int_local_fraction=0.2, local_endpoint_fraction=0.4, seed=seed)


@pytest.mark.parametrize("seed", range(6))
def test_kernel_matches_naive_on_compiled_rulesets(seed):
    c = _mixed_cluster(seed)
    rs = ipt.compile_cluster(c, masquerade_all=seed % 3 == 1,
                             cluster_cidr_detector=seed % 3 != 2,
                             localhost_nodeports=seed % 2 == 0)
    watch = rs.find_chain("KUBE-SERVICES", ipt.TABLE_NAT)
    for traffic in TRAFFIC_CLASSES:
        try:
            pk = make_packets(c, traffic, 150, n_clients=8, rate=0.2, seed=seed)
        except ValueError:
            continue  # no port of that class in this small cluster
        for hook in ("prerouting", "output"):
            k = ipt.traverse(rs, pk, seed=seed, hook=hook, watch_chain=watch)
            n = naive_traverse(rs, pk, seed=seed, hook=hook, watch_chain=watch)
            _assert_same(k, n, f"seed {seed} {traffic} {hook}")


HANDMADE = """\
*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:A - [0:0]
:B - [0:0]
:C - [0:0]
:D - [0:0]
-A PREROUTING -p tcp -m multiport --dports 80,8000:8100 -j A
-A PREROUTING ! -p tcp -j MARK --set-xmark 0x1/0xff
-A PREROUTING -m mark --mark 0x1/0xff -j RETURN
-A PREROUTING -s 10.0.0.0/8 -g B
-A PREROUTING -j C
-A PREROUTING -p udp -m udp --sport 53 -j DNAT --to-destination 10.9.9.9
-A A -m recent --update --seconds 5 --name hot -j DNAT --to-destination 10.1.1.1:81
-A A -m statistic --mode random --probability 0.25 -m recent --set --name hot -j RETURN
-A A ! -d 192.168.0.0/16 -m tcp ! --dport 8050 -j B
-A A -m addrtype ! --src-type LOCAL -j MARK --or-mark 0x4000
-A B -m statistic --mode random ! --probability 0.5 -j RETURN
-A B -m conntrack --ctstate NEW -j D
-A B -j MARK --xor-mark 0x2
-A C -m recent --rcheck --name hot --mask 255.255.255.255 --rsource -j DROP
-A C -m recent --remove --name hot --mask 255.255.255.255 --rsource
-A D -m addrtype --dst-type LOCAL -j REJECT
-A D -m statistic --mode random --probability 0.3 -j RETURN
-A D -d 192.168.5.0/24 -j DNAT --to-destination 10.2.2.2:8080
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:F - [0:0]
-A FORWARD -m mark --mark 0x4000/0x4000 -j ACCEPT
-A FORWARD -m conntrack --ctstate DNAT -j F
-A F -p tcp -m tcp --dport 8080 -j ACCEPT
-A F -m conntrack ! --ctstate NEW -j DROP
-A INPUT -d 127.0.0.0/8 -j ACCEPT
-A INPUT -p udp -j DROP
-A OUTPUT -j F
COMMIT
"""


@pytest.mark.parametrize("seed", range(8))
def test_kernel_matches_naive_on_handwritten_rules(seed):
    """Goto, RETURN from jumped and goto'd chains, policies, MARK, multiport, recent
    set/update/rcheck/remove, negations, DNAT state seen by conntrack in filter."""
    rs = parse_save(HANDMADE, source="handmade")
    rng = np.random.default_rng(seed)
    n = 400
    dst_pool = np.array([0xC0A80505, 0xC0A80A0A, 0x0A000001, 0x7F000001, 0x08080808],
                        dtype=np.uint32)
    src_pool = np.array([0x0A000005, 0x0A000006, 0xC0A80001, 0x64400001, 0x7F000001],
                        dtype=np.uint32)
    pk = packets(src_pool[rng.integers(0, 5, n)], dst_pool[rng.integers(0, 5, n)],
                 rng.choice([53, 80, 8050, 8080, 8099, 9000], n),
                 proto=rng.choice([6, 17], n), sport=rng.choice([53, 1000, 40000], n),
                 time=np.cumsum(rng.exponential(1.0, n)))
    local = [0xC0A80A0A]
    for hook in ("prerouting", "output"):
        k = ipt.traverse(rs, pk, seed=seed, hook=hook, local_addrs=local, watch_chain=4)
        nv = naive_traverse(rs, pk, seed=seed, hook=hook, local_addrs=local, watch_chain=4)
        _assert_same(k, nv, f"handmade seed {seed} {hook}")
    assert set(np.unique(k.verdict)) >= {ipt.V_ACCEPT, ipt.V_DROP}


def test_goto_and_return_semantics():
    """A goto does not push: RETURN in the goto'd chain goes back past the goto-ing chain."""
    text = """*nat
:PREROUTING ACCEPT [0:0]
:X - [0:0]
:Y - [0:0]
-A PREROUTING -j X
-A PREROUTING -j DNAT --to-destination 1.1.1.1
-A X -g Y
-A X -j DNAT --to-destination 2.2.2.2
-A Y -j RETURN
-A Y -j DNAT --to-destination 3.3.3.3
COMMIT
"""
    rs = parse_save(text)
    res = ipt.traverse(rs, packets("10.0.0.1", "10.0.0.2", 80))
    assert res.dnat_addr[0] == 0x01010101
    assert res.rules_nat[0] == 4 and res.jumps[0] == 2
    # With -j instead of -g, RETURN comes back into X.
    res = ipt.traverse(rs := parse_save(text.replace("-g Y", "-j Y")), packets("10.0.0.1",
                                                                                "10.0.0.2", 80))
    assert res.dnat_addr[0] == 0x02020202 and rs.n_rules == 6


def test_numpy_reference_agrees_without_statistic():
    c = build_cluster(80, 1, type_mix=(0.6, 0.4, 0.0, 0.0), seed=9)
    rs = ipt.compile_cluster(c)
    for traffic in ("clusterip", "nodeport", "miss"):
        pk = make_packets(c, traffic, 300, seed=1)
        k = ipt.traverse(rs, pk, seed=0)
        ref = numpy_traverse(rs, pk, seed=0)
        assert np.array_equal(k.rules_nat, ref["rules_nat"]), traffic
        assert np.array_equal(k.dnat_addr, ref["dnat_addr"].astype(np.uint32)), traffic
        assert np.array_equal(k.marked, ref["marked"]), traffic


def test_numpy_reference_statistics_agree():
    c = build_cluster(50, 6, seed=2)
    rs = ipt.compile_cluster(c)
    pk = make_packets(c, "clusterip", 20_000, seed=3)
    k = ipt.traverse(rs, pk, seed=1)
    ref = numpy_traverse(rs, pk, seed=1)
    # Same traversal, different draw order: mean path lengths agree within 1 %.
    assert abs(k.rules_nat.mean() - ref["rules_nat"].mean()) < 0.01 * k.rules_nat.mean()


def test_session_affinity_sticks_until_timeout():
    c = build_cluster(1, 5, affinity_fraction=1.0, affinity_timeout_s=100, seed=4)
    rs = ipt.compile_cluster(c)
    clients = (0x64400000 + np.arange(200)).astype(np.uint32)
    ip, port = c.svc_cluster_ip[0], int(c.port_port[0])
    times = np.concatenate([np.zeros(200), np.full(200, 60.0), np.full(200, 300.0)])
    pk = packets(np.tile(clients, 3), ip, port, time=times)
    res = ipt.traverse(rs, pk, seed=5)
    first, again, late = res.dnat_addr[:200], res.dnat_addr[200:400], res.dnat_addr[400:]
    assert np.array_equal(first, again)  # within the timeout: same endpoint
    assert (late != again).sum() >= 100  # after it: re-balanced (expected 160 of 200 change)
    assert res.rules_nat[200:400].mean() < res.rules_nat[:200].mean() + 5


# ---- validation cases --------------------------------------------------------------------


@pytest.mark.parametrize("n, cov, jain", [(10, 0.0300, 0.9991), (100, 0.0995, 0.990)])
def test_validation_case_2_uniform_assignment(n, cov, jain):
    """Validation case 2: counts over n endpoints are Binomial(m, 1/n), CoV = sqrt((n-1)/m);
    mean over 20 seeds within 5 %."""
    m = 10_000
    c = build_cluster(1, n, seed=0)
    rs = ipt.compile_cluster(c)
    covs, jains = [], []
    for seed in range(20):
        pk = make_packets(c, "clusterip", m, seed=seed)
        res = ipt.traverse(rs, pk, seed=seed)
        counts = np.bincount(np.searchsorted(c.ep_ip, res.dnat_addr), minlength=n)
        covs.append(counts.std() / counts.mean())
        jains.append(counts.sum() ** 2 / (n * (counts.astype(float) ** 2).sum()))
    assert abs(np.mean(covs) - cov) < 0.05 * cov
    assert abs(np.mean(jains) - jain) < 0.05 * (1 - jain) + 1e-4


@pytest.mark.parametrize("n, critical", [(3, 13.816), (7, 22.458), (10, 27.877)])
def test_validation_case_3_cascade_chi_square(n, critical):
    """Validation case 3: the 10-decimal cascade gives every endpoint 1/n; chi-square over
    10^6 draws must not reject at p = 0.001 (critical values for n - 1 degrees of freedom)."""
    m = 1_000_000
    c = build_cluster(1, n, seed=1)
    rs = ipt.compile_cluster(c)
    pk = make_packets(c, "clusterip", m, seed=2)
    res = ipt.traverse(rs, pk, seed=3)
    counts = np.bincount(np.searchsorted(c.ep_ip, res.dnat_addr), minlength=n)
    expected = m / n
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert counts.sum() == m
    assert chi2 < critical


def test_validation_case_16_expected_rule_evaluations():
    """Validation case 16: uniform popularity, random order: mean KUBE-SERVICES rules for a
    ClusterIP hit = (R+1)/2, a miss evaluates all of them, KUBE-SVC load-balancing rules
    average (n+1)/2 — model means within 1 % over 10^5 connections."""
    services, n = 400, 10
    c = build_cluster(services, n, seed=7)
    rs = ipt.compile_cluster(c)
    watch = rs.find_chain("KUBE-SERVICES", ipt.TABLE_NAT)
    total = int(rs.rules_per_chain()[watch])
    R = total - 1  # service rules before the final KUBE-NODEPORTS rule
    pk = make_packets(c, "clusterip", 100_000, seed=8)
    res = ipt.traverse(rs, pk, seed=9, watch_chain=watch)
    assert abs(res.watch_rules.mean() - (R + 1) / 2) < 0.01 * (R + 1) / 2
    # nat path: PREROUTING jump, KUBE-SERVICES, masquerade rule, LB rules, SEP (2 rules)
    lb_rules = res.rules_nat - 1 - res.watch_rules - 1 - 2
    assert lb_rules.min() == 1 and lb_rules.max() == n
    assert abs(lb_rules.mean() - (n + 1) / 2) < 0.01 * (n + 1) / 2
    miss = ipt.traverse(rs, make_packets(c, "miss", 2000, seed=10), seed=11, watch_chain=watch)
    assert (miss.watch_rules == total).all()
    assert (miss.rules_nat == 1 + total).all() and not miss.dnat.any()
