"""IPVS schedulers with the Linux kernel's exact semantics, plus the other dataplanes' balancers.

Models spec A.3-A.9 (IPVS: rr, wrr, lc, wlc, sed, nq, dh, sh, mh, twos, lblc, lblcr, fo, ovf),
spec B.1 (iptables ``statistic`` cascade), spec C.2 / B.3 (nftables ``numgen random mod n``) and
spec B.4 (userspace round robin). Every scheduler works on ONE state layout so a simulator can
drive any of them from numba code.

State layout (:class:`SchedState`, a namedtuple of numpy arrays; build it with :func:`new_state`)
----------------------------------------------------------------------------------------------
* Destinations live in a flat pool of ``n_services * max_dests`` slots; slot ``d`` belongs to
  Service ``d // max_dests`` (a global dest id). Per slot: ``addr`` (uint32, host order),
  ``port``, ``weight``, ``last_weight``, ``activeconns``, ``inactconns``, ``persistconns``,
  ``flags`` (``DEST_F_AVAILABLE`` 0x1, ``DEST_F_OVERLOAD`` 0x2), ``u_threshold``,
  ``l_threshold``, ``dest_svc``, ``dest_pos`` (index in the Service's list, -1 = not linked).
* Per Service ``s``: ``sched`` (an index into :data:`SCHEDULERS`), ``sched_flags``
  (``SVC_F_SCHED1`` 0x8 = sh/mh fallback, ``SVC_F_SCHED2`` 0x10 = sh/mh port), ``n_dests`` and
  the destination list in LIST ORDER, newest first (spec A, notation):
  ``dests[s*max_dests : s*max_dests + n_dests[s]]``. ``rr_pos`` (rr: position of the last
  chosen node, -1 = list head), ``wrr_cl/cw/mw/di`` (spec A.5), ``us_index`` (userspace rr),
  ``table[tab_off[s] : tab_off[s] + tab_size[s]]`` (dh/sh/mh lookup tables of dest ids, -1 =
  empty; for statistic/numgen/userspace_rr the compiled endpoint list of length ``tab_len[s]``),
  ``mh_gcd``/``mh_rshift``, and lblc/lblcr caches (chained hash table ``lb_head`` + entry pool
  ``le_*``; allocated only for Services using them).
* Shared: ``rng`` (splitmix64 state, one stream for the whole state), ``now`` (model time in
  seconds, used by lblc/lblcr ``lastuse``/``lastmod``; the caller advances it), ``work``
  (operation counters, indices ``WORK_*``; read with :func:`schedule_work`).

Call protocol (all njit, callable from numba code or Python)
-----------------------------------------------------------
``d = schedule(st, s, caddr, cport, daddr)`` (-1 = no destination, kernel "no destination
available") -> ``bind(st, d)`` (new conn counted in inactconns, overload set per u_threshold,
spec A.3) -> ``set_active(st, d)`` when the TCP handshake completes (ESTABLISHED) /
``set_inactive(st, d)`` when it leaves ESTABLISHED -> ``unbind(st, d, was_active)`` at expiry
(counter decrement, overload cleared per l/u threshold). Each call from another njit function
passes the state as ~350 flattened arguments (~70 ns); hot loops can use the same operations
inlined at numba-IR level instead: ``schedule_inl``, ``bind_inl``, ``set_active_inl``,
``set_inactive_inl``, ``unbind_inl`` (identical semantics, longer compile). Configuration:
``add_dest`` (head insert, scheduler add hook), ``remove_dest`` (unlink, del hook),
``set_weight`` / ``set_thresholds`` (upd hook). Validating Python wrappers: :func:`add_dests`,
:func:`remove_dests`, :func:`update_weight`, :func:`update_thresholds`, :func:`schedule_batch`.

Hashes: dh/sh/lblc multiply by 2654435761 with 32-bit wrap (spec A.6, A.7, A.9); mh uses the
kernel's ``hsiphash`` as built on 64-bit kernels: SipHash-1-3 over one 32-bit little-endian word
(length byte 4), keys ``{k, k}`` with 64-bit words, output truncated to 32 bits
(``lib/siphash.c``, ``BITS_PER_LONG == 64``: "HalfSipHash1-3 actually is SipHash1-3"). 32-bit
kernels use HalfSipHash-1-3 and produce different tables; that variant is not modelled.

Deviations / choices (documented): lblc/lblcr bucket hash follows spec A.9 (multiply & mask;
newer kernels use ``hash_32``, which only changes chain order, i.e. probe counts); lblc
overwrites an existing cache entry in place (spec A.9 "overwrite/create"); the lblc/lblcr entry
pool per Service (``lblc_entries``) and each lblcr set (``lblcr_set_size``) are bounded; a
full pool or set behaves like the kernel's failed ``kmalloc`` (dest used, not cached). A removed
dest's slot is reused for a different <addr, port> only when no fresh slot is left and its
counters are zero (its cache references are then dropped). statistic/numgen/userspace_rr treat
weight 0 as "endpoint not in the rules" and ignore OVERLOAD (those dataplanes have no
thresholds). The statistic match is ``(random_u32 & 0x7FFFFFFF) < lround(2^31 * p)`` with
``p = %0.10f`` of ``1/(n-i)`` (libxt_statistic / xt_statistic; the 10-decimal string is spec B.1).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit

from harness.errors import UserError

SCHEDULERS = (
    "rr", "wrr", "lc", "wlc", "sed", "nq", "dh", "sh", "mh", "twos", "lblc", "lblcr", "fo", "ovf",
    "statistic", "numgen", "userspace_rr",
)
(RR, WRR, LC, WLC, SED, NQ, DH, SH, MH, TWOS, LBLC, LBLCR, FO, OVF,
 STATISTIC, NUMGEN, USERSPACE_RR) = range(len(SCHEDULERS))
IPVS_SCHEDULERS = SCHEDULERS[:14]
O1_SCHEDULERS = ("rr", "wrr", "dh", "sh", "mh", "numgen", "userspace_rr")
"""Schedulers whose decision cost does not grow with the number of destinations (when all are
eligible); the issue-8 speed target applies to them."""

DEST_F_AVAILABLE = 0x0001
DEST_F_OVERLOAD = 0x0002
SVC_F_SCHED1 = 0x0008
SVC_F_SCHED2 = 0x0010
SVC_F_SCHED_SH_FALLBACK = SVC_F_SCHED1
SVC_F_SCHED_SH_PORT = SVC_F_SCHED2
SVC_F_SCHED_MH_FALLBACK = SVC_F_SCHED1
SVC_F_SCHED_MH_PORT = SVC_F_SCHED2

MH_PRIMES = (251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071)
"""Maglev table sizes for ``IP_VS_MH_TAB_INDEX`` 8..17 (spec A.8); default index 12 -> 4093."""
MH_KEY1 = 2654435761
MH_KEY2 = 2654446892
HASH_MULT = 2654435761

WORK_DECISIONS = 0
WORK_SCANNED = 1  # destinations (or compiled rules / set members) examined
WORK_PROBES = 2  # lookup-table slots and cache entries read
WORK_HASHES = 3  # hash-function evaluations
WORK_RANDOM = 4  # random numbers drawn
WORK_FAILED = 5  # decisions that found no destination
WORK_REBUILD = 6  # table slots written / permutation steps during table rebuilds
WORK_NAMES = ("decisions", "scanned", "probes", "hashes", "random", "failed", "rebuild")

# params[] indices (int64 scalars of the state)
P_MAX_DESTS = 0
P_LB_BITS = 1
P_LB_ENTRIES = 2
P_SET_CAP = 3
# fparams[] indices (float64)
F_LBLC_EXPIRATION = 0
F_LBLCR_EXPIRATION = 1

LB_CHECK_EXPIRE_INTERVAL = 60.0
LB_ENTRY_TIMEOUT = 360.0
LB_COUNT_FOR_FULL_EXPIRATION = 30

_hot = njit(cache=True, _nrt=False)
"""Decision-path kernels: compiled without numba's reference counting. They never allocate,
and without NRT a call does not incref/decref the ~50 arrays of the state tuple (which costs
microseconds per call and would dominate every decision)."""
_hot_inline = njit(cache=True, _nrt=False, inline="always")
"""Helpers of the decision path, inlined at numba-IR level into their callers: a call that
passes the state tuple flattens ~50 arrays into ~350 arguments (tens of ns per call)."""

_M32 = np.uint64(0xFFFFFFFF)
_SM_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_SM_M1 = np.uint64(0xBF58476D1CE4E5B9)
_SM_M2 = np.uint64(0x94D049BB133111EB)
_SIP_C0 = np.uint64(0x736F6D6570736575)
_SIP_C1 = np.uint64(0x646F72616E646F6D)
_SIP_C2 = np.uint64(0x6C7967656E657261)
_SIP_C3 = np.uint64(0x7465646279746573)


class SchedState(NamedTuple):
    """Scheduler state for many Services (see the module docstring for the layout)."""

    addr: np.ndarray  # uint32[D]
    port: np.ndarray  # int64[D]
    weight: np.ndarray  # int64[D]
    last_weight: np.ndarray  # int64[D]
    activeconns: np.ndarray  # int64[D]
    inactconns: np.ndarray  # int64[D]
    persistconns: np.ndarray  # int64[D]
    flags: np.ndarray  # int64[D]
    u_threshold: np.ndarray  # int64[D]
    l_threshold: np.ndarray  # int64[D]
    dest_svc: np.ndarray  # int64[D]
    dest_pos: np.ndarray  # int64[D]  -1 = not linked
    dest_used: np.ndarray  # int64[D]  1 once the slot held a destination
    sched: np.ndarray  # int64[S]
    sched_flags: np.ndarray  # int64[S]
    n_dests: np.ndarray  # int64[S]
    dests: np.ndarray  # int64[S*max_dests]  list order, newest first
    rr_pos: np.ndarray  # int64[S]
    us_index: np.ndarray  # int64[S]
    wrr_cl: np.ndarray  # int64[S]  position, -1 = list head
    wrr_cw: np.ndarray  # int64[S]
    wrr_mw: np.ndarray  # int64[S]
    wrr_di: np.ndarray  # int64[S]
    tab_off: np.ndarray  # int64[S]
    tab_size: np.ndarray  # int64[S]
    tab_len: np.ndarray  # int64[S]
    tab_bits: np.ndarray  # int64[S]  mh: IP_VS_MH_TAB_BITS = INDEX / 2
    table: np.ndarray  # int64[T]
    mh_gcd: np.ndarray  # int64[S]
    mh_rshift: np.ndarray  # int64[S]
    lb_off: np.ndarray  # int64[S]  bucket offset, -1 = no cache
    lb_eoff: np.ndarray  # int64[S]  entry-pool offset
    lb_free: np.ndarray  # int64[S]  free-list head (entry id, -1 = pool full)
    lb_count: np.ndarray  # int64[S]  entries in use
    lb_rover: np.ndarray  # int64[S]
    lb_counter: np.ndarray  # int64[S]
    lb_head: np.ndarray  # int64[B]  bucket chain heads (entry ids)
    le_next: np.ndarray  # int64[E]
    le_addr: np.ndarray  # int64[E]
    le_dest: np.ndarray  # int64[E]  lblc: cached dest
    le_lastuse: np.ndarray  # float64[E]
    le_setoff: np.ndarray  # int64[E]  lblcr: offset of the member array, -1 for lblc
    le_setn: np.ndarray  # int64[E]
    le_lastmod: np.ndarray  # float64[E]
    le_set: np.ndarray  # int64[...] lblcr members, newest first
    rng: np.ndarray  # uint64[1]
    now: np.ndarray  # float64[1]
    params: np.ndarray  # int64[4]
    fparams: np.ndarray  # float64[2]
    stat_thr: np.ndarray  # int64[max_dests+1]
    work: np.ndarray  # int64[7]


# --------------------------------------------------------------------------------------------
# primitives: random numbers and hashes


@_hot
def _next_u64(rng):
    rng[0] += _SM_GAMMA
    z = rng[0]
    z = (z ^ (z >> np.uint64(30))) * _SM_M1
    z = (z ^ (z >> np.uint64(27))) * _SM_M2
    return z ^ (z >> np.uint64(31))


@_hot_inline
def _rand_u32(st):
    st.work[WORK_RANDOM] += 1
    return np.int64(_next_u64(st.rng) >> np.uint64(32))


@_hot_inline
def _mul_hash(x, offset, mask):
    """(offset + x * 2654435761) & mask with 32-bit wrap (spec A.6, A.7, A.9)."""
    x = np.uint64(x) & _M32
    h = (np.uint64(offset) + x * np.uint64(HASH_MULT)) & _M32
    return np.int64(h & np.uint64(mask))


@_hot_inline
def _rotl(x, b):
    return (x << np.uint64(b)) | (x >> np.uint64(64 - b))


@_hot_inline
def _sipround(v0, v1, v2, v3):
    v0 += v1
    v1 = _rotl(v1, 13)
    v1 ^= v0
    v0 = _rotl(v0, 32)
    v2 += v3
    v3 = _rotl(v3, 16)
    v3 ^= v2
    v0 += v3
    v3 = _rotl(v3, 21)
    v3 ^= v0
    v2 += v1
    v1 = _rotl(v1, 17)
    v1 ^= v2
    v2 = _rotl(v2, 32)
    return v0, v1, v2, v3


@_hot
def hsiphash_u32(value, k0, k1):
    """Kernel ``hsiphash`` of one u32 on 64-bit Linux (SipHash-1-3, 64-bit key words k0, k1,
    result truncated to 32 bits). ``hsiphash(&v, 4, key)`` == ``hsiphash_1u32(v, key)``."""
    key0 = np.uint64(k0)
    key1 = np.uint64(k1)
    v0 = _SIP_C0 ^ key0
    v1 = _SIP_C1 ^ key1
    v2 = _SIP_C2 ^ key0
    v3 = _SIP_C3 ^ key1
    b = (np.uint64(4) << np.uint64(56)) | (np.uint64(value) & _M32)
    v3 ^= b
    v0, v1, v2, v3 = _sipround(v0, v1, v2, v3)
    v0 ^= b
    v2 ^= np.uint64(0xFF)
    v0, v1, v2, v3 = _sipround(v0, v1, v2, v3)
    v0, v1, v2, v3 = _sipround(v0, v1, v2, v3)
    v0, v1, v2, v3 = _sipround(v0, v1, v2, v3)
    return np.int64((v0 ^ v1 ^ v2 ^ v3) & _M32)


@_hot_inline
def _mh_hashkey(addr, port, key, offset):
    """ip_vs_mh_hashkey: hsiphash of v = offset + port + addr (u32 wrap), key = {key, key}."""
    v = (np.int64(offset) + np.int64(port) + np.int64(addr)) & 0xFFFFFFFF
    return hsiphash_u32(v, key, key)


@_hot_inline
def _gcd(a, b):
    while b != 0:
        a, b = b, a % b
    return a


@_hot_inline
def _fls(x):
    n = 0
    while x > 0:
        n += 1
        x >>= 1
    return n


# --------------------------------------------------------------------------------------------
# eligibility helpers


@_hot_inline
def _overloaded(st, d):
    return (st.flags[d] & DEST_F_OVERLOAD) != 0


@_hot_inline
def _overhead(st, d):
    """ip_vs_dest_conn_overhead = activeconns * 256 + inactconns (spec A.3)."""
    return st.activeconns[d] * 256 + st.inactconns[d]


@_hot_inline
def _hash_unavailable(st, d):
    """sh/mh ``is_unavailable``: weight <= 0 or OVERLOAD (spec A.7, A.8)."""
    return st.weight[d] <= 0 or (st.flags[d] & DEST_F_OVERLOAD) != 0


# --------------------------------------------------------------------------------------------
# list schedulers (spec A.4, A.5)


@_hot_inline
def _sched_rr(st, s):
    base = s * st.params[P_MAX_DESTS]
    n = st.n_dests[s]
    p = st.rr_pos[s]
    scanned = 0
    found = -1
    i = p + 1
    while i < n:
        d = st.dests[base + i]
        scanned += 1
        if (st.flags[d] & DEST_F_OVERLOAD) == 0 and st.weight[d] > 0:
            found = i
            break
        i += 1
    if found < 0 and p >= 0:
        i = 0
        while i <= p and i < n:
            d = st.dests[base + i]
            scanned += 1
            if (st.flags[d] & DEST_F_OVERLOAD) == 0 and st.weight[d] > 0:
                found = i
                break
            i += 1
    st.work[WORK_SCANNED] += scanned
    if found < 0:
        return -1
    st.rr_pos[s] = found
    return st.dests[base + found]


@_hot_inline
def _sched_wrr(st, s):
    base = s * st.params[P_MAX_DESTS]
    n = st.n_dests[s]
    mw = st.wrr_mw[s]
    if mw == 0:
        return -1
    di = st.wrr_di[s]
    cw = st.wrr_cw[s]
    last = st.wrr_cl[s]
    pos = last
    stop = -2
    last_pass = False
    restarted = False
    scanned = 0
    result = -1
    while True:
        pos += 1
        done = False
        while pos < n:
            d = st.dests[base + pos]
            scanned += 1
            if (st.flags[d] & DEST_F_OVERLOAD) == 0 and st.weight[d] >= cw:
                result = d
                done = True
                break
            if pos == stop:
                done = True
                break
            pos += 1
        if done:
            break
        pos = -1
        cw -= di
        if cw <= 0:
            cw = mw
            if last_pass or last == -1:
                break
            restarted = True
        last_pass = cw <= di
        if last_pass and restarted and last != -1:
            stop = last
    st.wrr_cl[s] = pos
    st.wrr_cw[s] = cw
    st.work[WORK_SCANNED] += scanned
    return result


@_hot_inline
def _sched_lc(st, s):
    base = s * st.params[P_MAX_DESTS]
    n = st.n_dests[s]
    least = -1
    loh = 0
    for i in range(n):
        d = st.dests[base + i]
        if (st.flags[d] & DEST_F_OVERLOAD) != 0 or st.weight[d] == 0:
            continue
        doh = _overhead(st, d)
        if least < 0 or doh < loh:
            least = d
            loh = doh
    st.work[WORK_SCANNED] += n
    return least


@_hot_inline
def _wlc_pick(st, s, sed):
    """wlc (sed=False, overhead 256A+I) / sed (sed=True, overhead A+1); lblc/lblcr fallback."""
    base = s * st.params[P_MAX_DESTS]
    n = st.n_dests[s]
    least = -1
    loh = 0
    i = 0
    while i < n:
        d = st.dests[base + i]
        i += 1
        if (st.flags[d] & DEST_F_OVERLOAD) == 0 and st.weight[d] > 0:
            least = d
            loh = st.activeconns[d] + 1 if sed else _overhead(st, d)
            break
    if least >= 0:
        while i < n:
            d = st.dests[base + i]
            i += 1
            if (st.flags[d] & DEST_F_OVERLOAD) != 0:
                continue
            doh = st.activeconns[d] + 1 if sed else _overhead(st, d)
            if loh * st.weight[d] > doh * st.weight[least]:
                least = d
                loh = doh
    st.work[WORK_SCANNED] += i
    return least


@_hot_inline
def _sched_nq(st, s):
    base = s * st.params[P_MAX_DESTS]
    n = st.n_dests[s]
    least = -1
    loh = 0
    scanned = 0
    for i in range(n):
        d = st.dests[base + i]
        scanned += 1
        if (st.flags[d] & DEST_F_OVERLOAD) != 0 or st.weight[d] == 0:
            continue
        doh = st.activeconns[d] + 1
        if st.activeconns[d] == 0:
            least = d
            break
        if least < 0 or loh * st.weight[d] > doh * st.weight[least]:
            least = d
            loh = doh
    st.work[WORK_SCANNED] += scanned
    return least


@_hot_inline
def _sched_fo(st, s):
    base = s * st.params[P_MAX_DESTS]
    n = st.n_dests[s]
    best = -1
    hw = 0
    for i in range(n):
        d = st.dests[base + i]
        if (st.flags[d] & DEST_F_OVERLOAD) == 0 and st.weight[d] > hw:
            best = d
            hw = st.weight[d]
    st.work[WORK_SCANNED] += n
    return best


@_hot_inline
def _sched_ovf(st, s):
    base = s * st.params[P_MAX_DESTS]
    n = st.n_dests[s]
    best = -1
    for i in range(n):
        d = st.dests[base + i]
        w = st.weight[d]
        if (st.flags[d] & DEST_F_OVERLOAD) != 0 or st.activeconns[d] > w or w == 0:
            continue
        if best < 0 or w > st.weight[best]:
            best = d
    st.work[WORK_SCANNED] += n
    return best


@_hot_inline
def _sched_twos(st, s):
    base = s * st.params[P_MAX_DESTS]
    n = st.n_dests[s]
    total = 0
    any_ok = False
    for i in range(n):
        d = st.dests[base + i]
        if (st.flags[d] & DEST_F_OVERLOAD) == 0 and st.weight[d] > 0:
            total += st.weight[d]
            any_ok = True
    st.work[WORK_SCANNED] += n
    if not any_ok:
        return -1
    total += 1
    r1 = _rand_u32(st) % total
    r2 = _rand_u32(st) % total
    c1 = -1
    c2 = -1
    w1 = -1
    w2 = -1
    oh1 = 0
    oh2 = 0
    scanned = 0
    for i in range(n):
        d = st.dests[base + i]
        scanned += 1
        if (st.flags[d] & DEST_F_OVERLOAD) != 0:
            continue
        w = st.weight[d]
        if w <= 0:
            continue
        r1 -= w
        r2 -= w
        if r1 <= 0 and w1 == -1:
            c1 = d
            w1 = w
            oh1 = _overhead(st, d)
        if r2 <= 0 and w2 == -1:
            c2 = d
            w2 = w
            oh2 = _overhead(st, d)
        if w1 != -1 and w2 != -1:
            break
    st.work[WORK_SCANNED] += scanned
    if c2 >= 0 and w2 * oh1 > w1 * oh2:
        return c2
    return c1


# --------------------------------------------------------------------------------------------
# hashing schedulers (spec A.6-A.8)


@_hot_inline
def _sched_dh(st, s, daddr):
    off = st.tab_off[s]
    size = st.tab_size[s]
    h = _mul_hash(daddr, 0, size - 1)
    st.work[WORK_HASHES] += 1
    st.work[WORK_PROBES] += 1
    d = st.table[off + h]
    if d < 0 or (st.flags[d] & DEST_F_AVAILABLE) == 0 or st.weight[d] <= 0:
        return -1
    if (st.flags[d] & DEST_F_OVERLOAD) != 0:
        return -1
    return d


@_hot_inline
def _sched_sh(st, s, caddr, cport):
    off = st.tab_off[s]
    size = st.tab_size[s]
    mask = size - 1
    port = cport if (st.sched_flags[s] & SVC_F_SCHED2) != 0 else 0
    key = (np.int64(port) + np.int64(caddr)) & 0xFFFFFFFF
    ihash = _mul_hash(key, 0, mask)
    st.work[WORK_HASHES] += 1
    st.work[WORK_PROBES] += 1
    d = st.table[off + ihash]
    if (st.sched_flags[s] & SVC_F_SCHED1) == 0:
        if d < 0 or _hash_unavailable(st, d):
            return -1
        return d
    if d < 0:
        return -1
    if not _hash_unavailable(st, d):
        return d
    for k in range(size):
        roff = (k + ihash) % size
        h = _mul_hash(key, roff, mask)
        st.work[WORK_HASHES] += 1
        st.work[WORK_PROBES] += 1
        d = st.table[off + h]
        if d < 0:
            break
        if not _hash_unavailable(st, d):
            return d
    return -1


@_hot_inline
def _sched_mh(st, s, caddr, cport):
    off = st.tab_off[s]
    size = st.tab_size[s]
    port = cport if (st.sched_flags[s] & SVC_F_SCHED2) != 0 else 0
    ihash = _mh_hashkey(caddr, port, MH_KEY1, 0) % size
    st.work[WORK_HASHES] += 1
    st.work[WORK_PROBES] += 1
    d = st.table[off + ihash]
    if (st.sched_flags[s] & SVC_F_SCHED1) == 0:
        if d < 0 or _hash_unavailable(st, d):
            return -1
        return d
    if d < 0:
        return -1
    if not _hash_unavailable(st, d):
        return d
    for k in range(size):
        roff = (k + ihash) % size
        h = _mh_hashkey(caddr, port, MH_KEY1, roff) % size
        st.work[WORK_HASHES] += 1
        st.work[WORK_PROBES] += 1
        d = st.table[off + h]
        if d < 0:
            break
        if not _hash_unavailable(st, d):
            return d
    return -1


@_hot_inline
def _dh_reassign(st, s):
    """ip_vs_dh_reassign: bucket i <- i-th dest cycling through list order (spec A.6)."""
    base = s * st.params[P_MAX_DESTS]
    n = st.n_dests[s]
    off = st.tab_off[s]
    for i in range(st.tab_size[s]):
        st.table[off + i] = -1 if n == 0 else st.dests[base + i % n]
    st.work[WORK_REBUILD] += st.tab_size[s]


@_hot_inline
def _sh_reassign(st, s):
    """ip_vs_sh_reassign: each dest takes max(weight, 1) consecutive buckets, cycling (A.7)."""
    base = s * st.params[P_MAX_DESTS]
    n = st.n_dests[s]
    off = st.tab_off[s]
    i_dest = 0
    count = 0
    for i in range(st.tab_size[s]):
        if n == 0:
            st.table[off + i] = -1
            continue
        d = st.dests[base + i_dest]
        st.table[off + i] = d
        count += 1
        if count >= st.weight[d]:
            i_dest = (i_dest + 1) % n
            count = 0
    st.work[WORK_REBUILD] += st.tab_size[s]


@njit(cache=True)
def _mh_populate_core(offsets, skips, turns, m, out):
    """ip_vs_mh_populate over entries in list order; out[slot] = entry index. Returns the
    number of permutation steps taken (slot tests). Requires sum(turns > 0) >= 1."""
    n = offsets.shape[0]
    perm = offsets.copy()
    taken = np.zeros(m, dtype=np.bool_)
    filled = 0
    steps = 0
    while filled < m:
        i = 0
        dt_count = 0
        while i < n:
            if turns[i] < 1:
                i += 1
                continue
            c = perm[i]
            steps += 1
            while taken[c]:
                perm[i] += skips[i]
                if perm[i] >= m:
                    perm[i] -= m
                c = perm[i]
                steps += 1
            taken[c] = True
            out[c] = i
            filled += 1
            if filled == m:
                return steps
            dt_count += 1
            if dt_count >= turns[i]:
                dt_count = 0
                i += 1
    return steps


@njit(cache=True)
def _mh_reassign(st, s):
    """ip_vs_mh_dest_changed: gcd/rshift over last_weight, permutate, populate (spec A.8)."""
    base = s * st.params[P_MAX_DESTS]
    n = st.n_dests[s]
    off = st.tab_off[s]
    m = st.tab_size[s]
    g = 0
    mw = 0
    for i in range(n):
        lw = st.last_weight[st.dests[base + i]]
        if lw > 0:
            g = _gcd(lw, g) if g > 0 else lw
        if lw > mw:
            mw = lw
    rshift = 0
    if g >= 1:
        rshift = _fls(mw // g) - st.tab_bits[s]
        if rshift < 0:
            rshift = 0
    st.mh_gcd[s] = g
    st.mh_rshift[s] = rshift
    if n > m:
        return  # kernel: -EINVAL, table left as it was
    if g < 1:
        for i in range(m):
            st.table[off + i] = -1
        return
    offsets = np.empty(n, dtype=np.int64)
    skips = np.empty(n, dtype=np.int64)
    turns = np.empty(n, dtype=np.int64)
    for i in range(n):
        d = st.dests[base + i]
        offsets[i] = _mh_hashkey(st.addr[d], st.port[d], MH_KEY1, 0) % m
        skips[i] = _mh_hashkey(st.addr[d], st.port[d], MH_KEY2, 0) % (m - 1) + 1
        lw = st.last_weight[d]
        t = (lw // g) >> rshift
        turns[i] = t if t != 0 else (1 if lw != 0 else 0)
    st.work[WORK_HASHES] += 2 * n
    idx = np.empty(m, dtype=np.int64)
    st.work[WORK_REBUILD] += _mh_populate_core(offsets, skips, turns, m, idx)
    for c in range(m):
        st.table[off + c] = st.dests[base + idx[c]]


# --------------------------------------------------------------------------------------------
# other dataplanes (spec B.1, B.3/C.2, B.4)


@_hot_inline
def _compile_endpoints(st, s):
    """Endpoint list of the statistic / numgen / userspace rules: weight > 0, list order."""
    base = s * st.params[P_MAX_DESTS]
    off = st.tab_off[s]
    k = 0
    for i in range(st.n_dests[s]):
        d = st.dests[base + i]
        if st.weight[d] > 0:
            st.table[off + k] = d
            k += 1
    for i in range(k, st.tab_size[s]):
        st.table[off + i] = -1
    st.tab_len[s] = k
    st.work[WORK_REBUILD] += k


@_hot_inline
def _shuffle_endpoints(st, s):
    """Fisher-Yates shuffle of the compiled list (userspace ShuffleStrings), index reset."""
    off = st.tab_off[s]
    k = st.tab_len[s]
    for i in range(k - 1, 0, -1):
        j = _rand_u32(st) % (i + 1)
        t = st.table[off + i]
        st.table[off + i] = st.table[off + j]
        st.table[off + j] = t
    st.us_index[s] = 0


@_hot_inline
def _sched_statistic(st, s):
    n = st.tab_len[s]
    if n == 0:
        return -1
    off = st.tab_off[s]
    for i in range(n - 1):
        st.work[WORK_SCANNED] += 1
        if (_rand_u32(st) & 0x7FFFFFFF) < st.stat_thr[n - i]:
            return st.table[off + i]
    st.work[WORK_SCANNED] += 1
    return st.table[off + n - 1]


@_hot_inline
def _sched_numgen(st, s):
    n = st.tab_len[s]
    if n == 0:
        return -1
    r = _rand_u32(st)
    st.work[WORK_PROBES] += 1
    return st.table[st.tab_off[s] + ((r * n) >> 32)]


@_hot_inline
def _sched_userspace(st, s):
    n = st.tab_len[s]
    if n == 0:
        return -1
    i = st.us_index[s]
    st.us_index[s] = (i + 1) % n
    st.work[WORK_PROBES] += 1
    return st.table[st.tab_off[s] + i]


# --------------------------------------------------------------------------------------------
# lblc / lblcr (spec A.9)


@_hot_inline
def _lb_is_overloaded(st, s, d):
    """Scheduler-local is_overloaded: A > weight and some dest has 2A < weight."""
    if st.activeconns[d] > st.weight[d]:
        base = s * st.params[P_MAX_DESTS]
        for i in range(st.n_dests[s]):
            dd = st.dests[base + i]
            st.work[WORK_SCANNED] += 1
            if st.activeconns[dd] * 2 < st.weight[dd]:
                return True
    return False


@_hot_inline
def _lb_bucket(st, s, daddr):
    st.work[WORK_HASHES] += 1
    return st.lb_off[s] + _mul_hash(daddr, 0, (1 << st.params[P_LB_BITS]) - 1)


@_hot_inline
def _lb_get(st, s, daddr):
    e = st.lb_head[_lb_bucket(st, s, daddr)]
    while e >= 0:
        st.work[WORK_PROBES] += 1
        if st.le_addr[e] == daddr:
            return e
        e = st.le_next[e]
    return -1


@_hot_inline
def _lb_new_entry(st, s, daddr):
    """Allocate an entry hashed at its bucket head; -1 when the pool is full (kmalloc fail)."""
    e = st.lb_free[s]
    if e < 0:
        return -1
    st.lb_free[s] = st.le_next[e]
    b = _lb_bucket(st, s, daddr)
    st.le_next[e] = st.lb_head[b]
    st.lb_head[b] = e
    st.le_addr[e] = daddr
    st.le_lastuse[e] = st.now[0]
    st.le_setn[e] = 0
    st.le_dest[e] = -1
    st.lb_count[s] += 1
    return e


@_hot_inline
def _lb_free_entry(st, s, b, e):
    prev = -1
    x = st.lb_head[b]
    while x >= 0 and x != e:
        prev = x
        x = st.le_next[x]
    if prev < 0:
        st.lb_head[b] = st.le_next[e]
    else:
        st.le_next[prev] = st.le_next[e]
    st.le_next[e] = st.lb_free[s]
    st.lb_free[s] = e
    st.le_setn[e] = 0
    st.le_dest[e] = -1
    st.lb_count[s] -= 1


@_hot_inline
def _sched_lblc(st, s, daddr):
    e = _lb_get(st, s, daddr)
    if e >= 0:
        st.le_lastuse[e] = st.now[0]
        d = st.le_dest[e]
        if (d >= 0 and (st.flags[d] & DEST_F_AVAILABLE) != 0 and st.weight[d] > 0
                and not _lb_is_overloaded(st, s, d)):
            return d
    d = _wlc_pick(st, s, False)
    if d < 0:
        return -1
    if e < 0:
        e = _lb_new_entry(st, s, daddr)
    if e >= 0:
        st.le_dest[e] = d
    return d


@_hot_inline
def _set_insert(st, e, d, check):
    so = st.le_setoff[e]
    n = st.le_setn[e]
    if check:
        for i in range(n):
            st.work[WORK_SCANNED] += 1
            if st.le_set[so + i] == d:
                return
    if n >= st.params[P_SET_CAP]:
        return  # kernel: element kmalloc failed -> not inserted
    for i in range(n, 0, -1):
        st.le_set[so + i] = st.le_set[so + i - 1]
    st.le_set[so] = d
    st.le_setn[e] = n + 1
    st.le_lastmod[e] = st.now[0]


@_hot_inline
def _set_erase(st, e, d):
    so = st.le_setoff[e]
    n = st.le_setn[e]
    for i in range(n):
        if st.le_set[so + i] == d:
            for j in range(i, n - 1):
                st.le_set[so + j] = st.le_set[so + j + 1]
            st.le_setn[e] = n - 1
            st.le_lastmod[e] = st.now[0]
            return


@_hot_inline
def _set_min(st, e):
    so = st.le_setoff[e]
    n = st.le_setn[e]
    least = -1
    loh = 0
    i = 0
    while i < n:
        d = st.le_set[so + i]
        i += 1
        if (st.flags[d] & DEST_F_OVERLOAD) != 0:
            continue
        if st.weight[d] > 0 and (st.flags[d] & DEST_F_AVAILABLE) != 0:
            least = d
            loh = _overhead(st, d)
            break
    if least >= 0:
        while i < n:
            d = st.le_set[so + i]
            i += 1
            if (st.flags[d] & DEST_F_OVERLOAD) != 0:
                continue
            doh = _overhead(st, d)
            if (loh * st.weight[d] > doh * st.weight[least]
                    and (st.flags[d] & DEST_F_AVAILABLE) != 0):
                least = d
                loh = doh
    st.work[WORK_SCANNED] += i
    return least


@_hot_inline
def _set_max(st, e):
    so = st.le_setoff[e]
    n = st.le_setn[e]
    most = -1
    moh = 0
    i = 0
    while i < n:
        d = st.le_set[so + i]
        i += 1
        if st.weight[d] > 0:
            most = d
            moh = _overhead(st, d)
            break
    if most >= 0:
        while i < n:
            d = st.le_set[so + i]
            i += 1
            doh = _overhead(st, d)
            if moh * st.weight[d] < doh * st.weight[most] and st.weight[d] > 0:
                most = d
                moh = doh
    st.work[WORK_SCANNED] += i
    return most


@_hot_inline
def _sched_lblcr(st, s, daddr):
    e = _lb_get(st, s, daddr)
    if e >= 0:
        st.le_lastuse[e] = st.now[0]
        d = _set_min(st, e)
        if (st.le_setn[e] > 1
                and st.now[0] > st.le_lastmod[e] + st.fparams[F_LBLCR_EXPIRATION]):
            m = _set_max(st, e)
            if m >= 0:
                _set_erase(st, e, m)
        if d >= 0 and not _lb_is_overloaded(st, s, d):
            return d
        d = _wlc_pick(st, s, False)
        if d < 0:
            return -1
        _set_insert(st, e, d, True)
        return d
    d = _wlc_pick(st, s, False)
    if d < 0:
        return -1
    e = _lb_new_entry(st, s, daddr)
    if e >= 0:
        _set_insert(st, e, d, False)
    return d


@_hot
def lblc_check_expire(st, s):
    """One run of the lblc/lblcr GC timer (call every 60 s of model time; spec A.9): every
    30th run a full check drops entries unused for the expiration sysctl, otherwise only when
    entries > 16*buckets, entries idle >= 6 min, up to goal = min((n-max)*4/3, max/2)."""
    if st.lb_off[s] < 0:
        return
    nb = 1 << st.params[P_LB_BITS]
    mask = nb - 1
    max_size = 16 * nb
    now = st.now[0]
    exp = st.fparams[F_LBLCR_EXPIRATION] if st.sched[s] == LBLCR else st.fparams[
        F_LBLC_EXPIRATION]
    full = (st.lb_counter[s] % LB_COUNT_FOR_FULL_EXPIRATION) == 0
    if not full and st.lb_count[s] <= max_size:
        st.lb_counter[s] += 1
        return
    goal = 0
    if not full:
        goal = (st.lb_count[s] - max_size) * 4 // 3
        if goal > max_size // 2:
            goal = max_size // 2
    j = st.lb_rover[s]
    for _ in range(nb):
        j = (j + 1) & mask
        b = st.lb_off[s] + j
        e = st.lb_head[b]
        while e >= 0:
            nxt = st.le_next[e]
            st.work[WORK_PROBES] += 1
            if full:
                expired = not (st.le_lastuse[e] + exp > now)
            else:
                expired = not (now < st.le_lastuse[e] + LB_ENTRY_TIMEOUT)
            if expired:
                _lb_free_entry(st, s, b, e)
                goal -= 1
            e = nxt
        if not full and goal <= 0:
            break
    st.lb_rover[s] = j
    if full:
        st.lb_counter[s] = 1


# --------------------------------------------------------------------------------------------
# public njit operations


@_hot_inline
def _schedule_impl(st, s, caddr, cport, daddr):
    """Body of :func:`schedule` (inlined into batch loops)."""
    k = st.sched[s]
    st.work[WORK_DECISIONS] += 1
    if k == RR:
        d = _sched_rr(st, s)
    elif k == WRR:
        d = _sched_wrr(st, s)
    elif k == LC:
        d = _sched_lc(st, s)
    elif k == WLC:
        d = _wlc_pick(st, s, False)
    elif k == SED:
        d = _wlc_pick(st, s, True)
    elif k == NQ:
        d = _sched_nq(st, s)
    elif k == DH:
        d = _sched_dh(st, s, daddr)
    elif k == SH:
        d = _sched_sh(st, s, caddr, cport)
    elif k == MH:
        d = _sched_mh(st, s, caddr, cport)
    elif k == TWOS:
        d = _sched_twos(st, s)
    elif k == LBLC:
        d = _sched_lblc(st, s, daddr)
    elif k == LBLCR:
        d = _sched_lblcr(st, s, daddr)
    elif k == FO:
        d = _sched_fo(st, s)
    elif k == OVF:
        d = _sched_ovf(st, s)
    elif k == STATISTIC:
        d = _sched_statistic(st, s)
    elif k == NUMGEN:
        d = _sched_numgen(st, s)
    else:
        d = _sched_userspace(st, s)
    if d < 0:
        st.work[WORK_FAILED] += 1
    return d


@_hot
def schedule(st, s, caddr, cport, daddr):
    """Pick a destination for a new connection of Service ``s`` (spec A.4-A.9, B.1, B.3, B.4).

    caddr/cport: client address (host-order u32) and source port (sh/mh); daddr: the packet's
    destination address (dh, lblc, lblcr). Returns a global dest id or -1 (no destination)."""
    return _schedule_impl(st, s, caddr, cport, daddr)


@_hot_inline
def _wrr_dest_changed(st, s):
    """ip_vs_wrr_dest_changed (spec A.5)."""
    base = s * st.params[P_MAX_DESTS]
    g = 0
    mx = 0
    for i in range(st.n_dests[s]):
        w = st.weight[st.dests[base + i]]
        if w > 0:
            g = _gcd(w, g) if g > 0 else w
        if w > mx:
            mx = w
    di = g if g > 0 else 1
    st.wrr_cl[s] = -1
    st.wrr_di[s] = di
    mw = mx - (di - 1)
    st.wrr_mw[s] = mw
    cw = st.wrr_cw[s]
    if cw > mw or cw == 0:
        st.wrr_cw[s] = mw
    elif di > 1:
        st.wrr_cw[s] = (cw // di) * di + 1


@njit(cache=True)
def _dest_changed(st, s, eligible_changed):
    """Scheduler add/del/upd hooks: table rebuilds and pointer resets."""
    k = st.sched[s]
    if k == WRR:
        _wrr_dest_changed(st, s)
    elif k == DH:
        _dh_reassign(st, s)
    elif k == SH:
        _sh_reassign(st, s)
    elif k == MH:
        _mh_reassign(st, s)
    elif k == STATISTIC or k == NUMGEN:
        _compile_endpoints(st, s)
    elif k == USERSPACE_RR and eligible_changed:
        _compile_endpoints(st, s)
        _shuffle_endpoints(st, s)


@njit(cache=True)
def _scrub_lb_refs(st, s, d):
    """Forget cache references to a trash slot that is about to be reused for another dest."""
    if st.lb_off[s] < 0:
        return
    e0 = st.lb_eoff[s]
    for e in range(e0, e0 + st.params[P_LB_ENTRIES]):
        if st.le_dest[e] == d:
            st.le_dest[e] = -1
        if st.le_setoff[e] >= 0:
            _set_erase(st, e, d)


@njit(cache=True)
def add_dest(st, s, addr, port, weight):
    """Add a destination to Service s at the list HEAD (spec A, A.10); returns its global id,
    -1 when the Service is full, -2 when <addr, port> is already linked. A removed dest with
    the same <addr, port> still in the trash is revived with its counters (spec A.10)."""
    cap = st.params[P_MAX_DESTS]
    base = s * cap
    n = st.n_dests[s]
    d = -1
    fresh = -1
    reuse = -1
    for slot in range(base, base + cap):
        if st.dest_used[slot] == 0:
            if fresh < 0:
                fresh = slot
            continue
        if st.addr[slot] == addr and st.port[slot] == port:
            if st.dest_pos[slot] >= 0:
                return -2
            d = slot
        elif (reuse < 0 and st.dest_pos[slot] < 0 and st.activeconns[slot] == 0
              and st.inactconns[slot] == 0 and st.persistconns[slot] == 0):
            reuse = slot
    if n >= cap:
        return -1
    if d < 0:
        d = fresh if fresh >= 0 else reuse
        if d < 0:
            return -1
        if fresh < 0:
            _scrub_lb_refs(st, s, d)
        st.activeconns[d] = 0
        st.inactconns[d] = 0
        st.persistconns[d] = 0
        st.addr[d] = addr
        st.port[d] = port
    st.dest_used[d] = 1
    st.dest_svc[d] = s
    st.weight[d] = weight
    st.last_weight[d] = weight
    st.u_threshold[d] = 0
    st.l_threshold[d] = 0
    st.flags[d] = DEST_F_AVAILABLE
    for i in range(n, 0, -1):
        x = st.dests[base + i - 1]
        st.dests[base + i] = x
        st.dest_pos[x] = i
    st.dests[base] = d
    st.dest_pos[d] = 0
    st.n_dests[s] = n + 1
    if st.rr_pos[s] >= 0:
        st.rr_pos[s] += 1
    if st.wrr_cl[s] >= 0:
        st.wrr_cl[s] += 1
    _dest_changed(st, s, weight > 0)
    return d


@njit(cache=True)
def remove_dest(st, s, d):
    """Unlink dest d from Service s (spec A.10): AVAILABLE cleared, counters kept (trash);
    rr pointer moves to the previous node (spec A.4); tables rebuilt. Returns 0 or -1."""
    if d < 0 or d >= st.dest_pos.shape[0] or st.dest_svc[d] != s:
        return -1
    p = st.dest_pos[d]
    if p < 0:
        return -1
    base = s * st.params[P_MAX_DESTS]
    n = st.n_dests[s]
    for i in range(p, n - 1):
        x = st.dests[base + i + 1]
        st.dests[base + i] = x
        st.dest_pos[x] = i
    st.dests[base + n - 1] = -1
    st.n_dests[s] = n - 1
    st.dest_pos[d] = -1
    st.flags[d] &= ~DEST_F_AVAILABLE
    if st.rr_pos[s] == p:
        st.rr_pos[s] = p - 1
    elif st.rr_pos[s] > p:
        st.rr_pos[s] -= 1
    if st.wrr_cl[s] == p:
        st.wrr_cl[s] = p - 1
    elif st.wrr_cl[s] > p:
        st.wrr_cl[s] -= 1
    _dest_changed(st, s, st.weight[d] > 0)
    return 0


@njit(cache=True)
def set_weight(st, s, d, w):
    """Edit a dest's weight (spec A.3: last_weight follows non-zero weights) + upd hook."""
    old = st.weight[d]
    st.weight[d] = w
    if w != 0:
        st.last_weight[d] = w
    _dest_changed(st, s, (old > 0) != (w > 0))


@njit(cache=True)
def set_thresholds(st, s, d, u, lo):
    """Edit upper/lower connection thresholds; OVERLOAD is cleared when the new u is 0 or
    larger than before (spec A.3, __ip_vs_update_dest), then the upd hook runs."""
    if u == 0 or u > st.u_threshold[d]:
        st.flags[d] &= ~DEST_F_OVERLOAD
    st.u_threshold[d] = u
    st.l_threshold[d] = lo
    _dest_changed(st, s, np.bool_(False))


@_hot_inline
def _bind_impl(st, d):
    st.inactconns[d] += 1
    u = st.u_threshold[d]
    if u != 0 and st.activeconns[d] + st.inactconns[d] >= u:
        st.flags[d] |= DEST_F_OVERLOAD


@_hot
def bind(st, d):
    """ip_vs_bind_dest for a new non-template conn: inactconns++, OVERLOAD when u_threshold
    != 0 and active + inactive >= u_threshold (spec A.3)."""
    _bind_impl(st, d)


@_hot_inline
def _set_active_impl(st, d):
    st.inactconns[d] -= 1
    st.activeconns[d] += 1


@_hot
def set_active(st, d):
    """TCP state became ESTABLISHED: inactconns--, activeconns++ (spec A.3)."""
    _set_active_impl(st, d)


@_hot_inline
def _set_inactive_impl(st, d):
    st.activeconns[d] -= 1
    st.inactconns[d] += 1


@_hot
def set_inactive(st, d):
    """TCP state left ESTABLISHED: activeconns--, inactconns++ (spec A.3)."""
    _set_inactive_impl(st, d)


@_hot_inline
def _clear_overload(st, d):
    total = st.activeconns[d] + st.inactconns[d]
    if st.l_threshold[d] != 0:
        if total < st.l_threshold[d]:
            st.flags[d] &= ~DEST_F_OVERLOAD
    elif st.u_threshold[d] != 0:
        if total * 4 < st.u_threshold[d] * 3:
            st.flags[d] &= ~DEST_F_OVERLOAD
    else:
        st.flags[d] &= ~DEST_F_OVERLOAD


@_hot_inline
def _unbind_impl(st, d, was_active):
    if was_active:
        st.activeconns[d] -= 1
    else:
        st.inactconns[d] -= 1
    _clear_overload(st, d)


@_hot
def unbind(st, d, was_active):
    """ip_vs_unbind_dest at conn expiry: decrement the matching counter, clear OVERLOAD below
    l_threshold, else below 3/4 of u_threshold, else always (spec A.3)."""
    _unbind_impl(st, d, was_active)


@_hot
def bind_template(st, d):
    """Persistence template bound to d: persistconns++ (spec A.3), overload rule as bind."""
    st.persistconns[d] += 1
    u = st.u_threshold[d]
    if u != 0 and st.activeconns[d] + st.inactconns[d] >= u:
        st.flags[d] |= DEST_F_OVERLOAD


@_hot
def unbind_template(st, d):
    """Template expired: persistconns--, overload clear rule as unbind."""
    st.persistconns[d] -= 1
    _clear_overload(st, d)


@_hot
def _schedule_batch(st, svc, caddr, cport, daddr, out, do_bind):
    """K decisions in one call (the scheduler body is inlined: no per-decision call)."""
    for i in range(svc.shape[0]):
        d = _schedule_impl(st, svc[i], caddr[i], cport[i], daddr[i])
        out[i] = d
        if do_bind and d >= 0:
            _bind_impl(st, d)


schedule_inl = _schedule_impl
bind_inl = _bind_impl
set_active_inl = _set_active_impl
set_inactive_inl = _set_inactive_impl
unbind_inl = _unbind_impl


@njit(cache=True)
def maglev_populate_kernel(offsets, skips, turns, m):
    """Standalone Maglev populate (ip_vs_mh_populate) for explicit permutations."""
    out = np.full(m, -1, dtype=np.int64)
    _mh_populate_core(offsets, skips, turns, m, out)
    return out


@njit(cache=True)
def _mh_permutation_params(addrs, ports, m):
    n = addrs.shape[0]
    offsets = np.empty(n, dtype=np.int64)
    skips = np.empty(n, dtype=np.int64)
    for i in range(n):
        offsets[i] = _mh_hashkey(addrs[i], ports[i], MH_KEY1, 0) % m
        skips[i] = _mh_hashkey(addrs[i], ports[i], MH_KEY2, 0) % (m - 1) + 1
    return offsets, skips


@njit(cache=True)
def _warm(st):
    # np.int64()/np.bool_() keep constants from being typed as literals: a literal argument
    # would compile (and cache) a specialization of each kernel that no other caller uses
    port = np.int64(8080)
    for s in range(st.sched.shape[0]):
        d = add_dest(st, s, np.int64(167772161 + s), port, np.int64(1))
        add_dest(st, s, np.int64(167772162 + s), port, np.int64(2))
        set_weight(st, s, d, np.int64(3))
        x = schedule(st, s, np.int64(3232235777), np.int64(40000), np.int64(167837697))
        if x >= 0:
            bind(st, x)
            set_active(st, x)
            set_inactive(st, x)
            unbind(st, x, np.bool_(False))
        set_thresholds(st, s, d, np.int64(4), np.int64(2))
        remove_dest(st, s, d)
        lblc_check_expire(st, s)


# --------------------------------------------------------------------------------------------
# Python API with input validation


def sched_id(name: str) -> int:
    """Index of a scheduler name in :data:`SCHEDULERS`."""
    if name not in SCHEDULERS:
        raise UserError(f"scheduler: name: expected one of {', '.join(SCHEDULERS)}, got {name!r}")
    return SCHEDULERS.index(name)


def statistic_thresholds(max_n: int) -> np.ndarray:
    """thr[k] = lround(2^31 * p_k), p_k = float("%0.10f" % (1/k)) (spec B.1 computeProbability,
    libxt_statistic); thr[0] unused."""
    thr = np.zeros(max_n + 1, dtype=np.int64)
    for k in range(1, max_n + 1):
        p = float(f"{1.0 / k:0.10f}")
        thr[k] = int(math.floor(0x80000000 * p + 0.5))
    return thr


def _check_int(name: str, value, lo: int, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise UserError(f"schedulers: {name}: expected an integer, got {value!r}")
    v = int(value)
    if v < lo or (hi is not None and v > hi):
        rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise UserError(f"schedulers: {name}: expected an integer {rng}, got {v}")
    return v


def new_state(
    n_services: int,
    max_dests: int,
    sched: str | int | np.ndarray | list = "rr",
    flags: int | np.ndarray | list = 0,
    *,
    mh_table_size: int = 4093,
    sh_bits: int = 8,
    dh_bits: int = 8,
    lblc_bits: int = 10,
    lblc_entries: int = 16,
    lblcr_set_size: int = 32,
    lblc_expiration: float = 86400.0,
    lblcr_expiration: float = 86400.0,
    seed: int = 0,
) -> SchedState:
    """Allocate scheduler state for ``n_services`` Services of up to ``max_dests`` dests each.

    sched: one name / id for all Services or an array of ids (or names); flags: sched flags
    (SVC_F_SCHED1 fallback, SVC_F_SCHED2 port) for all or per Service. mh_table_size: a prime
    from :data:`MH_PRIMES` (spec A.8, default 4093); sh_bits 4..20 (spec A.7); dh_bits (spec
    A.6, 8); lblc_bits (spec A.9, 10 -> 1024 buckets); lblc_entries: cache entries per
    lblc/lblcr Service (under kube-proxy every packet of a Service carries its VIP, so one entry
    is used); lblcr_set_size: members per lblcr set (capped at max_dests); a full pool or set
    behaves like the kernel's failed kmalloc (dest used, not cached); expirations in seconds
    (sysctl default 24 h); seed: PRNG seed."""
    n_services = _check_int("n_services", n_services, 1)
    max_dests = _check_int("max_dests", max_dests, 1)
    if isinstance(sched, (str, int, np.integer)):
        sched_ids = np.full(n_services, sched_id(sched) if isinstance(sched, str) else int(sched))
    else:
        sched_ids = np.array([sched_id(x) if isinstance(x, str) else int(x) for x in sched])
    sched_ids = sched_ids.astype(np.int64)
    if sched_ids.shape != (n_services,):
        raise UserError(f"schedulers: sched: expected {n_services} entries, got {sched_ids.size}")
    if sched_ids.size and (sched_ids.min() < 0 or sched_ids.max() >= len(SCHEDULERS)):
        raise UserError(f"schedulers: sched: expected ids in [0, {len(SCHEDULERS) - 1}], "
                        f"got {sched_ids.min()}..{sched_ids.max()}")
    flag_arr = np.broadcast_to(np.asarray(flags, dtype=np.int64), (n_services,)).copy()
    if ((flag_arr & ~(SVC_F_SCHED1 | SVC_F_SCHED2)) != 0).any():
        raise UserError("schedulers: flags: expected a combination of 0x8 (SCHED1) and 0x10 "
                        f"(SCHED2), got {flag_arr.max():#x}")
    if mh_table_size not in MH_PRIMES:
        raise UserError(f"schedulers: mh_table_size: expected one of {MH_PRIMES}, "
                        f"got {mh_table_size!r}")
    sh_bits = _check_int("sh_bits", sh_bits, 4, 20)
    dh_bits = _check_int("dh_bits", dh_bits, 1, 20)
    lblc_bits = _check_int("lblc_bits", lblc_bits, 1, 20)
    lblc_entries = _check_int("lblc_entries", lblc_entries, 1)
    set_cap = min(_check_int("lblcr_set_size", lblcr_set_size, 1), max_dests)
    seed = _check_int("seed", seed, 0)
    for nm, v in (("lblc_expiration", lblc_expiration), ("lblcr_expiration", lblcr_expiration)):
        if not (isinstance(v, (int, float)) and v >= 0):
            raise UserError(f"schedulers: {nm}: expected seconds >= 0, got {v!r}")
    if ((sched_ids == MH) & (max_dests > mh_table_size)).any():
        raise UserError(f"schedulers: max_dests: expected <= mh_table_size ({mh_table_size}) "
                        f"for mh, got {max_dests}")

    S, D = n_services, n_services * max_dests
    sizes = np.zeros(S, dtype=np.int64)
    sizes[sched_ids == DH] = 1 << dh_bits
    sizes[sched_ids == SH] = 1 << sh_bits
    sizes[sched_ids == MH] = mh_table_size
    for k in (STATISTIC, NUMGEN, USERSPACE_RR):
        sizes[sched_ids == k] = max_dests
    tab_off = np.zeros(S, dtype=np.int64)
    tab_off[1:] = np.cumsum(sizes)[:-1]
    mh_bits = (8 + MH_PRIMES.index(mh_table_size)) // 2

    is_lb = (sched_ids == LBLC) | (sched_ids == LBLCR)
    n_lb = int(is_lb.sum())
    lb_off = np.full(S, -1, dtype=np.int64)
    lb_eoff = np.full(S, -1, dtype=np.int64)
    lb_free = np.full(S, -1, dtype=np.int64)
    lb_idx = np.flatnonzero(is_lb)
    lb_off[lb_idx] = np.arange(n_lb, dtype=np.int64) << lblc_bits
    lb_eoff[lb_idx] = np.arange(n_lb, dtype=np.int64) * lblc_entries
    lb_free[lb_idx] = lb_eoff[lb_idx]
    E = n_lb * lblc_entries
    le_next = np.full(E, -1, dtype=np.int64)
    le_setoff = np.full(E, -1, dtype=np.int64)
    n_set = 0
    for s in lb_idx:
        e0 = lb_eoff[s]
        le_next[e0:e0 + lblc_entries - 1] = np.arange(e0 + 1, e0 + lblc_entries)
        if sched_ids[s] == LBLCR:
            le_setoff[e0:e0 + lblc_entries] = n_set + np.arange(lblc_entries) * set_cap
            n_set += lblc_entries * set_cap

    st = SchedState(
        addr=np.zeros(D, dtype=np.uint32),
        port=np.zeros(D, dtype=np.int64),
        weight=np.zeros(D, dtype=np.int64),
        last_weight=np.zeros(D, dtype=np.int64),
        activeconns=np.zeros(D, dtype=np.int64),
        inactconns=np.zeros(D, dtype=np.int64),
        persistconns=np.zeros(D, dtype=np.int64),
        flags=np.zeros(D, dtype=np.int64),
        u_threshold=np.zeros(D, dtype=np.int64),
        l_threshold=np.zeros(D, dtype=np.int64),
        dest_svc=np.repeat(np.arange(S, dtype=np.int64), max_dests),
        dest_pos=np.full(D, -1, dtype=np.int64),
        dest_used=np.zeros(D, dtype=np.int64),
        sched=sched_ids,
        sched_flags=flag_arr,
        n_dests=np.zeros(S, dtype=np.int64),
        dests=np.full(D, -1, dtype=np.int64),
        rr_pos=np.full(S, -1, dtype=np.int64),
        us_index=np.zeros(S, dtype=np.int64),
        wrr_cl=np.full(S, -1, dtype=np.int64),
        wrr_cw=np.zeros(S, dtype=np.int64),
        wrr_mw=np.zeros(S, dtype=np.int64),
        wrr_di=np.ones(S, dtype=np.int64),
        tab_off=tab_off,
        tab_size=sizes,
        tab_len=np.zeros(S, dtype=np.int64),
        tab_bits=np.full(S, mh_bits, dtype=np.int64),
        table=np.full(int(sizes.sum()), -1, dtype=np.int64),
        mh_gcd=np.zeros(S, dtype=np.int64),
        mh_rshift=np.zeros(S, dtype=np.int64),
        lb_off=lb_off,
        lb_eoff=lb_eoff,
        lb_free=lb_free,
        lb_count=np.zeros(S, dtype=np.int64),
        lb_rover=np.zeros(S, dtype=np.int64),
        lb_counter=np.ones(S, dtype=np.int64),
        lb_head=np.full(n_lb << lblc_bits, -1, dtype=np.int64),
        le_next=le_next,
        le_addr=np.full(E, -1, dtype=np.int64),
        le_dest=np.full(E, -1, dtype=np.int64),
        le_lastuse=np.zeros(E, dtype=np.float64),
        le_setoff=le_setoff,
        le_setn=np.zeros(E, dtype=np.int64),
        le_lastmod=np.zeros(E, dtype=np.float64),
        le_set=np.full(n_set, -1, dtype=np.int64),
        rng=np.array([seed], dtype=np.uint64),
        now=np.zeros(1, dtype=np.float64),
        params=np.array([max_dests, lblc_bits, lblc_entries, set_cap], dtype=np.int64),
        fparams=np.array([lblc_expiration, lblcr_expiration], dtype=np.float64),
        stat_thr=statistic_thresholds(max_dests),
        work=np.zeros(len(WORK_NAMES), dtype=np.int64),
    )
    return st


def _check_svc(st: SchedState, s) -> int:
    return _check_int("service", s, 0, st.sched.shape[0] - 1)


def add_dests(st: SchedState, s: int, addrs, ports=None, weights=None) -> np.ndarray:
    """Add destinations to Service s one by one in the given order (each goes to the list
    head, so the list ends up in reverse order). ports default 80, weights default 1 (as
    kube-proxy sets, spec B.2). Returns the global dest ids."""
    s = _check_svc(st, s)
    addrs = np.atleast_1d(np.asarray(addrs, dtype=np.int64))
    n = addrs.shape[0]
    ports = np.full(n, 80, dtype=np.int64) if ports is None else np.broadcast_to(
        np.asarray(ports, dtype=np.int64), (n,))
    weights = np.ones(n, dtype=np.int64) if weights is None else np.broadcast_to(
        np.asarray(weights, dtype=np.int64), (n,))
    if n and (addrs.min() < 0 or addrs.max() > 0xFFFFFFFF):
        raise UserError("schedulers: addrs: expected host-order IPv4 addresses in [0, 2^32)")
    if n and (ports.min() < 0 or ports.max() > 65535):
        raise UserError("schedulers: ports: expected ports in [0, 65535]")
    if n and (weights.min() < 0 or weights.max() > 2**31 - 1):
        raise UserError("schedulers: weights: expected weights in [0, 2^31)")
    cap = int(st.params[P_MAX_DESTS])
    if st.sched[s] == MH and int(st.n_dests[s]) + n > st.tab_size[s]:
        raise UserError(f"schedulers: dests: expected at most {st.tab_size[s]} mh dests "
                        f"(table size), got {int(st.n_dests[s]) + n}")
    out = np.empty(n, dtype=np.int64)
    for i in range(n):
        d = add_dest(st, s, int(addrs[i]), int(ports[i]), int(weights[i]))
        if d == -1:
            raise UserError(f"schedulers: dests: expected at most {cap} per service "
                            f"(max_dests), got more for service {s}")
        if d == -2:
            raise UserError(f"schedulers: dests: expected unique addr:port, got "
                            f"{addrs[i]}:{ports[i]} twice in service {s}")
        out[i] = d
    return out


def _check_linked(st: SchedState, s: int, d) -> int:
    d = _check_int("dest", d, 0, st.dest_pos.shape[0] - 1)
    if st.dest_svc[d] != s or st.dest_pos[d] < 0:
        raise UserError(f"schedulers: dest: expected a dest linked to service {s}, got {d}")
    return d


def remove_dests(st: SchedState, s: int, ds) -> None:
    """Remove (unlink) destinations of Service s."""
    s = _check_svc(st, s)
    for d in np.atleast_1d(ds):
        remove_dest(st, s, _check_linked(st, s, d))


def update_weight(st: SchedState, s: int, d: int, w: int) -> None:
    """Set a linked dest's weight (>= 0)."""
    s = _check_svc(st, s)
    d = _check_linked(st, s, d)
    set_weight(st, s, d, _check_int("weight", w, 0, 2**31 - 1))


def update_thresholds(st: SchedState, s: int, d: int, u: int, lo: int) -> None:
    """Set a linked dest's upper/lower thresholds (0 = none; kernel requires lo <= u)."""
    s = _check_svc(st, s)
    d = _check_linked(st, s, d)
    u = _check_int("u_threshold", u, 0, 2**31 - 1)
    lo = _check_int("l_threshold", lo, 0, 2**31 - 1)
    if u and lo > u:
        raise UserError(f"schedulers: l_threshold: expected <= u_threshold ({u}), got {lo}")
    set_thresholds(st, s, d, u, lo)


def schedule_batch(st: SchedState, svc, caddr=0, cport=0, daddr=0, *, bind_conns=False
                   ) -> np.ndarray:
    """Schedule a batch of new connections (arrays broadcast to svc's length); returns dest ids
    (-1 = none). bind_conns=True also binds each scheduled conn (inactconns++)."""
    # writable C-contiguous int64 inputs whatever the caller passes (read-only views, other
    # dtypes): one compiled signature of the kernel instead of one per flag combination
    svc = np.require(np.atleast_1d(np.asarray(svc, dtype=np.int64)), requirements=("C", "W"))
    n = svc.shape[0]
    if n and (svc.min() < 0 or svc.max() >= st.sched.shape[0]):
        raise UserError(f"schedulers: svc: expected ids in [0, {st.sched.shape[0] - 1}]")
    arrs = []
    for nm, a, hi in (("caddr", caddr, 0xFFFFFFFF), ("cport", cport, 65535),
                      ("daddr", daddr, 0xFFFFFFFF)):
        a = np.require(np.broadcast_to(np.asarray(a, dtype=np.int64), (n,)),
                       requirements=("C", "W"))
        if n and (a.min() < 0 or a.max() > hi):
            raise UserError(f"schedulers: {nm}: expected values in [0, {hi}]")
        arrs.append(a)
    out = np.empty(n, dtype=np.int64)
    _schedule_batch(st, svc, arrs[0], arrs[1], arrs[2], out, bool(bind_conns))
    return out


def service_dests(st: SchedState, s: int) -> np.ndarray:
    """Global dest ids of Service s in list order (newest first)."""
    s = _check_svc(st, s)
    base = s * int(st.params[P_MAX_DESTS])
    return st.dests[base: base + int(st.n_dests[s])].copy()


def schedule_work(st: SchedState) -> dict[str, int]:
    """Operation counters accumulated since the state was made (or :func:`reset_work`)."""
    return {name: int(v) for name, v in zip(WORK_NAMES, st.work, strict=True)}


def reset_work(st: SchedState) -> None:
    st.work[:] = 0


def set_time(st: SchedState, t: float) -> None:
    """Advance model time (seconds) used by lblc/lblcr lastuse/lastmod and GC."""
    st.now[0] = float(t)


def maglev_populate(offsets, skips, turns=None, m: int | None = None) -> np.ndarray:
    """Maglev populate (ip_vs_mh_populate, spec A.8) for explicit per-dest offset/skip/turns in
    list order; M may be any prime (validation cases 9, 10). Returns table[M] of entry indices."""
    offsets = np.asarray(offsets, dtype=np.int64)
    skips = np.asarray(skips, dtype=np.int64)
    n = offsets.shape[0]
    turns = np.ones(n, dtype=np.int64) if turns is None else np.asarray(turns, dtype=np.int64)
    if m is None or isinstance(m, bool) or int(m) < 2:
        raise UserError(f"maglev: M: expected a prime >= 2, got {m!r}")
    m = int(m)
    if any(m % p == 0 for p in range(2, int(math.isqrt(m)) + 1)):
        raise UserError(f"maglev: M: expected a prime, got {m}")
    if skips.shape != (n,) or turns.shape != (n,):
        raise UserError("maglev: skips/turns: expected one per offset")
    if n == 0 or not (turns > 0).any():
        raise UserError("maglev: turns: expected at least one dest with turns >= 1")
    if n > m:
        raise UserError(f"maglev: dests: expected at most M={m}, got {n}")
    if offsets.min() < 0 or offsets.max() >= m or skips.min() < 1 or skips.max() >= m:
        raise UserError("maglev: offset/skip: expected 0 <= offset < M and 1 <= skip < M")
    return maglev_populate_kernel(offsets, skips, turns, m)


def maglev_permutation(addrs, ports, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Kernel mh offsets and skips for dests <addr, port> with table size m (spec A.8)."""
    addrs = np.asarray(addrs, dtype=np.int64)
    ports = np.asarray(ports, dtype=np.int64)
    return _mh_permutation_params(addrs, ports, int(m))


def warmup() -> None:
    """Compile every kernel on a tiny state (once per process)."""
    st = new_state(len(SCHEDULERS), 4, np.arange(len(SCHEDULERS)), mh_table_size=251, sh_bits=4,
                   lblc_bits=2, lblc_entries=2)
    _warm(st)
    schedule_batch(st, np.zeros(1, dtype=np.int64))
    schedule_batch(st, np.zeros(1, dtype=np.int64), bind_conns=True)
    maglev_populate_kernel(np.zeros(1, dtype=np.int64), np.ones(1, dtype=np.int64),
                           np.ones(1, dtype=np.int64), 7)
    maglev_permutation(np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64), 7)
