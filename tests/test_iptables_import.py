"""iptables-save import, restore-text round trip and `kpbench trace` (spec B.1, C.1)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from harness import cli
from harness.errors import UserError
from harness.iptables_text import load_save, parse_save, render_restore
from kernels import iptables as ipt
from kernels.cluster import build_cluster, ip_to_int
from kernels.traffic import TRAFFIC_CLASSES, make_packets, packets

DATA = Path(__file__).resolve().parent / "data" / "iptables"
NODE = ip_to_int("192.168.0.10")
FIELDS = ("verdict", "dnat", "dnat_addr", "dnat_port", "marked", "masquerade", "mark",
          "rules_evaluated", "matches_tested", "jumps", "rules_nat", "rules_filter",
          "rules_post")


def _trace(name, src, dst, dport, n=1, hook="prerouting", seed=0):
    rs = load_save(DATA / name)
    pk = packets(np.full(n, ip_to_int(src), np.uint32), dst, dport)
    return ipt.traverse(rs, pk, seed=seed, local_addrs=[NODE], hook=hook)


def _dests(res) -> dict[str, float]:
    out: dict[str, float] = {}
    for a, p, d in zip(res.dnat_addr, res.dnat_port, res.dnat, strict=True):
        key = f"{ipt.int_to_ip(a)}:{p}" if d else "-"
        out[key] = out.get(key, 0) + 1 / len(res.verdict)
    return out


# ---- hand-written kube-proxy dumps give the verdicts kube-proxy intends ------------------


def test_clusterip_two_endpoints():
    res = _trace("clusterip_two_endpoints.txt", "10.0.1.5", "172.30.0.41", 80, n=20_000)
    assert (res.verdict == ipt.V_ACCEPT).all() and res.dnat.all()
    dests = _dests(res)
    assert set(dests) == {"10.180.0.1:80", "10.180.0.2:80"}
    assert abs(dests["10.180.0.1:80"] - 0.5) < 0.02  # 20,000 draws: 0.02 is > 5 sigma
    assert not res.marked.any()  # pod source inside the cluster CIDR: no masquerade
    outside = _trace("clusterip_two_endpoints.txt", "192.168.1.50", "172.30.0.41", 80)
    assert outside.marked[0] and outside.masquerade[0]
    wrong_port = _trace("clusterip_two_endpoints.txt", "10.0.1.5", "172.30.0.41", 81)
    assert not wrong_port.dnat[0] and wrong_port.verdict[0] == ipt.V_ACCEPT


def test_no_endpoints_rejects():
    res = _trace("no_endpoints.txt", "10.0.1.5", "172.30.0.42", 80)
    assert res.verdict[0] == ipt.V_REJECT and not res.dnat[0]
    host = _trace("no_endpoints.txt", "192.168.0.10", "172.30.0.42", 80, hook="output")
    assert host.verdict[0] == ipt.V_REJECT  # filter OUTPUT -> KUBE-SERVICES


def test_lb_source_ranges():
    inside = _trace("lb_source_ranges.txt", "203.0.113.5", "1.2.3.4", 80)
    assert inside.verdict[0] == ipt.V_ACCEPT
    assert _dests(inside) == {"10.180.0.4:80": 1.0} and inside.marked[0]
    outside = _trace("lb_source_ranges.txt", "198.51.100.7", "1.2.3.4", 80)
    assert outside.verdict[0] == ipt.V_DROP and not outside.dnat[0]
    # the NodePort of the same Service is not subject to the source ranges
    nodeport = _trace("lb_source_ranges.txt", "198.51.100.7", "192.168.0.10", 3003)
    assert nodeport.verdict[0] == ipt.V_ACCEPT and nodeport.dnat[0]


def test_nodeport_on_a_local_address():
    res = _trace("nodeport_local.txt", "198.51.100.7", "192.168.0.10", 3001, n=4000)
    assert (res.verdict == ipt.V_ACCEPT).all() and res.marked.all() and res.masquerade.all()
    assert set(_dests(res)) == {"10.180.0.5:80", "10.180.0.6:80"}
    # not a local address: KUBE-NODEPORTS is never reached
    rs = load_save(DATA / "nodeport_local.txt")
    other = ipt.traverse(rs, packets("198.51.100.7", "192.168.0.11", 3001), local_addrs=[NODE])
    assert not other.dnat[0]
    # localhost NodePorts from the host itself (OUTPUT hook)
    lo = _trace("nodeport_local.txt", "127.0.0.1", "127.0.0.1", 3001, hook="output")
    assert lo.dnat[0] and lo.masquerade[0]


def test_external_ips_with_local_policy():
    local = _trace("externalip_local_policy.txt", "198.51.100.20", "192.168.99.11", 80)
    assert local.verdict[0] == ipt.V_ACCEPT and _dests(local) == {"10.180.0.7:80": 1.0}
    assert not local.marked[0] and not local.masquerade[0]  # client source preserved
    pod = _trace("externalip_local_policy.txt", "10.0.3.3", "192.168.99.12", 80)
    assert pod.verdict[0] == ipt.V_ACCEPT and _dests(pod) == {"10.180.1.8:80": 1.0}
    remote = _trace("externalip_local_policy.txt", "198.51.100.20", "192.168.99.12", 80)
    assert remote.verdict[0] == ipt.V_DROP and not remote.dnat[0]
    host = _trace("externalip_local_policy.txt", "192.168.0.10", "192.168.99.11", 80,
                  hook="output")
    assert host.dnat[0] and host.masquerade[0]  # LOCAL source: masquerade + cluster chain


# ---- compiled rules -> restore text -> import -> identical traces ------------------------


def _canonical(rs: ipt.Ruleset) -> dict:
    """Chains by (table, name): policy and rules with jump targets by name and matches."""
    out = {}
    for c in range(rs.n_chains):
        rules = []
        for r in range(int(rs.chain_start[c]), int(rs.chain_end[c])):
            m = slice(int(rs.mptr[r]), int(rs.mptr[r + 1]))
            tc = int(rs.tchain[r])
            rules.append((
                int(rs.src[r]), int(rs.src_mask[r]), int(rs.dst[r]), int(rs.dst_mask[r]),
                int(rs.proto[r]), int(rs.flags[r]), int(rs.target[r]),
                rs.chain_names[tc] if tc >= 0 else None, int(rs.taddr[r]), int(rs.tport[r]),
                int(rs.tval[r]), int(rs.tmask[r]), tuple(rs.m_kind[m]), tuple(rs.m_inv[m]),
                tuple(float(p) for p in rs.m_p[m])))
        out[(int(rs.chain_table[c]), rs.chain_names[c])] = (int(rs.chain_policy[c]), rules)
    return out



@pytest.mark.parametrize("seed", range(4))
def test_round_trip_traces_identically(seed):
    c = build_cluster(25, 3, endpoint_dist="poisson", type_mix=(0.4, 0.3, 0.2, 0.1),
                      affinity_fraction=0.3, external_ip_fraction=0.3,
                      lb_source_range_fraction=0.5, ext_local_fraction=0.3,
                      int_local_fraction=0.2, local_endpoint_fraction=0.3, seed=seed)
    rs = ipt.compile_cluster(c, localhost_nodeports=seed % 2 == 0,
                             comments=None if seed < 2 else False)
    text = render_restore(rs)
    back = parse_save(text, source="rendered")
    assert back.n_rules == rs.n_rules and back.n_chains == rs.n_chains
    assert _canonical(back) == _canonical(rs)
    assert render_restore(back) == text  # the text is a fixed point
    for traffic in TRAFFIC_CLASSES:
        try:
            pk = make_packets(c, traffic, 300, n_clients=10, seed=seed)
        except ValueError:
            continue
        a = ipt.traverse(rs, pk, seed=seed)
        b = ipt.traverse(back, pk, seed=seed, local_addrs=c.node_ips)
        for f in FIELDS:
            assert np.array_equal(getattr(a, f), getattr(b, f)), (traffic, f)


# ---- errors: one line, with the line number --------------------------------------------

HEAD = "*nat\n:PREROUTING ACCEPT [0:0]\n:X - [0:0]\n"


@pytest.mark.parametrize("body, expected", [
    ("-A PREROUTING -m physdev --physdev-in eth0 -j X\nCOMMIT\n", "4: unknown match 'physdev'"),
    ("-A PREROUTING -j LOG --log-prefix x\nCOMMIT\n", "4: unknown target 'LOG'"),
    ("-A PREROUTING -m tcp -p tcp --syn -j X\nCOMMIT\n", "4: unknown option '--syn'"),
    ("-A PREROUTING -i eth0 -j X\nCOMMIT\n", "4: unsupported option '-i'"),
    ("-A NOPE -j X\nCOMMIT\n", "4: chain 'NOPE' is not declared"),
    ("-A PREROUTING -s 10.0.0.300 -j X\nCOMMIT\n", "4: expected an IPv4 address"),
    ("-A PREROUTING -p tcp --dport 99999 -j X\nCOMMIT\n", "4: expected a port range"),
    ("-A X -j X\nCOMMIT\n", "4: jump loop through chain 'X'"),
    ("-A PREROUTING -m statistic --mode nth --every 2 -j X\nCOMMIT\n", "unsupported mode"),
    ("bogus line\nCOMMIT\n", "4: expected ':CHAIN', '-A CHAIN ...' or COMMIT"),
    ("-A PREROUTING -j X\n", "4: expected COMMIT at the end"),
    ("-A PREROUTING -j DNAT\nCOMMIT\n", "4: DNAT: expected --to-destination"),
])
def test_errors_name_the_line(body, expected):
    with pytest.raises(UserError) as err:
        parse_save(HEAD + body, source="dump.txt")
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("dump.txt:") and expected in msg


def test_other_tables_are_skipped_and_reported():
    text = "*mangle\n:KUBE-PROXY-CANARY - [0:0]\n-A KUBE-PROXY-CANARY -m weird\nCOMMIT\n"
    rs = parse_save(text + HEAD + "-A PREROUTING -j X\nCOMMIT\n")
    assert rs.extra["skipped_tables"] == ("mangle",) and rs.n_rules == 1
    assert rs.rule_line[0] == 8


# ---- kpbench trace -----------------------------------------------------------------------


def test_trace_command_prints_path_and_distribution(capsys):
    code = cli.main(["trace", str(DATA / "nodeport_local.txt"), "--src", "198.51.100.7",
                     "--dst", "192.168.0.10", "--dport", "3001", "--local-addr",
                     "192.168.0.10", "--samples", "2000"])
    out = capsys.readouterr().out
    assert code == 0
    assert "KUBE-NODEPORTS rule 1 (line 49" in out
    assert "verdict: ACCEPT" in out and "DNAT: 10.180.0." in out
    assert "masquerade mark (0x4000) after nat: yes" in out
    assert "10.180.0.5:80" in out and "10.180.0.6:80" in out
    assert "rules evaluated: 19 " in out


@pytest.mark.parametrize("args, expected", [
    (["--src", "10.0.0.1", "--dst", "1.2.3.4", "--dport", "80"], "unknown match 'physdev'"),
    (["--src", "10.0.0.x", "--dst", "1.2.3.4", "--dport", "80"], "--src: expected an IPv4"),
])
def test_trace_errors_exit_2(tmp_path, capsys, args, expected):
    dump = tmp_path / "bad.txt"
    dump.write_text(HEAD + "-A PREROUTING -m physdev --physdev-in eth0 -j X\nCOMMIT\n")
    code = cli.main(["trace", str(dump), *args])
    err = capsys.readouterr().err
    assert code == 2 and expected in err and len(err.strip().splitlines()) == 1
