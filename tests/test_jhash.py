"""Linux jhash (kernels.jhash): lookup3's published vectors, and the variants against each other
and a plain-Python reference."""

import struct

import numpy as np
import pytest
from naive.ipvs import jhash_3words as naive_jhash_3words

from kernels.jhash import jhash2, jhash_3words, jhash_bytes, jhash_nwords


def test_jhash_known_vectors():
    # Bob Jenkins' lookup3.c driver5 values for hashlittle (= Linux jhash on little-endian).
    assert jhash_bytes(b"", 0) == 0xDEADBEEF
    assert jhash_bytes(b"Four score and seven years ago", 0) == 0x17770551
    assert jhash_bytes(b"Four score and seven years ago", 1) == 0xCD628161


@pytest.mark.parametrize("seed", range(5))
def test_jhash_3words_equals_jhash_of_the_words_and_naive(seed):
    rng = np.random.default_rng(seed)
    for a, b, c, iv in rng.integers(0, 2**32, size=(200, 4), dtype=np.uint64).tolist():
        got = jhash_3words(a, b, c, iv)
        assert got == jhash_bytes(struct.pack("<3I", a, b, c), iv)
        assert got == naive_jhash_3words(a, b, c, iv)


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 6, 7, 9, 10])
def test_jhash2_equals_jhash_of_the_same_bytes(n):
    """jhash2 over n words = jhash over their 4n little-endian bytes (lookup3's hashword vs
    hashlittle), including the mix rounds for n > 3."""
    rng = np.random.default_rng(n)
    for _ in range(50):
        words = rng.integers(0, 2**32, size=n, dtype=np.uint64)
        iv = int(rng.integers(0, 2**32))
        got = jhash2(words.astype(np.int64), n, iv)
        assert got == jhash_bytes(struct.pack(f"<{n}I", *words.tolist()), iv)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_jhash_nwords_equals_jhash2_of_the_first_n_words(n):
    rng = np.random.default_rng(100 + n)
    for w0, w1, w2, iv in rng.integers(0, 2**32, size=(200, 4), dtype=np.uint64).tolist():
        words = np.array([w0, w1, w2], dtype=np.int64)
        assert jhash_nwords(w0, w1, w2, n, iv) == jhash2(words, n, iv)
