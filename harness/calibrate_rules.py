"""Rules that `kpbench calibrate` loads into its namespace, and text helpers over them.

Source of the rules, in order of preference:

1. The project's compilers: ``kernels.iptables.compile_cluster`` + ``harness.iptables_text``
   (iptables-restore text, spec B.1) and ``harness.nft_text`` (``nft -f`` text, spec B.3).
2. When those modules are not importable (they are written in parallel), a minimal renderer in
   this module of exactly the subset calibration uses: ClusterIP Services, Cluster traffic
   policy, no affinity, laid out as kube-proxy lays them out (spec B.1 steps 1-5: KUBE-SERVICES
   rule per service port, KUBE-SVC masquerade rule for non-pod sources, one KUBE-SEP with the
   hairpin rule and the DNAT; spec B.3: ``services`` chain with the ``service-ips`` vmap, a
   service chain ending in ``numgen random mod n vmap``, endpoint chains). Provenance records
   which source was used.

Every address is in 127.0.0.0/8: the calibration cluster's VIPs come from ``SERVICE_CIDR``, its
pod CIDR (the local-traffic detector) covers the probe's client sources, and every endpoint is
rewritten to ``127.0.0.1:<listener port>``.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import re

import numpy as np

from kernels.cluster import Cluster, build_cluster, int_to_ip, ip_to_int, port_service

SERVICE_CIDR = "127.64.0.0/10"
"""Service VIPs (4M addresses, all loopback; never leave the namespace)."""
POD_CIDR = "127.0.0.0/10"
"""Pod CIDR of the calibration cluster: contains the probe's client sources (127.0.2.x ...), so
kube-proxy's "masquerade non-pod sources" rule does not fire (no MASQUERADE on lo)."""
ENDPOINT_IP = "127.0.0.1"
MASQ_MARK = 0x4000


def calibration_cluster(n_services: int, listen_port: int, seed: int = 0) -> Cluster:
    """ClusterIP Services with one endpoint each, VIPs in 127.64/10, endpoints -> listener."""
    cluster = build_cluster(
        n_services,
        endpoints_per_service=1,
        service_cidr=SERVICE_CIDR,
        pod_cidr=POD_CIDR,
        node_ips=("127.0.0.1",),
        seed=seed,
    )
    return dataclasses.replace(
        cluster,
        ep_ip=np.full(cluster.n_endpoints, ip_to_int(ENDPOINT_IP), dtype=np.uint32),
        port_target=np.full(cluster.n_ports, listen_port, dtype=np.uint16),
    )


def kube_services_order(cluster: Cluster) -> list[tuple[str, int]]:
    """(VIP, port) of every KUBE-SERVICES rule in emission order (``port_order``, spec B.1)."""
    svc = port_service(cluster)
    return [
        (int_to_ip(cluster.svc_cluster_ip[svc[p]]), int(cluster.port_port[p]))
        for p in cluster.port_order
    ]


# ----------------------------------------------------------------------------- project compilers


def project_renderers() -> tuple[object | None, object | None, str]:
    """(iptables renderer, nft renderer, description) from the project's modules, if present.

    Each renderer is ``f(cluster) -> str``. Missing modules give None.
    """
    ipt = nft = None
    notes = []
    try:
        from harness import iptables_text
        from kernels import iptables as kipt

        render = _first_attr(iptables_text, ("render_restore", "render", "to_restore_text"))
        if render is not None:

            def ipt(cluster, _render=render, _compile=kipt.compile_cluster):
                return _render(_compile(cluster))

            notes.append("iptables: kernels.iptables.compile_cluster + harness.iptables_text")
    except ImportError:
        pass
    try:
        from harness.nft_text import render as nft_render
        from kernels.nftables import build_tables

        def nft(cluster, _render=nft_render, _build=build_tables):
            return _render(cluster, _build(cluster), service_cidr=SERVICE_CIDR)

        notes.append("nftables: kernels.nftables.build_tables + harness.nft_text.render")
    except ImportError:
        pass
    return ipt, nft, "; ".join(notes)


def _first_attr(module, names):
    for name in names:
        if callable(getattr(module, name, None)):
            return getattr(module, name)
    return None


# ----------------------------------------------------------------------------- minimal renderer


def _hash16(text: str) -> str:
    """kube-proxy's chain-name hash: first 16 chars of base32(sha256(text)) (spec B.1)."""
    return base64.b32encode(hashlib.sha256(text.encode()).digest()).decode()[:16]


def _names(cluster: Cluster, p: int) -> tuple[str, str]:
    svc = int(port_service(cluster)[p])
    name = f"ns{svc}/svc{svc}:p{int(cluster.port_port[p])}"
    ep = cluster.ep_ptr[svc]
    endpoint = f"{int_to_ip(cluster.ep_ip[ep])}:{int(cluster.port_target[p])}"
    return name, endpoint


def render_iptables_minimal(cluster: Cluster) -> str:
    """iptables-restore text for ClusterIP / Cluster-policy / one-endpoint Services (spec B.1)."""
    pod_net, pod_mask = cluster.cluster_cidr
    pod = f"{int_to_ip(pod_net)}/{bin(pod_mask).count('1')}"
    svc = port_service(cluster)
    chains = [":KUBE-SERVICES - [0:0]", ":KUBE-NODEPORTS - [0:0]",
              ":KUBE-POSTROUTING - [0:0]", ":KUBE-MARK-MASQ - [0:0]"]
    top = [
        "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
        "-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
        "-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" "
        "-j KUBE-POSTROUTING",
        f"-A KUBE-POSTROUTING -m mark ! --mark {MASQ_MARK:#x}/{MASQ_MARK:#x} -j RETURN",
        f"-A KUBE-POSTROUTING -j MARK --xor-mark {MASQ_MARK:#x}",
        "-A KUBE-POSTROUTING -j MASQUERADE --random-fully",
        f"-A KUBE-MARK-MASQ -j MARK --or-mark {MASQ_MARK:#x}",
    ]
    services, per = [], []
    for p in cluster.port_order:
        s = int(svc[p])
        if cluster.ep_ptr[s + 1] == cluster.ep_ptr[s]:
            continue
        name, endpoint = _names(cluster, int(p))
        vip = int_to_ip(cluster.svc_cluster_ip[s])
        port = int(cluster.port_port[p])
        svc_chain = "KUBE-SVC-" + _hash16(name + "tcp")
        sep_chain = "KUBE-SEP-" + _hash16(name + "tcp" + endpoint)
        chains += [f":{svc_chain} - [0:0]", f":{sep_chain} - [0:0]"]
        services.append(f"-A KUBE-SERVICES -d {vip}/32 -p tcp -m tcp --dport {port} "
                        f"-j {svc_chain}")
        per += [
            f"-A {svc_chain} -d {vip}/32 ! -s {pod} -p tcp -m tcp --dport {port} "
            "-j KUBE-MARK-MASQ",
            f"-A {svc_chain} -j {sep_chain}",
            f"-A {sep_chain} -s {endpoint.split(':')[0]}/32 -j KUBE-MARK-MASQ",
            f"-A {sep_chain} -p tcp -m tcp -j DNAT --to-destination {endpoint}",
        ]
    services.append("-A KUBE-SERVICES -m addrtype --dst-type LOCAL ! -d 127.0.0.0/8 "
                    "-j KUBE-NODEPORTS")
    head = ["*nat", ":PREROUTING ACCEPT [0:0]", ":INPUT ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]",
            ":POSTROUTING ACCEPT [0:0]"]
    return "\n".join(head + chains + top + services + per + ["COMMIT", ""])


def render_nft_minimal(cluster: Cluster) -> str:
    """``nft -f`` text of kube-proxy's nftables layout for the same subset (spec B.3)."""
    pod_net, pod_mask = cluster.cluster_cidr
    pod = f"{int_to_ip(pod_net)}/{bin(pod_mask).count('1')}"
    svc = port_service(cluster)
    out = [
        "table ip kube-proxy {",
        "  chain mark-for-masquerade {",
        f"    meta mark set meta mark or {MASQ_MARK:#x}",
        "  }",
        "  chain masquerading {",
        f"    meta mark & {MASQ_MARK:#x} == 0 return",
        f"    meta mark set meta mark xor {MASQ_MARK:#x}",
        "    masquerade fully-random",
        "  }",
    ]
    elements = []
    for p in cluster.port_order:
        s = int(svc[p])
        if cluster.ep_ptr[s + 1] == cluster.ep_ptr[s]:
            continue
        name, endpoint = _names(cluster, int(p))
        vip = int_to_ip(cluster.svc_cluster_ip[s])
        port = int(cluster.port_port[p])
        h = _hash16(name + "tcp")[:8]
        svc_chain = f"service-{h}-ns{s}-svc{s}-tcp-p{port}"
        ep_chain = f"endpoint-{_hash16(name + endpoint)[:8]}-ns{s}-svc{s}-tcp-p{port}"
        out += [
            f"  chain {ep_chain} {{",
            f"    ip saddr {endpoint.split(':')[0]} jump mark-for-masquerade",
            f"    meta l4proto tcp dnat to {endpoint}",
            "  }",
            f"  chain {svc_chain} {{",
            f"    ip daddr {vip} tcp dport {port} ip saddr != {pod} jump mark-for-masquerade",
            f"    numgen random mod 1 vmap {{ 0 : goto {ep_chain} }}",
            "  }",
        ]
        elements.append(f"      {vip} . tcp . {port} : goto {svc_chain}")
    out += [
        "  map service-ips {",
        "    type ipv4_addr . inet_proto . inet_service : verdict",
    ]
    if elements:
        out += ["    elements = {", ",\n".join(elements), "    }"]
    out += [
        "  }",
        "  map service-nodeports {",
        "    type inet_proto . inet_service : verdict",
        "  }",
        "  chain services {",
        "    ip daddr . meta l4proto . th dport vmap @service-ips",
        "    fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport "
        "vmap @service-nodeports",
        "  }",
        "  chain nat-prerouting {",
        "    type nat hook prerouting priority -100; policy accept;",
        "    jump services",
        "  }",
        "  chain nat-output {",
        "    type nat hook output priority -100; policy accept;",
        "    jump services",
        "  }",
        "  chain nat-postrouting {",
        "    type nat hook postrouting priority 100; policy accept;",
        "    jump masquerading",
        "  }",
        "}",
        "",
    ]
    return "\n".join(out)


# ----------------------------------------------------------------------------- text helpers

_SERVICES_RULE = re.compile(
    r"^-A KUBE-SERVICES\b.*?-d (\d+\.\d+\.\d+\.\d+)(?:/32)?\b.*?--dport (\d+)\b.*?-j (\S+)"
)
_BUILTIN = frozenset(("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"))
_PER_SERVICE = ("KUBE-SVC-", "KUBE-SVL-", "KUBE-EXT-", "KUBE-FW-", "KUBE-SEP-")


def iptables_services_order(text: str) -> list[tuple[str, int, str]]:
    """(VIP, port, target chain) of the KUBE-SERVICES rules of restore text, in order."""
    out = []
    table = None
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
        elif table == "nat":
            m = _SERVICES_RULE.match(line)
            if m:
                out.append((m.group(1), int(m.group(2)), m.group(3)))
    return out


COMMENT_MATCH_BYTES = 32 + 256
"""xt_entry_match header + struct xt_comment_info (XT_MAX_COMMENT_LEN 256)."""


def iptables_chain_bytes(text: str, chain: str = "KUBE-SERVICES", table: str = "nat") -> int:
    """Kernel bytes of one chain's rules (ipt_entry + matches + target, kernels.costmodel sizes).

    This is the memory a walk of the chain reads; the cache-aware per-rule cost uses it.
    """
    from kernels.costmodel import IPT_ENTRY_BYTES, XT_MATCH_BYTES, XT_TARGET_BYTES

    total = 0
    current = None
    for line in text.splitlines():
        if line.startswith("*"):
            current = line[1:].strip()
        elif current == table and line.startswith(f"-A {chain} "):
            comments = line.count("-m comment ")
            others = line.count("-m ") - comments
            total += (IPT_ENTRY_BYTES + XT_TARGET_BYTES + comments * COMMENT_MATCH_BYTES
                      + others * XT_MATCH_BYTES)
    return total


def iptables_counts(text: str) -> dict[str, int]:
    """Numbers of rule lines (``-A``) and user chain lines (``:X -``) in restore text."""
    rules = sum(1 for ln in text.splitlines() if ln.startswith("-A "))
    chains = sum(1 for ln in text.splitlines() if ln.startswith(":") and " - " in ln)
    return {"rules": rules, "chains": chains}


def iptables_partial_sync(text: str, changed_chain: str) -> tuple[str, dict[str, int]]:
    """kube-proxy's partial-sync restore input after one Service changed (spec B.1 syncing).

    Top-level chains are declared (flushed) and rewritten in full; of the per-service chains only
    ``changed_chain`` (a KUBE-SVC-*) and the KUBE-SEP-* chains it jumps to are written. Returns
    the text (for ``iptables-restore --noflush``) and its rule/chain line counts.
    """
    lines = text.splitlines()
    keep_chains = {changed_chain}
    for ln in lines:
        if ln.startswith(f"-A {changed_chain} "):
            target = ln.rsplit(" -j ", 1)[-1].split()[0]
            if target.startswith(_PER_SERVICE):
                keep_chains.add(target)
    out = []
    for ln in lines:
        if ln.startswith((":", "-A ")):
            name = ln[1:].split()[0] if ln.startswith(":") else ln.split()[1]
            if name in _BUILTIN:
                continue  # jump rules are EnsureRule'd on full syncs only (spec B.1)
            if name.startswith(_PER_SERVICE) and name not in keep_chains:
                continue
        out.append(ln)
    partial = "\n".join(out) + "\n"
    return partial, iptables_counts(partial)


_NFT_CHAIN = re.compile(r"^\s*chain (\S+) \{")
_NFT_ELEM = re.compile(
    r"(\d+\.\d+\.\d+\.\d+) \. (?:tcp|6) \. (\d+) : goto (\S+?)(?:,|\s*\}|$)")


def nft_counts(text: str) -> dict[str, int]:
    """Chains, rules and map/set elements of ``nft -f`` text.

    Two layouts: one ``add chain|rule|element`` command a line (harness.nft_text), or a
    ``table { chain X { ... } map Y { elements = { ... } } }`` block, one statement a line.
    """
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if any(ln.startswith("add ") for ln in lines):
        return {
            "chains": sum(ln.startswith("add chain ") for ln in lines),
            "rules": sum(ln.startswith("add rule ") for ln in lines),
            "elements": sum(ln.split("{", 1)[1].count(",") + 1 for ln in lines
                            if ln.startswith("add element ") and "{" in ln),
        }
    chains = rules = elements = 0
    depth = 0
    in_map = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if _NFT_CHAIN.match(raw):
            chains += 1
        elif line.startswith(("map ", "set ")):
            in_map = True
        elif in_map and " : " in line and not line.startswith("type "):
            elements += line.count(" : ")
        elif depth == 2 and not in_map and not line.startswith(("type ", "}", "policy")):
            rules += 1
        depth += line.count("{") - line.count("}")
        if in_map and depth <= 1:
            in_map = False
    return {"chains": chains, "rules": rules, "elements": elements}


_NUMGEN_ONE = re.compile(r"numgen random mod 1 vmap \{ *0 *: *goto (\S+?) *\}")


def nft_single_endpoint_goto(text: str) -> str:
    """``numgen random mod 1 vmap { 0 : goto X }`` -> ``goto X`` (same verdict, no anonymous
    set; see harness.calibrate.NFT_FAITHFUL_MAX)."""
    return _NUMGEN_ONE.sub(r"goto \1", text)


def nft_service_change(text: str, vip: str, port: int, table: str = "kube-proxy") -> str:
    """One-Service change as kube-proxy's partial sync writes it (spec B.3 "Sync").

    The Service's chain is flushed and rewritten with the same rules and its ``service-ips``
    element is deleted and re-added, in one ``nft -f`` transaction.
    """
    target = None
    for raw in text.splitlines():
        m = _NFT_ELEM.search(raw.strip())
        if m and m.group(1) == vip and int(m.group(2)) == port:
            target = m.group(3)
            break
    if target is None:
        raise ValueError(f"nft text: no service-ips element for {vip}:{port}")
    prefix = f"add rule ip {table} {target} "
    body = [ln[len(prefix):] for ln in text.splitlines() if ln.startswith(prefix)]
    inside = False
    for raw in text.splitlines() if not body else ():
        m = _NFT_CHAIN.match(raw)
        if m:
            inside = m.group(1) == target
            continue
        if inside:
            if raw.strip() == "}":
                break
            body.append(raw.strip())
    out = [f"flush chain ip {table} {target}"]
    out += [f"add rule ip {table} {target} {rule}" for rule in body if rule]
    out += [
        f"delete element ip {table} service-ips {{ {vip} . tcp . {port} }}",
        f"add element ip {table} service-ips {{ {vip} . tcp . {port} : goto {target} }}",
    ]
    return "\n".join(out) + "\n"
