"""`kpbench calibrate`: measure this machine's netfilter costs and write a calibration TOML.

Runs in a private loopback-only network namespace (harness.netns); needs Linux, root,
iptables (legacy and nft variants) and nft. Writes the calibration TOML (``--out``), and beside
it measurements.json, report.md and calibration.png (harness.calibration_report).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
from pathlib import Path

from harness import calibrate as cal
from harness.errors import UserError
from harness.netns import host_ruleset_snapshot, preflight

NAME = "calibrate"
ORDER = 60
HELP = "measure this machine's iptables/nftables costs in a private namespace; fit the cost model"
EPILOG = """\
Everything happens in a network namespace kpbcal-<pid> that only has loopback: Service VIPs are
in 127.64.0.0/10 and DNAT to a listener on 127.0.0.1; the host's rules are never touched and the
namespace is removed on exit, error or Ctrl-C. Install the tools on Debian/Ubuntu with
  apt-get update && apt-get install -y iptables nftables iproute2
Then: kpbench run --calibration <out> experiments/<x>.toml
"""


def _services(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise UserError(f"--services: expected comma-separated integers, got {text!r}") from None
    if not values or any(v < 3 or v > 1_000_000 for v in values):
        raise UserError(f"--services: expected integers in [3, 1000000], got {text!r}")
    return tuple(sorted(set(values)))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", metavar="FILE", default=None,
                        help="calibration TOML to write (default: "
                             "results/calibration/<UTC time>/calibration.toml); the report goes "
                             "beside it")
    parser.add_argument("--services", metavar="N,N,...", default=None,
                        help="numbers of Services to measure (default "
                             f"{','.join(map(str, cal.FULL_SERVICES))}; --quick: "
                             f"{','.join(map(str, cal.QUICK_SERVICES))})")
    parser.add_argument("--quick", action="store_true",
                        help="CI-sized run: fewer samples, N up to 20,000 (under a minute)")
    parser.add_argument("--modes", metavar="M,M", default=",".join(cal.MODES),
                        help="dataplanes to measure (default: %(default)s)")
    parser.add_argument("--cpu", type=int, default=None,
                        help="pin the latency probe to this CPU (default: not pinned)")
    parser.add_argument("--report-only", metavar="DIR", default=None,
                        help="re-fit and re-write the report from DIR/measurements.json")


def main(args: argparse.Namespace) -> int:
    from harness import calibration_report

    if args.report_only:
        folder = Path(args.report_only)
        try:
            raw = json.loads((folder / "measurements.json").read_text())
        except (OSError, ValueError) as exc:
            raise UserError(f"--report-only: {folder}/measurements.json: expected a "
                            f"calibration's measurements, got {exc}") from None
        result = {"points": cal.points_from_json(raw["points"]),
                  "provenance": raw["provenance"]}
        out = Path(args.out) if args.out else folder / "calibration.toml"
        _finish(result, out, calibration_report)
        return 0

    modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
    bad = [m for m in modes if m not in cal.MODES]
    if bad or not modes:
        raise UserError(f"--modes: expected some of {','.join(cal.MODES)}, got {args.modes!r}")
    services = _services(args.services) if args.services else None
    settings = (cal.Settings.quick(services) if args.quick
                else cal.Settings(services=services or cal.FULL_SERVICES))
    settings = cal.Settings(**{**settings.__dict__, "modes": modes, "cpu": args.cpu})
    preflight()
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = Path(args.out) if args.out else Path("results/calibration") / stamp / "calibration.toml"
    before = host_ruleset_snapshot()
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        result = cal.run_calibration(settings, log=lambda m: print(m, file=sys.stderr),
                                     on_point=lambda r: _save(r, out.parent))
    except KeyboardInterrupt:
        print(f"kpbench: calibrate: interrupted; namespace removed; points measured so far in "
              f"{out.parent / 'measurements.json'} (kpbench calibrate --report-only "
              f"{out.parent})", file=sys.stderr)
        return 130
    except RuntimeError as exc:
        print(f"kpbench: calibrate: error: {exc}".splitlines()[0], file=sys.stderr)
        return 1
    after = host_ruleset_snapshot()
    if before != after:
        print("kpbench: calibrate: WARNING: the host's ruleset changed during the run "
              "(another process?)", file=sys.stderr)
    _finish(result, out, calibration_report)
    return 0


def _save(result: dict, folder: Path) -> None:
    tmp = folder / "measurements.json.tmp"
    tmp.write_text(json.dumps(
        {"points": cal.points_to_json(result["points"]), "provenance": result["provenance"]}))
    tmp.replace(folder / "measurements.json")


def _finish(result: dict, out: Path, calibration_report) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    _save(result, out.parent)
    fitted = cal.fit_all(result["points"])
    fitted["provenance"] = result["provenance"]
    out.write_text(cal.calibration_toml(fitted))
    report = calibration_report.write_report(fitted, out.parent)
    print(out)
    print(report, file=sys.stderr)
