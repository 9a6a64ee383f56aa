"""Unit tests of `kpbench calibrate`'s statistics, fits, text helpers and outputs (no root).

The fits are checked on synthetic measurements generated from known parameters (spec C.1:
latency = base + ns/rule x rules evaluated), with the tolerances stated per test.
"""

from __future__ import annotations

import math
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from harness import calibrate as cal
from harness import calibrate_rules as rules
from harness import calibration_report
from harness.errors import UserError

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------ statistics


def test_lstsq_se_matches_textbook_line_fit():
    rng = np.random.default_rng(1)
    x = np.linspace(0, 10, 50)
    y = 3.0 + 2.0 * x + rng.normal(0, 0.5, x.size)
    coef, se, rss = cal.lstsq_se(np.column_stack([np.ones_like(x), x]), y)
    n = x.size
    s2 = rss / (n - 2)
    sxx = ((x - x.mean()) ** 2).sum()
    assert coef[1] == pytest.approx(np.polyfit(x, y, 1)[0], rel=1e-12)
    assert se[1] == pytest.approx(math.sqrt(s2 / sxx), rel=1e-9)
    assert se[0] == pytest.approx(math.sqrt(s2 * (1 / n + x.mean() ** 2 / sxx)), rel=1e-9)
    # 2 parameters from 2 rows: no residual degrees of freedom, SE undefined.
    _, se2, _ = cal.lstsq_se(np.array([[1.0, 0.0], [1.0, 1.0]]), np.array([1.0, 2.0]))
    assert np.isnan(se2).all()


def test_paired_difference_cancels_shared_drift():
    rng = np.random.default_rng(2)
    drift = rng.normal(0, 5000, 4000)  # common to both positions of a round
    first = 10_000 + drift + rng.normal(0, 100, drift.size)
    last = 10_500 + drift + rng.normal(0, 100, drift.size)
    d, se = cal.paired_diff(last, first)
    assert abs(d - 500) < 4 * se and se < 10  # unpaired medians would carry the 5 us drift
    assert cal.paired_diff(last, first) == (d, se)  # fixed bootstrap seed


# ------------------------------------------------------------------------------ fits


def _cache_model(dr, chain, hot, cold, cache, k):
    return dr * (hot + cold * cal.cache_fraction(chain, cache, k))


def test_fit_rules_recovers_single_slope_and_cache_model():
    chains = np.array([4e3, 4e4, 4e5, 2e6, 1e7, 5e7])  # bytes of KUBE-SERVICES
    dr = np.repeat(chains / 500, 2) * np.tile([0.5, 1.0], chains.size)
    chain = np.repeat(chains, 2)
    # Linear data (no cache effect): the single slope is exact, the cold term ~0.
    fit = cal.fit_rules(dr, 5.0 * dr, np.full(dr.size, 1.0), chain)
    assert fit.rule_ns == pytest.approx(5.0, rel=1e-9)
    assert fit.rule_hot_ns + fit.rule_cold_ns * 1.0 == pytest.approx(5.0, rel=0.02)
    # Cache data: hot 6, +6 beyond a 2 MB cache (k = 2), 1 % noise: recovered within 10 %.
    rng = np.random.default_rng(3)
    y = _cache_model(dr, chain, 6.0, 6.0, 2e6, 2.0) * (1 + rng.normal(0, 0.01, dr.size))
    fit = cal.fit_rules(dr, y, 0.01 * y, chain)
    assert fit.rule_hot_ns == pytest.approx(6.0, rel=0.10)
    assert fit.rule_cold_ns == pytest.approx(6.0, rel=0.10)
    assert 1e6 < fit.cache_bytes < 4e6
    pred = dr * fit.per_rule(chain)
    assert np.max(np.abs(pred / y - 1)) < 0.05
    # A single slope cannot follow it (the reason the cache-aware fit exists).
    assert np.max(np.abs(fit.rule_ns * dr / y - 1)) > 0.2


def test_fit_rules_recovers_walk_warm_up():
    # hot 6 ns per rule, the first ~8 rules of a walk 3 ns more (a 10-rule walk ~8.3 ns/rule).
    ns = np.array([10, 100, 1000, 10000])
    kf = np.ones(2 * ns.size)
    kp = np.column_stack([ns // 2 + 1, ns]).ravel().astype(float)
    chain = np.repeat(ns * 490.0, 2)
    dr = kp - kf
    y = 6.0 * dr + 3.0 * (cal.warm_walk(kp, 8.0) - cal.warm_walk(kf, 8.0))
    fit = cal.fit_rules(dr, y, 0.005 * y, chain, kf, kp)
    assert fit.rule_hot_ns == pytest.approx(6.0, rel=0.05)
    assert fit.warm_ns == pytest.approx(3.0, rel=0.3)
    pred = fit.diff_ns(dr, chain, kf, kp)
    assert np.max(np.abs(pred / y - 1)) < 0.03
    # Without positions there is no warm-up term.
    assert cal.fit_rules(dr, y, 0.005 * y, chain).warm_ns == 0.0


def test_fit_rules_drops_nonpositive_rows_and_handles_empty():
    fit = cal.fit_rules([10, 10], [-5.0, 0.0], [1, 1], [1e3, 1e3])
    assert fit.rows == 0 and math.isnan(fit.rule_ns)
    fit = cal.fit_rules([10, 100, 1000], [50.0, 500.0, 5000.0], [1, 1, 1], [1e3, 1e3, 1e3])
    assert fit.rule_ns == pytest.approx(5.0) and fit.rule_cold_ns == 0.0


# ------------------------------------------------------------------------------ synthetic points


def _synthetic_points(hot=6.0, cold=6.0, cache=2e6, seed=0) -> list[cal.Point]:
    """Points whose samples follow latency = 9 us + ns/rule x rules (+ noise)."""
    rng = np.random.default_rng(seed)
    points = []
    for mode in cal.MODES:
        for n in (10, 1000, 10000, 100000):
            chain_bytes = 490 * n
            per = hot + cold * cal.cache_fraction(chain_bytes, cache, 2.0)
            if mode == "nftables":
                per = 0.0
            rules_model = {"first": 3, "mid": 3 + n // 2, "last": 2 + n, "miss": 3 + n}
            if mode == "nftables":
                rules_model = dict.fromkeys(rules_model, 0)
            rounds = 2000
            drift = rng.normal(0, 300, rounds)
            samples = {lab: list(9000 + per * r + drift + rng.normal(0, 50, rounds))
                       for lab, r in rules_model.items()}
            vmap = {}
            if mode == "nftables":
                vmap = {"ctl": list(9000 + drift), "hit": list(9000 + 16 * 30.0 + drift)}
            rules_n, chains_n = 5 * n + 30, 2 * n + 8
            lines, written = rules_n + chains_n, (n + 12) + 6
            points.append(cal.Point(
                mode=mode, n_services=n, rounds=rounds,
                targets={"first": ["127.64.0.1", 80, 0]}, rules_model=rules_model,
                samples=samples, chain_rules=n + 1, chain_bytes=chain_bytes,
                counts={"rules": rules_n, "chains": chains_n, "elements": n},
                change_counts={"rules": n + 12, "chains": 6, "elements": 2},
                load_initial_s=0.005 + 8e-6 * lines,
                load_full_s=0.005 + 8e-6 * lines + 4e-6 * rules_n,
                change_s=[0.005 + 8e-6 * written + 4e-6 * rules_n], list_s=0.01 + 1e-5 * n,
                vmap_samples=vmap))
    return points


def test_fit_all_and_predictions_on_synthetic_points():
    result = cal.fit_all(_synthetic_points())
    legacy = result["fits"]["rules"]["iptables-legacy"]
    assert legacy["rule_hot_ns"] == pytest.approx(6.0, rel=0.10)
    assert result["fits"]["vmap"]["nftables"]["vmap_lookup_ns"] == pytest.approx(30.0, abs=1)
    assert result["fits"]["base"]["iptables-legacy"]["base_ns"] == pytest.approx(9000, rel=0.02)
    sync = result["fits"]["sync"]["iptables-legacy"]
    assert sync["sync_ns_per_rule_restore"] == pytest.approx(8000, rel=0.05)
    assert sync["sync_ns_per_rule_table_copy"] == pytest.approx(4000, rel=0.05)
    acc = calibration_report.acceptance(result)
    assert acc["iptables-legacy"]["passed"] and acc["nftables"]["passed"]
    assert acc["iptables-legacy"]["worst_error_pct"] < 5


def test_calibration_toml_is_accepted_by_the_cost_model(tmp_path):
    from kernels.costmodel import CostModel
    from kernels.sync import COST_DEFAULTS

    result = cal.fit_all(_synthetic_points())
    result["provenance"] = {"date": "2026-01-01T00:00:00Z", "services": [10, 1000]}
    text = cal.calibration_toml(result)
    raw = tomllib.loads(text)
    assert set(raw) == {"costmodel", "provenance"}
    table = raw["costmodel"]
    known = set(CostModel().as_dict()) | set(COST_DEFAULTS)
    assert set(table) <= known, set(table) - known
    model = CostModel.from_overrides({k: v for k, v in table.items()
                                      if k in CostModel().as_dict()})
    assert model.rule_ns == pytest.approx(table["rule_ns"])
    assert raw["provenance"]["rules"]["iptables-legacy"]["rule_ns_se"] >= 0
    # every cache-aware term the fit chose is in [costmodel] (synthetic data: cache term on)
    legacy = raw["provenance"]["rules"]["iptables-legacy"]
    assert legacy["rule_cold_ns"] > 0
    assert model.rule_cold_ns == pytest.approx(legacy["rule_cold_ns"])
    assert model.rule_cache_bytes == pytest.approx(legacy["cache_bytes"])
    assert model.rule_cache_k == legacy["cache_k"]


EXAMPLE = REPO / "results" / "baseline" / "calibration-example.toml"


def _example_fits() -> dict:
    return tomllib.loads(EXAMPLE.read_text())["provenance"]["rules"]


@pytest.mark.parametrize("mode", ["iptables-legacy", "iptables-nft"])
def test_rulefit_prediction_equals_the_cost_model(mode):
    """RuleFit.diff_ns (calibrate's prediction) == CostModel from the [costmodel] keys."""
    from kernels.costmodel import CostModel, kube_services_bytes

    fit = _example_fits()[mode]
    rf = cal.RuleFit(**fit)
    keys = cal.costmodel_rule_keys(fit)
    assert set(keys) <= set(cal.COSTMODEL_RULE_KEYS)
    model = CostModel.from_overrides(keys, source=str(EXAMPLE))
    for n in (10, 100, 300, 1000, 10_000, 100_000):
        s = kube_services_bytes(n + 1)
        for first, pos in ((1, n), (1, n // 2 + 1), (3, n + 1)):
            drules = pos - first
            want = float(rf.diff_ns(drules, s, first, pos))
            got = float(model.rules_ns(drules, s, pos) - model.rules_ns(0, s, first))
            assert got == pytest.approx(want, rel=1e-9, abs=1e-6), (n, first, pos)


def test_example_calibration_reproduces_its_report_and_raises_large_chains():
    """results/baseline/calibration-example: the cost model from its iptables-legacy fit
    predicts the report's last-first differences (N=10 56 ns ... N=100,000 19,747,463 ns,
    within 1 ns); small N stays within 1 % of the in-cache slope, large N is far above it."""
    from kernels.costmodel import CostModel, kube_services_bytes

    model = CostModel.from_overrides(cal.costmodel_rule_keys(_example_fits()["iptables-legacy"]))
    report = {10: 56, 100: 619, 300: 1869, 1000: 6249, 10_000: 233_513, 100_000: 19_747_463}
    for n, pred in report.items():
        s = kube_services_bytes(n + 1)
        diff = float(model.rules_ns(n - 1, s, n) - model.rules_ns(0, s, 1))
        assert diff == pytest.approx(pred, abs=1.0), n
        ratio = diff / (model.rule_ns * (n - 1))
        if n <= 1000:
            assert 1.0 <= ratio < 1.01, (n, ratio)
        elif n == 100_000:
            assert ratio > 20, ratio


def test_chain_bytes_use_the_cost_model_rule_size():
    """calibrate's chain bytes (rule count x kernels.costmodel.KUBE_SERVICES_RULE_BYTES) equal
    the struct-by-struct size of the loaded KUBE-SERVICES text (the project's layout)."""
    from kernels.costmodel import KUBE_SERVICES_RULE_BYTES

    text = _project_iptables_text(rules.calibration_cluster(50, 18080, seed=1))
    n = cal._kube_services_rules(text)
    assert n == 51  # 50 Services + the KUBE-NODEPORTS jump
    assert n * KUBE_SERVICES_RULE_BYTES == rules.iptables_chain_bytes(text)


def test_off_terms_are_written_as_zero_without_shape():
    fit = {**_example_fits()["iptables-legacy"], "warm_ns": 0.0, "warm_rules": float("nan"),
           "rule_far_ns": 5.0, "far_rules": float("inf")}
    keys = cal.costmodel_rule_keys(fit)
    assert keys["rule_warm_ns"] == 0.0 and "rule_warm_rules" not in keys
    assert keys["rule_far_ns"] == 0.0 and "rule_far_rules" not in keys
    assert keys["rule_cold_ns"] > 0 and keys["rule_cache_k"] == 4.0


def test_report_writes_markdown_and_png(tmp_path):
    result = cal.fit_all(_synthetic_points())
    result["provenance"] = {"date": "2026-01-01T00:00:00Z"}
    path = calibration_report.write_report(result, tmp_path)
    text = path.read_text()
    assert "| iptables-legacy | 100,000 |" in text and "PASS" in text
    png = tmp_path / "calibration.png"
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"


def test_points_round_trip_json():
    import json

    pts = _synthetic_points()[:2]
    back = cal.points_from_json(json.loads(json.dumps(cal.points_to_json(pts))))
    assert back[0].samples["last"][:3] == pts[0].samples["last"][:3]


def test_toml_writer_values():
    text = cal.to_toml({"a": {"x": 1, "y": 2.5, "z": "s", "w": [1, 2], "n": float("nan")},
                        "a.b-c": {"k": True}})
    raw = tomllib.loads(text)
    assert raw["a"]["x"] == 1 and raw["a"]["w"] == [1, 2] and math.isnan(raw["a"]["n"])
    assert raw["a"]["b-c"]["k"] is True


# ------------------------------------------------------------------------------ rule texts


def _project_iptables_text(cluster) -> str:
    from harness.iptables_text import render_restore
    from kernels.iptables import compile_cluster

    return render_restore(compile_cluster(cluster))


def test_calibration_cluster_is_loopback_only():
    c = rules.calibration_cluster(500, 18080, seed=3)
    vips = c.svc_cluster_ip.astype(np.int64)
    assert ((vips >> 24) == 127).all()
    assert (c.ep_ip == rules.ip_to_int("127.0.0.1")).all()
    assert (c.port_target == 18080).all()


def test_services_order_and_partial_sync_on_project_text():
    c = rules.calibration_cluster(50, 18080, seed=1)
    text = _project_iptables_text(c)
    order = rules.iptables_services_order(text)
    assert [(ip, port) for ip, port, _ in order] == rules.kube_services_order(c)
    counts = rules.iptables_counts(text)
    partial, pc = rules.iptables_partial_sync(text, order[7][2])
    # Top-level KUBE-SERVICES rewritten in full; one SVC + one SEP chain; no builtin jumps.
    assert len(rules.iptables_services_order(partial)) == 50
    assert sum(ln.startswith(":KUBE-SVC-") for ln in partial.splitlines()) == 1
    assert sum(ln.startswith(":KUBE-SEP-") for ln in partial.splitlines()) == 1
    assert not any(ln.startswith(("-A OUTPUT", "-A PREROUTING")) for ln in partial.splitlines())
    assert pc["rules"] < counts["rules"]
    assert rules.iptables_chain_bytes(text) > 50 * 112


def test_minimal_renderers_and_nft_helpers():
    c = rules.calibration_cluster(20, 18080, seed=2)
    ipt = rules.render_iptables_minimal(c)
    assert len(rules.iptables_services_order(ipt)) == 20
    nft = rules.render_nft_minimal(c)
    counts = rules.nft_counts(nft)
    assert counts["elements"] == 20  # service-ips (anonymous numgen vmaps are in rules)
    vip, port = rules.kube_services_order(c)[5]
    delta = rules.nft_service_change(nft, vip, port)
    assert delta.startswith("flush chain ip kube-proxy service-")
    assert f"add element ip kube-proxy service-ips {{ {vip} . tcp . {port} : goto" in delta
    simple = rules.nft_single_endpoint_goto(nft)
    assert "numgen" not in simple and simple.count("goto endpoint-") == 20
    with pytest.raises(ValueError):
        rules.nft_service_change(nft, "127.0.0.9", 1)


def test_probe_sources_never_use_the_endpoint_address():
    sys.path.insert(0, str(REPO / "harness"))
    try:
        from calibrate_probe import _sources
    finally:
        sys.path.pop(0)
    src = _sources("127.0.2.0", 1000)
    assert src[0] == "127.0.2.1" and len(set(src)) == 1000
    assert "127.0.0.1" not in src and all(s.startswith("127.0.") for s in src)


# ------------------------------------------------------------------------------ refusals / CLI


def test_preflight_refuses_non_root_and_missing_tools(monkeypatch):
    from harness import netns

    monkeypatch.setattr(netns.sys, "platform", "darwin")
    with pytest.raises(netns.CalibrationRefused, match="expected Linux"):
        netns.preflight()
    monkeypatch.setattr(netns.sys, "platform", "linux")
    monkeypatch.setattr(netns.os, "geteuid", lambda: 1000)
    with pytest.raises(netns.CalibrationRefused, match="expected root"):
        netns.preflight()
    monkeypatch.setattr(netns.os, "geteuid", lambda: 0)
    with pytest.raises(netns.CalibrationRefused, match="apt-get install -y iptables nftables"):
        netns.preflight(tools=("kpbench-no-such-tool",))
    assert issubclass(netns.CalibrationRefused, UserError)


def test_cli_rejects_bad_services_and_modes():
    from harness.commands import calibrate as cmd

    with pytest.raises(UserError, match="--services"):
        cmd._services("10,abc")
    with pytest.raises(UserError, match="--services"):
        cmd._services("1")
    assert cmd._services("1000,10,1000") == (10, 1000)


def test_cli_refusal_is_one_line_exit_2(monkeypatch, capsys):
    from harness import cli, netns

    monkeypatch.setattr(netns.os, "geteuid", lambda: 1000)
    code = cli.main(["calibrate", "--quick", "--out", "/nonexistent/x.toml"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "expected root" in err


def test_nft_helpers_on_project_text():
    ipt, nft, note = rules.project_renderers()
    assert nft is not None, note  # harness.nft_text is part of the project
    c = rules.calibration_cluster(30, 18080, seed=4)
    text = nft(c)
    counts = rules.nft_counts(text)
    assert counts["elements"] >= 30 and counts["chains"] >= 60
    vip, port = rules.kube_services_order(c)[3]
    delta = rules.nft_service_change(text, vip, port)
    lines = delta.splitlines()
    assert lines[0].startswith("flush chain ip kube-proxy service-")
    assert sum(ln.startswith("add rule ") for ln in lines) >= 1
    assert "numgen" not in rules.nft_single_endpoint_goto(text)
