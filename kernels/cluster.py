"""Synthetic Kubernetes clusters as flat arrays: the objects every dataplane model compiles.

A cluster is what kube-proxy sees (spec B.1, B.2, B.3): Services with a type, one or more ports,
a ClusterIP, optional external IPs and LoadBalancer ingress IPs (with source ranges), ClientIP
session affinity and traffic policies; endpoints per Service; and the node's own addresses that
NodePort traffic is addressed to. Everything is a numpy array so numba kernels can take it.

Indexing (CSR layout, ``*_ptr`` arrays have length S + 1):

* Services ``s`` in ``[0, S)``: ``svc_*`` arrays.
* Service ports ``p`` in ``port_ptr[s]:port_ptr[s+1]`` (kube-proxy works per *service port*):
  ``port_proto``, ``port_port``, ``port_target``, ``port_nodeport`` (0 = none).
* Endpoints ``e`` in ``ep_ptr[s]:ep_ptr[s+1]``: ``ep_ip``, ``ep_local`` (endpoint on this node).
  A Service's endpoints serve all of its ports (``port_target``).
* External IPs in ``extip_ptr``, LB ingress IPs in ``lb_ptr``, LB source ranges in ``src_ptr``
  (``src_net``/``src_mask``).
* ``port_order``: the order kube-proxy emits service ports into KUBE-SERVICES — Go map iteration
  over ``svcPortMap`` (spec B.1 step 2), modelled as a seeded uniform permutation.

Addresses are host-order uint32 (``ntohl`` of the wire value). ExternalName Services carry no
ports' dataplane: they have zero rules in every mode (reports say so).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, fields

import numpy as np

SVC_CLUSTERIP = 0
SVC_NODEPORT = 1
SVC_LOADBALANCER = 2
SVC_EXTERNALNAME = 3
SVC_TYPE_NAMES = ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")

PROTO_TCP = 6
PROTO_UDP = 17

ENDPOINT_DISTS = ("fixed", "poisson", "geometric")

NODEPORT_RANGE = (30000, 32767)
"""kube-apiserver's default --service-node-port-range (inclusive)."""

DEFAULT_AFFINITY_TIMEOUT_S = 10800
"""API default ``DefaultClientIPServiceAffinitySeconds`` (spec B.1, session affinity)."""


@dataclass(frozen=True)
class Cluster:
    """A cluster as seen by kube-proxy on one node; see the module docstring for the layout."""

    svc_type: np.ndarray  # int8[S]
    svc_cluster_ip: np.ndarray  # uint32[S]
    svc_affinity: np.ndarray  # bool[S]   ClientIP session affinity
    svc_affinity_timeout: np.ndarray  # int32[S] seconds (StickyMaxAgeSeconds)
    svc_ext_local: np.ndarray  # bool[S]   externalTrafficPolicy: Local
    svc_int_local: np.ndarray  # bool[S]   internalTrafficPolicy: Local
    port_ptr: np.ndarray  # int64[S+1]
    port_proto: np.ndarray  # uint8[P]
    port_port: np.ndarray  # uint16[P]
    port_target: np.ndarray  # uint16[P]
    port_nodeport: np.ndarray  # uint16[P], 0 = none
    port_order: np.ndarray  # int64[P] KUBE-SERVICES emission order (permutation of ports)
    ep_ptr: np.ndarray  # int64[S+1]
    ep_ip: np.ndarray  # uint32[E]
    ep_local: np.ndarray  # bool[E]
    extip_ptr: np.ndarray  # int64[S+1]
    extip_ip: np.ndarray  # uint32[X]
    lb_ptr: np.ndarray  # int64[S+1]
    lb_ip: np.ndarray  # uint32[L]
    src_ptr: np.ndarray  # int64[S+1]
    src_net: np.ndarray  # uint32[R]
    src_mask: np.ndarray  # uint32[R]
    node_ips: np.ndarray  # uint32[K]
    cluster_cidr: tuple[int, int]  # (net, mask) of the pod CIDR: local-traffic detector

    @property
    def n_services(self) -> int:
        return int(self.svc_type.shape[0])

    @property
    def n_ports(self) -> int:
        return int(self.port_proto.shape[0])

    @property
    def n_endpoints(self) -> int:
        return int(self.ep_ip.shape[0])

    def endpoints_of(self, s: int) -> np.ndarray:
        """Endpoint IPs of Service ``s``."""
        return self.ep_ip[self.ep_ptr[s] : self.ep_ptr[s + 1]]

    def nbytes(self) -> int:
        """Memory held by the cluster's arrays, in bytes."""
        return sum(
            getattr(self, f.name).nbytes
            for f in fields(self)
            if isinstance(getattr(self, f.name), np.ndarray)
        )


def ip_to_int(addr: str) -> int:
    """Dotted quad to host-order integer."""
    return int(ipaddress.IPv4Address(addr))


def int_to_ip(value: int) -> str:
    """Host-order integer to dotted quad."""
    return str(ipaddress.IPv4Address(int(value)))


def parse_cidr(cidr: str) -> tuple[int, int, int]:
    """CIDR string to (network, mask, number of addresses)."""
    net = ipaddress.IPv4Network(cidr, strict=False)
    return int(net.network_address), int(net.netmask), int(net.num_addresses)


def _ptr(counts: np.ndarray) -> np.ndarray:
    ptr = np.zeros(counts.shape[0] + 1, dtype=np.int64)
    np.cumsum(counts, out=ptr[1:])
    return ptr


def _draw_endpoint_counts(
    rng: np.random.Generator, n: int, mean: float, dist: str
) -> np.ndarray:
    if dist == "fixed":
        return np.full(n, int(round(mean)), dtype=np.int64)
    if dist == "poisson":
        return rng.poisson(mean, size=n).astype(np.int64)
    if dist == "geometric":
        # Support {1, 2, ...} with the requested mean (heavy-ish tail of small Deployments).
        return rng.geometric(1.0 / max(mean, 1.0), size=n).astype(np.int64)
    raise ValueError(f"endpoint_dist: expected one of {ENDPOINT_DISTS}, got {dist!r}")


def _unique_addresses(
    rng: np.random.Generator, cidr: str, count: int, what: str, skip_first: int = 1
) -> np.ndarray:
    net, _mask, size = parse_cidr(cidr)
    usable = size - skip_first - 1
    if count > usable:
        raise ValueError(f"{what}: {cidr} holds {usable} addresses, {count} needed")
    if count == 0:
        return np.zeros(0, dtype=np.uint32)
    offsets = rng.choice(usable, size=count, replace=False) + skip_first
    return (np.uint64(net) + offsets.astype(np.uint64)).astype(np.uint32)


def build_cluster(
    n_services: int,
    endpoints_per_service: float = 10,
    *,
    endpoint_dist: str = "fixed",
    ports_per_service: int = 1,
    udp_fraction: float = 0.0,
    type_mix: tuple[float, float, float, float] = (1.0, 0.0, 0.0, 0.0),
    affinity_fraction: float = 0.0,
    affinity_timeout_s: int = DEFAULT_AFFINITY_TIMEOUT_S,
    ext_local_fraction: float = 0.0,
    int_local_fraction: float = 0.0,
    external_ip_fraction: float = 0.0,
    lb_source_range_fraction: float = 0.0,
    local_endpoint_fraction: float = 0.1,
    node_ips: tuple[str, ...] = ("192.168.0.10",),
    service_cidr: str = "10.96.0.0/12",
    pod_cidr: str = "10.128.0.0/10",
    external_cidr: str = "172.16.0.0/12",
    nodeport_range: tuple[int, int] = NODEPORT_RANGE,
    seed: int = 0,
) -> Cluster:
    """Build a seeded synthetic cluster of ``n_services`` Services (spec B.1 objects).

    ``type_mix`` gives the fractions of ClusterIP, NodePort, LoadBalancer and ExternalName
    Services. NodePort and LoadBalancer ports get distinct node ports from ``nodeport_range``
    (the API server's allocator: at most 2,768 by default, so larger clusters must raise the
    range, as real clusters do). LoadBalancer Services get one ingress IP each; a fraction of
    them carry one source range. Endpoint counts are ``fixed`` or drawn (``poisson``,
    ``geometric``) with mean ``endpoints_per_service``; a Service may end up with none, which
    kube-proxy turns into a REJECT (spec B.1). Addresses come from the given CIDRs; they are
    model values only and never receive traffic.
    """
    if n_services < 1:
        raise ValueError(f"n_services: expected >= 1, got {n_services}")
    if ports_per_service < 1:
        raise ValueError(f"ports_per_service: expected >= 1, got {ports_per_service}")
    if endpoints_per_service < 0:
        raise ValueError(f"endpoints_per_service: expected >= 0, got {endpoints_per_service}")
    mix = np.asarray(type_mix, dtype=np.float64)
    if mix.shape != (4,) or (mix < 0).any() or mix.sum() <= 0:
        raise ValueError(f"type_mix: expected 4 non-negative fractions, got {type_mix}")
    rng = np.random.default_rng(seed)
    s_count = int(n_services)

    svc_type = rng.choice(4, size=s_count, p=mix / mix.sum()).astype(np.int8)
    dataplane = svc_type != SVC_EXTERNALNAME
    svc_cluster_ip = np.zeros(s_count, dtype=np.uint32)
    svc_cluster_ip[dataplane] = _unique_addresses(
        rng, service_cidr, int(dataplane.sum()), "service_cidr"
    )
    svc_affinity = (rng.random(s_count) < affinity_fraction) & dataplane
    svc_affinity_timeout = np.full(s_count, affinity_timeout_s, dtype=np.int32)
    svc_ext_local = (rng.random(s_count) < ext_local_fraction) & (svc_type >= SVC_NODEPORT)
    svc_ext_local &= dataplane
    svc_int_local = (rng.random(s_count) < int_local_fraction) & dataplane

    port_counts = np.where(dataplane, ports_per_service, 0).astype(np.int64)
    port_ptr = _ptr(port_counts)
    n_ports = int(port_ptr[-1])
    port_svc = np.repeat(np.arange(s_count), port_counts)
    port_idx = np.arange(n_ports) - port_ptr[port_svc]
    port_proto = np.where(rng.random(n_ports) < udp_fraction, PROTO_UDP, PROTO_TCP).astype(
        np.uint8
    )
    port_port = (80 + port_idx).astype(np.uint16)
    port_target = (8080 + port_idx).astype(np.uint16)
    port_nodeport = np.zeros(n_ports, dtype=np.uint16)
    needs_np = (svc_type[port_svc] == SVC_NODEPORT) | (svc_type[port_svc] == SVC_LOADBALANCER)
    lo, hi = nodeport_range
    if not 1 <= lo <= hi <= 65535:
        raise ValueError(f"nodeport_range: expected 1 <= lo <= hi <= 65535, got {nodeport_range}")
    n_np = int(needs_np.sum())
    if n_np > hi - lo + 1:
        raise ValueError(
            f"nodeport_range: {lo}-{hi} holds {hi - lo + 1} node ports, {n_np} needed"
        )
    port_nodeport[needs_np] = (lo + rng.choice(hi - lo + 1, size=n_np, replace=False)).astype(
        np.uint16
    )
    port_order = rng.permutation(n_ports).astype(np.int64)

    ep_counts = _draw_endpoint_counts(rng, s_count, endpoints_per_service, endpoint_dist)
    ep_counts[~dataplane] = 0
    ep_ptr = _ptr(ep_counts)
    n_ep = int(ep_ptr[-1])
    pod_net, pod_mask, pod_size = parse_cidr(pod_cidr)
    if n_ep > pod_size - 2:
        raise ValueError(f"pod_cidr: {pod_cidr} holds {pod_size - 2} pod IPs, {n_ep} needed")
    ep_ip = (np.uint64(pod_net) + 1 + np.arange(n_ep, dtype=np.uint64)).astype(np.uint32)
    ep_local = rng.random(n_ep) < local_endpoint_fraction

    has_ext = (rng.random(s_count) < external_ip_fraction) & dataplane
    is_lb = svc_type == SVC_LOADBALANCER
    has_range = (rng.random(s_count) < lb_source_range_fraction) & is_lb
    extip_ptr = _ptr(has_ext.astype(np.int64))
    lb_ptr = _ptr(is_lb.astype(np.int64))
    src_ptr = _ptr(has_range.astype(np.int64))
    outside = _unique_addresses(
        rng, external_cidr, int(has_ext.sum() + is_lb.sum()), "external_cidr"
    )
    extip_ip = outside[: int(has_ext.sum())]
    lb_ip = outside[int(has_ext.sum()) :]
    n_ranges = int(has_range.sum())
    src_mask = np.full(n_ranges, 0xFFFFFF00, dtype=np.uint32)
    src_net = (rng.integers(0, 2**24, size=n_ranges, dtype=np.uint64) << np.uint64(8)).astype(
        np.uint32
    )

    return Cluster(
        svc_type=svc_type,
        svc_cluster_ip=svc_cluster_ip,
        svc_affinity=svc_affinity,
        svc_affinity_timeout=svc_affinity_timeout,
        svc_ext_local=svc_ext_local,
        svc_int_local=svc_int_local,
        port_ptr=port_ptr,
        port_proto=port_proto,
        port_port=port_port,
        port_target=port_target,
        port_nodeport=port_nodeport,
        port_order=port_order,
        ep_ptr=ep_ptr,
        ep_ip=ep_ip,
        ep_local=ep_local,
        extip_ptr=extip_ptr,
        extip_ip=extip_ip,
        lb_ptr=lb_ptr,
        lb_ip=lb_ip,
        src_ptr=src_ptr,
        src_net=src_net,
        src_mask=src_mask,
        node_ips=np.array([ip_to_int(a) for a in node_ips], dtype=np.uint32),
        cluster_cidr=(pod_net, pod_mask),
    )


def port_service(cluster: Cluster) -> np.ndarray:
    """Service index of every service port (int64[P])."""
    return np.repeat(np.arange(cluster.n_services), np.diff(cluster.port_ptr))
