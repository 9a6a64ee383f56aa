"""`kpbench list`: experiments, kinds, dataplanes and schedulers available."""

from __future__ import annotations

import argparse
import tomllib
from pathlib import Path

from harness.config import show
from harness.kind import Kind
from harness.kinds import all_kinds, broken_kinds

NAME = "list"
ORDER = 30
HELP = "list the experiments, kinds, dataplanes and schedulers available"
SECTIONS = ("experiments", "kinds", "dataplanes", "schedulers")
DATAPLANE_PARAMS = ("mode", "dataplane")
SCHEDULER_PARAMS = ("scheduler",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", nargs="?", choices=SECTIONS, metavar="WHAT",
                        help=f"only one section: {', '.join(SECTIONS)} (default: all)")
    parser.add_argument("--experiments", metavar="DIR", default="experiments",
                        help="folder of experiment TOML files (default: %(default)s)")
    parser.add_argument("--params", action="store_true",
                        help="also list every parameter of each kind (type, default, range)")


def _experiments(folder: Path) -> list[str]:
    lines = []
    for file in sorted(folder.glob("*.toml")):
        try:
            raw = tomllib.loads(file.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            lines.append(f"  {file}  (unreadable: {exc})")
            continue
        parts = raw.get("part") if isinstance(raw.get("part"), list) else [raw]
        kinds = ", ".join(dict.fromkeys(str(p.get("kind", "?")) for p in parts
                                        if isinstance(p, dict)))
        name = raw.get("name", file.stem)
        desc = raw.get("description", "")
        summary = " ".join(str(desc).split())
        if len(summary) > 72:
            summary = summary[:71].rstrip() + "…"
        lines.append(f"  {name:<20} {str(file):<36} kinds: {kinds}"
                     + (f"\n  {'':<20} {summary}" if summary else ""))
    return lines or [f"  (no *.toml in {folder})"]


def _param_line(p, width: int) -> str:
    bits = [p.type.__name__, "required" if p.default is None else f"default {show(p.default)}"]
    if p.min is not None and p.max is not None:
        bits.append(f"range [{show(p.min)}, {show(p.max)}]")
    elif p.min is not None:
        bits.append(f">= {show(p.min)}")
    elif p.max is not None:
        bits.append(f"<= {show(p.max)}")
    if p.choices:
        bits.append("one of " + ", ".join(show(c) for c in p.choices))
    return f"      {p.name:<{width}} {'; '.join(bits)}" + (f" — {p.help}" if p.help else "")


def _choices(kinds: dict[str, Kind], names: tuple[str, ...]) -> list[str]:
    found: dict[str, list[str]] = {}
    for kind in kinds.values():
        for p in kind.params:
            if p.name in names and p.choices:
                for c in p.choices:
                    found.setdefault(str(c), []).append(kind.name)
    return [f"  {c:<12} (kinds: {', '.join(dict.fromkeys(k))})" for c, k in found.items()] \
        or ["  (none: no installed kind has such a parameter)"]


def main(args: argparse.Namespace) -> int:
    kinds = all_kinds()
    out: list[str] = []
    if args.what in (None, "experiments"):
        folder = Path(args.experiments)
        if not folder.is_dir() and args.experiments == "experiments":
            folder = Path(__file__).resolve().parents[2] / "experiments"  # this checkout's
        out += [f"Experiments ({folder}/):", *_experiments(folder), ""]
    if args.what in (None, "kinds"):
        out.append("Kinds:")
        for kind in kinds.values():
            out.append(f"  {kind.name:<20} {kind.summary}")
            if args.params:
                width = max((len(p.name) for p in kind.params), default=0)
                out += [_param_line(p, width) for p in kind.params]
        out += [f"  {name:<20} (broken: {err})" for name, err in broken_kinds().items()]
        if not kinds:
            out.append("  (none installed)")
        out.append("")
    if args.what in (None, "dataplanes"):
        out += ["Dataplanes (values of a kind's `mode`/`dataplane` parameter):",
                *_choices(kinds, DATAPLANE_PARAMS), ""]
    if args.what in (None, "schedulers"):
        out += ["Schedulers (values of a kind's `scheduler` parameter):",
                *_choices(kinds, SCHEDULER_PARAMS), ""]
    print("\n".join(out).rstrip())
    return 0
