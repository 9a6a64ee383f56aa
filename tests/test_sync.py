"""kernels.sync: runner schedule, NPL vs closed forms, cost ordering and scaling (spec B.1-B.3)."""

import math

import numpy as np
import pytest
from naive.sync import NaiveRunner, naive_sync_ops

from kernels import sync as K
from kernels.cluster import build_cluster


def const_costs(duration_s):
    """Every sync takes exactly ``duration_s`` (only the per-sync fixed cost is non-zero)."""
    c = np.zeros(K.NOPS)
    c[K.OP_SYNCS] = duration_s * 1e9
    return c


def tiny_sizes(mode, n_services=5, eps=3):
    return K.sizes_from_counts(mode, np.full(n_services, eps), np.ones(n_services),
                               np.zeros(n_services))


def run(arrivals, duration_s, t_end, mode="iptables", services=None, **kw):
    arrivals = np.asarray(arrivals, dtype=float)
    sv = np.zeros(arrivals.size, dtype=np.int64) if services is None else services
    sizes, const = tiny_sizes(mode)
    return K.simulate_sync(arrivals, sv, sizes, const, const_costs(duration_s), mode,
                           t_end=t_end, **kw)


# ------------------------------------------------------------------------------ runner schedule


def test_hand_made_schedule_matches_definition():
    # minInterval 1 s, maxInterval 30 s, burst 2, every sync 0.1 s; derivation in comments:
    #  0.5  bucket full (2) -> run [0.5, 0.6], bucket 1; 0.6 arrives during it -> queued
    #  0.6  bucket 1.1 -> run [0.6, 0.7] (takes the 0.6 change), bucket 0.1; 0.7 queued
    #  0.7  bucket 0.2 -> refused; timer = min(1 - 0, 29.9) -> 1.7; 0.8 arrives, refused again
    #  1.7  bucket 1.2 -> run [1.7, 1.8] (0.7 and 0.8)
    #  5.0  bucket 2 -> run [5.0, 5.1]; 5.05 queued -> run [5.1, 5.2] (bucket 1.1)
    #  35.2 maxInterval timer -> periodic run; 40.0 -> run; 70.1 periodic.
    arr = [0.5, 0.6, 0.7, 0.8, 5.0, 5.05, 40.0]
    r = run(arr, 0.1, 80.0)
    np.testing.assert_allclose(r["start"], [0.5, 0.6, 1.7, 5.0, 5.1, 35.2, 40.0, 70.1])
    np.testing.assert_allclose(r["done_t"] - np.array(arr), [0.1, 0.1, 1.1, 1.0, 0.1, 0.15, 0.1])
    np.testing.assert_array_equal(r["count"], [1, 1, 2, 1, 1, 0, 1, 0])
    sizes, const = tiny_sizes("iptables")
    ref = NaiveRunner(arr, np.zeros(len(arr), dtype=np.int64), sizes, const, const_costs(0.1),
                      "iptables", True, True, 1.0, 30.0, 2, 3600.0, 80.0).loop()
    np.testing.assert_allclose([s[0] for s in ref.syncs], r["start"])


def test_burst_one_waits_min_interval_after_completion():
    # burst 1: after a run ending at e the next may start at e + minInterval at the earliest.
    r = run([0.0, 0.05, 0.3, 3.0], 0.2, 10.0, burst_syncs=1, max_interval_s=100.0)
    np.testing.assert_allclose(r["start"], [0.0, 1.2, 3.0])
    np.testing.assert_array_equal(r["count"], [1, 2, 1])


def test_min_sync_period_zero_runs_on_every_request():
    r = run([1.0, 1.01, 1.02, 2.0], 0.05, 5.0, min_sync_period_s=0.0, max_interval_s=100.0)
    # 1.0 runs at once; 1.01 and 1.02 arrive during it and coalesce into the next run.
    np.testing.assert_allclose(r["start"], [1.0, 1.05, 2.0])


def test_no_coalescing_takes_one_change_per_sync():
    r = run([0.0, 0.0, 0.0], 0.1, 10.0, coalesce=False, max_interval_s=100.0)
    np.testing.assert_array_equal(r["count"], [1, 1, 1])
    # burst 2 lets two syncs run back to back; the third waits minInterval after the second.
    np.testing.assert_allclose(r["start"], [0.0, 0.1, 1.2])


def _compare_with_naive(mode, seed, **kw):
    rng = np.random.default_rng(seed)
    n_services = int(rng.integers(1, 30))
    eps = rng.integers(0, 6, n_services)
    sizes, const = K.sizes_from_counts(mode, eps, rng.integers(1, 3, n_services),
                                       rng.integers(0, 3, n_services),
                                       n_lb_ips=rng.integers(0, 2, n_services))
    horizon = 60.0
    arr, sv = K.change_stream(kw.pop("workload", "poisson"), float(rng.uniform(0.2, 8.0)),
                              horizon, n_services, seed)
    costs = {k: v * float(rng.uniform(0.5, 50.0)) for k, v in K.COST_DEFAULTS.items()}
    cost = K.cost_vector(mode, costs)
    params = dict(partial=bool(rng.integers(2)), coalesce=kw.get("coalesce", True),
                  min_interval=float(rng.choice([0.0, 0.5, 1.0])),
                  max_interval=float(rng.choice([5.0, 30.0])), burst=int(rng.integers(1, 4)),
                  full_period=float(rng.choice([10.0, 3600.0])), t_end=2 * horizon)
    r = K.simulate_sync(arr, sv, sizes, const, cost, mode, partial_sync=params["partial"],
                        coalesce=params["coalesce"], min_sync_period_s=params["min_interval"],
                        max_interval_s=params["max_interval"], burst_syncs=params["burst"],
                        full_sync_period_s=params["full_period"], t_end=params["t_end"])
    ref = NaiveRunner(arr, sv, sizes, const, cost, mode, **params).loop()
    assert len(ref.syncs) == r["start"].size
    np.testing.assert_allclose(r["start"], [s[0] for s in ref.syncs], rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(r["duration"], [s[1] for s in ref.syncs], rtol=1e-12)
    np.testing.assert_array_equal(r["full"], [s[2] for s in ref.syncs])
    np.testing.assert_array_equal(r["count"], [len(s[3]) for s in ref.syncs])
    np.testing.assert_allclose(r["done_t"], ref.done, rtol=1e-12, equal_nan=True)


@pytest.mark.parametrize("mode", K.MODES)
@pytest.mark.parametrize("seed", range(6))
def test_kernel_matches_naive_runner(mode, seed):
    _compare_with_naive(mode, seed)


@pytest.mark.parametrize("workload", ["burst", "rolling"])
@pytest.mark.parametrize("seed", range(3))
def test_kernel_matches_naive_other_workloads(workload, seed):
    _compare_with_naive(K.MODES[seed % 4], 100 + seed, workload=workload)
    _compare_with_naive(K.MODES[(seed + 1) % 4], 200 + seed, workload=workload, coalesce=False)


def test_change_streams_have_the_documented_shape():
    t, s = K.change_stream("poisson", 20.0, 1000.0, 50, seed=1)
    # Poisson count: mean 20,000, sd 141; 4 sd tolerance
    assert abs(t.size - 20_000) < 4 * 141 and (np.diff(t) >= 0).all() and t.max() < 1000.0
    assert np.bincount(s, minlength=50).min() > 300  # uniform over Services (mean 400)
    t, s = K.change_stream("burst", 20.0, 1000.0, 50, seed=1, burst_size=10)
    _, counts = np.unique(t, return_counts=True)
    assert (counts == 10).all() and abs(t.size - 20_000) < 4 * 10 * math.sqrt(2000)
    t, s = K.change_stream("rolling", 2.0, 5000.0, 50, seed=1, rolling_endpoints=3,
                           rolling_step_s=0.5)
    first = np.flatnonzero(np.r_[True, np.diff(s) != 0])
    gaps = np.diff(t)[np.diff(s) == 0]
    assert np.isin(np.round(gaps, 9), [0.5]).mean() > 0.9  # one pod every 0.5 s
    assert abs(t.size / 5000.0 - 2.0) < 0.2 and first.size > 0


# ------------------------------------------------------------------------------ NPL, closed form


def test_npl_mean_matches_renewal_formula_burst_one():
    """burst 1, constant sync time D < minInterval m, Poisson rate lam, no periodic syncs.

    The bucket admits a request once m has passed since the last START (refill 1/m, capacity
    1); a refused request re-arms the timer to the last END + m = s + D + m. Cycle from a start
    s (renewal: the bucket is back at 1 whenever a cycle ends):
    * no change in (s, s+m) (prob e^-a, a = lam m): the next change finds the loop idle with a
      token and runs at once: one change, NPL = D;
    * N >= 1 changes in (s, s+m) (uniform, E[N; N>=1] = lam m): the next sync starts at
      s' = s + m + min(Y, D), Y ~ Exp(lam) the first change after s+m (which a token admits
      at once, NPL = D, prob 1 - e^-b, b = lam D), else at the timer s + D + m. The early
      changes wait s' + D - t, E = m + (1 - e^-b)/lam + D - m/2.
    Per cycle: sum = e^-a D + lam m (m/2 + (1-e^-b)/lam + D) + (1-e^-a)(1-e^-b) D,
               count = e^-a + lam m + (1-e^-a)(1-e^-b);  E[NPL] = sum / count,
    and the share of changes with NPL exactly D is (e^-a + (1-e^-a)(1-e^-b)) / count.
    (Start-to-start, not end-to-start, spacing: the Go comment's "from completion" holds only
    on the timer path.)
    """
    lam, d, m = 0.5, 0.3, 1.0
    horizon = 40_000.0
    arr, sv = K.change_stream("poisson", lam, horizon, 5, seed=11)
    r = run(arr, d, horizon * 2, services=sv, burst_syncs=1, min_sync_period_s=m,
            max_interval_s=1e7)
    npl = r["done_t"] - arr
    ea, eb = math.exp(-lam * m), math.exp(-lam * d)
    total = ea * d + lam * m * (m / 2 + (1 - eb) / lam + d) + (1 - ea) * (1 - eb) * d
    count = ea + lam * m + (1 - ea) * (1 - eb)
    expected = total / count
    assert expected == pytest.approx(0.6352, abs=1e-3)
    # ~20,000 changes, sd(NPL) ~ 0.35 s: standard error ~ 0.4 %; tolerance 2 %.
    assert npl.mean() == pytest.approx(expected, rel=0.02)
    share_d = (ea + (1 - ea) * (1 - eb)) / count
    assert np.mean(np.isclose(npl, d)) == pytest.approx(share_d, abs=0.02)


def test_npl_back_to_back_regime_is_uniform_between_d_and_2d():
    """D >= minInterval and changes always pending: syncs run back to back (the bucket gains
    D/m >= 1 token per sync), a change waits for the running sync to end and then a whole
    sync: NPL ~ Uniform(D, 2D]: mean and median 1.5 D, p99 1.99 D."""
    d = 2.0
    arr, sv = K.change_stream("poisson", 20.0, 4000.0, 5, seed=5)
    r = run(arr, d, 8000.0, services=sv)
    npl = r["done_t"] - arr
    assert npl.min() >= d - 1e-9 and npl.max() <= 2 * d + 1e-9
    assert npl.mean() == pytest.approx(1.5 * d, rel=0.01)
    assert np.percentile(npl, 99) == pytest.approx(1.99 * d, rel=0.01)


# ------------------------------------------------------------------------------ costs (spec)


def _durations(mode, sizes, const, full, dirty=None):
    cost = K.cost_vector(mode, K.COST_DEFAULTS)
    return float(K.sync_ops_once(mode, sizes, const, full, dirty) @ cost) * 1e-9


@pytest.mark.parametrize("n_services", [100, 10_000])
def test_full_and_partial_costs_are_ordered_as_the_spec_says(n_services):
    eps = np.full(n_services, 10)
    one = np.array([7])
    ratio = {}
    for mode in K.MODES:
        sizes, const = K.sizes_from_counts(mode, eps, np.ones(n_services), np.zeros(n_services))
        full = _durations(mode, sizes, const, True)
        part = _durations(mode, sizes, const, False, one)
        assert part < full, mode
        ratio[mode] = part / full
        ops_full = K.sync_ops_once(mode, sizes, const, True)
        ops_part = K.sync_ops_once(mode, sizes, const, False, one)
        if mode == "iptables":
            # legacy: partial writes less but still copies the whole table (spec B.1 / issue 6)
            assert ops_part[K.OP_TABLE_COPY] == ops_full[K.OP_RULES_WRITTEN]
            assert ops_part[K.OP_RULES_WRITTEN] < ops_full[K.OP_RULES_WRITTEN]
        if mode in ("iptables", "iptables-nft"):
            # top-level chains (KUBE-SERVICES has a rule per service port) are always rewritten
            assert ops_part[K.OP_RULES_WRITTEN] >= n_services
        if mode == "iptables-nft":
            assert ops_part[K.OP_TABLE_COPY] == 0
    # without the whole-table copy, iptables-nft gains more from partial syncs than legacy
    assert ratio["iptables-nft"] < ratio["iptables"]


def test_iptables_full_sync_cost_slope_is_one_in_total_rules():
    services = np.logspace(3, 5, 5).astype(int)
    rules, dur = [], []
    for s in services:
        sizes, const = K.sizes_from_counts("iptables", np.full(s, 10), np.ones(s), np.zeros(s))
        ops = K.sync_ops_once("iptables", sizes, const, True)
        rules.append(ops[K.OP_RULES_WRITTEN])
        dur.append(_durations("iptables", sizes, const, True))
    slope = np.polyfit(np.log(rules), np.log(dur), 1)[0]
    # the per-sync fixed costs (exec, EnsureRule) flatten the small end a little
    assert 0.95 <= slope <= 1.01
    fixed = K.COST_DEFAULTS["sync_ns_fixed"] + K.N_ENSURE * K.COST_DEFAULTS["sync_ns_per_exec"]
    marginal = np.polyfit(np.log(rules), np.log(np.array(dur) - fixed * 1e-9), 1)[0]
    assert marginal == pytest.approx(1.0, abs=0.005)


def test_sizes_follow_spec_b1_layout():
    ipt = K.iptables_service_sizes(np.array([0, 1, 10, 4]), np.array([1, 1, 1, 2]),
                                   np.array([0, 0, 0, 0]))
    # per service port: 3n + 2 nat rules, 1 + n chains; no endpoints: no nat rules
    np.testing.assert_array_equal(ipt["nat_rules_per_port"], [0, 5, 32, 14])
    np.testing.assert_array_equal(ipt["svc_chains"], [0, 2, 11, 10])
    np.testing.assert_array_equal(ipt["svc_rules"] + ipt["top_rules"], [1, 5, 32, 28])


def test_naive_ops_agree_with_kernel_ops():
    rng = np.random.default_rng(3)
    for mode in K.MODES:
        for _ in range(20):
            s = int(rng.integers(1, 40))
            sizes, const = K.sizes_from_counts(mode, rng.integers(0, 8, s), rng.integers(1, 3, s),
                                               rng.integers(0, 4, s))
            dirty = np.unique(rng.integers(0, s, int(rng.integers(0, s + 1))))
            for full in (True, False):
                ops = K.sync_ops_once(mode, sizes, const, full, dirty)
                ref = naive_sync_ops(mode, full, sizes, const, {int(d): 1 for d in dirty})
                np.testing.assert_array_equal(ops, ref)


def test_sizes_match_compiled_iptables_ruleset():
    from kernels import iptables as ipt

    cases = [  # (endpoints, type_mix, affinity, external IPs, LB source ranges)
        (0, (1, 0, 0, 0), 0.0, 0.0, 0.0),
        (1, (1, 0, 0, 0), 0.0, 0.0, 0.0),
        (10, (1, 0, 0, 0), 0.0, 0.0, 0.0),
        (3, (0, 1, 0, 0), 0.0, 0.0, 0.0),
        (3, (0, 0, 1, 0), 0.0, 0.0, 0.0),
        (3, (0, 0, 1, 0), 0.0, 0.0, 1.0),
        (4, (1, 0, 0, 0), 1.0, 0.0, 0.0),
        (2, (1, 0, 0, 0), 0.0, 1.0, 0.0),
        (0, (0, 1, 0, 0), 0.0, 0.0, 0.0),
        (0, (0, 0, 1, 0), 0.0, 0.0, 1.0),
    ]
    per_svc = ("KUBE-SVC-", "KUBE-SVL-", "KUBE-SEP-", "KUBE-EXT-", "KUBE-FW-")
    top = {("nat", "KUBE-SERVICES"), ("nat", "KUBE-NODEPORTS"), ("filter", "KUBE-SERVICES"),
           ("filter", "KUBE-EXTERNAL-SERVICES"), ("filter", "KUBE-NODEPORTS"),
           ("filter", "KUBE-PROXY-FIREWALL")}
    def counts(rs):
        per = rs.rules_per_chain()
        svc_rules = svc_chains = top_rules = 0
        for ch in range(rs.n_chains):
            name = rs.chain_names[ch]
            if name.startswith(per_svc):
                svc_rules += int(per[ch])
                svc_chains += 1
            elif (ipt.TABLE_NAMES[int(rs.chain_table[ch])], name) in top:
                top_rules += int(per[ch])
        return svc_rules, svc_chains, top_rules

    # an ExternalName Service has no rules: what remains is the fixed top-level part
    base_top = counts(ipt.compile_cluster(build_cluster(1, 0, type_mix=(0, 0, 0, 1))))[2]
    for ports in (1, 2):
        for eps, mix, aff, ext, rng in cases:
            c = build_cluster(1, eps, ports_per_service=ports, type_mix=mix,
                              affinity_fraction=aff, external_ip_fraction=ext,
                              lb_source_range_fraction=rng, seed=1)
            svc_rules, svc_chains, top_rules = counts(ipt.compile_cluster(c))
            sz, _ = K.sizes_from_cluster("iptables", c)
            case = f"eps={eps} mix={mix} aff={aff} ext={ext} ranges={rng} ports={ports}"
            assert svc_rules == sz[0, K.SZ_RULES], case
            assert svc_chains == sz[0, K.SZ_CHAINS], case
            assert top_rules - base_top == sz[0, K.SZ_TOP_RULES], case
    # a mixed cluster: totals over all Services
    c = build_cluster(400, 3, endpoint_dist="poisson", ports_per_service=2,
                      type_mix=(0.5, 0.2, 0.2, 0.1), affinity_fraction=0.2,
                      external_ip_fraction=0.1, lb_source_range_fraction=0.5, seed=4)
    sz, _ = K.sizes_from_cluster("iptables", c)
    svc_rules, svc_chains, top_rules = counts(ipt.compile_cluster(c))
    assert (svc_rules, svc_chains) == (sz[:, K.SZ_RULES].sum(), sz[:, K.SZ_CHAINS].sum())
    assert top_rules - base_top == sz[:, K.SZ_TOP_RULES].sum()


# ------------------------------------------------------------------------------ saturation


def test_growing_latency_and_keeps_up_false_beyond_saturation():
    """Without coalescing the bucket admits at most 1/minInterval syncs per second, one change
    each: at 3 changes/s the backlog grows at about 3 - 1 = 2 changes/s and NPL grows with the
    horizon. kube-proxy's coalescing loop keeps up with the same stream."""
    lam, d = 3.0, 0.05
    out = {}
    for horizon in (200.0, 400.0):
        arr, sv = K.change_stream("poisson", lam, horizon, 5, seed=2)
        for coalesce in (False, True):
            r = run(arr, d, 4 * horizon, services=sv, coalesce=coalesce)
            out[horizon, coalesce] = K.summarize_sync(r, arr, horizon, 4 * horizon, lam, 1.0)
    slow = out[400.0, False]
    assert not slow["keeps_up"]
    assert slow["backlog_slope"] == pytest.approx(lam - 1.0, rel=0.15)
    assert slow["npl_s_p99_second_half"] > 1.5 * slow["npl_s_p99_first_half"]
    assert out[400.0, False]["npl_s_p99"] > 1.6 * out[200.0, False]["npl_s_p99"]
    # the oldest pending change ages with time: ~ (1 - 1/lam) t at t = H/2 and H
    assert slow["pending_age_s_max_q4"] == pytest.approx(2 * slow["pending_age_s_max_q2"],
                                                         rel=0.1)
    assert slow["pending_age_s_max_q4"] == pytest.approx(400.0 * (1 - 1 / lam), rel=0.1)
    for horizon in (200.0, 400.0):
        fast = out[horizon, True]
        assert fast["keeps_up"] and fast["npl_s_p99"] < 1.2
        assert abs(fast["backlog_slope"]) < 0.05 * lam
        assert fast["pending_age_s_max_q4"] < 1.2 and fast["pending_age_s_max_q2"] < 1.2


def test_saturated_full_syncs_stay_bounded_with_coalescing():
    # every sync 3 s, 50 changes/s: the loop is busy all the time but each sync takes every
    # pending change, so NPL stays within (D, 2D].
    arr, sv = K.change_stream("poisson", 50.0, 600.0, 5, seed=4)
    r = run(arr, 3.0, 1200.0, services=sv)
    m = K.summarize_sync(r, arr, 600.0, 1200.0, 50.0, 1.0)
    assert m["saturated"] and m["keeps_up"]
    assert m["npl_s_max"] <= 6.0 + 1e-9


# ------------------------------------------------------------------------------ kind and report


def test_kind_points_and_report(tmp_path):
    import pandas as pd

    from harness.errors import UserError
    from harness.kinds.sync import KIND

    base = {p.name: p.default for p in KIND.params} | {"horizon_s": 60.0}
    rows = []
    for mode in ("iptables", "nftables"):
        for services in (10, 300):
            for rate in (1.0, 20.0):
                for partial in (True, False):
                    p = base | dict(mode=mode, services=services, change_rate=rate,
                                    partial_sync=partial, endpoints_per_service=2)
                    rows.append(p | KIND.run_point(p, 3, {}))
    again = KIND.run_point(rows[0] | {}, 3, {})
    assert again["npl_s_p99"] == rows[0]["npl_s_p99"]  # deterministic in (params, seed)
    df = pd.DataFrame(rows)
    assert {"mode", "services", "endpoints_per_service", "change_rate", "partial_sync",
            "sync_s_mean", "sync_s_p99", "npl_s_p50", "npl_s_p99", "sync_cpu_share",
            "keeps_up"} <= set(df.columns)
    rep = KIND.report(df, tmp_path)
    for fig in rep.figures:
        assert (tmp_path / fig.filename).stat().st_size > 0
    assert len(rep.findings) >= 3 and not rep.headline.empty
    # calibration overrides: a slower restore makes the iptables full sync slower
    p = rows[0] | {"partial_sync": False}
    slow = KIND.run_point(p, 3, {"costmodel": {"sync_ns_per_rule_restore": 1e6,
                                               "sync_ns_fixed_se": 3.0}})
    assert slow["full_sync_s"] > KIND.run_point(p, 3, {})["full_sync_s"]
    with pytest.raises(UserError, match="sync_ns_per_rul"):
        KIND.run_point(p, 3, {"sync_ns_per_rul": 1.0})
    assert KIND.check(p | {"max_interval_s": 0.5}) is not None
