"""Kind `fairness`: how evenly each balancer spreads connections and what that does to latency
(issue 5; spec A.3–A.9, B.1–B.4; scenarios and metrics in harness/connsim_scenarios.py).

One point = scheduler × scenario {equal_short, heterogeneous, long_lived, nat_clients} × backends
per Service × load ρ × Services, simulated connection by connection (kernels.connsim) with every
decision made by the real scheduler kernel (kernels.schedulers).

Columns: jain_index, peak_to_mean, cov (over per-backend connection counts, each divided by its
Service's mean), jain_active / peak_to_mean_active (time-averaged activeconns), stable (pooled
per Service × capacity class, configured load, backlog and per-backend tests; see
connsim_scenarios), max_group_load (largest pooled offered load of a Service × capacity-class
group), max_backend_load (largest per-backend offered load ρ_b, noisy with few connections per
backend), max_utilization, latency_mean / latency_p50 / p90 / p99 / p999 (per request, in units
of the mean service time; NaN when unstable), latency_warm (False: too few connections per
backend for the queues to warm up, latency biased low by the start-up transient; the report
leaves such points out of latency figures), latency_quantiles (JSON, levels
connsim_scenarios.Q_LEVELS), dropped_pct, decision_ns_mean (WALL-CLOCK ns per decision measured
on this machine by the harness over a batch after the run, JIT warm — not a model output, not
deterministic, excluded from the golden gate as ``decision_ns*``) and decision_scanned / probes
/ hashes / random / failed (operations per decision, counted by the scheduler kernels),
disruption_pct / optimal_disruption_pct / broken_connections_pct (NaN / 0: no churn here),
events, requests, simulated_s.
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
