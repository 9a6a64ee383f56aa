"""Our restore text is valid iptables: the real kernel accepts it (spec B.1).

Everything happens inside a private network namespace ``kpb-test-<pid>`` (loopback only), which
is deleted in a ``finally``; the host namespace's rules are never read or written. Each
available variant (iptables-legacy, iptables-nft) runs ``iptables-restore --test`` on the
compiled text and the hand-written dumps, then loads the compiled text for real inside the
namespace, dumps it back with ``iptables-save`` and checks that the kernel's own dump traces
identically to the compiled arrays. Skipped, with the reason, without root or the tools.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import numpy as np
import pytest

from harness.iptables_text import parse_save, render_restore
from kernels import iptables as ipt
from kernels.cluster import build_cluster
from kernels.traffic import TRAFFIC_CLASSES, make_packets

pytestmark = pytest.mark.root

DATA = Path(__file__).resolve().parent / "data" / "iptables"
VARIANTS = ("iptables-legacy", "iptables-nft")


def _tool(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")


def _variants() -> list[tuple[str, str, str]]:
    found = []
    for v in VARIANTS:
        restore, save = _tool(f"{v}-restore"), _tool(f"{v}-save")
        if restore and save:
            found.append((v, restore, save))
    if not found and _tool("iptables-restore") and _tool("iptables-save"):
        found.append(("iptables", _tool("iptables-restore"), _tool("iptables-save")))
    return found


@pytest.fixture(scope="module")
def netns():
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip(reason="needs root to create a private network namespace (ip netns add)")
    ip = _tool("ip")
    if ip is None:
        pytest.skip(reason="iproute2 'ip' not found (apt-get install -y iproute2)")
    if not _variants():
        pytest.skip(reason="iptables-restore not found (apt-get install -y iptables)")
    name = f"kpb-test-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    made = subprocess.run([ip, "netns", "add", name], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(reason=f"cannot create a network namespace: {made.stderr.strip()}")
    try:
        subprocess.run([ip, "netns", "exec", name, ip, "link", "set", "lo", "up"], check=True)
        yield ip, name
    finally:
        subprocess.run([ip, "netns", "del", name], capture_output=True)


def _run(netns, argv, text_in=None):
    ip, name = netns
    return subprocess.run([ip, "netns", "exec", name, *argv], input=text_in,
                          capture_output=True, text=True, timeout=300)


def _cluster():
    return build_cluster(60, 3, endpoint_dist="poisson", type_mix=(0.4, 0.3, 0.2, 0.1),
                         affinity_fraction=0.3, external_ip_fraction=0.3,
                         lb_source_range_fraction=0.5, ext_local_fraction=0.3,
                         int_local_fraction=0.2, local_endpoint_fraction=0.3, seed=21)


@pytest.mark.parametrize("variant", VARIANTS)
def test_kernel_accepts_compiled_and_handwritten_rules(netns, variant):
    tools = {v: (r, s) for v, r, s in _variants()}
    if variant not in tools:
        pytest.skip(reason=f"{variant}-restore/-save not installed")
    restore, _save = tools[variant]
    c = _cluster()
    for opts in ({}, {"masquerade_all": True, "localhost_nodeports": False, "comments": False}):
        text = render_restore(ipt.compile_cluster(c, **opts))
        res = _run(netns, [restore, "--test"], text)
        assert res.returncode == 0, f"{variant} rejected our rules ({opts}): {res.stderr}"
    for dump in sorted(DATA.glob("*.txt")):
        res = _run(netns, [restore, "--test"], dump.read_text())
        assert res.returncode == 0, f"{variant} rejected {dump.name}: {res.stderr}"


@pytest.mark.parametrize("variant", VARIANTS)
def test_kernel_dump_traces_like_compiled_arrays(netns, variant):
    tools = {v: (r, s) for v, r, s in _variants()}
    if variant not in tools:
        pytest.skip(reason=f"{variant}-restore/-save not installed")
    restore, save = tools[variant]
    c = _cluster()
    rs = ipt.compile_cluster(c)
    loaded = _run(netns, [restore], render_restore(rs))
    assert loaded.returncode == 0, loaded.stderr
    try:
        dumped = _run(netns, [save])
        assert dumped.returncode == 0, dumped.stderr
        back = parse_save(dumped.stdout, source=f"{variant}-save")
    finally:
        _run(netns, [restore], "*nat\nCOMMIT\n*filter\nCOMMIT\n")
    assert back.counts()["rules"] == rs.counts()["rules"]
    for traffic in TRAFFIC_CLASSES:
        pk = make_packets(c, traffic, 400, n_clients=10, seed=5)
        a = ipt.traverse(rs, pk, seed=6)
        b = ipt.traverse(back, pk, seed=6, local_addrs=c.node_ips)
        for f in ("verdict", "dnat_addr", "dnat_port", "marked", "masquerade",
                  "rules_evaluated", "matches_tested", "jumps"):
            assert np.array_equal(getattr(a, f), getattr(b, f)), (variant, traffic, f)
