"""Plain-Python reference for kernels.conntrack: the tuple hash and chain walks."""

from naive.ipvs import M32, bswap16, bswap32, jhash_final, rol32


def _mix(a, b, c):
    a = (a - c) & M32
    a ^= rol32(c, 4)
    c = (c + b) & M32
    b = (b - a) & M32
    b ^= rol32(a, 6)
    a = (a + c) & M32
    c = (c - b) & M32
    c ^= rol32(b, 8)
    b = (b + a) & M32
    a = (a - c) & M32
    a ^= rol32(c, 16)
    c = (c + b) & M32
    b = (b - a) & M32
    b ^= rol32(a, 19)
    a = (a + c) & M32
    c = (c - b) & M32
    c ^= rol32(b, 4)
    b = (b + a) & M32
    return a, b, c


def jhash2(words, initval):
    """Linux jhash2 over any number of 32-bit words."""
    n = len(words)
    a = b = c = (0xDEADBEEF + (n << 2) + initval) & M32
    i = 0
    while n > 3:
        a, b, c = _mix((a + words[i]) & M32, (b + words[i + 1]) & M32, (c + words[i + 2]) & M32)
        i += 3
        n -= 3
    if n == 0:
        return c
    if n == 3:
        c = (c + words[i + 2]) & M32
    if n >= 2:
        b = (b + words[i + 1]) & M32
    a = (a + words[i]) & M32
    return jhash_final(a, b, c)


def bucket(sa, sp, da, dp, proto, rnd, nbuckets):
    words = [bswap32(sa), 0, 0, 0, bswap16(sp) | (2 << 16), bswap32(da), 0, 0, 0]
    seed = (rnd ^ ((bswap16(dp) << 16) | proto)) & M32
    return (jhash2(words, seed) * nbuckets) >> 32


def build(tuples, rnd, nbuckets):
    table = [[] for _ in range(nbuckets)]
    for i, t in enumerate(tuples):
        table[bucket(*t, rnd, nbuckets)].insert(0, (i, t))
    return table


def find(table, t, rnd):
    probes = 1
    for i, u in table[bucket(*t, rnd, len(table))]:
        probes += 1
        if u == t:
            return i, probes
    return -1, probes
