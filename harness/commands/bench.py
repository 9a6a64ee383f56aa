"""`kpbench bench`: the CI regression gates (benchmark speed, then golden model outputs).

Exit 0 when both gates pass, 1 naming what regressed or which cells differ, 2 on bad input.
A benchmark over the threshold is re-timed in a fresh process (``--confirm`` times) and gated on
its best figure, so only a slowdown that every process shows fails the gate.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness import bench
from harness.errors import UserError

NAME = "bench"
HELP = "regression gates: benchmark figures vs a baseline, golden sweep outputs vs golden.parquet"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true",
                        help="fast subset with fewer rounds (CI); skips benchmarks marked slow")
    parser.add_argument("--compare", metavar="BASELINE.json", type=Path, default=None,
                        help=f"baseline to compare with (default {_rel(bench.BENCH_BASELINE)}); "
                             "a saved baseline or a kpbench pytest-benchmark JSON")
    parser.add_argument("--threshold", default="25%", metavar="PCT",
                        help="slowdown of a normalised figure that still passes (default 25%%)")
    parser.add_argument("--confirm", type=int, default=2, metavar="N",
                        help="re-time regressed benchmarks up to N times, each in a fresh "
                             "process, and gate the best figure (default 2; 0 = no re-runs)")
    parser.add_argument("--save-baseline", action="store_true",
                        help="write the baselines from this run instead of gating "
                             "(bench.json; golden.parquet too unless --no-golden)")
    gates = parser.add_mutually_exclusive_group()
    gates.add_argument("--golden-only", action="store_true",
                       help="run only the model-output gate (experiments/golden.toml)")
    gates.add_argument("--no-golden", action="store_true",
                       help="run only the benchmark gate")
    parser.add_argument("-k", dest="select", metavar="EXPR", default=None,
                        help="pytest -k expression selecting benchmarks")
    parser.add_argument("--statistic", choices=("min", "median", "mean"),
                        default=bench.DEFAULT_STATISTIC,
                        help="per-benchmark statistic normalised and compared (default min)")
    parser.add_argument("--golden-config", type=Path, default=bench.GOLDEN_CONFIG,
                        metavar="TOML", help="golden experiment (default experiments/golden.toml)")
    parser.add_argument("--golden-baseline", type=Path, default=bench.GOLDEN_BASELINE,
                        metavar="PARQUET",
                        help="golden outputs (default results/baseline/golden.parquet)")


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(bench.REPO_ROOT))
    except ValueError:
        return str(path)


def _speed_gate(args: argparse.Namespace, threshold: float) -> bool:
    try:
        current = bench.run_suite(quick=args.quick, select=args.select,
                                  statistic=args.statistic)
    except bench.BenchFailed as exc:
        print(f"kpbench bench: FAILED: {exc} (see the output above)")
        return False
    print()
    broken = current.meta.get("pytest_exit", 0) not in (0, 5)
    if broken:
        print(f"kpbench bench: FAILED: a benchmark raised or failed (pytest exit "
              f"{current.meta['pytest_exit']}, see above); comparing the benchmarks that ran")
    targets = bench.format_targets(current)
    if targets:
        print(targets)
        print()
    if args.save_baseline:
        if broken:
            print("kpbench bench: baseline not saved: fix the failing benchmarks first")
            return False
        target = args.compare or bench.BENCH_BASELINE
        merged = current
        if (args.quick or args.select) and Path(target).exists():
            merged = bench.merge_into_baseline(bench.load_baseline(target), current)
        path = bench.save_baseline(merged, target)
        print(bench.format_figures(current))
        print(f"kpbench bench: saved {len(merged.figures)} benchmark figures to {_rel(path)}")
        return True
    target = args.compare or bench.BENCH_BASELINE
    if args.compare is None and not target.exists():
        print(bench.format_figures(current))
        print(f"kpbench bench: warning: no baseline at {_rel(target)}; nothing compared "
              "(save one with --save-baseline)")
        return not broken
    baseline = bench.load_baseline(target)
    comparison = bench.compare(baseline, current, threshold)
    for attempt in range(1, args.confirm + 1):
        if not comparison.regressed:
            break
        names = tuple(row.name for row in comparison.regressed)
        print(f"kpbench bench: {len(names)} over the threshold; re-timing them in a fresh "
              f"process to confirm ({attempt}/{args.confirm}): {', '.join(names)}", flush=True)
        try:
            rerun = bench.run_suite(quick=args.quick, statistic=args.statistic, nodes=names)
        except bench.BenchFailed as exc:
            print(f"kpbench bench: FAILED: {exc} (see the output above)")
            return False
        current = bench.best_of(current, rerun)
        broken = broken or rerun.meta.get("pytest_exit", 0) not in (0, 5)
        comparison = bench.compare(baseline, current, threshold)
        print()
    print(bench.format_comparison(comparison))
    for row in comparison.by_verdict("missing"):
        print(f"kpbench bench: warning: benchmark missing from this run: {row.name}")
    for row in comparison.by_verdict("new"):
        print(f"kpbench bench: new benchmark (not in the baseline): {row.name}")
    if comparison.regressed or broken:
        for row in comparison.regressed:
            print(f"kpbench bench: REGRESSED: {row.name}: {row.ratio:.2f}x the baseline figure "
                  f"(threshold {threshold:.0%})")
        return False
    print(f"kpbench bench: speed gate passed ({len(comparison.rows)} benchmarks, "
          f"threshold {threshold:.0%})")
    return True


def _golden_gate(args: argparse.Namespace) -> bool:
    print(f"kpbench bench: golden sweep {_rel(args.golden_config)} (1 worker, fixed seed)",
          flush=True)
    got = bench.run_golden(args.golden_config)
    if args.save_baseline:
        again = bench.run_golden(args.golden_config)
        unstable = bench.nondeterministic_columns(got, again)
        if unstable:
            print(f"kpbench bench: FAILED: golden columns differ between two identical runs: "
                  f"{', '.join(unstable)} (a model output must be deterministic; a wall-clock "
                  "column needs a name matching harness.bench.TIMING_PATTERNS)")
            return False
        path = bench.save_golden(got, args.golden_baseline)
        keys, compared = bench.golden_columns(got)
        print(f"kpbench bench: saved golden outputs ({len(got)} rows, {len(compared)} compared "
              f"columns) to {_rel(path)}")
        return True
    cells = bench.check_golden(got, args.golden_baseline)
    if cells:
        print(f"kpbench bench: GOLDEN MISMATCH: {len(cells)} cells differ from "
              f"{_rel(args.golden_baseline)}:")
        print(bench.format_cells(cells))
        return False
    _, compared = bench.golden_columns(got)
    print(f"kpbench bench: golden gate passed ({len(got)} rows x {len(compared)} columns equal)")
    return True


def main(args: argparse.Namespace) -> int:
    threshold = bench.parse_threshold(args.threshold)
    if args.confirm < 0:
        raise UserError(f"--confirm: expected a count >= 0, got {args.confirm}")
    ok = True
    if not args.golden_only:
        ok = _speed_gate(args, threshold) and ok
    if not args.no_golden:
        ok = _golden_gate(args) and ok
    sys.stdout.flush()
    return 0 if ok else 1
