"""Kind ``scaling``: first-packet and established-packet cost of kube-proxy's four dataplanes.

One point = one dataplane ``mode`` on one synthetic cluster (``services`` × ``endpoints_per_
service``, built by kernels.cluster from ``cluster_seed``) under one traffic class and Service
popularity. The first packets of ``packets`` new connections (kernels.traffic.make_packets) go
through the mode's model (kernels.iptables / ipvs / nftables / userspace) and nf_conntrack
(kernels.conntrack); ``established_packets`` packets of ``live_connections`` live flows go
through conntrack (and the IPVS connection table in ipvs mode). The cost model
(kernels.costmodel, overridable by ``kpbench run --calibration``) prices the counts; iptables
rules with its cache-aware per-rule cost (``CostModel.rules_ns``): iptables mode passes the nat
KUBE-SERVICES chain's bytes (rules x ``KUBE_SERVICES_RULE_BYTES``, as ``kpbench calibrate``
computes them) and each packet's KUBE-SERVICES walk (rules evaluated in it); userspace mode
passes KUBE-PORTALS-CONTAINER's bytes (the same per-rule size: ≈ the two portal chains a
proxied connection walks, ~232 bytes a rule each) and its rules evaluated as the walk (the
portal walks dominate; its two walks are priced as one). With the default cost model (cache
terms off) that is ``rule_ns`` per rule, as before.

``first_packet_ops`` = rules evaluated (iptables, userspace); set/map lookups + rules evaluated
+ hash probes inside the lookups (nftables); hash probes (service table, connection table,
ipsets) + rules evaluated (ipvs).

Cluster: every Service is of type NodePort (so the same cluster serves all traffic classes);
above 63,500 Services a fraction 63,500/Services are (a node has 64,512 ports in 1024-65535) — the
``nodeport_services`` column says how many. Above 2,700 NodePorts the API server's default
range 30000-32767 (2,768 ports) is too small, so ``nodeport_range`` becomes 1024-65535; the
``nodeport_range`` column records it. ExternalName Services would add zero rules in every mode.

Compiled clusters are cached per worker process (LRU keyed by mode and cluster parameters), so
points that differ only in traffic, popularity or seed compile once.
"""

from __future__ import annotations

import inspect
from collections import OrderedDict

import numpy as np

from harness.kind import Kind, Param
from kernels import conntrack as ct
from kernels import costmodel as cm
from kernels import ipvs
from kernels import nftables as nft
from kernels import userspace as us
from kernels.cluster import build_cluster, parse_cidr, port_service
from kernels.costmodel import CostModel
from kernels.traffic import make_packets

_POD_CIDR = inspect.signature(build_cluster).parameters["pod_cidr"].default
MAX_ENDPOINTS = parse_cidr(_POD_CIDR)[2] - 2
"""Endpoints that fit kernels.cluster's default pod CIDR (build_cluster raises beyond)."""
ENDPOINTS_BOUND = ("endpoints_per_service",
                   f"services × endpoints_per_service ≤ {MAX_ENDPOINTS:,} "
                   f"(pod CIDR /{_POD_CIDR.split('/')[1]})")
MODES = ("userspace", "iptables", "ipvs", "nftables")
TRAFFIC = ("clusterip", "nodeport", "miss")
NODEPORT_CAP = 63_500
DEFAULT_NODEPORT_MAX = 2_700
WIDE_RANGE = (1024, 65535)
OPS_DEFINITION = {
    "iptables": "rules evaluated",
    "userspace": "rules evaluated",
    "nftables": "lookups + rules evaluated + hash probes",
    "ipvs": "hash probes + rules evaluated",
}

PARAMS = (
    Param("mode", str, "iptables", "kube-proxy dataplane", choices=MODES),
    Param("services", int, 1000, "number of Services", min=1, max=200_000),
    Param("endpoints_per_service", int, 10, "endpoints of every Service", min=0, max=1000),
    Param("traffic", str, "clusterip", "traffic class of the first packets", choices=TRAFFIC),
    Param("popularity", str, "uniform", "Service popularity", choices=("uniform", "zipf")),
    Param("zipf_s", float, 1.1, "Zipf exponent for popularity=zipf", min=0.0, max=5.0),
    Param("packets", int, 10_000, "first packets per point", min=10, max=10_000_000),
    Param("established_packets", int, 10_000, "established packets per point", min=10,
          max=10_000_000),
    Param("live_connections", int, 10_000, "live flows in conntrack and the IPVS conn table",
          min=1, max=10_000_000),
    Param("conn_table_bits", int, 12, "IPVS connection table bits (spec A.2)", min=8, max=20),
    Param("svc_table_bits", int, 8, "IPVS service table bits (spec A.1)", min=1, max=20),
    Param("svc_table", str, "fixed", "IPVS service table: fixed or the proposed resizable one",
          choices=("fixed", "resizable")),
    Param("scheduler", str, "rr", "IPVS scheduler (its work is counted by kernels.schedulers)",
          choices=("rr", "wrr", "lc", "wlc", "sed", "nq", "dh", "sh", "mh", "twos", "fo",
                   "ovf")),
    Param("conntrack_buckets", int, 0, "nf_conntrack buckets (0 = kube-proxy rule: max/4)",
          min=0, max=1 << 26),
    Param("conntrack_max", int, 0, "nf_conntrack_max (0 = kube-proxy rule: max(32768*ncpu, "
          "131072))", min=0, max=1 << 28),
    Param("ncpu", int, 2, "CPUs (per-CPU rule counters, conntrack sizing)", min=1, max=1024),
    Param("nodeport_fraction", float, 1.0, "fraction of Services of type NodePort", min=0.0,
          max=1.0),
    Param("packet_kb", float, 1.0, "payload KB per established packet (userspace copies)",
          min=0.0, max=64.0),
    Param("cluster_seed", int, 0, "seed of the synthetic cluster (shared by traffic classes)",
          min=0),
)


def _conntrack_sizes(p: dict) -> tuple[int, int]:
    b_rule, m_rule = ct.default_sizes("kube-proxy", ncpu=p["ncpu"])
    cmax = p["conntrack_max"] or m_rule
    buckets = p["conntrack_buckets"] or (cmax // 4 if p["conntrack_max"] else b_rule)
    return buckets, cmax


def _nodeport_plan(p: dict) -> tuple[float, tuple[int, int]]:
    s = p["services"]
    frac = min(p["nodeport_fraction"], NODEPORT_CAP / s)
    wide = s * frac > DEFAULT_NODEPORT_MAX
    return frac, (WIDE_RANGE if wide else (30000, 32767))


def check(p: dict) -> tuple[str, str] | None:
    if p["services"] * p["endpoints_per_service"] > MAX_ENDPOINTS:
        return ENDPOINTS_BOUND
    _buckets, cmax = _conntrack_sizes(p)
    if p["live_connections"] > cmax:
        return ("live_connections", f"at most nf_conntrack_max = {cmax} (raise conntrack_max)")
    if p["traffic"] == "nodeport" and _nodeport_plan(p)[0] * p["services"] < 1:
        return ("nodeport_fraction", "a value giving at least one NodePort Service")
    return None


def memory_bytes(p: dict) -> int:
    """Peak memory estimate of one point (cluster, compiled tables, traffic, conntrack)."""
    s, e = p["services"], p["endpoints_per_service"]
    ep = s * max(e, 1)
    per_ep = {"iptables": 700, "userspace": 60, "ipvs": 120, "nftables": 120}[p["mode"]]
    per_svc = {"iptables": 1500, "userspace": 200, "ipvs": 700, "nftables": 600}[p["mode"]]
    live = p["live_connections"] * (200 if p["mode"] == "ipvs" else 120)
    pk = (p["packets"] + p["established_packets"]) * 300
    return int(300e6 + ep * per_ep + s * per_svc + live + pk + (8 << p["conn_table_bits"]))


# ------------------------------------------------------------------------------ caches
_CLUSTERS: OrderedDict = OrderedDict()
_COMPILED: OrderedDict = OrderedDict()
_CACHE_SIZE = 2


def _lru(cache: OrderedDict, key, build):
    if key in cache:
        cache.move_to_end(key)
        return cache[key]
    value = build()
    cache[key] = value
    while len(cache) > _CACHE_SIZE:
        cache.popitem(last=False)
    return value


def _cluster(p: dict):
    frac, rng = _nodeport_plan(p)
    key = (p["services"], p["endpoints_per_service"], p["cluster_seed"], frac, rng)
    return _lru(_CLUSTERS, key, lambda: build_cluster(
        p["services"], p["endpoints_per_service"], type_mix=(1.0 - frac, frac, 0.0, 0.0),
        nodeport_range=rng, seed=p["cluster_seed"]))


def _compiled(p: dict, cluster):
    mode = p["mode"]
    extra = (p["svc_table_bits"], p["svc_table"]) if mode == "ipvs" else ()
    key = (mode, p["services"], p["endpoints_per_service"], p["cluster_seed"],
           _nodeport_plan(p), extra)

    def build():
        if mode == "iptables":
            from kernels.iptables import compile_cluster

            return compile_cluster(cluster)
        if mode == "ipvs":
            return ipvs.build_tables(cluster, svc_bits=p["svc_table_bits"],
                                     svc_table=p["svc_table"], seed=p["cluster_seed"])
        if mode == "nftables":
            return nft.build_tables(cluster, seed=p["cluster_seed"])
        return us.build_rules(cluster)

    return _lru(_COMPILED, key, build)


# ------------------------------------------------------------------------------ per mode
PER_PACKET_SCHED_MAX = 20_000
"""Scheduled packets whose scheduler work is counted one by one; beyond, per chunk mean."""
SCHED_CHUNK_SLOTS = 1 << 20
"""Destination slots of one scheduler state (virtual servers × max endpoints)."""


def _schedule(p: dict, tables, cluster, pk, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """IPVS scheduling of every first packet with kernels.schedulers: (endpoint index or -1,
    scheduler steps) per packet.

    The virtual servers hit (IPVS service lookup) get their Service's endpoints as destinations
    (weight 1, added in endpoint order, so the list is newest-first as spec A.4 says), in
    scheduler states of at most ``SCHED_CHUNK_SLOTS`` slots, PRNG seeded from the point seed;
    ``mh`` is created with kube-proxy's flag 0x10 (mh-port, spec A.8 / B.2). Packets are
    scheduled in arrival order and bound (inactconns++, never unbound). Steps = destinations
    examined (``scanned`` work) by that packet's decision, for the first
    ``PER_PACKET_SCHED_MAX`` scheduled packets; later ones get their chunk's mean.
    """
    from kernels import schedulers as sc

    n = len(pk)
    choice = np.full(n, -1, dtype=np.int64)
    steps = np.zeros(n, dtype=np.float64)
    src = pk.src.astype(np.int64)
    sport = pk.sport.astype(np.int64)
    dst = pk.dst.astype(np.int64)
    vs, _ = ipvs.service_lookups(tables, dst, pk.dport.astype(np.int64),
                                 pk.proto.astype(np.int64))
    hit = np.nonzero(vs >= 0)[0]
    if hit.size == 0:
        return choice, steps
    uniq = np.unique(vs[hit])
    max_d = max(int(np.diff(cluster.ep_ptr)[tables.vs_service[uniq]].max()), 1)
    per_state = max(1, SCHED_CHUNK_SLOTS // max_d)
    flags = sc.SVC_F_SCHED2 if p["scheduler"] == "mh" else 0
    scanned = sc.WORK_NAMES.index("scanned")
    budget = PER_PACKET_SCHED_MAX
    for c0 in range(0, uniq.size, per_state):
        part = uniq[c0:c0 + per_state]
        st = sc.new_state(part.size, max_d, p["scheduler"], flags, seed=seed + c0)
        ep_of_dest = np.full(st.weight.shape[0], -1, dtype=np.int64)
        for i, v in enumerate(part):
            s = tables.vs_service[v]
            a, b = cluster.ep_ptr[s], cluster.ep_ptr[s + 1]
            if b > a:
                ids = sc.add_dests(st, i, cluster.ep_ip[a:b].astype(np.int64),
                                   ports=int(tables.vs_target[v]))
                ep_of_dest[ids] = np.arange(a, b)
        sel = hit[np.isin(vs[hit], part)]
        ids = np.searchsorted(part, vs[sel])
        one = min(budget, sel.size)
        for j in range(one):
            k = sel[j]
            before = st.work[scanned]
            d = sc.schedule_batch(st, ids[j:j + 1], src[k], sport[k], dst[k],
                                  bind_conns=True)[0]
            steps[k] = st.work[scanned] - before
            choice[k] = ep_of_dest[d] if d >= 0 else -1
        budget -= one
        if one < sel.size:
            before = st.work[scanned]
            d = sc.schedule_batch(st, ids[one:], src[sel[one:]], sport[sel[one:]],
                                  dst[sel[one:]], bind_conns=True)
            steps[sel[one:]] = (st.work[scanned] - before) / (sel.size - one)
            choice[sel[one:]] = np.where(d >= 0, ep_of_dest[np.maximum(d, 0)], -1)
    return choice, steps


def run_point(params: dict, seed: int, calibration: dict) -> dict:
    p = {pp.name: pp.default for pp in PARAMS}
    p.update(params)
    model = CostModel.from_overrides(calibration)
    cluster = _cluster(p)
    tables = _compiled(p, cluster)
    pk = make_packets(cluster, p["traffic"], p["packets"], popularity=p["popularity"],
                      zipf_s=p["zipf_s"], seed=seed)
    n = len(pk)
    buckets, cmax = _conntrack_sizes(p)
    psvc = port_service(cluster)
    # live flows: uniform over service ports, to one of the Service's endpoints
    rng = np.random.default_rng(seed + 1)
    has_ep = np.diff(cluster.ep_ptr)[psvc] > 0
    cand = np.nonzero(has_ep)[0]
    if cand.size:
        lp = cand[rng.integers(0, cand.size, size=min(cand.size, 4096))]
        le = cluster.ep_ptr[psvc[lp]] + rng.integers(0, np.diff(cluster.ep_ptr)[psvc[lp]])
        ct_tab = ct.build_table(p["live_connections"], buckets, max_entries=cmax,
                                vip=cluster.svc_cluster_ip[psvc[lp]].astype(np.int64),
                                vport=cluster.port_port[lp].astype(np.int64),
                                ep=cluster.ep_ip[le].astype(np.int64),
                                eport=cluster.port_target[lp].astype(np.int64), seed=seed + 2)
    else:
        ct_tab = ct.build_table(p["live_connections"], buckets, max_entries=cmax, seed=seed + 2)
    n_est = p["established_packets"]
    est_ct = ct.established_probes(ct_tab, n_est, seed + 3).astype(np.float64)

    mode = p["mode"]
    out: dict = {}
    zeros = np.zeros(n)
    src = pk.src.astype(np.int64)
    sport = pk.sport.astype(np.int64)
    dst = pk.dst.astype(np.int64)
    dport = pk.dport.astype(np.int64)
    proto = pk.proto.astype(np.int64)
    counts = dict(rules=zeros, matches=zeros, jumps=zeros, hash_probes=zeros,
                  vmap_lookups=zeros, sched_steps=zeros, userspace_conns=zeros)
    if mode == "iptables":
        from kernels.iptables import TABLE_NAT, traverse

        ks = tables.find_chain("KUBE-SERVICES", TABLE_NAT)
        res = traverse(tables, pk, seed=seed, watch_chain=ks)
        rules = res.rules_evaluated.astype(np.float64)
        counts.update(rules=rules, matches=res.matches_tested - rules, jumps=res.jumps,
                      chain_bytes=cm.kube_services_bytes(tables.rules_per_chain()[ks]),
                      walked=res.watch_rules)
        reply_a = res.dnat_addr.astype(np.int64)
        reply_p = res.dnat_port.astype(np.int64)
        ops = rules
        hit = res.dnat.astype(bool)
        rc = tables.counts()
        rules_total, chains_total = rc["rules"], rc["chains"]
        mem = cm.iptables_bytes(tables.n_rules, int(tables.m_kind.shape[0]), tables.n_chains,
                                p["ncpu"])
        est = dict(conntrack_probes=est_ct)
    elif mode == "ipvs":
        conn = ipvs.build_conn_table(tables, p["live_connections"],
                                     conn_bits=p["conn_table_bits"], seed=seed + 4)
        choice, sched = _schedule(p, tables, cluster, pk, seed + 7)
        r = ipvs.first_packets(tables, conn, src, sport, dst, dport, proto, choice=choice)
        probes = r["set_probes"] + r["svc_probes"] + r["conn_probes"]
        counts.update(rules=r["rules"], matches=r["matches"], jumps=r["jumps"],
                      hash_probes=probes, sched_steps=sched)
        hit = r["dest"] >= 0
        reply_a = np.where(hit, tables.ep_ip[np.maximum(r["dest"], 0)], dst)
        reply_p = np.where(hit, tables.vs_target[np.maximum(r["vs"], 0)], dport)
        ops = (probes + r["rules"]).astype(np.float64)
        rules_total, chains_total = tables.iptables_rules, tables.iptables_chains
        sets = (tables.cluster_ip_set, tables.external_ip_set, tables.lb_set,
                tables.loopback_set)
        mem = (tables.virtual_servers * cm.IPVS_SERVICE_BYTES
               + tables.real_servers * cm.IPVS_DEST_BYTES
               + tables.local_addrs.shape[0] * cm.IPVS_VIP_BYTES
               + 2 * (1 << tables.svc_bits) * cm.HLIST_HEAD_BYTES
               + sum(cm.hash_table_bytes(1 << s.bits, s.elements, cm.IPSET_ELEM_BYTES)
                     for s in sets)
               + 2 * 65536 // 8 + cm.iptables_bytes(rules_total, 2 * rules_total, chains_total,
                                                     p["ncpu"]))
        est_conn = ipvs.established_probes(conn, n_est, seed + 5).astype(np.float64)
        est = dict(conntrack_probes=est_ct, hash_probes=est_conn)
        out.update(ipvs_virtual_servers=tables.virtual_servers,
                   ipvs_real_servers=tables.real_servers,
                   ipvs_svc_buckets=1 << tables.svc_bits,
                   ipvs_svc_chain_max=int(tables.svc_chain_lengths().max()),
                   svc_probes_mean=float(r["svc_probes"].mean()),
                   conn_probes_mean=float(r["conn_probes"].mean()),
                   established_conn_probes_mean=float(est_conn.mean()),
                   ipvs_conn_bytes=int(cm.hash_table_bytes(1 << p["conn_table_bits"],
                                                           p["live_connections"],
                                                           cm.IPVS_CONN_BYTES)))
    elif mode == "nftables":
        r = nft.first_packets(tables, src, dst, dport, proto, seed)
        counts.update(rules=r["rules"], jumps=r["jumps"], vmap_lookups=r["lookups"],
                      hash_probes=r["probes"])
        hit = r["dest"] >= 0
        d = np.maximum(r["dest"], 0)
        reply_a = np.where(hit, cluster.ep_ip[d].astype(np.int64), dst)
        reply_p = np.where(hit, cluster.port_target[np.maximum(pk.port, 0)].astype(np.int64),
                           dport)
        ops = (r["lookups"] + r["rules"] + r["probes"]).astype(np.float64)
        rules_total, chains_total = tables.rules_total, tables.chains_total
        mem = (tables.rules_total * cm.NFT_RULE_BYTES + tables.chains_total * cm.NFT_CHAIN_BYTES
               + tables.elements_total * cm.NFT_ELEM_BYTES
               + tables.buckets_total * cm.HLIST_HEAD_BYTES)
        est = dict(conntrack_probes=est_ct)
        out.update(nft_elements=tables.elements_total)
    else:
        r = us.first_packets(tables, dst, dport, proto, shuffle_seed=seed + 8)
        counts.update(rules=r["rules"], matches=r["matches"], jumps=r["jumps"],
                      sched_steps=r["sched_steps"], userspace_conns=r["conns"],
                      chain_bytes=cm.kube_services_bytes(tables.p_dst.shape[0]),
                      walked=r["rules"])
        hit = r["dest"] >= 0
        reply_a, reply_p = dst, dport  # REDIRECT to the proxy's local port
        ops = r["rules"].astype(np.float64)
        rules_total, chains_total = tables.rules_total, tables.chains_total
        mem = (cm.iptables_bytes(rules_total, 2 * tables.p_dst.shape[0]
                                 + 2 * tables.n_dport.shape[0], chains_total, p["ncpu"])
               + cluster.n_ports * cm.USERSPACE_SOCKET_BYTES)
        est_ct2 = ct.established_probes(ct_tab, n_est, seed + 6).astype(np.float64)
        est = dict(conntrack_probes=est_ct + est_ct2,
                   userspace_kb=np.full(n_est, p["packet_kb"]),
                   context_switches=np.full(n_est, float(us.PACKET_CONTEXT_SWITCHES)))
    ct_first = ct.first_packet_probes(ct_tab, src, sport, dst, dport, proto, reply_a,
                                      reply_p).astype(np.float64)
    cs = np.zeros(n)
    if mode == "userspace":
        # the proxy's own connection to the endpoint is a second tracked flow
        d = np.maximum(r["dest"], 0)
        node = int(cluster.node_ips[0])
        ep_a = cluster.ep_ip[d].astype(np.int64)
        ep_p = cluster.port_target[np.maximum(pk.port, 0)].astype(np.int64)
        ct2 = ct.first_packet_probes(ct_tab, np.full(n, node), sport, ep_a, ep_p, proto, ep_a,
                                     ep_p).astype(np.float64)
        ct_first = ct_first + np.where(hit, ct2, 0.0)
        cs = r["conns"] * float(us.CONN_CONTEXT_SWITCHES)
    first_ns = model.packet_ns(conntrack_probes=ct_first, context_switches=cs, **counts)
    est_ns = model.packet_ns(**est)
    out.update(
        first_packet_ops_mean=float(ops.mean()),
        first_packet_ops_p99=float(np.percentile(ops, 99)),
        first_packet_ns_mean=float(first_ns.mean()),
        first_packet_ns_p99=float(np.percentile(first_ns, 99)),
        established_packet_ns_mean=float(est_ns.mean()),
        established_packet_ns_p99=float(np.percentile(est_ns, 99)),
        rules_evaluated_mean=float(np.mean(counts["rules"])),
        matches_mean=float(np.mean(counts["matches"])),
        hash_probes_mean=float(np.mean(counts["hash_probes"])),
        lookups_mean=float(np.mean(counts["vmap_lookups"])),
        sched_steps_mean=float(np.mean(counts["sched_steps"])),
        conntrack_probes_first_mean=float(ct_first.mean()),
        conntrack_probes_established_mean=float(est_ct.mean()),
        hit_fraction=float(np.mean(hit)),
        rules_total=int(rules_total),
        chains_total=int(chains_total),
        kernel_memory_bytes=int(mem),
        conntrack_bytes=int(cm.hash_table_bytes(buckets, p["live_connections"],
                                                cm.CONNTRACK_ENTRY_BYTES)),
        conntrack_buckets_used=int(buckets),
        nodeport_services=int((cluster.svc_type == 1).sum()),
        nodeport_range="-".join(str(x) for x in _nodeport_plan(p)[1]),
        ops_definition=OPS_DEFINITION[mode],
    )
    return out


def warmup() -> None:
    """Compile every kernel on a tiny cluster (cached on disk after the first process)."""
    for mode in MODES:
        for traffic in TRAFFIC:
            run_point({"mode": mode, "services": 5, "endpoints_per_service": 2,
                       "traffic": traffic, "packets": 20, "established_packets": 20,
                       "live_connections": 20, "cluster_seed": 987654}, 1, {})
    _CLUSTERS.clear()
    _COMPILED.clear()


def _report(df, plots_dir):
    from harness.scaling_report import report

    return report(df, plots_dir)


KIND = Kind(
    name="scaling",
    summary="first/established packet cost of userspace, iptables, ipvs, nftables vs Services",
    params=PARAMS,
    run_point=run_point,
    warmup=warmup,
    report=_report,
    check=check,
    memory_bytes=memory_bytes,
)
