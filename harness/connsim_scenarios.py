"""Scenarios, metrics and shared plumbing of the `fairness` and `churn` kinds (issue 5).

A point = scheduler × scenario × backends per Service × load ρ × Services. Every Service gets
``backends`` backends; traffic is split over Services by popularity and each Service's backends
are provisioned in proportion to its traffic share (worker rate × p_s·S), so every Service runs
at the same load ρ = λ·E[work per connection] / Σ capacity. Latency is reported in units of the
Service's mean service time (request size / mean worker rate).

Scenarios (kernels.workload / kernels.connsim do the work):
  * equal_short   — equal backends, one request per connection, exponential sizes.
  * heterogeneous — worker rates alternate 4/3 and 2/3 (mean 1, a 2:1 spread); weights stay 1 as
    kube-proxy sets them (spec B.2), so weight-blind schedulers overload the slow half when
    1.5·ρ ≥ 1.
  * long_lived    — keepalive connections: geometric requests (mean ``keepalive_requests``) with
    exponential think times (mean ``think_s``).
  * nat_clients   — all clients behind ``nat_gateways`` NAT addresses (few addresses, many ports).
  * restart       — backend 0's pod crashes at mid-run and is back ``restart_s`` later.
  * scale_up_4_5  — N → N + max(1, N // 4) backends at mid-run (4 → 5 at N = 4).
  * scale_down_5_4 — N → N − max(1, N // 5), the newest pods go (5 → 4 at N = 5).
  * rolling_update — every backend replaced one by one (new pod added, then the old one removed)
    over the middle 40% of the run.
Churn scenarios use keepalive connections (as long_lived) so live connections exist to break;
churn applies to Service 0.

Stability (``stable``): offered load = (work of the connections bound) / (workers × rate × time
the pod was alive) over the measurement window; its standard error is √(Σwork²) / Σcapacity
(compound Poisson). A point is unstable — ``stable`` False, latency columns NaN — if any of:
  * the configured load ρ ≥ 1 (every Service is offered at least its capacity);
  * a group fixed in advance, Service × backend capacity class (the fast and the slow half in
    ``heterogeneous``), has pooled ρ_g > 1 + 4·SE_g (clearly overloaded). Pooling over a group
    chosen before the run has no selection bias and enough connections to resolve ρ_g;
  * a group's ρ_g cannot be told below 1 (ρ_g ≥ 1 − 2·SE_g, one-sided) and its unfinished work
    at the end of the window (``SimResult.backend_backlog``) is at least √(Σwork²), one SE of
    its offered work: an overloaded queue's backlog grows like (ρ_g − 1)·T. Load-aware
    schedulers (lc, wlc, lblc…) can hold a slow backend at ρ_b ≈ 1 with a bounded queue (more
    queued connections → fewer new ones); their backlog stays small and the point stable;
  * a single backend has ρ_b > 1 + 4·SE_b (overload concentrated on a few backends inside a
    group, e.g. sh/dh hashing few client or destination addresses; with 1000 backends the
    largest of 1000 z-scores rarely exceeds 4).
A backend that receives more work than it can serve is therefore never reported with a latency;
``max_group_load`` is the largest ρ_g, ``max_backend_load`` the largest (noisy) ρ_b.

Latency warm-up (``latency_warm``): queues start empty, and a queue at load ρ needs about
1/(1 − √ρ)² mean service times (the M/M/1 relaxation time) to forget that. The point's latency
is warm when the warm-up share of connections per backend covers that time, i.e.
warm-up connections / backends ≥ ρ / (1 − √ρ)²; otherwise latency is biased low by the
start-up transient and the fairness report leaves the point out of latency figures.

``decision_ns_mean`` is a wall-clock measurement (machine-dependent, not a model output): the
harness times kernels.connsim.decision_batch on copies of the final scheduler state (best of 3,
JIT warm); ``decision_scanned``/``probes``/``hashes``/``random``/``failed`` are counted by the
scheduler kernels.
"""

from __future__ import annotations

import json
import time

import numpy as np

from harness.kind import Param
from kernels import connsim
from kernels.metrics import (
    changed_share,
    cov,
    jain_index,
    latency_percentiles,
    normalise_by_group,
    optimal_disruption,
    peak_to_mean,
)
from kernels.schedulers import SCHEDULERS
from kernels.workload import generate_workload, popularity_weights

FAIRNESS_SCENARIOS = ("equal_short", "heterogeneous", "long_lived", "nat_clients")
CHURN_SCENARIOS = ("restart", "scale_up_4_5", "scale_down_5_4", "rolling_update")
HETERO_RATES = (4.0 / 3.0, 2.0 / 3.0)
Q_LEVELS = (0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995,
            0.999)
"""Quantile levels stored (as JSON in ``latency_quantiles``) to draw latency CDFs."""
UNSTABLE_Z = 4.0
"""Per-backend test: unstable if ρ_b > 1 + UNSTABLE_Z·SE_b."""
NEAR_ONE_Z = 2.0
"""Pooled per-group band: ρ_g ≥ 1 − NEAR_ONE_Z·SE_g plus a large backlog is unstable."""
HASHING_SCHEDULERS = ("dh", "sh", "mh")
"""Schedulers whose choice is a function of the flow key: ``disruption_pct`` is NaN for others."""
SERIES_BINS = 48
SERIES_MAX_BACKENDS = 32
DISRUPTION_MAX_CHANGES = 16


def common_params(scenarios: tuple[str, ...], default_scenario: str,
                  default_connections: int) -> tuple[Param, ...]:
    """Parameters shared by both kinds."""
    return (
        Param("scheduler", str, "rr", "balancer: IPVS scheduler, iptables statistic, nftables "
              "numgen or userspace round robin", choices=SCHEDULERS),
        Param("scenario", str, default_scenario, "workload/churn scenario", choices=scenarios),
        Param("backends", int, 4, "backends (pods) per Service", min=1, max=4093),
        Param("load", float, 0.8, "offered load rho per Service", min=0.01, max=2.0),
        Param("services", int, 1, "Services simulated at once", min=1, max=100_000),
        Param("popularity", str, "uniform", "Service popularity", choices=("uniform", "zipf")),
        Param("zipf_s", float, 1.0, "Zipf exponent of Service popularity", min=0.0, max=5.0),
        Param("connections", int, default_connections, "connections simulated", min=100,
              max=50_000_000),
        Param("workers", int, 1, "workers per backend (FCFS queue in front)", min=1, max=1024),
        Param("mean_service_s", float, 0.01, "mean request service time on a rate-1 worker (s)",
              min=1e-6, max=100.0),
        Param("size_dist", str, "exponential", "request size law",
              choices=("exponential", "deterministic", "lognormal", "pareto")),
        Param("size_scv", float, 1.0, "squared coefficient of variation of request sizes "
              "(1 for exponential, 0 for deterministic)", min=0.0, max=100.0),
        Param("arrivals", str, "poisson", "connection arrivals", choices=("poisson", "mmpp2")),
        Param("keepalive_requests", float, 20.0, "mean requests per keepalive connection "
              "(long_lived and churn scenarios)", min=1.0, max=10_000.0),
        Param("think_s", float, 1.0, "mean think time between keepalive requests (s)", min=0.0,
              max=3600.0),
        Param("nat_gateways", int, 4, "NAT gateway addresses (nat_clients)", min=1, max=1000),
        Param("handshake_s", float, 0.0005, "SYN to client ACK as seen by the director (s)",
              min=0.0, max=10.0),
        Param("time_wait_s", float, 120.0, "IPVS TCP TIME_WAIT timeout (s, spec A.3)", min=0.0,
              max=3600.0),
        Param("fin_wait_s", float, 120.0, "IPVS TCP FIN_WAIT timeout (s, spec A.3)", min=0.0,
              max=3600.0),
        Param("grace_s", float, 30.0, "terminationGracePeriodSeconds before a pod is killed",
              min=0.0, max=3600.0),
        Param("check_interval_s", float, 60.0, "kube-proxy graceful-termination check interval "
              "(rsCheckDeleteInterval, spec B.2)", min=0.1, max=3600.0),
        Param("detect_s", float, 1.0, "crash to endpoint removal (readiness), s", min=0.0,
              max=600.0),
        Param("restart_s", float, 10.0, "crash to pod ready again (restart), s", min=0.0,
              max=3600.0),
        Param("mh_table_size", int, 4093, "Maglev table size (prime list, spec A.8)",
              choices=(251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071)),
        Param("warmup_frac", float, 0.1, "share of connections before the measurement window",
              min=0.0, max=0.9),
        Param("decision_batch", int, 20_000, "decisions timed for decision_ns_mean", min=100,
              max=10_000_000),
        Param("disruption_keys", int, 2000, "flow keys sampled for disruption", min=10,
              max=1_000_000),
    )


def check_point(p: dict) -> tuple[str, str] | None:
    """Cross-field checks shared by both kinds."""
    if p["scheduler"] == "mh" and p["backends"] > p["mh_table_size"]:
        return "backends", f"<= mh_table_size ({p['mh_table_size']}) for mh"
    if p["size_dist"] == "exponential" and p["size_scv"] != 1.0:
        return "size_scv", "1 for exponential sizes"
    if p["size_dist"] == "deterministic" and p["size_scv"] != 0.0:
        return "size_scv", "0 for deterministic sizes"
    if p["size_dist"] in ("lognormal", "pareto") and p["size_scv"] <= 0.0:
        return "size_scv", "> 0 for lognormal/pareto sizes"
    if p["scenario"] == "scale_down_5_4" and p["backends"] < 2:
        return "backends", ">= 2 for scale_down_5_4"
    return None


def _slots(p: dict) -> tuple[int, int]:
    """(initial backends of Service 0, extra slots that join later)."""
    n = p["backends"]
    sc = p["scenario"]
    if sc == "scale_up_4_5":
        return n, max(1, n // 4)
    if sc == "rolling_update":
        return n, n
    return n, 0


def memory_bytes(p: dict) -> int:
    """Peak-memory estimate: workload + simulator per connection/request, scheduler state."""
    n = p["connections"]
    keep = p["scenario"] not in ("equal_short", "heterogeneous", "nat_clients")
    reqs = n * (p["keepalive_requests"] if keep else 1.0)
    n0, extra = _slots(p)
    slots = p["services"] * n0 + extra
    max_d = n0 + extra
    tab = {"mh": p["mh_table_size"], "sh": 256, "dh": 256}.get(p["scheduler"], 0)
    if p["scheduler"] in ("statistic", "numgen", "userspace_rr"):
        tab = max_d
    state = p["services"] * (max_d * 14 * 8 + tab * 8 + 30 * 8)
    if p["scheduler"] in ("lblc", "lblcr"):
        state += p["services"] * (1024 * 8 + 64 * (7 * 8 + max_d * 8))
    per_conn = 8 * 20 + 3 * 8  # workload + simulator arrays, heap
    return int(n * per_conn + reqs * 8 * 4 + slots * 8 * 24 + state + 64 * 2**20)


def _churn_plan(p: dict, t_mid: float, span: float, n0: int, extra: int) -> tuple:
    """Churn events for Service 0 (slots 0..n0-1 initial, n0..n0+extra-1 joining later) and the
    backend-set changes for the disruption metric as (kind, slot list)."""
    sc = p["scenario"]
    times, kinds, slots, changes = [], [], [], []
    if sc == "restart":
        times += [t_mid, t_mid + p["restart_s"]]
        kinds += [connsim.CH_CRASH, connsim.CH_READD]
        slots += [0, 0]
        changes += [("remove", [0]), ("add", [0])]
    elif sc == "scale_up_4_5":
        new = list(range(n0, n0 + extra))
        times += [t_mid] * extra
        kinds += [connsim.CH_ADD] * extra
        slots += new
        changes.append(("add", new))
    elif sc == "scale_down_5_4":
        k = max(1, n0 // 5)
        gone = list(range(n0 - k, n0))  # the newest pods (list head) go first
        times += [t_mid] * k
        kinds += [connsim.CH_REMOVE] * k
        slots += gone
        changes.append(("remove", gone))
    elif sc == "rolling_update":
        step = span / n0
        for i in range(n0):
            t = t_mid - span / 2 + i * step
            times += [t, t]
            kinds += [connsim.CH_ADD, connsim.CH_REMOVE]
            slots += [n0 + i, i]
            changes += [("add", [n0 + i]), ("remove", [i])]
    churn = connsim.Churn(np.asarray(times, dtype=np.float64), np.asarray(kinds, dtype=np.int64),
                          np.asarray(slots, dtype=np.int64))
    return churn, changes


def _disruption(p: dict, seed: int, addr: np.ndarray, n0: int, changes: list,
                caddr: np.ndarray, cport: np.ndarray) -> tuple[float, float]:
    """Mean share of sampled flow keys that change backend per backend-set change, and the mean
    optimum (kernels.metrics.optimal_disruption); at most DISRUPTION_MAX_CHANGES changes,
    evenly spaced, are evaluated."""
    if not changes:
        return np.nan, np.nan
    current = list(range(n0))
    pick = set(np.linspace(0, len(changes) - 1, min(len(changes), DISRUPTION_MAX_CHANGES))
               .round().astype(int).tolist())
    moved, optimal = [], []
    for k, (kind, slots) in enumerate(changes):
        after = current + slots if kind == "add" else [b for b in current if b not in slots]
        if k in pick:
            before_b, after_b = connsim.key_disruption(
                p["scheduler"], addr[current], kind, addr[slots], caddr, cport,
                mh_table_size=p["mh_table_size"], seed=seed)
            moved.append(changed_share(before_b, after_b))
            optimal.append(optimal_disruption(current, after))
        current = after
    return 100.0 * float(np.mean(moved)), 100.0 * float(np.mean(optimal))


def run_point(p: dict, seed: int, calibration: dict) -> dict:
    """Simulate one point and summarise it (columns listed in the kinds' docstrings)."""
    del calibration  # no cost-model inputs: times are measured, counts are counted
    sc = p["scenario"]
    n_svc = p["services"]
    n0, extra = _slots(p)
    churny = sc in CHURN_SCENARIOS
    keep = sc == "long_lived" or churny
    req_mean = p["keepalive_requests"] if keep else 1.0
    think = p["think_s"] if keep else 0.0
    pop = popularity_weights(n_svc, p["popularity"], p["zipf_s"])
    # slots: Service 0 first (n0 + extra), then n0 per other Service
    per = np.full(n_svc, n0, dtype=np.int64)
    per[0] += extra
    svc_of = np.repeat(np.arange(n_svc), per)
    local = np.concatenate([np.arange(k) for k in per])
    base_rate = np.ones(svc_of.size)
    if sc == "heterogeneous":
        base_rate = np.where(local % 2 == 0, HETERO_RATES[0], HETERO_RATES[1])
    rate = base_rate * pop[svc_of] * n_svc
    absent = np.flatnonzero((svc_of == 0) & (local >= n0))
    backends = connsim.make_backends(per, rate=rate, workers=p["workers"], absent=absent)
    capacity = n_svc * n0 * p["workers"]  # Σ over Services of workers × mean rate (scaled)
    work_per_conn = req_mean * p["mean_service_s"]
    lam = p["load"] * capacity / work_per_conn
    wl = generate_workload(
        p["connections"], lam, seed, arrivals=p["arrivals"],
        clients="nat" if sc == "nat_clients" else "uniform", n_nat=p["nat_gateways"],
        popularity=p["popularity"], n_services=n_svc, service_zipf_s=p["zipf_s"],
        size_dist=p["size_dist"], mean_service_s=p["mean_service_s"], size_scv=p["size_scv"],
        requests_mean=req_mean, think_mean_s=think)
    t_end = float(wl.arrival[-1])
    churn, changes = (_churn_plan(p, 0.5 * t_end, 0.4 * t_end, n0, extra) if churny
                      else (connsim.no_churn(), []))
    res = connsim.simulate(
        wl, backends, p["scheduler"], churn=churn, mh_table_size=p["mh_table_size"], seed=seed,
        handshake_s=p["handshake_s"], close_rtt_s=p["handshake_s"],
        fin_wait_timeout_s=p["fin_wait_s"], time_wait_timeout_s=p["time_wait_s"],
        grace_s=p["grace_s"], detect_s=p["detect_s"], check_interval_s=p["check_interval_s"],
        warmup_frac=p["warmup_frac"], n_bins=SERIES_BINS if churny else 0,
        series_backends=min(per[0], SERIES_MAX_BACKENDS) if churny else 0)
    out = summarize(res, wl, backends, p["mean_service_s"], svc_pop=pop, offered_load=p["load"])
    k = min(p["decision_batch"], wl.arrival.size)
    out.update(decision_cost(res.state, wl.service[:k], wl.client_addr[:k], wl.client_port[:k]))
    if churny:
        s0 = np.flatnonzero(wl.service == 0)[: p["disruption_keys"]]
        d, opt = _disruption(p, seed, backends.addr, n0, changes, wl.client_addr[s0],
                             wl.client_port[s0])
        if p["scheduler"] not in HASHING_SCHEDULERS:
            d = np.nan
        live = res.stats["live_at_churn"]
        reset = res.stats["broken"] - res.stats["refused"]
        out.update(
            disruption_pct=d, optimal_disruption_pct=opt, live_at_churn=live,
            broken_connections=reset, refused_connections=res.stats["refused"],
            broken_connections_pct=100.0 * reset / live if live else 0.0,
            refused_connections_pct=100.0 * res.stats["refused"] / max(1, int(np.sum(
                wl.service == 0))),
            load_series=json.dumps({"bin_s": res.bin_s, "t_change": 0.5 * t_end,
                                    "active": np.round(res.series.T, 3).tolist()}))
    else:
        out.update(disruption_pct=np.nan, optimal_disruption_pct=np.nan, live_at_churn=0,
                   broken_connections=0, refused_connections=0, broken_connections_pct=0.0,
                   refused_connections_pct=0.0)
    out["simulated_s"] = t_end
    return out


def decision_cost(st, svc, caddr, cport, *, repeats: int = 3) -> dict:
    """Wall-clock ns per scheduling decision (schedule + bind) over ``len(svc)`` decisions on
    copies of ``st`` (best of ``repeats``; the JIT must be warm) as ``decision_ns_mean``, plus the
    scheduler's operation counts per decision (kernels.connsim.decision_batch)."""
    best = np.inf
    counts: dict = {}
    for _ in range(max(1, repeats)):
        s = connsim.copy_state(st)
        t0 = time.perf_counter_ns()
        counts = connsim.decision_batch(s, svc, caddr, cport)
        best = min(best, time.perf_counter_ns() - t0)
    return {"decision_ns_mean": best / max(len(svc), 1), **counts}


def stability(res, backends, offered_load: float | None = None) -> dict:
    """Stability verdict and loads (module docstring): ``stable``, ``max_group_load``,
    ``max_backend_load``."""
    used = res.backend_area[2] > 0
    cap_rate = (backends.workers * backends.rate)[used]
    cap_time = cap_rate * res.backend_area[2][used]
    work, work2 = res.backend_work[used], res.backend_work2[used]
    rho_b = work / cap_time
    over_b = rho_b - 1.0 > UNSTABLE_Z * np.sqrt(work2) / cap_time
    # groups fixed before the run: Service x capacity class
    key = np.column_stack([backends.service[used].astype(np.float64), cap_rate])
    grp = np.unique(key, axis=0, return_inverse=True)[1].ravel()
    g_cap = np.bincount(grp, cap_time)
    rho_g = np.bincount(grp, work) / g_cap
    sd_g = np.sqrt(np.bincount(grp, work2))  # SE of the group's offered work (s at rate 1)
    over_g = rho_g - 1.0 > UNSTABLE_Z * sd_g / g_cap
    near_g = rho_g >= 1.0 - NEAR_ONE_Z * sd_g / g_cap
    backlog_g = np.bincount(grp, res.backend_backlog[used])
    unstable = bool(over_b.any() or over_g.any() or (near_g & (backlog_g >= sd_g)).any()
                    or (offered_load is not None and offered_load >= 1.0))
    return {"stable": not unstable, "max_group_load": float(rho_g.max()),
            "max_backend_load": float(rho_b.max())}


def summarize(res, wl, backends, mean_service_s: float, svc_pop=None,
              offered_load: float | None = None) -> dict:
    """Scalar metrics of a simulation (fairness, stability, latency; module docstring).
    ``offered_load``: the configured ρ (≥ 1 is unstable whatever was measured)."""
    used = res.backend_area[2] > 0  # slots whose pod was alive in the window
    svc = backends.service[used]
    n_svc = int(backends.service.max()) + 1
    counts = res.backend_conns[used].astype(np.float64)
    window = res.t_hi - res.t_lo
    active = res.backend_area[0][used] / window if window > 0 else counts * 0.0
    x = normalise_by_group(counts, svc, n_svc) if n_svc > 1 else counts
    xa = normalise_by_group(active, svc, n_svc) if n_svc > 1 else active
    stab = stability(res, backends, offered_load)
    unstable = not stab["stable"]
    util = res.backend_area[1][used] / (backends.workers[used] * res.backend_area[2][used])
    # latency: requests of completed connections that arrived in the window, in units of the
    # Service's mean service time (mean_service_s / (p_s · S) with per-Service provisioning)
    arrived = (wl.arrival >= res.t_lo) & (wl.arrival <= res.t_hi)
    conn_ok = arrived & (res.conn_state == connsim.CS_EXPIRED)
    per_req_conn = np.repeat(np.arange(wl.arrival.size), np.diff(wl.req_ptr))
    unit = np.full(n_svc, mean_service_s)
    if svc_pop is not None:
        unit = mean_service_s / (np.asarray(svc_pop) * n_svc)
    lat = res.req_resp[conn_ok[per_req_conn]] / unit[wl.service[per_req_conn[
        conn_ok[per_req_conn]]]]
    n = wl.arrival.size
    out = {
        "jain_index": jain_index(x), "peak_to_mean": peak_to_mean(x), "cov": cov(x),
        "jain_active": jain_index(xa), "peak_to_mean_active": peak_to_mean(xa),
        "max_backend_load": stab["max_backend_load"], "max_group_load": stab["max_group_load"],
        "max_utilization": float(util.max()), "stable": not unstable,
        "latency_warm": latency_warm(int(np.searchsorted(wl.arrival, res.t_lo)),
                                     int(used.sum()), offered_load),
        "dropped_pct": 100.0 * res.stats["dropped"] / n,
        "events": res.stats["events"], "requests": int(lat.size),
    }
    if unstable or lat.size == 0:
        q = np.full(4, np.nan)
        out.update(latency_mean=np.nan, latency_quantiles="")
    else:
        q = latency_percentiles(lat)
        out.update(latency_mean=float(lat.mean()),
                   latency_quantiles=json.dumps(np.quantile(lat, Q_LEVELS).round(5).tolist()))
    out.update(latency_p50=q[0], latency_p90=q[1], latency_p99=q[2], latency_p999=q[3])
    return out


def latency_warm(n_warm: int, n_backends: int, offered_load: float | None) -> bool:
    """True when the warm-up connections per backend cover the M/M/1 relaxation time at the
    configured load: n_warm / backends ≥ ρ / (1 − √ρ)² (module docstring)."""
    if offered_load is None:
        return True
    if offered_load >= 1.0:
        return False
    need = offered_load / (1.0 - np.sqrt(offered_load)) ** 2
    return bool(n_warm / max(n_backends, 1) >= need)


def warmup() -> None:
    """Compile the simulator, the workload generator and the scheduler kernels once."""
    p = {prm.name: prm.default for prm in common_params(
        FAIRNESS_SCENARIOS + CHURN_SCENARIOS, "equal_short", 200)}
    for sc in ("equal_short", "restart"):
        p.update(scenario=sc, connections=200, decision_batch=100, disruption_keys=10)
        run_point(p, 1, {})
