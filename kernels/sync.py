"""Control-plane cost: kube-proxy rule syncs, the sync runner, network-programming latency.

What is modelled (spec B.1 syncing, B.2, B.3 "Sync"):

* **Sizes.** Per Service, the objects kube-proxy writes when that Service changes, laid out as
  kube-proxy lays them out: iptables (spec B.1: per service port with ``n`` endpoints
  ``3n + 2`` nat rules, ``1 + n`` chains; +``n`` rules with ClientIP affinity; KUBE-EXT-* for
  NodePort/LoadBalancer; KUBE-FW-* for LB source ranges; filter REJECT rules for Services without
  endpoints), IPVS (spec B.2: one virtual server per (VIP, port), one real server per endpoint,
  ipset entries), nftables (spec B.3: service chain of 2 rules + one ``numgen`` vmap with ``n``
  elements, ``n`` endpoint chains of 2 rules, map elements). ``iptables_service_sizes`` and
  ``sizes_from_cluster`` compute them; nothing else in the kernel assumes a formula.
* **Sync cost.** Every sync counts the operations it performs (see ``OPS``) by walking the
  Services — all of them where kube-proxy does (Go-side rule generation, iptables-legacy table
  copy, nftables chain listing, IPVS listing) and the changed ones where it writes only those
  (partial sync) — and converts the counts to time with per-operation costs:

  - ``iptables`` (iptables-legacy): one ``iptables-restore``. Full sync writes every rule; partial
    sync (MinimizeIPTablesRestore) writes all top-level chains (KUBE-SERVICES, KUBE-NODEPORTS, …,
    rewritten on every sync, spec B.1) plus the chains of Services changed since the last sync.
    Legacy iptables-restore always fetches and replaces the whole table in the kernel, so every
    sync also copies every rule (``rules_table_copied``). Go generates all rules on every sync
    (unchanged ones go to a discard buffer, spec B.1). Full syncs also re-check the 12 jump
    rules with ``iptables -C``/``-I`` (EnsureRule); with legacy the three nat ones each load the
    whole nat table.
  - ``iptables-nft``: same restore input, a per-rule incremental netlink transaction, no
    whole-table copy.
  - ``ipvs``: per changed Service, real-server add/delete netlink operations for each of its
    virtual servers and the matching ipset (KUBE-LOOP-BACK) add/delete calls; a listing of every
    virtual server, real server and ipset entry on full syncs. With ``partial_sync=False`` every
    sync is full, which is what upstream does (its proxier lists all virtual and real servers on
    every sync — our reading of ``pkg/proxy/ipvs/proxier.go``; not in the spec, unconfirmed);
    ``partial_sync=True`` is a what-if that lists only on periodic full syncs.
  - ``nftables``: one ``nft`` transaction. Full sync rewrites every chain, rule and map element;
    partial sync rewrites the changed Services' chains and their vmap elements (spec B.3). Each
    sync lists the table's chains to find stale ones (issue kubernetes#139513: "we do the
    list/cleanup on every sync").

* **Periodic full sync.** With partial sync on, a sync is full when the last full sync started
  at least ``full_sync_period_s`` ago (``proxyutil.FullSyncPeriod``, PR #129329; the spec says
  the constant is unconfirmed, the PR title says one hour: default 3600 s, a parameter).
* **Sync loop.** ``BoundedFrequencyRunner`` as in
  ``pkg/util/async/bounded_frequency_runner.go`` (k8s ≤ v1.33): a token bucket
  (``golang.org/x/time/rate`` via ``flowcontrol``; rate 1/minInterval, capacity ``burst``,
  initially full) admits a run; a run request (one per change: ``proxier.Sync() → Run()``,
  a channel of capacity 1, so requests coalesce) that is refused
  re-arms the timer to ``min(minInterval − (now − lastRun), timer remaining)`` where ``lastRun``
  is the END of the previous run; after each run the timer is re-armed to ``maxInterval``.
  So admitted runs are spaced by the bucket (start to start), the timer path by completion.
  The
  function runs synchronously in the loop, so requests made during a run are served when it
  ends. ``syncProxyRules`` reads the change trackers when it starts, so a change is programmed
  at the END of the first sync that STARTS at or after it (the network-programming latency,
  NPL). Newer kube-proxy (``pkg/proxy/runner``, v1.34+) drops the token bucket; not modelled.
* **Coalescing.** kube-proxy is level-triggered: one sync applies every change pending at its
  start, so the work of a sync is bounded by a full sync and NPL stays bounded even when the
  loop is busy 100 % of the time. ``coalesce=False`` is a what-if (one change per sync, FIFO, as
  a per-change programmer would do) whose latency grows without bound once changes arrive
  faster than syncs complete; both are simulated, nothing is capped.

Simulation starts in steady state: the last sync (a full one) ended at t = 0, the token bucket is
full. Changes arrive over ``[0, horizon)``; the loop runs until ``t_end`` (draining). Changes not
programmed by ``t_end`` get censored latencies ``t_end − arrival`` (lower bounds, counted).

Cost parameters (ns; ``COST_DEFAULTS``; override with the calibration dict, keys as below). The
defaults are order-of-magnitude estimates until ``kpbench calibrate`` measures this machine:

* ``sync_ns_fixed`` = 5e6: per sync — fork/exec of iptables-restore / nft, lock, Go bookkeeping
  (estimate).
* ``sync_ns_per_exec`` = 2e6: each extra exec (EnsureRule ``iptables -C``) (estimate).
* ``sync_ns_per_service_port_go`` = 2000: Go work per service port per sync (estimate).
* ``sync_ns_per_rule_generate`` = 300: Go formats one rule line (estimate).
* ``sync_ns_per_rule_restore`` = 5000, ``sync_ns_per_chain_restore`` = 5000: iptables-legacy
  restore parses and applies one rule / chain line (estimate; kubernetes#96018: "with just
  iptables … performance issues with 100,000 or 150,000 lines").
* ``sync_ns_per_rule_table_copy`` = 500: iptables-legacy copies one rule of the table out of and
  back into the kernel (IPT_SO_GET_ENTRIES + IPT_SO_SET_REPLACE, translate_table) (estimate).
* ``sync_ns_per_rule_restore_nft`` = 18000, ``sync_ns_per_chain_restore_nft`` = 18000:
  iptables-nft restore per line (kubernetes#96018: 695,992 lines restored in 12.8 s).
* ``sync_ns_per_nft_rule`` = 2000, ``sync_ns_per_nft_chain`` = 2000,
  ``sync_ns_per_nft_element`` = 500: ``nft -f`` per rule / chain / element (estimate).
* ``sync_ns_per_nft_chain_listed`` = 10000: listing one chain (kubernetes#139513: 1.33 s
  incremental sync at 44,128 Services, dominated by the listing).
* ``sync_ns_per_ipvs_op`` = 20000: one IPVS netlink add/delete/update (estimate).
* ``sync_ns_per_ipvs_vs_listed`` = 20000: GetVirtualServer + GetRealServers requests per virtual
  server (estimate); ``sync_ns_per_ipvs_rs_listed`` = 1000 per real server dumped (estimate).
* ``sync_ns_per_ipset_op`` = 1e6: one ``ipset add/del`` exec (estimate);
  ``sync_ns_per_ipset_entry_listed`` = 500 per entry listed (estimate).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from kernels.ipvs import build_nat_rules as build_ipvs_nat_rules
from kernels.nftables import BASE_CHAIN_RULES as _NFT_BASE_CHAIN_RULES

MODES = ("iptables", "iptables-nft", "ipvs", "nftables")
MODE_IPTABLES, MODE_IPTABLES_NFT, MODE_IPVS, MODE_NFTABLES = 0, 1, 2, 3

WORKLOADS = ("poisson", "burst", "rolling")
WL_POISSON, WL_BURST, WL_ROLLING = 0, 1, 2

# Per-Service size columns (sizes[S, NSZ]).
SZ_PORTS, SZ_EPS, SZ_RULES, SZ_CHAINS, SZ_TOP_RULES, SZ_ELEMS, SZ_VS, SZ_RS = range(8)
NSZ = 8

OPS = (
    "syncs",
    "execs",
    "service_ports_go",
    "rules_generated",
    "rules_written",
    "chains_written",
    "rules_table_copied",
    "elements_written",
    "chains_listed",
    "ipvs_ops",
    "ipvs_vs_listed",
    "ipvs_rs_listed",
    "ipset_ops",
    "ipset_entries_listed",
)
(
    OP_SYNCS,
    OP_EXECS,
    OP_PORTS_GO,
    OP_RULES_GEN,
    OP_RULES_WRITTEN,
    OP_CHAINS_WRITTEN,
    OP_TABLE_COPY,
    OP_ELEMS_WRITTEN,
    OP_CHAINS_LISTED,
    OP_IPVS_OPS,
    OP_VS_LISTED,
    OP_RS_LISTED,
    OP_IPSET_OPS,
    OP_IPSET_LISTED,
) = range(len(OPS))
NOPS = len(OPS)

COST_DEFAULTS: dict[str, float] = {
    "sync_ns_fixed": 5e6,
    "sync_ns_per_exec": 2e6,
    "sync_ns_per_service_port_go": 2000.0,
    "sync_ns_per_rule_generate": 300.0,
    "sync_ns_per_rule_restore": 5000.0,
    "sync_ns_per_chain_restore": 5000.0,
    "sync_ns_per_rule_table_copy": 500.0,
    "sync_ns_per_rule_restore_nft": 18000.0,
    "sync_ns_per_chain_restore_nft": 18000.0,
    "sync_ns_per_nft_rule": 2000.0,
    "sync_ns_per_nft_chain": 2000.0,
    "sync_ns_per_nft_element": 500.0,
    "sync_ns_per_nft_chain_listed": 10000.0,
    "sync_ns_per_ipvs_op": 20000.0,
    "sync_ns_per_ipvs_vs_listed": 20000.0,
    "sync_ns_per_ipvs_rs_listed": 1000.0,
    "sync_ns_per_ipset_op": 1e6,
    "sync_ns_per_ipset_entry_listed": 500.0,
}

# Jump rules kube-proxy ensures on full syncs (spec B.1 `iptablesJumpChains`): 3 nat + 9 filter.
N_ENSURE_NAT = 3
N_ENSURE = 12
# Top-level chains rewritten on every iptables sync (spec B.1): nat KUBE-SERVICES, KUBE-NODEPORTS,
# KUBE-POSTROUTING, KUBE-MARK-MASQ; filter KUBE-SERVICES, KUBE-EXTERNAL-SERVICES, KUBE-NODEPORTS,
# KUBE-FORWARD, KUBE-PROXY-FIREWALL, KUBE-FIREWALL.
IPT_TOP_CHAINS = 10
# Fixed top-level rules: KUBE-SERVICES' last rule (→ KUBE-NODEPORTS), KUBE-POSTROUTING (3),
# KUBE-MARK-MASQ (1), KUBE-FORWARD (3).
IPT_TOP_FIXED_RULES = 8
# nftables (spec B.3): kube-proxy's fixed chains as kernels.nftables models them — 8 base chains
# (11 jump rules) + services, masquerading, mark-for-masquerade, firewall-check,
# service-endpoints-check, nodeport-endpoints-check, cluster-ips-check, reject-chain.
NFT_TOP_CHAINS = len(_NFT_BASE_CHAIN_RULES)
NFT_TOP_FIXED_RULES = sum(_NFT_BASE_CHAIN_RULES.values())


def cost_vector(mode: str, costs: dict[str, float]) -> np.ndarray:
    """ns per operation (indexed like ``OPS``) for ``mode``, from a full cost dict."""
    c = np.zeros(NOPS, dtype=np.float64)
    c[OP_SYNCS] = costs["sync_ns_fixed"]
    c[OP_EXECS] = costs["sync_ns_per_exec"]
    c[OP_PORTS_GO] = costs["sync_ns_per_service_port_go"]
    c[OP_RULES_GEN] = costs["sync_ns_per_rule_generate"]
    if mode == "iptables":
        c[OP_RULES_WRITTEN] = costs["sync_ns_per_rule_restore"]
        c[OP_CHAINS_WRITTEN] = costs["sync_ns_per_chain_restore"]
        c[OP_TABLE_COPY] = costs["sync_ns_per_rule_table_copy"]
    elif mode == "iptables-nft":
        c[OP_RULES_WRITTEN] = costs["sync_ns_per_rule_restore_nft"]
        c[OP_CHAINS_WRITTEN] = costs["sync_ns_per_chain_restore_nft"]
    elif mode == "ipvs":
        c[OP_RULES_WRITTEN] = costs["sync_ns_per_rule_restore"]
        c[OP_CHAINS_WRITTEN] = costs["sync_ns_per_chain_restore"]
        c[OP_TABLE_COPY] = costs["sync_ns_per_rule_table_copy"]
    else:
        c[OP_RULES_WRITTEN] = costs["sync_ns_per_nft_rule"]
        c[OP_CHAINS_WRITTEN] = costs["sync_ns_per_nft_chain"]
    c[OP_ELEMS_WRITTEN] = costs["sync_ns_per_nft_element"]
    c[OP_CHAINS_LISTED] = costs["sync_ns_per_nft_chain_listed"]
    c[OP_IPVS_OPS] = costs["sync_ns_per_ipvs_op"]
    c[OP_VS_LISTED] = costs["sync_ns_per_ipvs_vs_listed"]
    c[OP_RS_LISTED] = costs["sync_ns_per_ipvs_rs_listed"]
    c[OP_IPSET_OPS] = costs["sync_ns_per_ipset_op"]
    c[OP_IPSET_LISTED] = costs["sync_ns_per_ipset_entry_listed"]
    return c


# ------------------------------------------------------------------------------------ sizing


def iptables_service_sizes(
    endpoints: np.ndarray,
    ports: np.ndarray,
    svc_type: np.ndarray,
    n_external_ips: np.ndarray | None = None,
    n_lb_ips: np.ndarray | None = None,
    n_source_ranges: np.ndarray | None = None,
    affinity: np.ndarray | None = None,
    masquerade_rule: bool = True,
) -> dict[str, np.ndarray]:
    """kube-proxy iptables rules and chains per Service (spec B.1), Cluster traffic policies.

    Returns int64 arrays of length S:

    * ``svc_rules``: rules in the Service's own chains (KUBE-SVC/SEP/EXT/FW), written on a
      partial sync only when the Service changed. Per service port with ``n > 0`` endpoints:
      SVC ``masq + n`` (+``n`` affinity), SEPs ``2n``; EXT ``2`` for NodePort/LoadBalancer;
      FW ``#ranges + 1`` for LB source ranges.
    * ``svc_chains``: those chains: ``1 + n`` per port, +1 EXT, +1 FW.
    * ``top_rules``: rules the Service adds to top-level chains, rewritten on every sync:
      KUBE-SERVICES 1 per port + 1 per external/LB IP, KUBE-NODEPORTS 1 per NodePort port; with
      no endpoints instead filter REJECTs: 1 per port + external/LB IPs, +1 per NodePort port;
      KUBE-PROXY-FIREWALL one DROP per LB IP of a Service with source ranges.
    * ``nat_rules_per_port``: nat rules per service port = ``3n + 2`` with the masquerade rule
      (spec B.1 "Per service port … = 3n + 2").

    ``svc_type``: 0 ClusterIP, 1 NodePort, 2 LoadBalancer, 3 ExternalName (no rules).
    Local traffic policies are counted as Cluster (not modelled here).
    """
    eps = np.asarray(endpoints, dtype=np.int64)
    prt = np.asarray(ports, dtype=np.int64)
    typ = np.asarray(svc_type, dtype=np.int64)
    s = eps.shape[0]
    if prt.shape != (s,) or typ.shape != (s,):
        raise ValueError("endpoints, ports, svc_type: expected arrays of one length")
    if (eps < 0).any() or (prt < 0).any():
        raise ValueError("endpoints, ports: expected non-negative counts")
    zeros = np.zeros(s, dtype=np.int64)
    ext = zeros if n_external_ips is None else np.asarray(n_external_ips, dtype=np.int64)
    lbs = zeros if n_lb_ips is None else np.asarray(n_lb_ips, dtype=np.int64)
    rng = zeros if n_source_ranges is None else np.asarray(n_source_ranges, dtype=np.int64)
    aff = zeros if affinity is None else np.asarray(affinity, dtype=np.int64)
    dataplane = typ != 3
    prt = np.where(dataplane, prt, 0)
    has_np = (typ == 1) | (typ == 2)
    live = eps > 0
    masq = 1 if masquerade_rule else 0
    svc_chain_rules = masq + eps + aff * eps
    sep_rules = 2 * eps
    ext_rules = np.where(has_np | (ext > 0) | (lbs > 0), 2, 0)
    # KUBE-FW-X: one rule per source range, then a comment-only "other traffic … will be dropped
    # by KUBE-PROXY-FIREWALL" rule (LB-IP rules for a node inside a range are not counted).
    fw_rules = np.where(rng > 0, rng + 1, 0)
    per_port_rules = svc_chain_rules + sep_rules + ext_rules + fw_rules
    per_port_chains = 1 + eps + (ext_rules > 0) + (fw_rules > 0)
    svc_rules = np.where(live, prt * per_port_rules, 0)
    svc_chains = np.where(live, prt * per_port_chains, 0)
    # live: KUBE-SERVICES jumps + KUBE-NODEPORTS; no endpoints: the same number of REJECTs.
    top_rules = prt * (1 + ext + lbs + has_np + np.where(live & (rng > 0), lbs, 0))
    return {
        "svc_rules": svc_rules.astype(np.int64),
        "svc_chains": svc_chains.astype(np.int64),
        "top_rules": np.where(dataplane, top_rules, 0).astype(np.int64),
        "nat_rules_per_port": np.where(live, 1 + svc_chain_rules + sep_rules, 0).astype(np.int64),
    }


def sizes_from_counts(
    mode: str,
    endpoints: np.ndarray,
    ports: np.ndarray,
    svc_type: np.ndarray,
    n_external_ips: np.ndarray | None = None,
    n_lb_ips: np.ndarray | None = None,
    n_source_ranges: np.ndarray | None = None,
    affinity: np.ndarray | None = None,
    n_node_ips: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-Service sizes ``int64[S, NSZ]`` and top-level constants ``int64[3]`` for ``mode``.

    Constants: (fixed top-level rules, top-level chains, nat jump rules re-checked on full sync).
    """
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
    eps = np.asarray(endpoints, dtype=np.int64)
    typ = np.asarray(svc_type, dtype=np.int64)
    s = eps.shape[0]
    dataplane = typ != 3
    prt = np.where(dataplane, np.asarray(ports, dtype=np.int64), 0)
    zeros = np.zeros(s, dtype=np.int64)
    ext = zeros if n_external_ips is None else np.asarray(n_external_ips, dtype=np.int64)
    lbs = zeros if n_lb_ips is None else np.asarray(n_lb_ips, dtype=np.int64)
    rngs = zeros if n_source_ranges is None else np.asarray(n_source_ranges, dtype=np.int64)
    aff = zeros if affinity is None else np.asarray(affinity, dtype=np.int64)
    has_np = ((typ == 1) | (typ == 2)).astype(np.int64)
    live = eps > 0
    sz = np.zeros((s, NSZ), dtype=np.int64)
    sz[:, SZ_PORTS] = prt
    sz[:, SZ_EPS] = eps
    if mode in ("iptables", "iptables-nft"):
        ipt = iptables_service_sizes(eps, prt, typ, ext, lbs, rngs, aff)
        sz[:, SZ_RULES] = ipt["svc_rules"]
        sz[:, SZ_CHAINS] = ipt["svc_chains"]
        sz[:, SZ_TOP_RULES] = ipt["top_rules"]
        const = np.array([IPT_TOP_FIXED_RULES, IPT_TOP_CHAINS, N_ENSURE_NAT], dtype=np.int64)
    elif mode == "ipvs":
        vs = prt * (1 + ext + lbs + has_np * n_node_ips)
        sz[:, SZ_VS] = vs
        sz[:, SZ_RS] = vs * eps
        # ipsets (spec B.2): KUBE-CLUSTER-IP per port, KUBE-LOOP-BACK per endpoint and port,
        # KUBE-EXTERNAL-IP / KUBE-LOAD-BALANCER per IP and port, KUBE-NODE-PORT-* per NodePort.
        sz[:, SZ_ELEMS] = prt * (1 + eps + ext + lbs + has_np)
        # ipvs mode's constant nat rules and chains (spec B.2), as kernels.ipvs lays them out for
        # this cluster (rules on empty ipsets are left out, as kube-proxy does); the builtin
        # PREROUTING and POSTROUTING are not kube-proxy's chains to write.
        nat = build_ipvs_nat_rules(0, 0, bool(ext.sum()), bool(lbs.sum()), bool(rngs.sum()))
        const = np.array([nat.rules, nat.chains - 2, N_ENSURE_NAT], dtype=np.int64)
    else:
        ext_chain = ((has_np + ext + lbs) > 0).astype(np.int64)
        fw_chain = (rngs > 0).astype(np.int64)
        # service chain: masquerade rule + numgen vmap rule (+ n affinity rules); endpoint chain:
        # hairpin masquerade + dnat (+ affinity update); external: 2; firewall: 1.
        per_port_rules = 2 + aff * eps + eps * (2 + aff) + 2 * ext_chain + fw_chain
        per_port_chains = 1 + eps + ext_chain + fw_chain
        sz[:, SZ_RULES] = np.where(live, prt * per_port_rules, 0)
        sz[:, SZ_CHAINS] = np.where(live, prt * per_port_chains, 0)
        # service-ips (ClusterIP, external, LB) + service-nodeports + cluster-ips set + vmap
        # elements; with no endpoints: no-endpoint-services/-nodeports instead of service maps.
        sz[:, SZ_ELEMS] = prt * (1 + ext + lbs + has_np + 1 + np.where(live, eps, 0))
        const = np.array([NFT_TOP_FIXED_RULES, NFT_TOP_CHAINS, 0], dtype=np.int64)
    sz[~dataplane, :] = 0
    return sz, const


def sizes_from_cluster(mode: str, cluster) -> tuple[np.ndarray, np.ndarray]:
    """``sizes_from_counts`` for a ``kernels.cluster.Cluster``."""
    return sizes_from_counts(
        mode,
        np.diff(cluster.ep_ptr),
        np.diff(cluster.port_ptr),
        cluster.svc_type,
        np.diff(cluster.extip_ptr),
        np.diff(cluster.lb_ptr),
        np.diff(cluster.src_ptr),
        cluster.svc_affinity.astype(np.int64),
        int(cluster.node_ips.shape[0]),
    )


# ------------------------------------------------------------------------------ change stream


@njit(cache=True)
def _changes(workload, rate, horizon, n_services, burst_size, rolling_eps, rolling_step, seed):
    np.random.seed(seed)
    if workload == WL_POISSON:
        group_rate = rate
        group = 1
    elif workload == WL_BURST:
        group_rate = rate / burst_size
        group = burst_size
    else:
        group = 2 * rolling_eps
        group_rate = rate / group
    cap = int(rate * horizon + 10.0 * math.sqrt(rate * horizon + 1.0) + 16) + 2 * group
    times = np.empty(cap, dtype=np.float64)
    svcs = np.empty(cap, dtype=np.int64)
    n = 0
    t = np.random.exponential(1.0 / group_rate)
    while t < horizon:
        s = np.random.randint(0, n_services)
        for k in range(group):
            if n == times.shape[0]:
                times = np.concatenate((times, np.empty(times.shape[0], dtype=np.float64)))
                svcs = np.concatenate((svcs, np.empty(svcs.shape[0], dtype=np.int64)))
            tk = t
            if workload == WL_ROLLING:
                tk = t + k * rolling_step
                if tk >= horizon:
                    break
            elif k > 0:
                s = np.random.randint(0, n_services)
            times[n] = tk
            svcs[n] = s
            n += 1
        t += np.random.exponential(1.0 / group_rate)
    times = times[:n]
    svcs = svcs[:n]
    order = np.argsort(times, kind="mergesort")
    return times[order], svcs[order]


def change_stream(
    workload: str,
    rate: float,
    horizon: float,
    n_services: int,
    seed: int,
    burst_size: int = 50,
    rolling_endpoints: int = 10,
    rolling_step_s: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Endpoint changes over ``[0, horizon)``: sorted times (s) and the Service each touches.

    ``poisson``: rate ``rate``/s, Services uniform. ``burst``: groups of ``burst_size`` changes at
    one instant (a node failing, a scale-up), groups Poisson at ``rate / burst_size``, Services
    uniform. ``rolling``: rolling updates of a Deployment of ``rolling_endpoints`` pods behind one
    Service, one pod at a time: ``2 × rolling_endpoints`` changes (new pod ready, old one
    removed) every ``rolling_step_s``; updates start Poisson so the mean change rate is ``rate``.
    """
    if workload not in WORKLOADS:
        raise ValueError(f"workload: expected one of {WORKLOADS}, got {workload!r}")
    if rate <= 0 or horizon <= 0 or n_services < 1:
        raise ValueError("rate, horizon, n_services: expected positive values")
    if burst_size < 1 or rolling_endpoints < 1 or rolling_step_s < 0:
        raise ValueError("burst_size, rolling_endpoints, rolling_step_s: expected >= 1, >= 1, >= 0")
    return _changes(
        WORKLOADS.index(workload),
        float(rate),
        float(horizon),
        int(n_services),
        int(burst_size),
        int(rolling_endpoints),
        float(rolling_step_s),
        int(seed),
    )


# ---------------------------------------------------------------------------------- sync loop


@njit(cache=True)
def _sync_ops(mode, full, sizes, const, dirty_list, n_dirty, dirty_count, ops):
    """Count one sync's operations into ``ops`` (length NOPS) by walking the Services."""
    s_count = sizes.shape[0]
    for k in range(NOPS):
        ops[k] = 0.0
    ops[OP_SYNCS] = 1.0
    ports = 0
    all_rules = 0
    all_top = 0
    all_chains = 0
    all_elems = 0
    all_vs = 0
    all_rs = 0
    for s in range(s_count):
        ports += sizes[s, SZ_PORTS]
        all_rules += sizes[s, SZ_RULES]
        all_top += sizes[s, SZ_TOP_RULES]
        all_chains += sizes[s, SZ_CHAINS]
        all_elems += sizes[s, SZ_ELEMS]
        all_vs += sizes[s, SZ_VS]
        all_rs += sizes[s, SZ_RS]
    d_rules = 0
    d_chains = 0
    d_vmap = 0
    d_rs_ops = 0
    d_ipset_ops = 0
    for j in range(n_dirty):
        s = dirty_list[j]
        d_rules += sizes[s, SZ_RULES]
        d_chains += sizes[s, SZ_CHAINS]
        d_vmap += sizes[s, SZ_PORTS] * sizes[s, SZ_EPS]
        replaced = min(dirty_count[s], sizes[s, SZ_EPS])
        if sizes[s, SZ_EPS] == 0:
            replaced = min(dirty_count[s], 1)
        d_rs_ops += 2 * replaced * sizes[s, SZ_VS]
        d_ipset_ops += 2 * replaced * sizes[s, SZ_PORTS]
    top_rules = all_top + const[0]
    total_rules = all_rules + top_rules
    ops[OP_PORTS_GO] = ports
    if mode == MODE_IPTABLES or mode == MODE_IPTABLES_NFT:
        ops[OP_RULES_GEN] = total_rules
        if full:
            ops[OP_RULES_WRITTEN] = total_rules
            ops[OP_CHAINS_WRITTEN] = all_chains + const[1]
            ops[OP_EXECS] = N_ENSURE
        else:
            ops[OP_RULES_WRITTEN] = top_rules + d_rules
            ops[OP_CHAINS_WRITTEN] = const[1] + d_chains
        if mode == MODE_IPTABLES:
            ops[OP_TABLE_COPY] = total_rules
            if full:
                ops[OP_TABLE_COPY] += const[2] * total_rules
    elif mode == MODE_NFTABLES:
        ops[OP_CHAINS_LISTED] = all_chains + const[1]
        if full:
            ops[OP_RULES_GEN] = total_rules
            ops[OP_RULES_WRITTEN] = total_rules
            ops[OP_CHAINS_WRITTEN] = all_chains + const[1]
            ops[OP_ELEMS_WRITTEN] = all_elems
        else:
            ops[OP_RULES_GEN] = d_rules
            ops[OP_RULES_WRITTEN] = d_rules
            ops[OP_CHAINS_WRITTEN] = d_chains
            ops[OP_ELEMS_WRITTEN] = d_vmap
    else:
        ops[OP_RULES_GEN] = const[0]
        ops[OP_RULES_WRITTEN] = const[0]
        ops[OP_CHAINS_WRITTEN] = const[1]
        ops[OP_TABLE_COPY] = const[0]
        ops[OP_IPVS_OPS] = d_rs_ops
        ops[OP_IPSET_OPS] = d_ipset_ops
        if full:
            ops[OP_VS_LISTED] = all_vs
            ops[OP_RS_LISTED] = all_rs
            ops[OP_IPSET_LISTED] = all_elems


@njit(cache=True)
def _sync_loop(
    arr_t,
    arr_svc,
    sizes,
    const,
    cost_ns,
    mode,
    partial,
    coalesce,
    min_interval,
    max_interval,
    burst,
    full_period,
    t_end,
):
    n = arr_t.shape[0]
    s_count = sizes.shape[0]
    cap = n + 16 + int(t_end / max_interval) + burst
    if min_interval > 0.0:
        cap += int(t_end / min_interval)
    sync_start = np.empty(cap, dtype=np.float64)
    sync_dur = np.empty(cap, dtype=np.float64)
    sync_full = np.empty(cap, dtype=np.bool_)
    sync_first = np.empty(cap, dtype=np.int64)  # first change index it programs
    sync_count = np.empty(cap, dtype=np.int64)  # changes it programs
    sync_pending = np.empty(cap, dtype=np.int64)  # arrived-but-unprogrammed at its start
    sync_ops = np.zeros((cap, NOPS), dtype=np.float64)
    done_t = np.full(n, np.nan)

    dirty = np.zeros(s_count, dtype=np.bool_)
    dirty_count = np.zeros(s_count, dtype=np.int64)
    dirty_list = np.empty(s_count, dtype=np.int64)
    ops = np.zeros(NOPS, dtype=np.float64)

    eps = 1e-9
    t = 0.0
    tokens = float(burst)
    tok_t = 0.0
    last_run = 0.0
    last_full = 0.0
    deadline = max_interval
    run_req = False
    i_seen = 0  # arrivals that have called Run()
    i_snap = 0  # arrivals already taken by a sync
    n_sync = 0
    while True:
        if run_req:
            run_req = False
        else:
            nxt = arr_t[i_seen] if i_seen < n else np.inf
            if nxt <= deadline:
                if nxt > t_end:
                    break
                t = nxt
                while i_seen < n and arr_t[i_seen] <= t:
                    i_seen += 1
            else:
                if deadline > t_end:
                    break
                t = deadline
        # tryRun at t
        if min_interval > 0.0:
            tok = min(float(burst), tokens + (t - tok_t) / min_interval)
            ok = tok >= 1.0 - eps
        else:
            tok = float(burst)
            ok = True
        if not ok:
            next_possible = min_interval - (t - last_run)
            if next_possible <= 0.0:
                next_possible = (1.0 - tok) * min_interval
            if next_possible < deadline - t:
                deadline = t + next_possible
            continue
        if min_interval > 0.0:
            tokens = tok - 1.0
            tok_t = t
        # syncProxyRules at s = t: snapshot the pending changes.
        s0 = t
        pending = i_seen - i_snap
        first = i_snap
        if coalesce:
            take = pending
        else:
            take = 1 if pending > 0 else 0
        n_dirty = 0
        for k in range(i_snap, i_snap + take):
            sv = arr_svc[k]
            if not dirty[sv]:
                dirty[sv] = True
                dirty_list[n_dirty] = sv
                n_dirty += 1
            dirty_count[sv] += 1
        i_snap += take
        full = (not partial) or (s0 - last_full >= full_period)
        _sync_ops(mode, full, sizes, const, dirty_list, n_dirty, dirty_count, ops)
        dur = 0.0
        for k in range(NOPS):
            dur += ops[k] * cost_ns[k]
            sync_ops[n_sync, k] = ops[k]
        dur *= 1e-9
        e = s0 + dur
        for j in range(n_dirty):
            sv = dirty_list[j]
            dirty[sv] = False
            dirty_count[sv] = 0
        for k in range(first, first + take):
            done_t[k] = e
        if full:
            last_full = s0
        sync_start[n_sync] = s0
        sync_dur[n_sync] = dur
        sync_full[n_sync] = full
        sync_first[n_sync] = first
        sync_count[n_sync] = take
        sync_pending[n_sync] = pending
        n_sync += 1
        # the loop was blocked in fn: Run() calls during (s0, e] left one request in the channel.
        t = e
        if i_seen < n and arr_t[i_seen] <= e:
            run_req = True
            while i_seen < n and arr_t[i_seen] <= e:
                i_seen += 1
        if (not coalesce) and i_snap < i_seen:
            run_req = True
        last_run = e
        deadline = e + max_interval
        if t > t_end:
            break
        if n_sync == cap:
            raise RuntimeError("sync loop: more syncs than the token bucket allows (model bug)")
    return (
        done_t,
        sync_start[:n_sync],
        sync_dur[:n_sync],
        sync_full[:n_sync],
        sync_first[:n_sync],
        sync_count[:n_sync],
        sync_pending[:n_sync],
        sync_ops[:n_sync],
    )


def simulate_sync(
    arrivals: np.ndarray,
    services: np.ndarray,
    sizes: np.ndarray,
    const: np.ndarray,
    cost_ns: np.ndarray,
    mode: str,
    *,
    partial_sync: bool = True,
    coalesce: bool = True,
    min_sync_period_s: float = 1.0,
    max_interval_s: float = 30.0,
    burst_syncs: int = 2,
    full_sync_period_s: float = 3600.0,
    t_end: float,
) -> dict[str, np.ndarray]:
    """Run kube-proxy's sync loop over a change stream (see module docstring).

    Returns arrays: ``done_t[n]`` (time each change reached the kernel; NaN if not by ``t_end``),
    per sync ``start``, ``duration`` (s), ``full``, ``first``/``count`` (the changes it
    programs), ``pending`` (arrived-but-unprogrammed changes at its start), ``ops[n_sync, NOPS]``.
    """
    arrivals = np.ascontiguousarray(arrivals, dtype=np.float64)
    services = np.ascontiguousarray(services, dtype=np.int64)
    sizes = np.ascontiguousarray(sizes, dtype=np.int64)
    const = np.ascontiguousarray(const, dtype=np.int64)
    cost_ns = np.ascontiguousarray(cost_ns, dtype=np.float64)
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
    if arrivals.shape != services.shape or arrivals.ndim != 1:
        raise ValueError("arrivals, services: expected 1-D arrays of one length")
    if arrivals.size and (np.diff(arrivals) < 0).any():
        raise ValueError("arrivals: expected sorted times")
    if sizes.ndim != 2 or sizes.shape[1] != NSZ or sizes.shape[0] < 1:
        raise ValueError(f"sizes: expected int64[S, {NSZ}] with S >= 1")
    if services.size and (services.min() < 0 or services.max() >= sizes.shape[0]):
        raise ValueError("services: expected indices into sizes")
    if const.shape != (3,) or cost_ns.shape != (NOPS,):
        raise ValueError(f"const, cost_ns: expected shapes (3,), ({NOPS},)")
    if (cost_ns < 0).any():
        raise ValueError("cost_ns: expected non-negative costs")
    if min_sync_period_s < 0 or max_interval_s <= 0 or max_interval_s < min_sync_period_s:
        raise ValueError("max_interval_s: expected > 0 and >= min_sync_period_s")
    if burst_syncs < 1 or full_sync_period_s <= 0 or t_end <= 0:
        raise ValueError("burst_syncs, full_sync_period_s, t_end: expected positive values")
    out = _sync_loop(
        arrivals,
        services,
        sizes,
        const,
        cost_ns,
        MODES.index(mode),
        bool(partial_sync),
        bool(coalesce),
        float(min_sync_period_s),
        float(max_interval_s),
        int(burst_syncs),
        float(full_sync_period_s),
        float(t_end),
    )
    keys = ("done_t", "start", "duration", "full", "first", "count", "pending", "ops")
    return dict(zip(keys, out, strict=True))


def sync_ops_once(
    mode: str, sizes: np.ndarray, const: np.ndarray, full: bool, dirty: np.ndarray | None = None
) -> np.ndarray:
    """Operation counts (``OPS``) of one sync that has the Services ``dirty`` changed once each."""
    sizes = np.ascontiguousarray(sizes, dtype=np.int64)
    d = np.zeros(0, dtype=np.int64) if dirty is None else np.asarray(dirty, dtype=np.int64)
    counts = np.zeros(sizes.shape[0], dtype=np.int64)
    counts[d] = 1
    ops = np.zeros(NOPS, dtype=np.float64)
    _sync_ops(
        MODES.index(mode),
        bool(full),
        sizes,
        np.ascontiguousarray(const, dtype=np.int64),
        np.ascontiguousarray(d),
        d.shape[0],
        counts,
        ops,
    )
    return ops


NPL_SLO_S = 30.0
"""Kubernetes scalability SLO for network programming latency: p99 <= 30 s
(kubernetes/community sig-scalability/slos/network_programming_latency.md)."""


def summarize_sync(
    result: dict[str, np.ndarray],
    arrivals: np.ndarray,
    horizon: float,
    t_end: float,
    rate: float,
    min_interval: float = 1.0,
    keeps_up_tolerance: float = 0.05,
) -> dict[str, float | bool | int]:
    """Scalar metrics of one simulated sync loop (seconds unless named otherwise).

    Syncs count if they start before ``horizon``. NPL of a change not programmed by ``t_end``
    is censored at ``t_end − arrival`` (a lower bound); ``npl_censored_frac`` says how many.

    Backlog B(t) = changes arrived by t but not yet in the kernel, sampled on 2,000 instants of
    ``[horizon/4, horizon)`` (after the start-up transient); ``backlog_slope`` is its
    least-squares slope (changes/s). A coalescing loop that keeps up holds every change for at
    most one running sync, a wait and one more sync, so B stays within the arrivals of a window
    ``w = 2 × longest sync + min_interval``. ``keeps_up`` is False when B grows — slope above
    ``keeps_up_tolerance × rate`` AND a rise over the fit window larger than ``rate × w`` plus
    three Poisson standard deviations of it — or when changes are still unprogrammed at
    ``t_end``. ``saturated``: syncing takes at least 95 % of a core.
    ``pending_age_s_max_q2`` / ``_q4``: the oldest unprogrammed change's age, maximised over the
    second and the fourth quarter of the horizon (not censored: grows with time iff the loop
    falls behind).
    """
    arrivals = np.asarray(arrivals, dtype=np.float64)
    done = result["done_t"]
    censored = np.isnan(done)
    npl = np.where(censored, t_end - arrivals, done - arrivals)
    start, dur = result["start"], result["duration"]
    win = start < horizon
    busy = np.clip(np.minimum(start + dur, horizon) - start, 0.0, None)[win].sum()
    d = dur[win]
    out: dict[str, float | bool | int] = {
        "n_changes": int(arrivals.size),
        "n_syncs": int(win.sum()),
        "n_full_syncs": int(result["full"][win].sum()),
        "sync_s_mean": float(d.mean()) if d.size else math.nan,
        "sync_s_p50": float(np.percentile(d, 50)) if d.size else math.nan,
        "sync_s_p99": float(np.percentile(d, 99)) if d.size else math.nan,
        "sync_s_max": float(d.max()) if d.size else math.nan,
        "sync_cpu_share": float(busy / horizon),
        "changes_per_sync": float(result["count"][win].mean()) if d.size else math.nan,
    }
    for q in (50, 90, 99):
        out[f"npl_s_p{q}"] = float(np.percentile(npl, q)) if npl.size else math.nan
    out["npl_s_mean"] = float(npl.mean()) if npl.size else math.nan
    out["npl_s_max"] = float(npl.max()) if npl.size else math.nan
    out["npl_censored_frac"] = float(censored.mean()) if npl.size else 0.0
    first = arrivals < horizon / 2
    for name, mask in (("first_half", first), ("second_half", ~first)):
        out[f"npl_s_p99_{name}"] = (
            float(np.percentile(npl[mask], 99)) if mask.any() else math.nan
        )
    grid = np.linspace(horizon / 4, horizon, 2000, endpoint=False)
    programmed = np.sort(done[~censored])
    backlog = np.searchsorted(arrivals, grid, side="right") - np.searchsorted(
        programmed, grid, side="right"
    )
    slope = float(np.polyfit(grid, backlog.astype(np.float64), 1)[0])
    longest = float(dur.max()) if dur.size else 0.0
    swing = rate * (2.0 * longest + min_interval)
    rise = slope * (grid[-1] - grid[0])
    grows = slope > keeps_up_tolerance * rate and rise > swing + 3.0 * math.sqrt(swing + 1.0)
    out["backlog_slope"] = slope
    out["backlog_at_horizon"] = int(
        np.searchsorted(arrivals, horizon, side="left")
        - np.searchsorted(programmed, horizon, side="right")
    )
    # age of the oldest unprogrammed change (programming is FIFO: done_t is non-decreasing)
    done_inf = np.where(censored, np.inf, done)
    for name, lo, hi in (("q2", 0.25, 0.5), ("q4", 0.75, 1.0)):
        ts = np.linspace(lo * horizon, hi * horizon, 500, endpoint=False)
        idx = np.searchsorted(done_inf, ts, side="right")
        safe = np.minimum(idx, max(arrivals.size - 1, 0))
        age = np.where((idx < arrivals.size) & (arrivals[safe] <= ts), ts - arrivals[safe], 0.0)
        out[f"pending_age_s_max_{name}"] = float(age.max()) if arrivals.size else 0.0
    out["keeps_up"] = bool(not grows and not censored.any())
    out["saturated"] = bool(out["sync_cpu_share"] >= 0.95)
    out["meets_npl_slo"] = bool(out["npl_s_p99"] <= NPL_SLO_S)
    return out
