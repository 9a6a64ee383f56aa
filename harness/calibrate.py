"""`kpbench calibrate`: measure the real kernel's netfilter costs and fit the cost model.

What is measured (spec C.1, C.2; validation case 17), for each mode (iptables-legacy,
iptables-nft, nftables) and each number of Services N, in a fresh private namespace
(harness.netns; loopback only, VIPs in 127.64.0.0/10 DNAT to a listener on 127.0.0.1):

* Connection set-up latency (harness.calibrate_probe): TCP connect() to the Services at the
  first, middle and last KUBE-SERVICES position (spec B.1 step 2; the same VIPs in nftables) and
  to a non-Service address (127.0.0.1 itself, a miss that walks all of KUBE-SERVICES); every
  sample is a NEW conntrack entry; targets interleaved in random order each round. Statistics:
  medians, p10, and the median of per-round paired differences (last - first, mid - first) with
  a bootstrap standard error; the constant Python/syscall overhead cancels in the differences.
* nftables verdict-map lookup cost: a bench chain performs ``VMAP_DEPTH`` extra lookups in
  kube-proxy's own ``service-ips`` map (N elements) for one address and none for another;
  the paired difference / depth = ns per lookup (spec C.2), at every N.
* Sync cost: full load into the empty namespace, a full re-load over the loaded rules, and a
  one-Service change written as kube-proxy's partial sync (``iptables-restore --noflush`` with the
  top-level chains and the changed Service's chains, spec B.1; one nft transaction rewriting the
  Service chain and its map element, spec B.3); ``nft list chains`` for the listing cost.

What is fitted (numpy lstsq, standard errors from the residual variance):

* ns per rule evaluated from the last-first and mid-first differences against the difference
  in rules evaluated that kernels.iptables' traversal counts: one slope over all N, and the
  cache-aware RuleFit (in-cache cost; extra cost once KUBE-SERVICES outgrows L2, f(S/C) =
  x^k / (1 + x^k) of its bytes S; extra cost of rules past the front of a walk that stays in the
  last-level cache; extra cost of a walk's first rules), the variant with the lowest AIC. The
  formula is kernels.costmodel.iptables_rules_ns; the iptables-legacy fit is written to
  [costmodel] as rule_ns (in-cache), rule_cold_ns, rule_cache_bytes, rule_cache_k, rule_far_ns,
  rule_far_rules, rule_warm_ns, rule_warm_rules (``costmodel_table``). S = KUBE-SERVICES rules x
  kernels.costmodel.KUBE_SERVICES_RULE_BYTES, as the scaling kind computes it.
* ``base_ns``: intercept of the connect() latency (what a rule-free path costs end to end,
  including the client's syscalls), ``vmap_lookup_ns`` from the bench, sync costs per operation
  as kernels.sync names them (sync_ns_fixed, sync_ns_per_rule_restore, ...; see ``fit_sync``).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from harness import calibrate_rules as rules
from harness.netns import Namespace
from kernels.costmodel import (
    beyond,
    cache_fraction,
    iptables_rules_ns,
    kube_services_bytes,
    warm_walk,
)

MODES = ("iptables-legacy", "iptables-nft", "nftables")
RESTORE = {"iptables-legacy": "iptables-legacy-restore", "iptables-nft": "iptables-nft-restore"}
FULL_SERVICES = (10, 1000, 10000, 100000)
QUICK_SERVICES = (10, 1000, 5000, 20000)
LISTEN_PORT = 18080
VMAP_DEPTH = 16
LABELS = ("first", "mid", "last", "miss")
BENCH_HIT, BENCH_CTL = "127.0.0.3", "127.0.0.4"
CACHE_K_GRID = (1.0, 2.0, 4.0)
MAX_COLD_RATIO = 10.0
IPT_NFT_CHANGE_MAX = 20000
"""iptables-nft's partial restore (flush + rewrite of KUBE-SERVICES with --noflush) grows
super-linearly (4 s at 10,000 Services, 26 s at 20,000 on our machine): not timed above this."""
NFT_FAITHFUL_MAX = 5000
"""Above this many Services the nftables text's one-element ``numgen random mod 1 vmap { 0 :
goto X }`` is loaded as the equivalent ``goto X``: every anonymous set's name allocation in
nf_tables scans the table's sets, so one transaction with N anonymous vmaps costs O(N^2) kernel
time (168 s at 20,000 Services on our 2-core machine). Provenance records it; those points are
left out of the nftables sync fit."""


@dataclass(frozen=True)
class Settings:
    """What to measure and how hard (``quick`` = CI-sized)."""

    services: tuple[int, ...] = FULL_SERVICES
    modes: tuple[str, ...] = MODES
    budget_s: float = 6.0  # probe time per (mode, N)
    max_rounds: int = 20000
    min_rounds: int = 400
    warmup: int = 50
    change_repeats: int = 5  # one-Service changes timed per point (1 above 10,000 Services)
    full_reload: bool = True  # also time a full re-load over the loaded rules
    nft_faithful_max: int = NFT_FAITHFUL_MAX
    cpu: int | None = None
    seed: int = 0
    listen_port: int = LISTEN_PORT

    @classmethod
    def quick(cls, services: tuple[int, ...] | None = None) -> Settings:
        return cls(services=services or QUICK_SERVICES, budget_s=1.0, max_rounds=3000,
                   min_rounds=300, change_repeats=1, full_reload=False, nft_faithful_max=1000)


@dataclass
class Point:
    """Raw measurements of one (mode, N)."""

    mode: str
    n_services: int
    rounds: int
    targets: dict[str, list]  # label -> [ip, port, KUBE-SERVICES index or -1]
    rules_model: dict[str, int]  # label -> rules evaluated (model count)
    samples: dict[str, list[int]]  # label -> connect() ns, one per round (paired by index)
    chain_rules: int  # KUBE-SERVICES rules (iptables) / service-ips elements (nftables)
    chain_bytes: int  # kernel bytes of KUBE-SERVICES (what a walk reads)
    counts: dict[str, int]  # rule/chain/element lines of the loaded text
    change_counts: dict[str, int]
    load_initial_s: float
    load_full_s: float
    change_s: list[float]
    list_s: float = float("nan")
    simplified: bool = False  # nftables: numgen vmaps of one element loaded as goto
    vmap_samples: dict[str, list[int]] = field(default_factory=dict)


# ------------------------------------------------------------------------------ statistics


def median_se(x: np.ndarray, seed: int = 0, n_boot: int = 200) -> tuple[float, float]:
    """Median and its bootstrap standard error (fixed seed)."""
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(n_boot, x.size))
    boots = np.median(x[idx], axis=1)
    return float(np.median(x)), float(np.std(boots, ddof=1))


def paired_diff(a, b, seed: int = 0) -> tuple[float, float]:
    """Median of per-round differences a_i - b_i and its bootstrap SE."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    n = min(a.size, b.size)
    return median_se(a[:n] - b[:n], seed=seed)


def lstsq_se(design: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Least squares coefficients, their standard errors and the residual sum of squares.

    SE = sqrt(diag(s^2 (X'X)^-1)) with s^2 = RSS / (n - p); NaN when n <= p.
    """
    design = np.asarray(design, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    coef, _res, rank, _sv = np.linalg.lstsq(design, y, rcond=None)
    resid = y - design @ coef
    rss = float(resid @ resid)
    n, p = design.shape
    if n <= p or rank < p:
        return coef, np.full(p, np.nan), rss
    s2 = rss / (n - p)
    cov = s2 * np.linalg.pinv(design.T @ design)
    return coef, np.sqrt(np.clip(np.diag(cov), 0.0, None)), rss


# ------------------------------------------------------------------------------ fits


@dataclass
class RuleFit:
    """Per-rule cost of one iptables mode (ns).

    ``rule_ns``: one slope for every N. Cache-aware model: a rule evaluated in a chain of S
    bytes costs ``rule_hot_ns + rule_cold_ns * f(S / cache_bytes)`` (the whole chain outgrows
    L2), rules past the first ``far_rules`` of a walk cost ``rule_far_ns`` more (the front of
    the chain, walked by every connection, stays in the last-level cache, the tail does not:
    at 100,000 Services the mid position costs ~40-155 ns per rule, the last ~120-200), and
    the first rules of a
    walk cost ``warm_ns`` more, fading over ``warm_rules`` rules (W(r) = r0 (1 - exp(-r/r0));
    a short walk does not get the hardware prefetcher going; measured: ~9 ns per rule for a
    10-rule walk vs ~6.5 ns at 1,000-5,000 rules with iptables-legacy on our machine).
    """

    rule_ns: float
    rule_ns_se: float
    rule_hot_ns: float
    rule_hot_ns_se: float
    rule_cold_ns: float
    rule_cold_ns_se: float
    cache_bytes: float
    cache_k: float
    rows: int
    warm_ns: float = 0.0
    warm_ns_se: float = float("nan")
    warm_rules: float = float("nan")
    rule_far_ns: float = 0.0
    rule_far_ns_se: float = float("nan")
    far_rules: float = float("inf")

    def terms(self) -> dict[str, float]:
        """The fit as keyword arguments of kernels.costmodel.iptables_rules_ns."""
        return {"rule_ns": self.rule_hot_ns, "cold_ns": self.rule_cold_ns,
                "cache_bytes": self.cache_bytes, "cache_k": self.cache_k,
                "far_ns": self.rule_far_ns, "far_rules": self.far_rules,
                "warm_ns": self.warm_ns, "warm_rules": self.warm_rules}

    def per_rule(self, chain_bytes) -> np.ndarray:
        """Cache-aware ns per rule evaluated when the walked chain holds ``chain_bytes``."""
        kw = {**self.terms(), "far_ns": 0.0, "warm_ns": 0.0}
        return iptables_rules_ns(np.ones(np.shape(chain_bytes)), chain_bytes, **kw)

    def diff_ns(self, drules, chain_bytes, ks_first, ks_pos) -> np.ndarray:
        """Predicted latency difference between two positions (ns): kernels.costmodel's
        iptables_rules_ns(drules, S, ks_pos) - iptables_rules_ns(0, S, ks_first)."""
        kw = self.terms()
        return (iptables_rules_ns(drules, chain_bytes, ks_pos, **kw)
                - iptables_rules_ns(0.0, chain_bytes, ks_first, **kw))


REL_FLOOR = 0.02
"""Relative error floor of a measured difference in the weights (2 %: run-to-run drift)."""
WARM_GRID = (2.0, 4.0, 8.0, 16.0)


def fit_rules(drules, dns, dns_se, chain_bytes, ks_first=None, ks_pos=None) -> RuleFit:
    """Fit ns per rule from paired differences (measured ns vs model rule-count difference).

    Weighted least squares with weights 1 / sqrt(SE^2 + (REL_FLOOR y)^2), i.e. relative errors
    where the measurement is precise and its SE where it is not (a 10-rule difference at N=10
    is ~60 ns against a ~5-10 ns SE). Fits the single slope ``rule_ns``, and the cache-aware
    model (RuleFit) profiled over a log grid of cache sizes (bytes), k in CACHE_K_GRID and, when
    the KUBE-SERVICES positions ``ks_first``/``ks_pos`` are given, warm-up lengths in WARM_GRID,
    with (hot, cold, warm) solved by lstsq at each grid point (all >= 0; cold <= MAX_COLD_RATIO
    x hot); the variant (plain, cache, warm-up, both) with the lowest AIC (weighted RSS + 2 x
    parameters) wins. Rows with a non-positive difference are dropped.
    """
    dr = np.asarray(drules, dtype=np.float64)
    y = np.asarray(dns, dtype=np.float64)
    se_y = np.nan_to_num(np.asarray(dns_se, dtype=np.float64), nan=0.0)
    chain = np.asarray(chain_bytes, dtype=np.float64)
    warm = ks_first is not None and ks_pos is not None
    kf = np.asarray(ks_first if warm else np.zeros_like(dr), dtype=np.float64)
    kp = np.asarray(ks_pos if warm else np.zeros_like(dr), dtype=np.float64)
    keep = (y > 0) & (dr > 0)
    dr, y, chain, se_y, kf, kp = dr[keep], y[keep], chain[keep], se_y[keep], kf[keep], kp[keep]
    if dr.size == 0:
        nan = float("nan")
        return RuleFit(nan, nan, nan, nan, nan, nan, nan, nan, 0)
    w = 1.0 / np.sqrt(se_y**2 + (REL_FLOOR * y) ** 2)
    coef, se, _ = lstsq_se((dr * w)[:, None], y * w)
    single, single_se = float(coef[0]), float(se[0])
    nan = float("nan")
    best = {"rss": math.inf}
    caches = [math.inf]
    if np.unique(chain).size >= 3:
        # A transition must lie inside the measured range to be identifiable.
        caches += list(np.logspace(np.log10(chain.min() / 4), np.log10(chain.max()), 31))
    warms = [nan] + (list(WARM_GRID) if warm and dr.size >= 4 else [])
    prefixes = [math.inf]
    if np.unique(chain).size >= 3 and warm:
        prefixes += list(np.logspace(2, np.log10(max(kp.max(), 1e3)), 41))
    for c1 in caches:
        for k in CACHE_K_GRID if math.isfinite(c1) else (nan,):
            cols = [dr]
            if math.isfinite(c1):
                cols.append(dr * cache_fraction(chain, c1, k))
            for c2 in prefixes:
                far = [beyond(kp, c2) - beyond(kf, c2)] if math.isfinite(c2) else []
                for r0 in warms:
                    extra = [warm_walk(kp, r0) - warm_walk(kf, r0)] if math.isfinite(r0) else []
                    # AIC (weighted RSS ~ chi^2): a term must pay for its parameters (cache:
                    # 3, LLC prefix: 2, warm-up: 2), so sparse or noisy data keep simpler models.
                    n_par = (1 + 3 * math.isfinite(c1) + 2 * math.isfinite(c2)
                             + 2 * math.isfinite(r0))
                    if n_par >= dr.size:
                        continue
                    design = np.column_stack(cols + far + extra) * w[:, None]
                    cf = np.linalg.lstsq(design, y * w, rcond=None)[0]
                    resid = y * w - design @ cf
                    rss = float(resid @ resid)
                    if (cf < 0).any() or cf[0] == 0:
                        continue
                    if math.isfinite(c1) and cf[1] > MAX_COLD_RATIO * cf[0]:
                        continue
                    aic = rss + 2 * n_par
                    if aic < best["rss"] - 1e-9:
                        best = {"rss": aic, "design": design, "c": c1, "c2": c2, "k": k,
                                "r0": r0}
    cf, cse, _ = lstsq_se(best["design"], y * w)
    cache_on = math.isfinite(best["c"])
    far_on = math.isfinite(best["c2"])
    i_far = 2 if far_on else None
    i_warm = 1 + cache_on + far_on
    warm_on = math.isfinite(best["r0"])
    return RuleFit(
        rule_ns=single, rule_ns_se=single_se,
        rule_hot_ns=float(cf[0]), rule_hot_ns_se=float(cse[0]),
        rule_cold_ns=float(cf[1]) if cache_on else 0.0,
        rule_cold_ns_se=float(cse[1]) if cache_on else nan,
        cache_bytes=float(best["c"]), cache_k=float(best["k"]), rows=int(dr.size),
        warm_ns=float(cf[i_warm]) if warm_on else 0.0,
        warm_ns_se=float(cse[i_warm]) if warm_on else nan,
        warm_rules=float(best["r0"]),
        rule_far_ns=float(cf[i_far]) if far_on else 0.0,
        rule_far_ns_se=float(cse[i_far]) if far_on else nan,
        far_rules=float(best["c2"]))


def fit_line(x, y) -> dict[str, float]:
    """y = a + b x by least squares: {'a', 'a_se', 'b', 'b_se'}."""
    x = np.asarray(x, dtype=np.float64)
    coef, se, _ = lstsq_se(np.column_stack([np.ones_like(x), x]), np.asarray(y, float))
    return {"a": float(coef[0]), "a_se": float(se[0]), "b": float(coef[1]), "b_se": float(se[1])}


def fit_sync(points: list[Point]) -> dict[str, dict[str, float]]:
    """Sync costs per mode, in the units and names of kernels.sync's cost keys (ns).

    Relative (1/y weighted) least squares over these rows:

    * iptables-legacy rows: initial load [1, lines, 0], full re-load [1, lines, R], one-Service
      change [1, lines written, R] (legacy restore copies the whole table out and back in, spec
      B.1 / kernels.sync): sync_ns_fixed, sync_ns_per_rule_restore (= per chain line),
      sync_ns_per_rule_table_copy.
    * iptables-nft rows: initial and change [1, lines]: sync_ns_per_rule_restore_nft (= per
      chain line).
    * nftables rows: initial and change [1, objects] with objects = rules + chains + elements
      (collinear in our clusters, so one cost for each): sync_ns_per_nft_rule / _chain /
      _element; ``nft list chains`` time vs chains: sync_ns_per_nft_chain_listed.
    """
    out: dict[str, dict[str, float]] = {}
    by_mode: dict[str, list[Point]] = {}
    for p in points:
        if not p.simplified:
            by_mode.setdefault(p.mode, []).append(p)
    for mode, pts in by_mode.items():
        rows, y = [], []
        for p in pts:
            lines = p.counts.get("rules", 0) + p.counts.get("chains", 0)
            written = p.change_counts.get("rules", 0) + p.change_counts.get("chains", 0)
            change = float(np.median(p.change_s)) if p.change_s else float("nan")
            if mode == "iptables-legacy":
                table = p.counts["rules"]
                rows += [[1, lines, 0], [1, lines, table], [1, written, table]]
                y += [p.load_initial_s, p.load_full_s, change]
            elif mode == "iptables-nft":
                rows += [[1, lines], [1, written]]
                y += [p.load_initial_s, change]
            else:
                objs = lines + p.counts.get("elements", 0)
                w_objs = written + p.change_counts.get("elements", 0)
                rows += [[1, objs], [1, w_objs]]
                y += [p.load_initial_s, change]
        design = np.asarray(rows, dtype=np.float64)
        yy = np.asarray(y, dtype=np.float64) * 1e9
        ok = np.isfinite(yy) & (yy > 0)
        # Relative least squares: load times span 4 decades and grow faster than linearly
        # (libiptc, nft's cache), so absolute residuals would let the largest N set everything.
        wt = 1.0 / yy[ok]
        coef, se, _ = lstsq_se(design[ok] * wt[:, None], yy[ok] * wt)
        fit = {"sync_ns_fixed": coef[0], "sync_ns_fixed_se": se[0]}
        if mode == "iptables-legacy":
            fit.update(sync_ns_per_rule_restore=coef[1], sync_ns_per_rule_restore_se=se[1],
                       sync_ns_per_chain_restore=coef[1],
                       sync_ns_per_rule_table_copy=coef[2], sync_ns_per_rule_table_copy_se=se[2])
        elif mode == "iptables-nft":
            fit.update(sync_ns_per_rule_restore_nft=coef[1],
                       sync_ns_per_rule_restore_nft_se=se[1],
                       sync_ns_per_chain_restore_nft=coef[1])
        else:
            fit.update(sync_ns_per_nft_rule=coef[1], sync_ns_per_nft_rule_se=se[1],
                       sync_ns_per_nft_chain=coef[1], sync_ns_per_nft_element=coef[1])
            listed = [(p.counts.get("chains", 0), p.list_s) for p in pts
                      if math.isfinite(p.list_s)]
            if len(listed) >= 2:
                line = fit_line([c for c, _ in listed], [s * 1e9 for _, s in listed])
                fit.update(sync_ns_per_nft_chain_listed=line["b"],
                           sync_ns_per_nft_chain_listed_se=line["b_se"])
        out[mode] = {k: float(v) for k, v in fit.items()}
    return out


# ------------------------------------------------------------------------------ summaries


def summarize(p: Point, seed: int = 0) -> dict:
    """Medians, p10 and paired differences (ns) of one point."""
    s = {lab: np.asarray(v, dtype=np.float64) for lab, v in p.samples.items()}
    row: dict = {"mode": p.mode, "n_services": p.n_services, "rounds": p.rounds,
                 "chain_rules": p.chain_rules, "chain_bytes": p.chain_bytes}
    for lab in LABELS:
        if lab in s:
            row[f"{lab}_median_ns"] = float(np.median(s[lab]))
            row[f"{lab}_p10_ns"] = float(np.percentile(s[lab], 10))
            row[f"{lab}_rules"] = p.rules_model.get(lab, 0)
            idx = p.targets[lab][2] if lab in p.targets else -1
            row[f"{lab}_ks"] = idx + 1 if idx >= 0 else p.chain_rules + 1  # KUBE-SERVICES walk
    for a in ("mid", "last", "miss"):
        d, se = paired_diff(s[a], s["first"], seed=seed)
        row[f"{a}_minus_first_ns"], row[f"{a}_minus_first_se"] = d, se
    if p.vmap_samples:
        d, se = paired_diff(p.vmap_samples["hit"], p.vmap_samples["ctl"], seed=seed)
        row["vmap_lookup_ns"], row["vmap_lookup_se"] = d / VMAP_DEPTH, se / VMAP_DEPTH
    row["load_initial_s"] = p.load_initial_s
    row["load_full_s"] = p.load_full_s
    row["change_s"] = float(np.median(p.change_s)) if p.change_s else float("nan")
    row["list_s"] = p.list_s
    row["loaded_rules"] = p.counts.get("rules", 0)
    return row


def fit_all(points: list[Point], seed: int = 0) -> dict:
    """Every fit of a calibration: per-mode rule costs, base, vmap, sync."""
    rows = [summarize(p, seed) for p in points]
    fits: dict = {"rules": {}, "base": {}, "vmap": {}, "sync": fit_sync(points)}
    for mode in {r["mode"] for r in rows}:
        mrows = [r for r in rows if r["mode"] == mode]
        if mode in RESTORE:
            dr, dns, se, chain, kf, kp = [], [], [], [], [], []
            for r in mrows:
                for a in ("mid", "last"):
                    dr.append(r[f"{a}_rules"] - r["first_rules"])
                    dns.append(r[f"{a}_minus_first_ns"])
                    se.append(r[f"{a}_minus_first_se"])
                    chain.append(r["chain_bytes"])
                    kf.append(r["first_ks"])
                    kp.append(r[f"{a}_ks"])
            rf = fit_rules(dr, dns, se, chain, kf, kp)
            fits["rules"][mode] = asdict(rf)
            base = [r["first_median_ns"]
                    - float(rf.diff_ns(r["first_rules"], r["chain_bytes"], 0, r["first_ks"]))
                    for r in mrows]
        else:
            vm = [(r["vmap_lookup_ns"], r["vmap_lookup_se"]) for r in mrows
                  if "vmap_lookup_ns" in r]
            if vm:
                v = np.array([x for x, _ in vm])
                coef, cse, _ = lstsq_se(np.ones((v.size, 1)), v)
                fits["vmap"][mode] = {"vmap_lookup_ns": float(coef[0]),
                                      "vmap_lookup_ns_se": float(cse[0]),
                                      "per_n": [float(x) for x in v]}
            base = [r["first_median_ns"] for r in mrows]
        b = np.asarray(base, dtype=np.float64)
        fits["base"][mode] = {"base_ns": float(np.median(b)),
                              "base_ns_se": float(np.std(b, ddof=1) / math.sqrt(b.size))
                              if b.size > 1 else float("nan")}
    return {"rows": rows, "fits": fits}


def predictions(result: dict) -> list[dict]:
    """Model prediction beside measurement for every mode, N and position (validation table).

    Prediction of a difference = rule-count difference (kernels.iptables traversal) x the fitted
    cache-aware ns per rule (iptables modes); 0 for nftables (one vmap lookup on every path).
    Also the single-slope prediction (``rule_ns`` alone) for comparison.
    """
    fits = result["fits"]
    out = []
    for r in result["rows"]:
        mode = r["mode"]
        base = fits["base"][mode]["base_ns"]
        rf = RuleFit(**fits["rules"][mode]) if mode in RESTORE else None
        single = rf.rule_ns if rf else 0.0
        for a in ("mid", "last", "miss"):
            drules = r[f"{a}_rules"] - r["first_rules"]
            meas = r[f"{a}_minus_first_ns"]
            pred = float(rf.diff_ns(drules, r["chain_bytes"], r["first_ks"], r[f"{a}_ks"])) \
                if rf else 0.0
            out.append({
                "mode": mode, "n_services": r["n_services"], "position": a,
                "rules_first": r["first_rules"], "rules_pos": r[f"{a}_rules"],
                "measured_diff_ns": meas, "measured_diff_se": r[f"{a}_minus_first_se"],
                "predicted_diff_ns": pred, "predicted_single_ns": single * drules,
                "error_pct": 100.0 * (pred - meas) / meas if mode in RESTORE else float("nan"),
                "error_single_pct": 100.0 * (single * drules - meas) / meas
                if mode in RESTORE else float("nan"),
                "measured_ns": r[f"{a}_median_ns"],
                "predicted_ns": base + (float(rf.diff_ns(r[f"{a}_rules"], r["chain_bytes"], 0,
                                                         r[f"{a}_ks"])) if rf else 0.0),
                "ratio_to_first": r[f"{a}_median_ns"] / r["first_median_ns"],
            })
    return out


# ------------------------------------------------------------------------------ measurement


def _rounds(settings: Settings, n: int) -> int:
    per_round = 4 * 20e-6 + 2.5 * n * 12e-9  # connects + expected rule walks (s)
    return int(min(settings.max_rounds, max(settings.min_rounds, settings.budget_s / per_round)))


def _probe(ns: Namespace, targets: list, rounds: int, settings: Settings, seed: int) -> dict:
    req = {"listen_port": settings.listen_port, "targets": targets, "rounds": rounds,
           "warmup": settings.warmup, "cpu": settings.cpu, "seed": seed}
    script = Path(__file__).with_name("calibrate_probe.py")
    proc = ns.run([sys.executable, str(script)], stdin=json.dumps(req), timeout=1800)
    return json.loads(proc.stdout)["samples"]


COUNT_SOURCE = ("kernels.iptables.traverse(hook='output').rules_evaluated (nat + filter rules "
                "evaluated by the first packet)")


def _model_rules(cluster, targets: dict, src: str = "127.0.2.1") -> tuple[dict[str, int], bool]:
    """Rules our model evaluates for each target's first packet, and whether it DNATs every
    Service target to the listener (spec C.1; kernels.iptables traversal from nat OUTPUT)."""
    from kernels import iptables as kipt
    from kernels import traffic
    from kernels.cluster import ip_to_int

    labels = list(targets)
    pk = traffic.packets(src, [targets[lab][0] for lab in labels],
                         [targets[lab][1] for lab in labels], sport=40000)
    res = kipt.traverse(kipt.compile_cluster(cluster), pk, hook="output")
    listener = ip_to_int(rules.ENDPOINT_IP)
    dnat_ok = all(
        bool(res.dnat[i]) and int(res.dnat_addr[i]) == listener
        for i, lab in enumerate(labels) if targets[lab][2] >= 0)
    return {lab: int(res.rules_evaluated[i]) for i, lab in enumerate(labels)}, dnat_ok


def measure_point(mode: str, n: int, settings: Settings, renderers, log=print) -> Point:
    """Load one mode's rules for N Services in a fresh namespace and measure it."""
    cluster = rules.calibration_cluster(n, settings.listen_port, seed=settings.seed)
    ipt_render, nft_render = renderers
    ipt_text = ipt_render(cluster)
    order = rules.iptables_services_order(ipt_text)
    if not order:
        raise RuntimeError("iptables text: no KUBE-SERVICES rules with -d VIP --dport found")
    picks = {"first": 0, "mid": len(order) // 2, "last": len(order) - 1}
    targets = {lab: [order[i][0], order[i][1], i] for lab, i in picks.items()}
    targets["miss"] = ["127.0.0.1", settings.listen_port, -1]
    text = nft_render(cluster) if mode == "nftables" else ipt_text
    simplified = mode == "nftables" and n > settings.nft_faithful_max
    if simplified:
        text = rules.nft_single_endpoint_goto(text)
    if mode == "nftables":
        rules_model = {lab: 0 for lab in targets}  # one vmap lookup on every path (spec B.3)
    else:
        rules_model, dnat_ok = _model_rules(cluster, targets)
        if not dnat_ok:
            raise RuntimeError(f"{mode} N={n}: the model does not DNAT the probed VIPs to "
                               f"{rules.ENDPOINT_IP}; the loaded rules would not match it")
    rounds = _rounds(settings, n)
    repeats = settings.change_repeats if n <= 10000 else 1
    if mode == "iptables-nft" and n > IPT_NFT_CHANGE_MAX:
        repeats = 0
    probe_targets = [[lab, ip, port] for lab, (ip, port, _i) in targets.items()]
    with Namespace(tag=mode.split("-")[-1]) as ns:
        if mode in RESTORE:
            cmd = [RESTORE[mode]]
            load_initial = ns.timed(cmd, stdin=text)
            load_full = ns.timed(cmd, stdin=text) if settings.full_reload else float("nan")
            counts = rules.iptables_counts(text)
            partial, change_counts = rules.iptables_partial_sync(text, order[picks["mid"]][2])
            change = [ns.timed([*cmd, "--noflush"], stdin=partial)
                      for _ in range(repeats)]
            list_s = float("nan")
        else:
            cmd = ["nft", "-f", "-"]
            load_initial = ns.timed(cmd, stdin=text)
            reload = "table ip kube-proxy\ndelete table ip kube-proxy\n" + text
            load_full = ns.timed(cmd, stdin=reload) if settings.full_reload else float("nan")
            counts = rules.nft_counts(text)
            vip, port = order[picks["mid"]][0], order[picks["mid"]][1]
            delta = rules.nft_service_change(text, vip, port)
            change_counts = {"rules": sum(ln.startswith("add rule") for ln in delta.split("\n")),
                             "chains": 1, "elements": 2}
            change = [ns.timed(cmd, stdin=delta) for _ in range(repeats)]
            t0 = time.perf_counter()
            ns.run(["nft", "list", "chains", "ip"])
            list_s = time.perf_counter() - t0
        samples = _probe(ns, probe_targets, rounds, settings, seed=settings.seed + n)
        vmap_samples = {}
        if mode == "nftables":
            ns.run(["nft", "-f", "-"], stdin=_vmap_bench(settings.listen_port))
            vmap_samples = _probe(
                ns, [["hit", BENCH_HIT, settings.listen_port],
                     ["ctl", BENCH_CTL, settings.listen_port]],
                rounds, settings, seed=settings.seed + n + 1)
    change_med = float(np.median(change)) if change else float("nan")
    log(f"calibrate: {mode:15s} N={n:<7d} rounds={rounds:<6d} load={load_initial:.3f}s "
        f"change={change_med:.4f}s")
    return Point(mode=mode, n_services=n, rounds=rounds, targets=targets,
                 rules_model=rules_model, samples=samples, chain_rules=len(order),
                 chain_bytes=int(kube_services_bytes(_kube_services_rules(ipt_text))),
                 counts=counts, change_counts=change_counts, load_initial_s=load_initial,
                 load_full_s=load_full, change_s=change, list_s=list_s,
                 vmap_samples=vmap_samples, simplified=simplified)


def _kube_services_rules(text: str) -> int:
    """Rules of the nat KUBE-SERVICES chain in iptables-restore text (its walk's length)."""
    table = None
    n = 0
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
        elif table == "nat" and line.startswith("-A KUBE-SERVICES "):
            n += 1
    return n


def _vmap_bench(listen_port: int) -> str:
    """Bench chains in kube-proxy's table: VMAP_DEPTH lookups in @service-ips vs none (C.2)."""
    lookups = "\n".join(
        "add rule ip kube-proxy kpbcal-vmap-hit ip daddr . meta l4proto . th dport "
        "vmap @service-ips" for _ in range(VMAP_DEPTH))
    return (
        "add chain ip kube-proxy kpbcal-vmap-hit\n"
        f"{lookups}\n"
        f"add rule ip kube-proxy kpbcal-vmap-hit meta l4proto tcp dnat to 127.0.0.1:{listen_port}\n"
        "add chain ip kube-proxy kpbcal-vmap-ctl\n"
        f"add rule ip kube-proxy kpbcal-vmap-ctl meta l4proto tcp dnat to 127.0.0.1:{listen_port}\n"
        "add chain ip kube-proxy kpbcal-bench { type nat hook output priority -110; }\n"
        f"add rule ip kube-proxy kpbcal-bench ip daddr vmap {{ {BENCH_HIT} : jump "
        f"kpbcal-vmap-hit, {BENCH_CTL} : jump kpbcal-vmap-ctl }}\n"
    )


def resolve_renderers() -> tuple[tuple, str]:
    """(iptables renderer, nft renderer) and a description of their source."""
    ipt, nft, note = rules.project_renderers()
    notes = [note] if note else []
    if ipt is None:
        ipt = rules.render_iptables_minimal
        notes.append("iptables: harness.calibrate_rules minimal renderer (project compiler "
                     "not available)")
    if nft is None:
        nft = rules.render_nft_minimal
        notes.append("nftables: harness.calibrate_rules minimal renderer (harness.nft_text "
                     "not available)")
    return (ipt, nft), "; ".join(notes)


def run_calibration(settings: Settings, log=print, on_point=None) -> dict:
    """Measure every (mode, N); returns {'points': [Point...], 'provenance': {...}}.

    ``on_point(result so far)`` is called after each point (the command saves partial
    measurements with it, so an interrupted run keeps what it measured).
    """
    renderers, source = resolve_renderers()
    started = _dt.datetime.now(_dt.UTC)
    prov = provenance(settings, started, source, COUNT_SOURCE)
    points = []
    for n in settings.services:
        for mode in settings.modes:
            points.append(measure_point(mode, n, settings, renderers, log=log))
            if on_point is not None:
                on_point({"points": points, "provenance": prov})
    return {"points": points, "provenance": prov}


def provenance(settings: Settings, started, rule_source: str, count_source: str) -> dict:
    """Machine, kernel, tools and settings of a calibration."""
    def version(argv):
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            return (out.stdout or out.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.SubprocessError):
            return "unknown"

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "kernel": platform.release(),
        "machine": platform.machine(),
        "cpu": cpu,
        "cpus": os.cpu_count() or 0,
        "iptables": version(["iptables-legacy", "--version"]),
        "nft": version(["nft", "--version"]),
        "python": platform.python_version(),
        "services": list(settings.services),
        "modes": list(settings.modes),
        "budget_s": settings.budget_s,
        "max_rounds": settings.max_rounds,
        "pinned_cpu": -1 if settings.cpu is None else settings.cpu,
        "rule_source": rule_source,
        "count_source": count_source,
        "service_cidr": rules.SERVICE_CIDR,
        "vmap_depth": VMAP_DEPTH,
        "nft_faithful_max": settings.nft_faithful_max,
    }


# ------------------------------------------------------------------------------ output


def costmodel_table(fits: dict) -> dict[str, float]:
    """[costmodel] values named as kernels.costmodel / kernels.sync name them.

    The iptables-legacy rule fit (the mode of validation case 17) as kernels.costmodel's
    cache-aware per-rule keys (``COSTMODEL_RULE_KEYS``; a term the fit left out is written with
    0 ns and without its shape keys, so the cost model's inert defaults apply), base_ns from
    iptables-legacy, vmap_lookup_ns from nftables, sync costs of each mode under its own keys
    (sync_ns_fixed from iptables-legacy).
    """
    table: dict[str, float] = {}
    legacy = fits["rules"].get("iptables-legacy")
    if legacy and math.isfinite(legacy["rule_hot_ns"]):
        table.update(costmodel_rule_keys(legacy))
    base = fits["base"].get("iptables-legacy") or next(iter(fits["base"].values()), None)
    if base and math.isfinite(base["base_ns"]):
        table["base_ns"] = base["base_ns"]
    vm = fits["vmap"].get("nftables")
    if vm and math.isfinite(vm["vmap_lookup_ns"]):
        table["vmap_lookup_ns"] = max(vm["vmap_lookup_ns"], 0.0)
    for mode in ("nftables", "iptables-nft", "iptables-legacy"):
        for key, value in fits["sync"].get(mode, {}).items():
            if not key.endswith("_se") and math.isfinite(value):
                table[key] = max(value, 0.0)
    return table


COSTMODEL_RULE_KEYS = {
    "rule_ns": "rule_hot_ns", "rule_cold_ns": "rule_cold_ns", "rule_cache_bytes": "cache_bytes",
    "rule_cache_k": "cache_k", "rule_far_ns": "rule_far_ns", "rule_far_rules": "far_rules",
    "rule_warm_ns": "warm_ns", "rule_warm_rules": "warm_rules",
}
"""kernels.costmodel.CostModel key -> RuleFit field."""
_TERM_OF = {"rule_cache_bytes": "rule_cold_ns", "rule_cache_k": "rule_cold_ns",
            "rule_far_rules": "rule_far_ns", "rule_warm_rules": "rule_warm_ns"}


def costmodel_rule_keys(fit: dict) -> dict[str, float]:
    """[costmodel] rule keys of one RuleFit (as a dict): finite values only; a term that is
    off (0 ns, or its shape not finite) is written as 0 ns without its shape."""
    out = {}
    for key, field_name in COSTMODEL_RULE_KEYS.items():
        value = float(fit[field_name])
        if key in _TERM_OF or key == "rule_ns" or not math.isfinite(value):
            continue
        shapes = [s for s, t in _TERM_OF.items() if t == key]
        on = value > 0 and all(math.isfinite(float(fit[COSTMODEL_RULE_KEYS[s]]))
                               for s in shapes)
        out[key] = value if on else 0.0
        if on:
            out.update({s: float(fit[COSTMODEL_RULE_KEYS[s]]) for s in shapes})
    return {"rule_ns": float(fit["rule_hot_ns"]), **out}


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
        return repr(round(v, 6)) if abs(v) >= 1e-3 or v == 0 else f"{v:.6e}"
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return json.dumps(str(v))


def to_toml(tables: dict[str, dict]) -> str:
    """Minimal TOML writer: {table name: {key: scalar or list}} (dotted names for sub-tables)."""
    out = []
    for name, table in tables.items():
        out.append(f"[{name}]")
        for key, value in table.items():
            k = key if key.replace("_", "").isalnum() else json.dumps(key)
            out.append(f"{k} = {_toml_value(value)}")
        out.append("")
    return "\n".join(out)


def calibration_toml(result: dict) -> str:
    """The calibration file: [costmodel] (+ [provenance] with fit details and uncertainties)."""
    fits = result["fits"]
    tables = {"costmodel": costmodel_table(fits), "provenance": dict(result["provenance"])}
    for mode, rf in fits["rules"].items():
        tables[f"provenance.rules.{mode}"] = rf
    for mode, b in fits["base"].items():
        tables[f"provenance.base.{mode}"] = b
    for mode, v in fits["vmap"].items():
        tables[f"provenance.vmap.{mode}"] = v
    for mode, s in fits["sync"].items():
        tables[f"provenance.sync.{mode}"] = s
    head = ("# kpbench calibration (kpbench calibrate). [costmodel] overrides kernels.costmodel /\n"
            "# kernels.sync defaults; [provenance] records the machine and the fits' standard\n"
            "# errors (*_se). Use: kpbench run --calibration THIS_FILE ...\n")
    return head + to_toml(tables)


def points_to_json(points: list[Point]) -> list[dict]:
    return [asdict(p) for p in points]


def points_from_json(raw: list[dict]) -> list[Point]:
    return [Point(**p) for p in raw]
