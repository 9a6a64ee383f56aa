"""`kpbench report RUN_DIR`: (re)write a run's plots and report.md from its stored points."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.errors import UserError
from harness.report import write_report

NAME = "report"
ORDER = 20
HELP = "write plots/ and report.md of a run folder from its stored points"
EPILOG = """\
Works on unfinished runs too (it reads every point finished so far). A kind whose report fails
is noted in report.md and the others are still written; the data is never touched.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR",
                        help="a run folder, e.g. results/quickstart/20250101-120000")


def main(args: argparse.Namespace) -> int:
    run = Path(args.run_dir)
    if not run.is_dir():
        raise UserError(f"{run}: expected a run folder, got no such directory")
    print(write_report(run))
    return 0
