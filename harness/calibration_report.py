"""Validation report of a calibration: prediction beside measurement (report.md + PNG).

For each mode and N: measured connect() latency at the first/middle/last KUBE-SERVICES
position and a miss, the measured last-first difference (median of paired differences, bootstrap
SE) beside the model's prediction (kernels.iptables rule counts x fitted ns per rule; 0 for
nftables' single vmap lookup), with error %. Acceptance (issue 7): every iptables prediction
within +-20 % of the measured difference; nftables last/first within +-20 % (flat).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from harness.calibrate import RESTORE, costmodel_table, predictions

TOLERANCE_PCT = 20.0
MODE_STYLE = {"iptables-legacy": ("tab:red", "o"), "iptables-nft": ("tab:orange", "s"),
              "nftables": ("tab:blue", "^")}


def acceptance(result: dict) -> dict[str, dict]:
    """Per mode: worst |error %| (iptables) or worst last/first deviation (nftables), pass flag."""
    preds = predictions(result)
    out = {}
    for mode in sorted({p["mode"] for p in preds}):
        rows = [p for p in preds if p["mode"] == mode and p["position"] == "last"]
        if mode in RESTORE:
            worst = max(abs(p["error_pct"]) for p in rows)
            worst_single = max(abs(p["error_single_pct"]) for p in rows)
            linear = all(p["measured_diff_ns"] > 0 for p in rows)
            out[mode] = {"worst_error_pct": worst, "worst_single_error_pct": worst_single,
                         "grows": linear, "passed": bool(worst <= TOLERANCE_PCT and linear)}
        else:
            dev = max(abs(p["ratio_to_first"] - 1.0) * 100.0 for p in rows)
            out[mode] = {"worst_last_over_first_pct": dev, "passed": bool(dev <= TOLERANCE_PCT)}
    return out


def _fmt(x: float, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:,.{digits}f}"


def plot(result: dict, path: Path) -> None:
    """Measured vs predicted: last-first difference, last-position latency, load time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    preds = [p for p in predictions(result) if p["position"] == "last"]
    rows = result["rows"]
    fig, axes = plt.subplots(1, 3, figsize=(16, 5))
    ax = axes[0]
    for mode in MODE_STYLE:
        mp = sorted((p for p in preds if p["mode"] == mode), key=lambda p: p["n_services"])
        if not mp:
            continue
        color, marker = MODE_STYLE[mode]
        n = np.array([p["n_services"] for p in mp], dtype=float)
        meas = np.array([p["measured_diff_ns"] for p in mp])
        se = np.array([p["measured_diff_se"] for p in mp])
        if mode in RESTORE:
            ax.errorbar(n, np.clip(meas, 1e-1, None), yerr=se, fmt=marker, color=color,
                        label=f"{mode} measured")
            ax.plot(n, [p["predicted_diff_ns"] for p in mp], "-", color=color,
                    label=f"{mode} model (cache-aware)")
            ax.plot(n, [p["predicted_single_ns"] for p in mp], ":", color=color,
                    label=f"{mode} model (single rule_ns)")
        else:
            ax.errorbar(n, np.clip(np.abs(meas), 1e-1, None), yerr=se, fmt=marker,
                        mfc="none", color=color, label=f"{mode} |measured| (model: 0)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("Services N (KUBE-SERVICES rules)")
    ax.set_ylabel("last - first position connect() latency (ns)")
    ax.set_title("First-packet cost of the rule walk")
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)

    ax = axes[1]
    for mode in MODE_STYLE:
        mp = sorted((p for p in preds if p["mode"] == mode), key=lambda p: p["n_services"])
        if not mp:
            continue
        color, marker = MODE_STYLE[mode]
        n = [p["n_services"] for p in mp]
        ax.plot(n, [p["measured_ns"] / 1e3 for p in mp], marker, color=color,
                label=f"{mode} measured")
        ax.plot(n, [p["predicted_ns"] / 1e3 for p in mp], "-", color=color,
                label=f"{mode} model")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("Services N")
    ax.set_ylabel("last-position connect() latency, median (µs)")
    ax.set_title("Connection set-up latency")
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)

    ax = axes[2]
    for mode in MODE_STYLE:
        mr = sorted((r for r in rows if r["mode"] == mode), key=lambda r: r["n_services"])
        if not mr:
            continue
        color, marker = MODE_STYLE[mode]
        n = [r["n_services"] for r in mr]
        ax.plot(n, [r["load_initial_s"] for r in mr], marker + "-", color=color,
                label=f"{mode} full load")
        ax.plot(n, [r["change_s"] for r in mr], marker + "--", color=color, mfc="none",
                label=f"{mode} one-Service change")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("Services N")
    ax.set_ylabel("wall time (s)")
    ax.set_title("Sync: iptables-restore / nft -f")
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(result: dict, folder: Path) -> Path:
    """Write report.md and calibration.png into ``folder``; return the report's path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    plot(result, folder / "calibration.png")
    fits, prov = result["fits"], result.get("provenance", {})
    acc = acceptance(result)
    lines = ["# kpbench calibration report", ""]
    lines += [f"- Date: {prov.get('date', '?')}; kernel {prov.get('kernel', '?')}; "
              f"CPU {prov.get('cpu', '?')} x {prov.get('cpus', '?')}",
              f"- Tools: {prov.get('iptables', '?')}; {prov.get('nft', '?')}",
              f"- Rules loaded: {prov.get('rule_source', '?')}",
              f"- Rule counts: {prov.get('count_source', '?')}",
              f"- N: {prov.get('services', '?')}; modes: {prov.get('modes', '?')}", ""]
    lines += ["## Fitted cost model ([costmodel] of calibration.toml)", "",
              "| key | value |", "|---|---|"]
    for key, value in costmodel_table(fits).items():
        lines.append(f"| {key} | {_fmt(value, 3)} |")
    lines += ["", "## Per-rule cost (ns per rule evaluated, ± standard error)", "",
              "| mode | rule_ns (single slope) | hot (in cache) | cold extra | cache (bytes) "
              "| k | beyond-LLC extra | LLC prefix (rules) | warm-up extra | warm-up rules |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for mode, rf in fits["rules"].items():
        lines.append(f"| {mode} | {_fmt(rf['rule_ns'], 2)} ± {_fmt(rf['rule_ns_se'], 2)} | "
                     f"{_fmt(rf['rule_hot_ns'], 2)} ± {_fmt(rf['rule_hot_ns_se'], 2)} | "
                     f"{_fmt(rf['rule_cold_ns'], 2)} ± {_fmt(rf['rule_cold_ns_se'], 2)} | "
                     f"{_fmt(rf['cache_bytes'], 0)} | {_fmt(rf['cache_k'], 0)} | "
                     f"{_fmt(rf['rule_far_ns'], 1)} ± {_fmt(rf['rule_far_ns_se'], 1)} | "
                     f"{_fmt(rf['far_rules'], 0)} | "
                     f"{_fmt(rf['warm_ns'], 2)} ± {_fmt(rf['warm_ns_se'], 2)} | "
                     f"{_fmt(rf['warm_rules'], 0)} |")
    for mode, v in fits["vmap"].items():
        lines.append(f"\n{mode}: verdict-map lookup {_fmt(v['vmap_lookup_ns'], 1)} ± "
                     f"{_fmt(v['vmap_lookup_ns_se'], 1)} ns (per N: "
                     f"{', '.join(_fmt(x, 1) for x in v['per_n'])})")
    lines += ["", "## Validation: prediction beside measurement", "",
              "Difference between the last and the first KUBE-SERVICES position (median of "
              "paired per-round differences ± bootstrap SE); prediction = rule-count difference "
              "× fitted ns per rule.", "",
              "| mode | N | first (µs) | mid (µs) | last (µs) | miss (µs) | Δrules | "
              "measured Δ (ns) | predicted Δ (ns) | error % | single-slope error % | "
              "last/first |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    preds = {(p["mode"], p["n_services"], p["position"]): p for p in predictions(result)}
    for r in sorted(result["rows"], key=lambda r: (r["mode"], r["n_services"])):
        p = preds[(r["mode"], r["n_services"], "last")]
        lines.append(
            f"| {r['mode']} | {r['n_services']:,} | {_fmt(r['first_median_ns'] / 1e3, 2)} | "
            f"{_fmt(r['mid_median_ns'] / 1e3, 2)} | {_fmt(r['last_median_ns'] / 1e3, 2)} | "
            f"{_fmt(r['miss_median_ns'] / 1e3, 2)} | {p['rules_pos'] - p['rules_first']:,} | "
            f"{_fmt(p['measured_diff_ns'], 0)} ± {_fmt(p['measured_diff_se'], 0)} | "
            f"{_fmt(p['predicted_diff_ns'], 0)} | {_fmt(p['error_pct'], 1)} | "
            f"{_fmt(p['error_single_pct'], 1)} | {_fmt(p['ratio_to_first'], 3)} |")
    lines += ["", "## Acceptance (issue 7: ±20 %)", ""]
    for mode, a in acc.items():
        if "worst_error_pct" in a:
            lines.append(f"- {mode}: worst |error| {a['worst_error_pct']:.1f} % with the "
                         f"cache-aware per-rule cost ({a['worst_single_error_pct']:.1f} % with a "
                         f"single rule_ns); last-first grows with N: "
                         f"{'yes' if a['grows'] else 'no'}; within ±{TOLERANCE_PCT:.0f} % at "
                         f"every N: {'PASS' if a['passed'] else 'FAIL'}")
        else:
            lines.append(f"- {mode}: last/first within {a['worst_last_over_first_pct']:.1f} % "
                         f"at every N (flat): {'PASS' if a['passed'] else 'FAIL'}")
    lines += ["", "## Sync (load) times", "",
              "| mode | N | loaded rules | full load (s) | full re-load (s) "
              "| one-Service change (s) |",
              "|---|---|---|---|---|---|"]
    for r in sorted(result["rows"], key=lambda r: (r["mode"], r["n_services"])):
        lines.append(f"| {r['mode']} | {r['n_services']:,} | {r['loaded_rules']:,} | "
                     f"{_fmt(r['load_initial_s'], 3)} | {_fmt(r['load_full_s'], 3)} | "
                     f"{_fmt(r['change_s'], 4)} |")
    for mode, s in fits["sync"].items():
        pairs = ", ".join(f"{k} = {_fmt(v, 0)}" for k, v in s.items())
        lines.append(f"\n{mode} sync fit (ns): {pairs}")
    lines += ["", "![measured vs model](calibration.png)", "",
              "Figure: left, last-first connect() latency difference vs N (log-log; markers "
              "measured with SE, lines the model); middle, last-position latency; right, full "
              "load and one-Service change times.", ""]
    path = folder / "report.md"
    path.write_text("\n".join(lines))
    return path
