"""Cost model: documented defaults, overrides from a calibration dict, arithmetic, sizes."""

import numpy as np
import pytest

from harness.errors import UserError
from kernels import costmodel as cm


def test_defaults_and_sources():
    m = cm.CostModel()
    assert 4.5 <= m.rule_ns <= 5.0  # validation case 17
    assert set(cm.COST_SOURCES) == set(m.as_dict())
    for key in ("base_ns", "rule_ns", "match_ns", "jump_ns", "hash_probe_ns", "vmap_lookup_ns",
                "conntrack_probe_ns", "userspace_conn_ns", "userspace_kb_ns",
                "context_switch_ns"):
        assert key in cm.COST_SOURCES


def test_overrides():
    m = cm.CostModel.from_overrides({"rule_ns": 6, "base_ns": 50.5})
    assert m.rule_ns == 6.0 and m.base_ns == 50.5 and m.match_ns == cm.CostModel().match_ns
    assert cm.CostModel.from_overrides({}) == cm.CostModel()
    nested = {"costmodel": {"rule_ns": 5.5, "rule_ns_se": 0.2, "sync_ns_fixed": 1e6}}
    assert cm.CostModel.from_overrides(nested).rule_ns == 5.5
    with pytest.raises(UserError, match="rule_nss"):
        cm.CostModel.from_overrides({"rule_nss": 1})
    with pytest.raises(UserError, match="jump_ns"):
        cm.CostModel.from_overrides({"jump_ns": -1})
    with pytest.raises(UserError, match="jump_ns"):
        cm.CostModel.from_overrides({"jump_ns": "fast"})


def test_packet_ns_is_the_priced_sum():
    m = cm.CostModel(base_ns=10, rule_ns=2, match_ns=3, jump_ns=5, hash_probe_ns=7,
                     vmap_lookup_ns=11, conntrack_probe_ns=13, sched_step_ns=17,
                     userspace_conn_ns=19, userspace_kb_ns=23, context_switch_ns=29)
    got = m.packet_ns(rules=np.array([1, 2]), matches=1, jumps=1, hash_probes=1, vmap_lookups=1,
                      conntrack_probes=1, sched_steps=1, userspace_conns=1, userspace_kb=1,
                      context_switches=1)
    one = 10 + 2 + 3 + 5 + 7 + 11 + 13 + 17 + 19 + 23 + 29
    assert got.tolist() == [one, one + 2]


def test_sizes():
    assert cm.IPT_ENTRY_BYTES == 112
    assert cm.iptables_bytes(10, 5, 2, ncpu=4) == 10 * (112 + 40 + 64) + 5 * 48 + 2 * 176
    assert cm.hash_table_bytes(256, 10, 100) == 256 * 8 + 1000


CACHE_TERMS = {"rule_ns": 6.0, "rule_cold_ns": 20.0, "rule_cache_bytes": 4e6, "rule_cache_k": 4,
               "rule_far_ns": 200.0, "rule_far_rules": 20_000, "rule_warm_ns": 3.0,
               "rule_warm_rules": 8}


def test_rules_ns_matches_hand_computation():
    m = cm.CostModel.from_overrides(CACHE_TERMS)
    rules, walked, chain = 30_012, 30_001, 8e6  # S = 2 C: f = 16 / 17
    hand = (rules * (6.0 + 20.0 * 16 / 17) + 3.0 * 8 * (1 - np.exp(-30_001 / 8))
            + 200.0 * (30_001 - 20_000))
    assert m.rules_ns(rules, chain, walked) == pytest.approx(hand, rel=1e-12)
    # a short walk in a small chain: only the warm-up term adds
    assert m.rules_ns(12, 0.0, 3) == pytest.approx(12 * 6 + 3 * 8 * (1 - np.exp(-3 / 8)),
                                                   rel=1e-12)


def test_default_terms_reproduce_the_single_slope_exactly():
    m = cm.CostModel()
    assert (m.rule_cold_ns, m.rule_far_ns, m.rule_warm_ns) == (0.0, 0.0, 0.0)
    rng = np.random.default_rng(3)
    rules = rng.integers(0, 300_000, 1000)
    walked = rng.integers(0, 100_000, 1000)
    chain = cm.kube_services_bytes(100_001)
    assert np.array_equal(m.rules_ns(rules, chain, walked), m.rule_ns * rules.astype(float))
    got = m.packet_ns(rules=rules, chain_bytes=chain, walked=walked, matches=rules // 3,
                      conntrack_probes=2)
    single = (m.base_ns + m.rule_ns * rules.astype(float) + m.match_ns * (rules // 3)
              + m.jump_ns * 0.0 + m.hash_probe_ns * 0.0 + m.vmap_lookup_ns * 0.0
              + m.conntrack_probe_ns * 2.0 + m.sched_step_ns * 0.0 + m.userspace_conn_ns * 0.0
              + m.userspace_kb_ns * 0.0 + m.context_switch_ns * 0.0)
    assert np.array_equal(got, single)  # bit for bit


def test_cache_terms_raise_large_chains_and_keep_small_ones_in_cache():
    hot = cm.CostModel.from_overrides({"rule_ns": 6.0})
    cal = cm.CostModel.from_overrides(CACHE_TERMS)
    for n, lo, hi in ((10, 1.0, 1.25), (1000, 1.0, 1.02), (100_000, 5.0, 40.0)):
        rules, chain = n + 12, cm.kube_services_bytes(n + 1)
        ratio = cal.rules_ns(rules, chain, n + 1) / hot.rules_ns(rules, chain, n + 1)
        assert lo <= ratio <= hi, (n, ratio)
    # without warm-up the small chain costs the in-cache slope within 0.1 %
    cold_only = cm.CostModel.from_overrides({**CACHE_TERMS, "rule_warm_ns": 0})
    assert cold_only.rules_ns(22, cm.kube_services_bytes(11), 11) == pytest.approx(22 * 6.0,
                                                                                 rel=1e-3)


def test_cache_overrides_validated():
    m = cm.CostModel.from_overrides({"costmodel": CACHE_TERMS})
    assert m.rule_far_rules == 20_000.0 and m.rule_cache_k == 4.0
    for key, bad in (("rule_cache_bytes", 0), ("rule_warm_rules", 0), ("rule_far_ns", -1),
                     ("rule_cold_ns", float("nan")), ("rule_far_rules", float("inf"))):
        with pytest.raises(UserError, match=key):
            cm.CostModel.from_overrides({key: bad})


def test_kube_services_rule_bytes():
    # ipt_entry 112 + comment match 288 + tcp/addrtype match 48 + standard target 40
    assert cm.KUBE_SERVICES_RULE_BYTES == 488
    assert cm.kube_services_bytes(101) == 101 * 488


def test_scaling_kind_uses_the_cache_aware_rule_cost():
    """Through harness.kinds.scaling: terms off (any shape) change nothing; the example
    machine's terms leave 10 Services within 1 % and raise 20,000 Services > 3x (iptables,
    userspace)."""
    from harness.kinds import scaling

    off = {"rule_cache_bytes": 1.0, "rule_far_rules": 0, "rule_warm_rules": 1}
    legacy = {"rule_ns": 6.25, "rule_cold_ns": 26.57, "rule_cache_bytes": 4.21e6,
              "rule_cache_k": 4, "rule_far_ns": 208.8, "rule_far_rules": 21135}
    for mode in ("iptables", "userspace"):
        ratios = {}
        for n in (10, 20_000):
            p = {"mode": mode, "services": n, "endpoints_per_service": 2, "packets": 200,
                 "established_packets": 20, "live_connections": 50}
            base = scaling.run_point(p, 1, {})
            assert scaling.run_point(p, 1, off) == base
            hot = scaling.run_point(p, 1, {"rule_ns": 6.25})["first_packet_ns_mean"]
            ratios[n] = scaling.run_point(p, 1, legacy)["first_packet_ns_mean"] / hot
        assert 1.0 <= ratios[10] < 1.01 and ratios[20_000] > 3.0, (mode, ratios)
