"""IPVS model (spec A.1, A.2, B.2): kernel hash keys, tables vs naive references."""

import numpy as np
import pytest
from naive.ipvs import conn_find, conn_table, svc_find, svc_table

from kernels import ipvs
from kernels.cluster import build_cluster
from kernels.jhash import jhash_3words
from kernels.traffic import make_packets


def test_svc_bucket_hand_computed():
    tcp, vip = 6, 0x0A600001  # 10.96.0.1
    # netns pointer 0: a = 0x0A600001; (6 ^ 0x..01 ^ (80 >> 8 = 0) ^ 80) & 255 = 0x07 ^ 0x50 = 87
    assert ipvs.svc_bucket(tcp, vip, 80, netns_ptr=0) == 87
    # port 8080 = 0x1F90: 6 ^ 0x01 ^ 0x1F ^ 0x90 = 0x07 ^ 0x1F ^ 0x90 = 0x18 ^ 0x90 = 0x88 = 136
    assert ipvs.svc_bucket(tcp, vip, 8080, netns_ptr=0) == 136
    # default netns 0xFFFF888003A4C000: fold = (ptr >> 8) & 0xffffffff = 0x8003A4C0,
    # a = 0x0A600001 ^ 0x8003A4C0 = 0x8A63A4C1; 6 ^ 0xC1 ^ 0 ^ 0x50 = 0xC7 ^ 0x50 = 0x97 = 151
    assert ipvs.svc_bucket(tcp, vip, 80) == 151
    # UDP 53 on 10.96.0.10, netns 0: 17 ^ 0x0A ^ 0 ^ 53 = 0x11 ^ 0x0A ^ 0x35 = 0x1B ^ 0x35 = 46
    assert ipvs.svc_bucket(17, 0x0A60000A, 53, netns_ptr=0) == 46
    # 4 bits: shift by 4; 6 ^ 0x01 ^ (80 >> 4 = 5) ^ 0x50 = 0x07 ^ 0x05 ^ 0x50 = 0x52; & 15 = 2
    assert ipvs.svc_bucket(tcp, vip, 80, netns_ptr=0, bits=4) == 2


def test_conn_bucket_uses_network_order_words():
    rnd, ptr = 0x12345678, ipvs.DEFAULT_NETNS_PTR
    addr, port = 0x0A400005, 40000
    raw_a = int.from_bytes(addr.to_bytes(4, "big"), "little")
    raw_p = int.from_bytes(port.to_bytes(2, "big"), "little")
    h = jhash_3words(raw_a, raw_p, 6, rnd) ^ ((ptr >> 8) & 0xFFFFFFFF)
    assert ipvs.conn_bucket(addr, port, 6, rnd, ptr, bits=12) == h & 4095


def _cluster(seed, n=300):
    return build_cluster(n, 3, type_mix=(0.5, 0.3, 0.2, 0.0), external_ip_fraction=0.2,
                         node_ips=("192.168.0.10", "192.168.0.11"), seed=seed)


@pytest.mark.parametrize("seed", range(8))
def test_service_lookups_match_naive(seed):
    c = _cluster(seed)
    bits = (8, 6, 10, 3)[seed % 4]
    t = ipvs.build_tables(c, svc_bits=bits, seed=seed)
    ref = svc_table(t.vs_addr.tolist(), t.vs_port.tolist(), t.vs_proto.tolist(),
                    ipvs.DEFAULT_NETNS_PTR, bits)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, t.virtual_servers, 400)
    daddr = t.vs_addr[idx].copy()
    dport = t.vs_port[idx].copy()
    daddr[::3] ^= 0x100  # misses too
    hit, probes = ipvs.service_lookups(t, daddr, dport, t.vs_proto[idx])
    for k in range(idx.shape[0]):
        want = svc_find(ref, int(t.vs_proto[idx[k]]), int(daddr[k]), int(dport[k]),
                        ipvs.DEFAULT_NETNS_PTR, bits)
        assert (int(hit[k]), int(probes[k])) == want


@pytest.mark.parametrize("seed", range(6))
def test_connection_table_matches_naive(seed):
    c = _cluster(seed, 50)
    t = ipvs.build_tables(c, seed=seed)
    conn = ipvs.build_conn_table(t, 3000, conn_bits=8 + seed, seed=seed)
    ref = conn_table(conn.caddr.tolist(), conn.cport.tolist(), conn.proto.tolist(),
                     conn.vaddr.tolist(), conn.vport.tolist(), conn.rnd,
                     ipvs.DEFAULT_NETNS_PTR, conn.bits)
    # chains: same membership and order
    for b in range(0, 1 << conn.bits, 7):
        chain, i = [], conn.head[b]
        while i >= 0:
            chain.append(int(i))
            i = conn.nxt[i]
        assert chain == [it[0] for it in ref.buckets[b]]
    # lookups (live flows and new clients) equal the naive walk
    rng = np.random.default_rng(seed)
    j = rng.integers(0, conn.entries, 300)
    ca, cp = conn.caddr[j].copy(), conn.cport[j].copy()
    cp[::4] = rng.integers(1024, 65536, cp[::4].shape[0])  # mostly misses
    hit, probes = ipvs.conn_lookups(conn, ca, cp, conn.proto[j], conn.vaddr[j], conn.vport[j])
    for k in range(j.shape[0]):
        want = conn_find(ref, int(ca[k]), int(cp[k]), 6, int(conn.vaddr[j[k]]),
                         int(conn.vport[j[k]]), conn.rnd, ipvs.DEFAULT_NETNS_PTR, conn.bits)
        assert (int(hit[k]), int(probes[k])) == want
    est = ipvs.established_probes(conn, 20_000, seed)
    loads = np.bincount(ipvs._conn_buckets(conn.caddr, conn.cport, conn.proto, conn.rnd,
                                           conn.fold, conn.bits, True), minlength=1 << conn.bits)
    expected = 1 + (loads * (loads + 1) / 2).sum() / conn.entries  # uniform over live flows
    assert est.mean() == pytest.approx(expected, rel=0.03)


def test_hit_probes_equal_bucket_load_distribution():
    """Looking every virtual server up once: mean probes - 1 = sum over VS of chain position / V
    = sum over buckets L(L+1)/2 / V (exact, first-match positions)."""
    c = build_cluster(5000, 1, type_mix=(0.6, 0.4, 0, 0), nodeport_range=(1024, 65535), seed=3)
    t = ipvs.build_tables(c)
    loads = t.svc_chain_lengths()
    expected = (loads * (loads + 1) / 2).sum() / t.virtual_servers
    _, probes = ipvs.service_lookups(t, t.vs_addr, t.vs_port, t.vs_proto)
    assert probes.mean() - 1 == pytest.approx(expected, rel=1e-12)
    # random uniform traffic over virtual servers: within 2 % of the same expectation
    rng = np.random.default_rng(1)
    idx = rng.integers(0, t.virtual_servers, 200_000)
    _, p = ipvs.service_lookups(t, t.vs_addr[idx], t.vs_port[idx], t.vs_proto[idx])
    assert p.mean() - 1 == pytest.approx(expected, rel=0.02)


def test_first_packets_hit_the_right_virtual_server_and_count():
    c = _cluster(1)
    t = ipvs.build_tables(c)
    conn = ipvs.build_conn_table(t, 1000)
    rng = np.random.default_rng(2)
    idx = rng.integers(0, t.virtual_servers, 2000)
    out = ipvs.first_packets(t, conn, np.full(2000, 0x0A400005), rng.integers(1024, 65535, 2000),
                             t.vs_addr[idx], t.vs_port[idx], t.vs_proto[idx])
    assert (t.vs_addr[out["vs"]] == t.vs_addr[idx]).all()
    assert (t.vs_port[out["vs"]] == t.vs_port[idx]).all()
    assert (out["sched_steps"] == 1).all()
    s = t.vs_service[out["vs"]]
    assert ((out["dest"] >= c.ep_ptr[s]) & (out["dest"] < c.ep_ptr[s + 1])).all()
    assert (out["svc_probes"] >= 2).all()
    # a destination outside every table: no IPVS work
    miss = ipvs.first_packets(t, conn, np.full(5, 0x0A400005), np.full(5, 40000),
                              np.full(5, 0xC6120001), np.full(5, 80), np.full(5, 6))
    assert (miss["svc_probes"] == 0).all() and (miss["vs"] == -1).all()


def test_resizable_table_grows_with_services():
    c = build_cluster(3000, 1, seed=0)
    fixed = ipvs.build_tables(c)
    res = ipvs.build_tables(c, svc_table="resizable")
    assert fixed.svc_bits == 8
    assert res.svc_bits == 11  # 3000 VS: smallest 2^b with 3000 <= 2 * 2^b
    _, pf = ipvs.service_lookups(fixed, fixed.vs_addr, fixed.vs_port, fixed.vs_proto)
    _, pr = ipvs.service_lookups(res, res.vs_addr, res.vs_port, res.vs_proto)
    assert pr.mean() < pf.mean() / 2


def test_virtual_servers_per_service_kind():
    c = build_cluster(40, 2, type_mix=(0.5, 0.5, 0, 0), external_ip_fraction=0.5,
                      node_ips=("192.168.0.10", "192.168.0.11", "192.168.0.12"), seed=4)
    vs = ipvs.virtual_servers(c)
    n_np = int((c.port_nodeport > 0).sum())
    assert vs["addr"].shape[0] == c.n_ports + c.extip_ip.shape[0] + 3 * n_np


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("traffic", ["clusterip", "nodeport", "lb", "external", "miss"])
def test_nat_chains_match_naive_walk(seed, traffic):
    """Spec B.2 / C.1: the ipvs-mode nat chains walked rule by rule by the kernel give exactly
    the per-packet rules, extension matches, jumps and ipset probes of a hand-written walk."""
    from naive.ipvs import ipvs_nat

    c = build_cluster(60, 3, type_mix=(0.4, 0.3, 0.3, 0), external_ip_fraction=0.3,
                      lb_source_range_fraction=0.5, udp_fraction=0.3, seed=seed)
    t = ipvs.build_tables(c, seed=seed)
    conn = ipvs.build_conn_table(t, 200, seed=seed)
    pk = make_packets(c, traffic, 120, seed=seed + 10)
    src = pk.src.astype(np.int64)
    if traffic == "lb":  # a third from outside any source range: KUBE-MARK-DROP
        src[::3] = 0x08080808 + np.arange(src[::3].shape[0])
    out = ipvs.first_packets(t, conn, src, pk.sport, pk.dst, pk.dport, pk.proto)
    for k in range(len(pk)):
        ref = ipvs_nat(t, int(src[k]), int(pk.dst[k]), int(pk.dport[k]), int(pk.proto[k]),
                       int(out["dest"][k]), int(out["vs"][k]))
        got = (out["rules"][k], out["matches"][k], out["jumps"][k], out["set_probes"][k],
               bool(out["dropped"][k]))
        assert tuple(int(x) for x in got[:4]) + (got[4],) == ref, (k, got, ref)
    if traffic == "lb" and t.lb_fw_set.elements:
        assert out["dropped"].any() and (out["dest"][out["dropped"]] == -1).all()


def test_nat_rules_layout():
    c = build_cluster(30, 2, type_mix=(0.5, 0.2, 0.3, 0), external_ip_fraction=0.3,
                      lb_source_range_fraction=1.0, seed=3)
    nat = ipvs.build_tables(c).nat
    per_chain = np.diff(nat.chain_ptr).tolist()
    # PREROUTING 1, POSTROUTING 1, KUBE-SERVICES 7 (LB jump, CI masq, 2 external, NodePort,
    # CI accept, LB accept), KUBE-MARK-MASQ 1, KUBE-NODE-PORT 2, KUBE-LOAD-BALANCER 2,
    # KUBE-FIREWALL 2, KUBE-MARK-DROP 1, KUBE-POSTROUTING 4
    assert per_chain == [1, 1, 7, 1, 2, 2, 2, 1, 4]
    only_ci = ipvs.build_tables(build_cluster(10, 2, seed=0)).nat
    assert np.diff(only_ci.chain_ptr).tolist() == [1, 1, 3, 1, 2, 1, 1, 1, 4]


@pytest.mark.parametrize("traffic, expect", [
    # (rules, extension matches, jumps, set probes) for a ClusterIP-only cluster, pod source
    ("clusterip", (11, 5, 3, None)),
])
def test_clusterip_packet_exact_counts(traffic, expect):
    """Hand count: PREROUTING jump (1), KUBE-SERVICES: CI masq rule fails on -s (1), addrtype
    LOCAL -> KUBE-NODE-PORT (1): tcp rule set miss (1), udp rule -p fails (1), RETURN (1); CI
    accept hits (1) = 7 rules, 3 matches, 2 jumps; POSTROUTING jump (1), LOOP-BACK miss (1),
    mark RETURN (1), policy (1) = 4 rules, 2 matches, 1 jump."""
    c = build_cluster(20, 2, seed=5)
    t = ipvs.build_tables(c)
    conn = ipvs.build_conn_table(t, 10)
    pk = make_packets(c, traffic, 50, seed=1)
    out = ipvs.first_packets(t, conn, pk.src, pk.sport, pk.dst, pk.dport, pk.proto)
    np_hit = t.nodeport_bitmap[0, pk.dport.astype(np.int64)]
    assert not np_hit.any()
    assert (out["rules"] == expect[0]).all() and (out["matches"] == expect[1]).all()
    assert (out["jumps"] == expect[2]).all()
