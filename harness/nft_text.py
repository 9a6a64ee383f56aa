"""Render the nftables model (kernels.nftables) as ``nft -f`` text in kube-proxy's layout.

The calibration helper loads this text into a real kernel (inside a private network namespace)
to measure verdict-map dispatch. Layout follows spec B.3: table ``ip kube-proxy``; base chains
filter-prerouting / -input / -forward / -output (priority dstnat-10 = -110),
filter-output-post-dnat (dstnat+10 = -90), nat-prerouting / nat-output (dstnat = -100),
nat-postrouting (srcnat = 100); maps ``service-ips``, ``service-nodeports``, ``firewall-ips``,
``no-endpoint-services``, ``no-endpoint-nodeports``; set ``cluster-ips``; per service port
``service-<hash>-<ns>/<svc>/<proto>/<port>`` (masquerade rule, affinity rules, one ``numgen
random mod N vmap`` rule), ``external-…``, ``firewall-…`` and ``endpoint-…__<ip>/<port>``
chains; ClientIP Services get one timeout set ``affinity-…__<ip>/<port>`` per endpoint (named as
its endpoint chain, as kube-proxy does). Chain hashes are the first 8 characters of
base32(sha256(chain base name)). Every ``add rule`` line is one rule of the model: the count
equals ``NftTables.rules_total``.
"""

from __future__ import annotations

import base64
import hashlib

import numpy as np

from kernels.cluster import PROTO_UDP, Cluster, int_to_ip, port_service
from kernels.nftables import NftTables

T = "ip kube-proxy"
MASQ_MARK = 0x4000


def _h8(text: str) -> str:
    return base64.b32encode(hashlib.sha256(text.encode()).digest()).decode()[:8]


def _proto(p: int) -> str:
    return "udp" if int(p) == PROTO_UDP else "tcp"


def chain_names(cluster: Cluster, p: int) -> tuple[str, str, str, str]:
    """(base, service chain, external chain, firewall chain) names of service port ``p``."""
    s = int(port_service(cluster)[p])
    base = f"default/svc-{s}/{_proto(cluster.port_proto[p])}/p{int(cluster.port_port[p])}"
    return (base, f"service-{_h8('service-' + base)}-{base}",
            f"external-{_h8('external-' + base)}-{base}",
            f"firewall-{_h8('firewall-' + base)}-{base}")


def endpoint_chain(base: str, ip: int, port: int) -> str:
    ep = f"{base}__{int_to_ip(ip)}/{int(port)}"
    return f"endpoint-{_h8('endpoint-' + ep)}-{ep}"


def _cidr(net: int, mask: int) -> str:
    return f"{int_to_ip(net)}/{bin(mask).count('1')}"


def render(cluster: Cluster, tables: NftTables, *, service_cidr: str = "10.96.0.0/12",
           masquerade_rule: bool = True) -> str:
    """The whole ``ip kube-proxy`` table as ``nft -f`` input."""
    pod = _cidr(*cluster.cluster_cidr)
    out = [f"add table {T} {{ comment \"rules for kube-proxy\" ; }}"]
    chains: list[str] = []
    rules: list[str] = []
    elements: list[str] = []

    def chain(name: str, hook: str | None = None, prio: int = 0, kind: str = "filter"):
        if hook is None:
            chains.append(f"add chain {T} {name}")
        else:
            chains.append(f"add chain {T} {name} {{ type {kind} hook {hook} priority {prio} ; }}")

    def rule(name: str, text: str):
        rules.append(f"add rule {T} {name} {text}")

    # maps and sets first (rules refer to them)
    key3 = "ipv4_addr . inet_proto . inet_service"
    for m, typ in (("service-ips", key3), ("service-nodeports", "inet_proto . inet_service"),
                   ("firewall-ips", key3), ("no-endpoint-services", key3),
                   ("no-endpoint-nodeports", "inet_proto . inet_service")):
        out.append(f"add map {T} {m} {{ type {typ} : verdict ; }}")
    out.append(f"add set {T} cluster-ips {{ type ipv4_addr ; }}")
    # helper chains
    chain("mark-for-masquerade")
    rule("mark-for-masquerade", f"mark set mark or {MASQ_MARK:#x}")
    chain("masquerading")
    rule("masquerading", f"mark and {MASQ_MARK:#x} == 0 return")
    rule("masquerading", f"mark set mark xor {MASQ_MARK:#x}")
    rule("masquerading", "masquerade fully-random")
    chain("reject-chain")
    rule("reject-chain", "reject")
    for name in ("services", "firewall-check", "service-endpoints-check",
                 "nodeport-endpoints-check", "cluster-ips-check"):
        chain(name)
    rule("services", "ip daddr . meta l4proto . th dport vmap @service-ips")
    rule("services", "fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport "
                     "vmap @service-nodeports")
    rule("firewall-check", "ip daddr . meta l4proto . th dport vmap @firewall-ips")
    rule("service-endpoints-check",
         "ip daddr . meta l4proto . th dport vmap @no-endpoint-services")
    rule("nodeport-endpoints-check", "fib daddr type local ip daddr != 127.0.0.0/8 "
                                     "meta l4proto . th dport vmap @no-endpoint-nodeports")
    rule("cluster-ips-check", "ip daddr @cluster-ips reject")
    rule("cluster-ips-check", f"ip daddr {{ {service_cidr} }} drop")
    # base chains
    for name, hook, prio, kind in (
            ("filter-prerouting", "prerouting", -110, "filter"),
            ("filter-input", "input", -110, "filter"),
            ("filter-forward", "forward", -110, "filter"),
            ("filter-output", "output", -110, "filter"),
            ("filter-output-post-dnat", "output", -90, "filter"),
            ("nat-prerouting", "prerouting", -100, "nat"),
            ("nat-output", "output", -100, "nat"),
            ("nat-postrouting", "postrouting", 100, "nat")):
        chain(name, hook, prio, kind)
    rule("filter-prerouting", "ct state new jump firewall-check")
    rule("filter-input", "ct state new jump nodeport-endpoints-check")
    rule("filter-input", "ct state new jump service-endpoints-check")
    rule("filter-forward", "ct state new jump service-endpoints-check")
    rule("filter-forward", "ct state new jump cluster-ips-check")
    rule("filter-output", "ct state new jump service-endpoints-check")
    rule("filter-output", "ct state new jump firewall-check")
    rule("filter-output-post-dnat", "ct state new jump cluster-ips-check")
    rule("nat-prerouting", "jump services")
    rule("nat-output", "jump services")
    rule("nat-postrouting", "jump masquerading")

    # per service port, in sync order
    psvc = port_service(cluster)
    for p in cluster.port_order.tolist():
        s = int(psvc[p])
        base, svc, ext, fw = chain_names(cluster, p)
        pr = _proto(cluster.port_proto[p])
        cip = int_to_ip(cluster.svc_cluster_ip[s])
        port = int(cluster.port_port[p])
        ips = [int_to_ip(x) for x in cluster.extip_ip[cluster.extip_ptr[s]:
                                                       cluster.extip_ptr[s + 1]]]
        lbs = [int_to_ip(x) for x in cluster.lb_ip[cluster.lb_ptr[s]:cluster.lb_ptr[s + 1]]]
        nodeport = int(cluster.port_nodeport[p])
        if tables.svc_chain[p] < 0:  # no endpoints
            for ip in [cip, *ips, *lbs]:
                elements.append(f"add element {T} no-endpoint-services {{ {ip} . {pr} . "
                                f"{port} : "
                           f"goto reject-chain }}")
            if nodeport:
                elements.append(f"add element {T} no-endpoint-nodeports {{ {pr} . {nodeport} : "
                           f"goto reject-chain }}")
            continue
        eps = cluster.ep_ip[cluster.ep_ptr[s]:cluster.ep_ptr[s + 1]]
        target = int(cluster.port_target[p])
        ep_chains = [endpoint_chain(base, int(e), target) for e in eps]
        chain(svc)
        if masquerade_rule:
            rule(svc, f"ip saddr != {pod} jump mark-for-masquerade")
        aff = bool(cluster.svc_affinity[s])
        aff_sets = [ec.replace("endpoint-", "affinity-", 1) for ec in ep_chains]
        if aff:
            for aset, ec in zip(aff_sets, ep_chains, strict=True):
                out.append(f"add set {T} {aset} {{ type ipv4_addr ; flags dynamic,timeout ; "
                           f"timeout {int(cluster.svc_affinity_timeout[s])}s ; }}")
                rule(svc, f"ip saddr @{aset} goto {ec}")
        vmap = ", ".join(f"{i} : goto {ec}" for i, ec in enumerate(ep_chains))
        rule(svc, f"numgen random mod {len(ep_chains)} vmap {{ {vmap} }}")
        for e, ec, aset in zip(eps, ep_chains, aff_sets, strict=True):
            chain(ec)
            rule(ec, f"ip saddr {int_to_ip(e)} jump mark-for-masquerade")
            if aff:
                rule(ec, f"update @{aset} {{ ip saddr }}")
            rule(ec, f"meta l4proto {pr} dnat to {int_to_ip(e)}:{target}")
        elements.append(f"add element {T} cluster-ips {{ {cip} }}")
        elements.append(f"add element {T} service-ips {{ {cip} . {pr} . {port} : goto {svc} }}")
        has_ext = bool(ips or lbs or nodeport)
        if has_ext:
            chain(ext)
            rule(ext, "jump mark-for-masquerade")
            rule(ext, f"goto {svc}")
            for ip in [*ips, *lbs]:
                elements.append(f"add element {T} service-ips {{ {ip} . {pr} . {port} : "
                                f"goto {ext} }}")
            if nodeport:
                elements.append(f"add element {T} service-nodeports {{ {pr} . {nodeport} : "
                           f"goto {ext} }}")
        r0, r1 = cluster.src_ptr[s], cluster.src_ptr[s + 1]
        if r1 > r0 and lbs:
            chain(fw)
            ranges = ", ".join(_cidr(int(n), int(m)) for n, m in
                               zip(cluster.src_net[r0:r1], cluster.src_mask[r0:r1], strict=True))
            rule(fw, f"ip saddr != {{ {ranges} }} drop")
            for ip in lbs:
                elements.append(f"add element {T} firewall-ips {{ {ip} . {pr} . {port} : "
                                f"goto {fw} }}")
    # declarations first: rules and map elements refer to chains by name
    return "\n".join(out + chains + rules + elements) + "\n"


def count_rules(text: str) -> int:
    """Rules in rendered text (``add rule`` lines)."""
    return int(np.sum([line.startswith("add rule ") for line in text.splitlines()]))
