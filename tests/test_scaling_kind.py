"""Kind ``scaling``: validation case 16 through the iptables model and the kind, determinism,
checks and the report on a small grid."""

import numpy as np
import pandas as pd
import pytest

from harness.kinds import scaling
from kernels.cluster import build_cluster
from kernels.iptables import TABLE_NAT, compile_cluster, traverse
from kernels.traffic import make_packets


def test_case16_kube_services_and_svc_chain():
    """Validation case 16: uniform ClusterIP hits evaluate (R+1)/2 of the R service rules of
    KUBE-SERVICES, a miss evaluates every rule; KUBE-SVC evaluates the masquerade rule plus
    (n+1)/2 load-balancing rules — means within 1 % over 10^5 connections."""
    c = build_cluster(300, 1, seed=5)
    rs = compile_cluster(c)
    ks = rs.find_chain("KUBE-SERVICES", TABLE_NAT)
    n_rules = int(rs.rules_per_chain()[ks])
    r_svc = n_rules - 1  # the last rule is the addrtype LOCAL -> KUBE-NODEPORTS rule
    pk = make_packets(c, "clusterip", 100_000, seed=6)
    hit = traverse(rs, pk, seed=7, watch_chain=ks).watch_rules
    assert hit.mean() == pytest.approx((r_svc + 1) / 2, rel=0.01)
    miss = traverse(rs, make_packets(c, "miss", 1000, seed=8), watch_chain=ks).watch_rules
    assert (miss == n_rules).all()

    n = 10
    c1 = build_cluster(1, n, seed=1)
    rs1 = compile_cluster(c1)
    svc = [i for i, name in enumerate(rs1.chain_names) if name.startswith("KUBE-SVC-")][0]
    res = traverse(rs1, make_packets(c1, "clusterip", 100_000, seed=2), seed=3, watch_chain=svc)
    assert res.watch_rules.mean() == pytest.approx(1 + (n + 1) / 2, rel=0.01)


def test_case16_via_the_kind():
    """Doubling Services from 200 to 400 adds (401 - 201) / 2 = 100 rules to the mean ClusterIP
    first packet (everything else on the path is constant), within 1 %."""
    p = {"mode": "iptables", "endpoints_per_service": 2, "traffic": "clusterip",
         "packets": 100_000, "established_packets": 100, "live_connections": 100}
    a = scaling.run_point({**p, "services": 200}, 11, {})
    b = scaling.run_point({**p, "services": 400}, 11, {})
    assert b["rules_evaluated_mean"] - a["rules_evaluated_mean"] == pytest.approx(100, rel=0.01)
    assert b["first_packet_ops_mean"] == b["rules_evaluated_mean"]


@pytest.mark.parametrize("mode", scaling.MODES)
def test_run_point_deterministic_and_complete(mode):
    p = {"mode": mode, "services": 60, "endpoints_per_service": 3, "traffic": "nodeport",
         "packets": 500, "established_packets": 500, "live_connections": 500}
    a = scaling.run_point(p, 3, {})
    b = scaling.run_point(p, 3, {})
    assert a == b
    for col in ("first_packet_ops_mean", "first_packet_ops_p99", "first_packet_ns_mean",
                "first_packet_ns_p99", "established_packet_ns_mean", "rules_total",
                "kernel_memory_bytes"):
        assert np.isfinite(a[col]) and a[col] > 0, col
    assert a["hit_fraction"] == 1.0
    c = scaling.run_point(p, 3, {"rule_ns": 100.0})
    assert c["first_packet_ns_mean"] > a["first_packet_ns_mean"]


def test_check_memory_and_nodeport_plan():
    base = {pp.name: pp.default for pp in scaling.PARAMS}
    assert scaling.check(base) is None
    key, _ = scaling.check({**base, "live_connections": 10**6})
    assert key == "live_connections"
    assert scaling.check({**base, "live_connections": 10**6, "conntrack_max": 2 * 10**6}) is None
    assert scaling.memory_bytes({**base, "services": 100_000}) > scaling.memory_bytes(base)
    frac, rng = scaling._nodeport_plan({**base, "services": 100_000})
    assert frac * 100_000 == pytest.approx(63_500) and rng == (1024, 65535)
    assert scaling._nodeport_plan({**base, "services": 2000}) == (1.0, (30000, 32767))


def test_report_on_a_small_grid(tmp_path):
    rows = []
    for mode in scaling.MODES:
        for s in (10, 100, 1000, 2000):
            for tr in ("clusterip", "miss"):
                p = {"mode": mode, "services": s, "endpoints_per_service": 2, "traffic": tr,
                     "packets": 300, "established_packets": 300, "live_connections": 300}
                rows.append({**{pp.name: pp.default for pp in scaling.PARAMS}, **p,
                             **scaling.run_point(p, 1, {})})
    for live in (300, 3000):
        p = {"mode": "ipvs", "services": 10, "endpoints_per_service": 2, "traffic": "clusterip",
             "packets": 100, "established_packets": 300, "live_connections": live,
             "conn_table_bits": 8}
        rows.append({**{pp.name: pp.default for pp in scaling.PARAMS}, **p,
                     **scaling.run_point(p, 1, {})})
    rep = scaling.KIND.report(pd.DataFrame(rows), tmp_path)
    assert {f.filename for f in rep.figures} >= {"first_packet_vs_services.png",
                                                 "rules_memory_vs_services.png",
                                                 "established_vs_live_connections.png"}
    for f in rep.figures:
        assert (tmp_path / f.filename).stat().st_size > 0
    assert any("iptables' first packet costs" in s for s in rep.findings)
    slopes = rep.headline.dropna(subset=["slope_ops"])
    ipt = slopes[(slopes["mode"] == "iptables") & (slopes["traffic"] == "miss")]
    assert ipt["slope_ops"].iloc[0] == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize("kind_name", ["scaling", "sync"])
def test_endpoint_total_bounded_by_pod_cidr(kind_name):
    """services x endpoints_per_service beyond the default pod CIDR (/10: 4,194,302 pod IPs)
    is refused by the check, before any worker calls build_cluster (which would raise)."""
    from harness.kinds import sync as sync_kind

    kind = scaling.KIND if kind_name == "scaling" else sync_kind.KIND
    base = {pp.name: pp.default for pp in kind.params}
    ok = {**base, "services": 4_194_302, "endpoints_per_service": 1}
    assert kind.check(ok) is None or kind.check(ok)[0] != "endpoints_per_service"
    assert kind.check({**base, "services": 10_000, "endpoints_per_service": 1000}) == (
        "endpoints_per_service", "services × endpoints_per_service ≤ 4,194,302 (pod CIDR /10)")
    assert kind.check({**base, "services": 4_194_303, "endpoints_per_service": 1})[0] == \
        "endpoints_per_service"
    with pytest.raises(ValueError, match="pod_cidr"):
        build_cluster(1, 4_194_303)


@pytest.mark.parametrize("sched, flags", [("mh", 0x10), ("rr", 0)])
def test_scheduler_state_gets_point_seed_and_kube_proxy_flags(monkeypatch, sched, flags):
    """Spec A.8 / B.2: kube-proxy creates mh services with flag 0x10 (mh-port); the scheduler
    PRNG is seeded from the point seed, not a constant."""
    from kernels import schedulers as sc

    seen = []
    real = sc.new_state

    def spy(*args, **kw):
        seen.append((args, kw))
        return real(*args, **kw)

    monkeypatch.setattr(sc, "new_state", spy)
    p = {"mode": "ipvs", "services": 20, "endpoints_per_service": 3, "packets": 50,
         "established_packets": 20, "live_connections": 20, "scheduler": sched}
    scaling.run_point(p, 11, {})
    scaling.run_point(p, 12, {})
    assert [a[3] for a, _ in seen] == [flags, flags]
    assert [kw["seed"] for _, kw in seen] == [18, 19]


def test_ipvs_endpoint_is_the_schedulers_choice():
    """Item: the ipvs DNAT target is the kernels.schedulers pick for the point's scheduler —
    rr cycles through all endpoints (newest-first list), sh keeps a client on one endpoint,
    and the per-packet steps are the scheduler's own counts."""
    from kernels import ipvs
    from kernels.traffic import packets

    c = build_cluster(2, 5, seed=1)
    t = ipvs.build_tables(c)
    conn = ipvs.build_conn_table(t, 10)
    base = {pp.name: pp.default for pp in scaling.PARAMS}
    pk = packets(np.full(40, 0x0A400005), c.svc_cluster_ip[0], int(c.port_port[0]),
                 sport=40000 + np.arange(40))
    choice, steps = scaling._schedule({**base, "scheduler": "rr"}, t, c, pk, 3)
    assert sorted(choice[:5].tolist()) == list(range(5)) and (choice[5:] == choice[:-5]).all()
    assert (steps >= 1).all()
    out = ipvs.first_packets(t, conn, pk.src, pk.sport, pk.dst, pk.dport, pk.proto,
                             choice=choice)
    assert np.array_equal(out["dest"], choice) and (out["sched_steps"] == 0).all()
    same_client = packets(np.full(40, 0x0A400005), c.svc_cluster_ip[0], int(c.port_port[0]))
    sh, _ = scaling._schedule({**base, "scheduler": "sh"}, t, c, same_client, 3)
    assert (sh == sh[0]).all() and sh[0] >= 0
    lc, lc_steps = scaling._schedule({**base, "scheduler": "lc"}, t, c, pk, 3)
    assert (lc_steps == 5).all()  # lc examines every destination
    assert np.bincount(lc, minlength=5)[:5].tolist() == [8] * 5
