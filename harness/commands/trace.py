"""`kpbench trace`: follow one new connection through an iptables-save dump (spec B.1, C.1).

Prints every rule the first packet matched (with its dump line number and text), how many rules
were evaluated before each, chain returns and builtin policies, then the verdict, the DNAT
destination, the masquerade mark and the rule counts. With ``--samples K`` it also traverses K
connections of the same client (``--interval`` seconds apart; ``recent`` affinity state persists
between them, as it does for one client) and prints the distribution over (verdict, DNAT
destination) that ``statistic`` rules produce.
"""

from __future__ import annotations

import argparse
import ipaddress
from collections import Counter
from pathlib import Path

import numpy as np

from harness.errors import UserError
from harness.iptables_text import PROTOCOLS, load_save
from kernels import iptables as ipt
from kernels.cluster import int_to_ip
from kernels.traffic import packets

NAME = "trace"
ORDER = 60
HELP = "trace a new connection through an iptables-save dump: path, verdict, DNAT, counts"
EPILOG = """\
Example:
  kpbench trace tests/data/iptables/nodeport_local.txt --src 198.51.100.7 \\
      --dst 192.168.0.10 --dport 3001 --local-addr 192.168.0.10 --samples 1000
"""


def _addr(flag: str, text: str) -> int:
    try:
        return int(ipaddress.IPv4Address(text))
    except ValueError:
        raise UserError(f"{flag}: expected an IPv4 address, got {text!r}") from None


def _port(flag: str, value: int) -> int:
    if not 0 <= value <= 65535:
        raise UserError(f"{flag}: expected a port 0-65535, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dump", metavar="DUMP", help="iptables-save output (nat and filter)")
    parser.add_argument("--src", required=True, help="source address of the connection")
    parser.add_argument("--dst", required=True, help="destination address")
    parser.add_argument("--dport", required=True, type=int, help="destination port")
    parser.add_argument("--sport", type=int, default=40000, help="source port (default 40000)")
    parser.add_argument("--proto", default="tcp", choices=("tcp", "udp", "sctp"),
                        help="protocol (default tcp)")
    parser.add_argument("--local-addr", action="append", default=[], metavar="X",
                        help="an address of this node (addrtype LOCAL; repeatable; "
                             "127.0.0.0/8 is always local)")
    parser.add_argument("--hook", default="prerouting", choices=("prerouting", "output"),
                        help="prerouting: from a pod or remote client; output: from a host "
                             "process (default prerouting)")
    parser.add_argument("--samples", type=int, default=0, metavar="K",
                        help="also trace K connections and print the destination distribution")
    parser.add_argument("--interval", type=float, default=0.0, metavar="S",
                        help="seconds between the K connections (default 0)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the statistic draws")
    parser.add_argument("--masq-mark", default="0x4000",
                        help="kube-proxy's masquerade mark (default 0x4000)")


def _dest(addr: int, port: int) -> str:
    return f"{int_to_ip(addr)}:{port}"


def main(args: argparse.Namespace) -> int:
    try:
        masq_mark = int(args.masq_mark, 0)
    except ValueError:
        raise UserError(f"--masq-mark: expected an integer, got {args.masq_mark!r}") from None
    if args.samples < 0:
        raise UserError(f"--samples: expected >= 0, got {args.samples}")
    src = _addr("--src", args.src)
    dst = _addr("--dst", args.dst)
    local = [_addr("--local-addr", a) for a in args.local_addr]
    _port("--dport", args.dport)
    _port("--sport", args.sport)
    path = Path(args.dump)
    rs = load_save(path, masq_mark=masq_mark)
    text = path.read_text().splitlines()
    counts = rs.counts()
    print(f"dump: {path}: nat {counts['nat_rules']} rules, filter {counts['filter_rules']} "
          f"rules, {counts['chains']} chains")
    skipped = rs.extra.get("skipped_tables") or ()
    if skipped:
        print(f"  tables not modelled (skipped): {', '.join(skipped)}")
    print(f"packet: {args.proto} {int_to_ip(src)}:{args.sport} -> {int_to_ip(dst)}:{args.dport}"
          f" (first packet of a NEW connection, hook {args.hook.upper()}); local addresses: "
          f"{', '.join(args.local_addr) or 'none'} + 127.0.0.0/8")
    n = max(args.samples, 1)
    pk = packets(np.full(n, src, np.uint32), dst, args.dport, proto=PROTOCOLS[args.proto],
                 sport=args.sport, time=np.arange(n) * args.interval)
    res = ipt.traverse(rs, pk, seed=args.seed, local_addrs=np.array(local, dtype=np.uint32),
                       hook=args.hook, record=min(1_000_000, 4 * rs.n_rules + 64))
    print("path:")
    prev = 0
    for event, index, done, value in res.path:
        step = done - prev
        prev = done
        if event == ipt.EV_MATCH:
            chain = int(rs.rule_chain[index])
            table = ipt.TABLE_NAMES[int(rs.chain_table[chain])]
            line = int(rs.rule_line[index])
            pos = index - int(rs.chain_start[chain]) + 1
            print(f"  [{table}] {rs.chain_names[chain]} rule {pos} (line {line}, {step} rules "
                  f"evaluated to reach it):")
            print(f"      {text[line - 1].strip() if 0 < line <= len(text) else '?'}")
        elif event == ipt.EV_END:
            table = ipt.TABLE_NAMES[int(rs.chain_table[index])]
            print(f"  [{table}] end of {rs.chain_names[index]} ({step} rules evaluated): "
                  f"return to the calling chain")
        else:
            table = ipt.TABLE_NAMES[int(rs.chain_table[index])]
            print(f"  [{table}] end of builtin {rs.chain_names[index]} ({step} rules "
                  f"evaluated): policy {ipt.VERDICT_NAMES[value]}")
    v = int(res.verdict[0])
    print(f"verdict: {ipt.VERDICT_NAMES[v]}")
    if res.dnat[0]:
        print(f"DNAT: {_dest(int(res.dnat_addr[0]), int(res.dnat_port[0]))}")
    else:
        print("DNAT: none (destination unchanged)")
    print(f"masquerade mark ({masq_mark:#x}) after nat: {'yes' if res.marked[0] else 'no'}; "
          f"MASQUERADE in POSTROUTING: {'yes' if res.masquerade[0] else 'no'}")
    print(f"rules evaluated: {int(res.rules_evaluated[0])} (first nat hook "
          f"{int(res.rules_nat[0])}, filter {int(res.rules_filter[0])}, nat after routing "
          f"{int(res.rules_post[0])}); matches tested: {int(res.matches_tested[0])}; "
          f"jumps: {int(res.jumps[0])}")
    if args.samples > 0:
        dist = Counter()
        for i in range(n):
            dest = (_dest(int(res.dnat_addr[i]), int(res.dnat_port[i])) if res.dnat[i]
                    else "no DNAT")
            dist[(ipt.VERDICT_NAMES[int(res.verdict[i])], dest)] += 1
        print(f"distribution over {n} connections (seed {args.seed}, interval "
              f"{args.interval:g} s; mean rules evaluated {res.rules_evaluated.mean():.2f}):")
        for (verdict, dest), k in sorted(dist.items(), key=lambda kv: (-kv[1], kv[0])):
            print(f"  {verdict:7s} {dest:22s} {k:8d}  {k / n:7.2%}")
    return 0
