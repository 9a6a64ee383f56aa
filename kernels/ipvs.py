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
* **Scheduling**: round robin over the Service's destinations, one step per destination
  examined (all weights are 1, so one step); see ``schedule_steps`` in the results.
* **iptables + ipset constant work** (B.2): nat PREROUTING → KUBE-SERVICES (LB set rule if any
  LB IPs, ClusterIP masquerade rule ``! -s podCIDR -m set KUBE-CLUSTER-IP dst,dst``, external-IP
  rules if any, ``addrtype LOCAL → KUBE-NODE-PORT``, ``KUBE-CLUSTER-IP → ACCEPT``), KUBE-NODE-PORT
  (bitmap:port sets KUBE-NODE-PORT-TCP/UDP), KUBE-MARK-MASQ, and nat POSTROUTING →
  KUBE-POSTROUTING (``KUBE-LOOP-BACK`` hash:ip,port,ip, mark RETURN, xor-mark, MASQUERADE).
  Every user chain ends in the kernel's implicit RETURN entry, counted as a rule. hash:ip,port
  sets are real chained tables (jhash2, 1024 buckets doubling while elements > 4 × buckets — a
  stand-in for ipset's bucket-overflow resize, unconfirmed); bitmap:port costs one probe.

Probe = one memory access of a lookup: the bucket head, then one per chain node compared. The
routing ``addrtype LOCAL`` decision is a sorted-address binary search, not counted (the fib
lookup is the same in every mode). New connections are counted as one insert probe but not kept:
the live-connection population is a steady state of ``live_connections`` entries.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from kernels.cluster import PROTO_TCP, PROTO_UDP, Cluster

M32 = 0xFFFFFFFF
JHASH_INITVAL = 0xDEADBEEF
DEFAULT_NETNS_PTR = 0xFFFF888003A4C000
"""A typical x86_64 direct-map address of ``init_net`` (any value only permutes buckets)."""
SVC_TAB_BITS = 8
CONN_TAB_BITS = 12
CONN_TAB_MAX_BITS = 20
RESIZE_MIN_BITS, RESIZE_MAX_BITS = 4, 20
IPSET_INIT_BITS = 10
IPSET_MAX_LOAD = 4
MASQ_MARK = 0x4000


# --------------------------------------------------------------------------- jhash (jhash.h)
@njit(cache=True)
def _rol32(x, k):
    return ((x << k) | (x >> (32 - k))) & M32


@njit(cache=True)
def _jhash_mix(a, b, c):
    a = (a - c) & M32
    a ^= _rol32(c, 4)
    c = (c + b) & M32
    b = (b - a) & M32
    b ^= _rol32(a, 6)
    a = (a + c) & M32
    c = (c - b) & M32
    c ^= _rol32(b, 8)
    b = (b + a) & M32
    a = (a - c) & M32
    a ^= _rol32(c, 16)
    c = (c + b) & M32
    b = (b - a) & M32
    b ^= _rol32(a, 19)
    a = (a + c) & M32
    c = (c - b) & M32
    c ^= _rol32(b, 4)
    b = (b + a) & M32
    return a, b, c


@njit(cache=True)
def _jhash_final(a, b, c):
    c ^= b
    c = (c - _rol32(b, 14)) & M32
    a ^= c
    a = (a - _rol32(c, 11)) & M32
    b ^= a
    b = (b - _rol32(a, 25)) & M32
    c ^= b
    c = (c - _rol32(b, 16)) & M32
    a ^= c
    a = (a - _rol32(c, 4)) & M32
    b ^= a
    b = (b - _rol32(a, 14)) & M32
    c ^= b
    c = (c - _rol32(b, 24)) & M32
    return c


@njit(cache=True)
def _jhash_3words(a, b, c, initval):
    iv = (initval + JHASH_INITVAL + 12) & M32
    return _jhash_final((a + iv) & M32, (b + iv) & M32, (c + iv) & M32)


@njit(cache=True)
def _jhash_words(k, n, initval):
    """jhash2(k, n, initval) over the first n words of k."""
    a = (JHASH_INITVAL + (n << 2) + initval) & M32
    b = a
    c = a
    i = 0
    while n > 3:
        a = (a + k[i]) & M32
        b = (b + k[i + 1]) & M32
        c = (c + k[i + 2]) & M32
        a, b, c = _jhash_mix(a, b, c)
        n -= 3
        i += 3
    if n == 0:
        return c
    if n == 3:
        c = (c + k[i + 2]) & M32
    if n >= 2:
        b = (b + k[i + 1]) & M32
    a = (a + k[i]) & M32
    return _jhash_final(a, b, c)


@njit(cache=True)
def _jhash_bytes(key, initval):
    """jhash(key, length, initval) over a uint8 array, reading little-endian words."""
    length = key.shape[0]
    a = (JHASH_INITVAL + length + initval) & M32
    b = a
    c = a
    i = 0
    while length > 12:
        a = (a + (key[i] | (key[i + 1] << 8) | (key[i + 2] << 16) | (key[i + 3] << 24))) & M32
        b = (b + (key[i + 4] | (key[i + 5] << 8) | (key[i + 6] << 16) | (key[i + 7] << 24))) & M32
        c = (c + (key[i + 8] | (key[i + 9] << 8) | (key[i + 10] << 16) | (key[i + 11] << 24))) & M32
        a, b, c = _jhash_mix(a, b, c)
        length -= 12
        i += 12
    if length == 0:
        return c
    for j in range(length - 1, -1, -1):
        v = np.int64(key[i + j]) << (8 * (j % 4))
        if j >= 8:
            c = (c + v) & M32
        elif j >= 4:
            b = (b + v) & M32
        else:
            a = (a + v) & M32
    return _jhash_final(a, b, c)


def jhash_3words(a: int, b: int, c: int, initval: int) -> int:
    """Linux ``jhash_3words`` (include/linux/jhash.h) on 32-bit values."""
    return int(_jhash_3words(np.int64(a & M32), np.int64(b & M32), np.int64(c & M32),
                             np.int64(initval & M32)))


def jhash_bytes(data: bytes, initval: int) -> int:
    """Linux ``jhash`` (byte-wise, little-endian word reads) = Bob Jenkins' lookup3 hashlittle."""
    return int(_jhash_bytes(np.frombuffer(data, dtype=np.uint8).astype(np.int64),
                            np.int64(initval & M32)))


# --------------------------------------------------------------------------- hashes
@njit(cache=True)
def _svc_hashkey(proto, addr, port, fold, bits):
    a = (addr ^ fold) & M32
    return (proto ^ a ^ (port >> bits) ^ port) & ((1 << bits) - 1)


@njit(cache=True)
def _svc_hashkey_resizable(proto, addr, port, fold, bits, seed):
    return _jhash_3words((addr ^ fold) & M32, port, proto, seed) & ((1 << bits) - 1)


@njit(cache=True)
def _fwm_hashkey(fwmark, fold, bits):
    return (fold ^ fwmark) & ((1 << bits) - 1)


@njit(cache=True)
def _bswap32(x):
    return ((x & 0xFF) << 24) | ((x & 0xFF00) << 8) | ((x >> 8) & 0xFF00) | ((x >> 24) & 0xFF)


@njit(cache=True)
def _bswap16(x):
    return ((x & 0xFF) << 8) | ((x >> 8) & 0xFF)


@njit(cache=True)
def _conn_hashkey(addr, port, proto, rnd, fold, bits, little_endian):
    if little_endian:
        addr = _bswap32(addr)
        port = _bswap16(port)
    return (_jhash_3words(addr, port, proto, rnd) ^ fold) & ((1 << bits) - 1)


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
        out[i] = _jhash_words(keys[i], nwords, seed) & ((1 << bits) - 1)
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


@njit(cache=True)
def _set_lookup(keys, nwords, seed, bits, head, nxt, w0, w1, w2):
    """Return (hit, probes) for the key (w0, w1, w2)."""
    tmp = np.empty(3, dtype=np.int64)
    tmp[0] = w0
    tmp[1] = w1
    tmp[2] = w2
    i = head[_jhash_words(tmp, nwords, seed) & ((1 << bits) - 1)]
    probes = 1
    while i >= 0:
        probes += 1
        if keys[i, 0] == w0 and keys[i, 1] == w1 and keys[i, 2] == w2:
            return True, probes
        i = nxt[i]
    return False, probes


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

    @property
    def virtual_servers(self) -> int:
        return int(self.vs_addr.shape[0])

    @property
    def real_servers(self) -> int:
        counts = np.diff(self.ep_ptr)
        return int(counts[self.vs_service].sum()) if self.vs_service.size else 0

    @property
    def iptables_rules(self) -> int:
        """nat rules of the modelled chains: PREROUTING 1, KUBE-SERVICES (LB 1, masquerade 1,
        external 2, addrtype 1, accept 1), KUBE-LOAD-BALANCER 1, KUBE-NODE-PORT 2,
        KUBE-MARK-MASQ 1, POSTROUTING 1, KUBE-POSTROUTING 4."""
        lb = self.lb_set.elements > 0
        ext = self.external_ip_set.elements > 0
        return int(1 + 3 + 2 * lb + 2 * ext + 2 + 1 + 1 + 4)

    @property
    def iptables_chains(self) -> int:
        """PREROUTING, POSTROUTING, KUBE-SERVICES, KUBE-NODE-PORT, KUBE-MARK-MASQ,
        KUBE-POSTROUTING (+ KUBE-LOAD-BALANCER)."""
        return 6 + int(self.lb_set.elements > 0)

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
    return IpvsTables(
        svc_bits=svc_bits, resizable=resizable, svc_seed=svc_seed, fold=fold,
        svc_head=svc_head, svc_next=svc_next, vs_addr=vs["addr"], vs_port=vs["port"],
        vs_proto=vs["proto"], vs_service=vs["service"], vs_target=vs["target"],
        fwm_head=fwm_head, fwm_next=fwm_next, fwm_mark=fwm_mark,
        fwm_service=np.zeros(fwmark_services, dtype=np.int64),
        ep_ptr=cluster.ep_ptr, ep_ip=ep_ip, local_addrs=local,
        pod_net=int(pod_net), pod_mask=int(pod_mask),
        cluster_ip_set=build_hash_set(ipport(cat == 0), 2, set_seed),
        external_ip_set=build_hash_set(ipport(cat == 1), 2, set_seed + 1),
        lb_set=build_hash_set(ipport(cat == 2), 2, set_seed + 2),
        loopback_set=build_hash_set(loop_keys, 3, set_seed + 3),
        nodeport_bitmap=bitmap,
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
    client_net: int = 0x0A400000,
    client_bits: int = 22,
    seed: int = 0,
) -> ConnTable:
    """Fill the connection table with ``live_connections`` random client flows.

    Clients: addresses uniform in ``client_net``/``32-client_bits`` (default 10.64.0.0/10, the
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


@njit(cache=True)
def _ipset(keys, nwords, seed, bits, head, nxt, w0, w1, w2):
    if keys.shape[0] == 0:
        return False, 1
    return _set_lookup(keys, nwords, seed, bits, head, nxt, w0, w1, w2)


@njit(cache=True)
def _first_packets(
    saddr, sport, daddr, dport, proto, mark,
    svc_head, svc_next, vs_addr, vs_port, vs_proto, vs_service, vs_target, fold, svc_bits,
    resizable, svc_seed, fwm_head, fwm_next, fwm_mark, ep_ptr, ep_ip, local, pod_net, pod_mask,
    ci_k, ci_w, ci_s, ci_b, ci_h, ci_n, ex_k, ex_w, ex_s, ex_b, ex_h, ex_n,
    lb_k, lb_w, lb_s, lb_b, lb_h, lb_n, lo_k, lo_w, lo_s, lo_b, lo_h, lo_n, np_bitmap,
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
    rr = np.full(vs_addr.shape[0], -1, dtype=np.int64)
    has_lb = lb_k.shape[0] > 0
    has_ext = ex_k.shape[0] > 0
    for k in range(n):
        a, p, pr = daddr[k], dport[k], proto[k]
        key1 = (p << 8) | pr
        masq = False
        r = 1  # nat PREROUTING -j KUBE-SERVICES
        m = 0
        jp = 1
        sp = 0
        # KUBE-SERVICES
        if has_lb:
            r += 1
            m += 1
            hit, pb = _ipset(lb_k, lb_w, lb_s, lb_b, lb_h, lb_n, a, key1, 0)
            sp += pb
            if hit:  # -j KUBE-LOAD-BALANCER: -j KUBE-MARK-MASQ; RETURN
                jp += 2
                r += 4
                masq = True
        r += 1  # ! -s podCIDR -m comment -m set KUBE-CLUSTER-IP dst,dst -j KUBE-MARK-MASQ
        if (saddr[k] & pod_mask) != pod_net:
            m += 2
            hit, pb = _ipset(ci_k, ci_w, ci_s, ci_b, ci_h, ci_n, a, key1, 0)
            sp += pb
            if hit:
                jp += 1
                r += 2  # KUBE-MARK-MASQ: MARK, RETURN
                masq = True
        accepted = False
        if has_ext:
            r += 2  # KUBE-EXTERNAL-IP masquerade rule, then its ACCEPT rule
            m += 2
            hit, pb = _ipset(ex_k, ex_w, ex_s, ex_b, ex_h, ex_n, a, key1, 0)
            sp += 2 * pb
            if hit:
                jp += 1
                r += 2
                masq = True
                accepted = True
        if not accepted:
            r += 1  # -m addrtype --dst-type LOCAL -j KUBE-NODE-PORT
            m += 1
            if _is_local(local, a):
                jp += 1
                r += 3  # KUBE-NODE-PORT: tcp rule, udp rule, RETURN
                if pr == PROTO_TCP or pr == PROTO_UDP:
                    m += 2
                    sp += 1
                    if np_bitmap[1 if pr == PROTO_UDP else 0, p]:
                        jp += 1
                        r += 2
                        masq = True
            r += 1  # -m set KUBE-CLUSTER-IP dst,dst -j ACCEPT
            m += 1
            hit, pb = _ipset(ci_k, ci_w, ci_s, ci_b, ci_h, ci_n, a, key1, 0)
            sp += pb
            if not hit:
                r += 1  # end of KUBE-SERVICES: implicit RETURN
        # IPVS at LOCAL_IN (only local destinations reach it)
        routed = not _is_local(local, a)
        if not routed:
            _, cp = _conn_in_get(c_head, c_next, c_caddr, c_cport, c_proto, c_vaddr, c_vport,
                                 c_rnd, c_fold, c_bits, c_le, saddr[k], sport[k], pr, a, p)
            conn_probes[k] = cp
            v, vp = _svc_find(svc_head, svc_next, vs_addr, vs_port, vs_proto, fold, svc_bits,
                              resizable, svc_seed, fwm_head, fwm_next, fwm_mark, 0, 0, mark[k],
                              pr, a, p)
            svc_probes[k] = vp
            if v >= 0:
                vs_hit[k] = v
                s = vs_service[v]
                cnt = ep_ptr[s + 1] - ep_ptr[s]
                if cnt > 0:
                    # rr: next destination after the last chosen (all weight 1): one step
                    rr[v] = (rr[v] + 1) % cnt
                    dest[k] = ep_ptr[s] + rr[v]
                    sched[k] = 1
                    conn_probes[k] += 1  # ip_vs_conn_new: hash + insert at bucket head
                    routed = True
        if routed:
            r += 3  # nat POSTROUTING -j KUBE-POSTROUTING; LOOP-BACK rule; mark RETURN rule
            jp += 1
            m += 3
            if dest[k] >= 0:
                e = ep_ip[dest[k]]
                hit, pb = _ipset(lo_k, lo_w, lo_s, lo_b, lo_h, lo_n, e,
                                 (vs_target[vs_hit[k]] << 8) | pr, saddr[k])
            else:
                hit, pb = _ipset(lo_k, lo_w, lo_s, lo_b, lo_h, lo_n, a, key1, saddr[k])
            sp += pb
            if hit:
                r -= 1
                m -= 1
            elif masq:
                r += 2  # xor-mark, MASQUERADE
                m += 1
        rules[k] = r
        matches[k] = m
        jumps[k] = jp
        set_probes[k] = sp
    return rules, matches, jumps, set_probes, svc_probes, conn_probes, sched, vs_hit, dest


def first_packets(
    tables: IpvsTables,
    conn: ConnTable,
    saddr: np.ndarray,
    sport: np.ndarray,
    daddr: np.ndarray,
    dport: np.ndarray,
    proto: np.ndarray,
    mark: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Count the work of the first packet of each new connection in ipvs mode.

    Returns per-packet int64 arrays: ``rules``, ``matches``, ``jumps`` (iptables constant part),
    ``set_probes`` (ipset), ``svc_probes`` (service table), ``conn_probes`` (connection-table
    miss walk + insert), ``sched_steps``, ``vs`` (virtual server hit or -1) and ``dest``
    (endpoint index or -1).
    """
    arrs = [np.ascontiguousarray(x, dtype=np.int64) for x in (saddr, sport, daddr, dport, proto)]
    n = arrs[0].shape[0]
    if any(x.shape != (n,) for x in arrs):
        raise ValueError("packets: expected 1-D arrays of one length")
    mk = np.zeros(n, np.int64) if mark is None else np.ascontiguousarray(mark, dtype=np.int64)
    t = tables

    def hs(s: HashSet):
        return s.keys, s.nwords, s.seed, s.bits, s.head, s.nxt

    out = _first_packets(
        *arrs, mk, t.svc_head, t.svc_next, t.vs_addr, t.vs_port, t.vs_proto, t.vs_service,
        t.vs_target, t.fold, t.svc_bits, t.resizable, t.svc_seed, t.fwm_head, t.fwm_next,
        t.fwm_mark, t.ep_ptr, t.ep_ip, t.local_addrs, t.pod_net, t.pod_mask,
        *hs(t.cluster_ip_set), *hs(t.external_ip_set), *hs(t.lb_set), *hs(t.loopback_set),
        t.nodeport_bitmap, conn.head, conn.nxt, conn.caddr, conn.cport, conn.proto, conn.vaddr,
        conn.vport, conn.rnd, conn.fold, conn.bits, conn.little_endian,
    )
    names = ("rules", "matches", "jumps", "set_probes", "svc_probes", "conn_probes",
             "sched_steps", "vs", "dest")
    return dict(zip(names, out, strict=True))


@njit(cache=True)
def _svc_lookup_many(svc_head, svc_next, vs_addr, vs_port, vs_proto, fold, bits, resizable,
                     seed, fwm_head, fwm_next, fwm_mark, daddr, dport, proto):
    n = daddr.shape[0]
    hit = np.empty(n, dtype=np.int64)
    probes = np.empty(n, dtype=np.int64)
    for k in range(n):
        hit[k], probes[k] = _svc_find(svc_head, svc_next, vs_addr, vs_port, vs_proto, fold, bits,
                                      resizable, seed, fwm_head, fwm_next, fwm_mark, 0, 0, 0,
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
