"""Kind `sync`: kube-proxy's rule-sync cost and network-programming latency under churn (issue 6).

One point = one dataplane mode at one cluster size and change rate: build the cluster
(kernels.cluster), size what each Service costs to rewrite (kernels.sync, spec B.1–B.3), draw a
stream of endpoint changes and run kube-proxy's bounded-frequency sync loop over it. Metrics: sync
duration (mean, p50, p99, max; full-sync and one-Service partial-sync cost), NPL p50/p90/p99,
share of a core spent syncing, backlog slope and keeps_up (see ``kernels.sync.summarize_sync``).
Cost parameters come from ``kernels.sync.COST_DEFAULTS``, overridden by the calibration dict
(``[costmodel]`` keys named ``sync_ns_*``).
"""

from __future__ import annotations

import inspect
import math
from pathlib import Path

import numpy as np
import pandas as pd

from harness.errors import UserError
from harness.kind import Kind, Param, Report
from kernels import sync as K
from kernels.cluster import build_cluster, parse_cidr

_POD_CIDR = inspect.signature(build_cluster).parameters["pod_cidr"].default
MAX_ENDPOINTS = parse_cidr(_POD_CIDR)[2] - 2
"""Endpoints that fit kernels.cluster's default pod CIDR (build_cluster raises beyond)."""
ENDPOINTS_BOUND = ("endpoints_per_service",
                   f"services × endpoints_per_service ≤ {MAX_ENDPOINTS:,} "
                   f"(pod CIDR /{_POD_CIDR.split('/')[1]})")

PARAMS = (
    Param("mode", str, "iptables", "kube-proxy mode (iptables = iptables-legacy)", choices=K.MODES),
    Param("services", int, 1000, "number of Services (ClusterIP)", min=1, max=1_000_000),
    Param("endpoints_per_service", int, 10, "endpoints of every Service", min=0, max=100_000),
    Param("ports_per_service", int, 1, "ports of every Service", min=1, max=100),
    Param("change_rate", float, 1.0, "endpoint changes per second (mean)", min=1e-4, max=1e5),
    Param("partial_sync", bool, True,
          "MinimizeIPTablesRestore-style partial syncs (ipvs: list only on full syncs, a what-if)"),
    Param("coalesce", bool, True,
          "one sync applies every pending change (kube-proxy); false = one change per sync"),
    Param("workload", str, "poisson", "change stream", choices=K.WORKLOADS),
    Param("burst_size", int, 50, "changes per burst (workload = burst)", min=1, max=1_000_000),
    Param("rolling_step_s", float, 1.0, "seconds between pod replacements (workload = rolling)",
          min=0.0, max=3600.0),
    Param("min_sync_period_s", float, 1.0, "BoundedFrequencyRunner minInterval (s)",
          min=0.0, max=3600.0),
    Param("max_interval_s", float, 30.0, "BoundedFrequencyRunner maxInterval (syncPeriod, s)",
          min=1e-3, max=1e7),
    Param("burst_syncs", int, 2, "BoundedFrequencyRunner burstRuns", min=1, max=1000),
    Param("full_sync_period_s", float, 3600.0,
          "proxyutil.FullSyncPeriod: a partial sync becomes full after this long (s)",
          min=1e-3, max=1e9),
    Param("horizon_s", float, 600.0, "changes arrive over [0, horizon) (s)", min=1.0, max=1e7),
    Param("drain_s", float, 0.0, "simulate this long after the horizon (s); 0 = horizon_s",
          min=0.0, max=1e8),
)

MAX_CHANGES = 50_000_000


def _costs(calibration: dict) -> dict[str, float]:
    table = calibration.get("costmodel", calibration)
    if not isinstance(table, dict):
        raise UserError(f"calibration: costmodel: expected a table, got {type(table).__name__}")
    costs = dict(K.COST_DEFAULTS)
    for key, value in table.items():
        if not str(key).startswith("sync_") or str(key).endswith("_se"):
            continue  # other families' parameters, and standard errors of the fits
        if key not in costs:
            known = ", ".join(sorted(costs))
            raise UserError(f"calibration: {key}: expected one of {known}, got an unknown key")
        if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
            raise UserError(f"calibration: {key}: expected a non-negative number of ns, "
                            f"got {value!r}")
        costs[key] = float(value)
    return costs


def _check(p: dict) -> tuple[str, str] | None:
    if p["services"] * p["endpoints_per_service"] > MAX_ENDPOINTS:
        return ENDPOINTS_BOUND
    if p["max_interval_s"] < p["min_sync_period_s"]:
        return "max_interval_s", f">= min_sync_period_s ({p['min_sync_period_s']})"
    if p["change_rate"] * p["horizon_s"] > MAX_CHANGES:
        return "horizon_s", f"change_rate x horizon_s <= {MAX_CHANGES:,} changes"
    return None


def _memory(p: dict) -> int:
    s = p["services"]
    eps = s * p["endpoints_per_service"]
    changes = p["change_rate"] * p["horizon_s"] * 1.2 + 100
    t_end = p["horizon_s"] + (p["drain_s"] or p["horizon_s"])
    syncs = changes + t_end / p["max_interval_s"]
    if p["min_sync_period_s"] > 0:
        syncs += t_end / p["min_sync_period_s"]
    # build_cluster temporaries (~40 B per endpoint), per-Service sizing arrays (~400 B per
    # Service), the change stream and the per-sync records.
    return int(eps * 40 + s * 400 + changes * 40 + syncs * (K.NOPS * 8 + 48)) + 2**20


def run_point(params: dict, seed: int, calibration: dict) -> dict:
    """Simulate one (mode, size, churn) point; see the module docstring for the metrics."""
    if _check(params) is not None:
        key, expected = _check(params)
        raise UserError(f"sync: {key}: expected {expected}, got {params[key]}")
    mode = params["mode"]
    costs = _costs(calibration)
    cluster = build_cluster(params["services"], params["endpoints_per_service"],
                            ports_per_service=params["ports_per_service"], seed=seed)
    sizes, const = K.sizes_from_cluster(mode, cluster)
    horizon = params["horizon_s"]
    t_end = horizon + (params["drain_s"] or horizon)
    arrivals, svcs = K.change_stream(
        params["workload"], params["change_rate"], horizon, cluster.n_services, seed,
        burst_size=params["burst_size"],
        rolling_endpoints=max(1, params["endpoints_per_service"]),
        rolling_step_s=params["rolling_step_s"],
    )
    cost = K.cost_vector(mode, costs)
    result = K.simulate_sync(
        arrivals, svcs, sizes, const, cost, mode,
        partial_sync=params["partial_sync"], coalesce=params["coalesce"],
        min_sync_period_s=params["min_sync_period_s"], max_interval_s=params["max_interval_s"],
        burst_syncs=params["burst_syncs"], full_sync_period_s=params["full_sync_period_s"],
        t_end=t_end,
    )
    out = K.summarize_sync(result, arrivals, horizon, t_end, params["change_rate"],
                           params["min_sync_period_s"])
    full_ops = K.sync_ops_once(mode, sizes, const, True)
    one_ops = K.sync_ops_once(mode, sizes, const, False, np.array([0]))
    out["full_sync_s"] = float(full_ops @ cost) * 1e-9
    out["partial_sync_one_s"] = float(one_ops @ cost) * 1e-9
    if mode == "ipvs":
        out["total_objects"] = int(sizes[:, K.SZ_VS].sum() + sizes[:, K.SZ_RS].sum())
    else:
        out["total_objects"] = int(full_ops[K.OP_RULES_WRITTEN])
    out["ns_per_rule_written"] = float(cost[K.OP_RULES_WRITTEN])
    out["ns_per_rule_table_copy"] = float(cost[K.OP_TABLE_COPY]) if mode == "iptables" else 0.0
    win = result["start"] < horizon
    ops = result["ops"][win]
    for name in ("rules_written", "ipvs_ops", "elements_written"):
        col = ops[:, K.OPS.index(name)]
        out[f"{name}_per_sync"] = float(col.mean()) if col.size else math.nan
    return out


def warmup() -> None:
    """Compile the sync kernels on a tiny cluster."""
    for mode in K.MODES:
        run_point({p.name: p.default for p in PARAMS} | {"mode": mode, "services": 3,
                                                          "horizon_s": 5.0}, 0, {})


def report(df: pd.DataFrame, plots: Path) -> Report:
    """Figures, headline table and findings (harness/sync_report.py)."""
    from harness.sync_report import build_report

    return build_report(df, plots)


KIND = Kind(
    name="sync",
    summary="kube-proxy rule-sync cost and network-programming latency under endpoint churn",
    params=PARAMS,
    run_point=run_point,
    warmup=warmup,
    report=report,
    check=_check,
    memory_bytes=_memory,
)
