"""`kpbench compare RUN_A RUN_B`: two runs' metrics side by side and overlaid in plots."""

from __future__ import annotations

import argparse

NAME = "compare"
ORDER = 25
HELP = "compare two run folders: metrics joined on parameters with deltas/ratios, overlay plots"
EPILOG = """\
Writes compare.md (runs, per-kind summary of B/A ratios, figures, points that differ),
compare.csv (every point x metric: A, B, delta, ratio) and one PNG per plotted metric into
--out (default: RESULTS/_compare/<run-a>_vs_<run-b>, beside RUN_B's experiment folder).
Points are joined on the parameters that vary in either run; a parameter held at different
constant values in the two runs (the change under study) is reported, not joined on.
Example: kpbench compare results/scaling/20250101-120000 results/scaling/20250102-090000
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_a", metavar="RUN_A", help="the baseline run folder (A)")
    parser.add_argument("run_b", metavar="RUN_B", help="the run compared with it (B)")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="folder for compare.md, compare.csv and the PNGs")
    parser.add_argument("--metric", metavar="NAME", dest="metrics", action="append",
                        default=None, help="plot this metric (repeatable; default: the metrics "
                        "that changed most, or the first few when none changed)")


def main(args: argparse.Namespace) -> int:
    from harness.compare import compare_runs  # matplotlib: import only when needed

    print(compare_runs(args.run_a, args.run_b, args.out, args.metrics))
    return 0
