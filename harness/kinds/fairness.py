"""Kind `fairness`: how evenly each balancer spreads connections and what that does to latency
(issue 5; spec A.3–A.9, B.1–B.4; scenarios and metrics in harness/connsim_scenarios.py).

One point = scheduler × scenario {equal_short, heterogeneous, long_lived, nat_clients} × backends
per Service × load ρ × Services, simulated connection by connection (kernels.connsim) with every
decision made by the real scheduler kernel (kernels.schedulers).

Columns: jain_index, peak_to_mean, cov (over per-backend connection counts, each divided by its
Service's mean), jain_active / peak_to_mean_active (time-averaged activeconns), stable,
max_backend_load (largest per-backend offered load ρ_b), max_utilization, latency_mean /
latency_p50 / p90 / p99 / p999 (per request, in units of the mean service time; NaN when
unstable), latency_quantiles (JSON, levels connsim_scenarios.Q_LEVELS), dropped_pct,
decision_ns_mean and decision_scanned / probes / hashes / random / failed (per decision, timed
on a batch after the run, JIT warm), disruption_pct / optimal_disruption_pct /
broken_connections_pct (NaN / 0: no churn here), events, requests, simulated_s.
"""

from __future__ import annotations

from harness import connsim_scenarios as C
from harness.fairness_report import report_fairness
from harness.kind import Kind

KIND = Kind(
    name="fairness",
    summary="Connection-level simulation: balance (Jain, peak-to-mean), latency and decision "
            "cost of every IPVS scheduler, iptables statistic, nftables numgen, userspace rr",
    params=C.common_params(C.FAIRNESS_SCENARIOS, "equal_short", 100_000),
    run_point=C.run_point,
    warmup=C.warmup,
    report=report_fairness,
    check=C.check_point,
    memory_bytes=C.memory_bytes,
)
