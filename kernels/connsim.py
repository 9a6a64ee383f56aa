"""Connection-level discrete-event simulation of kube-proxy load balancing (issue 5).

Connections of a :class:`kernels.workload.Workload` arrive at their Service; the Service's
scheduler (any of ``kernels.schedulers.SCHEDULERS``, called through its njit API for every
decision, spec A.4–A.9, B.1, B.3, B.4) binds each to a backend; the connection's requests then
queue FCFS for the backend's ``c`` workers.

TCP and IPVS counters (spec A.3): a new connection is bound in ``inactconns``; it becomes active
when the client's ACK completes the handshake (``handshake_s`` after arrival); its requests are
issued one after another (think times from the workload) and each waits for a worker; after the
last response the client closes: the connection leaves ESTABLISHED (active → inactive), spends
``min(close_rtt_s, fin_wait_timeout_s)`` in FIN_WAIT and then ``time_wait_timeout_s`` in
TIME_WAIT (IPVS re-arms its timer on each state change, so these are the kernel timeouts
FIN_WAIT 120 s and TIME_WAIT 120 s by default), and then expires (unbind). A connection reset by
a dying pod goes to CLOSE (inactive) and expires after ``close_timeout_s`` (10 s).

Backends (:class:`Backends`): per slot a Service, an address, ``workers`` and a per-worker
service ``rate`` (heterogeneous allowed), and an IPVS weight (kube-proxy sets 1 for every real
server, spec B.2). Slots not ``present`` at t = 0 join through churn events.

Churn (:class:`Churn`, kinds ``CH_*``), applied to a Service's backends at given times:
  * ``CH_ADD``    — a new ready endpoint: ``add_dest`` (list head, spec A.10).
  * ``CH_REMOVE`` — endpoint terminating (scale-down, rolling update): removed from the
    dataplane now, pod killed ``grace_s`` later (terminationGracePeriodSeconds, default 30 s),
    resetting whatever is still live on it. IPVS removes gracefully (spec B.2): the real server is
    deleted at once if it has no connections, else set to weight 0 and deleted by a checker that
    runs every ``check_interval_s`` (rsCheckDeleteInterval, 1 min) once ActiveConn + InactConn
    == 0. iptables/nftables/userspace (statistic, numgen, userspace_rr) rewrite their rules
    without the endpoint at once.
  * ``CH_CRASH``  — the pod dies now (restart): live connections are reset; connections the
    scheduler still sends to it are refused (counted broken) until kube-proxy removes the
    endpoint ``detect_s`` later (readiness failure; a parameter, unconfirmed timing).
  * ``CH_READD``  — the restarted pod is ready again: a weight-0 real server still in the delete
    list gets its weight back; a deleted one is re-added (IPVS revives it from the trash with
    its counters, spec A.10).
Restart = CRASH + READD; rolling update = for each old backend ADD (new pod) then REMOVE.

Many Services run at once, each with its own scheduler state inside one ``SchedState``; the
packet's destination address (dh, lblc, lblcr) is the Service's ClusterIP. lblc/lblcr get their
cache GC timer every 60 s of model time (spec A.9).

Events are ordered by (time, insertion sequence), so ties resolve in the order events were
created and a run is deterministic for a workload and a scheduler seed. Variable-delay events
live in a binary heap; constant-delay events (handshake completion, expiry after close or
reset, pod kill) are created in time order and live in FIFOs, so the heap holds only a few
entries instead of every connection lingering in TIME_WAIT.
Measurement window: connections arriving in [t_lo, t_hi] (after a warm-up share of the
connections, up to the last arrival) count towards per-backend statistics and latency.

The kernels call the scheduler API in kernels/schedulers.py. numba's on-disk cache only watches
the file of the cached function, so this module's cache stamp also covers kernels/schedulers.py
(kernels.numba_cache.depend_on): a scheduler change recompiles the simulator.
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np
from numba import njit

from harness.errors import UserError
from kernels import schedulers as _schedulers_module
from kernels.numba_cache import depend_on
from kernels.schedulers import (
    IPVS_SCHEDULERS,
    LB_CHECK_EXPIRE_INTERVAL,
    LBLC,
    LBLCR,
    SCHEDULERS,
    SVC_F_SCHED_MH_PORT,
    add_dest,
    bind_inl,
    lblc_check_expire,
    new_state,
    remove_dest,
    schedule_inl,
    set_active_inl,
    set_inactive,
    set_inactive_inl,
    set_weight,
    unbind_inl,
)

BACKEND_PORT = 8080
BACKEND_BASE = 0x0AF40001  # 10.244.0.1: pod addresses
VIP_BASE = 0x0A600001  # 10.96.0.1: ClusterIPs
LB_GC_INTERVAL = float(LB_CHECK_EXPIRE_INTERVAL)


depend_on(__file__, _schedulers_module)

# event kinds
EV_ARRIVAL = 0
EV_HANDSHAKE = 1
EV_ISSUE = 2
EV_DONE = 3
EV_EXPIRE = 4
EV_CHURN = 5
EV_CHECK = 6
EV_KILL = 7
EV_SAMPLE = 8
EV_DETECT = 9
EV_LBGC = 10
N_EV = 16

# FIFOs of constant-delay events
Q_HANDSHAKE = 0
Q_CLOSED = 1
Q_RESET = 2
Q_KILL = 3
N_FIFO = 4

# churn kinds
CH_ADD = 0
CH_REMOVE = 1
CH_CRASH = 2
CH_READD = 3

# connection states
CS_NEW = 0
CS_SYN = 1
CS_EST = 2
CS_CLOSING = 3
CS_EXPIRED = 4
CS_BROKEN = 5
CS_DROPPED = 6

# phase of an established connection
PH_NONE = 0
PH_THINK = 1
PH_QUEUED = 2
PH_SERVICE = 3


_hot = njit(cache=True, _nrt=False)
"""Per-event helpers: compiled without reference counting (they never allocate), so a call does
not incref/decref each array argument."""


# ---------------------------------------------------------------- binary heap (time, seq) order
@njit(cache=True)
def _heap_grow(ht, hs, hp):
    n = ht.shape[0]
    nt = np.empty(2 * n)
    ns = np.empty(2 * n, np.int64)
    npay = np.empty(2 * n, np.int64)
    nt[:n] = ht
    ns[:n] = hs
    npay[:n] = hp
    return nt, ns, npay


@_hot
def _heap_push(ht, hs, hp, n, t, seq, payload):
    """Push into a heap with room for it (callers grow it first with _heap_grow)."""
    i = n
    while i > 0:
        parent = (i - 1) >> 1
        if ht[parent] < t or (ht[parent] == t and hs[parent] < seq):
            break
        ht[i] = ht[parent]
        hs[i] = hs[parent]
        hp[i] = hp[parent]
        i = parent
    ht[i] = t
    hs[i] = seq
    hp[i] = payload
    return n + 1


@_hot
def _heap_pop(ht, hs, hp, n):
    t0 = ht[0]
    p0 = hp[0]
    n -= 1
    t = ht[n]
    s = hs[n]
    p = hp[n]
    i = 0
    while True:
        c = 2 * i + 1
        if c >= n:
            break
        if c + 1 < n and (ht[c + 1] < ht[c] or (ht[c + 1] == ht[c] and hs[c + 1] < hs[c])):
            c += 1
        if t < ht[c] or (t == ht[c] and s < hs[c]):
            break
        ht[i] = ht[c]
        hs[i] = hs[c]
        hp[i] = hp[c]
        i = c
    if n > 0:
        ht[i] = t
        hs[i] = s
        hp[i] = p
    return t0, p0, n


@_hot
def _fifo_push(ft, fs, fpay, ftail, q, t, seq, payload):
    k = ftail[q]
    ft[q, k] = t
    fs[q, k] = seq
    fpay[q, k] = payload
    ftail[q] = k + 1


# ---------------------------------------------------------------- per-backend time integrals
@_hot
def _advance(b, t, last, n_act, busy, alive, area, t_lo, t_hi, bin_area, n_series):
    """Integrate activeconns, busy workers and pod-alive time of backend b from last[b] to t
    (area[0|1|2, b], clipped to the window [t_lo, t_hi]); series bins for b < n_series."""
    t0 = last[b]
    if t > t0:
        lo = max(t0, t_lo)
        hi = min(t, t_hi)
        if hi > lo:
            area[0, b] += n_act[b] * (hi - lo)
            area[1, b] += busy[b] * (hi - lo)
            if alive[b]:
                area[2, b] += hi - lo
        if b < n_series:
            bin_area[b] += n_act[b] * (t - t0)
        last[b] = t

# float parameters (fp) and int parameters (ip) of the kernel
F_HANDSHAKE, F_CLOSE_RTT, F_FIN_WAIT, F_TIME_WAIT, F_CLOSE, F_GRACE, F_DETECT, F_CHECK = range(8)
F_T_LO, F_T_HI, F_BIN = 8, 9, 10
N_FP = 11
I_GRACEFUL, I_N_SERIES, I_N_BINS, I_LOG_CAP, I_LB_GC = range(5)
N_IP = 5


# event-loop state shared by the fast loop (_run) and the slow path in _simulate (int64 lp[...])
L_HN, L_SEQ, L_SNAPPED, L_N_LOG = range(4)
N_LP = 4
# what _run stopped for
RUN_DONE = 0  # no event left
RUN_SLOW = 1  # the next event (heap top, not popped) changes the destination set
RUN_GROW = 2  # the heap may not have room for the pushes of the next event
HEAP_PUSHES_MAX = 2  # most heap pushes one fast event makes (EV_DONE: next in queue + next issue)


@_hot
def _fifo_pending(fhead, ftail):
    for q in range(fhead.shape[0]):
        if fhead[q] < ftail[q]:
            return True
    return False


@_hot
def _record(kind, x, t, stats, log_t, log_kind, log_id, lp):
    """Count a processed event; log it while the log has room."""
    stats[0] += 1
    stats[8 + kind] += 1
    k = lp[L_N_LOG]
    if k < log_t.shape[0]:
        log_t[k] = t
        log_kind[k] = kind
        log_id[k] = x
        lp[L_N_LOG] = k + 1


@_hot
def _run(st, arrival, c_addr, c_port, c_svc, c_work, req_ptr, req_size, req_think, svc_vip,
         be_rate, be_workers, fp, ip, c_state, c_phase, c_backend, c_dest, c_req, c_t_req,
         c_first, c_wait, c_tdone, c_sojourn, c_qnext, req_resp, d2b, b_alive, b_pending,
         b_in_sched, b_busy, b_qhead, b_qtail, b_act, b_inact, b_conns, b_work, b_work2,
         b_backlog, last, area, bin_area, series, stats, log_t, log_kind, log_id, ht, hs, hp,
         ft, fs, fpay, fhead, ftail, lp):
    """The event loop of :func:`_simulate` for every event that leaves the destination set
    alone (arrivals and scheduling, TCP state, FCFS queues, pod kills, lblc GC, samples).

    It works on preallocated arrays and never allocates, so it is compiled without reference
    counting; nothing it calls may allocate either (the table rebuilds behind add_dest /
    remove_dest / set_weight do, so churn, detect and check events go back to _simulate).
    The per-connection scheduler calls (schedule, bind, set_active, set_inactive, unbind) are
    the ``*_inl`` variants, inlined into the loop: a call would pass the whole SchedState (a
    few hundred words) by value every time; inlined, the simulator ran ~1.5x faster.
    Returns RUN_DONE, RUN_SLOW or RUN_GROW; heap size, sequence number, snapshot flag and log
    count travel in lp."""
    n = arrival.shape[0]
    handshake = fp[F_HANDSHAKE]
    t_lo = fp[F_T_LO]
    t_hi = fp[F_T_HI]
    n_series = ip[I_N_SERIES]
    hn = lp[L_HN]
    seq = lp[L_SEQ]
    snapped = lp[L_SNAPPED] != 0
    code = RUN_DONE
    while True:
        # constant-delay events (handshake, expiry after close, expiry after reset, pod kill)
        # are created in time order, so each kind is a FIFO; the next event is the (time, seq)
        # minimum of the heap top and the FIFO heads - the same order a single heap would give
        src = -1
        bt = 0.0
        bs = 0
        if hn > 0:
            bt = ht[0]
            bs = hs[0]
            src = N_FIFO
        for q in range(N_FIFO):
            if fhead[q] < ftail[q]:
                qt = ft[q, fhead[q]]
                qs = fs[q, fhead[q]]
                if src < 0 or qt < bt or (qt == bt and qs < bs):
                    bt = qt
                    bs = qs
                    src = q
        if src < 0:
            break
        if not snapped and bt > t_hi:
            _backlog(t_hi, n, c_state, c_phase, c_backend, c_tdone, c_req, c_qnext, req_size,
                     be_rate, b_qhead, b_backlog)
            snapped = True
        if src == N_FIFO:
            k0 = hp[0] % N_EV
            if k0 == EV_CHURN or k0 == EV_DETECT or k0 == EV_CHECK:
                code = RUN_SLOW
                break
        if hn + HEAP_PUSHES_MAX > ht.shape[0]:
            code = RUN_GROW
            break
        if src == N_FIFO:
            t, payload, hn = _heap_pop(ht, hs, hp, hn)
        else:
            t = ft[src, fhead[src]]
            payload = fpay[src, fhead[src]]
            fhead[src] += 1
        kind = payload % N_EV
        x = payload // N_EV
        valid = True
        if kind == EV_ARRIVAL:
            i = x
            if i + 1 < n:
                hn = _heap_push(ht, hs, hp, hn, arrival[i + 1], seq, (i + 1) * N_EV + EV_ARRIVAL)
                seq += 1
            s = c_svc[i]
            st.now[0] = t
            d = schedule_inl(st, s, c_addr[i], c_port[i], svc_vip[s])
            if d < 0:
                c_state[i] = CS_DROPPED
                stats[3] += 1
            else:
                b = d2b[d]
                c_backend[i] = b
                c_dest[i] = d
                bind_inl(st, d)
                _advance(b, t, last, b_act, b_busy, b_alive, area, t_lo, t_hi, bin_area,
                         n_series)
                b_inact[b] += 1
                if t >= t_lo and t <= t_hi:
                    b_conns[b] += 1
                    if b_alive[b]:  # a refused connection brings the pod no work
                        b_work[b] += c_work[i]
                        b_work2[b] += c_work[i] * c_work[i]
                if b_alive[b]:
                    c_state[i] = CS_SYN
                    _fifo_push(ft, fs, fpay, ftail, Q_HANDSHAKE, t + handshake, seq,
                               i * N_EV + EV_HANDSHAKE)
                    seq += 1
                else:  # the pod is gone: connection refused (RST -> CLOSE state)
                    c_state[i] = CS_BROKEN
                    stats[1] += 1
                    stats[2] += 1
                    _fifo_push(ft, fs, fpay, ftail, Q_RESET, t + fp[F_CLOSE], seq,
                               i * N_EV + EV_EXPIRE)
                    seq += 1
        elif kind == EV_HANDSHAKE:
            i = x
            if c_state[i] != CS_SYN:
                valid = False
            else:
                b = c_backend[i]
                set_active_inl(st, c_dest[i])
                _advance(b, t, last, b_act, b_busy, b_alive, area, t_lo, t_hi, bin_area,
                         n_series)
                b_inact[b] -= 1
                b_act[b] += 1
                c_state[i] = CS_EST
                c_req[i] = req_ptr[i]
                c_first[i] = t
                c_phase[i] = PH_THINK
                hn = _heap_push(ht, hs, hp, hn, t + req_think[req_ptr[i]], seq,
                                i * N_EV + EV_ISSUE)
                seq += 1
        elif kind == EV_ISSUE:
            i = x
            if c_state[i] != CS_EST or c_phase[i] != PH_THINK:
                valid = False
            else:
                b = c_backend[i]
                r = c_req[i]
                c_t_req[i] = t
                if b_busy[b] < be_workers[b]:
                    _advance(b, t, last, b_act, b_busy, b_alive, area, t_lo, t_hi, bin_area,
                             n_series)
                    b_busy[b] += 1
                    c_phase[i] = PH_SERVICE
                    c_tdone[i] = t + req_size[r] / be_rate[b]
                    hn = _heap_push(ht, hs, hp, hn, c_tdone[i], seq, i * N_EV + EV_DONE)
                    seq += 1
                else:
                    c_phase[i] = PH_QUEUED
                    c_qnext[i] = -1
                    if b_qtail[b] < 0:
                        b_qhead[b] = i
                    else:
                        c_qnext[b_qtail[b]] = i
                    b_qtail[b] = i
        elif kind == EV_DONE:
            i = x
            if c_state[i] != CS_EST or c_phase[i] != PH_SERVICE:
                valid = False
            else:
                b = c_backend[i]
                r = c_req[i]
                req_resp[r] = t - c_t_req[i]
                # the freed worker takes the head of the FCFS queue
                j = b_qhead[b]
                if j >= 0:
                    b_qhead[b] = c_qnext[j]
                    if b_qhead[b] < 0:
                        b_qtail[b] = -1
                    c_phase[j] = PH_SERVICE
                    c_wait[j] += t - c_t_req[j]
                    c_tdone[j] = t + req_size[c_req[j]] / be_rate[b]
                    hn = _heap_push(ht, hs, hp, hn, c_tdone[j], seq, j * N_EV + EV_DONE)
                    seq += 1
                else:
                    _advance(b, t, last, b_act, b_busy, b_alive, area, t_lo, t_hi, bin_area,
                             n_series)
                    b_busy[b] -= 1
                if r + 1 < req_ptr[i + 1]:
                    c_req[i] = r + 1
                    c_phase[i] = PH_THINK
                    hn = _heap_push(ht, hs, hp, hn, t + req_think[r + 1], seq,
                                    i * N_EV + EV_ISSUE)
                    seq += 1
                else:  # client closes: FIN exchange, then TIME_WAIT (inactive, spec A.3)
                    c_sojourn[i] = t - c_first[i]
                    c_phase[i] = PH_NONE
                    c_state[i] = CS_CLOSING
                    set_inactive_inl(st, c_dest[i])
                    _advance(b, t, last, b_act, b_busy, b_alive, area, t_lo, t_hi, bin_area,
                             n_series)
                    b_act[b] -= 1
                    b_inact[b] += 1
                    linger = min(fp[F_CLOSE_RTT], fp[F_FIN_WAIT]) + fp[F_TIME_WAIT]
                    _fifo_push(ft, fs, fpay, ftail, Q_CLOSED, t + linger, seq,
                               i * N_EV + EV_EXPIRE)
                    seq += 1
        elif kind == EV_EXPIRE:
            i = x
            b = c_backend[i]
            unbind_inl(st, c_dest[i], np.bool_(False))
            _advance(b, t, last, b_act, b_busy, b_alive, area, t_lo, t_hi, bin_area, n_series)
            b_inact[b] -= 1
            c_state[i] = CS_EXPIRED if c_state[i] == CS_CLOSING else CS_BROKEN
        elif kind == EV_KILL:
            b = x
            if not b_alive[b] or b_in_sched[b] and not b_pending[b]:
                valid = False  # already dead, or re-added meanwhile
            else:
                seq, n_brk = _kill(b, t, ft, fs, fpay, ftail, seq, st, c_state, c_phase,
                                   c_backend, c_dest, n, b_alive, b_busy, b_qhead, b_qtail,
                                   b_act, b_inact, last, area, t_lo, t_hi, bin_area, n_series,
                                   fp[F_CLOSE])
                stats[1] += n_brk
        elif kind == EV_LBGC:
            st.now[0] = t
            for s in range(st.sched.shape[0]):
                lblc_check_expire(st, s)
            if hn > 0 or _fifo_pending(fhead, ftail):  # runs while anything else is pending
                hn = _heap_push(ht, hs, hp, hn, t + LB_GC_INTERVAL, seq, EV_LBGC)
                seq += 1
        elif kind == EV_SAMPLE:
            k = x
            for b in range(n_series):
                _advance(b, t, last, b_act, b_busy, b_alive, area, t_lo, t_hi, bin_area,
                         n_series)
                series[k, b] = bin_area[b] / fp[F_BIN]
                bin_area[b] = 0.0
        if valid:
            _record(kind, x, t, stats, log_t, log_kind, log_id, lp)
    lp[L_HN] = hn
    lp[L_SEQ] = seq
    lp[L_SNAPPED] = snapped
    return code


@njit(cache=True)
def _simulate(st, arrival, c_addr, c_port, c_svc, c_work, req_ptr, req_size, req_think,
              svc_vip, be_service, be_addr, be_rate, be_workers, be_present, be_weight,
              ch_time, ch_kind, ch_backend, fp, ip):
    """Allocate the simulation's arrays, set up the destinations and the first events, and run
    the event loop: :func:`_run` for the common events, and here (with reference counting, as
    the scheduler table rebuilds allocate) the events that change destinations - churn,
    kube-proxy noticing a dead pod, and the graceful-deletion checker."""
    n = arrival.shape[0]
    nb = be_service.shape[0]
    n_req = req_size.shape[0]
    t_lo = fp[F_T_LO]
    t_hi = fp[F_T_HI]
    graceful = ip[I_GRACEFUL] != 0
    n_series = ip[I_N_SERIES]
    n_bins = ip[I_N_BINS]
    log_cap = ip[I_LOG_CAP]

    # connections
    c_state = np.zeros(n, np.int8)
    c_phase = np.zeros(n, np.int8)
    c_backend = np.full(n, -1, np.int64)
    c_dest = np.full(n, -1, np.int64)
    c_req = np.zeros(n, np.int64)  # index of the current request
    c_t_req = np.zeros(n)  # time the current request was issued
    c_first = np.zeros(n)  # time the first request was issued
    c_wait = np.zeros(n)
    c_tdone = np.zeros(n)  # completion time of the request in service
    c_sojourn = np.full(n, np.nan)
    c_qnext = np.full(n, -1, np.int64)
    req_resp = np.full(n_req, np.nan)
    # backends
    b_dest = np.full(nb, -1, np.int64)
    d2b = np.full(st.addr.shape[0], -1, np.int64)
    b_alive = np.zeros(nb, np.bool_)
    b_pending = np.zeros(nb, np.bool_)  # weight 0, waiting for graceful deletion (spec B.2)
    b_in_sched = np.zeros(nb, np.bool_)
    b_busy = np.zeros(nb, np.int64)
    b_qhead = np.full(nb, -1, np.int64)
    b_qtail = np.full(nb, -1, np.int64)
    b_act = np.zeros(nb, np.int64)  # mirror of IPVS activeconns / inactconns
    b_inact = np.zeros(nb, np.int64)
    b_conns = np.zeros(nb, np.int64)  # connections bound in the window
    b_work = np.zeros(nb)  # work of the connections bound in the window (offered load)
    b_work2 = np.zeros(nb)
    b_backlog = np.zeros(nb)  # unfinished work at t_hi (queued + rest of the one in service)
    last = np.zeros(nb)
    area = np.zeros((3, nb))  # time integrals of activeconns, busy workers, pod alive
    bin_area = np.zeros(max(n_series, 1))
    series = np.zeros((max(n_bins, 1), max(n_series, 1)))
    # stats: events, broken, refused, dropped, live at churn, events by kind...
    stats = np.zeros(8 + N_EV, np.int64)
    log_t = np.zeros(log_cap)
    log_kind = np.zeros(log_cap, np.int64)
    log_id = np.zeros(log_cap, np.int64)

    cap = 1024
    ht = np.empty(cap)
    hs = np.empty(cap, np.int64)
    hp = np.empty(cap, np.int64)
    hn = 0
    seq = 0
    fcap = n + ch_time.shape[0] + 1
    ft = np.empty((N_FIFO, fcap))
    fs = np.empty((N_FIFO, fcap), np.int64)
    fpay = np.empty((N_FIFO, fcap), np.int64)
    fhead = np.zeros(N_FIFO, np.int64)
    ftail = np.zeros(N_FIFO, np.int64)
    lp = np.zeros(N_LP, np.int64)

    for b in range(nb):
        if be_present[b]:
            b_dest[b] = add_dest(st, be_service[b], be_addr[b], np.int64(BACKEND_PORT),
                                 be_weight[b])
            d2b[b_dest[b]] = b
            b_in_sched[b] = True
            b_alive[b] = True
    if n > 0:
        if hn == ht.shape[0]:
            ht, hs, hp = _heap_grow(ht, hs, hp)
        hn = _heap_push(ht, hs, hp, hn, arrival[0], seq, 0 * N_EV + EV_ARRIVAL)
        seq += 1
    for e in range(ch_time.shape[0]):
        if hn == ht.shape[0]:
            ht, hs, hp = _heap_grow(ht, hs, hp)
        hn = _heap_push(ht, hs, hp, hn, ch_time[e], seq, e * N_EV + EV_CHURN)
        seq += 1
    for k in range(n_bins):
        if hn == ht.shape[0]:
            ht, hs, hp = _heap_grow(ht, hs, hp)
        hn = _heap_push(ht, hs, hp, hn, (k + 1) * fp[F_BIN], seq, k * N_EV + EV_SAMPLE)
        seq += 1
    check_armed = False
    if ip[I_LB_GC] != 0:  # lblc/lblcr cache GC timer (spec A.9)
        if hn == ht.shape[0]:
            ht, hs, hp = _heap_grow(ht, hs, hp)
        hn = _heap_push(ht, hs, hp, hn, LB_GC_INTERVAL, seq, EV_LBGC)
        seq += 1
    lp[L_HN] = hn
    lp[L_SEQ] = seq

    while True:
        code = _run(st, arrival, c_addr, c_port, c_svc, c_work, req_ptr, req_size, req_think,
                    svc_vip, be_rate, be_workers, fp, ip, c_state, c_phase, c_backend, c_dest,
                    c_req, c_t_req, c_first, c_wait, c_tdone, c_sojourn, c_qnext, req_resp, d2b,
                    b_alive, b_pending, b_in_sched, b_busy, b_qhead, b_qtail, b_act, b_inact,
                    b_conns, b_work, b_work2, b_backlog, last, area, bin_area, series, stats,
                    log_t, log_kind, log_id, ht, hs, hp, ft, fs, fpay, fhead, ftail, lp)
        if code == RUN_DONE:
            break
        if code == RUN_GROW:
            ht, hs, hp = _heap_grow(ht, hs, hp)
            continue
        hn = lp[L_HN]
        seq = lp[L_SEQ]
        t, payload, hn = _heap_pop(ht, hs, hp, hn)
        kind = payload % N_EV
        x = payload // N_EV
        valid = True
        if kind == EV_CHURN:
            e = x
            b = ch_backend[e]
            s = be_service[b]
            ck = ch_kind[e]
            if ck == CH_ADD or ck == CH_READD:
                _advance(b, t, last, b_act, b_busy, b_alive, area, t_lo, t_hi, bin_area,
                         n_series)
                b_alive[b] = True
                if b_pending[b]:  # back before deletion: out of the delete list, weight restored
                    b_pending[b] = False
                    set_weight(st, s, b_dest[b], be_weight[b])
                elif not b_in_sched[b]:
                    b_dest[b] = add_dest(st, s, be_addr[b], np.int64(BACKEND_PORT), be_weight[b])
                    d2b[b_dest[b]] = b
                    b_in_sched[b] = True
            else:
                stats[4] += _live_conns(c_state, c_svc, s, n)
                if ck == CH_REMOVE:  # endpoint removed now, pod killed after the grace period
                    _fifo_push(ft, fs, fpay, ftail, Q_KILL, t + fp[F_GRACE], seq,
                               b * N_EV + EV_KILL)
                    seq += 1
                    if b_in_sched[b] and not b_pending[b]:
                        _remove_endpoint(st, s, b, b_dest, b_act, b_inact, b_pending,
                                         b_in_sched, graceful)
                else:  # crash: pod dies now, endpoint removed once kube-proxy notices
                    seq, n_brk = _kill(b, t, ft, fs, fpay, ftail, seq, st, c_state, c_phase,
                                       c_backend, c_dest, n, b_alive, b_busy, b_qhead, b_qtail,
                                       b_act, b_inact, last, area, t_lo, t_hi, bin_area,
                                       n_series, fp[F_CLOSE])
                    stats[1] += n_brk
                    if hn == ht.shape[0]:
                        ht, hs, hp = _heap_grow(ht, hs, hp)
                    hn = _heap_push(ht, hs, hp, hn, t + fp[F_DETECT], seq, b * N_EV + EV_DETECT)
                    seq += 1
        elif kind == EV_DETECT:
            b = x
            s = be_service[b]
            if b_in_sched[b] and not b_pending[b] and not b_alive[b]:
                _remove_endpoint(st, s, b, b_dest, b_act, b_inact, b_pending, b_in_sched,
                                 graceful)
            else:
                valid = False
        else:
            # kube-proxy's graceful-termination checker (every rsCheckDeleteInterval, spec B.2)
            remaining = False
            for b in range(nb):
                if b_pending[b]:
                    if b_act[b] + b_inact[b] == 0:
                        remove_dest(st, be_service[b], b_dest[b])
                        b_pending[b] = False
                        b_in_sched[b] = False
                    else:
                        remaining = True
            check_armed = remaining
            if remaining:
                if hn == ht.shape[0]:
                    ht, hs, hp = _heap_grow(ht, hs, hp)
                hn = _heap_push(ht, hs, hp, hn, t + fp[F_CHECK], seq, EV_CHECK)
                seq += 1
        if not check_armed and kind != EV_CHECK and b_pending.any():
            # a pending deletion arms the checker, which ticks at multiples of its interval
            nxt = (np.floor(t / fp[F_CHECK]) + 1.0) * fp[F_CHECK]
            if hn == ht.shape[0]:
                ht, hs, hp = _heap_grow(ht, hs, hp)
            hn = _heap_push(ht, hs, hp, hn, nxt, seq, EV_CHECK)
            seq += 1
            check_armed = True
        lp[L_HN] = hn
        lp[L_SEQ] = seq
        if valid:
            _record(kind, x, t, stats, log_t, log_kind, log_id, lp)
    if lp[L_SNAPPED] == 0:
        _backlog(t_hi, n, c_state, c_phase, c_backend, c_tdone, c_req, c_qnext, req_size,
                 be_rate, b_qhead, b_backlog)
    for b in range(nb):
        _advance(b, t_hi, last, b_act, b_busy, b_alive, area, t_lo, t_hi, bin_area, 0)
    n_log = lp[L_N_LOG]
    return (c_backend, c_state, c_wait, c_sojourn, req_resp, b_conns, area, b_work, b_work2,
            series, stats, log_t[:n_log], log_kind[:n_log], log_id[:n_log], b_backlog)


@_hot
def _backlog(t, n, c_state, c_phase, c_backend, c_tdone, c_req, c_qnext, req_size, be_rate,
             b_qhead, out):
    """Unfinished work (s at rate 1) per backend at time t: the rest of each request in service
    plus the sizes of the queued ones."""
    for i in range(n):
        if c_state[i] == CS_EST and c_phase[i] == PH_SERVICE:
            b = c_backend[i]
            out[b] += (c_tdone[i] - t) * be_rate[b]
    for b in range(out.shape[0]):
        j = b_qhead[b]
        while j >= 0:
            out[b] += req_size[c_req[j]]
            j = c_qnext[j]


@njit(cache=True)
def _remove_endpoint(st, s, b, b_dest, b_act, b_inact, b_pending, b_in_sched, graceful):
    """kube-proxy endpoint removal. IPVS (graceful): delete now if the real server has no
    connections, else weight 0 and into the delete list (spec B.2 GracefulDeleteRS).
    Non-IPVS dataplanes rewrite their rules without the endpoint at once (spec B.1, B.3, B.4)."""
    if not graceful or b_act[b] + b_inact[b] == 0:
        remove_dest(st, s, b_dest[b])
        b_in_sched[b] = False
        return
    set_weight(st, s, b_dest[b], np.int64(0))
    b_pending[b] = True


@njit(cache=True)
def _live_conns(c_state, c_svc, s, n):
    live = 0
    for i in range(n):
        if c_svc[i] == s and (c_state[i] == CS_SYN or c_state[i] == CS_EST):
            live += 1
    return live


@_hot
def _kill(b, t, ft, fs, fpay, ftail, seq, st, c_state, c_phase, c_backend, c_dest, n, b_alive,
          b_busy, b_qhead, b_qtail, b_act, b_inact, last, area, t_lo, t_hi, bin_area, n_series,
          close_timeout):
    """The pod behind backend b dies: its live connections are reset (RST -> CLOSE, inactive,
    expiring after the CLOSE timeout, spec A.3); workers and queue are emptied."""
    _advance(b, t, last, b_act, b_busy, b_alive, area, t_lo, t_hi, bin_area, n_series)
    b_alive[b] = False
    broken = 0
    for i in range(n):
        if c_backend[i] == b and (c_state[i] == CS_SYN or c_state[i] == CS_EST):
            if c_state[i] == CS_EST:
                set_inactive(st, c_dest[i])
                b_act[b] -= 1
                b_inact[b] += 1
            c_state[i] = CS_BROKEN
            c_phase[i] = PH_NONE
            broken += 1
            _fifo_push(ft, fs, fpay, ftail, Q_RESET, t + close_timeout, seq, i * N_EV + EV_EXPIRE)
            seq += 1
    b_busy[b] = 0
    b_qhead[b] = -1
    b_qtail[b] = -1
    return seq, broken


# ---------------------------------------------------------------- Python API
Backends = namedtuple("Backends", "service addr rate workers present weight")
Backends.__doc__ = """Backend slots: service int64[B], addr int64[B] (host-order IPv4), rate
float64[B] (work per second per worker), workers int64[B], present bool[B] (at t = 0),
weight int64[B] (IPVS weight; kube-proxy uses 1)."""

Churn = namedtuple("Churn", "time kind backend")
Churn.__doc__ = "Churn events: time float64[E] (s), kind int64[E] (CH_*), backend int64[E] (slot)."

SimResult = namedtuple(
    "SimResult",
    "conn_backend conn_state conn_wait conn_sojourn req_resp backend_conns backend_area "
    "backend_work backend_work2 series stats log_t log_kind log_id t_lo t_hi bin_s state "
    "backend_backlog",
)
SimResult.__doc__ = """Simulation output.

conn_backend int64[n] (slot, -1 = no destination); conn_state int8[n] (CS_EXPIRED = completed,
CS_BROKEN = reset or refused, CS_DROPPED = no destination); conn_wait (s queued, summed over
its requests); conn_sojourn (s from first request to last response; NaN unless completed);
req_resp float64[R] response time per request (NaN unless completed); per backend in the
window: backend_conns, backend_area[3, B] (∫activeconns, ∫busy workers, ∫pod alive, in s),
backend_work / backend_work2 (Σ and Σ² of the work of bound connections); series[bins, k]
time-averaged activeconns of the first k slots per bin of bin_s seconds; stats: dict of counts
(events, broken, refused, dropped, live_at_churn, events_<kind>); log_*: the first log_cap
processed events (time, EV_* kind, id); t_lo, t_hi: the window; state: the final SchedState;
backend_backlog float64[B]: unfinished work at t_hi (s at rate 1: queued requests' sizes plus the
rest of those in service), which grows like (ρ_b − 1)·T on an overloaded backend.
"""

EV_NAMES = ("arrival", "handshake", "issue", "done", "expire", "churn", "check", "kill",
            "sample", "detect", "lbgc")


def make_backends(per_service: np.ndarray | list, *, rate=1.0, workers=1, weight=1,
                  absent: np.ndarray | None = None) -> Backends:
    """Backend slots for Services with ``per_service[s]`` slots each, Service by Service (slots
    of Service 0 first). ``rate``/``workers``/``weight`` scalars or per-slot arrays; ``absent``:
    slots that join later through churn (bool[B] or slot indices)."""
    per = np.asarray(per_service, dtype=np.int64)
    if per.ndim != 1 or per.size == 0 or per.min() < 1:
        raise UserError("connsim: backends: expected >= 1 backend slot per Service")
    nb = int(per.sum())
    service = np.repeat(np.arange(per.size, dtype=np.int64), per)
    present = np.ones(nb, dtype=np.bool_)
    if absent is not None:
        present[np.asarray(absent)] = False
    out = Backends(service, BACKEND_BASE + np.arange(nb, dtype=np.int64),
                   np.broadcast_to(np.asarray(rate, dtype=np.float64), (nb,)).copy(),
                   np.broadcast_to(np.asarray(workers, dtype=np.int64), (nb,)).copy(),
                   present, np.broadcast_to(np.asarray(weight, dtype=np.int64), (nb,)).copy())
    if out.rate.min() <= 0 or out.workers.min() < 1 or out.weight.min() < 0:
        raise UserError("connsim: backends: expected rate > 0, workers >= 1, weight >= 0")
    return out


def no_churn() -> Churn:
    """An empty churn plan."""
    return Churn(np.zeros(0), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))


def simulate(
    workload,
    backends: Backends,
    scheduler: str,
    *,
    churn: Churn | None = None,
    sched_flags: int | None = None,
    mh_table_size: int = 4093,
    seed: int = 0,
    handshake_s: float = 0.0005,
    close_rtt_s: float = 0.0005,
    fin_wait_timeout_s: float = 120.0,
    time_wait_timeout_s: float = 120.0,
    close_timeout_s: float = 10.0,
    grace_s: float = 30.0,
    detect_s: float = 1.0,
    check_interval_s: float = 60.0,
    graceful: bool | None = None,
    warmup_frac: float = 0.1,
    n_bins: int = 0,
    series_backends: int = 0,
    log_cap: int = 0,
) -> SimResult:
    """Run the simulation (module docstring). ``sched_flags`` default: kube-proxy's, i.e. 0x10
    (mh-port) for mh and 0 otherwise (spec B.2); ``graceful`` default: True for IPVS schedulers
    (spec B.2), False for statistic/numgen/userspace_rr. ``seed`` seeds the scheduler's PRNG
    (twos, statistic, numgen, userspace shuffles). Times in seconds."""
    if scheduler not in SCHEDULERS:
        raise UserError(f"connsim: scheduler: expected one of {', '.join(SCHEDULERS)}, "
                        f"got {scheduler!r}")
    w = workload
    n = w.arrival.shape[0]
    n_services = int(backends.service.max()) + 1
    if n == 0 or w.service.max() >= n_services:
        raise UserError(f"connsim: workload: expected connections to Services < {n_services}")
    for name, v in (("handshake_s", handshake_s), ("close_rtt_s", close_rtt_s),
                    ("fin_wait_timeout_s", fin_wait_timeout_s),
                    ("time_wait_timeout_s", time_wait_timeout_s),
                    ("close_timeout_s", close_timeout_s), ("grace_s", grace_s),
                    ("detect_s", detect_s)):
        if not v >= 0.0:
            raise UserError(f"connsim: {name}: expected seconds >= 0, got {v}")
    if not check_interval_s > 0.0:
        raise UserError(f"connsim: check_interval_s: expected > 0, got {check_interval_s}")
    if not 0.0 <= warmup_frac < 1.0:
        raise UserError(f"connsim: warmup_frac: expected in [0, 1), got {warmup_frac}")
    churn = no_churn() if churn is None else churn
    nb = backends.service.shape[0]
    if churn.backend.size and (churn.backend.min() < 0 or churn.backend.max() >= nb):
        raise UserError("connsim: churn: expected backend slots in range")
    per = np.bincount(backends.service, minlength=n_services)
    if per.min() < 1:
        raise UserError("connsim: backends: expected every Service to have a backend slot")
    if sched_flags is None:
        sched_flags = SVC_F_SCHED_MH_PORT if scheduler == "mh" else 0
    if scheduler == "mh" and per.max() > mh_table_size:
        raise UserError(f"connsim: backends: expected at most mh_table_size ({mh_table_size}) "
                        f"per Service for mh, got {per.max()}")
    st = new_state(n_services, int(per.max()), scheduler, sched_flags,
                   mh_table_size=mh_table_size, seed=int(seed))
    if graceful is None:
        graceful = scheduler in IPVS_SCHEDULERS
    n_warm = int(warmup_frac * n)
    t_lo = float(w.arrival[n_warm])
    t_hi = float(w.arrival[-1])
    bin_s = t_hi / n_bins if n_bins > 0 else 1.0
    fp = np.array([handshake_s, close_rtt_s, fin_wait_timeout_s, time_wait_timeout_s,
                   close_timeout_s, grace_s, detect_s, check_interval_s, t_lo, t_hi, bin_s])
    lb = bool(np.isin(st.sched, (LBLC, LBLCR)).any())
    ip = np.array([int(graceful), min(int(series_backends), nb), int(n_bins), int(log_cap),
                   int(lb)], dtype=np.int64)
    c_work = np.add.reduceat(w.req_size, w.req_ptr[:-1])
    vip = VIP_BASE + np.arange(n_services, dtype=np.int64)
    out = _simulate(st, w.arrival, w.client_addr, w.client_port, w.service, c_work, w.req_ptr,
                    w.req_size, w.req_think, vip, backends.service, backends.addr,
                    backends.rate, backends.workers, backends.present, backends.weight,
                    np.asarray(churn.time, dtype=np.float64),
                    np.asarray(churn.kind, dtype=np.int64),
                    np.asarray(churn.backend, dtype=np.int64), fp, ip)
    (c_backend, c_state, c_wait, c_sojourn, req_resp, b_conns, area, b_work, b_work2, series,
     st_arr, log_t, log_kind, log_id, backlog) = out
    stats = {"events": int(st_arr[0]), "broken": int(st_arr[1]), "refused": int(st_arr[2]),
             "dropped": int(st_arr[3]), "live_at_churn": int(st_arr[4])}
    for k, name in enumerate(EV_NAMES):
        stats[f"events_{name}"] = int(st_arr[8 + k])
    return SimResult(c_backend, c_state, c_wait, c_sojourn, req_resp, b_conns, area, b_work,
                     b_work2, series[:n_bins, :ip[1]], stats, log_t, log_kind, log_id, t_lo,
                     t_hi, bin_s, st, backlog)


def copy_state(st):
    """Deep copy of a SchedState (every array copied)."""
    return type(st)(*[a.copy() for a in st])


def key_disruption(scheduler: str, before_addrs, change: str, addrs, caddr, cport, *,
                   sched_flags: int | None = None, mh_table_size: int = 4093,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Backends chosen for a fixed sample of flow keys before and after one backend-set change
    (issue 5 metrics; validation case 11).

    A fresh single-Service scheduler state (PRNG seeded from ``seed``) gets ``before_addrs``
    added in order (so the last is the list head); it is then copied, and each key
    (caddr[i], cport[i]) is scheduled once and bound on the original, as a new connection would
    be. The same keys are scheduled on the copy after ``change`` ("add": ``addrs`` added;
    "remove": ``addrs`` unlinked — a full table rebuild where the scheduler does one). Both
    runs start from the same PRNG state (the one after the initial adds, before any key).

    "remove" is the end state of a removal: the real server is unlinked at once. kube-proxy's
    graceful termination (spec B.2) first sets its weight to 0 for a while; during that drain
    mh and sh (no fallback flag) answer "no destination" for the removed server's keys
    instead of moving them, and dh/mh keep the table (mh uses last_weight, spec A.8). The
    simulator (:func:`simulate`) models the drain; this function measures where keys land
    once the server is gone.

    Meaningful as "keys moved" only for the hashing schedulers (dh, sh, mh): for every other
    scheduler the backend of a key depends on the order the keys are scheduled in and on the
    counters they leave behind (rr position, least-connection counts, random draws), not on
    the key. Returns (before, after) arrays of backend addresses (-1 = no destination)."""
    if change not in ("add", "remove"):
        raise UserError(f"connsim: change: expected add or remove, got {change!r}")
    if sched_flags is None:
        sched_flags = SVC_F_SCHED_MH_PORT if scheduler == "mh" else 0
    before_addrs = np.asarray(before_addrs, dtype=np.int64)
    addrs = np.asarray(addrs, dtype=np.int64)
    cap = before_addrs.size + (addrs.size if change == "add" else 0)
    st = new_state(1, max(cap, 1), scheduler, sched_flags, mh_table_size=mh_table_size,
                   seed=int(seed))
    ids = _schedulers_module.add_dests(st, 0, before_addrs, BACKEND_PORT)
    st2 = copy_state(st)
    if change == "add":
        _schedulers_module.add_dests(st2, 0, addrs, BACKEND_PORT)
    else:
        _schedulers_module.remove_dests(st2, 0, ids[np.isin(before_addrs, addrs)])
    out = []
    for s in (st, st2):
        d = _schedulers_module.schedule_batch(s, np.zeros(len(caddr), dtype=np.int64), caddr,
                                              cport, VIP_BASE, bind_conns=True)
        out.append(np.where(d >= 0, s.addr[np.maximum(d, 0)].astype(np.int64), -1))
    return out[0], out[1]


def decision_batch(st, svc, caddr, cport) -> dict:
    """Schedule ``len(svc)`` new connections (schedule + bind, as on a connection's first packet)
    on the state ``st`` (mutated: pass a :func:`copy_state`) and return the scheduler's
    operation counts per decision (destinations scanned, table probes, hashes, random draws,
    failed; kernels.schedulers WORK_*). Counts only: the harness times this call
    (harness.connsim_scenarios, ``decision_ns_mean``), kernels/ do no timing."""
    svc = np.ascontiguousarray(svc, dtype=np.int64)
    st.work[:] = 0
    _schedulers_module.schedule_batch(st, svc, caddr, cport, VIP_BASE + svc, bind_conns=True)
    n = max(svc.size, 1)
    names = _schedulers_module.WORK_NAMES
    return {f"decision_{k}": float(st.work[names.index(k)]) / n
            for k in ("scanned", "probes", "hashes", "random", "failed")}
