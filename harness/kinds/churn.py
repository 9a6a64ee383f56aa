"""Kind `churn`: what backend changes do to flows and live connections (issue 5; spec A.3–A.10,
B.2 graceful termination; scenarios in harness/connsim_scenarios.py).

One point = scheduler × scenario {restart, scale_up_4_5, scale_down_5_4, rolling_update} ×
backends × load ρ × Services; keepalive connections, churn on Service 0 at mid-run.

Columns: everything the `fairness` kind reports, plus disruption_pct (share of a fixed sample of
flow keys whose backend changes per backend-set change, mean over the changes; hashing
schedulers dh, sh, mh only — NaN for the others, whose choice for a key depends on the order
keys are scheduled in and the counters they leave, not on the key; a removal is measured after
the real server is unlinked, whereas kube-proxy first sets weight 0 and drains it, during which
mh and sh without fallback drop the removed server's keys instead of moving them — the
simulation models that drain, see dropped_pct, kernels.connsim.key_disruption),
optimal_disruption_pct (k/N for k of N removed, k/(N+k) added), live_at_churn (connections of
Service 0 live at the removal/crash events, summed), broken_connections (live connections reset
by dying pods), broken_connections_pct (per 100 of live_at_churn), refused_connections and
refused_connections_pct (new connections sent to a dead pod before kube-proxy removed its
endpoint, per 100 connections of Service 0 — lc-family schedulers favour the empty dead pod) and
load_series (JSON: time-averaged activeconns of Service 0's backends in 48 bins — the report's
load-over-time plots are drawn from it).
"""

from __future__ import annotations

from harness import connsim_scenarios as C
from harness.fairness_report import report_churn
from harness.kind import Kind

KIND = Kind(
    name="churn",
    summary="Connection-level simulation of restarts, scale up/down and rolling updates: flow "
            "disruption vs optimal, broken connections, per-backend load over time",
    params=C.common_params(C.CHURN_SCENARIOS, "restart", 20_000),
    run_point=C.run_point,
    warmup=C.warmup,
    report=report_churn,
    check=C.check_point,
    memory_bytes=C.memory_bytes,
)
