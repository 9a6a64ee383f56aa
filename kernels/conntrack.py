"""nf_conntrack's hash table: the per-packet cost of established flows (and of NEW ones).

Every packet of a tracked flow is looked up in the conntrack hash (``nf_conntrack_find_get``
→ ``____nf_conntrack_find``): hash the packet's tuple, walk the bucket's hlist_nulls chain
comparing tuples (+ zone and netns), newest entry first. Each connection is in the table twice,
once per direction (original and reply tuple). The NAT tables (iptables / nftables nat chains)
run only for the first packet of a connection (spec C.1), so an established packet's cost in
iptables and nftables mode is this lookup; in ipvs mode (sysctl ``conntrack=1``, spec B.2) it
precedes the IPVS connection-table lookup.

First packets: the lookup misses (whole chain walked), then ``__nf_conntrack_confirm`` walks
the original and the reply chain again looking for a clash before inserting both tuples; all of
those probes are counted.

Hash (documented choice): ``jhash2`` over the 9 words of (src.u3, src.u.all + l3num, dst.u3)
with seed ``rnd ^ ((dport << 16) | proto)``, reduced with ``reciprocal_scale`` — the kernel's
``hash_conntrack_raw`` before the siphash switch (v5.16+ use siphash over the same fields; for
random keys the chain-length distribution is the same). Addresses and ports enter as raw
network-order words (byte-swapped on little-endian machines).

Sizing defaults (``default_sizes``):
* kube-proxy (``--conntrack-max-per-core`` 32768, ``--conntrack-min`` 131072): nf_conntrack_max
  = max(32768 × cores, 131072) and hashsize = max / 4 → 32,768 buckets on 2 cores.
* the kernel alone (v5.15+, "netfilter: conntrack: sanitize table size default settings"):
  buckets = RAM / 16384 / sizeof(hlist_head), at least 1024, 65,536 above 1 GB and 262,144 above
  4 GB of RAM; nf_conntrack_max = buckets.
Probe = the bucket head read, then one per chain node compared.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from kernels import jhash
from kernels.jhash import JHASH_INITVAL, M32, bswap16, bswap32, jhash_final, jhash_mix
from kernels.numba_cache import depend_on

depend_on(__file__, jhash)

AF_INET = 2
KUBE_PROXY_MAX_PER_CORE = 32768
KUBE_PROXY_MIN = 131072


def default_sizes(rule: str = "kube-proxy", ncpu: int = 2,
                  ram_bytes: int = 8 << 30) -> tuple[int, int]:
    """(buckets, nf_conntrack_max) under kube-proxy's or the kernel's sizing rule."""
    if rule == "kube-proxy":
        cmax = max(KUBE_PROXY_MAX_PER_CORE * ncpu, KUBE_PROXY_MIN)
        return cmax // 4, cmax
    if rule == "kernel":
        buckets = ram_bytes // 16384 // 8
        if ram_bytes > 4 << 30:
            buckets = 262144
        elif ram_bytes > 1 << 30:
            buckets = 65536
        buckets = max(buckets, 1024)
        return buckets, buckets
    raise ValueError(f"rule: expected 'kube-proxy' or 'kernel', got {rule!r}")


@njit(cache=True)
def _jhash2_9(w0, w1, w2, w3, w4, w5, w6, w7, w8, initval):
    """jhash2 over nine words (three mix rounds, no tail)."""
    a = (JHASH_INITVAL + (9 << 2) + initval) & M32
    b = a
    c = a
    a, b, c = jhash_mix((a + w0) & M32, (b + w1) & M32, (c + w2) & M32)
    a, b, c = jhash_mix((a + w3) & M32, (b + w4) & M32, (c + w5) & M32)
    return jhash_final((a + w6) & M32, (b + w7) & M32, (c + w8) & M32)


@njit(cache=True)
def _bucket(saddr, sport, daddr, dport, proto, rnd, nbuckets):
    s = bswap32(saddr)
    d = bswap32(daddr)
    w4 = bswap16(sport) | (AF_INET << 16)
    seed = (rnd ^ ((bswap16(dport) << 16) | proto)) & M32
    h = _jhash2_9(s, 0, 0, 0, w4, d, 0, 0, 0, seed)
    return (h * nbuckets) >> 32


@njit(cache=True)
def _build(t_saddr, t_sport, t_daddr, t_dport, t_proto, rnd, nbuckets):
    head = np.full(nbuckets, -1, dtype=np.int64)
    nxt = np.full(t_saddr.shape[0], -1, dtype=np.int64)
    for i in range(t_saddr.shape[0]):
        b = _bucket(t_saddr[i], t_sport[i], t_daddr[i], t_dport[i], t_proto[i], rnd, nbuckets)
        nxt[i] = head[b]
        head[b] = i
    return head, nxt


@njit(cache=True)
def _find(head, nxt, t_saddr, t_sport, t_daddr, t_dport, t_proto, rnd, sa, sp, da, dp, pr):
    """____nf_conntrack_find: (tuple index or -1, probes)."""
    i = head[_bucket(sa, sp, da, dp, pr, rnd, head.shape[0])]
    probes = 1
    while i >= 0:
        probes += 1
        if (t_saddr[i] == sa and t_daddr[i] == da and t_sport[i] == sp and t_dport[i] == dp
                and t_proto[i] == pr):
            return i, probes
        i = nxt[i]
    return -1, probes


@dataclass(frozen=True)
class ConntrackTable:
    """Tuple arrays (2 per connection: even = original, odd = reply) and their chains."""

    rnd: int
    head: np.ndarray
    nxt: np.ndarray
    saddr: np.ndarray
    sport: np.ndarray
    daddr: np.ndarray
    dport: np.ndarray
    proto: np.ndarray
    max_entries: int

    @property
    def buckets(self) -> int:
        return int(self.head.shape[0])

    @property
    def connections(self) -> int:
        return int(self.saddr.shape[0] // 2)


def build_table(
    connections: int,
    buckets: int,
    *,
    max_entries: int | None = None,
    vip: np.ndarray | None = None,
    vport: np.ndarray | None = None,
    ep: np.ndarray | None = None,
    eport: np.ndarray | None = None,
    seed: int = 0,
) -> ConntrackTable:
    """A table holding ``connections`` live flows (both tuples each), inserted oldest first.

    Clients are random pod addresses (10.128.0.0/10) and ports 1024..65535, TCP; each flow goes to
    a (vip, vport) → (ep, eport) pair drawn uniformly from the given arrays (defaults: one pair).
    ``connections`` above ``max_entries`` (nf_conntrack_max) raises ValueError: the kernel
    would drop new flows ("table full").
    """
    if buckets < 1:
        raise ValueError(f"conntrack_buckets: expected >= 1, got {buckets}")
    cmax = 4 * buckets if max_entries is None else max_entries
    if connections > cmax:
        raise ValueError(f"live_connections: {connections} exceeds nf_conntrack_max {cmax}")
    rng = np.random.default_rng(seed)
    rnd = int(rng.integers(0, 2**32))
    caddr = 0x0A800000 + rng.integers(1, 1 << 22, size=connections)
    cport = rng.integers(1024, 65536, size=connections)
    if vip is None or len(vip) == 0:
        vip, vport = np.array([0x0A600001]), np.array([80])
        ep, eport = np.array([0x0A800001]), np.array([8080])
    pick = rng.integers(0, len(vip), size=connections)
    n2 = 2 * connections
    saddr = np.empty(n2, np.int64)
    sport = np.empty(n2, np.int64)
    daddr = np.empty(n2, np.int64)
    dport = np.empty(n2, np.int64)
    saddr[0::2], sport[0::2] = caddr, cport
    daddr[0::2], dport[0::2] = np.asarray(vip)[pick], np.asarray(vport)[pick]
    saddr[1::2], sport[1::2] = np.asarray(ep)[pick], np.asarray(eport)[pick]
    daddr[1::2], dport[1::2] = caddr, cport
    proto = np.full(n2, 6, np.int64)
    head, nxt = _build(saddr, sport, daddr, dport, proto, rnd, buckets)
    return ConntrackTable(rnd, head, nxt, saddr, sport, daddr, dport, proto, cmax)


@njit(cache=True)
def _established(head, nxt, sa, sp, da, dp, pr, rnd, n, seed):
    np.random.seed(seed)
    out = np.empty(n, dtype=np.int64)
    conns = sa.shape[0] // 2
    for k in range(n):
        j = 2 * np.random.randint(0, conns) + np.random.randint(0, 2)
        _, out[k] = _find(head, nxt, sa, sp, da, dp, pr, rnd, sa[j], sp[j], da[j], dp[j], pr[j])
    return out


def established_probes(table: ConntrackTable, n_packets: int, seed: int) -> np.ndarray:
    """Probes of ``n_packets`` packets of live flows (uniform flow, either direction)."""
    if table.connections == 0:
        raise ValueError("live_connections: expected >= 1 for established packets, got 0")
    return _established(table.head, table.nxt, table.saddr, table.sport, table.daddr,
                        table.dport, table.proto, table.rnd, n_packets, seed)


@njit(cache=True)
def _first(head, nxt, sa, sp, da, dp, pr, rnd, psa, psp, pda, pdp, ppr, rda, rdp):
    n = psa.shape[0]
    out = np.empty(n, dtype=np.int64)
    for k in range(n):
        # miss lookup, then confirm: clash walk of the original and the reply chain
        _, p1 = _find(head, nxt, sa, sp, da, dp, pr, rnd, psa[k], psp[k], pda[k], pdp[k], ppr[k])
        _, p2 = _find(head, nxt, sa, sp, da, dp, pr, rnd, psa[k], psp[k], pda[k], pdp[k], ppr[k])
        _, p3 = _find(head, nxt, sa, sp, da, dp, pr, rnd, rda[k], rdp[k], psa[k], psp[k], ppr[k])
        out[k] = p1 + p2 + p3
    return out


def first_packet_probes(table: ConntrackTable, saddr, sport, daddr, dport, proto,
                        reply_saddr, reply_sport) -> np.ndarray:
    """Probes for each NEW packet: lookup miss + confirm's clash walks of both chains.

    ``reply_saddr/reply_sport`` = the endpoint after DNAT (= daddr/dport when not translated).
    """
    arrs = [np.ascontiguousarray(x, dtype=np.int64)
            for x in (saddr, sport, daddr, dport, proto, reply_saddr, reply_sport)]
    if any(x.shape != arrs[0].shape for x in arrs):
        raise ValueError("packets: expected 1-D arrays of one length")
    return _first(table.head, table.nxt, table.saddr, table.sport, table.daddr, table.dport,
                  table.proto, table.rnd, *arrs)
