"""Plain-Python references for kernels.ipvs: Jenkins hash, IPVS hash keys, chained tables."""

M32 = 0xFFFFFFFF


def rol32(x, k):
    x &= M32
    return ((x << k) | (x >> (32 - k))) & M32


def jhash_final(a, b, c):
    c ^= b
    c = (c - rol32(b, 14)) & M32
    a ^= c
    a = (a - rol32(c, 11)) & M32
    b ^= a
    b = (b - rol32(a, 25)) & M32
    c ^= b
    c = (c - rol32(b, 16)) & M32
    a ^= c
    a = (a - rol32(c, 4)) & M32
    b ^= a
    b = (b - rol32(a, 14)) & M32
    c ^= b
    c = (c - rol32(b, 24)) & M32
    return c


def jhash_3words(a, b, c, initval):
    iv = (initval + 0xDEADBEEF + (3 << 2)) & M32
    return jhash_final((a + iv) & M32, (b + iv) & M32, (c + iv) & M32)


def jhash2(words, initval):
    """jhash2 for at most 3 words (no mix rounds needed)."""
    n = len(words)
    a = b = c = (0xDEADBEEF + (n << 2) + initval) & M32
    if n == 0:
        return c
    w = list(words) + [0, 0]
    if n >= 3:
        c = (c + w[2]) & M32
    if n >= 2:
        b = (b + w[1]) & M32
    a = (a + w[0]) & M32
    return jhash_final(a, b, c)


def bswap32(x):
    return int.from_bytes((x & M32).to_bytes(4, "little"), "big")


def bswap16(x):
    return int.from_bytes((x & 0xFFFF).to_bytes(2, "little"), "big")


def svc_hashkey(proto, addr, port, netns_ptr, bits):
    a = (addr ^ ((netns_ptr >> 8) & M32)) & M32
    return (proto ^ a ^ (port >> bits) ^ port) & ((1 << bits) - 1)


def conn_hashkey(addr, port, proto, rnd, netns_ptr, bits):
    h = jhash_3words(bswap32(addr), bswap16(port), proto, rnd)
    return (h ^ ((netns_ptr >> 8) & M32)) & ((1 << bits) - 1)


class ChainedTable:
    """Buckets as Python lists, newest element first (hlist_add_head)."""

    def __init__(self, nbuckets):
        self.buckets = [[] for _ in range(nbuckets)]

    def insert(self, bucket, item):
        self.buckets[bucket].insert(0, item)

    def find(self, bucket, pred):
        """(item or None, probes = 1 bucket head + nodes compared)."""
        probes = 1
        for item in self.buckets[bucket]:
            probes += 1
            if pred(item):
                return item, probes
        return None, probes


def svc_table(vs_addr, vs_port, vs_proto, netns_ptr, bits):
    t = ChainedTable(1 << bits)
    for i, (a, p, pr) in enumerate(zip(vs_addr, vs_port, vs_proto, strict=True)):
        t.insert(svc_hashkey(pr, a, p, netns_ptr, bits), (i, a, p, pr))
    return t


def svc_find(table, proto, addr, port, netns_ptr, bits):
    item, probes = table.find(svc_hashkey(proto, addr, port, netns_ptr, bits),
                              lambda it: it[1] == addr and it[2] == port and it[3] == proto)
    return (-1 if item is None else item[0]), probes


def conn_table(caddr, cport, proto, vaddr, vport, rnd, netns_ptr, bits):
    t = ChainedTable(1 << bits)
    for i in range(len(caddr)):
        t.insert(conn_hashkey(caddr[i], cport[i], proto[i], rnd, netns_ptr, bits),
                 (i, caddr[i], cport[i], proto[i], vaddr[i], vport[i]))
    return t


def conn_find(table, a, p, pr, va, vp, rnd, netns_ptr, bits):
    item, probes = table.find(
        conn_hashkey(a, p, pr, rnd, netns_ptr, bits),
        lambda it: it[2] == p and it[5] == vp and it[1] == a and it[4] == va and it[3] == pr)
    return (-1 if item is None else item[0]), probes


# ---- kube-proxy ipvs mode nat chains (spec B.2), walked by hand -----------------------------
MASQ, DROP = 0x4000, 0x8000


class IpSet:
    """hash:* ipset as Python bucket lists, from a kernels.ipvs.HashSet's keys (insertion order =
    row order, each at its bucket head)."""

    def __init__(self, hs):
        self.nwords, self.seed, self.mask = hs.nwords, hs.seed, (1 << hs.bits) - 1
        self.buckets = [[] for _ in range(1 << hs.bits)]
        for k in hs.keys.tolist():
            self.buckets[jhash2(k[:self.nwords], self.seed) & self.mask].insert(0, tuple(k))
        self.empty = hs.elements == 0

    def test(self, key):
        probes = 1
        for k in self.buckets[jhash2(list(key)[:self.nwords], self.seed) & self.mask]:
            probes += 1
            if k == tuple(key):
                return True, probes
        return False, probes


class NatWalk:
    """Per-packet counter: rules (entries incl. implicit RETURN / policy), extension matches,
    jumps, set probes."""

    def __init__(self):
        self.rules = self.matches = self.jumps = self.probes = 0

    def rule(self, n=1):
        self.rules += n

    def match(self, hit_probes=None):
        self.matches += 1
        if hit_probes is not None:
            hit, p = hit_probes
            self.probes += p
            return hit
        return None


def ipvs_nat(t, saddr, daddr, dport, proto, dest, vs):
    """Hand-written walk of the nat chains for one packet; ``dest``/``vs`` = IPVS' choice
    (-1 if none). Returns (rules, matches, jumps, set_probes, dropped)."""
    sets = {name: IpSet(h) for name, h in (("ci", t.cluster_ip_set), ("ext", t.external_ip_set),
                                           ("lb", t.lb_set), ("fw", t.lb_fw_set),
                                           ("loop", t.loopback_set),
                                           ("cidr", t.source_cidr_set))}
    local = set(t.local_addrs.tolist())
    masks = sorted(t.sets.cidr_masks.tolist(), key=lambda m: -bin(m).count("1"))
    w = NatWalk()
    mark = 0
    k2 = (daddr, (dport << 8) | proto, 0)

    def mark_masq():
        nonlocal mark
        w.jumps += 1
        w.rule(2)  # MARK --or-mark, implicit RETURN
        mark |= MASQ

    # PREROUTING: -j KUBE-SERVICES
    w.rule()
    w.jumps += 1
    verdict = None
    # KUBE-SERVICES
    if not sets["lb"].empty:
        w.rule()
        if w.match(sets["lb"].test(k2)):
            w.jumps += 1  # KUBE-LOAD-BALANCER
            if not sets["fw"].empty:
                w.rule()
                if w.match(sets["fw"].test(k2)):
                    w.jumps += 1  # KUBE-FIREWALL
                    w.rule()
                    hit, p = False, 0
                    for m in masks:
                        h, q = sets["cidr"].test((daddr, (dport << 8) | proto, saddr & m))
                        p += q
                        if h:
                            hit = True
                            break
                    w.match((hit, max(p, 1)))
                    if not hit:
                        w.rule()  # -j KUBE-MARK-DROP
                        w.jumps += 1
                        w.rule(2)
                        mark |= DROP
                        w.rule()  # KUBE-FIREWALL implicit RETURN
            w.rule()  # -j KUBE-MARK-MASQ
            mark_masq()
            w.rule()  # KUBE-LOAD-BALANCER implicit RETURN
    w.rule()  # ! -s podCIDR -m set KUBE-CLUSTER-IP dst,dst -j KUBE-MARK-MASQ
    if (saddr & t.pod_mask) != t.pod_net:
        if w.match(sets["ci"].test(k2)):
            mark_masq()
    if not sets["ext"].empty:
        w.rule()
        if w.match(sets["ext"].test(k2)):
            mark_masq()
        w.rule()
        if w.match(sets["ext"].test(k2)):
            verdict = "accept"
    if verdict is None:
        w.rule()  # -m addrtype --dst-type LOCAL -j KUBE-NODE-PORT
        w.match()
        if daddr in local:
            w.jumps += 1
            for pr, row in ((6, 0), (17, 1)):
                w.rule()
                if proto == pr:
                    w.match()
                    w.probes += 1
                    if t.nodeport_bitmap[row, dport]:
                        mark_masq()
            w.rule()  # implicit RETURN
        w.rule()
        if w.match(sets["ci"].test(k2)):
            verdict = "accept"
    if verdict is None and not sets["lb"].empty:
        w.rule()
        if w.match(sets["lb"].test(k2)):
            verdict = "accept"
    if verdict is None:
        w.rule(2)  # KUBE-SERVICES implicit RETURN, PREROUTING policy
    if mark & DROP:
        return w.rules, w.matches, w.jumps, w.probes, True
    if daddr in local and dest < 0:
        return w.rules, w.matches, w.jumps, w.probes, False
    da, dp = daddr, dport
    if dest >= 0:
        da, dp = int(t.ep_ip[dest]), int(t.vs_target[vs])
    # POSTROUTING: -j KUBE-POSTROUTING
    w.rule()
    w.jumps += 1
    w.rule()
    if w.match(sets["loop"].test((da, (dp << 8) | proto, saddr))):
        return w.rules, w.matches, w.jumps, w.probes, False  # MASQUERADE
    w.rule()
    w.match()
    if not mark & MASQ:
        w.rule()  # RETURN -> POSTROUTING policy
        return w.rules, w.matches, w.jumps, w.probes, False
    w.rule(2)  # --xor-mark, MASQUERADE
    return w.rules, w.matches, w.jumps, w.probes, False
