"""Plain-Python reference for kernels.sync: the runner transcribed from Go, costs by hand.

`NaiveRunner` follows `pkg/util/async/bounded_frequency_runner.go` line by line (Loop, Run,
tryRun) over a fake clock; the limiter is `golang.org/x/time/rate` (bucket initially full,
refill 1/minInterval, capacity burst; a refused request leaves the bucket unchanged).
`naive_sync_ops` recounts one sync's operations straight from the per-Service sizes.
"""

from __future__ import annotations

import math

from kernels.sync import (
    MODES,
    N_ENSURE,
    NOPS,
    OP_CHAINS_LISTED,
    OP_CHAINS_WRITTEN,
    OP_ELEMS_WRITTEN,
    OP_EXECS,
    OP_IPSET_LISTED,
    OP_IPSET_OPS,
    OP_IPVS_OPS,
    OP_PORTS_GO,
    OP_RS_LISTED,
    OP_RULES_GEN,
    OP_RULES_WRITTEN,
    OP_SYNCS,
    OP_TABLE_COPY,
    OP_VS_LISTED,
    SZ_CHAINS,
    SZ_ELEMS,
    SZ_EPS,
    SZ_PORTS,
    SZ_RS,
    SZ_RULES,
    SZ_TOP_RULES,
    SZ_VS,
)


def naive_sync_ops(mode, full, sizes, const, changed):
    """Operation counts of one sync; ``changed`` maps Service -> changes since the last sync."""
    rows = [list(map(int, r)) for r in sizes]
    top_fixed, top_chains, ensure_nat = (int(x) for x in const)
    ops = [0.0] * NOPS
    ops[OP_SYNCS] = 1
    ops[OP_PORTS_GO] = sum(r[SZ_PORTS] for r in rows)
    rules = sum(r[SZ_RULES] for r in rows)
    chains = sum(r[SZ_CHAINS] for r in rows)
    top = sum(r[SZ_TOP_RULES] for r in rows) + top_fixed
    d_rules = sum(rows[s][SZ_RULES] for s in changed)
    d_chains = sum(rows[s][SZ_CHAINS] for s in changed)
    if mode in ("iptables", "iptables-nft"):
        ops[OP_RULES_GEN] = rules + top
        ops[OP_RULES_WRITTEN] = rules + top if full else top + d_rules
        ops[OP_CHAINS_WRITTEN] = chains + top_chains if full else top_chains + d_chains
        ops[OP_EXECS] = N_ENSURE if full else 0
        if mode == "iptables":
            ops[OP_TABLE_COPY] = (rules + top) * (1 + (ensure_nat if full else 0))
    elif mode == "nftables":
        ops[OP_CHAINS_LISTED] = chains + top_chains
        if full:
            ops[OP_RULES_GEN] = ops[OP_RULES_WRITTEN] = rules + top
            ops[OP_CHAINS_WRITTEN] = chains + top_chains
            ops[OP_ELEMS_WRITTEN] = sum(r[SZ_ELEMS] for r in rows)
        else:
            ops[OP_RULES_GEN] = ops[OP_RULES_WRITTEN] = d_rules
            ops[OP_CHAINS_WRITTEN] = d_chains
            ops[OP_ELEMS_WRITTEN] = sum(rows[s][SZ_PORTS] * rows[s][SZ_EPS] for s in changed)
    else:
        ops[OP_RULES_GEN] = ops[OP_RULES_WRITTEN] = ops[OP_TABLE_COPY] = top_fixed
        ops[OP_CHAINS_WRITTEN] = top_chains
        for s, c in changed.items():
            eps = rows[s][SZ_EPS]
            replaced = min(c, eps) if eps > 0 else min(c, 1)
            ops[OP_IPVS_OPS] += 2 * replaced * rows[s][SZ_VS]
            ops[OP_IPSET_OPS] += 2 * replaced * rows[s][SZ_PORTS]
        if full:
            ops[OP_VS_LISTED] = sum(r[SZ_VS] for r in rows)
            ops[OP_RS_LISTED] = sum(r[SZ_RS] for r in rows)
            ops[OP_IPSET_LISTED] = sum(r[SZ_ELEMS] for r in rows)
    return ops


class TokenBucket:
    """golang.org/x/time/rate.Limiter.AllowN(now, 1): full at start, refill qps, cap burst."""

    def __init__(self, qps, burst):
        self.qps, self.burst = qps, burst
        self.tokens, self.last = float(burst), 0.0

    def try_accept(self, now):
        tokens = min(self.burst, self.tokens + (now - self.last) * self.qps)
        if tokens >= 1.0 - 1e-9:
            self.tokens, self.last = tokens - 1.0, now
            return True
        return False

    def tokens_at(self, now):
        return min(self.burst, self.tokens + (now - self.last) * self.qps)


class NaiveRunner:
    """BoundedFrequencyRunner over a fake clock, with kube-proxy's proxier as ``fn``."""

    def __init__(self, arrivals, services, sizes, const, cost_ns, mode, partial, coalesce,
                 min_interval, max_interval, burst, full_period, t_end):
        assert mode in MODES
        self.arrivals, self.services = list(arrivals), list(services)
        self.sizes, self.const, self.cost = sizes, const, list(cost_ns)
        self.mode, self.partial, self.coalesce = mode, partial, coalesce
        self.min_interval, self.max_interval = min_interval, max_interval
        self.full_period, self.t_end = full_period, t_end
        self.limiter = TokenBucket(1.0 / min_interval, burst) if min_interval > 0 else None
        self.now = 0.0
        self.last_run = 0.0  # steady state: the last run ended at t = 0
        self.timer = None  # absolute time the timer fires; None = stopped
        self.run_chan = False  # `run` channel, capacity 1
        self.delivered = 0  # arrivals handed to the proxier (each calls Run())
        self.pending = []  # change tracker: indices of changes not yet synced
        self.last_full = 0.0
        self.done = [math.nan] * len(self.arrivals)
        self.syncs = []  # (start, duration, full, [change indices])

    # proxier side -------------------------------------------------------------------------
    def deliver_until(self, t):
        """Informer events up to time t: record the change, then proxier.Sync() -> Run()."""
        while self.delivered < len(self.arrivals) and self.arrivals[self.delivered] <= t:
            self.pending.append(self.delivered)
            self.delivered += 1
            self.Run()

    def sync_proxy_rules(self):
        start = self.now
        if self.coalesce:
            taken, self.pending = self.pending, []
        else:
            taken, self.pending = self.pending[:1], self.pending[1:]
        changed = {}
        for i in taken:
            changed[self.services[i]] = changed.get(self.services[i], 0) + 1
        full = (not self.partial) or (start - self.last_full >= self.full_period)
        ops = naive_sync_ops(self.mode, full, self.sizes, self.const, changed)
        duration = sum(o * c for o, c in zip(ops, self.cost, strict=True)) * 1e-9
        if full:
            self.last_full = start
        # fn runs synchronously: the clock moves on while it runs, informers keep delivering.
        self.deliver_until(start + duration)
        self.now = start + duration
        for i in taken:
            self.done[i] = self.now
        self.syncs.append((start, duration, full, taken))
        if not self.coalesce and self.pending:
            self.Run()

    # runner side (bounded_frequency_runner.go) --------------------------------------------
    def Run(self):
        self.run_chan = True  # select { case bfr.run <- struct{}{}: default: }

    def try_accept(self):
        return True if self.limiter is None else self.limiter.try_accept(self.now)

    def tryRun(self):
        if self.try_accept():
            self.sync_proxy_rules()  # bfr.fn()
            self.last_run = self.now
            self.timer = self.now + self.max_interval  # timer.Stop(); timer.Reset(maxInterval)
            return
        elapsed = self.now - self.last_run
        next_possible = self.min_interval - elapsed
        if next_possible <= 0:  # Go re-fires immediately until the bucket has a token
            next_possible = (1.0 - self.limiter.tokens_at(self.now)) / self.limiter.qps
        next_scheduled = self.timer - self.now
        if next_possible < next_scheduled:
            next_scheduled = next_possible
        self.timer = self.now + next_scheduled

    def loop(self):
        self.timer = self.max_interval  # bfr.timer.Reset(bfr.maxInterval)
        while True:
            if self.run_chan:
                self.run_chan = False
                self.tryRun()
            else:
                nxt = (self.arrivals[self.delivered] if self.delivered < len(self.arrivals)
                       else math.inf)
                if nxt <= self.timer:
                    if nxt > self.t_end:
                        break
                    self.now = nxt
                    self.deliver_until(nxt)
                else:
                    if self.timer > self.t_end:
                        break
                    self.now = self.timer
                    self.tryRun()
            if self.now > self.t_end:
                break
        return self
