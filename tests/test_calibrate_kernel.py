"""Real-kernel quick calibration (issue 7 CI test): root, Linux, iptables and nft needed.

Runs `kpbench calibrate`'s measurement for iptables-legacy and nftables at a few N up to 20,000
Services inside a private loopback namespace and asserts only robust facts (spec C.1, C.2;
validation case 17): at 20,000 Services the last KUBE-SERVICES position costs >= 1.5x the first
for iptables; nftables' last/first is within +-20 %; load time grows with N; the host's
`iptables-save` and `nft list ruleset` are the same before and after; no namespace is left.
Skipped, with the reason, where any prerequisite is missing.
"""

from __future__ import annotations

import subprocess

import pytest

from harness import calibrate as cal
from harness.errors import UserError
from harness.netns import host_ruleset_snapshot, preflight

pytestmark = [pytest.mark.root, pytest.mark.slow]

SERVICES = (10, 1000, 5000, 20000)


def _namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {ln.split()[0] for ln in out.splitlines() if ln.startswith("kpbcal-")}


@pytest.fixture(scope="module")
def quick_run():
    try:
        preflight()
    except UserError as exc:
        pytest.skip(reason=f"real-kernel calibration not possible here: {exc}")
    before = host_ruleset_snapshot()
    ns_before = _namespaces()
    settings = cal.Settings(**{**cal.Settings.quick(SERVICES).__dict__,
                               "modes": ("iptables-legacy", "nftables")})
    result = cal.run_calibration(settings, log=lambda m: None)
    after = host_ruleset_snapshot()
    return result, before, after, ns_before


def _row(result, mode, n):
    for p in result["points"]:
        if p.mode == mode and p.n_services == n:
            return cal.summarize(p)
    raise AssertionError(f"no point {mode} N={n}")


def test_iptables_last_position_costs_more(quick_run):
    result = quick_run[0]
    row = _row(result, "iptables-legacy", 20000)
    assert row["last_median_ns"] >= 1.5 * row["first_median_ns"], row


def test_nftables_is_flat(quick_run):
    result = quick_run[0]
    for n in SERVICES:
        row = _row(result, "nftables", n)
        ratio = row["last_median_ns"] / row["first_median_ns"]
        assert 0.8 <= ratio <= 1.2, (n, ratio)


def test_load_time_grows_with_n(quick_run):
    result = quick_run[0]
    for mode in ("iptables-legacy", "nftables"):
        small = _row(result, mode, SERVICES[0])["load_initial_s"]
        large = _row(result, mode, SERVICES[-1])["load_initial_s"]
        assert large > small, (mode, small, large)


def test_host_rules_untouched_and_namespace_removed(quick_run):
    _result, before, after, ns_before = quick_run
    assert before == after
    assert _namespaces() <= ns_before
