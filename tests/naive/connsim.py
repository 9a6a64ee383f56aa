"""Plain-Python reference of kernels/connsim.py: the same event semantics with heapq and objects.

Scheduling decisions and IPVS counters go through the same kernels.schedulers API (called from
Python), so a kernel run and this run must agree event by event. Slow; small scenarios only.

Time integrals are computed independently of the kernel's per-backend bookkeeping: before each
event every backend's state (activeconns, busy workers, pod alive) is integrated over the gap
since the previous event, clipped to the window [t_lo, t_hi] (``area``) and split over the
series bins [k·bin_s, (k+1)·bin_s) (``series``). The backlog is the unfinished work at t_hi.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field

import numpy as np

from kernels import connsim as K
from kernels import schedulers as S


@dataclass
class Integrals:
    area: np.ndarray  # [3, B]: ∫activeconns, ∫busy workers, ∫pod alive over the window
    work: np.ndarray  # Σ work of connections bound in the window (to a live pod)
    work2: np.ndarray
    series: np.ndarray  # [bins, k] time-averaged activeconns per bin
    backlog: np.ndarray  # unfinished work at t_hi


@dataclass
class Conn:
    state: int = K.CS_NEW
    phase: int = K.PH_NONE
    backend: int = -1
    dest: int = -1
    req: int = 0
    t_req: float = 0.0
    first: float = 0.0
    wait: float = 0.0
    sojourn: float = math.nan
    t_done: float = 0.0


@dataclass
class Backend:
    dest: int = -1
    alive: bool = False
    pending: bool = False
    in_sched: bool = False
    busy: int = 0
    queue: list = field(default_factory=list)
    act: int = 0
    inact: int = 0
    conns: int = 0


def simulate(w, be: K.Backends, scheduler: str, churn: K.Churn, *, seed=0, handshake_s=0.0005,
             close_rtt_s=0.0005, fin_wait_timeout_s=120.0, time_wait_timeout_s=120.0,
             close_timeout_s=10.0, grace_s=30.0, detect_s=1.0, check_interval_s=60.0,
             graceful=None, warmup_frac=0.1, mh_table_size=4093, n_bins=0, series_backends=0,
             integrals=None):
    """Returns (log of (t, kind, id) per processed event, conns, backends, req_resp, stats).
    Pass ``integrals=[]`` to get an :class:`Integrals` appended to it. With ``n_bins`` the
    kernel also processes sample events; they are not in this log."""
    n = len(w.arrival)
    n_svc = int(be.service.max()) + 1
    per = np.bincount(be.service, minlength=n_svc)
    flags = S.SVC_F_SCHED_MH_PORT if scheduler == "mh" else 0
    st = S.new_state(n_svc, int(per.max()), scheduler, flags, mh_table_size=mh_table_size,
                     seed=seed)
    if graceful is None:
        graceful = scheduler in S.IPVS_SCHEDULERS
    t_lo = float(w.arrival[int(warmup_frac * n)])
    t_hi = float(w.arrival[-1])
    vip = [K.VIP_BASE + s for s in range(n_svc)]
    conns = [Conn() for _ in range(n)]
    bes = [Backend() for _ in range(len(be.service))]
    d2b = {}
    req_resp = [math.nan] * len(w.req_size)
    stats = {"broken": 0, "refused": 0, "dropped": 0, "live_at_churn": 0}
    heap = []
    seq = [0]
    log = []
    nb = len(be.service)
    c_work = np.add.reduceat(w.req_size, w.req_ptr[:-1])
    area = np.zeros((3, nb))
    work = np.zeros(nb)
    work2 = np.zeros(nb)
    bin_s = t_hi / n_bins if n_bins > 0 else 1.0
    k_series = min(series_backends, nb)
    series = np.zeros((n_bins, k_series))
    backlog = np.zeros(nb)
    clock = [0.0]
    snapped = [False]

    def integrate(t):
        """Integrate every backend's piecewise-constant state from clock[0] to t."""
        t0 = clock[0]
        if t <= t0:
            return
        lo, hi = max(t0, t_lo), min(t, t_hi)
        for b, bk in enumerate(bes):
            if hi > lo:
                area[0, b] += bk.act * (hi - lo)
                area[1, b] += bk.busy * (hi - lo)
                area[2, b] += (hi - lo) if bk.alive else 0.0
            if b < k_series:
                a = t0
                while a < t:
                    k = int(a // bin_s)
                    if (k + 1) * bin_s <= a:
                        k += 1
                    end = min(t, (k + 1) * bin_s)
                    if k < n_bins:
                        series[k, b] += bk.act * (end - a) / bin_s
                    a = end
        clock[0] = t

    def snapshot():
        for c in conns:
            if c.state == K.CS_EST and c.phase == K.PH_SERVICE:
                backlog[c.backend] += (c.t_done - t_hi) * be.rate[c.backend]
        for b, bk in enumerate(bes):
            for j in bk.queue:
                backlog[b] += w.req_size[conns[j].req]
        snapped[0] = True

    def push(t, kind, x):
        heapq.heappush(heap, (t, seq[0], kind, x))
        seq[0] += 1

    def add(b):
        d = S.add_dest(st, int(be.service[b]), int(be.addr[b]), K.BACKEND_PORT,
                       int(be.weight[b]))
        bes[b].dest = d
        d2b[d] = b
        bes[b].in_sched = True

    def remove_endpoint(b):
        s = int(be.service[b])
        if not graceful or bes[b].act + bes[b].inact == 0:
            S.remove_dest(st, s, bes[b].dest)
            bes[b].in_sched = False
        else:
            S.set_weight(st, s, bes[b].dest, 0)
            bes[b].pending = True

    def kill(b, t):
        bes[b].alive = False
        for i, c in enumerate(conns):
            if c.backend == b and c.state in (K.CS_SYN, K.CS_EST):
                if c.state == K.CS_EST:
                    S.set_inactive(st, c.dest)
                    bes[b].act -= 1
                    bes[b].inact += 1
                c.state = K.CS_BROKEN
                c.phase = K.PH_NONE
                stats["broken"] += 1
                push(t + close_timeout_s, K.EV_EXPIRE, i)
        bes[b].busy = 0
        bes[b].queue = []

    def start(i, b, t):
        c = conns[i]
        c.phase = K.PH_SERVICE
        c.t_done = t + w.req_size[c.req] / be.rate[b]
        push(c.t_done, K.EV_DONE, i)

    for b in range(len(be.service)):
        if be.present[b]:
            add(b)
            bes[b].alive = True
    push(float(w.arrival[0]), K.EV_ARRIVAL, 0)
    for e in range(len(churn.time)):
        push(float(churn.time[e]), K.EV_CHURN, e)
    lb = bool(np.isin(st.sched, (S.LBLC, S.LBLCR)).any())
    if lb:
        push(K.LB_GC_INTERVAL, K.EV_LBGC, 0)
    armed = False
    while heap:
        if not snapped[0] and heap[0][0] > t_hi:
            snapshot()
        t, _, kind, x = heapq.heappop(heap)
        integrate(t)
        valid = True
        if kind == K.EV_ARRIVAL:
            i = x
            if i + 1 < n:
                push(float(w.arrival[i + 1]), K.EV_ARRIVAL, i + 1)
            s = int(w.service[i])
            st.now[0] = t
            d = S.schedule(st, s, int(w.client_addr[i]), int(w.client_port[i]), vip[s])
            c = conns[i]
            if d < 0:
                c.state = K.CS_DROPPED
                stats["dropped"] += 1
            else:
                b = d2b[d]
                c.backend, c.dest = b, d
                S.bind(st, d)
                bes[b].inact += 1
                if t_lo <= t <= t_hi:
                    bes[b].conns += 1
                    if bes[b].alive:
                        work[b] += c_work[i]
                        work2[b] += c_work[i] * c_work[i]
                if bes[b].alive:
                    c.state = K.CS_SYN
                    push(t + handshake_s, K.EV_HANDSHAKE, i)
                else:
                    c.state = K.CS_BROKEN
                    stats["broken"] += 1
                    stats["refused"] += 1
                    push(t + close_timeout_s, K.EV_EXPIRE, i)
        elif kind == K.EV_HANDSHAKE:
            c = conns[x]
            if c.state != K.CS_SYN:
                valid = False
            else:
                S.set_active(st, c.dest)
                bes[c.backend].inact -= 1
                bes[c.backend].act += 1
                c.state = K.CS_EST
                c.req = int(w.req_ptr[x])
                c.first = t
                c.phase = K.PH_THINK
                push(t + w.req_think[c.req], K.EV_ISSUE, x)
        elif kind == K.EV_ISSUE:
            c = conns[x]
            if c.state != K.CS_EST or c.phase != K.PH_THINK:
                valid = False
            else:
                b = c.backend
                c.t_req = t
                if bes[b].busy < be.workers[b]:
                    bes[b].busy += 1
                    start(x, b, t)
                else:
                    c.phase = K.PH_QUEUED
                    bes[b].queue.append(x)
        elif kind == K.EV_DONE:
            c = conns[x]
            if c.state != K.CS_EST or c.phase != K.PH_SERVICE:
                valid = False
            else:
                b = c.backend
                req_resp[c.req] = t - c.t_req
                if bes[b].queue:
                    j = bes[b].queue.pop(0)
                    conns[j].wait += t - conns[j].t_req
                    start(j, b, t)
                else:
                    bes[b].busy -= 1
                if c.req + 1 < w.req_ptr[x + 1]:
                    c.req += 1
                    c.phase = K.PH_THINK
                    push(t + w.req_think[c.req], K.EV_ISSUE, x)
                else:
                    c.sojourn = t - c.first
                    c.phase = K.PH_NONE
                    c.state = K.CS_CLOSING
                    S.set_inactive(st, c.dest)
                    bes[b].act -= 1
                    bes[b].inact += 1
                    linger = min(close_rtt_s, fin_wait_timeout_s) + time_wait_timeout_s
                    push(t + linger, K.EV_EXPIRE, x)
        elif kind == K.EV_EXPIRE:
            c = conns[x]
            S.unbind(st, c.dest, False)
            bes[c.backend].inact -= 1
            c.state = K.CS_EXPIRED if c.state == K.CS_CLOSING else K.CS_BROKEN
        elif kind == K.EV_CHURN:
            b = int(churn.backend[x])
            s = int(be.service[b])
            ck = int(churn.kind[x])
            if ck in (K.CH_ADD, K.CH_READD):
                bes[b].alive = True
                if bes[b].pending:
                    bes[b].pending = False
                    S.set_weight(st, s, bes[b].dest, int(be.weight[b]))
                elif not bes[b].in_sched:
                    add(b)
            else:
                stats["live_at_churn"] += sum(
                    1 for i, c in enumerate(conns)
                    if w.service[i] == s and c.state in (K.CS_SYN, K.CS_EST))
                if ck == K.CH_REMOVE:
                    push(t + grace_s, K.EV_KILL, b)
                    if bes[b].in_sched and not bes[b].pending:
                        remove_endpoint(b)
                else:
                    kill(b, t)
                    push(t + detect_s, K.EV_DETECT, b)
        elif kind == K.EV_DETECT:
            b = x
            if bes[b].in_sched and not bes[b].pending and not bes[b].alive:
                remove_endpoint(b)
            else:
                valid = False
        elif kind == K.EV_KILL:
            b = x
            if not bes[b].alive or (bes[b].in_sched and not bes[b].pending):
                valid = False
            else:
                kill(b, t)
        elif kind == K.EV_CHECK:
            remaining = False
            for b, bk in enumerate(bes):
                if bk.pending:
                    if bk.act + bk.inact == 0:
                        S.remove_dest(st, int(be.service[b]), bk.dest)
                        bk.pending = False
                        bk.in_sched = False
                    else:
                        remaining = True
            armed = remaining
            if remaining:
                push(t + check_interval_s, K.EV_CHECK, 0)
        elif kind == K.EV_LBGC:
            st.now[0] = t
            for s in range(n_svc):
                S.lblc_check_expire(st, s)
            if heap:
                push(t + K.LB_GC_INTERVAL, K.EV_LBGC, 0)
        if (not armed and kind in (K.EV_CHURN, K.EV_DETECT)
                and any(bk.pending for bk in bes)):
            push((math.floor(t / check_interval_s) + 1.0) * check_interval_s, K.EV_CHECK, 0)
            armed = True
        if valid:
            log.append((t, kind, x))
    if not snapped[0]:
        snapshot()
    integrate(max(t_hi, clock[0]))
    if integrals is not None:
        integrals.append(Integrals(area, work, work2, series, backlog))
    return log, conns, bes, req_resp, stats
