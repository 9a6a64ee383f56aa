"""Bob Jenkins' lookup3 hash as the Linux kernel has it (include/linux/jhash.h).

IPVS hashes its connection table (spec A.2) and, in the proposed resizable service table
(spec A.1), its services with ``jhash_3words``; nftables' hash sets and verdict maps hash their
keys with ``jhash`` (spec C.2); conntrack's ``hash_conntrack_raw`` uses ``jhash2``
(kernels/conntrack.py).
All values are 32-bit unsigned integers held in int64.
"""

from __future__ import annotations

import numpy as np
from numba import njit

M32 = 0xFFFFFFFF
JHASH_INITVAL = 0xDEADBEEF


@njit(cache=True)
def rol32(x, k):
    return ((x << k) | (x >> (32 - k))) & M32


@njit(cache=True)
def bswap32(x):
    return ((x & 0xFF) << 24) | ((x & 0xFF00) << 8) | ((x >> 8) & 0xFF00) | ((x >> 24) & 0xFF)


@njit(cache=True)
def bswap16(x):
    return ((x & 0xFF) << 8) | ((x >> 8) & 0xFF)


@njit(cache=True)
def jhash_mix(a, b, c):
    """__jhash_mix: one mixing round of three words."""
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


@njit(cache=True)
def jhash_final(a, b, c):
    """__jhash_final: the final mixing of three words; returns c."""
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


@njit(cache=True)
def jhash_3words(a, b, c, initval):
    """jhash_3words(a, b, c, initval) on 32-bit values."""
    iv = (initval + JHASH_INITVAL + 12) & M32
    return jhash_final((a + iv) & M32, (b + iv) & M32, (c + iv) & M32)


@njit(cache=True)
def jhash2(k, n, initval):
    """jhash2(k, n, initval) over the first n 32-bit words of the array k."""
    a = (JHASH_INITVAL + (n << 2) + initval) & M32
    b = a
    c = a
    i = 0
    while n > 3:
        a = (a + k[i]) & M32
        b = (b + k[i + 1]) & M32
        c = (c + k[i + 2]) & M32
        a, b, c = jhash_mix(a, b, c)
        n -= 3
        i += 3
    if n == 0:
        return c
    if n == 3:
        c = (c + k[i + 2]) & M32
    if n >= 2:
        b = (b + k[i + 1]) & M32
    a = (a + k[i]) & M32
    return jhash_final(a, b, c)


@njit(cache=True)
def jhash_nwords(w0, w1, w2, n, initval):
    """jhash2 over the first n (1 to 3) of the words w0, w1, w2 (= jhash_1word / jhash over
    4·n bytes), without an array: ipsets and nftables hash keys of at most three words."""
    a = (JHASH_INITVAL + (n << 2) + initval) & M32
    b = a
    c = a
    if n == 3:
        c = (c + w2) & M32
    if n >= 2:
        b = (b + w1) & M32
    a = (a + w0) & M32
    return jhash_final(a, b, c)


@njit(cache=True)
def jhash_array(key, initval):
    """jhash(key, length, initval) over the bytes in an int64 array (little-endian words)."""
    length = key.shape[0]
    a = (JHASH_INITVAL + length + initval) & M32
    b = a
    c = a
    i = 0
    while length > 12:
        a = (a + (key[i] | (key[i + 1] << 8) | (key[i + 2] << 16) | (key[i + 3] << 24))) & M32
        b = (b + (key[i + 4] | (key[i + 5] << 8) | (key[i + 6] << 16) | (key[i + 7] << 24))) & M32
        c = (c + (key[i + 8] | (key[i + 9] << 8) | (key[i + 10] << 16) | (key[i + 11] << 24))) & M32
        a, b, c = jhash_mix(a, b, c)
        length -= 12
        i += 12
    if length == 0:
        return c
    for j in range(length - 1, -1, -1):
        v = np.int64(key[i + j]) << (8 * (j % 4))
        if j >= 8:
            c = (c + v) & M32
        elif j >= 4:
            b = (b + v) & M32
        else:
            a = (a + v) & M32
    return jhash_final(a, b, c)


def jhash_bytes(data: bytes, initval: int) -> int:
    """Linux ``jhash`` (byte-wise, little-endian word reads) = Bob Jenkins' lookup3 hashlittle."""
    return int(jhash_array(np.frombuffer(data, dtype=np.uint8).astype(np.int64),
                           np.int64(initval & M32)))
