"""Slow, plain-Python reference for kernels/schedulers.py, written from the spec text.

Destinations are objects in a Python list in list order (newest first, spec A); every scheduler
is a direct transcription of spec A.4-A.9, B.1, B.4 and C.2 using min/max over candidate lists
with exact fractions instead of the kernel's cross-multiplication. Random numbers come from the
same splitmix64 stream as the kernel state so randomised schedulers can be compared draw by draw.
"""

from __future__ import annotations

from fractions import Fraction

M64 = (1 << 64) - 1
M32 = (1 << 32) - 1
AVAILABLE = 0x1
OVERLOAD = 0x2
SCHED1 = 0x8
SCHED2 = 0x10
GOLDEN = 2654435761
MH_KEY1 = 2654435761
MH_KEY2 = 2654446892
MH_PRIMES = (251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071)


class SplitMix64:
    def __init__(self, seed: int):
        self.state = seed & M64

    def u32(self) -> int:
        self.state = (self.state + 0x9E3779B97F4A7C15) & M64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
        return (z ^ (z >> 31)) >> 32


def _rotl(x: int, b: int) -> int:
    return ((x << b) | (x >> (64 - b))) & M64


def siphash(data: bytes, k0: int, k1: int, c: int, d: int) -> int:
    """Generic SipHash-c-d (64-bit words, 64-bit output) over a byte string."""
    v = [k0 ^ 0x736F6D6570736575, k1 ^ 0x646F72616E646F6D,
         k0 ^ 0x6C7967656E657261, k1 ^ 0x7465646279746573]

    def rnd():
        v[0] = (v[0] + v[1]) & M64
        v[1] = _rotl(v[1], 13) ^ v[0]
        v[0] = _rotl(v[0], 32)
        v[2] = (v[2] + v[3]) & M64
        v[3] = _rotl(v[3], 16) ^ v[2]
        v[0] = (v[0] + v[3]) & M64
        v[3] = _rotl(v[3], 21) ^ v[0]
        v[2] = (v[2] + v[1]) & M64
        v[1] = _rotl(v[1], 17) ^ v[2]
        v[2] = _rotl(v[2], 32)

    full = len(data) // 8 * 8
    for i in range(0, full, 8):
        m = int.from_bytes(data[i:i + 8], "little")
        v[3] ^= m
        for _ in range(c):
            rnd()
        v[0] ^= m
    b = (len(data) & 0xFF) << 56 | int.from_bytes(data[full:], "little")
    v[3] ^= b
    for _ in range(c):
        rnd()
    v[0] ^= b
    v[2] ^= 0xFF
    for _ in range(d):
        rnd()
    return v[0] ^ v[1] ^ v[2] ^ v[3]


def hsiphash(data: bytes, k0: int, k1: int) -> int:
    """Linux hsiphash on 64-bit: SipHash-1-3 truncated to u32."""
    return siphash(data, k0, k1, 1, 3) & M32


def mh_hashkey(addr: int, port: int, key: int, offset: int) -> int:
    v = (offset + port + addr) & M32
    return hsiphash(v.to_bytes(4, "little"), key, key)


def mul_hash(x: int, offset: int, size: int) -> int:
    return (offset + (x & M32) * GOLDEN) % (1 << 32) % size


def statistic_threshold(k: int) -> int:
    p = float(f"{1.0 / k:0.10f}")
    return int(p * 2**31 + 0.5)


class Dest:
    def __init__(self, addr, port, weight):
        self.addr, self.port = addr, port
        self.weight = self.last_weight = weight
        self.active = self.inact = self.persist = 0
        self.flags = AVAILABLE
        self.u = self.l = 0

    @property
    def overloaded(self):
        return bool(self.flags & OVERLOAD)

    @property
    def overhead(self):
        return self.active * 256 + self.inact

    @property
    def key(self):
        return (self.addr, self.port)


def maglev_populate(offsets, skips, turns, m):
    """Maglev populate as the spec A.8 text says: rounds over dests in list order; a dest with
    turns >= 1 claims `turns` slots per round, each at the next unclaimed slot of its
    permutation offset, offset+skip, ... (mod M)."""
    table = [None] * m
    nxt = list(offsets)
    filled = 0
    while filled < m:
        for i in range(len(offsets)):
            for _ in range(turns[i]):
                while table[nxt[i]] is not None:
                    nxt[i] = (nxt[i] + skips[i]) % m
                table[nxt[i]] = i
                filled += 1
                if filled == m:
                    return table
    return table


class Service:
    def __init__(self, world, sched, flags=0, mh_m=4093, sh_bits=8, dh_bits=8):
        self.world = world
        self.sched, self.flags = sched, flags
        self.dests: list[Dest] = []
        self.trash: list[Dest] = []
        self.rr_last = None
        self.cl = None  # wrr: None = list head, else a Dest
        self.cw = self.mw = 0
        self.di = 1
        self.mh_m = mh_m
        self.mh_bits = (8 + MH_PRIMES.index(mh_m)) // 2
        self.sh_size = 1 << sh_bits
        self.dh_size = 1 << dh_bits
        self.table: list = []
        self.endpoints: list[Dest] = []
        self.us_index = 0
        self.cache: dict[int, dict] = {}
        self.lb_counter = 1
        self._changed(None)

    # ---- configuration --------------------------------------------------------------------
    def add(self, addr, port, weight):
        for d in self.dests:
            if d.key == (addr, port):
                raise ValueError("exists")
        old_elig = self._eligible_set()
        revived = [d for d in self.trash if d.key == (addr, port)]
        if revived:
            d = revived[0]
            self.trash.remove(d)
            d.weight = d.last_weight = weight
            d.flags = AVAILABLE
            d.u = d.l = 0
        else:
            d = Dest(addr, port, weight)
        self.dests.insert(0, d)
        self._changed(old_elig)
        return d

    def remove(self, d):
        old_elig = self._eligible_set()
        i = self.dests.index(d)
        if self.rr_last is d:
            self.rr_last = self.dests[i - 1] if i > 0 else None
        self.dests.pop(i)
        d.flags &= ~AVAILABLE
        self.trash.append(d)
        self._changed(old_elig)

    def set_weight(self, d, w):
        old_elig = self._eligible_set()
        d.weight = w
        if w != 0:
            d.last_weight = w
        self._changed(old_elig)

    def set_thresholds(self, d, u, lo):
        old_elig = self._eligible_set()
        if u == 0 or u > d.u:
            d.flags &= ~OVERLOAD
        d.u, d.l = u, lo
        self._changed(old_elig)

    def _eligible_set(self):
        return {d.key for d in self.dests if d.weight > 0}

    def _changed(self, old_elig):
        s = self.sched
        if s == "wrr":
            pos = [d.weight for d in self.dests if d.weight > 0]
            g = 0
            for w in pos:
                g = _gcd(w, g) if g else w
            self.di = g or 1
            self.mw = max([d.weight for d in self.dests], default=0) - (self.di - 1)
            self.cl = None
            if self.cw > self.mw or self.cw == 0:
                self.cw = self.mw
            elif self.di > 1:
                self.cw = (self.cw // self.di) * self.di + 1
        elif s == "dh":
            n = len(self.dests)
            self.table = [self.dests[i % n] if n else None for i in range(self.dh_size)]
        elif s == "sh":
            self.table = []
            n = len(self.dests)
            i = 0
            while n and len(self.table) < self.sh_size:
                d = self.dests[i % n]
                self.table.extend([d] * max(d.weight, 1))
                i += 1
            self.table = self.table[: self.sh_size] if n else [None] * self.sh_size
        elif s == "mh":
            self._mh_build()
        elif s in ("statistic", "numgen"):
            self.endpoints = [d for d in self.dests if d.weight > 0]
        elif s == "userspace_rr":
            if old_elig is None or old_elig != self._eligible_set():
                eps = [d for d in self.dests if d.weight > 0]
                for i in range(len(eps) - 1, 0, -1):
                    j = self.world.rng.u32() % (i + 1)
                    eps[i], eps[j] = eps[j], eps[i]
                self.endpoints = eps
                self.us_index = 0

    def _mh_build(self):
        m = self.mh_m
        if len(self.dests) > m:
            return
        lws = [d.last_weight for d in self.dests]
        pos = [w for w in lws if w > 0]
        if not pos:
            self.table = [None] * m
            return
        g = 0
        for w in pos:
            g = _gcd(w, g) if g else w
        rshift = max(0, (max(lws) // g).bit_length() - self.mh_bits)
        offsets = [mh_hashkey(d.addr, d.port, MH_KEY1, 0) % m for d in self.dests]
        skips = [mh_hashkey(d.addr, d.port, MH_KEY2, 0) % (m - 1) + 1 for d in self.dests]
        turns = [((lw // g) >> rshift) or (1 if lw else 0) for lw in lws]
        idx = maglev_populate(offsets, skips, turns, m)
        self.table = [self.dests[i] for i in idx]

    # ---- scheduling -----------------------------------------------------------------------
    def schedule(self, caddr, cport, daddr):
        return getattr(self, "_" + self.sched)(caddr, cport, daddr)

    def _rr(self, *_):
        ds = self.dests
        if self.rr_last is None:
            order = ds
        else:
            i = ds.index(self.rr_last)
            order = ds[i + 1:] + ds[: i + 1]
        for d in order:
            if not d.overloaded and d.weight > 0:
                self.rr_last = d
                return d
        return None

    def _wrr(self, *_):
        # circular walk over [head, d0, d1, ...]; cw drops by di each time the head is passed
        if self.mw == 0:
            return None
        ring = [None] + self.dests
        last = self.cl
        pos = ring.index(last) if last is not None else 0
        stop = "none"
        last_pass = restarted = False
        while True:
            pos = (pos + 1) % len(ring)
            d = ring[pos]
            if d is None:
                self.cw -= self.di
                if self.cw <= 0:
                    self.cw = self.mw
                    if last_pass or last is None:
                        self.cl = None
                        return None
                    restarted = True
                last_pass = self.cw <= self.di
                if last_pass and restarted and last is not None:
                    stop = last
                continue
            if not d.overloaded and d.weight >= self.cw:
                self.cl = d
                return d
            if d is stop:
                self.cl = d
                return None

    def _lc(self, *_):
        c = [d for d in self.dests if not d.overloaded and d.weight != 0]
        return min(c, key=lambda d: d.overhead) if c else None

    def _wlc_pick(self, cost):
        c = [d for d in self.dests if not d.overloaded and d.weight > 0]
        return min(c, key=lambda d: Fraction(cost(d), d.weight)) if c else None

    def _wlc(self, *_):
        return self._wlc_pick(lambda d: d.overhead)

    def _sed(self, *_):
        return self._wlc_pick(lambda d: d.active + 1)

    def _nq(self, *_):
        c = [d for d in self.dests if not d.overloaded and d.weight != 0]
        for d in c:
            if d.active == 0:
                return d
        return self._sed()

    def _fo(self, *_):
        c = [d for d in self.dests if not d.overloaded and d.weight > 0]
        return max(c, key=lambda d: d.weight) if c else None

    def _ovf(self, *_):
        c = [d for d in self.dests
             if not d.overloaded and d.weight != 0 and d.active <= d.weight]
        return max(c, key=lambda d: d.weight) if c else None

    def _twos(self, *_):
        c = [d for d in self.dests if not d.overloaded and d.weight > 0]
        if not c:
            return None
        total = sum(d.weight for d in c) + 1
        r1 = self.world.rng.u32() % total
        r2 = self.world.rng.u32() % total

        def pick(r):
            for d in c:
                r -= d.weight
                if r <= 0:
                    return d
            return None

        p1, p2 = pick(r1), pick(r2)
        if p2.weight * p1.overhead > p1.weight * p2.overhead:
            return p2
        return p1

    def _dh(self, caddr, cport, daddr):
        d = self.table[mul_hash(daddr, 0, self.dh_size)]
        if d is None or not d.flags & AVAILABLE or d.weight <= 0 or d.overloaded:
            return None
        return d

    def _hash_lookup(self, hashkey, size):
        def bad(d):
            return d.weight <= 0 or d.overloaded

        ihash = hashkey(0)
        d = self.table[ihash]
        if not self.flags & SCHED1:
            return None if d is None or bad(d) else d
        if d is None:
            return None
        if not bad(d):
            return d
        for k in range(size):
            d = self.table[hashkey((ihash + k) % size)]
            if d is None:
                return None
            if not bad(d):
                return d
        return None

    def _sh(self, caddr, cport, daddr):
        port = cport if self.flags & SCHED2 else 0
        return self._hash_lookup(
            lambda off: mul_hash(port + caddr, off, self.sh_size), self.sh_size)

    def _mh(self, caddr, cport, daddr):
        port = cport if self.flags & SCHED2 else 0
        m = self.mh_m
        return self._hash_lookup(lambda off: mh_hashkey(caddr, port, MH_KEY1, off) % m, m)

    def _is_overloaded(self, d):
        return d.active > d.weight and any(x.active * 2 < x.weight for x in self.dests)

    def _lblc(self, caddr, cport, daddr):
        en = self.cache.get(daddr)
        now = self.world.now
        if en is not None:
            en["lastuse"] = now
            d = en["dest"]
            if (d is not None and d.flags & AVAILABLE and d.weight > 0
                    and not self._is_overloaded(d)):
                return d
        d = self._wlc()
        if d is None:
            return None
        if en is None:
            if len(self.cache) >= self.world.lb_entries:
                return d
            en = self.cache[daddr] = {"lastuse": now}
        en["dest"] = d
        return d

    def _lblcr(self, caddr, cport, daddr):
        en = self.cache.get(daddr)
        now = self.world.now
        if en is not None:
            en["lastuse"] = now
            members = [x for x in en["set"]
                       if not x.overloaded and x.weight > 0 and x.flags & AVAILABLE]
            d = min(members, key=lambda x: Fraction(x.overhead, x.weight)) if members else None
            if len(en["set"]) > 1 and now > en["lastmod"] + self.world.lblcr_expiration:
                cand = [x for x in en["set"] if x.weight > 0]
                if cand:
                    # most loaded; ties -> first in set order (strict comparison)
                    m = cand[0]
                    for x in cand[1:]:
                        if Fraction(x.overhead, x.weight) > Fraction(m.overhead, m.weight):
                            m = x
                    en["set"].remove(m)
                    en["lastmod"] = now
            if d is not None and not self._is_overloaded(d):
                return d
            d = self._wlc()
            if d is None:
                return None
            if d not in en["set"]:
                en["set"].insert(0, d)
                en["lastmod"] = now
            return d
        d = self._wlc()
        if d is None:
            return None
        if len(self.cache) < self.world.lb_entries:
            self.cache[daddr] = {"lastuse": now, "set": [d], "lastmod": now}
        return d

    def _statistic(self, *_):
        n = len(self.endpoints)
        for i, d in enumerate(self.endpoints):
            if i == n - 1:
                return d
            if (self.world.rng.u32() & 0x7FFFFFFF) < statistic_threshold(n - i):
                return d
        return None

    def _numgen(self, *_):
        n = len(self.endpoints)
        if n == 0:
            return None
        return self.endpoints[self.world.rng.u32() * n >> 32]

    def _userspace_rr(self, *_):
        if not self.endpoints:
            return None
        d = self.endpoints[self.us_index]
        self.us_index = (self.us_index + 1) % len(self.endpoints)
        return d

    # ---- connection counters (spec A.3) ---------------------------------------------------
    def bind(self, d):
        d.inact += 1
        if d.u and d.active + d.inact >= d.u:
            d.flags |= OVERLOAD

    def set_active(self, d):
        d.inact -= 1
        d.active += 1

    def set_inactive(self, d):
        d.active -= 1
        d.inact += 1

    def unbind(self, d, was_active):
        if was_active:
            d.active -= 1
        else:
            d.inact -= 1
        total = d.active + d.inact
        if d.l:
            if total < d.l:
                d.flags &= ~OVERLOAD
        elif d.u:
            if total * 4 < d.u * 3:
                d.flags &= ~OVERLOAD
        else:
            d.flags &= ~OVERLOAD


class World:
    """A set of naive Services sharing one random stream and one clock."""

    def __init__(self, seed=0, lb_entries=64, lblcr_expiration=86400.0):
        self.rng = SplitMix64(seed)
        self.now = 0.0
        self.lb_entries = lb_entries
        self.lblcr_expiration = lblcr_expiration


def _gcd(a, b):
    while b:
        a, b = b, a % b
    return a
