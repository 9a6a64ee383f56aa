"""iptables-restore text for a :class:`kernels.iptables.Ruleset`, and ``iptables-save`` dumps back
into the same arrays (spec B.1 layout, spec C.1 semantics).

``render_restore`` writes the ruleset as ``iptables-save`` prints it (IP match first, then the
matches in rule order, one ``*table ... COMMIT`` block per table), which ``iptables-restore``
loads. ``parse_save`` reads the nat and filter tables of a dump (other tables are skipped and
listed in ``Ruleset.extra["skipped_tables"]``): ``-A``, ``-N``, ``:CHAIN POLICY``, ``-s``/``-d``
with masks and ``!``, ``-p``, ``--dport``/``--sport``, ``-m`` comment, tcp, udp, multiport,
addrtype (LOCAL), statistic (random), recent, mark, conntrack (--ctstate), nfacct; targets
``-j``/``-g`` user chains, RETURN, ACCEPT, DROP, REJECT, DNAT, MASQUERADE, MARK. Anything else
raises a one-line :class:`~harness.errors.UserError` naming the file, the line number and the
unknown match, option or target.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

import numpy as np

from harness.errors import UserError
from kernels import iptables as ipt
from kernels.cluster import int_to_ip

PROTOCOLS = {"tcp": 6, "udp": 17, "sctp": 132, "icmp": 1, "all": 0}
PROTO_NAMES = {v: k for k, v in PROTOCOLS.items()}
BUILTIN = {
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
}
_TABLE_ID = {"nat": ipt.TABLE_NAT, "filter": ipt.TABLE_FILTER}
_CT_ORDER = ("INVALID", "NEW", "RELATED", "ESTABLISHED", "UNTRACKED", "SNAT", "DNAT")
_PLAIN = re.compile(r"^[A-Za-z0-9_./:,=+@%-]+$")
_TERMINALS = {"RETURN": ipt.T_RETURN, "ACCEPT": ipt.T_ACCEPT, "DROP": ipt.T_DROP,
              "REJECT": ipt.T_REJECT, "DNAT": ipt.T_DNAT, "MASQUERADE": ipt.T_MASQUERADE,
              "MARK": ipt.T_MARK}


# ---- rendering -------------------------------------------------------------------------------


def _quote(text: str) -> str:
    if _PLAIN.match(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _cidr(addr: int, mask: int) -> str:
    mask = int(mask)
    inv = ~mask & 0xFFFFFFFF
    if inv & (inv + 1) == 0:
        return f"{int_to_ip(addr)}/{32 - inv.bit_length()}"
    return f"{int_to_ip(addr)}/{int_to_ip(mask)}"


def _prob(p: float) -> str:
    text = f"{p:0.10f}"
    return text if float(text) == p else f"{p:.11f}"


def _ports(lo: int, hi: int) -> str:
    return str(lo) if lo == hi else f"{lo}:{hi}"


def _render_match(rs: ipt.Ruleset, r: int, j: int) -> str:
    kind = int(rs.m_kind[j])
    inv = int(rs.m_inv[j])
    a, b, c = int(rs.m_a[j]), int(rs.m_b[j]), int(rs.m_c[j])
    neg = "! " if inv & 1 else ""
    if kind == ipt.M_COMMENT:
        return f"-m comment --comment {_quote(rs.comment_text(a, b, c))}"
    if kind == ipt.M_PORT:
        name = PROTO_NAMES.get(int(rs.proto[r]), "tcp")
        out = f"-m {name}"
        slo, shi = c >> 16, c & 0xFFFF
        if (slo, shi) != (0, 65535):
            out += f" {'! ' if inv & 2 else ''}--sport {_ports(slo, shi)}"
        if (a, b) != (0, 65535):
            out += f" {neg}--dport {_ports(a, b)}"
        return out
    if kind == ipt.M_MULTIPORT:
        opt = ("--dports", "--sports", "--ports")[c]
        ranges = ",".join(_ports(int(rs.mp_lo[k]), int(rs.mp_hi[k])) for k in range(a, a + b))
        return f"-m multiport {neg}{opt} {ranges}"
    if kind == ipt.M_ADDRTYPE:
        out = "-m addrtype"
        if a:
            out += f" {'! ' if a == 2 else ''}--src-type LOCAL"
        if b:
            out += f" {'! ' if b == 2 else ''}--dst-type LOCAL"
        return out
    if kind == ipt.M_STATISTIC:
        return f"-m statistic --mode random {neg}--probability {_prob(float(rs.m_p[j]))}"
    if kind == ipt.M_RECENT:
        op = {ipt.RECENT_RCHECK: "--rcheck", ipt.RECENT_SET: "--set",
              ipt.RECENT_UPDATE: "--update", ipt.RECENT_REMOVE: "--remove"}[b]
        out = f"-m recent {neg}{op}"
        if c:
            out += f" --seconds {c}"
        if inv & 2:
            out += " --reap"
        side = "--rdest" if inv & 4 else "--rsource"
        return out + f" --name {rs.recent_name(a)} --mask 255.255.255.255 {side}"
    if kind == ipt.M_MARK:
        return f"-m mark {neg}--mark {a:#x}/{b:#x}"
    if kind == ipt.M_CONNTRACK:
        states = ",".join(s for s in _CT_ORDER if a & ipt.CT_STATES[s])
        return f"-m conntrack {neg}--ctstate {states}"
    if kind == ipt.M_NFACCT:
        return f"-m nfacct --nfacct-name {rs.nfacct_names[a]}"
    raise ValueError(f"match kind {kind}: cannot render")


def render_rule(rs: ipt.Ruleset, r: int) -> str:
    """One rule as ``iptables-save`` prints it (``-A CHAIN ...``)."""
    parts = ["-A", rs.chain_names[int(rs.rule_chain[r])]]
    fl = int(rs.flags[r])
    if int(rs.src_mask[r]) or fl & ipt.F_SRC_INV:
        parts += (["!"] if fl & ipt.F_SRC_INV else []) + ["-s", _cidr(rs.src[r], rs.src_mask[r])]
    if int(rs.dst_mask[r]) or fl & ipt.F_DST_INV:
        parts += (["!"] if fl & ipt.F_DST_INV else []) + ["-d", _cidr(rs.dst[r], rs.dst_mask[r])]
    if int(rs.proto[r]):
        name = PROTO_NAMES.get(int(rs.proto[r]), str(int(rs.proto[r])))
        parts += (["!"] if fl & ipt.F_PROTO_INV else []) + ["-p", name]
    for j in range(int(rs.mptr[r]), int(rs.mptr[r + 1])):
        parts.append(_render_match(rs, r, j))
    tk = int(rs.target[r])
    if tk == ipt.T_JUMP:
        parts += ["-j", rs.chain_names[int(rs.tchain[r])]]
    elif tk == ipt.T_GOTO:
        parts += ["-g", rs.chain_names[int(rs.tchain[r])]]
    elif tk == ipt.T_DNAT:
        dest = int_to_ip(rs.taddr[r])
        if int(rs.tport[r]):
            dest += f":{int(rs.tport[r])}"
        parts += ["-j", "DNAT", "--to-destination", dest]
    elif tk == ipt.T_MASQUERADE:
        parts += ["-j", "MASQUERADE"] + (["--random-fully"] if int(rs.tport[r]) else [])
    elif tk == ipt.T_MARK:
        parts += ["-j", "MARK", "--set-xmark", f"{int(rs.tval[r]):#x}/{int(rs.tmask[r]):#x}"]
    elif tk == ipt.T_REJECT:
        parts += ["-j", "REJECT", "--reject-with", "icmp-port-unreachable"]
    elif tk != ipt.T_NONE:
        parts += ["-j", ipt.TARGET_NAMES[tk]]
    return " ".join(parts)


def write_restore(rs: ipt.Ruleset, out: TextIO) -> dict[int, int]:
    """Write ``rs`` as iptables-restore input; returns {rule index: line number (1-based)}."""
    lines: dict[int, int] = {}
    line = 0
    tables = []
    for t in rs.chain_table:
        if int(t) not in tables:
            tables.append(int(t))
    for t in tables:
        chains = np.nonzero(rs.chain_table == t)[0]
        head = [f"*{ipt.TABLE_NAMES[t]}"]
        for c in chains:
            policy = int(rs.chain_policy[c])
            pol = ipt.VERDICT_NAMES[policy] if policy >= 0 else "-"
            head.append(f":{rs.chain_names[c]} {pol} [0:0]")
        out.write("\n".join(head) + "\n")
        line += len(head)
        for c in chains:
            for r in range(int(rs.chain_start[c]), int(rs.chain_end[c])):
                out.write(render_rule(rs, r) + "\n")
                line += 1
                lines[r] = line
        out.write("COMMIT\n")
        line += 1
    return lines


def render_restore(rs: ipt.Ruleset) -> str:
    """The ruleset as one iptables-restore text (see :func:`write_restore`)."""
    import io

    buf = io.StringIO()
    write_restore(rs, buf)
    return buf.getvalue()


# ---- parsing ---------------------------------------------------------------------------------


class _Fail(Exception):
    pass


def _addr(text: str) -> tuple[int, int]:
    try:
        net = ipaddress.IPv4Network(text, strict=False)
    except ValueError:
        if "/" in text:
            host, mask = text.split("/", 1)
            try:
                m = int(ipaddress.IPv4Address(mask))
                return int(ipaddress.IPv4Address(host)) & m, m
            except ValueError:
                pass
        raise _Fail(f"expected an IPv4 address[/mask], got {text!r}") from None
    return int(net.network_address), int(net.netmask)


def _port_range(text: str) -> tuple[int, int]:
    try:
        if ":" in text:
            lo, hi = text.split(":", 1)
            a, b = int(lo or 0), int(hi or 65535)
        else:
            a = b = int(text)
    except ValueError:
        raise _Fail(f"expected a port or port range, got {text!r}") from None
    if not 0 <= a <= b <= 65535:
        raise _Fail(f"expected a port range within 0-65535, got {text!r}")
    return a, b


def _int(text: str, what: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise _Fail(f"{what}: expected an integer, got {text!r}") from None


def _value_mask(text: str, default_mask: int = 0xFFFFFFFF) -> tuple[int, int]:
    if "/" in text:
        v, m = text.split("/", 1)
        return _int(v, "mark value"), _int(m, "mark mask")
    return _int(text, "mark value"), default_mask


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.chains: list[tuple[int, str, int]] = []  # (table, name, policy)
        self.chain_index: dict[tuple[int, str], int] = {}
        self.rules: list[tuple] = []
        self.matches: list[list[tuple]] = []
        self.comments: list[str] = []
        self.comment_id: dict[str, int] = {}
        self.recent: dict[str, int] = {}
        self.nfacct: dict[str, int] = {}
        self.mp_lo: list[int] = []
        self.mp_hi: list[int] = []
        self.pending_jumps: list[tuple[int, str, int, int]] = []  # (rule, name, table, line)
        self.skipped: list[str] = []

    def fail(self, line: int, msg: str) -> UserError:
        return UserError(f"{self.source}:{line}: {msg}")

    def parse(self, lines: Iterable[str]) -> ipt.Ruleset:
        table = None
        skipping = False
        lineno = 0
        for lineno, raw in enumerate(lines, 1):
            text = raw.strip()
            if not text or text.startswith("#"):
                continue
            try:
                if text.startswith("*"):
                    if table is not None or skipping:
                        raise _Fail(f"expected COMMIT before {text!r}")
                    name = text[1:]
                    if name in _TABLE_ID:
                        table = _TABLE_ID[name]
                    else:
                        skipping = True
                        self.skipped.append(name)
                    continue
                if text == "COMMIT":
                    if table is None and not skipping:
                        raise _Fail("expected a '*table' line before COMMIT")
                    table, skipping = None, False
                    continue
                if skipping:
                    continue
                if table is None:
                    raise _Fail(f"expected a '*table' line, got {text[:40]!r}")
                if text.startswith(":"):
                    self._chain_line(table, text)
                elif text.startswith("-N ") or text.startswith("--new-chain "):
                    self._declare(table, text.split()[1], -1)
                elif text.startswith("-A ") or text.startswith("--append ") or text.startswith("["):
                    self._rule(table, text, lineno)
                else:
                    raise _Fail(f"expected ':CHAIN', '-A CHAIN ...' or COMMIT, got "
                                f"{text.split()[0]!r}")
            except _Fail as exc:
                raise self.fail(lineno, str(exc)) from None
        if table is not None or skipping:
            raise self.fail(lineno, "expected COMMIT at the end of the table")
        return self._finish()

    def _declare(self, table: int, name: str, policy: int) -> int:
        key = (table, name)
        if key in self.chain_index:
            raise _Fail(f"chain {name!r} declared twice")
        self.chain_index[key] = len(self.chains)
        self.chains.append((table, name, policy))
        return self.chain_index[key]

    def _chain_line(self, table: int, text: str) -> None:
        parts = text[1:].split()
        if len(parts) < 2:
            raise _Fail(f"expected ':CHAIN POLICY [packets:bytes]', got {text!r}")
        name, pol = parts[0], parts[1]
        builtin = name in BUILTIN[ipt.TABLE_NAMES[table]]
        if builtin:
            if pol not in ("ACCEPT", "DROP"):
                raise _Fail(f"chain {name}: expected policy ACCEPT or DROP, got {pol!r}")
            self._declare(table, name, ipt.V_ACCEPT if pol == "ACCEPT" else ipt.V_DROP)
        else:
            if pol != "-":
                raise _Fail(f"chain {name}: expected policy '-' for a user chain, got {pol!r}")
            self._declare(table, name, -1)

    def _rule(self, table: int, text: str, lineno: int) -> None:
        tokens = shlex.split(text) if ('"' in text or "'" in text) else text.split()
        if tokens[0].startswith("["):
            tokens = tokens[1:]
        if len(tokens) < 2 or tokens[0] not in ("-A", "--append"):
            raise _Fail(f"expected '-A CHAIN', got {' '.join(tokens[:2])!r}")
        chain = self.chain_index.get((table, tokens[1]))
        if chain is None and tokens[1] in BUILTIN[ipt.TABLE_NAMES[table]]:
            chain = self._declare(table, tokens[1], ipt.V_ACCEPT)  # restore input may omit it
        if chain is None:
            raise _Fail(f"chain {tokens[1]!r} is not declared in table "
                        f"{ipt.TABLE_NAMES[table]}")
        src = smask = dst = dmask = proto = flags = 0
        target, tname = ipt.T_NONE, None
        taddr = tport = tval = tmask = 0
        matches: list[tuple] = []
        current = None  # name of the match whose options follow
        i = 2
        neg = False
        n = len(tokens)

        def arg(k: int) -> str:
            if k >= n:
                raise _Fail(f"option {tokens[k - 1]!r}: expected a value")
            return tokens[k]

        while i < n:
            tok = tokens[i]
            if tok == "!":
                neg = True
                i += 1
                continue
            if tok in ("-s", "--source", "-d", "--destination"):
                a, m = _addr(arg(i + 1))
                if tok in ("-s", "--source"):
                    src, smask = a, m
                    flags |= ipt.F_SRC_INV if neg else 0
                else:
                    dst, dmask = a, m
                    flags |= ipt.F_DST_INV if neg else 0
                neg = False
                i += 2
                continue
            if tok in ("-p", "--protocol"):
                name = arg(i + 1).lower()
                proto = PROTOCOLS.get(name)
                if proto is None:
                    proto = _int(name, "protocol")
                flags |= ipt.F_PROTO_INV if neg else 0
                neg = False
                i += 2
                continue
            if tok in ("-i", "-o", "-f", "--in-interface", "--out-interface", "--fragment"):
                raise _Fail(f"unsupported option {tok!r} (interfaces and fragments are not "
                            f"modelled)")
            if tok in ("-m", "--match"):
                if neg:
                    raise _Fail("'!' before -m")
                current = arg(i + 1)
                if current not in ("comment", "tcp", "udp", "sctp", "multiport", "addrtype",
                                   "statistic", "recent", "mark", "conntrack", "nfacct"):
                    raise _Fail(f"unknown match {current!r}")
                if current in ("tcp", "udp", "sctp"):
                    matches.append([ipt.M_PORT, 0, 0, 65535, 65535, 0.0])
                elif current == "recent":
                    matches.append([ipt.M_RECENT, 0, -1, ipt.RECENT_RCHECK, 0, 0.0])
                elif current == "statistic":
                    matches.append([ipt.M_STATISTIC, 0, -1, 0, 0, -1.0])
                elif current == "addrtype":
                    matches.append([ipt.M_ADDRTYPE, 0, 0, 0, 0, 0.0])
                else:
                    kind = {"comment": ipt.M_COMMENT, "multiport": ipt.M_MULTIPORT,
                            "mark": ipt.M_MARK, "conntrack": ipt.M_CONNTRACK,
                            "nfacct": ipt.M_NFACCT}[current]
                    matches.append([kind, 0, -1, 0, 0, 0.0])
                i += 2
                continue
            if tok in ("-j", "--jump", "-g", "--goto"):
                if neg:
                    raise _Fail(f"'!' before {tok}")
                tname = arg(i + 1)
                goto = tok in ("-g", "--goto")
                if tname in _TERMINALS and not goto:
                    target = _TERMINALS[tname]
                else:
                    if (table, tname) not in self.chain_index:
                        raise _Fail(f"unknown target {tname!r} (neither a chain declared in "
                                    f"table {ipt.TABLE_NAMES[table]} nor a supported target)")
                    target = ipt.T_GOTO if goto else ipt.T_JUMP
                    self.pending_jumps.append((len(self.rules), tname, table, lineno))
                i += 2
                taddr, tport, tval, tmask, i = self._target_opts(tname, target, tokens, i)
                if i < n:
                    raise _Fail(f"unknown option {tokens[i]!r} for target {tname}")
                break
            if tok in ("--dport", "--destination-port", "--sport", "--source-port") and (
                current not in ("tcp", "udp", "sctp")
            ):
                if proto not in (6, 17, 132):
                    raise _Fail(f"option {tok!r} needs -p tcp, udp or sctp")
                current = PROTO_NAMES[proto]
                matches.append([ipt.M_PORT, 0, 0, 65535, 65535, 0.0])
            if current is None or not tok.startswith("-"):
                raise _Fail(f"unknown option {tok!r}")
            i = self._match_opt(current, matches[-1], tokens, i, neg)
            neg = False
        if neg:
            raise _Fail("dangling '!'")
        for m in matches:
            self._check_match(m)
        self.rules.append((chain, src, smask, dst, dmask, proto, flags, target, taddr, tport,
                           tval, tmask, lineno))
        self.matches.append([tuple(m) for m in matches])

    def _check_match(self, m: list) -> None:
        kind = m[0]
        if kind == ipt.M_STATISTIC and m[5] < 0:
            raise _Fail("match 'statistic': expected --mode random --probability P")
        if kind == ipt.M_RECENT and m[2] < 0:
            m[2] = self._id(self.recent, "DEFAULT")
        if kind == ipt.M_COMMENT and m[2] < 0:
            raise _Fail("match 'comment': expected --comment TEXT")
        if kind == ipt.M_MARK and m[2] < 0:
            raise _Fail("match 'mark': expected --mark VALUE[/MASK]")
        if kind == ipt.M_CONNTRACK and m[2] < 0:
            raise _Fail("match 'conntrack': expected --ctstate STATES")
        if kind == ipt.M_NFACCT and m[2] < 0:
            raise _Fail("match 'nfacct': expected --nfacct-name NAME")
        if kind == ipt.M_MULTIPORT and m[2] < 0:
            raise _Fail("match 'multiport': expected --dports, --sports or --ports")

    @staticmethod
    def _id(table: dict, name: str) -> int:
        if name not in table:
            table[name] = len(table)
        return table[name]

    def _match_opt(self, current: str, m: list, tokens: list, i: int, neg: bool) -> int:
        tok = tokens[i]

        def arg() -> str:
            if i + 1 >= len(tokens):
                raise _Fail(f"option {tok!r}: expected a value")
            return tokens[i + 1]

        if current in ("tcp", "udp", "sctp"):
            if tok in ("--dport", "--destination-port"):
                m[2], m[3] = _port_range(arg())
                m[1] |= 1 if neg else 0
                return i + 2
            if tok in ("--sport", "--source-port"):
                lo, hi = _port_range(arg())
                m[4] = (lo << 16) | hi
                m[1] |= 2 if neg else 0
                return i + 2
        elif current == "comment" and tok == "--comment":
            text = arg()
            if text not in self.comment_id:
                self.comment_id[text] = len(self.comments)
                self.comments.append(text)
            m[2], m[3] = ipt.C_LITERAL, self.comment_id[text]
            return i + 2
        elif current == "multiport" and tok in ("--dports", "--destination-ports", "--sports",
                                                "--source-ports", "--ports"):
            m[4] = 0 if tok.startswith("--d") else 1 if tok.startswith("--s") else 2
            m[2] = len(self.mp_lo)
            for part in arg().split(","):
                lo, hi = _port_range(part)
                self.mp_lo.append(lo)
                self.mp_hi.append(hi)
            m[3] = len(self.mp_lo) - m[2]
            m[1] |= 1 if neg else 0
            return i + 2
        elif current == "addrtype" and tok in ("--src-type", "--dst-type"):
            if arg() != "LOCAL":
                raise _Fail(f"match 'addrtype': unsupported type {arg()!r} (only LOCAL)")
            m[2 if tok == "--src-type" else 3] = 2 if neg else 1
            return i + 2
        elif current == "addrtype" and tok in ("--limit-iface-in", "--limit-iface-out"):
            raise _Fail(f"match 'addrtype': unsupported option {tok!r}")
        elif current == "statistic":
            if tok == "--mode":
                if arg() != "random":
                    raise _Fail(f"match 'statistic': unsupported mode {arg()!r} (only random)")
                return i + 2
            if tok == "--probability":
                try:
                    p = float(arg())
                except ValueError:
                    raise _Fail(f"--probability: expected a number, got {arg()!r}") from None
                if not 0.0 <= p <= 1.0:
                    raise _Fail(f"--probability: expected 0..1, got {arg()!r}")
                m[5] = p
                m[2] = ipt.statistic_threshold(p)
                m[1] |= 1 if neg else 0
                return i + 2
        elif current == "recent":
            ops = {"--rcheck": ipt.RECENT_RCHECK, "--set": ipt.RECENT_SET,
                   "--update": ipt.RECENT_UPDATE, "--remove": ipt.RECENT_REMOVE}
            if tok in ops:
                m[3] = ops[tok]
                m[1] |= 1 if neg else 0
                return i + 1
            if tok == "--name":
                m[2] = self._id(self.recent, arg())
                return i + 2
            if tok == "--seconds":
                m[4] = _int(arg(), "--seconds")
                return i + 2
            if tok == "--reap":
                m[1] |= 2
                return i + 1
            if tok in ("--rsource", "--rdest"):
                m[1] = (m[1] | 4) if tok == "--rdest" else (m[1] & ~4)
                return i + 1
            if tok == "--mask":
                if arg() != "255.255.255.255":
                    raise _Fail(f"match 'recent': unsupported --mask {arg()!r}")
                return i + 2
        elif current == "mark" and tok == "--mark":
            m[2], m[3] = _value_mask(arg())
            m[1] |= 1 if neg else 0
            return i + 2
        elif current == "conntrack" and tok == "--ctstate":
            bits = 0
            for s in arg().split(","):
                if s not in ipt.CT_STATES:
                    raise _Fail(f"match 'conntrack': unknown state {s!r}")
                bits |= ipt.CT_STATES[s]
            m[2] = bits
            m[1] |= 1 if neg else 0
            return i + 2
        elif current == "nfacct" and tok == "--nfacct-name":
            m[2] = self._id(self.nfacct, arg())
            return i + 2
        raise _Fail(f"unknown option {tok!r} for match {current!r}")

    def _target_opts(self, tname: str, target: int, tokens: list, i: int):
        taddr = tport = tval = tmask = 0
        n = len(tokens)
        while i < n:
            tok = tokens[i]
            val = tokens[i + 1] if i + 1 < n else None
            if target == ipt.T_DNAT and tok == "--to-destination" and val:
                host, _, port = val.partition(":")
                taddr, _ = _addr(host)
                if port:
                    lo, hi = _port_range(port)
                    if lo != hi:
                        raise _Fail(f"DNAT: port ranges are not supported, got {val!r}")
                    tport = lo
                i += 2
            elif target == ipt.T_MASQUERADE and tok == "--random-fully":
                tport = 1
                i += 1
            elif target == ipt.T_REJECT and tok == "--reject-with" and val:
                i += 2
            elif target == ipt.T_MARK and val and tok in ("--set-xmark", "--set-mark",
                                                          "--or-mark", "--and-mark",
                                                          "--xor-mark"):
                if tok == "--set-xmark":
                    tval, tmask = _value_mask(val)
                elif tok == "--set-mark":
                    v, msk = _value_mask(val)
                    tval, tmask = v, msk | v
                else:
                    v = _int(val, tok)
                    tval, tmask = {"--or-mark": (v, v), "--and-mark": (0, ~v & 0xFFFFFFFF),
                                   "--xor-mark": (v, 0)}[tok]
                i += 2
            else:
                return taddr, tport, tval, tmask, i
        if target == ipt.T_DNAT and taddr == 0:
            raise _Fail("DNAT: expected --to-destination ADDR[:PORT]")
        return taddr, tport, tval, tmask, i

    def _finish(self) -> ipt.Ruleset:
        tchain = np.full(len(self.rules), -1, dtype=np.int64)
        for r, name, table, line in self.pending_jumps:
            c = self.chain_index.get((table, name))
            if c is None:
                raise self.fail(line, f"unknown target {name!r} (neither a user chain of "
                                      f"table {ipt.TABLE_NAMES[table]} nor a supported target)")
            if self.chains[c][2] >= 0:
                raise self.fail(line, f"jump to builtin chain {name!r}")
            tchain[r] = c
        n_rules = len(self.rules)
        cols = list(zip(*self.rules, strict=True)) if n_rules else [()] * 13
        rule_chain = np.array(cols[0], dtype=np.int64)
        order = np.argsort(rule_chain, kind="stable")

        def col(k, dtype):
            return np.array(cols[k], dtype=dtype)[order] if n_rules else np.zeros(0, dtype)

        counts = np.bincount(rule_chain, minlength=len(self.chains)) if n_rules else np.zeros(
            len(self.chains), dtype=np.int64)
        chain_end = np.cumsum(counts).astype(np.int64)
        chain_start = chain_end - counts
        mcounts = np.array([len(self.matches[r]) for r in order], dtype=np.int64)
        mptr = np.zeros(n_rules + 1, dtype=np.int64)
        np.cumsum(mcounts, out=mptr[1:])
        flat = [m for r in order for m in self.matches[r]]
        mcols = list(zip(*flat, strict=True)) if flat else [()] * 6
        hook_chain = np.full((2, 5), -1, dtype=np.int64)
        for c, (table, name, policy) in enumerate(self.chains):
            if policy >= 0:
                hook_chain[table, ipt.HOOK_NAMES.index(name)] = c
        rs = ipt.Ruleset(
            src=col(1, np.uint32), src_mask=col(2, np.uint32), dst=col(3, np.uint32),
            dst_mask=col(4, np.uint32), proto=col(5, np.uint8), flags=col(6, np.uint8),
            mptr=mptr, target=col(7, np.uint8), tchain=tchain[order] if n_rules else tchain,
            taddr=col(8, np.uint32), tport=col(9, np.uint16), tval=col(10, np.uint32),
            tmask=col(11, np.uint32), rule_chain=rule_chain[order],
            rule_line=col(12, np.int64),
            m_kind=np.array(mcols[0], dtype=np.uint8), m_inv=np.array(mcols[1], dtype=np.uint8),
            m_a=np.array(mcols[2], dtype=np.int64), m_b=np.array(mcols[3], dtype=np.int64),
            m_c=np.array(mcols[4], dtype=np.int64), m_p=np.array(mcols[5], dtype=np.float64),
            mp_lo=np.array(self.mp_lo, dtype=np.int64), mp_hi=np.array(self.mp_hi, dtype=np.int64),
            chain_start=chain_start, chain_end=chain_end,
            chain_table=np.array([c[0] for c in self.chains], dtype=np.int8),
            chain_policy=np.array([c[2] for c in self.chains], dtype=np.int8),
            hook_chain=hook_chain, chain_names=tuple(c[1] for c in self.chains),
            comments=tuple(self.comments), recent_names=tuple(self.recent),
            nfacct_names=tuple(self.nfacct),
            extra={"skipped_tables": tuple(self.skipped), "source": self.source},
        )
        _check_loops(rs, self)
        return rs


def _check_loops(rs: ipt.Ruleset, parser: _Parser) -> None:
    """Reject jump/goto loops, as the kernel's mark_source_chains does at load time."""
    jumps = rs.tchain >= 0
    edges_from = rs.rule_chain[jumps]
    edges_to = rs.tchain[jumps]
    lines = rs.rule_line[jumps]
    order = np.argsort(edges_from, kind="stable")
    edges_from, edges_to, lines = edges_from[order], edges_to[order], lines[order]
    ptr = np.searchsorted(edges_from, np.arange(rs.n_chains + 1))
    state = np.zeros(rs.n_chains, dtype=np.int8)  # 0 new, 1 on stack, 2 done
    for root in range(rs.n_chains):
        if state[root]:
            continue
        stack = [(root, int(ptr[root]))]
        state[root] = 1
        while stack:
            c, k = stack[-1]
            if k >= ptr[c + 1]:
                state[c] = 2
                stack.pop()
                continue
            stack[-1] = (c, k + 1)
            nxt = int(edges_to[k])
            if state[nxt] == 1:
                raise parser.fail(int(lines[k]), f"jump loop through chain "
                                                 f"{rs.chain_names[nxt]!r}")
            if state[nxt] == 0:
                state[nxt] = 1
                stack.append((nxt, int(ptr[nxt])))


def parse_save(text: str | Iterable[str], *, source: str = "<dump>",
               masq_mark: int = ipt.DEFAULT_MASQ_MARK) -> ipt.Ruleset:
    """Parse ``iptables-save`` output (a string or lines) into a Ruleset (nat and filter)."""
    lines = text.splitlines() if isinstance(text, str) else text
    rs = _Parser(source).parse(lines)
    if masq_mark != rs.masq_mark:
        from dataclasses import replace

        rs = replace(rs, masq_mark=masq_mark)
    return rs


def load_save(path: str | Path, *, masq_mark: int = ipt.DEFAULT_MASQ_MARK) -> ipt.Ruleset:
    """Parse an ``iptables-save`` dump file."""
    p = Path(path)
    try:
        with p.open() as fh:
            return parse_save(fh, source=str(p), masq_mark=masq_mark)
    except OSError as exc:
        msg = f"{p}: expected a readable iptables-save dump, got {exc.strerror}"
        raise UserError(msg) from None
