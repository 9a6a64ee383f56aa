"""Plain-Python reference for kernels.nftables: rhash sizing, lookups and numgen."""

from naive.ipvs import jhash2


def rhash_buckets(n):
    size = 4
    while n > size * 3 // 4:
        size *= 2
    return size


def rhash(keys, vals, seed):
    """Named set on the rhash backend: list of buckets, newest first."""
    nb = rhash_buckets(len(keys))
    table = [[] for _ in range(nb)]
    for k, v in zip(keys, vals, strict=True):
        table[jhash2(k, seed) & (nb - 1)].insert(0, (k, v))
    return table


def lookup(table, key, seed):
    probes = 1
    for k, v in table[jhash2(key, seed) & (len(table) - 1)]:
        probes += 1
        if tuple(k) == tuple(key):
            return v, probes
    return -1, probes


def numgen(r_u32, n):
    """nft_numgen random: reciprocal_scale(r, n)."""
    return (r_u32 * n) >> 32
