"""First packets of new connections, as arrays, for the dataplane traversal models.

Traffic classes (spec B.1 paths): ``clusterip`` (a pod connects to a Service's ClusterIP and
port), ``nodeport`` (an outside client connects to a node address and a NodePort), ``external``
(an outside client connects to an external IP), ``lb`` (an outside client connects to a
LoadBalancer ingress IP, from inside its source range when it has one) and ``miss``
(destinations that are no Service: they walk all of KUBE-SERVICES). Service-port popularity is
``uniform`` or ``zipf`` (weight 1/rank^s over a seeded random ranking, independent of the
KUBE-SERVICES order). Arrival times are a Poisson process of ``rate`` connections per second.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kernels.cluster import PROTO_TCP, Cluster, ip_to_int, parse_cidr, port_service

TRAFFIC_CLASSES = ("clusterip", "nodeport", "miss", "external", "lb")
POPULARITIES = ("uniform", "zipf")
EXTERNAL_CLIENTS = "100.64.0.0/10"
MISS_DESTINATIONS = "198.18.0.0/15"


@dataclass(frozen=True)
class Packets:
    """First packets: host-order addresses, protocol, ports, arrival time (s); ``port``: the
    service port each packet targets (-1 for misses)."""

    src: np.ndarray  # uint32[n]
    dst: np.ndarray  # uint32[n]
    proto: np.ndarray  # uint8[n]
    sport: np.ndarray  # uint16[n]
    dport: np.ndarray  # uint16[n]
    time: np.ndarray  # float64[n]
    port: np.ndarray  # int64[n]

    def __len__(self) -> int:
        return int(self.src.shape[0])


def packets(src, dst, dport, *, proto=PROTO_TCP, sport=40000, time=0.0) -> Packets:
    """Packets from scalars or arrays (dotted quads accepted), broadcast to a common length."""

    def addr(x):
        if isinstance(x, str):
            return ip_to_int(x)
        if isinstance(x, list | tuple):
            return [ip_to_int(v) if isinstance(v, str) else v for v in x]
        return x

    src, dst, dport, proto, sport, time = np.broadcast_arrays(
        np.asarray(addr(src), dtype=np.uint32), np.asarray(addr(dst), dtype=np.uint32),
        np.asarray(dport, dtype=np.uint16), np.asarray(proto, dtype=np.uint8),
        np.asarray(sport, dtype=np.uint16), np.asarray(time, dtype=np.float64))
    n = max(src.size, 1)
    out = [np.array(np.broadcast_to(a, (n,))) for a in (src, dst, proto, sport, dport, time)]
    return Packets(*out, port=np.full(n, -1, dtype=np.int64))


def _weights(rng, n: int, popularity: str, zipf_s: float) -> np.ndarray:
    if popularity == "uniform":
        return np.full(n, 1.0 / n)
    ranks = rng.permutation(n) + 1.0
    w = ranks ** (-float(zipf_s))
    return w / w.sum()


def make_packets(
    cluster: Cluster,
    traffic: str = "clusterip",
    n: int = 1000,
    *,
    popularity: str = "uniform",
    zipf_s: float = 1.0,
    rate: float = 1000.0,
    n_clients: int = 0,
    seed: int = 0,
) -> Packets:
    """``n`` first packets of class ``traffic`` (see module docstring).

    Sources: pods (random addresses in the cluster CIDR) for ``clusterip``, outside clients in
    100.64.0.0/10 otherwise; ``n_clients`` > 0 draws sources from that many fixed clients (for
    session affinity), 0 gives every connection its own client. Source ports are ephemeral
    (32768-60999). Raises ValueError when the cluster has no port of the requested class.
    """
    if traffic not in TRAFFIC_CLASSES:
        raise ValueError(f"traffic: expected one of {TRAFFIC_CLASSES}, got {traffic!r}")
    if popularity not in POPULARITIES:
        raise ValueError(f"popularity: expected one of {POPULARITIES}, got {popularity!r}")
    if n < 1:
        raise ValueError(f"n: expected >= 1, got {n}")
    rng = np.random.default_rng(seed)
    psvc = port_service(cluster)
    proto = cluster.port_proto.copy()
    dport = np.zeros(n, dtype=np.int64)
    if traffic == "miss":
        net, _mask, size = parse_cidr(MISS_DESTINATIONS)
        dst = net + rng.integers(1, size - 1, size=n)
        dport = rng.integers(1, 65536, size=n)
        pr = np.full(n, PROTO_TCP, dtype=np.uint8)
        port = np.full(n, -1, dtype=np.int64)
    else:
        if traffic == "clusterip":
            cand = np.arange(cluster.n_ports)
        elif traffic == "nodeport":
            cand = np.nonzero(cluster.port_nodeport > 0)[0]
        elif traffic == "external":
            cand = np.nonzero(np.diff(cluster.extip_ptr)[psvc] > 0)[0]
        else:
            cand = np.nonzero(np.diff(cluster.lb_ptr)[psvc] > 0)[0]
        if cand.shape[0] == 0:
            raise ValueError(f"traffic: the cluster has no {traffic} service ports")
        w = _weights(rng, cand.shape[0], popularity, zipf_s)
        port = cand[rng.choice(cand.shape[0], size=n, p=w)]
        s = psvc[port]
        pr = proto[port]
        if traffic == "clusterip":
            dst = cluster.svc_cluster_ip[s].astype(np.int64)
            dport = cluster.port_port[port].astype(np.int64)
        elif traffic == "nodeport":
            nodes = cluster.node_ips
            dst = nodes[rng.integers(0, nodes.shape[0], size=n)].astype(np.int64)
            dport = cluster.port_nodeport[port].astype(np.int64)
        elif traffic == "external":
            dst = cluster.extip_ip[cluster.extip_ptr[s]].astype(np.int64)
            dport = cluster.port_port[port].astype(np.int64)
        else:
            dst = cluster.lb_ip[cluster.lb_ptr[s]].astype(np.int64)
            dport = cluster.port_port[port].astype(np.int64)
    if traffic == "clusterip":
        net, _mask, size = parse_cidr_tuple(cluster.cluster_cidr)
    else:
        net, _mask, size = parse_cidr(EXTERNAL_CLIENTS)
    pool = n_clients if n_clients > 0 else n
    clients = net + rng.integers(1, size - 1, size=pool)
    src = clients[rng.integers(0, pool, size=n)] if n_clients > 0 else clients
    if traffic == "lb":
        has_range = np.diff(cluster.src_ptr)[psvc[port]] > 0
        if has_range.any():
            r = cluster.src_ptr[psvc[port][has_range]]
            host = src[has_range] & ~cluster.src_mask[r].astype(np.int64) & 0xFFFFFFFF
            src = src.copy()
            src[has_range] = cluster.src_net[r].astype(np.int64) | host
    sport = rng.integers(32768, 61000, size=n)
    time = np.cumsum(rng.exponential(1.0 / rate, size=n))
    return Packets(
        src=src.astype(np.uint32), dst=np.asarray(dst).astype(np.uint32), proto=pr.astype(np.uint8),
        sport=sport.astype(np.uint16), dport=dport.astype(np.uint16), time=time,
        port=port.astype(np.int64))


def parse_cidr_tuple(cidr: tuple[int, int]) -> tuple[int, int, int]:
    """(net, mask) to (net, mask, number of addresses)."""
    net, mask = int(cidr[0]), int(cidr[1])
    return net, mask, (~mask & 0xFFFFFFFF) + 1
