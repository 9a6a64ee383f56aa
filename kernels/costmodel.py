"""Cost model: counted dataplane operations -> nanoseconds, and object counts -> kernel bytes.

Every dataplane model (kernels.iptables, ipvs, nftables, userspace, conntrack) counts what it
does per packet: rules evaluated, extension matches tested, jumps, hash-bucket probes, verdict-map
lookups, conntrack probes, scheduler steps, and for the userspace proxy accepted connections,
copied KB and context switches. This module prices those counts (spec C.1, C.2; validation case
17). Defaults are orders of magnitude with their source stated; ``kpbench calibrate`` measures the
real kernel and its file replaces them through ``CostModel.from_overrides``.

It also holds the documented per-object kernel-memory estimates used for ``kernel_memory_bytes``.
Plain numpy (no loops): it converts arrays of counts, it does not model anything itself.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

import numpy as np

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
}
"""Source of every default, shown in reports."""


@dataclass(frozen=True)
class CostModel:
    """Nanoseconds per counted operation (see COST_SOURCES for each default's source)."""

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

    @classmethod
    def from_overrides(cls, overrides: dict | None, source: str = "calibration") -> CostModel:
        """Defaults replaced by ``overrides`` (the ``calibration`` dict given to run_point).

        Accepts the flat dict or one holding a ``costmodel`` table (as calibration files do).
        Keys of kernels.sync (``sync_*``) and fit standard errors (``*_se``) are skipped; any
        other unknown key or a non-numeric / negative value raises ``harness.errors.UserError``.
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
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise UserError(f"{source}: {key}: expected a number >= 0, got {value!r}")
            values[key] = float(value)
        return replace(model, **values)

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    def packet_ns(
        self,
        *,
        rules=0,
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
        """Cost in ns of each packet, from per-packet count arrays (or scalars)."""
        return (
            self.base_ns
            + self.rule_ns * np.asarray(rules, dtype=np.float64)
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


def hash_table_bytes(buckets: int, elements: int, elem_bytes: int) -> int:
    """Bucket array plus elements of a chained hash table."""
    return int(buckets * HLIST_HEAD_BYTES + elements * elem_bytes)
