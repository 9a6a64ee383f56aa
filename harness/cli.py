"""`kpbench` command line: subcommands are the modules of harness/commands, found automatically.

Each subcommand module exposes NAME, HELP (one line), add_arguments(parser) and main(args) -> int
(and optionally ORDER to sort it in --help). A UserError becomes `kpbench: error: <msg>`, exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from types import ModuleType

from harness import __version__
from harness.errors import UserError

EPILOG = """\
Quick start:
  kpbench list                                   experiments, kinds, dataplanes, schedulers
  kpbench run experiments/quickstart.toml        run a sweep; prints its results folder
  kpbench report results/<experiment>/<run-id>   (re)write plots/ and report.md of a run
Environment: KPBENCH_EXTRA_KINDS=module:attr[,...] adds kinds defined outside harness/kinds.
"""


def commands() -> list[ModuleType]:
    """Subcommand modules of harness.commands, in --help order."""
    import harness.commands as package

    found = []
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"harness.commands.{info.name}")
        if hasattr(module, "NAME") and hasattr(module, "main"):
            found.append(module)
    return sorted(found, key=lambda m: (getattr(m, "ORDER", 100), m.NAME))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kpbench",
        description="Benchmark and research harness for Kubernetes Service load balancing: "
                    "sweeps of numba models of kube-proxy's dataplanes and IPVS schedulers, "
                    "stored results, plots and reports.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"kpbench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in commands():
        cmd = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP,
                             formatter_class=argparse.RawDescriptionHelpFormatter,
                             epilog=getattr(module, "EPILOG", None))
        module.add_arguments(cmd)
        cmd.set_defaults(_main=module.main)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `kpbench` console script; returns the exit code."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        return int(args._main(args) or 0)
    except UserError as exc:
        print(f"kpbench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("kpbench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
