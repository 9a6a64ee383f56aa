"""Cost model: counted dataplane operations -> nanoseconds, and object counts -> kernel bytes.

Every dataplane model (kernels.iptables, ipvs, nftables, userspace, conntrack) counts what it
does per packet: rules evaluated, extension matches tested, jumps, hash-bucket probes, verdict-map
lookups, conntrack probes, scheduler steps, and for the userspace proxy accepted connections,
copied KB and context switches. This module prices those counts (spec C.1, C.2; validation case
17). Defaults are orders of magnitude with their source stated; ``kpbench calibrate`` measures the
real kernel and its file replaces them through ``CostModel.from_overrides``.

The iptables per-rule cost is cache-aware (``iptables_rules_ns``, fitted by ``kpbench
calibrate``): ``rule_ns`` in cache, plus ``rule_cold_ns`` as the walked chain outgrows the cache,
plus ``rule_far_ns`` per rule past the LLC-resident front of a walk, plus ``rule_warm_ns`` for a
walk's first rules. The defaults switch the extra terms off (one slope, ``rule_ns``).

It also holds the documented per-object kernel-memory estimates used for ``kernel_memory_bytes``.
Plain numpy (no loops): it converts arrays of counts, it does not model anything itself.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

import numpy as np

_CAL = "source: kpbench calibrate (iptables-legacy fit)"

COST_SOURCES: dict[str, str] = {
    "base_ns": "fixed per-packet hook entry/exit not counted elsewhere; estimate, calibrate "
    "measures it as the intercept of connect() latency vs rules",
    "rule_ns": "per rule evaluated (ip_packet_match / nft rule entry); validation case 17: "
    "4.5-5 ns per extra KUBE-SERVICES rule on kernel 6.18, 2 cores, iptables-legacy",
    "match_ns": "per extension match actually tested (xt match call); estimate, about half a "
    "rule (indirect call + small compare)",
    "jump_ns": "per jump/goto (jump-stack push/pop, spec C.1); estimate",
    "hash_probe_ns": "per hash-table probe (bucket head read or chain node compared) in IPVS, "
    "ipset and nft set tables; estimate for cache-resident tables",
    "vmap_lookup_ns": "per nft set/verdict-map lookup expression (key concat in registers, "
    "jhash, ops dispatch; spec C.2), excluding its probes; estimate",
    "conntrack_probe_ns": "per nf_conntrack hash probe (bucket head or tuple compared); "
    "estimate (a tuple compare is ~40 bytes)",
    "sched_step_ns": "per IPVS scheduler step (destination examined); estimate",
    "userspace_conn_ns": "userspace proxy per connection: accept(), round-robin pick, "
    "connect() to the endpoint, goroutine start (spec B.4); estimate, tens of microseconds",
    "userspace_kb_ns": "userspace proxy per KB copied (read into user space and written out "
    "again: two copies plus syscall share); estimate",
    "context_switch_ns": "per context switch / wakeup of the proxy process; estimate from "
    "typical lmbench lat_ctx figures of 1-3 us",
    "rule_cold_ns": "extra ns per iptables rule evaluated once the walked chain outgrows the "
    "cache: + rule_cold_ns x f(S / rule_cache_bytes), f(x) = x^k / (1 + x^k), S = walked chain "
    f"bytes; default 0 (term off); {_CAL}",
    "rule_cache_bytes": "bytes S at which half of rule_cold_ns is paid (effective cache size, "
    "in units of KUBE_SERVICES_RULE_BYTES per rule); default ~4 MB, order of magnitude from "
    f"results/baseline/calibration-example.toml, inert while rule_cold_ns = 0; {_CAL}",
    "rule_cache_k": "steepness k of f (dimensionless); default 4 (as fitted on our machine), "
    f"inert while rule_cold_ns = 0; {_CAL}",
    "rule_far_ns": "extra ns per rule of a chain walk past its first rule_far_rules rules (the "
    f"front stays in the last-level cache, the tail does not); default 0 (term off); {_CAL}",
    "rule_far_rules": "rules at the front of a walk that stay in the last-level cache; default "
    f"20,000 (order of magnitude from our machine), inert while rule_far_ns = 0; {_CAL}",
    "rule_warm_ns": "extra ns per rule at the start of a walk, fading over rule_warm_rules rules "
    "(W(r) = r0 (1 - exp(-r / r0)) rules pay it; a short walk does not get the prefetcher "
    f"going); default 0 (term off); {_CAL}",
    "rule_warm_rules": "fade length r0 of the warm-up term (rules); default 16, inert while "
    f"rule_warm_ns = 0; {_CAL}",
}
"""Source of every default, shown in reports."""

_POSITIVE = ("rule_cache_bytes", "rule_cache_k", "rule_warm_rules")


def cache_fraction(chain_bytes, cache_bytes: float, k: float) -> np.ndarray:
    """f(S / C) = x^k / (1 + x^k): share of a chain walk (S bytes) that misses a C-byte cache."""
    x = np.asarray(chain_bytes, dtype=np.float64) / cache_bytes
    return x**k / (1.0 + x**k)


def beyond(rules_walked, prefix: float) -> np.ndarray:
    """Rules of a walk past the first ``prefix`` rules (the part not held in the LLC)."""
    return np.maximum(0.0, np.asarray(rules_walked, dtype=np.float64) - prefix)


def warm_walk(rules_walked, r0: float) -> np.ndarray:
    """W(r) = r0 (1 - exp(-r / r0)): rules of a walk that pay the warm-up cost."""
    r = np.asarray(rules_walked, dtype=np.float64)
    return r0 * (1.0 - np.exp(-r / r0))


def iptables_rules_ns(
    rules,
    chain_bytes=0.0,
    walked=0.0,
    *,
    rule_ns: float,
    cold_ns: float = 0.0,
    cache_bytes: float = math.inf,
    cache_k: float = 4.0,
    far_ns: float = 0.0,
    far_rules: float = math.inf,
    warm_ns: float = 0.0,
    warm_rules: float = math.nan,
) -> np.ndarray:
    """Cache-aware ns of ``rules`` iptables rules evaluated per packet (spec C.1; case 17).

    ``rules x (rule_ns + cold_ns f(chain_bytes / cache_bytes)) + warm_ns W(walked)
    + far_ns beyond(walked, far_rules)``, where ``walked`` = rules of the big chain
    (KUBE-SERVICES) the packet walked and ``chain_bytes`` that chain's kernel bytes. A term
    whose ns is 0 (or whose shape is not finite) is left out, so with every term off this is
    exactly ``rule_ns x rules``. The one implementation of harness.calibrate's RuleFit.
    """
    r = np.asarray(rules, dtype=np.float64)
    if cold_ns > 0 and math.isfinite(cache_bytes):
        out = r * (rule_ns + cold_ns * cache_fraction(chain_bytes, cache_bytes, cache_k))
    else:
        out = rule_ns * r
    if warm_ns > 0 and math.isfinite(warm_rules):
        out = out + warm_ns * warm_walk(walked, warm_rules)
    if far_ns > 0 and math.isfinite(far_rules):
        out = out + far_ns * beyond(walked, far_rules)
    return out


@dataclass(frozen=True)
class CostModel:
    """Nanoseconds per counted operation (see COST_SOURCES for each default's source).

    The ``rule_*`` terms after ``context_switch_ns`` make the iptables per-rule cost
    cache-aware (``iptables_rules_ns``); their defaults switch them off.
    """

    base_ns: float = 100.0
    rule_ns: float = 4.75
    match_ns: float = 2.0
    jump_ns: float = 1.0
    hash_probe_ns: float = 3.0
    vmap_lookup_ns: float = 20.0
    conntrack_probe_ns: float = 5.0
    sched_step_ns: float = 2.0
    userspace_conn_ns: float = 25_000.0
    userspace_kb_ns: float = 250.0
    context_switch_ns: float = 2_000.0
    rule_cold_ns: float = 0.0
    rule_cache_bytes: float = 4_000_000.0
    rule_cache_k: float = 4.0
    rule_far_ns: float = 0.0
    rule_far_rules: float = 20_000.0
    rule_warm_ns: float = 0.0
    rule_warm_rules: float = 16.0

    @classmethod
    def from_overrides(cls, overrides: dict | None, source: str = "calibration") -> CostModel:
        """Defaults replaced by ``overrides`` (the ``calibration`` dict given to run_point).

        Accepts the flat dict or one holding a ``costmodel`` table (as calibration files do).
        Keys of kernels.sync (``sync_*``) and fit standard errors (``*_se``) are skipped; any
        other unknown key, a non-numeric, negative or non-finite value, or a zero shape
        (``rule_cache_bytes``, ``rule_cache_k``, ``rule_warm_rules``) raises
        ``harness.errors.UserError``.
        """
        from harness.errors import UserError

        model = cls()
        if not overrides:
            return model
        if isinstance(overrides.get("costmodel"), dict):
            overrides = overrides["costmodel"]
        known = {f.name for f in fields(cls)}
        values = {}
        for key, value in overrides.items():
            if str(key).startswith("sync_") or str(key).endswith("_se"):
                continue
            if key not in known:
                raise UserError(
                    f"{source}: {key}: expected one of {', '.join(sorted(known))}, got unknown key"
                )
            if (isinstance(value, bool) or not isinstance(value, int | float)
                    or not math.isfinite(value) or value < 0):
                raise UserError(f"{source}: {key}: expected a finite number >= 0, got {value!r}")
            if key in _POSITIVE and value == 0:
                raise UserError(f"{source}: {key}: expected a number > 0, got {value!r}")
            values[key] = float(value)
        return replace(model, **values)

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    def rules_ns(self, rules, chain_bytes=0.0, walked=0.0) -> np.ndarray:
        """Cache-aware ns of the iptables rules each packet evaluates (``iptables_rules_ns``).

        ``rules``: rules evaluated per packet (all chains); ``chain_bytes``: kernel bytes of the
        big chain walked (``kube_services_bytes``); ``walked``: its rules the packet walked.
        """
        return iptables_rules_ns(
            rules, chain_bytes, walked, rule_ns=self.rule_ns, cold_ns=self.rule_cold_ns,
            cache_bytes=self.rule_cache_bytes, cache_k=self.rule_cache_k,
            far_ns=self.rule_far_ns, far_rules=self.rule_far_rules,
            warm_ns=self.rule_warm_ns, warm_rules=self.rule_warm_rules)

    def packet_ns(
        self,
        *,
        rules=0,
        chain_bytes=0.0,
        walked=0.0,
        matches=0,
        jumps=0,
        hash_probes=0,
        vmap_lookups=0,
        conntrack_probes=0,
        sched_steps=0,
        userspace_conns=0,
        userspace_kb=0,
        context_switches=0,
    ) -> np.ndarray:
        """Cost in ns of each packet, from per-packet count arrays (or scalars).

        ``rules`` are priced by ``rules_ns(rules, chain_bytes, walked)``: without chain
        information (the defaults) that is ``rule_ns`` per rule.
        """
        return (
            self.base_ns
            + self.rules_ns(rules, chain_bytes, walked)
            + self.match_ns * np.asarray(matches, dtype=np.float64)
            + self.jump_ns * np.asarray(jumps, dtype=np.float64)
            + self.hash_probe_ns * np.asarray(hash_probes, dtype=np.float64)
            + self.vmap_lookup_ns * np.asarray(vmap_lookups, dtype=np.float64)
            + self.conntrack_probe_ns * np.asarray(conntrack_probes, dtype=np.float64)
            + self.sched_step_ns * np.asarray(sched_steps, dtype=np.float64)
            + self.userspace_conn_ns * np.asarray(userspace_conns, dtype=np.float64)
            + self.userspace_kb_ns * np.asarray(userspace_kb, dtype=np.float64)
            + self.context_switch_ns * np.asarray(context_switches, dtype=np.float64)
        )


# ------------------------------------------------------------------------------------------------
# Kernel memory per object (x86_64). Sizes of structs are from the kernel headers where stated,
# otherwise estimates; allocator rounding (kmalloc size classes) is ignored.

IPT_ENTRY_BYTES = 112
"""sizeof(struct ipt_entry): ipt_ip 84 + nfcache 4 + offsets 2+2 + comefrom 4 + counters 16."""
XT_MATCH_BYTES = 48
"""struct xt_entry_match header (32) + typical match data (tcp/addrtype/set/statistic ~16)."""
XT_TARGET_BYTES = 40
"""xt_standard_target: header 32 + verdict 4, aligned to 8 (DNAT with nf_nat_range is ~72)."""
IPT_COUNTER_BYTES = 16
"""struct xt_counters (bytes, packets), allocated per CPU for every rule."""
IPT_CHAIN_BYTES = IPT_ENTRY_BYTES + 64
"""A user chain costs its ERROR-target head entry (ipt_entry + xt_error_target 64)."""
XT_COMMENT_MATCH_BYTES = 32 + 256
"""xt_entry_match header + struct xt_comment_info (XT_MAX_COMMENT_LEN 256)."""
KUBE_SERVICES_RULE_BYTES = IPT_ENTRY_BYTES + XT_COMMENT_MATCH_BYTES + XT_MATCH_BYTES \
    + XT_TARGET_BYTES
"""Kernel bytes of one KUBE-SERVICES rule as kube-proxy writes it (``-d VIP -p tcp -m comment
-m tcp --dport P -j KUBE-SVC-X``; the final ``-m comment -m addrtype ... -j KUBE-NODEPORTS`` is the
same size): ipt_entry + comment match + one match + standard target = 488 bytes (estimate from
struct sizes, x86_64). ``kpbench calibrate`` and the scaling kind both turn a chain's rule count
into bytes with it, so a fitted ``rule_cache_bytes`` means the same chain length in both."""

IPVS_SERVICE_BYTES = 256
"""struct ip_vs_service (estimate, x86_64; hlist nodes, addresses, stats, sched pointers)."""
IPVS_DEST_BYTES = 256
"""struct ip_vs_dest (estimate; counters, stats, list heads, dst cache pointer)."""
IPVS_CONN_BYTES = 320
"""struct ip_vs_conn (estimate; spec A.2 uses its sizeof to clamp conn_tab_bits)."""
IPVS_VIP_BYTES = 256
"""A VIP bound to kube-ipvs0: struct in_ifaddr + local route fib_alias/fib_info share (estimate)."""
USERSPACE_SOCKET_BYTES = 2048
"""The userspace proxy's listening socket per service port (struct tcp_sock ~2 KB, estimate)."""
IPSET_ELEM_BYTES = 16
"""hash:ip,port element (8 bytes) plus its share of the bucket array (estimate)."""
HLIST_HEAD_BYTES = 8
"""One hash bucket head (struct hlist_head / hlist_nulls_head / rhash bucket pointer)."""

NFT_RULE_BYTES = 160
"""struct nft_rule (16) + ~4 expressions (payload, cmp, lookup/immediate) at ~36 bytes each."""
NFT_CHAIN_BYTES = 256
"""struct nft_chain + name + rule blob pointers (estimate)."""
NFT_ELEM_BYTES = 64
"""nft_rhash_elem: rhash_head 8 + ext header + 12-byte concat key + 16-byte verdict data."""

CONNTRACK_ENTRY_BYTES = 320
"""struct nf_conn incl. two tuplehash nodes and default extensions (estimate; slab nf_conntrack)."""


def iptables_bytes(rules: int, matches_defined: int, chains: int, ncpu: int = 2) -> int:
    """Kernel bytes of an iptables table: entries, matches, targets, per-CPU counters, chains."""
    per_rule = IPT_ENTRY_BYTES + XT_TARGET_BYTES + IPT_COUNTER_BYTES * ncpu
    return int(rules * per_rule + matches_defined * XT_MATCH_BYTES + chains * IPT_CHAIN_BYTES)


def kube_services_bytes(rules) -> float:
    """Kernel bytes a walk of a KUBE-SERVICES-like chain of ``rules`` rules reads."""
    return float(rules) * KUBE_SERVICES_RULE_BYTES


def hash_table_bytes(buckets: int, elements: int, elem_bytes: int) -> int:
    """Bucket array plus elements of a chained hash table."""
    return int(buckets * HLIST_HEAD_BYTES + elements * elem_bytes)
