"""kube-proxy's nftables mode (spec B.3) with its sets and verdict maps as real hash tables.

Table ``ip kube-proxy`` as kube-proxy writes it, per NEW packet (counted: rules evaluated,
jumps/gotos, set or map lookups, and hash probes inside the lookups):

* filter-prerouting: ``ct state new jump firewall-check``; firewall-check:
  ``ip daddr . meta l4proto . th dport vmap @firewall-ips`` (→ ``firewall-…`` chain:
  ``ip saddr != { ranges } drop``: a lookup in the anonymous interval set of the Service's
  source ranges — rbtree, modelled as a binary search over the merged range starts, one probe
  per node — and a real drop).
* nat-prerouting: ``jump services``; ``services`` = 2 rules: (1) ``ip daddr . meta l4proto .
  th dport vmap @service-ips``, (2) ``fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto .
  th dport vmap @service-nodeports`` (the map is consulted only when the fib says local).
* ``service-…`` chain: masquerade rule (``ip saddr != <pod CIDR> jump mark-for-masquerade``),
  ClientIP affinity rules ``ip saddr @affinity-<ep> goto endpoint-<ep>``, one per endpoint,
  walked in order (each a lookup in that endpoint's set; the first hit goes to its endpoint),
  then ONE rule ``numgen random mod N vmap { 0 : goto endpoint-0, … }``; numgen value =
  ``reciprocal_scale(random u32, N)`` (spec C.2).
* ``endpoint-…`` chain: ``ip saddr <ep> jump mark-for-masquerade``, (affinity: ``update
  @affinity-<ep> { ip saddr }``), ``meta l4proto <p> dnat to ep:port``.
* Affinity sets (spec B.3): one per endpoint of a ClientIP Service port, ``flags dynamic,timeout``
  with timeout = StickyMaxAgeSeconds (``svc_affinity_timeout``); they live for one
  :func:`first_packets` call (empty at its start) and are real rhash tables keyed by the client
  address (jhash_1word, own seed per set, 4 buckets growing ×2 past 75 % load, chains
  newest-first and kept in order on growth, no shrinking). An element is expired when
  ``now >= last update + timeout``; expired elements are unlinked at the next walk over them and
  not counted (nft's set gc runs every second). ``update`` refreshes a live element's time or
  inserts a new one at the bucket head (probes = the lookup walk + 1 for the insert).
* ``external-…`` chain (NodePort, external and LB IPs): ``jump mark-for-masquerade``, ``goto
  service-…``. externalTrafficPolicy: Local is modelled with the same two rules (a documented
  simplification: the Local chain's extra short-circuit rules are not modelled).
* nat-postrouting: ``jump masquerading``: ``meta mark & 0x4000 == 0 return``; if marked, mark
  reset and ``masquerade fully-random``.
* filter-forward (routed) / filter-input (local), on the DNATed address and port:
  filter-input ``ct state new jump nodeport-endpoints-check`` (``vmap @no-endpoint-nodeports``)
  then ``jump service-endpoints-check`` (``vmap @no-endpoint-services``); filter-forward ``jump
  service-endpoints-check`` then ``jump cluster-ips-check`` (``ip daddr @cluster-ips reject``,
  ``ip daddr { service CIDR } drop``). A no-endpoint element's verdict is ``goto reject-chain``
  (one ``reject`` rule). Dropped and rejected packets get ``dest`` −1 and ``dropped``.
* Host-originated packets (nat-output, filter-output, filter-output-post-dnat) are not walked.

Set backends (spec C.2, inferred from nft_select_set_ops, unconfirmed for what knftables
passes): named maps/sets with no declared size select **rhash** — kernel rhashtable, jhash over
the key with a random seed, bucket = hash & (size − 1), size a power of two that starts from the
element hint 3 (→ 4 buckets) and doubles while elements > 3/4 of the buckets (rhashtable's grow
rule); concatenated keys are padded to 32-bit registers (ipv4 . proto . port = 3 words). The
anonymous ``numgen`` vmap has a 4-byte key and a known size → **hash_fast**: buckets =
roundup_pow_of_two(N·4/3), bucket = reciprocal_scale(jhash_1word(key, seed), buckets). Chains
are newest-first. Probe = bucket head read + one per element compared. Keys are hashed as
host-order 32-bit words (address, protocol, port as integers); the kernel hashes the packet's
network-order register bytes, so on a little-endian machine the real bucket of an element
differs — bucket loads and probe counts have the same distribution, individual buckets do not.

Counts: ``rules`` = rules evaluated (a rule whose first expression fails still counts),
``jumps`` = jump/goto (including a vmap's verdict), ``lookups`` = set/map lookups (including
affinity ``update``), ``probes`` = hash (or rbtree) probes inside them. The scaling kind's
``first_packet_ops`` for nftables is lookups + rules + probes (harness.kinds.scaling).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from kernels import jhash
from kernels.cluster import Cluster, parse_cidr
from kernels.jhash import M32, jhash_nwords
from kernels.numba_cache import depend_on

depend_on(__file__, jhash)

RHASH_ELEMENT_HINT = 3
RHASH_MIN_SIZE = 4

BASE_CHAIN_RULES = {
    "filter-prerouting": 1, "filter-input": 2, "filter-forward": 2, "filter-output": 2,
    "filter-output-post-dnat": 1, "nat-prerouting": 1, "nat-output": 1, "nat-postrouting": 1,
    "services": 2, "masquerading": 3, "mark-for-masquerade": 1, "firewall-check": 1,
    "service-endpoints-check": 1, "nodeport-endpoints-check": 1, "cluster-ips-check": 2,
    "reject-chain": 1,
}
"""Rules of kube-proxy's fixed chains (spec B.3)."""

CH_SERVICE, CH_EXTERNAL, CH_FIREWALL = 0, 1, 2


def rhash_buckets(elements: int) -> int:
    """rhashtable size after growth: from the hint 3 (4 buckets), doubling past 75 % load."""
    size = max(RHASH_MIN_SIZE, 1 << int(np.ceil(np.log2(RHASH_ELEMENT_HINT * 4 / 3))))
    while elements > size * 3 // 4:
        size *= 2
    return size


def hash_fast_buckets(size: int) -> int:
    """nft_hash_buckets: roundup_pow_of_two(size · 4 / 3)."""
    return 1 << int(np.ceil(np.log2(max(size * 4 // 3, 1))))


@njit(cache=True)
def _rhash_build(keys, nwords, seed, nbuckets):
    head = np.full(nbuckets, -1, dtype=np.int64)
    nxt = np.full(keys.shape[0], -1, dtype=np.int64)
    for i in range(keys.shape[0]):
        b = jhash_nwords(keys[i, 0], keys[i, 1], keys[i, 2], nwords, seed) & (nbuckets - 1)
        nxt[i] = head[b]
        head[b] = i
    return head, nxt


@njit(cache=True)
def _rhash_lookup(head, nxt, keys, vals, nwords, seed, w0, w1, w2):
    """(value or -1, probes)."""
    i = head[jhash_nwords(w0, w1, w2, nwords, seed) & (head.shape[0] - 1)]
    probes = 1
    while i >= 0:
        probes += 1
        if keys[i, 0] == w0 and keys[i, 1] == w1 and keys[i, 2] == w2:
            return vals[i], probes
        i = nxt[i]
    return -1, probes


@dataclass(frozen=True)
class RHash:
    """A named nft set/map on the rhash backend; ``vals`` = verdict target (chain) per element."""

    keys: np.ndarray  # int64[N, 3]
    vals: np.ndarray  # int64[N]
    nwords: int
    seed: int
    head: np.ndarray
    nxt: np.ndarray

    @property
    def elements(self) -> int:
        return int(self.keys.shape[0])

    @property
    def buckets(self) -> int:
        return int(self.head.shape[0])

    def args(self):
        return self.head, self.nxt, self.keys, self.vals, self.nwords, self.seed


def build_rhash(keys: np.ndarray, vals: np.ndarray, nwords: int, seed: int) -> RHash:
    keys = np.ascontiguousarray(keys, dtype=np.int64).reshape(-1, 3)
    head, nxt = _rhash_build(keys, nwords, seed & M32, rhash_buckets(keys.shape[0]))
    return RHash(keys, np.ascontiguousarray(vals, dtype=np.int64), nwords, seed & M32, head, nxt)


@njit(cache=True)
def _numgen_maps_build(n_per, bptr, eptr, seeds, total_buckets):
    """Per service chain: hash_fast vmap {0..n-1 : endpoint}; flat head/next arrays."""
    head = np.full(total_buckets, -1, dtype=np.int64)
    nxt = np.full(eptr[-1], -1, dtype=np.int64)
    for s in range(n_per.shape[0]):
        nb = bptr[s + 1] - bptr[s]
        for j in range(n_per[s]):
            b = bptr[s] + ((jhash_nwords(j, 0, 0, 1, seeds[s]) * nb) >> 32)
            e = eptr[s] + j
            nxt[e] = head[b]
            head[b] = e
    return head, nxt


@dataclass(frozen=True)
class NftTables:
    """Everything the nftables kernel reads (built by :func:`build_tables`)."""

    service_ips: RHash  # addr . proto . port -> chain
    service_nodeports: RHash  # proto . port -> chain
    firewall_ips: RHash  # addr . proto . port -> firewall chain
    no_endpoint_services: RHash
    no_endpoint_nodeports: RHash
    cluster_ips: RHash  # set of addr
    chain_kind: np.ndarray  # int64[C]: CH_SERVICE / CH_EXTERNAL / CH_FIREWALL
    chain_port: np.ndarray  # int64[C]: service port index
    svc_chain: np.ndarray  # int64[P]: service chain of each port (-1 none)
    ng_bptr: np.ndarray  # int64[P+1] numgen map buckets of each port
    ng_eptr: np.ndarray  # int64[P+1] numgen map elements of each port
    ng_seed: np.ndarray
    ng_head: np.ndarray
    ng_next: np.ndarray
    ep_of_port: np.ndarray  # int64[P] first endpoint index of the port's Service
    ep_ip: np.ndarray  # int64[E] endpoint addresses
    port_target: np.ndarray  # int64[P] endpoint (target) port
    fw_ptr: np.ndarray  # int64[P+1] source ranges of each port's firewall chain
    fw_lo: np.ndarray  # int64 merged range starts
    fw_hi: np.ndarray  # int64 merged range ends (exclusive)
    svc_net: int  # service CIDR (cluster-ips-check drop rule)
    svc_mask: int
    port_affinity: np.ndarray  # bool[P]
    port_timeout: np.ndarray  # float64[P] affinity timeout (s), StickyMaxAgeSeconds
    aff_seed: np.ndarray  # int64[E] jhash seed of each endpoint's affinity set (numgen order)
    local_addrs: np.ndarray  # sorted node addresses (fib daddr type local)
    pod_net: int
    pod_mask: int
    rules_total: int
    chains_total: int

    @property
    def elements_total(self) -> int:
        named = sum(m.elements for m in (self.service_ips, self.service_nodeports,
                                         self.firewall_ips, self.no_endpoint_services,
                                         self.no_endpoint_nodeports, self.cluster_ips))
        return int(named + self.ng_eptr[-1])

    @property
    def buckets_total(self) -> int:
        named = sum(m.buckets for m in (self.service_ips, self.service_nodeports,
                                        self.firewall_ips, self.no_endpoint_services,
                                        self.no_endpoint_nodeports, self.cluster_ips))
        return int(named + self.ng_bptr[-1])


def _firewall_ranges(cluster: Cluster, psvc: np.ndarray, has_fw: np.ndarray):
    """Per service port: its Service's source ranges as sorted, merged ``[lo, hi)``."""
    ptr = [0]
    lo_all: list[int] = []
    hi_all: list[int] = []
    for p in range(psvc.shape[0]):
        if has_fw[p]:
            s = psvc[p]
            r0, r1 = cluster.src_ptr[s], cluster.src_ptr[s + 1]
            m = cluster.src_mask[r0:r1].astype(np.int64)
            lo = cluster.src_net[r0:r1].astype(np.int64) & m
            hi = lo + (~m & M32) + 1
            merged: list[list[int]] = []
            for a, b in sorted(zip(lo.tolist(), hi.tolist(), strict=True)):
                if merged and a <= merged[-1][1]:
                    merged[-1][1] = max(merged[-1][1], b)
                else:
                    merged.append([a, b])
            lo_all += [x[0] for x in merged]
            hi_all += [x[1] for x in merged]
        ptr.append(len(lo_all))
    return (np.array(ptr, np.int64), np.array(lo_all, np.int64).reshape(-1),
            np.array(hi_all, np.int64).reshape(-1))


def build_tables(cluster: Cluster, *, masquerade_rule: bool = True, seed: int = 0,
                 service_cidr: str = "10.96.0.0/12") -> NftTables:
    """Program ``cluster`` as kube-proxy's nftables proxier does (spec B.3); ``service_cidr``
    is cluster-ips-check's ``ip daddr { service CIDR } drop`` rule."""
    svc_net, svc_mask, _ = parse_cidr(service_cidr)
    rng = np.random.default_rng(seed)
    n_ports = cluster.n_ports
    psvc = np.repeat(np.arange(cluster.n_services), np.diff(cluster.port_ptr))
    n_ep = np.diff(cluster.ep_ptr)[psvc]
    has_ep = n_ep > 0
    proto = cluster.port_proto.astype(np.int64)
    port = cluster.port_port.astype(np.int64)
    nodeport = cluster.port_nodeport.astype(np.int64)
    ext_counts = np.diff(cluster.extip_ptr)[psvc] + np.diff(cluster.lb_ptr)[psvc]
    has_ext = (ext_counts > 0) | (nodeport > 0)
    has_fw = np.diff(cluster.src_ptr)[psvc] > 0
    # chains: service chain per port with endpoints, external chain, firewall chain
    svc_chain = np.where(has_ep, np.arange(n_ports), -1)
    ext_chain = np.where(has_ext & has_ep, n_ports + np.arange(n_ports), -1)
    fw_chain = np.where(has_fw & has_ep, 2 * n_ports + np.arange(n_ports), -1)
    chain_kind = np.repeat(np.array([CH_SERVICE, CH_EXTERNAL, CH_FIREWALL]), n_ports)
    chain_port = np.tile(np.arange(n_ports), 3)
    order = cluster.port_order  # sync order = element insertion order

    def elems(ptr, ips):
        counts = np.diff(ptr)[psvc]
        pidx = np.repeat(np.arange(n_ports), counts)
        sub = np.arange(pidx.shape[0]) - np.repeat(np.cumsum(counts) - counts, counts)
        return pidx, ips[ptr[psvc][pidx] + sub].astype(np.int64)

    rank = np.empty(n_ports, np.int64)
    rank[order] = np.arange(n_ports)
    cip = cluster.svc_cluster_ip[psvc].astype(np.int64)
    e_p, e_ip = elems(cluster.extip_ptr, cluster.extip_ip)
    l_p, l_ip = elems(cluster.lb_ptr, cluster.lb_ip)
    all_p = np.concatenate([np.arange(n_ports), e_p, l_p])
    all_ip = np.concatenate([cip, e_ip, l_ip])
    all_kind = np.concatenate([np.zeros(n_ports, np.int64), np.ones(e_p.size, np.int64),
                               np.full(l_p.size, 2, np.int64)])  # ClusterIP, external, LB
    srt = np.lexsort((all_kind, rank[all_p]))
    all_p, all_ip, all_kind = all_p[srt], all_ip[srt], all_kind[srt]
    key3 = np.stack([all_ip, proto[all_p], port[all_p]], axis=1)
    target = np.where(all_kind == 0, svc_chain[all_p], ext_chain[all_p])
    ok = has_ep[all_p]
    lb_fw = (all_kind == 2) & has_fw[all_p] & ok
    seeds = rng.integers(0, 2**32, size=7)
    service_ips = build_rhash(key3[ok], np.where(lb_fw, ext_chain[all_p], target)[ok], 3,
                              int(seeds[0]))
    firewall_ips = build_rhash(key3[lb_fw], fw_chain[all_p][lb_fw], 3, int(seeds[1]))
    no_ep = build_rhash(key3[~ok], np.zeros(int((~ok).sum()), np.int64), 3, int(seeds[2]))
    np_ports = np.nonzero(nodeport > 0)[0]
    np_ports = np_ports[np.argsort(rank[np_ports])]
    np_keys = np.stack([proto[np_ports], nodeport[np_ports], np.zeros(np_ports.size,
                                                                       np.int64)], axis=1)
    np_ok = has_ep[np_ports]
    service_nodeports = build_rhash(np_keys[np_ok], ext_chain[np_ports][np_ok], 2,
                                    int(seeds[3]))
    no_ep_np = build_rhash(np_keys[~np_ok], np.zeros(int((~np_ok).sum()), np.int64), 2,
                           int(seeds[4]))
    cips = np.unique(cip)
    cluster_ips = build_rhash(np.stack([cips, np.zeros_like(cips), np.zeros_like(cips)], 1),
                              np.zeros(cips.size, np.int64), 1, int(seeds[5]))
    # numgen maps
    ng_n = np.where(has_ep, n_ep, 0).astype(np.int64)
    nb = np.array([hash_fast_buckets(int(n)) if n else 0 for n in np.unique(ng_n)])
    nb_of = dict(zip(np.unique(ng_n).tolist(), nb.tolist(), strict=True))
    ng_nb = np.array([nb_of[int(n)] for n in ng_n], dtype=np.int64) if n_ports else np.zeros(
        0, np.int64)
    ng_bptr = np.concatenate([[0], np.cumsum(ng_nb)]).astype(np.int64)
    ng_eptr = np.concatenate([[0], np.cumsum(ng_n)]).astype(np.int64)
    ng_seed = rng.integers(0, 2**32, size=n_ports).astype(np.int64)
    ng_head, ng_next = _numgen_maps_build(ng_n, ng_bptr, ng_eptr, ng_seed, int(ng_bptr[-1]))
    # rule and chain totals
    aff = cluster.svc_affinity[psvc]
    masq = 1 if masquerade_rule else 0
    svc_rules = np.where(has_ep, masq + np.where(aff, n_ep, 0) + 1, 0)
    ep_rules = np.where(has_ep, n_ep * np.where(aff, 3, 2), 0)
    rules_total = int(sum(BASE_CHAIN_RULES.values()) + svc_rules.sum() + ep_rules.sum()
                      + 2 * (ext_chain >= 0).sum() + (fw_chain >= 0).sum())
    chains_total = int(len(BASE_CHAIN_RULES) + has_ep.sum() + np.where(has_ep, n_ep, 0).sum()
                       + (ext_chain >= 0).sum() + (fw_chain >= 0).sum())
    pod_net, pod_mask = cluster.cluster_cidr
    fw_ptr, fw_lo, fw_hi = _firewall_ranges(cluster, psvc, has_fw & has_ep)
    return NftTables(
        service_ips=service_ips, service_nodeports=service_nodeports, firewall_ips=firewall_ips,
        no_endpoint_services=no_ep, no_endpoint_nodeports=no_ep_np, cluster_ips=cluster_ips,
        chain_kind=chain_kind, chain_port=chain_port, svc_chain=svc_chain.astype(np.int64),
        ng_bptr=ng_bptr, ng_eptr=ng_eptr, ng_seed=ng_seed, ng_head=ng_head, ng_next=ng_next,
        ep_of_port=cluster.ep_ptr[psvc].astype(np.int64), port_affinity=aff.astype(np.bool_),
        ep_ip=cluster.ep_ip.astype(np.int64), port_target=cluster.port_target.astype(np.int64),
        fw_ptr=fw_ptr, fw_lo=fw_lo, fw_hi=fw_hi, svc_net=int(svc_net), svc_mask=int(svc_mask),
        port_timeout=cluster.svc_affinity_timeout[psvc].astype(np.float64),
        aff_seed=rng.integers(0, 2**32, size=int(ng_eptr[-1])).astype(np.int64),
        local_addrs=np.unique(cluster.node_ips.astype(np.int64)),
        pod_net=int(pod_net), pod_mask=int(pod_mask), rules_total=rules_total,
        chains_total=chains_total,
    )


@njit(cache=True)
def _is_local(local, addr):
    i = np.searchsorted(local, addr)
    return i < local.shape[0] and local[i] == addr


@njit(cache=True)
def _aff_find(a_nb, a_reg, bpool, el_addr, el_time, el_next, a_cnt, sid, seed, addr, now,
              timeout):
    """Look ``addr`` up in affinity set ``sid``: (element or -1, probes).

    Expired elements (``now >= last update + timeout``) are unlinked as nft's set gc would
    have done, without being counted (gc runs every second, timeouts are seconds to hours).
    """
    if a_reg[sid] < 0:
        return -1, 1
    b = a_reg[sid] + (jhash_nwords(addr, 0, 0, 1, seed) & (a_nb[sid] - 1))
    probes = 1
    prev = -1
    i = bpool[b]
    while i >= 0:
        nx = el_next[i]
        if now - el_time[i] >= timeout:
            if prev < 0:
                bpool[b] = nx
            else:
                el_next[prev] = nx
            a_cnt[sid] -= 1
        else:
            probes += 1
            if el_addr[i] == addr:
                return i, probes
            prev = i
        i = nx
    return -1, probes


@njit(cache=True)
def _aff_update(a_nb, a_reg, a_cnt, bpool, top, el_addr, el_time, el_next, n_el, sid, seed,
                addr, now, timeout):
    """``update @affinity-… { ip saddr }``: refresh or insert at the bucket head, growing the
    set (rhashtable: double past 75 % load, chain order kept). Returns (probes, n_el, top)."""
    i, probes = _aff_find(a_nb, a_reg, bpool, el_addr, el_time, el_next, a_cnt, sid, seed,
                          addr, now, timeout)
    if i >= 0:
        el_time[i] = now
        return probes, n_el, top
    if a_reg[sid] < 0:
        a_reg[sid] = top
        top += a_nb[sid]
    b = a_reg[sid] + (jhash_nwords(addr, 0, 0, 1, seed) & (a_nb[sid] - 1))
    el_addr[n_el] = addr
    el_time[n_el] = now
    el_next[n_el] = bpool[b]
    bpool[b] = n_el
    n_el += 1
    probes += 1
    a_cnt[sid] += 1
    if a_cnt[sid] > a_nb[sid] * 3 // 4:
        old, onb = a_reg[sid], a_nb[sid]
        nb = 2 * onb
        a_reg[sid] = top
        top += nb
        for ob in range(onb):
            j = bpool[old + ob]
            tail0 = -1
            tail1 = -1
            while j >= 0:
                nx = el_next[j]
                el_next[j] = -1
                t = a_reg[sid] + (jhash_nwords(el_addr[j], 0, 0, 1, seed) & (nb - 1))
                tail = tail0 if t == a_reg[sid] + ob else tail1
                if tail < 0:
                    bpool[t] = j
                else:
                    el_next[tail] = j
                if t == a_reg[sid] + ob:
                    tail0 = j
                else:
                    tail1 = j
                j = nx
        a_nb[sid] = nb
    return probes, n_el, top


@njit(cache=True)
def _range_lookup(lo, hi, a, b, addr):
    """Anonymous interval set ``{ ranges }`` (sorted, merged ``[lo, hi)`` in ``a:b``): rbtree
    walk modelled as a binary search over the range starts, one probe per node visited.
    Returns (inside, probes)."""
    i, j = a, b
    probes = 0
    while i < j:
        probes += 1
        mid = (i + j) // 2
        if lo[mid] <= addr:
            i = mid + 1
        else:
            j = mid
    return i > a and addr < hi[i - 1], max(probes, 1)


@njit(cache=True)
def _first_packets(
    saddr, daddr, dport, proto, seed,
    si_h, si_n, si_k, si_v, si_w, si_s, sn_h, sn_n, sn_k, sn_v, sn_w, sn_s,
    fw_h, fw_n, fw_k, fw_v, fw_w, fw_s, ne_h, ne_n, ne_k, ne_v, ne_w, ne_s,
    nn_h, nn_n, nn_k, nn_v, nn_w, nn_s, ci_h, ci_n, ci_k, ci_v, ci_w, ci_s,
    chain_kind, chain_port, svc_chain, ng_bptr, ng_eptr, ng_seed, ng_head, ng_next,
    ep_of_port, ep_ip, port_target, fw_ptr, fw_lo, fw_hi, port_aff, port_timeout, aff_seed,
    times, local, pod_net, pod_mask, svc_net, svc_mask, masq_rule,
):
    np.random.seed(seed)
    n = saddr.shape[0]
    nsets = ng_eptr[-1] if port_aff.any() else 0  # affinity sets only when some port has them
    a_nb = np.full(nsets, RHASH_MIN_SIZE, dtype=np.int64)
    a_reg = np.full(nsets, -1, dtype=np.int64)
    a_cnt = np.zeros(nsets, dtype=np.int64)
    bpool = np.full(10 * n + 16, -1, dtype=np.int64)
    el_addr = np.zeros(n, dtype=np.int64)
    el_time = np.zeros(n, dtype=np.float64)
    el_next = np.full(n, -1, dtype=np.int64)
    n_el = 0
    top = 0
    rules = np.zeros(n, dtype=np.int64)
    jumps = np.zeros(n, dtype=np.int64)
    lookups = np.zeros(n, dtype=np.int64)
    probes = np.zeros(n, dtype=np.int64)
    dest = np.full(n, -1, dtype=np.int64)
    dropped = np.zeros(n, dtype=np.bool_)
    for k in range(n):
        s, a, p, pr = saddr[k], daddr[k], dport[k], proto[k]
        r = 0
        jp = 0
        lk = 0
        pb = 0
        masq = False
        done = False
        # filter-prerouting: ct state new jump firewall-check; its vmap @firewall-ips
        r += 2
        jp += 1
        lk += 1
        fwc, q = _rhash_lookup(fw_h, fw_n, fw_k, fw_v, fw_w, fw_s, a, pr, p)
        pb += q
        if fwc >= 0:  # goto firewall-…: ip saddr != { ranges } drop
            jp += 1
            r += 1
            lk += 1
            fp = chain_port[fwc]
            inside, q = _range_lookup(fw_lo, fw_hi, fw_ptr[fp], fw_ptr[fp + 1], s)
            pb += q
            done = not inside
        if not done:
            # nat-prerouting: jump services; rule 1 vmap @service-ips
            r += 2
            jp += 1
            lk += 1
            c, q = _rhash_lookup(si_h, si_n, si_k, si_v, si_w, si_s, a, pr, p)
            pb += q
            is_loc = _is_local(local, a)
            if c < 0:  # rule 2: fib daddr type local ... vmap @service-nodeports
                r += 1
                if is_loc:
                    lk += 1
                    c, q = _rhash_lookup(sn_h, sn_n, sn_k, sn_v, sn_w, sn_s, pr, p, 0)
                    pb += q
            if c >= 0:
                jp += 1  # goto the map's chain
                if chain_kind[c] == CH_EXTERNAL:
                    r += 3  # jump mark-for-masquerade (+ its rule), goto service chain
                    jp += 2
                    masq = True
                    c = svc_chain[chain_port[c]]
                sp = chain_port[c]
                if masq_rule:
                    r += 1
                    if (s & pod_mask) != pod_net:
                        r += 1
                        jp += 1
                        masq = True
                nep = ng_eptr[sp + 1] - ng_eptr[sp]
                now = times[k]
                v = -1
                if port_aff[sp]:
                    # one rule per endpoint: ip saddr @affinity-<ep> goto endpoint-<ep>
                    for j in range(nep):
                        sid = ng_eptr[sp] + j
                        r += 1
                        lk += 1
                        hit, q = _aff_find(a_nb, a_reg, bpool, el_addr, el_time, el_next, a_cnt,
                                           sid, aff_seed[sid], s, now, port_timeout[sp])
                        pb += q
                        if hit >= 0:
                            v = j
                            break
                if v < 0:
                    # numgen random mod N vmap {...}
                    r += 1
                    lk += 1
                    v = (np.random.randint(0, 2**32) * nep) >> 32
                    nb = ng_bptr[sp + 1] - ng_bptr[sp]
                    i = ng_head[ng_bptr[sp]
                                + ((jhash_nwords(v, 0, 0, 1, ng_seed[sp]) * nb) >> 32)]
                    pb += 1
                    while i >= 0:
                        pb += 1
                        if i - ng_eptr[sp] == v:
                            break
                        i = ng_next[i]
                jp += 1  # goto endpoint-…
                e = ep_of_port[sp] + v
                dest[k] = e
                r += 1  # ip saddr <ep> jump mark-for-masquerade (hairpin)
                if s == ep_ip[e]:
                    r += 1
                    jp += 1
                    masq = True
                if port_aff[sp]:
                    sid = ng_eptr[sp] + v
                    r += 1
                    lk += 1
                    q, n_el, top = _aff_update(a_nb, a_reg, a_cnt, bpool, top, el_addr, el_time,
                                               el_next, n_el, sid, aff_seed[sid], s, now,
                                               port_timeout[sp])
                    pb += q
                r += 1  # dnat to ep:port
                a = ep_ip[e]
                p = port_target[sp]
                is_loc = _is_local(local, a)
            if is_loc:
                # filter-input: jump nodeport-endpoints-check, jump service-endpoints-check
                r += 2
                jp += 1
                lk += 1
                ne, q = _rhash_lookup(nn_h, nn_n, nn_k, nn_v, nn_w, nn_s, pr, p, 0)
                pb += q
                done = ne >= 0
                if not done:
                    r += 2
                    jp += 1
                    lk += 1
                    ne, q = _rhash_lookup(ne_h, ne_n, ne_k, ne_v, ne_w, ne_s, a, pr, p)
                    pb += q
                    done = ne >= 0
                if done:  # goto reject-chain: reject
                    r += 1
                    jp += 1
            else:
                # filter-forward: jump service-endpoints-check, jump cluster-ips-check
                r += 2
                jp += 1
                lk += 1
                ne, q = _rhash_lookup(ne_h, ne_n, ne_k, ne_v, ne_w, ne_s, a, pr, p)
                pb += q
                if ne >= 0:  # goto reject-chain: reject
                    r += 1
                    jp += 1
                    done = True
                if not done:
                    r += 2  # jump cluster-ips-check; ip daddr @cluster-ips reject
                    jp += 1
                    lk += 1
                    hit, q = _rhash_lookup(ci_h, ci_n, ci_k, ci_v, ci_w, ci_s, a, 0, 0)
                    pb += q
                    done = hit >= 0
                    if not done:
                        r += 1  # ip daddr { service CIDR } drop
                        done = (a & svc_mask) == svc_net
                if not done:
                    # nat-postrouting: jump masquerading; mark & 0x4000 == 0 return
                    r += 2
                    jp += 1
                    if masq:
                        r += 2  # mark xor, masquerade fully-random
        if done:
            dest[k] = -1
            dropped[k] = True
        rules[k] = r
        jumps[k] = jp
        lookups[k] = lk
        probes[k] = pb
    return rules, jumps, lookups, probes, dest, dropped


def first_packets(tables: NftTables, saddr, daddr, dport, proto, seed: int,
                  masquerade_rule: bool = True, times=None) -> dict[str, np.ndarray]:
    """Count the work of the first packet of each connection in nftables mode.

    Returns per-packet int64 arrays ``rules``, ``jumps`` (jump/goto), ``lookups`` (set and
    verdict-map lookups), ``probes`` (hash probes inside them), ``dest`` (endpoint index or
    -1) and bool ``dropped`` (firewall drop, reject of a Service without endpoints or of an
    unserved ClusterIP port, service-CIDR drop). The numgen draw uses ``seed``. ``times``
    (float seconds, non-decreasing; default all 0) are the packets' arrival times, used by the
    ClientIP affinity sets' timeouts. The filter hooks after nat see the DNATed address and port.
    """
    arrs = [np.ascontiguousarray(x, dtype=np.int64) for x in (saddr, daddr, dport, proto)]
    if any(x.shape != arrs[0].shape or x.ndim != 1 for x in arrs):
        raise ValueError("packets: expected 1-D arrays of one length")
    tm = (np.zeros(arrs[0].shape[0]) if times is None
          else np.ascontiguousarray(times, dtype=np.float64))
    if tm.shape != arrs[0].shape:
        raise ValueError("times: expected one arrival time per packet")
    t = tables
    out = _first_packets(
        *arrs, seed, *t.service_ips.args(), *t.service_nodeports.args(),
        *t.firewall_ips.args(), *t.no_endpoint_services.args(),
        *t.no_endpoint_nodeports.args(), *t.cluster_ips.args(), t.chain_kind, t.chain_port,
        t.svc_chain, t.ng_bptr, t.ng_eptr, t.ng_seed, t.ng_head, t.ng_next, t.ep_of_port,
        t.ep_ip, t.port_target, t.fw_ptr, t.fw_lo, t.fw_hi, t.port_affinity, t.port_timeout,
        t.aff_seed, tm, t.local_addrs, t.pod_net, t.pod_mask, t.svc_net, t.svc_mask,
        masquerade_rule,
    )
    return dict(zip(("rules", "jumps", "lookups", "probes", "dest", "dropped"), out,
                    strict=True))


@njit(cache=True)
def _dispatch(head, nxt, keys, vals, nwords, seed, daddr, dport, proto):
    n = daddr.shape[0]
    out = np.empty(n, dtype=np.int64)
    pb = np.empty(n, dtype=np.int64)
    for k in range(n):
        out[k], pb[k] = _rhash_lookup(head, nxt, keys, vals, nwords, seed, daddr[k], proto[k],
                                      dport[k])
    return out, pb


def dispatch(tables: NftTables, daddr, dport, proto) -> tuple[np.ndarray, np.ndarray]:
    """The ``services`` chain's service-ips lookup only: (target chain or -1, probes)."""
    return _dispatch(*tables.service_ips.args(), np.ascontiguousarray(daddr, dtype=np.int64),
                     np.ascontiguousarray(dport, dtype=np.int64),
                     np.ascontiguousarray(proto, dtype=np.int64))
