"""The historic userspace proxy (spec B.4): portal rules traversed linearly, then the proxy.

iptables (nat), as the userspace proxier wrote it:

* PREROUTING → ``KUBE-PORTALS-CONTAINER``: one rule per service port per portal IP (ClusterIP,
  each external IP, each LB ingress IP): ``-d <ip>/32 -p <proto> -m <proto> --dport <port>
  -j REDIRECT --to-ports <proxyPort>``; then PREROUTING ``-m addrtype --dst-type LOCAL -j
  KUBE-NODEPORT-CONTAINER`` with one ``-p <proto> --dport <nodePort> -j REDIRECT`` per NodePort.
* OUTPUT → ``KUBE-PORTALS-HOST`` (same rules, DNAT to the host IP) and ``KUBE-NODEPORT-HOST``:
  the proxy's own connection to the chosen endpoint is a NEW host-originated connection, so it
  walks KUBE-PORTALS-HOST to the end (the endpoint is no portal) — counted.

Rule order = the order the proxier ensured them (informer order; ``cluster.port_order``). Every
rule's IP match (``-d``/``-p``) is tested; the ``--dport`` extension match only when it passes;
the chain's implicit RETURN entry is not a rule (as kernels.iptables counts). Each chain walk is
a real loop over rule arrays.

The proxy: per connection ``accept()``, a round-robin pick (``LoadBalancerRR``, spec B.4: the
Service's endpoint list shuffled when endpoints change, index reset to 0, then index = (index +
1) mod n, one step, state kept per service port; with ``shuffle_seed`` the list of every
service port is shuffled once by a seeded permutation at the start of the call — one endpoints
snapshot, so no later reshuffle — and without it endpoint order is kept), ``connect()`` to the
endpoint; priced
by the cost model's ``userspace_conn_ns`` and ``context_switch_ns`` (2 wakeups per connection:
accept, connect completion). Established packets are copied through user space
(``userspace_kb_ns`` per KB) with one proxy wakeup per packet; see ``CONN_CONTEXT_SWITCHES``.

Left out of spec B.4 (not modelled): ClientIP session affinity (clientIP → endpoint map with a
TTL in minutes), endpoint changes during a call (and the reshuffle they cause), and the connect
retry (up to 4 attempts with 250 ms … 2 s dial timeouts, each on the next endpoint): every
endpoint accepts the first connect.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from kernels.cluster import Cluster

CONN_CONTEXT_SWITCHES = 2
PACKET_CONTEXT_SWITCHES = 1
PROXY_PORT_BASE = 40000


@dataclass(frozen=True)
class UserspaceRules:
    """KUBE-PORTALS-* rules (``p_*``) and KUBE-NODEPORT-* rules (``n_*``), in chain order."""

    p_dst: np.ndarray
    p_proto: np.ndarray
    p_dport: np.ndarray
    p_port: np.ndarray  # service port index (-> proxy port)
    n_proto: np.ndarray
    n_dport: np.ndarray
    n_port: np.ndarray
    ep_ptr: np.ndarray  # endpoints of each service port's Service
    ep_ip: np.ndarray
    port_svc: np.ndarray
    local_addrs: np.ndarray

    @property
    def rules_total(self) -> int:
        """nat rules: portal + nodeport rules in the CONTAINER and HOST chains, plus 4 jumps."""
        return int(2 * (self.p_dst.shape[0] + self.n_dport.shape[0]) + 4)

    @property
    def chains_total(self) -> int:
        return 4


def build_rules(cluster: Cluster) -> UserspaceRules:
    """The userspace proxier's portal and NodePort rules for ``cluster`` (spec B.4)."""
    psvc = np.repeat(np.arange(cluster.n_services), np.diff(cluster.port_ptr))
    dst, port = [cluster.svc_cluster_ip[psvc].astype(np.int64)], [np.arange(cluster.n_ports)]
    for ptr, ips in ((cluster.extip_ptr, cluster.extip_ip), (cluster.lb_ptr, cluster.lb_ip)):
        counts = np.diff(ptr)[psvc]
        pidx = np.repeat(np.arange(cluster.n_ports), counts)
        sub = np.arange(pidx.shape[0]) - np.repeat(np.cumsum(counts) - counts, counts)
        dst.append(ips[ptr[psvc][pidx] + sub].astype(np.int64))
        port.append(pidx)
    dst_a, port_a = np.concatenate(dst), np.concatenate(port)
    rank = np.empty(cluster.n_ports, np.int64)
    rank[cluster.port_order] = np.arange(cluster.n_ports)
    order = np.argsort(rank[port_a], kind="stable")
    dst_a, port_a = dst_a[order], port_a[order]
    npi = np.nonzero(cluster.port_nodeport)[0]
    npi = npi[np.argsort(rank[npi], kind="stable")]
    return UserspaceRules(
        p_dst=dst_a, p_proto=cluster.port_proto[port_a].astype(np.int64),
        p_dport=cluster.port_port[port_a].astype(np.int64), p_port=port_a.astype(np.int64),
        n_proto=cluster.port_proto[npi].astype(np.int64),
        n_dport=cluster.port_nodeport[npi].astype(np.int64), n_port=npi.astype(np.int64),
        ep_ptr=cluster.ep_ptr.astype(np.int64), ep_ip=cluster.ep_ip.astype(np.int64),
        port_svc=psvc.astype(np.int64),
        local_addrs=np.unique(cluster.node_ips.astype(np.int64)),
    )


@njit(cache=True)
def _is_local(local, addr):
    i = np.searchsorted(local, addr)
    return i < local.shape[0] and local[i] == addr


@njit(cache=True)
def _portals(p_dst, p_proto, p_dport, a, pr, port):
    """Walk a KUBE-PORTALS chain: (rule index or -1, rules, extension matches)."""
    m = 0
    for i in range(p_dst.shape[0]):
        if p_dst[i] == a and p_proto[i] == pr:
            m += 1
            if p_dport[i] == port:
                return i, i + 1, m
    return -1, p_dst.shape[0], m


@njit(cache=True)
def _nodeports(n_proto, n_dport, pr, port):
    m = 0
    for i in range(n_proto.shape[0]):
        if n_proto[i] == pr:
            m += 1
            if n_dport[i] == port:
                return i, i + 1, m
    return -1, n_proto.shape[0], m


@njit(cache=True)
def _shuffled_orders(ep_ptr, port_svc, shuffle, seed):
    """Per service port: its endpoint offsets, shuffled (seeded) or in order."""
    counts = np.empty(port_svc.shape[0], dtype=np.int64)
    for sp in range(port_svc.shape[0]):
        counts[sp] = ep_ptr[port_svc[sp] + 1] - ep_ptr[port_svc[sp]]
    ptr = np.zeros(port_svc.shape[0] + 1, dtype=np.int64)
    ptr[1:] = np.cumsum(counts)
    order = np.empty(ptr[-1], dtype=np.int64)
    if shuffle:
        np.random.seed(seed)
    for sp in range(port_svc.shape[0]):
        seg = order[ptr[sp]:ptr[sp + 1]]
        for j in range(seg.shape[0]):
            seg[j] = j
        if shuffle:
            np.random.shuffle(seg)
    return ptr, order


@njit(cache=True)
def _first_packets(daddr, dport, proto, p_dst, p_proto, p_dport, p_port, n_proto, n_dport,
                   n_port, ep_ptr, ep_ip, port_svc, local, shuffle, shuffle_seed):
    n = daddr.shape[0]
    optr, order = _shuffled_orders(ep_ptr, port_svc, shuffle, shuffle_seed)
    rules = np.zeros(n, dtype=np.int64)
    matches = np.zeros(n, dtype=np.int64)
    jumps = np.zeros(n, dtype=np.int64)
    conns = np.zeros(n, dtype=np.int64)
    sched = np.zeros(n, dtype=np.int64)
    dest = np.full(n, -1, dtype=np.int64)
    rr = np.full(port_svc.shape[0], -1, dtype=np.int64)
    for k in range(n):
        a, p, pr = daddr[k], dport[k], proto[k]
        r = 1  # PREROUTING -j KUBE-PORTALS-CONTAINER
        jp = 1
        i, rr_, m = _portals(p_dst, p_proto, p_dport, a, pr, p)
        r += rr_
        sp = -1
        if i >= 0:
            sp = p_port[i]
        else:
            r += 1  # -m addrtype --dst-type LOCAL -j KUBE-NODEPORT-CONTAINER
            m += 1
            if _is_local(local, a):
                jp += 1
                j, rr_, m2 = _nodeports(n_proto, n_dport, pr, p)
                r += rr_
                m += m2
                if j >= 0:
                    sp = n_port[j]
        if sp >= 0:
            s = port_svc[sp]
            cnt = ep_ptr[s + 1] - ep_ptr[s]
            if cnt > 0:
                rr[sp] = (rr[sp] + 1) % cnt
                e = ep_ptr[s] + order[optr[sp] + rr[sp]]
                dest[k] = e
                sched[k] = 1
                conns[k] = 1
                # the proxy's connect(): OUTPUT -> KUBE-PORTALS-HOST (miss), NODEPORT-HOST rule
                r += 2
                jp += 1
                _, rr_, m2 = _portals(p_dst, p_proto, p_dport, ep_ip[e], pr, -1)
                r += rr_
                m += m2 + 1
        rules[k] = r
        matches[k] = m
        jumps[k] = jp
    return rules, matches, jumps, conns, sched, dest


def first_packets(rules: UserspaceRules, daddr, dport, proto,
                  shuffle_seed: int | None = None) -> dict[str, np.ndarray]:
    """Per-packet counts for the first packet of each connection in userspace mode.

    ``shuffle_seed``: shuffle every service port's endpoint list with this seed before the
    round robin starts (LoadBalancerRR's shuffle on an endpoints change); None keeps the order.

    Returns int64 arrays ``rules``, ``matches`` (extension matches), ``jumps``, ``conns``
    (connections the proxy accepted and opened: 1, or 0 when no portal matched), ``sched_steps``
    and ``dest`` (endpoint index or -1).
    """
    arrs = [np.ascontiguousarray(x, dtype=np.int64) for x in (daddr, dport, proto)]
    if any(x.shape != arrs[0].shape for x in arrs):
        raise ValueError("packets: expected 1-D arrays of one length")
    u = rules
    out = _first_packets(*arrs, u.p_dst, u.p_proto, u.p_dport, u.p_port, u.n_proto, u.n_dport,
                         u.n_port, u.ep_ptr, u.ep_ip, u.port_svc, u.local_addrs,
                         shuffle_seed is not None, int(shuffle_seed or 0))
    return dict(zip(("rules", "matches", "jumps", "conns", "sched_steps", "dest"), out,
                    strict=True))
