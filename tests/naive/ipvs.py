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
