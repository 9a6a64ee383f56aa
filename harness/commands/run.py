"""`kpbench run CONFIG`: sweep an experiment into a results folder, then write its report."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from harness.config import load_calibration, load_experiment
from harness.executors import executors, make_executor
from harness.store import RunStore, latest_run
from harness.sweep import eta_hint, run_sweep

NAME = "run"
ORDER = 10
HELP = "run an experiment config: sweep its grid, store the points, write the report"
EPILOG = """\
The run folder is OUT/<experiment>/<run-id>/ (config.toml, resolved.json, manifest.json,
points.parquet, plots/, report.md). Each finished point is saved at once: after Ctrl-C or a
crash, the same command with --resume finishes the newest unfinished run made with the same
config (same file, --set and --calibration) without redoing finished points.
Exit codes: 0 complete, 1 some points failed, 2 bad input, 130 interrupted.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", metavar="CONFIG", help="experiment TOML file, e.g. "
                        "experiments/quickstart.toml")
    parser.add_argument("--out", metavar="DIR", default="results",
                        help="results root; the run goes to DIR/<experiment>/<run-id>/ "
                             "(default: %(default)s)")
    parser.add_argument("--set", metavar="KEY=VALUE", dest="overrides", action="append",
                        default=[], help="override a config key, value parsed as TOML (bare "
                        "words are strings); dotted keys: seed=7, grid.services=[10,100], "
                        "fixed.endpoints=5, part.2.grid.scheduler=[\"rr\"]. Repeatable")
    parser.add_argument("--workers", metavar="N", type=_positive, default=None,
                        help="worker processes (default: all usable cores); 1 runs in-process")
    parser.add_argument("--resume", action="store_true",
                        help="finish the newest unfinished run of this config instead of "
                             "starting a new one (finished points are not redone)")
    parser.add_argument("--calibration", metavar="FILE", default=None,
                        help="TOML with a [costmodel] table of cost-model values passed to "
                             "every point (e.g. written by a calibration run)")
    names = list(executors())
    parser.add_argument("--executor", metavar="NAME", choices=names, default="local",
                        help=f"where points run: {', '.join(names)} (default: %(default)s)")
    parser.add_argument("--no-report", action="store_true",
                        help="do not write plots/ and report.md at the end")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    for cls in executors().values():
        group = parser.add_argument_group(f"--executor {cls.name} ({cls.help})")
        cls.add_arguments(group)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _resume_command(args: argparse.Namespace) -> str:
    parts = ["kpbench", "run", args.config]
    parts += [f"--set={o}" for o in args.overrides]
    if args.out != "results":
        parts += ["--out", args.out]
    if args.calibration:
        parts += ["--calibration", args.calibration]
    if args.executor != "local":
        parts += ["--executor", args.executor]
        if getattr(args, "scheduler", None):
            parts += ["--scheduler", args.scheduler]
    return " ".join(shlex.quote(p) for p in parts) + " --resume"


def main(args: argparse.Namespace) -> int:
    def say(line: str) -> None:
        print(line, file=sys.stderr)

    calibration = load_calibration(args.calibration) if args.calibration else {}
    executor = make_executor(args)
    experiment = load_experiment(args.config, args.overrides, workers=executor.workers,
                                 calibration=calibration)
    out = Path(args.out)
    invocation = {"argv": sys.argv[1:], "executor": executor.name, "workers": executor.workers,
                  "calibration_file": args.calibration}
    store = None
    if args.resume:
        found = latest_run(out, experiment)
        if found is not None and found[1].get("status") == "complete":
            say("kpbench: nothing to resume: the newest run of this config is complete")
            print(found[0])
            return 0
        if found is not None:
            store = RunStore.reopen(found[0], invocation)
            say(f"kpbench: resuming {store.path} ({len(store.done_keys())} point runs done)")
        else:
            say(f"kpbench: no earlier run of this config under {out}/{experiment.name}; "
                "starting a new one")
    if store is None:
        store = RunStore.create(out, experiment, invocation)
        say(f"kpbench: run folder {store.path}")
    outcome = run_sweep(experiment, store, executor, progress=not args.quiet)
    if outcome.status == "interrupted":
        say(f"kpbench: interrupted; kept {eta_hint(outcome)} in {store.path}")
        say(f"kpbench: resume with: {_resume_command(args)}")
        return 130
    if outcome.status == "failed":
        first = outcome.errors[0]
        say(f"kpbench: run failed: {first['error']}"
            + (f" (at {first['point']})" if first["point"] else ""))
        say(f"kpbench: kept {eta_hint(outcome)} in {store.path}; tracebacks in "
            f"{store.path / 'manifest.json'}; after a fix: {_resume_command(args)}")
        return 1
    if experiment.report.auto and not args.no_report:
        from harness.report import write_report  # matplotlib: import only when needed

        try:
            report = write_report(store.path, echo=say)
            say(f"kpbench: report {report}")
        except Exception as exc:  # the data is safe; a report can be rebuilt later
            say(f"kpbench: warning: report failed: {type(exc).__name__}: {exc}; "
                f"retry with: kpbench report {store.path}")
    print(store.path)
    return 0
