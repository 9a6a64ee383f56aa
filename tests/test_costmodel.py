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
