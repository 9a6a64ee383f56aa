"""kube-proxy's iptables dataplane: a compiler to flat rule arrays and an ipt_do_table traversal.

``compile_cluster`` lays a :class:`~kernels.cluster.Cluster` out exactly as kube-proxy's
``syncProxyRules`` does (spec B.1): nat PREROUTING/OUTPUT -> KUBE-SERVICES (one rule per service
port per IP in ``cluster.port_order``, last rule ``addrtype --dst-type LOCAL`` -> KUBE-NODEPORTS),
KUBE-SVC-*/KUBE-SVL-* (masquerade rule, ``recent`` affinity rules, the ``statistic`` cascade),
KUBE-SEP-* (hairpin, DNAT), KUBE-EXT-*, KUBE-FW-*, KUBE-NODEPORTS, KUBE-MARK-MASQ,
KUBE-POSTROUTING, and the filter chains a NEW connection crosses (KUBE-SERVICES,
KUBE-EXTERNAL-SERVICES, KUBE-NODEPORTS, KUBE-FORWARD, KUBE-PROXY-FIREWALL). Construction is
vectorised numpy: 100,000 Services x 10 endpoints (~3.2 M rules) build in seconds.

``traverse`` is a numba kernel with ``ipt_do_table`` semantics (spec C.1): every rule before the
match is evaluated (IP match, then each extension match in order), jumps push a return address,
gotos do not, RETURN pops (empty stack -> the builtin chain's policy), non-terminal targets
continue, terminal targets end the table. ``statistic`` draws from a seeded generator with the
kernel's 31-bit threshold; ``recent`` lists (keyed by list name and address) persist across the
packets of one call. harness/iptables_text.py parses ``iptables-save`` dumps into the same
:class:`Ruleset`, so the kernel also traverses rules it did not generate.

Counting conventions (documented choices): ``rules_evaluated`` counts rule entries whose IP
match was tested (a chain's implicit tail entry / builtin policy entry is not a rule);
``matches_tested`` counts the IP match as one match plus every extension match evaluated.
Service port names are ``default/svc-<s>:p<j>`` (Service index ``s``, port index ``j``).
"""

from __future__ import annotations

import base64
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numba import njit

from kernels.cluster import (
    PROTO_TCP,
    PROTO_UDP,
    SVC_EXTERNALNAME,
    Cluster,
    int_to_ip,
    port_service,
)

# ---- constants shared with harness/iptables_text.py and tests -------------------------------

TABLE_NAT = 0
TABLE_FILTER = 1
TABLE_NAMES = ("nat", "filter")

HOOK_PREROUTING = 0
HOOK_INPUT = 1
HOOK_FORWARD = 2
HOOK_OUTPUT = 3
HOOK_POSTROUTING = 4
HOOK_NAMES = ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING")
TABLE_HOOKS = {
    TABLE_NAT: (HOOK_PREROUTING, HOOK_INPUT, HOOK_OUTPUT, HOOK_POSTROUTING),
    TABLE_FILTER: (HOOK_INPUT, HOOK_FORWARD, HOOK_OUTPUT),
}

# Verdicts (also builtin chain policies).
V_DROP = 0
V_ACCEPT = 1
V_REJECT = 2
VERDICT_NAMES = ("DROP", "ACCEPT", "REJECT")

# Target kinds.
T_NONE = 0  # no -j: counters only, continue
T_JUMP = 1
T_GOTO = 2
T_RETURN = 3
T_ACCEPT = 4
T_DROP = 5
T_REJECT = 6
T_DNAT = 7
T_MASQUERADE = 8
T_MARK = 9
TARGET_NAMES = ("", "JUMP", "GOTO", "RETURN", "ACCEPT", "DROP", "REJECT", "DNAT", "MASQUERADE",
                "MARK")

# Rule IP-match flags.
F_SRC_INV = 1
F_DST_INV = 2
F_PROTO_INV = 4

# Extension match kinds (m_kind) and their parameters.
M_COMMENT = 0  # a = comment code, b, c = code arguments (always matches)
M_PORT = 1  # tcp/udp: a = dport lo, b = dport hi, c = (sport lo << 16) | sport hi;
#             inv bit 1 = ! --dport, bit 2 = ! --sport
M_MULTIPORT = 2  # a = first range in mp_lo/mp_hi, b = count, c = 0 dports / 1 sports / 2 ports
M_ADDRTYPE = 3  # a = src mode, b = dst mode (0 none, 1 LOCAL, 2 ! LOCAL)
M_STATISTIC = 4  # a = 31-bit threshold lround(2^31 p), p = probability
M_RECENT = 5  # a = list id, b = op (RECENT_*), c = seconds (0 = none); inv bits: 1 !, 2 reap,
#               4 rdest
M_MARK = 6  # a = value, b = mask
M_CONNTRACK = 7  # a = ctstate bit set (CT_*)
M_NFACCT = 8  # a = accounting object id (always matches)
MATCH_NAMES = ("comment", "tcp/udp", "multiport", "addrtype", "statistic", "recent", "mark",
               "conntrack", "nfacct")

RECENT_RCHECK = 1
RECENT_SET = 2
RECENT_UPDATE = 3
RECENT_REMOVE = 4

CT_INVALID = 1
CT_NEW = 2
CT_ESTABLISHED = 4
CT_RELATED = 8
CT_UNTRACKED = 16
CT_SNAT = 32
CT_DNAT = 64
CT_STATES = {"INVALID": CT_INVALID, "NEW": CT_NEW, "ESTABLISHED": CT_ESTABLISHED,
             "RELATED": CT_RELATED, "UNTRACKED": CT_UNTRACKED, "SNAT": CT_SNAT, "DNAT": CT_DNAT}

# Comment codes (m_a of M_COMMENT): the text is rebuilt on demand (see Ruleset.comment_text).
C_LITERAL = 0  # b = index into Ruleset.comments
C_CLUSTER_IP = 1
C_EXTERNAL_IP = 2
C_LB_IP = 3
C_NODEPORT = 4
C_NO_ENDPOINTS = 5
C_NO_LOCAL = 6
C_FW_DROP = 7
C_EXT_MASQ = 8
C_EXT_POD = 9
C_EXT_MASQ_LOCAL = 10
C_EXT_ROUTE_LOCAL = 11
C_FW_OTHER = 12
C_SVC_EP = 13  # b = port, c = endpoint
C_SVC = 14

_COMMENT_FORMATS = {
    C_CLUSTER_IP: "{n} cluster IP",
    C_EXTERNAL_IP: "{n} external IP",
    C_LB_IP: "{n} loadbalancer IP",
    C_NODEPORT: "{n}",
    C_NO_ENDPOINTS: "{n} has no endpoints",
    C_NO_LOCAL: "{n} has no local endpoints",
    C_FW_DROP: "{n} traffic not accepted by {fw}",
    C_EXT_MASQ: "masquerade traffic for {n} external destinations",
    C_EXT_POD: "pod traffic for {n} external destinations",
    C_EXT_MASQ_LOCAL: "masquerade LOCAL traffic for {n} external destinations",
    C_EXT_ROUTE_LOCAL: "route LOCAL traffic for {n} external destinations",
    C_FW_OTHER: "other traffic to {n} will be dropped by KUBE-PROXY-FIREWALL",
    C_SVC_EP: "{n} -> {ep}",
    C_SVC: "{n}",
}

# Chain kinds of compiled per-port chains (chain_kind); fixed chains use KIND_FIXED.
KIND_FIXED = 0
KIND_SVC = 1
KIND_SVL = 2
KIND_EXT = 3
KIND_FW = 4
KIND_SEP = 5
_KIND_PREFIX = {KIND_SVC: "KUBE-SVC-", KIND_SVL: "KUBE-SVL-", KIND_EXT: "KUBE-EXT-",
                KIND_FW: "KUBE-FW-", KIND_SEP: "KUBE-SEP-"}

# Fixed chains of a compiled ruleset: (table, name, policy or -1 for user chains).
_FIXED_CHAINS = (
    (TABLE_NAT, "PREROUTING", V_ACCEPT),
    (TABLE_NAT, "INPUT", V_ACCEPT),
    (TABLE_NAT, "OUTPUT", V_ACCEPT),
    (TABLE_NAT, "POSTROUTING", V_ACCEPT),
    (TABLE_NAT, "KUBE-SERVICES", -1),
    (TABLE_NAT, "KUBE-NODEPORTS", -1),
    (TABLE_NAT, "KUBE-POSTROUTING", -1),
    (TABLE_NAT, "KUBE-MARK-MASQ", -1),
    (TABLE_FILTER, "INPUT", V_ACCEPT),
    (TABLE_FILTER, "FORWARD", V_ACCEPT),
    (TABLE_FILTER, "OUTPUT", V_ACCEPT),
    (TABLE_FILTER, "KUBE-SERVICES", -1),
    (TABLE_FILTER, "KUBE-EXTERNAL-SERVICES", -1),
    (TABLE_FILTER, "KUBE-NODEPORTS", -1),
    (TABLE_FILTER, "KUBE-FORWARD", -1),
    (TABLE_FILTER, "KUBE-PROXY-FIREWALL", -1),
)
(_N_PRE, _N_INPUT, _N_OUTPUT, _N_POST, _N_SERVICES, _N_NODEPORTS, _N_POSTROUTING, _N_MARK_MASQ,
 _F_INPUT, _F_FORWARD, _F_OUTPUT, _F_SERVICES, _F_EXTERNAL, _F_NODEPORTS, _F_FORWARD_K,
 _F_FIREWALL) = range(len(_FIXED_CHAINS))

DEFAULT_MASQ_MARK = 0x4000
"""masqueradeMark = 1 << masqueradeBit, default bit 14 (spec B.1, default unconfirmed)."""

LARGE_CLUSTER_ENDPOINTS = 1000
"""largeClusterEndpointsThreshold: above it kube-proxy drops per-endpoint comments (spec B.1)."""

_FIXED_COMMENTS = (
    "kubernetes service portals",
    "kubernetes postrouting rules",
    "kubernetes externally-visible service portals",
    "kubernetes health check service ports",
    "kubernetes forwarding rules",
    "kubernetes load balancer firewall",
    "kubernetes forwarding conntrack rule",
    "kubernetes service traffic requiring SNAT",
    "kubernetes service nodeports; NOTE: this must be the last rule in this chain",
)
(_CM_PORTALS, _CM_POSTROUTING, _CM_EXTERNAL, _CM_HEALTH, _CM_FORWARD, _CM_FIREWALL, _CM_CONNTRACK,
 _CM_SNAT, _CM_NODEPORTS_LAST) = range(len(_FIXED_COMMENTS))

LOCALHOST_NFACCT = "localhost_nps_accepted_pkts"


def statistic_threshold(probability: float) -> int:
    """xt_statistic's stored threshold: lround(2^31 * p); a draw matches if (u32 & 2^31-1) < it."""
    return int(math.floor(probability * 2147483648.0 + 0.5))


def kube_probability(k: int) -> str:
    """kube-proxy's ``computeProbability``: ``%0.10f`` of 1/k (spec B.1)."""
    return f"{1.0 / k:0.10f}"


def hash16(text: str) -> str:
    """First 16 characters of base32(sha256(text)) (kube-proxy ``portProtoHash``, spec B.1)."""
    # 10 bytes encode to exactly the first 16 base32 characters of the full digest.
    return base64.b32encode(hashlib.sha256(text.encode()).digest()[:10]).decode()


# ---- the ruleset -----------------------------------------------------------------------------


class _CompiledNames(Sequence):
    """Chain names of a compiled ruleset, hashed on first access (1 M SEP chains stay cheap)."""

    def __init__(self, fixed, kind, port, ep, cluster, port_name, proto_name):
        self._fixed, self._kind, self._port, self._ep = fixed, kind, port, ep
        self._cluster, self._port_name, self._proto_name = cluster, port_name, proto_name
        self._cache: dict[int, str] = {}

    def __len__(self) -> int:
        return int(self._kind.shape[0])

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        i = int(i)
        if i < 0:
            i += len(self)
        name = self._cache.get(i)
        if name is None:
            kind = int(self._kind[i])
            if kind == KIND_FIXED:
                return self._fixed[i]
            p = int(self._port[i])
            text = self._port_name(p) + self._proto_name(p)
            if kind == KIND_SEP:
                e = int(self._ep[i])
                text += f"{int_to_ip(self._cluster.ep_ip[e])}:{int(self._cluster.port_target[p])}"
            name = _KIND_PREFIX[kind] + hash16(text)
            self._cache[i] = name
        return name


@dataclass(frozen=True, repr=False)
class Ruleset:
    """nat + filter rules as flat arrays (rules contiguous per chain, in evaluation order).

    Rules ``r``: IP match ``src``/``src_mask``, ``dst``/``dst_mask``, ``proto`` (0 = any) with
    negation ``flags`` (F_*); extension matches ``m_*`` in ``mptr[r]:mptr[r+1]`` (M_* kinds, in
    rule order); target ``target`` (T_*), ``tchain`` (jump/goto), ``taddr``/``tport`` (DNAT,
    port 0 = unchanged; for MASQUERADE ``tport`` 1 = ``--random-fully``), ``tval``/``tmask``
    (MARK: mark = (mark & ~tmask) ^ tval).
    Chains ``c``: ``chain_start``/``chain_end``, ``chain_table``, ``chain_policy`` (V_* for
    builtin chains, -1 for user chains), ``chain_names``; ``hook_chain[table, hook]`` = builtin
    chain index or -1.
    """

    src: np.ndarray
    src_mask: np.ndarray
    dst: np.ndarray
    dst_mask: np.ndarray
    proto: np.ndarray
    flags: np.ndarray
    mptr: np.ndarray
    target: np.ndarray
    tchain: np.ndarray
    taddr: np.ndarray
    tport: np.ndarray
    tval: np.ndarray
    tmask: np.ndarray
    rule_chain: np.ndarray
    rule_line: np.ndarray  # source line in a parsed dump; -1 for compiled rules
    m_kind: np.ndarray
    m_inv: np.ndarray
    m_a: np.ndarray
    m_b: np.ndarray
    m_c: np.ndarray
    m_p: np.ndarray
    mp_lo: np.ndarray
    mp_hi: np.ndarray
    chain_start: np.ndarray
    chain_end: np.ndarray
    chain_table: np.ndarray
    chain_policy: np.ndarray
    hook_chain: np.ndarray
    chain_names: Sequence[str]
    comments: tuple[str, ...] = ()
    recent_names: tuple[str, ...] | None = None  # None: recent list id = chain index
    nfacct_names: tuple[str, ...] = ()
    local_addrs: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint32))
    masq_mark: int = DEFAULT_MASQ_MARK
    cluster: Cluster | None = None
    extra: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"Ruleset({self.n_rules} rules, {self.n_chains} chains)"

    @property
    def n_rules(self) -> int:
        return int(self.target.shape[0])

    @property
    def n_chains(self) -> int:
        return int(self.chain_start.shape[0])

    def rules_per_chain(self) -> np.ndarray:
        """Number of rules in every chain (int64[C])."""
        return self.chain_end - self.chain_start

    def counts(self) -> dict:
        """Rule and chain counts: total, per table, user chains, KUBE-SERVICES rules."""
        per = self.rules_per_chain()
        out = {"rules": self.n_rules, "chains": self.n_chains,
               "user_chains": int((self.chain_policy < 0).sum())}
        for t, name in enumerate(TABLE_NAMES):
            out[f"{name}_rules"] = int(per[self.chain_table == t].sum())
        svc = self.find_chain("KUBE-SERVICES", TABLE_NAT)
        out["kube_services_rules"] = int(per[svc]) if svc >= 0 else 0
        return out

    def find_chain(self, name: str, table: int) -> int:
        """Index of chain ``name`` in ``table`` (-1 if absent)."""
        if isinstance(self.chain_names, _CompiledNames) and not name.startswith(
                tuple(_KIND_PREFIX.values())):
            for i, (t, fixed, _p) in enumerate(_FIXED_CHAINS):
                if (t, fixed) == (table, name):
                    return i
            return -1
        index = self.extra.get("_index")
        if index is None:
            index = {}
            for c in range(self.n_chains):
                index[(int(self.chain_table[c]), self.chain_names[c])] = c
            self.extra["_index"] = index
        return index.get((table, name), -1)

    def recent_name(self, list_id: int) -> str:
        if self.recent_names is None:
            return self.chain_names[list_id]
        return self.recent_names[list_id]

    def port_name(self, p: int) -> str:
        """servicePortName of compiled service port ``p``: ``default/svc-<s>:p<j>``."""
        c = self.cluster
        s = int(np.searchsorted(c.port_ptr, p, side="right") - 1)
        return f"default/svc-{s}:p{p - int(c.port_ptr[s])}"

    def comment_text(self, code: int, b: int, c: int) -> str:
        """Text of a comment match (``m_a``, ``m_b``, ``m_c`` of an M_COMMENT entry)."""
        if code == C_LITERAL:
            return self.comments[b]
        fields = {"n": self.port_name(b)}
        if code == C_FW_DROP:
            fields["fw"] = self.chain_names[c]
        elif code == C_SVC_EP:
            cl = self.cluster
            fields["ep"] = f"{int_to_ip(cl.ep_ip[c])}:{int(cl.port_target[b])}"
        return _COMMENT_FORMATS[code].format(**fields)


# ---- compiler --------------------------------------------------------------------------------


class _Builder:
    """Accumulates blocks of rules (numpy columns) and sorts them into chain order."""

    _RULE_COLS = (("src", np.uint32), ("src_mask", np.uint32), ("dst", np.uint32),
                  ("dst_mask", np.uint32), ("proto", np.uint8), ("flags", np.uint8),
                  ("target", np.uint8), ("tchain", np.int64), ("taddr", np.uint32),
                  ("tport", np.uint16), ("tval", np.uint32), ("tmask", np.uint32))

    def __init__(self) -> None:
        self.chain: list[np.ndarray] = []
        self.seq: list[np.ndarray] = []
        self.cols: dict[str, list[np.ndarray]] = {k: [] for k, _ in self._RULE_COLS}
        self.matches: list[tuple] = []  # (owner, slot, kind, inv, a, b, c, p)
        self.n = 0

    def add(self, chain, seq, matches=(), **kw) -> None:
        chain = np.asarray(chain, dtype=np.int64)
        seq = np.asarray(seq, dtype=np.int64)
        lengths = {np.shape(v)[0] for v in (chain, seq, *kw.values()) if np.ndim(v)}
        for m in matches:
            lengths |= {np.shape(v)[0] for v in m if np.ndim(v)}
        if len(lengths) > 1:
            raise ValueError(f"rule block: length mismatch {sorted(lengths)}")
        n = lengths.pop() if lengths else 1
        if n == 0:
            return
        self.chain.append(np.broadcast_to(chain, (n,)))
        self.seq.append(np.broadcast_to(seq, (n,)))
        for key, dtype in self._RULE_COLS:
            default = -1 if key == "tchain" else 0
            value = kw.pop(key, None)
            self.cols[key].append(
                np.broadcast_to(np.asarray(default if value is None else value).astype(dtype),
                                (n,)))
        if kw:
            raise TypeError(f"unknown rule fields {sorted(kw)}")
        owner = np.arange(self.n, self.n + n, dtype=np.int64)
        for slot, m in enumerate(matches):
            kind, inv, a, b, c, p = (tuple(m) + (0, 0, 0, 0, 0.0))[:6]
            self.matches.append((owner, slot, kind, inv, a, b, c, p))
        self.n += n

    def finish(self) -> dict:
        chain = np.concatenate(self.chain)
        seq = np.concatenate(self.seq)
        order = np.lexsort((seq, chain))
        out = {k: np.concatenate(v)[order] for k, v in self.cols.items()}
        out["rule_chain"] = chain[order]
        newpos = np.empty(self.n, dtype=np.int64)
        newpos[order] = np.arange(self.n, dtype=np.int64)
        parts = {k: [] for k in ("pos", "slot", "kind", "inv", "a", "b", "c", "p")}
        for owner, slot, kind, inv, a, b, c, p in self.matches:
            k = owner.shape[0]
            parts["pos"].append(newpos[owner])
            parts["slot"].append(np.full(k, slot, dtype=np.int64))
            for key, value, dtype in (("kind", kind, np.uint8), ("inv", inv, np.uint8),
                                      ("a", a, np.int64), ("b", b, np.int64),
                                      ("c", c, np.int64), ("p", p, np.float64)):
                parts[key].append(np.broadcast_to(np.asarray(value).astype(dtype), (k,)))
        if parts["pos"]:
            pos = np.concatenate(parts["pos"])
            morder = np.lexsort((np.concatenate(parts["slot"]), pos))
            for key in ("kind", "inv", "a", "b", "c", "p"):
                out["m_" + key] = np.concatenate(parts[key])[morder]
            counts = np.bincount(pos, minlength=self.n)
        else:
            for key, dtype in (("kind", np.uint8), ("inv", np.uint8), ("a", np.int64),
                               ("b", np.int64), ("c", np.int64), ("p", np.float64)):
                out["m_" + key] = np.zeros(0, dtype=dtype)
            counts = np.zeros(self.n, dtype=np.int64)
        mptr = np.zeros(self.n + 1, dtype=np.int64)
        np.cumsum(counts, out=mptr[1:])
        out["mptr"] = mptr
        return out


def _proto_port_match(dport_lo, dport_hi=None):
    hi = dport_lo if dport_hi is None else dport_hi
    return (M_PORT, 0, dport_lo, hi, 65535)


def _comment(code, b=0, c=0):
    return (M_COMMENT, 0, code, b, c)


def _lit(i):
    return (M_COMMENT, 0, C_LITERAL, i, 0)


def compile_cluster(
    cluster: Cluster,
    *,
    masquerade_all: bool = False,
    cluster_cidr_detector: bool = True,
    localhost_nodeports: bool = True,
    localhost_nfacct: bool = False,
    comments: bool | None = None,
    masq_mark: int = DEFAULT_MASQ_MARK,
    random_fully: bool = True,
    tcp_be_liberal: bool = False,
    forward_policy: str = "ACCEPT",
    seed_order: int | None = None,
) -> Ruleset:
    """Compile ``cluster`` into kube-proxy's nat and filter rules (spec B.1), vectorised.

    ``masquerade_all`` / ``cluster_cidr_detector`` choose the KUBE-SVC masquerade rule (all
    sources, or ``! -s <cluster CIDR>``, or none). ``localhost_nodeports=False`` adds
    ``! -d 127.0.0.0/8`` to the final KUBE-SERVICES rule; ``localhost_nfacct`` adds kube-proxy's
    nfacct-counted 127.0.0.0/8 copy of every KUBE-NODEPORTS rule before it (placement
    unconfirmed; off by default because it needs the nfacct object in the kernel).
    ``comments=None`` follows kube-proxy: per-endpoint comments (SVC/SEP chains) are dropped
    when the cluster has more than 1000 endpoints (large-cluster mode). ``seed_order`` replaces
    ``cluster.port_order`` by a fresh seeded permutation (Go map order of another sync).
    Health-check node ports (filter KUBE-NODEPORTS ACCEPT) are not modelled: the cluster model
    has none; nor is kubelet's filter KUBE-FIREWALL (not written by kube-proxy's sync).
    ExternalName Services produce zero rules. Filter chains are flushed and rewritten with the
    builtin jump rules in kube-proxy's prepend order (iptablesJumpChains).
    """
    if forward_policy not in ("ACCEPT", "DROP"):
        raise ValueError(f"forward_policy: expected ACCEPT or DROP, got {forward_policy!r}")
    cl = cluster
    P = cl.n_ports
    psvc = port_service(cl)
    ep_count = np.diff(cl.ep_ptr)
    loc_csum = np.zeros(cl.n_endpoints + 1, dtype=np.int64)
    np.cumsum(cl.ep_local, out=loc_csum[1:])
    loc_count = loc_csum[cl.ep_ptr[1:]] - loc_csum[cl.ep_ptr[:-1]]
    n_ext = np.diff(cl.extip_ptr)[psvc]
    n_lb = np.diff(cl.lb_ptr)[psvc]
    n_src = np.diff(cl.src_ptr)[psvc]
    if comments is None:
        comments = cl.n_endpoints <= LARGE_CLUSTER_ENDPOINTS
    if seed_order is None:
        order = cl.port_order
    else:
        order = np.random.default_rng(seed_order).permutation(P)
    rank = np.empty(P, dtype=np.int64)
    rank[order] = np.arange(P, dtype=np.int64)

    int_local = cl.svc_int_local[psvc]
    ext_local = cl.svc_ext_local[psvc]
    accessible = (cl.port_nodeport > 0) | (n_ext > 0) | (n_lb > 0)
    uses_cluster_eps = ~int_local | accessible
    uses_local_eps = int_local | (ext_local & accessible)
    n_all = ep_count[psvc]
    n_loc = loc_count[psvc]
    n_cluster = np.where(uses_cluster_eps, n_all, 0)
    n_local = np.where(uses_local_eps, n_loc, 0)
    n_reach = np.where(uses_cluster_eps, n_all, n_local)
    has_eps = n_reach > 0
    has_int = has_eps & (~int_local | (n_local > 0))
    has_ext = has_eps & (~ext_local | (n_local > 0))
    uses_svc = n_cluster > 0
    uses_svl = n_local > 0
    uses_ext = has_eps & accessible
    uses_fw = has_eps & (n_lb > 0) & (n_src > 0)
    affinity = cl.svc_affinity[psvc]
    proto = cl.port_proto.astype(np.uint8)

    # ---- chain allocation: fixed chains, then per port [SVC, SVL, EXT, FW, SEP...] ----------
    F = len(_FIXED_CHAINS)
    per_port = (uses_svc.astype(np.int64) + uses_svl + uses_ext + uses_fw)
    # port-endpoint pairs (every endpoint of the port's Service)
    pe_port = np.repeat(np.arange(P, dtype=np.int64), n_all)
    pe_off = np.arange(pe_port.shape[0], dtype=np.int64) - np.repeat(
        np.cumsum(n_all) - n_all, n_all)
    pe_ep = cl.ep_ptr[psvc][pe_port] + pe_off
    pe_local = cl.ep_local[pe_ep]
    pe_reach = uses_cluster_eps[pe_port] | (uses_local_eps[pe_port] & pe_local)
    # rank of a local endpoint among the Service's local endpoints
    pe_lrank = loc_csum[pe_ep] - loc_csum[cl.ep_ptr[psvc][pe_port]]
    per_port = per_port + n_reach
    first = F + np.concatenate(([0], np.cumsum(per_port)[:-1])).astype(np.int64)
    c_svc = np.where(uses_svc, first, -1)
    c_svl = np.where(uses_svl, first + uses_svc, -1)
    c_ext = np.where(uses_ext, first + uses_svc + uses_svl, -1)
    c_fw = np.where(uses_fw, first + uses_svc + uses_svl + uses_ext, -1)
    sep_base = first + uses_svc + uses_svl + uses_ext + uses_fw
    reach_rank = np.cumsum(pe_reach) - 1
    port_first_reach = np.concatenate(([0], np.cumsum(n_reach)[:-1]))
    pe_sep = np.where(pe_reach, sep_base[pe_port] + reach_rank - port_first_reach[pe_port], -1)
    n_chains = F + int(per_port.sum())
    chain_kind = np.zeros(n_chains, dtype=np.int8)
    chain_port = np.full(n_chains, -1, dtype=np.int64)
    chain_ep = np.full(n_chains, -1, dtype=np.int64)
    for cidx, kind in ((c_svc, KIND_SVC), (c_svl, KIND_SVL), (c_ext, KIND_EXT), (c_fw, KIND_FW)):
        sel = cidx >= 0
        chain_kind[cidx[sel]] = kind
        chain_port[cidx[sel]] = np.nonzero(sel)[0]
    chain_kind[pe_sep[pe_reach]] = KIND_SEP
    chain_port[pe_sep[pe_reach]] = pe_port[pe_reach]
    chain_ep[pe_sep[pe_reach]] = pe_ep[pe_reach]
    chain_table = np.zeros(n_chains, dtype=np.int8)
    chain_policy = np.full(n_chains, -1, dtype=np.int8)
    fwd_policy = V_ACCEPT if forward_policy == "ACCEPT" else V_DROP
    for i, (table, name, policy) in enumerate(_FIXED_CHAINS):
        chain_table[i] = table
        chain_policy[i] = fwd_policy if (table, name) == (TABLE_FILTER, "FORWARD") else policy

    b = _Builder()
    ALL = np.uint32(0xFFFFFFFF)
    ct_new = (M_CONNTRACK, 0, CT_NEW)
    # ---- builtin jump rules (iptablesJumpChains, each prepended) ----------------------------
    b.add(_N_PRE, 0, [_lit(_CM_PORTALS)], target=T_JUMP, tchain=_N_SERVICES)
    b.add(_N_OUTPUT, 0, [_lit(_CM_PORTALS)], target=T_JUMP, tchain=_N_SERVICES)
    b.add(_N_POST, 0, [_lit(_CM_POSTROUTING)], target=T_JUMP, tchain=_N_POSTROUTING)
    b.add(_F_INPUT, 0, [ct_new, _lit(_CM_FIREWALL)], target=T_JUMP, tchain=_F_FIREWALL)
    b.add(_F_INPUT, 1, [_lit(_CM_HEALTH)], target=T_JUMP, tchain=_F_NODEPORTS)
    b.add(_F_INPUT, 2, [ct_new, _lit(_CM_EXTERNAL)], target=T_JUMP, tchain=_F_EXTERNAL)
    b.add(_F_FORWARD, 0, [ct_new, _lit(_CM_FIREWALL)], target=T_JUMP, tchain=_F_FIREWALL)
    b.add(_F_FORWARD, 1, [_lit(_CM_FORWARD)], target=T_JUMP, tchain=_F_FORWARD_K)
    b.add(_F_FORWARD, 2, [ct_new, _lit(_CM_PORTALS)], target=T_JUMP, tchain=_F_SERVICES)
    b.add(_F_FORWARD, 3, [ct_new, _lit(_CM_EXTERNAL)], target=T_JUMP, tchain=_F_EXTERNAL)
    b.add(_F_OUTPUT, 0, [ct_new, _lit(_CM_FIREWALL)], target=T_JUMP, tchain=_F_FIREWALL)
    b.add(_F_OUTPUT, 1, [ct_new, _lit(_CM_PORTALS)], target=T_JUMP, tchain=_F_SERVICES)
    # ---- fixed kube chains ----------------------------------------------------------------
    mm = masq_mark
    b.add(_N_POSTROUTING, 0, [(M_MARK, 1, mm, mm)], target=T_RETURN)
    b.add(_N_POSTROUTING, 1, target=T_MARK, tval=mm, tmask=0)
    b.add(_N_POSTROUTING, 2, [_lit(_CM_SNAT)], target=T_MASQUERADE,
          tport=1 if random_fully else 0)
    b.add(_N_MARK_MASQ, 0, target=T_MARK, tval=mm, tmask=mm)
    if not tcp_be_liberal:
        b.add(_F_FORWARD_K, 0, [(M_CONNTRACK, 0, CT_INVALID)], target=T_DROP)
    b.add(_F_FORWARD_K, 1, [_lit(_CM_FORWARD), (M_MARK, 0, mm, mm)], target=T_ACCEPT)
    b.add(_F_FORWARD_K, 2, [_lit(_CM_CONNTRACK), (M_CONNTRACK, 0, CT_ESTABLISHED | CT_RELATED)],
          target=T_ACCEPT)
    last_flags = 0 if localhost_nodeports else F_DST_INV
    b.add(_N_SERVICES, np.int64(2**62), [_lit(_CM_NODEPORTS_LAST), (M_ADDRTYPE, 0, 0, 1)],
          dst=0 if localhost_nodeports else 0x7F000000,
          dst_mask=0 if localhost_nodeports else 0xFF000000, flags=last_flags,
          target=T_JUMP, tchain=_N_NODEPORTS)

    ports = np.arange(P, dtype=np.int64)
    pport = cl.port_port.astype(np.int64)
    SUB = np.int64(1 << 32)
    # ---- KUBE-SERVICES (nat) / KUBE-SERVICES (filter): ClusterIP ------------------------------
    internal_chain = np.where(int_local, c_svl, c_svc)
    sel = has_int
    b.add(_N_SERVICES, rank[sel] * SUB,
          [_comment(C_CLUSTER_IP, ports[sel]), _proto_port_match(pport[sel])],
          dst=cl.svc_cluster_ip[psvc][sel], dst_mask=ALL, proto=proto[sel],
          target=T_JUMP, tchain=internal_chain[sel])
    sel = ~has_int
    b.add(_F_SERVICES, rank[sel] * SUB,
          [_comment(np.where(has_eps[sel], C_NO_LOCAL, C_NO_ENDPOINTS), ports[sel]),
           _proto_port_match(pport[sel])],
          dst=cl.svc_cluster_ip[psvc][sel], dst_mask=ALL, proto=proto[sel],
          target=np.where(has_eps[sel], T_DROP, T_REJECT))
    ext_target = np.where(has_eps, T_DROP, T_REJECT)
    ext_comment = np.where(has_eps, C_NO_LOCAL, C_NO_ENDPOINTS)
    lb_chain = np.where(uses_fw, c_fw, c_ext)
    # external IPs and LB IPs (one row per (port, ip))
    for ptr, ips, code, sub0, chain_of in ((cl.extip_ptr, cl.extip_ip, C_EXTERNAL_IP, 1, c_ext),
                                          (cl.lb_ptr, cl.lb_ip, C_LB_IP, 1 << 16, lb_chain)):
        cnt = np.diff(ptr)[psvc]
        xp = np.repeat(ports, cnt)
        xoff = np.arange(xp.shape[0], dtype=np.int64) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        xip = ips[ptr[psvc][xp] + xoff]
        sel = has_eps[xp]
        q = xp[sel]
        b.add(_N_SERVICES, rank[q] * SUB + sub0 + xoff[sel],
              [_comment(code, q), _proto_port_match(pport[q])],
              dst=xip[sel], dst_mask=ALL, proto=proto[q], target=T_JUMP, tchain=chain_of[q])
        sel = ~has_ext[xp]
        q = xp[sel]
        b.add(_F_EXTERNAL, rank[q] * SUB + sub0 + xoff[sel],
              [_comment(ext_comment[q], q), _proto_port_match(pport[q])],
              dst=xip[sel], dst_mask=ALL, proto=proto[q], target=ext_target[q])
        if code == C_LB_IP:
            sel = uses_fw[xp]
            q = xp[sel]
            b.add(_F_FIREWALL, rank[q] * SUB + xoff[sel],
                  [_comment(C_FW_DROP, q, c_fw[q]), _proto_port_match(pport[q])],
                  dst=xip[sel], dst_mask=ALL, proto=proto[q], target=T_DROP)
    # ---- NodePorts ---------------------------------------------------------------------------
    npt = cl.port_nodeport.astype(np.int64)
    sel = (npt > 0) & has_eps
    if localhost_nfacct and localhost_nodeports:
        b.add(_N_NODEPORTS, rank[sel] * 2,
              [_comment(C_NODEPORT, ports[sel]), _proto_port_match(npt[sel]), (M_NFACCT, 0, 0)],
              dst=0x7F000000, dst_mask=0xFF000000, proto=proto[sel], target=T_JUMP,
              tchain=c_ext[sel])
    b.add(_N_NODEPORTS, rank[sel] * 2 + 1,
          [_comment(C_NODEPORT, ports[sel]), _proto_port_match(npt[sel])],
          proto=proto[sel], target=T_JUMP, tchain=c_ext[sel])
    sel = (npt > 0) & ~has_ext
    b.add(_F_EXTERNAL, rank[sel] * SUB + (1 << 31),
          [_comment(ext_comment[sel], ports[sel]), (M_ADDRTYPE, 0, 0, 1),
           _proto_port_match(npt[sel])],
          proto=proto[sel], target=ext_target[sel])
    # ---- masquerade rule in the internal chain -----------------------------------------------
    cidr_net, cidr_mask = cl.cluster_cidr
    if masquerade_all or cluster_cidr_detector:
        sel = has_int
        b.add(internal_chain[sel], 0,
              [_comment(C_CLUSTER_IP, ports[sel]), _proto_port_match(pport[sel])],
              src=0 if masquerade_all else cidr_net, src_mask=0 if masquerade_all else cidr_mask,
              flags=0 if masquerade_all else F_SRC_INV,
              dst=cl.svc_cluster_ip[psvc][sel], dst_mask=ALL, proto=proto[sel],
              target=T_JUMP, tchain=_N_MARK_MASQ)
    # ---- KUBE-EXT-* -------------------------------------------------------------------------
    ext_policy_chain = np.where(ext_local, c_svl, c_svc)
    sel = uses_ext & ~ext_local
    b.add(c_ext[sel], 0, [_comment(C_EXT_MASQ, ports[sel])], target=T_JUMP, tchain=_N_MARK_MASQ)
    sel = uses_ext & ext_local
    if cluster_cidr_detector:
        b.add(c_ext[sel], 1, [_comment(C_EXT_POD, ports[sel])], src=cidr_net, src_mask=cidr_mask,
              target=T_JUMP, tchain=c_svc[sel])
    b.add(c_ext[sel], 2, [_comment(C_EXT_MASQ_LOCAL, ports[sel]), (M_ADDRTYPE, 0, 1, 0)],
          target=T_JUMP, tchain=_N_MARK_MASQ)
    b.add(c_ext[sel], 3, [_comment(C_EXT_ROUTE_LOCAL, ports[sel]), (M_ADDRTYPE, 0, 1, 0)],
          target=T_JUMP, tchain=c_svc[sel])
    sel = uses_ext & has_ext
    b.add(c_ext[sel], 4, target=T_JUMP, tchain=ext_policy_chain[sel])
    # ---- KUBE-FW-* ----------------------------------------------------------------------------
    cnt = np.where(uses_fw, np.diff(cl.src_ptr)[psvc], 0)
    xp = np.repeat(ports, cnt)
    xoff = np.arange(xp.shape[0], dtype=np.int64) - np.repeat(np.cumsum(cnt) - cnt, cnt)
    ridx = cl.src_ptr[psvc][xp] + xoff
    b.add(c_fw[xp], xoff, [_comment(C_LB_IP, xp)], src=cl.src_net[ridx],
          src_mask=cl.src_mask[ridx], target=T_JUMP, tchain=c_ext[xp])
    node_in = np.zeros(xp.shape[0], dtype=bool)
    for nip in cl.node_ips:
        node_in |= (np.uint32(nip) & cl.src_mask[ridx]) == cl.src_net[ridx]
    allow = np.zeros(P, dtype=bool)
    allow[xp[node_in]] = True
    cnt = np.where(allow, n_lb, 0)
    xq = np.repeat(ports, cnt)
    xoff = np.arange(xq.shape[0], dtype=np.int64) - np.repeat(np.cumsum(cnt) - cnt, cnt)
    b.add(c_fw[xq], (1 << 20) + xoff, [_comment(C_LB_IP, xq)],
          src=cl.lb_ip[cl.lb_ptr[psvc][xq] + xoff], src_mask=ALL, target=T_JUMP,
          tchain=c_ext[xq])
    sel = uses_fw
    b.add(c_fw[sel], 1 << 30, [_comment(C_FW_OTHER, ports[sel])])
    # ---- KUBE-SVC-* / KUBE-SVL-*: affinity and the statistic cascade --------------------------
    max_n = int(max(n_all.max(initial=0), 1))
    probs = np.array([0.0] + [float(kube_probability(k)) for k in range(1, max_n + 1)])
    thresh = np.array([statistic_threshold(p) for p in probs], dtype=np.int64)
    timeout = cl.svc_affinity_timeout[psvc].astype(np.int64)
    for chain_of, member, idx, n_of in ((c_svc, uses_svc[pe_port], pe_off, n_cluster),
                                        (c_svl, uses_svl[pe_port] & pe_local, pe_lrank,
                                         n_local)):
        q = pe_port[member]
        i = idx[member]
        n = n_of[q]
        ch = chain_of[q]
        sep = pe_sep[member]
        epi = pe_ep[member]
        aff = affinity[q]
        rcheck = (M_RECENT, 2, sep[aff], RECENT_RCHECK, timeout[q[aff]])
        b.add(ch[aff], 1 + i[aff],
              ([_comment(C_SVC_EP, q[aff], epi[aff])] if comments else []) + [rcheck],
              target=T_JUMP, tchain=sep[aff])
        last = i == n - 1
        k = n - i
        st = ~last
        b.add(ch[st], (1 << 24) + i[st],
              ([_comment(C_SVC_EP, q[st], epi[st])] if comments else [])
              + [(M_STATISTIC, 0, thresh[k[st]], 0, 0, probs[k[st]])],
              target=T_JUMP, tchain=sep[st])
        b.add(ch[last], (1 << 24) + i[last],
              [_comment(C_SVC_EP, q[last], epi[last])] if comments else [],
              target=T_JUMP, tchain=sep[last])
    # ---- KUBE-SEP-* -------------------------------------------------------------------------
    q = pe_port[pe_reach]
    epi = pe_ep[pe_reach]
    sep = pe_sep[pe_reach]
    aff = affinity[q]
    b.add(sep, 0, [_comment(C_SVC, q)] if comments else [], src=cl.ep_ip[epi], src_mask=ALL,
          target=T_JUMP, tchain=_N_MARK_MASQ)
    for sel, extra in ((~aff, []), (aff, [(M_RECENT, 0, sep[aff], RECENT_SET, 0)])):
        b.add(sep[sel], 1,
              ([_comment(C_SVC, q[sel])] if comments else []) + extra
              + [(M_PORT, 0, 0, 65535, 65535)],
              proto=proto[q[sel]], target=T_DNAT, taddr=cl.ep_ip[epi[sel]],
              tport=cl.port_target[q[sel]])

    arrays = b.finish()
    counts = np.bincount(arrays["rule_chain"], minlength=n_chains)
    chain_end = np.cumsum(counts).astype(np.int64)
    chain_start = chain_end - counts
    hook_chain = np.full((2, 5), -1, dtype=np.int64)
    for i, (table, name, policy) in enumerate(_FIXED_CHAINS):
        if policy >= 0:
            hook_chain[table, HOOK_NAMES.index(name)] = i
    fixed_names = {i: name for i, (_t, name, _p) in enumerate(_FIXED_CHAINS)}
    proto_lc = {PROTO_TCP: "tcp", PROTO_UDP: "udp"}

    def port_name(p: int) -> str:
        s = int(psvc[p])
        return f"default/svc-{s}:p{p - int(cl.port_ptr[s])}"

    names = _CompiledNames(fixed_names, chain_kind, chain_port, chain_ep, cl, port_name,
                           lambda p: proto_lc.get(int(cl.port_proto[p]), "sctp"))
    return Ruleset(
        src=arrays["src"], src_mask=arrays["src_mask"], dst=arrays["dst"],
        dst_mask=arrays["dst_mask"], proto=arrays["proto"], flags=arrays["flags"],
        mptr=arrays["mptr"], target=arrays["target"], tchain=arrays["tchain"],
        taddr=arrays["taddr"], tport=arrays["tport"], tval=arrays["tval"],
        tmask=arrays["tmask"], rule_chain=arrays["rule_chain"],
        rule_line=np.full(b.n, -1, dtype=np.int64),
        m_kind=arrays["m_kind"], m_inv=arrays["m_inv"], m_a=arrays["m_a"], m_b=arrays["m_b"],
        m_c=arrays["m_c"], m_p=arrays["m_p"],
        mp_lo=np.zeros(0, dtype=np.int64), mp_hi=np.zeros(0, dtype=np.int64),
        chain_start=chain_start, chain_end=chain_end, chain_table=chain_table,
        chain_policy=chain_policy, hook_chain=hook_chain, chain_names=names,
        comments=_FIXED_COMMENTS, recent_names=None,
        nfacct_names=(LOCALHOST_NFACCT,),
        local_addrs=np.sort(cl.node_ips.astype(np.uint32)), masq_mark=masq_mark, cluster=cl,
        extra={"chain_kind": chain_kind, "chain_port": chain_port, "chain_ep": chain_ep,
               "svc_chain": c_svc, "svl_chain": c_svl, "ext_chain": c_ext, "fw_chain": c_fw,
               "port_rank": rank, "has_endpoints": has_eps,
               "external_names": int((cl.svc_type == SVC_EXTERNALNAME).sum())},
    )


# ---- traversal kernel (spec C.1) -------------------------------------------------------------

EV_MATCH = 0  # a rule matched and its target ran (index = rule)
EV_END = 1  # fell off the end of a user chain: implicit return (index = chain)
EV_POLICY = 2  # builtin chain policy applied (index = chain, value = verdict)

@njit(cache=True)
def _is_local(addr, local):
    """addrtype LOCAL: the node's own addresses plus 127.0.0.0/8 (local routing table)."""
    if (addr >> 24) == 127:
        return True
    lo = 0
    hi = local.shape[0]
    while lo < hi:
        mid = (lo + hi) >> 1
        if local[mid] < addr:
            lo = mid + 1
        else:
            hi = mid
    return lo < local.shape[0] and local[lo] == addr


@njit(cache=True)
def _rt_slot(keys, key):
    mask = keys.shape[0] - 1
    i = np.int64((key * np.uint64(11400714819323198485)) >> np.uint64(40)) & mask
    while keys[i] != 0 and keys[i] != key:
        i = (i + 1) & mask
    return i


@njit(cache=True)
def _recent(key, op, seconds, inv, t, rt_keys, rt_vals, rt_count):
    """xt_recent: --set / --rcheck / --update / --remove on list entry ``key`` at time t."""
    i = _rt_slot(rt_keys, key)
    if op == RECENT_SET:
        if rt_keys[i] != key:
            rt_keys[i] = key
            rt_count[0] += 1
            if rt_count[0] * 10 >= rt_keys.shape[0] * 7:
                rt_count[1] = 1
        rt_vals[i] = t
        return (inv & 1) == 0
    hit = rt_keys[i] == key and rt_vals[i] > -np.inf
    if hit and seconds > 0 and not (t - rt_vals[i] < seconds):
        hit = False
        if inv & 2:
            rt_vals[i] = -np.inf
    res = hit != ((inv & 1) != 0)
    if res and hit and op == RECENT_UPDATE:
        rt_vals[i] = t
    if hit and op == RECENT_REMOVE:
        rt_vals[i] = -np.inf
    return res


@njit(cache=True)
def _traverse_kernel(chain_start, chain_end, chain_policy, r_src, r_smask, r_dst, r_dmask,
                     r_proto, r_flags, mptr, target, tchain, taddr, tport, tval, tmask,
                     m_kind, m_inv, m_a, m_b, m_c, mp_lo, mp_hi, hook_chain, nstack,
                     p_src, p_dst, p_proto, p_sport, p_dport, p_time, from_host, local,
                     masq_mark, seed, watch, rec_cap, rt_cap):
    """ipt_do_table over every hook a NEW connection's first packet crosses (spec C.1).

    One flat loop (no per-rule function calls): steps = (table, hook) pairs; each step walks
    from the hook's builtin chain with a jump stack of ``nstack`` entries (user chains).
    """
    np.random.seed(seed)
    n = p_src.shape[0]
    verdict = np.empty(n, np.int8)
    dnat_addr = np.empty(n, np.uint32)
    dnat_port = np.empty(n, np.uint16)
    dnat = np.zeros(n, np.bool_)
    marked = np.zeros(n, np.bool_)
    masq = np.zeros(n, np.bool_)
    mark_out = np.empty(n, np.uint32)
    rules = np.empty(n, np.int64)
    matches = np.empty(n, np.int64)
    jumps = np.empty(n, np.int64)
    rules_nat = np.zeros(n, np.int64)
    rules_filter = np.zeros(n, np.int64)
    rules_post = np.zeros(n, np.int64)
    watched = np.empty(n, np.int64)
    stack_c = np.empty(max(nstack, 1), np.int64)
    stack_p = np.empty(max(nstack, 1), np.int64)
    rt_keys = np.zeros(rt_cap, np.uint64)
    rt_vals = np.full(rt_cap, -np.inf)
    rt_count = np.zeros(2, np.int64)
    rec = np.zeros((rec_cap, 4), np.int64)
    nrec = 0
    steps = np.empty((5, 2), np.int64)
    for i in range(n):
        src = np.int64(p_src[i])
        dst = np.int64(p_dst[i])
        proto = np.int64(p_proto[i])
        sport = np.int64(p_sport[i])
        dport = np.int64(p_dport[i])
        mark = np.int64(0)
        ctstate = np.int64(CT_NEW)
        did_masq = False
        t = p_time[i]
        n_rules = np.int64(0)
        n_matches = np.int64(0)
        n_jumps = np.int64(0)
        n_watch = np.int64(0)
        rec_on = i == 0 and rec_cap > 0
        steps[0, 0] = TABLE_NAT
        steps[0, 1] = HOOK_OUTPUT if from_host else HOOK_PREROUTING
        nsteps = 1
        v = np.int64(V_ACCEPT)
        s = 0
        while s < nsteps:
            c0 = hook_chain[steps[s, 0], steps[s, 1]]
            before = n_rules
            v = np.int64(V_ACCEPT)
            if c0 >= 0:
                ctstate = CT_NEW | (ctstate & CT_DNAT)
                policy = np.int64(chain_policy[c0])
                chain = c0
                pos = chain_start[c0]
                sp = 0
                while True:
                    if pos >= chain_end[chain]:
                        if sp == 0:
                            if rec_on and nrec < rec_cap:
                                rec[nrec, 0] = EV_POLICY
                                rec[nrec, 1] = c0
                                rec[nrec, 2] = n_rules
                                rec[nrec, 3] = policy
                                nrec += 1
                            v = policy
                            break
                        if rec_on and nrec < rec_cap:
                            rec[nrec, 0] = EV_END
                            rec[nrec, 1] = chain
                            rec[nrec, 2] = n_rules
                            nrec += 1
                        sp -= 1
                        chain = stack_c[sp]
                        pos = stack_p[sp]
                        continue
                    r = pos
                    n_rules += 1
                    n_matches += 1
                    if chain == watch:
                        n_watch += 1
                    fl = r_flags[r]
                    if ((dst & r_dmask[r]) == r_dst[r]) == ((fl & F_DST_INV) != 0):
                        pos += 1
                        continue
                    if ((src & r_smask[r]) == r_src[r]) == ((fl & F_SRC_INV) != 0):
                        pos += 1
                        continue
                    pr = r_proto[r]
                    if pr != 0 and (proto == pr) == ((fl & F_PROTO_INV) != 0):
                        pos += 1
                        continue
                    ok = True
                    for j in range(mptr[r], mptr[r + 1]):
                        n_matches += 1
                        kind = m_kind[j]
                        inv = np.int64(m_inv[j])
                        neg = (inv & 1) != 0
                        if kind == M_COMMENT or kind == M_NFACCT:
                            ok = True
                        elif kind == M_PORT:
                            ok = ((dport >= m_a[j]) and (dport <= m_b[j])) != neg
                            if ok:
                                cc = m_c[j]
                                ok = ((sport >= (cc >> 16)) and (sport <= (cc & 0xFFFF))) != (
                                    (inv & 2) != 0)
                        elif kind == M_STATISTIC:
                            ok = (np.random.randint(0, 2147483648) < m_a[j]) != neg
                        elif kind == M_ADDRTYPE:
                            sm = m_a[j]
                            dm = m_b[j]
                            ok = True
                            if sm != 0 and (sm == 1) != _is_local(src, local):
                                ok = False
                            if ok and dm != 0 and (dm == 1) != _is_local(dst, local):
                                ok = False
                        elif kind == M_MARK:
                            ok = ((mark & m_b[j]) == m_a[j]) != neg
                        elif kind == M_CONNTRACK:
                            ok = ((ctstate & m_a[j]) != 0) != neg
                        elif kind == M_MULTIPORT:
                            which = m_c[j]
                            hit = False
                            for k in range(m_a[j], m_a[j] + m_b[j]):
                                if which != 1 and dport >= mp_lo[k] and dport <= mp_hi[k]:
                                    hit = True
                                if which != 0 and sport >= mp_lo[k] and sport <= mp_hi[k]:
                                    hit = True
                            ok = hit != neg
                        elif kind == M_RECENT:
                            addr = dst if (inv & 4) else src
                            key = (np.uint64(m_a[j] + 1) << np.uint64(32)) | np.uint64(addr)
                            ok = _recent(key, m_b[j], m_c[j], inv, t, rt_keys, rt_vals,
                                         rt_count)
                        else:
                            ok = False
                        if not ok:
                            break
                    if not ok:
                        pos += 1
                        continue
                    if rec_on and nrec < rec_cap:
                        rec[nrec, 0] = EV_MATCH
                        rec[nrec, 1] = r
                        rec[nrec, 2] = n_rules
                        nrec += 1
                    tk = target[r]
                    if tk == T_NONE:
                        pos += 1
                    elif tk == T_MARK:
                        tm = np.int64(tmask[r])
                        mark = (mark & (~tm & 0xFFFFFFFF)) ^ np.int64(tval[r])
                        pos += 1
                    elif tk == T_JUMP:
                        if sp >= nstack:
                            v = V_DROP
                            break
                        stack_c[sp] = chain
                        stack_p[sp] = pos + 1
                        sp += 1
                        n_jumps += 1
                        chain = tchain[r]
                        pos = chain_start[chain]
                    elif tk == T_GOTO:
                        n_jumps += 1
                        chain = tchain[r]
                        pos = chain_start[chain]
                    elif tk == T_RETURN:
                        if sp == 0:
                            v = policy
                            break
                        sp -= 1
                        chain = stack_c[sp]
                        pos = stack_p[sp]
                    elif tk == T_DNAT:
                        dst = np.int64(taddr[r])
                        if tport[r] != 0:
                            dport = np.int64(tport[r])
                        ctstate |= CT_DNAT
                        v = V_ACCEPT
                        break
                    elif tk == T_MASQUERADE:
                        did_masq = True
                        v = V_ACCEPT
                        break
                    elif tk == T_ACCEPT:
                        v = V_ACCEPT
                        break
                    elif tk == T_REJECT:
                        v = V_REJECT
                        break
                    else:
                        v = V_DROP
                        break
            if s == 0:
                rules_nat[i] = n_rules
                marked[i] = (mark & masq_mark) != 0
                dnat[i] = (ctstate & CT_DNAT) != 0
                dnat_addr[i] = np.uint32(dst)
                dnat_port[i] = np.uint16(dport)
                if v == V_ACCEPT:
                    to_local = _is_local(dst, local)
                    if from_host:
                        steps[1, 0] = TABLE_FILTER
                        steps[1, 1] = HOOK_OUTPUT
                        steps[2, 0] = TABLE_NAT
                        steps[2, 1] = HOOK_POSTROUTING
                        nsteps = 3
                        if to_local:
                            steps[3, 0] = TABLE_FILTER
                            steps[3, 1] = HOOK_INPUT
                            steps[4, 0] = TABLE_NAT
                            steps[4, 1] = HOOK_INPUT
                            nsteps = 5
                    else:
                        steps[1, 0] = TABLE_FILTER
                        steps[1, 1] = HOOK_INPUT if to_local else HOOK_FORWARD
                        steps[2, 0] = TABLE_NAT
                        steps[2, 1] = HOOK_INPUT if to_local else HOOK_POSTROUTING
                        nsteps = 3
            else:
                if steps[s, 0] == TABLE_FILTER:
                    rules_filter[i] += n_rules - before
                else:
                    rules_post[i] += n_rules - before
                if v != V_ACCEPT:
                    break
            s += 1
        verdict[i] = v
        masq[i] = did_masq
        mark_out[i] = np.uint32(mark)
        rules[i] = n_rules
        matches[i] = n_matches
        jumps[i] = n_jumps
        watched[i] = n_watch
    return (verdict, dnat, dnat_addr, dnat_port, marked, masq, mark_out, rules, matches, jumps,
            rules_nat, rules_filter, rules_post, watched, rec[:nrec], rt_count[1])


@dataclass(frozen=True)
class TraversalResult:
    """Per-packet outcome of the first packet of a NEW connection (spec C.1).

    ``verdict`` (V_*), DNAT destination (``dnat``, ``dnat_addr``, ``dnat_port``; the original
    destination when not DNATed), ``marked`` (masquerade mark set after the first nat hook),
    ``masquerade`` (MASQUERADE ran in POSTROUTING), final ``mark``; counts: ``rules_evaluated``
    (all tables), ``rules_nat`` (first nat hook), ``rules_filter``, ``rules_post`` (nat
    POSTROUTING/INPUT), ``matches_tested``, ``jumps``, ``watch_rules`` (rules evaluated in
    ``watch_chain``). ``path``: events of packet 0 when recorded, rows (EV_*, rule or chain,
    rules evaluated so far, verdict).
    """

    verdict: np.ndarray
    dnat: np.ndarray
    dnat_addr: np.ndarray
    dnat_port: np.ndarray
    marked: np.ndarray
    masquerade: np.ndarray
    mark: np.ndarray
    rules_evaluated: np.ndarray
    matches_tested: np.ndarray
    jumps: np.ndarray
    rules_nat: np.ndarray
    rules_filter: np.ndarray
    rules_post: np.ndarray
    watch_rules: np.ndarray
    path: np.ndarray


def _rule_tuple(rs: Ruleset) -> tuple:
    return (rs.chain_start, rs.chain_end, rs.chain_policy, rs.src, rs.src_mask, rs.dst,
            rs.dst_mask, rs.proto, rs.flags, rs.mptr, rs.target, rs.tchain, rs.taddr, rs.tport,
            rs.tval, rs.tmask)


def _match_tuple(rs: Ruleset) -> tuple:
    return (rs.m_kind, rs.m_inv, rs.m_a, rs.m_b, rs.m_c, rs.mp_lo, rs.mp_hi)


def traverse(
    ruleset: Ruleset,
    packets,
    *,
    seed: int = 0,
    local_addrs=None,
    now: float | None = None,
    hook: str = "prerouting",
    watch_chain: int = -1,
    record: int = 0,
) -> TraversalResult:
    """Traverse the first packet of every connection in ``packets`` (kernels.traffic.Packets).

    ``hook``: ``prerouting`` (pod or remote client: nat PREROUTING, then filter INPUT or
    FORWARD, then nat INPUT or POSTROUTING) or ``output`` (host process: nat OUTPUT, filter
    OUTPUT, nat POSTROUTING, and filter/nat INPUT when the destination is local).
    ``local_addrs``: addresses ``addrtype LOCAL`` matches besides 127.0.0.0/8 (default: the
    ruleset's node addresses). ``now`` overrides every packet's arrival time (seconds), which
    ``recent --seconds`` compares against; recent lists persist across the packets of a call.
    ``record`` > 0 records up to that many path events of packet 0.
    """
    if hook not in ("prerouting", "output"):
        raise ValueError(f"hook: expected prerouting or output, got {hook!r}")
    if local_addrs is None:
        local = ruleset.local_addrs
    else:
        local = np.atleast_1d(np.asarray(local_addrs, dtype=np.uint32))
    local = np.unique(local).astype(np.int64)
    n = len(packets)
    times = packets.time if now is None else np.full(n, float(now))
    has_recent = bool((ruleset.m_kind == M_RECENT).any())
    cap = 1 << max(4, int(4 * n + 16).bit_length()) if has_recent else 2
    nstack = int((ruleset.chain_policy < 0).sum())
    while True:
        out = _traverse_kernel(
            *_rule_tuple(ruleset), *_match_tuple(ruleset), ruleset.hook_chain, nstack,
            packets.src, packets.dst, packets.proto, packets.sport, packets.dport,
            np.ascontiguousarray(times, dtype=np.float64), hook == "output", local,
            np.int64(ruleset.masq_mark), np.int64(seed), np.int64(watch_chain),
            np.int64(record), np.int64(cap))
        if not out[-1]:
            break
        cap *= 4
    return TraversalResult(*out[:-1])
