"""Linux IPVS as kube-proxy's ipvs mode programs it: service table, connection table, ipsets.

What is modelled (spec A.1, A.2, B.2), with every probe counted:

* **Service table** (A.1): ``2^svc_bits`` buckets (default 8 → 256), chained newest-first
  (``ip_vs_svc_hash`` adds at the bucket head). Bucket of <proto, addr, port>::

      a = ntohl(addr) ^ ((netns_ptr >> 8) & 0xffffffff)
      h = (proto ^ a ^ (port >> svc_bits) ^ port) & (2^svc_bits - 1)

  The kernel shifts the port by ``IP_VS_SVC_TAB_BITS``; the spec states the default (8). With
  ``svc_table="resizable"`` the proposed table (RFC "ipvs: use resizable hash table for services",
  merge unconfirmed) is used instead: 4..20 bits, doubling while services > 2 × buckets (our
  reading of "grows at 2x load"), bucket = jhash_3words(addr ^ fold, port, proto, seed)
  (the exact key layout of the patch is unconfirmed).
* **fwmark table** (A.1): same size, bucket ``((netns_ptr >> 8) ^ fwmark) & mask``. kube-proxy
  creates no fwmark services, so it is empty unless ``fwmark_services`` > 0; it is probed only
  for packets with a non-zero mark while fwmark services exist (``ip_vs_service_find`` order:
  fwmark, <proto,addr,port>, FTP retry with port 21, port-0 retry; the retries run only when an
  FTP / port-0 service exists — kube-proxy creates neither).
* **Virtual servers** (B.2): one per (VIP, port, proto): ClusterIP, each external IP, each LB
  ingress IP, and for NodePorts one per node address in ``cluster.node_ips`` (the unconfirmed
  detail; kube-proxy's default ``nodePortAddresses`` is every local address — pass more node IPs
  to model more). Insertion order = kube-proxy's sync order over ``svcPortMap`` (``port_order``),
  within a port ClusterIP, external IPs, LB IPs, NodePorts. Real servers = the Service's
  endpoints, weight 1.
* **Connection table** (A.2): ``2^conn_bits`` buckets (default 12, up to 20 here), bucket =
  ``(jhash_3words(addr, port, proto, rnd) ^ (netns_ptr >> 8)) & mask`` where addr and port are the
  *raw network-order* values the kernel passes (``(__force u32)addr->ip``): byte-swapped host
  values on little-endian machines (``little_endian``). Chained newest-first. A lookup walks the
  chain comparing cport, vport, caddr, vaddr and protocol (``__ip_vs_conn_in_get``).
* **Scheduling**: the caller passes ``choice``, the endpoint its scheduler picked per packet
  (the scaling kind runs kernels.schedulers with the point's ``scheduler``, destinations added
  in endpoint order so the list is newest-first as in spec A.4, and counts its work). Without
  ``choice`` a stand-in picks: round robin over the Service's endpoints in endpoint order from
  index 0, one step per decision (not IPVS' list order).
* **iptables + ipset constant work** (B.2, C.1): the nat chains kube-proxy's ipvs proxier
  writes are flat rule arrays (:class:`NatRules`, :func:`build_nat_rules`) walked entry by entry
  by :func:`_walk` with a jump stack: PREROUTING → KUBE-SERVICES (``-m set KUBE-LOAD-BALANCER
  dst,dst -j KUBE-LOAD-BALANCER``; ``! -s podCIDR -m set KUBE-CLUSTER-IP dst,dst -j
  KUBE-MARK-MASQ``; KUBE-EXTERNAL-IP → KUBE-MARK-MASQ and → ACCEPT; ``-m addrtype --dst-type
  LOCAL -j KUBE-NODE-PORT``; KUBE-CLUSTER-IP → ACCEPT; KUBE-LOAD-BALANCER → ACCEPT), KUBE-NODE-PORT
  (``-p tcp/udp -m set KUBE-NODE-PORT-TCP/UDP dst -j KUBE-MARK-MASQ``), KUBE-LOAD-BALANCER
  (KUBE-LOAD-BALANCER-FW → KUBE-FIREWALL; → KUBE-MARK-MASQ), KUBE-FIREWALL
  (KUBE-LOAD-BALANCER-SOURCE-CIDR ``dst,dst,src`` → RETURN; → KUBE-MARK-DROP), KUBE-MARK-MASQ /
  KUBE-MARK-DROP (``--or-mark``), and POSTROUTING → KUBE-POSTROUTING (KUBE-LOOP-BACK
  ``dst,dst,src`` → MASQUERADE; ``! --mark`` RETURN; ``--xor-mark``; MASQUERADE). Rules on an
  empty ipset are left out, as kube-proxy does. Every entry evaluated is a rule, including the
  implicit RETURN ending a user chain and a builtin chain's policy entry; ``matches`` counts
  extension matches evaluated (up to the first that fails). A KUBE-MARK-DROP-marked packet is
  dropped by the filter table before IPVS (the filter table's rules are not counted).
  hash:ip,port / hash:ip,port,ip sets are real chained tables (jhash2, 1024 buckets doubling
  while elements > 4 × buckets — a stand-in for ipset's bucket-overflow resize, unconfirmed);
  hash:ip,port,net (SOURCE-CIDR) costs one lookup per distinct prefix stored, longest first;
  bitmap:port costs one probe. KUBE-LOAD-BALANCER-LOCAL / KUBE-NODE-PORT-LOCAL-* (Local
  traffic policy) and the filter table's KUBE-FORWARD are not modelled.

Probe = one memory access of a lookup: the bucket head, then one per chain node compared. The
routing ``addrtype LOCAL`` decision is a sorted-address binary search, not counted (the fib
lookup is the same in every mode). New connections are counted as one insert probe but not kept:
the live-connection population is a steady state of ``live_connections`` entries.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from kernels import jhash
from kernels.cluster import PROTO_TCP, PROTO_UDP, Cluster
from kernels.jhash import M32, bswap16, bswap32, jhash2, jhash_3words, jhash_nwords
from kernels.numba_cache import depend_on

depend_on(__file__, jhash)

DEFAULT_NETNS_PTR = 0xFFFF888003A4C000
"""A typical x86_64 direct-map address of ``init_net`` (any value only permutes buckets)."""
SVC_TAB_BITS = 8
CONN_TAB_BITS = 12
CONN_TAB_MAX_BITS = 20
RESIZE_MIN_BITS, RESIZE_MAX_BITS = 4, 20
IPSET_INIT_BITS = 10
IPSET_MAX_LOAD = 4
MASQ_MARK = 0x4000


# --------------------------------------------------------------------------- hashes
@njit(cache=True)
def _svc_hashkey(proto, addr, port, fold, bits):
    a = (addr ^ fold) & M32
    return (proto ^ a ^ (port >> bits) ^ port) & ((1 << bits) - 1)


@njit(cache=True)
def _svc_hashkey_resizable(proto, addr, port, fold, bits, seed):
    return jhash_3words((addr ^ fold) & M32, port, proto, seed) & ((1 << bits) - 1)


@njit(cache=True)
def _fwm_hashkey(fwmark, fold, bits):
    return (fold ^ fwmark) & ((1 << bits) - 1)


@njit(cache=True)
def _conn_hashkey(addr, port, proto, rnd, fold, bits, little_endian):
    if little_endian:
        addr = bswap32(addr)
        port = bswap16(port)
    return (jhash_3words(addr, port, proto, rnd) ^ fold) & ((1 << bits) - 1)


def svc_bucket(proto: int, addr: int, port: int, netns_ptr: int = DEFAULT_NETNS_PTR,
               bits: int = SVC_TAB_BITS) -> int:
    """Service-table bucket of <proto, addr, port> (spec A.1 ``ip_vs_svc_hashkey``)."""
    return int(_svc_hashkey(proto, addr, port, (netns_ptr >> 8) & M32, bits))


def conn_bucket(addr: int, port: int, proto: int, rnd: int, netns_ptr: int = DEFAULT_NETNS_PTR,
                bits: int = CONN_TAB_BITS, little_endian: bool = True) -> int:
    """Connection-table bucket of a client (addr, port, proto) (spec A.2 ``ip_vs_conn_hashkey``)."""
    return int(_conn_hashkey(addr, port, proto, rnd & M32, (netns_ptr >> 8) & M32, bits,
                             little_endian))


# --------------------------------------------------------------------------- chained tables
@njit(cache=True)
def _chain_insert(buckets, nbuckets):
    """Insert elements 0..n-1 in order at their bucket heads (newest first)."""
    head = np.full(nbuckets, -1, dtype=np.int64)
    nxt = np.full(buckets.shape[0], -1, dtype=np.int64)
    for i in range(buckets.shape[0]):
        b = buckets[i]
        nxt[i] = head[b]
        head[b] = i
    return head, nxt


@njit(cache=True)
def _svc_buckets(proto, addr, port, fold, bits, resizable, seed):
    out = np.empty(proto.shape[0], dtype=np.int64)
    for i in range(proto.shape[0]):
        if resizable:
            out[i] = _svc_hashkey_resizable(proto[i], addr[i], port[i], fold, bits, seed)
        else:
            out[i] = _svc_hashkey(proto[i], addr[i], port[i], fold, bits)
    return out


@njit(cache=True)
def _conn_buckets(addr, port, proto, rnd, fold, bits, little_endian):
    out = np.empty(addr.shape[0], dtype=np.int64)
    for i in range(addr.shape[0]):
        out[i] = _conn_hashkey(addr[i], port[i], proto[i], rnd, fold, bits, little_endian)
    return out


@njit(cache=True)
def _set_buckets(keys, nwords, seed, bits):
    out = np.empty(keys.shape[0], dtype=np.int64)
    for i in range(keys.shape[0]):
        out[i] = jhash2(keys[i], nwords, seed) & ((1 << bits) - 1)
    return out


@dataclass(frozen=True)
class HashSet:
    """An ipset hash:* set as a chained table: ``keys`` int64[N, 3] (unused words 0)."""

    keys: np.ndarray
    nwords: int
    bits: int
    seed: int
    head: np.ndarray
    nxt: np.ndarray

    @property
    def elements(self) -> int:
        return int(self.keys.shape[0])


def build_hash_set(keys: np.ndarray, nwords: int, seed: int) -> HashSet:
    """ipset hash set holding ``keys`` (insertion order = row order; lookups see oldest first)."""
    keys = np.ascontiguousarray(keys, dtype=np.int64).reshape(-1, 3)
    bits = IPSET_INIT_BITS
    while keys.shape[0] > IPSET_MAX_LOAD * (1 << bits):
        bits += 1
    rev = keys[::-1].copy()
    head, nxt = _chain_insert(_set_buckets(rev, nwords, seed & M32, bits), 1 << bits)
    return HashSet(rev, nwords, bits, seed & M32, head, nxt)


# --------------------------------------------------------------------------- tables
@dataclass(frozen=True)
class IpvsTables:
    """Everything the ipvs-mode kernels read (built by :func:`build_tables`)."""

    svc_bits: int
    resizable: bool
    svc_seed: int
    fold: int
    svc_head: np.ndarray  # int64[2^svc_bits]
    svc_next: np.ndarray  # int64[V]
    vs_addr: np.ndarray  # int64[V]
    vs_port: np.ndarray  # int64[V]
    vs_proto: np.ndarray  # int64[V]
    vs_service: np.ndarray  # int64[V]
    vs_target: np.ndarray  # int64[V] endpoint port
    fwm_head: np.ndarray  # int64[2^svc_bits]
    fwm_next: np.ndarray
    fwm_mark: np.ndarray  # int64[F]
    fwm_service: np.ndarray
    ep_ptr: np.ndarray
    ep_ip: np.ndarray
    local_addrs: np.ndarray  # int64 sorted: node IPs + VIPs bound to kube-ipvs0
    pod_net: int
    pod_mask: int
    cluster_ip_set: HashSet  # KUBE-CLUSTER-IP hash:ip,port
    external_ip_set: HashSet  # KUBE-EXTERNAL-IP hash:ip,port
    lb_set: HashSet  # KUBE-LOAD-BALANCER hash:ip,port
    loopback_set: HashSet  # KUBE-LOOP-BACK hash:ip,port,ip
    nodeport_bitmap: np.ndarray  # bool[2, 65536] KUBE-NODE-PORT-TCP / -UDP bitmap:port
    lb_fw_set: HashSet  # KUBE-LOAD-BALANCER-FW hash:ip,port
    source_cidr_set: HashSet  # KUBE-LOAD-BALANCER-SOURCE-CIDR hash:ip,port,net
    nat: NatRules
    sets: SetTables

    @property
    def virtual_servers(self) -> int:
        return int(self.vs_addr.shape[0])

    @property
    def real_servers(self) -> int:
        counts = np.diff(self.ep_ptr)
        return int(counts[self.vs_service].sum()) if self.vs_service.size else 0

    @property
    def iptables_rules(self) -> int:
        """nat rules kube-proxy writes in the modelled chains (:func:`build_nat_rules`)."""
        return self.nat.rules

    @property
    def iptables_chains(self) -> int:
        """Modelled nat chains: PREROUTING, POSTROUTING and the 7 KUBE-* chains."""
        return self.nat.chains

    def svc_chain_lengths(self) -> np.ndarray:
        """Virtual servers per service-table bucket (int64[2^svc_bits])."""
        return np.bincount(
            _svc_buckets(self.vs_proto, self.vs_addr, self.vs_port, self.fold, self.svc_bits,
                         self.resizable, self.svc_seed),
            minlength=1 << self.svc_bits,
        )


def virtual_servers(cluster: Cluster) -> dict[str, np.ndarray]:
    """kube-proxy's virtual servers in insertion order (spec B.2): addr, port, proto, service."""
    n_ports = cluster.n_ports
    psvc = np.repeat(np.arange(cluster.n_services), np.diff(cluster.port_ptr))
    rank = np.empty(n_ports, dtype=np.int64)
    rank[cluster.port_order] = np.arange(n_ports)
    parts = []  # (rank, category, sub, port index, addr)
    parts.append((rank, np.zeros(n_ports, np.int64), np.zeros(n_ports, np.int64),
                  np.arange(n_ports), cluster.svc_cluster_ip[psvc].astype(np.int64)))
    for cat, ptr, ips in ((1, cluster.extip_ptr, cluster.extip_ip), (2, cluster.lb_ptr,
                                                                      cluster.lb_ip)):
        counts = np.diff(ptr)[psvc]
        pidx = np.repeat(np.arange(n_ports), counts)
        start = ptr[psvc][pidx]
        sub = np.arange(pidx.shape[0]) - np.repeat(np.cumsum(counts) - counts, counts)
        parts.append((rank[pidx], np.full(pidx.shape[0], cat), sub, pidx,
                      ips[start + sub].astype(np.int64)))
    has_np = np.nonzero(cluster.port_nodeport)[0]
    k = cluster.node_ips.shape[0]
    pidx = np.repeat(has_np, k)
    sub = np.tile(np.arange(k), has_np.shape[0])
    parts.append((rank[pidx], np.full(pidx.shape[0], 3), sub, pidx,
                  cluster.node_ips[sub].astype(np.int64)))
    r, cat, sub, pidx, addr = (np.concatenate(x) for x in zip(*parts, strict=True))
    order = np.lexsort((sub, cat, r))
    pidx, cat, addr = pidx[order], cat[order], addr[order]
    port = np.where(cat == 3, cluster.port_nodeport[pidx], cluster.port_port[pidx])
    return {
        "addr": addr,
        "port": port.astype(np.int64),
        "proto": cluster.port_proto[pidx].astype(np.int64),
        "service": psvc[pidx].astype(np.int64),
        "target": cluster.port_target[pidx].astype(np.int64),
        "category": cat.astype(np.int64),
    }


def build_tables(
    cluster: Cluster,
    *,
    svc_bits: int = SVC_TAB_BITS,
    svc_table: str = "fixed",
    netns_ptr: int = DEFAULT_NETNS_PTR,
    fwmark_services: int = 0,
    seed: int = 0,
) -> IpvsTables:
    """Program ``cluster`` into IPVS and ipsets as kube-proxy's ipvs mode does (spec B.2)."""
    if svc_table not in ("fixed", "resizable"):
        raise ValueError(f"svc_table: expected 'fixed' or 'resizable', got {svc_table!r}")
    if svc_table == "fixed" and not 1 <= svc_bits <= 20:
        raise ValueError(f"svc_bits: expected 1..20, got {svc_bits}")
    rng = np.random.default_rng(seed)
    vs = virtual_servers(cluster)
    n_vs = vs["addr"].shape[0]
    fold = (netns_ptr >> 8) & M32
    resizable = svc_table == "resizable"
    svc_seed = int(rng.integers(0, 2**32))
    if resizable:
        svc_bits = RESIZE_MIN_BITS
        while n_vs > 2 * (1 << svc_bits) and svc_bits < RESIZE_MAX_BITS:
            svc_bits += 1
    buckets = _svc_buckets(vs["proto"], vs["addr"], vs["port"], fold, svc_bits, resizable,
                           svc_seed)
    svc_head, svc_next = _chain_insert(buckets, 1 << svc_bits)
    fwm_mark = np.arange(1, fwmark_services + 1, dtype=np.int64)
    fwm_head, fwm_next = _chain_insert(
        np.array([_fwm_hashkey(m, fold, svc_bits) for m in fwm_mark], dtype=np.int64),
        1 << svc_bits,
    )
    local = np.unique(np.concatenate([cluster.node_ips.astype(np.int64),
                                      vs["addr"][vs["category"] < 3]]))
    set_seed = int(rng.integers(0, 2**32))

    def ipport(mask):
        return np.stack([vs["addr"][mask], (vs["port"][mask] << 8) | vs["proto"][mask],
                         np.zeros(int(mask.sum()), np.int64)], axis=1)

    cat = vs["category"]
    # KUBE-LOOP-BACK: (endpoint ip, target port + proto, endpoint ip) per endpoint and port.
    psvc = np.repeat(np.arange(cluster.n_services), np.diff(cluster.port_ptr))
    ep_counts = np.diff(cluster.ep_ptr)[psvc]
    lp_port = np.repeat(np.arange(cluster.n_ports), ep_counts)
    lp_ep = (np.repeat(cluster.ep_ptr[psvc], ep_counts)
             + np.arange(lp_port.shape[0]) - np.repeat(np.cumsum(ep_counts) - ep_counts, ep_counts))
    ep_ip = cluster.ep_ip.astype(np.int64)
    loop_keys = np.stack([ep_ip[lp_ep],
                          (cluster.port_target[lp_port].astype(np.int64) << 8)
                          | cluster.port_proto[lp_port], ep_ip[lp_ep]], axis=1)
    bitmap = np.zeros((2, 65536), dtype=np.bool_)
    np_ports = cluster.port_nodeport > 0
    is_udp = (cluster.port_proto == PROTO_UDP).astype(np.int64)
    bitmap[is_udp[np_ports], cluster.port_nodeport[np_ports].astype(np.int64)] = True
    pod_net, pod_mask = cluster.cluster_cidr
    # LB IPs with loadBalancerSourceRanges: KUBE-LOAD-BALANCER-FW and -SOURCE-CIDR
    n_ranges = np.diff(cluster.src_ptr)[vs["service"]]
    fw = (cat == 2) & (n_ranges > 0)
    fw_idx = np.nonzero(fw)[0]
    rep = np.repeat(fw_idx, n_ranges[fw_idx])
    rsub = (np.arange(rep.shape[0])
            - np.repeat(np.cumsum(n_ranges[fw_idx]) - n_ranges[fw_idx], n_ranges[fw_idx]))
    rix = cluster.src_ptr[vs["service"][rep]] + rsub
    r_mask = cluster.src_mask[rix].astype(np.int64)
    cidr_keys = np.stack([vs["addr"][rep], (vs["port"][rep] << 8) | vs["proto"][rep],
                          cluster.src_net[rix].astype(np.int64) & r_mask], axis=1)
    cidr_masks = np.unique(r_mask)[::-1]  # longest prefix first (ipset hash:net order)
    sets = [build_hash_set(ipport(cat == 0), 2, set_seed),
            build_hash_set(ipport(cat == 1), 2, set_seed + 1),
            build_hash_set(ipport(cat == 2), 2, set_seed + 2),
            build_hash_set(ipport(fw), 2, set_seed + 4),
            build_hash_set(loop_keys, 3, set_seed + 3),
            build_hash_set(cidr_keys, 3, set_seed + 5)]
    nat = build_nat_rules(int(pod_net), int(pod_mask), sets[S_EXTERNAL_IP].elements > 0,
                          sets[S_LOAD_BALANCER].elements > 0,
                          sets[S_LOAD_BALANCER_FW].elements > 0)
    return IpvsTables(
        svc_bits=svc_bits, resizable=resizable, svc_seed=svc_seed, fold=fold,
        svc_head=svc_head, svc_next=svc_next, vs_addr=vs["addr"], vs_port=vs["port"],
        vs_proto=vs["proto"], vs_service=vs["service"], vs_target=vs["target"],
        fwm_head=fwm_head, fwm_next=fwm_next, fwm_mark=fwm_mark,
        fwm_service=np.zeros(fwmark_services, dtype=np.int64),
        ep_ptr=cluster.ep_ptr, ep_ip=ep_ip, local_addrs=local,
        pod_net=int(pod_net), pod_mask=int(pod_mask),
        cluster_ip_set=sets[S_CLUSTER_IP], external_ip_set=sets[S_EXTERNAL_IP],
        lb_set=sets[S_LOAD_BALANCER], loopback_set=sets[S_LOOP_BACK],
        nodeport_bitmap=bitmap, lb_fw_set=sets[S_LOAD_BALANCER_FW],
        source_cidr_set=sets[S_SOURCE_CIDR], nat=nat,
        sets=build_set_tables(sets, bitmap, cidr_masks),
    )


# --------------------------------------------------------------------------- connection table
@dataclass(frozen=True)
class ConnTable:
    """IPVS connection table with live connections (spec A.2)."""

    bits: int
    rnd: int
    fold: int
    little_endian: bool
    head: np.ndarray  # int64[2^bits]
    nxt: np.ndarray  # int64[L]
    caddr: np.ndarray
    cport: np.ndarray
    proto: np.ndarray
    vaddr: np.ndarray
    vport: np.ndarray

    @property
    def entries(self) -> int:
        return int(self.caddr.shape[0])


def build_conn_table(
    tables: IpvsTables | None,
    live_connections: int,
    *,
    conn_bits: int = CONN_TAB_BITS,
    netns_ptr: int = DEFAULT_NETNS_PTR,
    little_endian: bool = True,
    client_net: int = 0x0A800000,
    client_bits: int = 22,
    seed: int = 0,
) -> ConnTable:
    """Fill the connection table with ``live_connections`` random client flows.

    Clients: addresses uniform in ``client_net``/``32-client_bits`` (default 10.128.0.0/10, the
    pod CIDR), ports uniform in 1024..65535, TCP, each to a virtual server drawn uniformly
    (or a fixed 10.96.0.1:80 when ``tables`` is None). Duplicated flow keys are allowed.
    """
    if not 8 <= conn_bits <= CONN_TAB_MAX_BITS:
        raise ValueError(f"conn_bits: expected 8..{CONN_TAB_MAX_BITS}, got {conn_bits}")
    if live_connections < 0:
        raise ValueError(f"live_connections: expected >= 0, got {live_connections}")
    rng = np.random.default_rng(seed)
    rnd = int(rng.integers(0, 2**32))
    caddr = client_net + rng.integers(1, 1 << client_bits, size=live_connections)
    cport = rng.integers(1024, 65536, size=live_connections)
    proto = np.full(live_connections, PROTO_TCP, dtype=np.int64)
    if tables is not None and tables.virtual_servers:
        v = rng.integers(0, tables.virtual_servers, size=live_connections)
        vaddr, vport = tables.vs_addr[v], tables.vs_port[v]
    else:
        vaddr = np.full(live_connections, 0x0A600001, dtype=np.int64)
        vport = np.full(live_connections, 80, dtype=np.int64)
    fold = (netns_ptr >> 8) & M32
    head, nxt = _chain_insert(
        _conn_buckets(caddr, cport, proto, rnd, fold, conn_bits, little_endian), 1 << conn_bits
    )
    # One 64-byte row per connection (next, caddr, cport, proto, vaddr, vport), like one
    # struct ip_vs_conn: a chain walk touches one cache line per node. Fields are views.
    rows = np.zeros((live_connections, 8), dtype=np.int64)
    for col, arr in enumerate((nxt, caddr, cport, proto, vaddr, vport)):
        rows[:, col] = arr
    return ConnTable(conn_bits, rnd, fold, little_endian, head, rows[:, 0], rows[:, 1],
                     rows[:, 2], rows[:, 3], rows[:, 4], rows[:, 5])


@njit(cache=True)
def _conn_in_get(head, nxt, caddr, cport, cproto, vaddr, vport, rnd, fold, bits, le,
                 a, p, pr, va, vp):
    """``__ip_vs_conn_in_get``: return (index or -1, probes)."""
    i = head[_conn_hashkey(a, p, pr, rnd, fold, bits, le)]
    probes = 1
    while i >= 0:
        probes += 1
        if (cport[i] == p and vport[i] == vp and caddr[i] == a and vaddr[i] == va
                and cproto[i] == pr):
            return i, probes
        i = nxt[i]
    return -1, probes


@njit(cache=True)
def _established(head, nxt, caddr, cport, cproto, vaddr, vport, rnd, fold, bits, le, n, seed):
    np.random.seed(seed)
    probes = np.empty(n, dtype=np.int64)
    live = caddr.shape[0]
    for k in range(n):
        j = np.random.randint(0, live)
        _, probes[k] = _conn_in_get(head, nxt, caddr, cport, cproto, vaddr, vport, rnd, fold,
                                    bits, le, caddr[j], cport[j], cproto[j], vaddr[j], vport[j])
    return probes


def established_probes(conn: ConnTable, n_packets: int, seed: int) -> np.ndarray:
    """Probes of ``n_packets`` established packets of live connections drawn uniformly."""
    if conn.entries == 0:
        raise ValueError("live_connections: expected >= 1 for established packets, got 0")
    return _established(conn.head, conn.nxt, conn.caddr, conn.cport, conn.proto, conn.vaddr,
                        conn.vport, conn.rnd, conn.fold, conn.bits, conn.little_endian,
                        n_packets, seed)


# --------------------------------------------------------------------------- first packets
@njit(cache=True)
def _is_local(local, addr):
    i = np.searchsorted(local, addr)
    return i < local.shape[0] and local[i] == addr


@njit(cache=True)
def _svc_find(svc_head, svc_next, vs_addr, vs_port, vs_proto, fold, bits, resizable, seed,
              fwm_head, fwm_next, fwm_mark, n_ftp, n_port0, mark, proto, addr, port):
    """``ip_vs_service_find`` (spec A.1 lookup order): return (virtual server or -1, probes)."""
    probes = 0
    if mark != 0 and fwm_mark.shape[0] > 0:
        i = fwm_head[_fwm_hashkey(mark, fold, bits)]
        probes += 1
        while i >= 0:
            probes += 1
            if fwm_mark[i] == mark:
                return -2 - i, probes
            i = fwm_next[i]
    ports = (port, 21, 0)
    for t in range(3):
        if t == 1 and not (n_ftp > 0 and proto == PROTO_TCP and (port == 20 or port >= 1024)):
            continue
        if t == 2 and n_port0 == 0:
            continue
        p = ports[t]
        if resizable:
            i = svc_head[_svc_hashkey_resizable(proto, addr, p, fold, bits, seed)]
        else:
            i = svc_head[_svc_hashkey(proto, addr, p, fold, bits)]
        probes += 1
        while i >= 0:
            probes += 1
            if vs_addr[i] == addr and vs_port[i] == p and vs_proto[i] == proto:
                return i, probes
            i = svc_next[i]
    return -1, probes


# --------------------------------------------------------------------------- nat rules (B.2)
# chains
C_PREROUTING, C_POSTROUTING, C_SERVICES, C_MARK_MASQ, C_NODE_PORT = 0, 1, 2, 3, 4
C_LOAD_BALANCER, C_FIREWALL, C_MARK_DROP, C_KUBE_POSTROUTING = 5, 6, 7, 8
CHAIN_NAMES = ("PREROUTING", "POSTROUTING", "KUBE-SERVICES", "KUBE-MARK-MASQ", "KUBE-NODE-PORT",
               "KUBE-LOAD-BALANCER", "KUBE-FIREWALL", "KUBE-MARK-DROP", "KUBE-POSTROUTING")
N_BUILTIN = 2
# ipsets (index into the set tables); bitmap:port sets are S_NODE_PORT_TCP / _UDP
S_CLUSTER_IP, S_EXTERNAL_IP, S_LOAD_BALANCER, S_LOAD_BALANCER_FW = 0, 1, 2, 3
S_LOOP_BACK, S_SOURCE_CIDR, S_NODE_PORT_TCP, S_NODE_PORT_UDP = 4, 5, 6, 7
SET_NAMES = ("KUBE-CLUSTER-IP", "KUBE-EXTERNAL-IP", "KUBE-LOAD-BALANCER",
             "KUBE-LOAD-BALANCER-FW", "KUBE-LOOP-BACK", "KUBE-LOAD-BALANCER-SOURCE-CIDR",
             "KUBE-NODE-PORT-TCP", "KUBE-NODE-PORT-UDP")
# extension matches
X_NONE, X_SET, X_ADDRTYPE_LOCAL, X_MARK = 0, 1, 2, 3
# targets
T_JUMP, T_RETURN, T_ACCEPT, T_MARK_OR, T_MARK_XOR, T_MASQUERADE = 0, 1, 2, 3, 4, 5
MARK_DROP = 0x8000
MAX_X = 2


@dataclass(frozen=True)
class NatRules:
    """kube-proxy ipvs mode's nat chains as flat rule arrays (spec B.2).

    Rules of chain ``c`` are ``chain_ptr[c]:chain_ptr[c+1]``. Per rule: IP match ``src_net``/
    ``src_mask`` (mask 0 = any source; ``src_inv`` negates) and ``ip_proto`` (0 = any), up to
    ``MAX_X`` extension matches ``x_kind``/``x_arg``/``x_inv`` (X_SET: ipset index S_*;
    X_ADDRTYPE_LOCAL; X_MARK: ``--mark arg/arg``), target ``t_kind``/``t_arg`` (T_JUMP: chain;
    T_MARK_OR / T_MARK_XOR: mark bits).
    """

    chain_ptr: np.ndarray
    src_net: np.ndarray
    src_mask: np.ndarray
    src_inv: np.ndarray
    ip_proto: np.ndarray
    x_kind: np.ndarray  # int64[R, MAX_X]
    x_arg: np.ndarray
    x_inv: np.ndarray
    t_kind: np.ndarray
    t_arg: np.ndarray

    @property
    def rules(self) -> int:
        return int(self.t_kind.shape[0])

    @property
    def chains(self) -> int:
        return int(self.chain_ptr.shape[0] - 1)

    def args(self):
        return (self.chain_ptr, self.src_net, self.src_mask, self.src_inv, self.ip_proto,
                self.x_kind, self.x_arg, self.x_inv, self.t_kind, self.t_arg)


def build_nat_rules(pod_net: int, pod_mask: int, has_ext: bool, has_lb: bool,
                    has_lb_fw: bool) -> NatRules:
    """The constant nat rules kube-proxy's ipvs proxier writes (``writeIptablesRules``,
    ``acceptIPVSTraffic``), in order; rules on an empty ipset are left out as kube-proxy does."""
    chains: list[list[tuple]] = [[] for _ in CHAIN_NAMES]

    def add(c, target, targ=0, xs=(), src=(0, 0, False), proto=0):
        chains[c].append((src, proto, xs, target, targ))

    add(C_PREROUTING, T_JUMP, C_SERVICES)
    add(C_POSTROUTING, T_JUMP, C_KUBE_POSTROUTING)
    if has_lb:
        add(C_SERVICES, T_JUMP, C_LOAD_BALANCER, xs=((X_SET, S_LOAD_BALANCER, False),))
    add(C_SERVICES, T_JUMP, C_MARK_MASQ, xs=((X_SET, S_CLUSTER_IP, False),),
        src=(pod_net, pod_mask, True))
    if has_ext:
        add(C_SERVICES, T_JUMP, C_MARK_MASQ, xs=((X_SET, S_EXTERNAL_IP, False),))
        add(C_SERVICES, T_ACCEPT, xs=((X_SET, S_EXTERNAL_IP, False),))
    add(C_SERVICES, T_JUMP, C_NODE_PORT, xs=((X_ADDRTYPE_LOCAL, 0, False),))
    add(C_SERVICES, T_ACCEPT, xs=((X_SET, S_CLUSTER_IP, False),))
    if has_lb:
        add(C_SERVICES, T_ACCEPT, xs=((X_SET, S_LOAD_BALANCER, False),))
    if has_lb_fw:
        add(C_LOAD_BALANCER, T_JUMP, C_FIREWALL, xs=((X_SET, S_LOAD_BALANCER_FW, False),))
        add(C_FIREWALL, T_RETURN, xs=((X_SET, S_SOURCE_CIDR, False),))
    add(C_LOAD_BALANCER, T_JUMP, C_MARK_MASQ)
    add(C_FIREWALL, T_JUMP, C_MARK_DROP)
    add(C_MARK_DROP, T_MARK_OR, MARK_DROP)
    add(C_NODE_PORT, T_JUMP, C_MARK_MASQ, xs=((X_SET, S_NODE_PORT_TCP, False),),
        proto=PROTO_TCP)
    add(C_NODE_PORT, T_JUMP, C_MARK_MASQ, xs=((X_SET, S_NODE_PORT_UDP, False),),
        proto=PROTO_UDP)
    add(C_MARK_MASQ, T_MARK_OR, MASQ_MARK)
    add(C_KUBE_POSTROUTING, T_MASQUERADE, xs=((X_SET, S_LOOP_BACK, False),))
    add(C_KUBE_POSTROUTING, T_RETURN, xs=((X_MARK, MASQ_MARK, True),))
    add(C_KUBE_POSTROUTING, T_MARK_XOR, MASQ_MARK)
    add(C_KUBE_POSTROUTING, T_MASQUERADE)
    flat = [r for ch in chains for r in ch]
    n = len(flat)
    x_kind = np.zeros((n, MAX_X), np.int64)
    x_arg = np.zeros((n, MAX_X), np.int64)
    x_inv = np.zeros((n, MAX_X), np.bool_)
    for i, (_src, _proto, xs, _t, _a) in enumerate(flat):
        for j, (kind, arg, inv) in enumerate(xs):
            x_kind[i, j], x_arg[i, j], x_inv[i, j] = kind, arg, inv
    return NatRules(
        chain_ptr=np.concatenate([[0], np.cumsum([len(ch) for ch in chains])]).astype(np.int64),
        src_net=np.array([r[0][0] for r in flat], np.int64),
        src_mask=np.array([r[0][1] for r in flat], np.int64),
        src_inv=np.array([r[0][2] for r in flat], np.bool_),
        ip_proto=np.array([r[1] for r in flat], np.int64),
        x_kind=x_kind, x_arg=x_arg, x_inv=x_inv,
        t_kind=np.array([r[3] for r in flat], np.int64),
        t_arg=np.array([r[4] for r in flat], np.int64),
    )


@dataclass(frozen=True)
class SetTables:
    """Every hash:* ipset of kube-proxy's ipvs mode in one set of flat arrays (set ``s``: keys
    ``kptr[s]:kptr[s+1]``, buckets ``hptr[s]:hptr[s+1]``, global element indices), plus the
    bitmap:port NodePort sets and the source-range prefix masks of
    KUBE-LOAD-BALANCER-SOURCE-CIDR."""

    keys: np.ndarray
    nxt: np.ndarray
    head: np.ndarray
    kptr: np.ndarray
    hptr: np.ndarray
    nwords: np.ndarray
    seeds: np.ndarray
    bits: np.ndarray
    nodeport_bitmap: np.ndarray  # bool[2, 65536]
    cidr_masks: np.ndarray  # int64: distinct masks in SOURCE-CIDR, longest prefix first

    def args(self):
        return (self.keys, self.nxt, self.head, self.kptr, self.hptr, self.nwords, self.seeds,
                self.bits, self.nodeport_bitmap, self.cidr_masks)


def build_set_tables(sets: list[HashSet], nodeport_bitmap: np.ndarray,
                     cidr_masks: np.ndarray) -> SetTables:
    kptr = np.concatenate([[0], np.cumsum([s.elements for s in sets])]).astype(np.int64)
    hptr = np.concatenate([[0], np.cumsum([1 << s.bits for s in sets])]).astype(np.int64)
    keys = np.concatenate([s.keys for s in sets]).astype(np.int64).reshape(-1, 3)
    nxt = np.concatenate([np.where(s.nxt >= 0, s.nxt + kptr[i], -1)
                          for i, s in enumerate(sets)]).astype(np.int64)
    head = np.concatenate([np.where(s.head >= 0, s.head + kptr[i], -1)
                           for i, s in enumerate(sets)]).astype(np.int64)
    return SetTables(keys, nxt, head, kptr, hptr,
                     np.array([s.nwords for s in sets], np.int64),
                     np.array([s.seed for s in sets], np.int64),
                     np.array([s.bits for s in sets], np.int64),
                     nodeport_bitmap, np.ascontiguousarray(cidr_masks, dtype=np.int64))


@njit(cache=True)
def _mset_lookup(keys, nxt, head, kptr, hptr, nwords, seeds, bits, s, w0, w1, w2):
    """Lookup in hash set ``s``: (hit, probes)."""
    i = head[hptr[s] + (jhash_nwords(w0, w1, w2, nwords[s], seeds[s]) & ((1 << bits[s]) - 1))]
    probes = 1
    while i >= 0:
        probes += 1
        if keys[i, 0] == w0 and keys[i, 1] == w1 and keys[i, 2] == w2:
            return True, probes
        i = nxt[i]
    return False, probes


@njit(cache=True)
def _set_match(keys, nxt, head, kptr, hptr, nwords, seeds, bits, bitmap, cidr_masks, s,
               saddr, daddr, dport, proto):
    """ipset ``--match-set`` with kube-proxy's directions: (hit, probes)."""
    if s == S_NODE_PORT_TCP or s == S_NODE_PORT_UDP:  # bitmap:port, dst
        want = PROTO_TCP if s == S_NODE_PORT_TCP else PROTO_UDP
        return proto == want and bitmap[s - S_NODE_PORT_TCP, dport], 1
    key1 = (dport << 8) | proto
    if s == S_LOOP_BACK:  # hash:ip,port,ip dst,dst,src
        return _mset_lookup(keys, nxt, head, kptr, hptr, nwords, seeds, bits, s, daddr, key1,
                            saddr)
    if s == S_SOURCE_CIDR:  # hash:ip,port,net dst,dst,src: one lookup per stored prefix
        probes = 0
        for j in range(cidr_masks.shape[0]):
            hit, q = _mset_lookup(keys, nxt, head, kptr, hptr, nwords, seeds, bits, s, daddr,
                                  key1, saddr & cidr_masks[j])
            probes += q
            if hit:
                return True, probes
        return False, max(probes, 1)
    return _mset_lookup(keys, nxt, head, kptr, hptr, nwords, seeds, bits, s, daddr, key1,
                        np.int64(0))


@njit(cache=True)
def _walk(start_chain, chain_ptr, src_net, src_mask, src_inv, ip_proto, x_kind, x_arg, x_inv,
          t_kind, t_arg, keys, nxt, head, kptr, hptr, nwords, seeds, bits, bitmap, cidr_masks,
          local, saddr, daddr, dport, proto, mark):
    """Traverse a builtin nat chain rule by rule (spec C.1): every entry evaluated counts as a
    rule, including the implicit RETURN ending a user chain and a builtin chain's policy entry.

    Returns (verdict: 0 policy ACCEPT / T_ACCEPT / T_MASQUERADE, mark, rules, extension
    matches, jumps, set probes).
    """
    stack = np.empty(8, dtype=np.int64)
    sp = 0
    c = start_chain
    pos = chain_ptr[c]
    rules = 0
    matches = 0
    jumps = 0
    probes = 0
    while True:
        rules += 1
        if pos == chain_ptr[c + 1]:  # implicit RETURN / builtin policy
            if sp == 0:
                return 0, mark, rules, matches, jumps, probes
            sp -= 1
            pos = stack[sp] + 1
            c = 0
            while chain_ptr[c + 1] <= stack[sp]:
                c += 1
            continue
        ok = True
        if src_mask[pos] != 0:
            ok = ((saddr & src_mask[pos]) == src_net[pos]) != src_inv[pos]
        if ok and ip_proto[pos] != 0:
            ok = proto == ip_proto[pos]
        if ok:
            for j in range(MAX_X):
                kind = x_kind[pos, j]
                if kind == X_NONE:
                    break
                matches += 1
                if kind == X_SET:
                    hit, q = _set_match(keys, nxt, head, kptr, hptr, nwords, seeds, bits, bitmap,
                                        cidr_masks, x_arg[pos, j], saddr, daddr, dport, proto)
                    probes += q
                elif kind == X_ADDRTYPE_LOCAL:
                    hit = _is_local(local, daddr)
                else:
                    hit = (mark & x_arg[pos, j]) == x_arg[pos, j]
                if hit == x_inv[pos, j]:
                    ok = False
                    break
        if not ok:
            pos += 1
            continue
        t = t_kind[pos]
        if t == T_JUMP:
            jumps += 1
            stack[sp] = pos
            sp += 1
            c = t_arg[pos]
            pos = chain_ptr[c]
        elif t == T_RETURN:
            if sp == 0:
                return 0, mark, rules, matches, jumps, probes
            sp -= 1
            pos = stack[sp] + 1
            c = 0
            while chain_ptr[c + 1] <= stack[sp]:
                c += 1
        elif t == T_MARK_OR:
            mark |= t_arg[pos]
            pos += 1
        elif t == T_MARK_XOR:
            mark ^= t_arg[pos]
            pos += 1
        else:
            return t, mark, rules, matches, jumps, probes


@njit(cache=True)
def _first_packets(
    saddr, sport, daddr, dport, proto, mark, choice, use_choice,
    svc_head, svc_next, vs_addr, vs_port, vs_proto, vs_service, vs_target, fold, svc_bits,
    resizable, svc_seed, fwm_head, fwm_next, fwm_mark, ep_ptr, ep_ip, local,
    chain_ptr, src_net, src_mask, src_inv, ip_proto, x_kind, x_arg, x_inv, t_kind, t_arg,
    keys, nxt, head, kptr, hptr, nwords, seeds, bits, bitmap, cidr_masks,
    c_head, c_next, c_caddr, c_cport, c_proto, c_vaddr, c_vport, c_rnd, c_fold, c_bits, c_le,
):
    n = saddr.shape[0]
    rules = np.zeros(n, dtype=np.int64)
    matches = np.zeros(n, dtype=np.int64)
    jumps = np.zeros(n, dtype=np.int64)
    set_probes = np.zeros(n, dtype=np.int64)
    svc_probes = np.zeros(n, dtype=np.int64)
    conn_probes = np.zeros(n, dtype=np.int64)
    sched = np.zeros(n, dtype=np.int64)
    vs_hit = np.full(n, -1, dtype=np.int64)
    dest = np.full(n, -1, dtype=np.int64)
    dropped = np.zeros(n, dtype=np.bool_)
    rr = np.full(vs_addr.shape[0], -1, dtype=np.int64)
    for k in range(n):
        a, p, pr = daddr[k], dport[k], proto[k]
        _, mk, r, m, jp, sp = _walk(np.int64(C_PREROUTING), chain_ptr, src_net, src_mask, src_inv,
                                    ip_proto, x_kind, x_arg, x_inv, t_kind, t_arg, keys, nxt,
                                    head, kptr, hptr, nwords, seeds, bits, bitmap, cidr_masks,
                                    local, saddr[k], a, p, pr, mark[k])
        if mk & MARK_DROP:  # KUBE-MARK-DROP: the filter table drops it before LOCAL_IN
            dropped[k] = True
        else:
            # IPVS at LOCAL_IN (only local destinations reach it)
            routed = not _is_local(local, a)
            if not routed:
                _, cp = _conn_in_get(c_head, c_next, c_caddr, c_cport, c_proto, c_vaddr,
                                     c_vport, c_rnd, c_fold, c_bits, c_le, saddr[k], sport[k],
                                     pr, a, p)
                conn_probes[k] = cp
                v, vp = _svc_find(svc_head, svc_next, vs_addr, vs_port, vs_proto, fold,
                                  svc_bits, resizable, svc_seed, fwm_head, fwm_next, fwm_mark,
                                  0, 0, mark[k], pr, a, p)
                svc_probes[k] = vp
                if v >= 0:
                    vs_hit[k] = v
                    s = vs_service[v]
                    cnt = ep_ptr[s + 1] - ep_ptr[s]
                    if use_choice:  # the caller's scheduler decided (-1: no destination)
                        if choice[k] >= 0:
                            dest[k] = choice[k]
                    elif cnt > 0:
                        # rr over weight-1 destinations in endpoint order: one step
                        rr[v] = (rr[v] + 1) % cnt
                        dest[k] = ep_ptr[s] + rr[v]
                        sched[k] = 1
                    if dest[k] >= 0:
                        conn_probes[k] += 1  # ip_vs_conn_new: hash + insert at bucket head
                        routed = True
            if routed:  # nat POSTROUTING sees the packet after IPVS' DNAT
                da, dp = a, p
                if dest[k] >= 0:
                    da, dp = ep_ip[dest[k]], vs_target[vs_hit[k]]
                _, _, r2, m2, jp2, sp2 = _walk(np.int64(C_POSTROUTING), chain_ptr, src_net,
                                               src_mask,
                                               src_inv, ip_proto, x_kind, x_arg, x_inv, t_kind,
                                               t_arg, keys, nxt, head, kptr, hptr, nwords,
                                               seeds, bits, bitmap, cidr_masks, local,
                                               saddr[k], da, dp, pr, mk)
                r += r2
                m += m2
                jp += jp2
                sp += sp2
        rules[k] = r
        matches[k] = m
        jumps[k] = jp
        set_probes[k] = sp
    return (rules, matches, jumps, set_probes, svc_probes, conn_probes, sched, vs_hit, dest,
            dropped)


def first_packets(
    tables: IpvsTables,
    conn: ConnTable,
    saddr: np.ndarray,
    sport: np.ndarray,
    daddr: np.ndarray,
    dport: np.ndarray,
    proto: np.ndarray,
    mark: np.ndarray | None = None,
    choice: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Count the work of the first packet of each new connection in ipvs mode.

    ``choice`` (optional, int64 per packet): the endpoint index a scheduler picked for packets
    that hit a virtual server (-1 = no destination available, the packet is not forwarded);
    scheduler work is then the caller's and ``sched_steps`` is 0. Without it the module's own
    round robin picks (module docstring).

    Returns per-packet int64 arrays: ``rules`` (nat entries evaluated by :func:`_walk` in
    PREROUTING and, for routed or IPVS-forwarded packets, POSTROUTING), ``matches`` (extension
    matches evaluated), ``jumps``, ``set_probes`` (ipset), ``svc_probes`` (service table),
    ``conn_probes`` (connection-table miss walk + insert), ``sched_steps``, ``vs`` (virtual
    server hit or -1), ``dest`` (endpoint index or -1) and bool ``dropped`` (KUBE-MARK-DROP).
    """
    arrs = [np.ascontiguousarray(x, dtype=np.int64) for x in (saddr, sport, daddr, dport, proto)]
    n = arrs[0].shape[0]
    if any(x.shape != (n,) for x in arrs):
        raise ValueError("packets: expected 1-D arrays of one length")
    mk = np.zeros(n, np.int64) if mark is None else np.ascontiguousarray(mark, dtype=np.int64)
    ch = np.full(n, -1, np.int64) if choice is None else np.ascontiguousarray(choice,
                                                                             dtype=np.int64)
    if ch.shape != (n,):
        raise ValueError("choice: expected one endpoint index (or -1) per packet")
    t = tables
    out = _first_packets(
        *arrs, mk, ch, choice is not None, t.svc_head, t.svc_next, t.vs_addr, t.vs_port,
        t.vs_proto, t.vs_service, t.vs_target, t.fold, t.svc_bits, t.resizable, t.svc_seed,
        t.fwm_head, t.fwm_next, t.fwm_mark, t.ep_ptr, t.ep_ip, t.local_addrs, *t.nat.args(),
        *t.sets.args(),
        conn.head, conn.nxt, conn.caddr, conn.cport, conn.proto, conn.vaddr, conn.vport,
        conn.rnd, conn.fold, conn.bits, conn.little_endian,
    )
    names = ("rules", "matches", "jumps", "set_probes", "svc_probes", "conn_probes",
             "sched_steps", "vs", "dest", "dropped")
    return dict(zip(names, out, strict=True))


@njit(cache=True)
def _svc_lookup_many(svc_head, svc_next, vs_addr, vs_port, vs_proto, fold, bits, resizable,
                     seed, fwm_head, fwm_next, fwm_mark, daddr, dport, proto):
    n = daddr.shape[0]
    hit = np.empty(n, dtype=np.int64)
    probes = np.empty(n, dtype=np.int64)
    for k in range(n):
        hit[k], probes[k] = _svc_find(svc_head, svc_next, vs_addr, vs_port, vs_proto, fold, bits,
                                      resizable, seed, fwm_head, fwm_next, fwm_mark, 0, 0,
                                      np.int64(0),
                                      proto[k], daddr[k], dport[k])
    return hit, probes


def service_lookups(tables: IpvsTables, daddr: np.ndarray, dport: np.ndarray,
                    proto: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Service-table lookups only: (virtual server or -1, probes) per packet."""
    t = tables
    return _svc_lookup_many(
        t.svc_head, t.svc_next, t.vs_addr, t.vs_port, t.vs_proto, t.fold, t.svc_bits,
        t.resizable, t.svc_seed, t.fwm_head, t.fwm_next, t.fwm_mark,
        np.ascontiguousarray(daddr, dtype=np.int64), np.ascontiguousarray(dport, dtype=np.int64),
        np.ascontiguousarray(proto, dtype=np.int64))


@njit(cache=True)
def _conn_lookup_many(head, nxt, caddr, cport, cproto, vaddr, vport, rnd, fold, bits, le,
                      a, p, pr, va, vp):
    n = a.shape[0]
    hit = np.empty(n, dtype=np.int64)
    probes = np.empty(n, dtype=np.int64)
    for k in range(n):
        hit[k], probes[k] = _conn_in_get(head, nxt, caddr, cport, cproto, vaddr, vport, rnd,
                                         fold, bits, le, a[k], p[k], pr[k], va[k], vp[k])
    return hit, probes


def conn_lookups(conn: ConnTable, caddr, cport, proto, vaddr, vport
                 ) -> tuple[np.ndarray, np.ndarray]:
    """``__ip_vs_conn_in_get`` for each packet: (connection index or -1, probes)."""
    arrs = [np.ascontiguousarray(x, dtype=np.int64) for x in (caddr, cport, proto, vaddr, vport)]
    return _conn_lookup_many(conn.head, conn.nxt, conn.caddr, conn.cport, conn.proto,
                             conn.vaddr, conn.vport, conn.rnd, conn.fold, conn.bits,
                             conn.little_endian, *arrs)
