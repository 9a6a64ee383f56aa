"""kernels.iptables.compile_cluster lays rules out as kube-proxy does (spec B.1)."""

from __future__ import annotations

import numpy as np
import pytest

from kernels import iptables as ipt
from kernels.cluster import SVC_CLUSTERIP, build_cluster, port_service


def _chain(rs: ipt.Ruleset, name: str, table: int = ipt.TABLE_NAT) -> range:
    c = rs.find_chain(name, table)
    assert c >= 0, name
    return range(int(rs.chain_start[c]), int(rs.chain_end[c]))


def test_chain_names_match_kube_proxy():
    # Names from kube-proxy's own unit tests (pkg/proxy/iptables/proxier_test.go).
    assert "KUBE-SVC-" + ipt.hash16("ns1/svc1:p80tcp") == "KUBE-SVC-XPGD46QRK7WJZT7O"
    assert "KUBE-SEP-" + ipt.hash16("ns1/svc1:p80tcp10.180.0.1:80") == (
        "KUBE-SEP-SXIVWICOYRO3J4NJ")


@pytest.mark.parametrize("n", [1, 2, 5, 10])
@pytest.mark.parametrize("detector", [True, False])
def test_clusterip_rule_counts(n, detector):
    """Per ClusterIP service port with n endpoints: 3n + 2 nat rules (3n + 1 without the
    masquerade rule), 1 + n chains (spec B.1)."""
    s = 7
    c = build_cluster(s, n, seed=3)
    rs = ipt.compile_cluster(c, cluster_cidr_detector=detector)
    counts = rs.counts()
    fixed_nat = 3 + 3 + 1 + 1  # builtin jumps, KUBE-POSTROUTING, KUBE-MARK-MASQ, final rule
    per_port = 3 * n + (2 if detector else 1)
    assert counts["nat_rules"] == fixed_nat + s * per_port
    assert counts["chains"] == len(ipt._FIXED_CHAINS) + s * (1 + n)
    assert counts["kube_services_rules"] == s + 1
    assert counts["filter_rules"] == 12


def test_affinity_adds_n_rules():
    c0 = build_cluster(5, 4, seed=1)
    c1 = build_cluster(5, 4, seed=1, affinity_fraction=1.0)
    assert ipt.compile_cluster(c1).n_rules == ipt.compile_cluster(c0).n_rules + 5 * 4
    rs = ipt.compile_cluster(c1)
    # n rcheck rules in every SVC chain and one --set on every DNAT rule
    recent = rs.m_kind == ipt.M_RECENT
    assert (rs.m_b[recent] == ipt.RECENT_RCHECK).sum() == 20
    assert (rs.m_b[recent] == ipt.RECENT_SET).sum() == 20
    assert (rs.m_c[recent & (rs.m_b == ipt.RECENT_RCHECK)] == 10800).all()


def test_kube_services_order_and_last_rule():
    c = build_cluster(50, 2, seed=5)
    rs = ipt.compile_cluster(c)
    rules = list(_chain(rs, "KUBE-SERVICES"))
    psvc = port_service(c)
    expected = c.svc_cluster_ip[psvc[c.port_order]]
    assert np.array_equal(rs.dst[rules[:-1]], expected)
    last = rules[-1]
    assert rs.target[last] == ipt.T_JUMP
    assert rs.chain_names[int(rs.tchain[last])] == "KUBE-NODEPORTS"
    kinds = rs.m_kind[rs.mptr[last]:rs.mptr[last + 1]]
    assert ipt.M_ADDRTYPE in kinds
    assert rs.dst_mask[last] == 0  # localhost NodePorts on: no "! -d 127.0.0.0/8"
    rs2 = ipt.compile_cluster(c, localhost_nodeports=False)
    last2 = list(_chain(rs2, "KUBE-SERVICES"))[-1]
    assert rs2.flags[last2] & ipt.F_DST_INV and rs2.dst[last2] == 0x7F000000
    rs3 = ipt.compile_cluster(c, seed_order=11)
    assert not np.array_equal(rs3.dst[list(_chain(rs3, "KUBE-SERVICES"))[:-1]], expected)


def test_statistic_cascade_probabilities():
    n = 7
    c = build_cluster(1, n, seed=0)
    rs = ipt.compile_cluster(c)
    svc = rs.find_chain(rs.chain_names[int(rs.extra["svc_chain"][0])], ipt.TABLE_NAT)
    rules = range(int(rs.chain_start[svc]) + 1, int(rs.chain_end[svc]))  # after masquerade
    probs = []
    for r in rules:
        st = [j for j in range(rs.mptr[r], rs.mptr[r + 1]) if rs.m_kind[j] == ipt.M_STATISTIC]
        probs.append(rs.m_p[st[0]] if st else None)
    assert probs[-1] is None  # last rule unconditional
    for i, p in enumerate(probs[:-1]):
        assert p == float(f"{1 / (n - i):0.10f}")
        j = [j for j in range(rs.mptr[rules[i]], rs.mptr[rules[i] + 1])
             if rs.m_kind[j] == ipt.M_STATISTIC][0]
        assert rs.m_a[j] == round(p * 2**31)


def test_no_endpoints_reject_and_no_nat():
    c = build_cluster(4, 0, seed=2)
    rs = ipt.compile_cluster(c)
    assert len(_chain(rs, "KUBE-SERVICES")) == 1  # only the nodeports rule
    rej = list(_chain(rs, "KUBE-SERVICES", ipt.TABLE_FILTER))
    assert len(rej) == 4 and (rs.target[rej] == ipt.T_REJECT).all()
    assert rs.counts()["user_chains"] == len(ipt._FIXED_CHAINS) - 7


def test_external_name_has_zero_rules():
    c = build_cluster(30, 3, type_mix=(0.5, 0.0, 0.0, 0.5), seed=4)
    rs = ipt.compile_cluster(c)
    n_dataplane = int((c.svc_type == SVC_CLUSTERIP).sum())
    assert rs.extra["external_names"] == 30 - n_dataplane
    assert len(_chain(rs, "KUBE-SERVICES")) == n_dataplane + 1


def test_loadbalancer_firewall_chain():
    c = build_cluster(20, 2, type_mix=(0, 0, 1, 0), lb_source_range_fraction=1.0, seed=6,
                      nodeport_range=(30000, 30100))
    rs = ipt.compile_cluster(c)
    fw = rs.extra["fw_chain"]
    assert (fw >= 0).all()
    for p in range(c.n_ports):
        rules = range(int(rs.chain_start[fw[p]]), int(rs.chain_end[fw[p]]))
        assert len(rules) == 2  # one source range, then the fall-through rule
        assert rs.target[rules[-1]] == ipt.T_NONE
        assert rs.tchain[rules[0]] == rs.extra["ext_chain"][p]
    drops = list(_chain(rs, "KUBE-PROXY-FIREWALL", ipt.TABLE_FILTER))
    assert len(drops) == 20 and set(rs.dst[drops]) == set(c.lb_ip)


@pytest.mark.slow
def test_100k_services_build():
    c = build_cluster(100_000, 10, seed=0)
    rs = ipt.compile_cluster(c)
    counts = rs.counts()
    assert counts["rules"] == 100_000 * 32 + 20
    assert counts["kube_services_rules"] == 100_001


def test_firewall_allows_lb_ips_when_the_node_is_in_a_range():
    """kube-proxy adds ``-s <LB IP> -j KUBE-EXT-*`` to KUBE-FW-* when a source range contains
    the node IP (spec B.1, KUBE-FW)."""
    from dataclasses import replace

    c = build_cluster(3, 1, type_mix=(0, 0, 1, 0), lb_source_range_fraction=1.0, seed=8)
    node = int(c.src_net[0]) + 5
    c = replace(c, node_ips=np.array([node], dtype=np.uint32))
    rs = ipt.compile_cluster(c)
    fw = rs.extra["fw_chain"]
    sizes = [int(rs.chain_end[f] - rs.chain_start[f]) for f in fw]
    assert sizes[0] == 3 and sizes[1:] == [2, 2]
    r = int(rs.chain_start[fw[0]]) + 1
    assert rs.src[r] == c.lb_ip[0] and rs.src_mask[r] == 0xFFFFFFFF
