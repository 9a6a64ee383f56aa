"""Connection-simulator throughput (kernels.connsim), beside an equivalent SimPy model.

Scenario (both models): one Service, 4 backends with 1 worker each, IPVS rr, Poisson arrivals at
ρ = 0.8, exponential request sizes (mean 10 ms), one request per connection; per connection the
director binds it (inactconns++), the handshake (0.5 ms) makes it active, the request queues
FCFS for the backend's worker, the close makes it inactive, and it expires after FIN (0.5 ms) +
TIME_WAIT (120 s) (spec A.3).

* ``test_connsim_throughput``: simulated connections per second of kernels.connsim (200k
  connections per call, JIT warmed first). ``extra_info``: ``connections_per_s``, events/s.
* ``test_connsim_vs_simpy``: the same (5 rounds), plus the SimPy model of the same scenario timed
  in the same session (best of 3; ``simpy_connections_per_s``) and ``speedup_vs_simpy`` (target
  >= 50). Best against best: on this shared 2-vCPU VM the kernel's rate moved between 2.3 and
  4.3 M connections/s from one process to the next (user time: page faults and CPU migrations
  were the same in fast and slow runs), SimPy's by ~10%. Both models
  run the SAME 20k-connection workload once more for ``kernel_mean_sojourn_s`` and
  ``simpy_mean_sojourn_s``, asserted equal to 1e-9 (sojourn = first request to last response,
  handshake excluded, every connection, no warm-up cut, in both). The 200k-connection timing
  workload is a different sample path; its mean is ``kernel_200k_mean_sojourn_s``. Outside the
  quick subset.
"""

from __future__ import annotations

import random
import time

import numpy as np
import pytest
import simpy

from kernels.connsim import CS_EXPIRED, make_backends, simulate
from kernels.workload import generate_workload

N_BACKENDS = 4
RHO = 0.8
MEAN_S = 0.01
HANDSHAKE_S = 0.0005
TIME_WAIT_S = 120.0
N_CONN = 200_000
N_SIMPY = 20_000


def _workload(n: int, seed: int = 1):
    return generate_workload(n, RHO * N_BACKENDS / MEAN_S, seed, mean_service_s=MEAN_S)


def _run_kernel(w):
    return simulate(w, make_backends([N_BACKENDS]), "rr", handshake_s=HANDSHAKE_S,
                    close_rtt_s=HANDSHAKE_S, time_wait_timeout_s=TIME_WAIT_S)


def simpy_model(w) -> tuple[float, int]:
    """The same scenario in SimPy: processes per connection, a Resource per backend, IPVS rr
    over the destination list and its counters. Returns (mean sojourn, connections done)."""
    env = simpy.Environment()
    workers = [simpy.Resource(env, capacity=1) for _ in range(N_BACKENDS)]
    dests = list(range(N_BACKENDS - 1, -1, -1))  # list order: newest first
    weight = [1] * N_BACKENDS
    act = [0] * N_BACKENDS
    inact = [0] * N_BACKENDS
    rr = {"pos": -1}
    sojourn = []

    def schedule() -> int:
        n = len(dests)
        for k in range(1, n + 1):
            p = (rr["pos"] + k) % n
            if weight[dests[p]] > 0:
                rr["pos"] = p
                return dests[p]
        return -1

    def connection(i: int, b: int):
        inact[b] += 1
        yield env.timeout(HANDSHAKE_S)
        inact[b] -= 1
        act[b] += 1
        t0 = env.now
        with workers[b].request() as req:
            yield req
            yield env.timeout(float(w.req_size[i]))
        sojourn.append(env.now - t0)
        act[b] -= 1
        inact[b] += 1
        yield env.timeout(HANDSHAKE_S + TIME_WAIT_S)
        inact[b] -= 1

    def arrivals():
        last = 0.0
        for i in range(len(w.arrival)):
            yield env.timeout(float(w.arrival[i]) - last)
            last = float(w.arrival[i])
            env.process(connection(i, schedule()))

    random.seed(0)
    env.process(arrivals())
    env.run()
    return float(np.mean(sojourn)), len(sojourn)


def test_connsim_throughput(benchmark, warm_jit, record_info):
    w = _workload(N_CONN)
    warm_jit(_run_kernel, _workload(1000))
    r = benchmark.pedantic(_run_kernel, args=(w,), rounds=3, iterations=1)
    assert np.all(r.conn_state == CS_EXPIRED)
    record_info(per_call=N_CONN, unit="connections", events_per_connection=r.stats["events"]
                / N_CONN, mean_sojourn_s=float(np.mean(r.conn_sojourn)))


@pytest.mark.slow
def test_connsim_vs_simpy(benchmark, warm_jit, record_info):
    w = _workload(N_CONN)
    warm_jit(_run_kernel, _workload(1000))
    r = benchmark.pedantic(_run_kernel, args=(w,), rounds=5, iterations=1)
    ws = _workload(N_SIMPY)
    best = np.inf
    for _ in range(3):
        t0 = time.perf_counter()
        simpy_mean, done = simpy_model(ws)
        best = min(best, time.perf_counter() - t0)
    assert done == N_SIMPY
    kernel_rate = N_CONN / benchmark.stats.stats.min
    simpy_rate = N_SIMPY / best
    kernel_mean = float(np.mean(_run_kernel(ws).conn_sojourn))
    assert simpy_mean == pytest.approx(kernel_mean, rel=1e-9)
    record_info(per_call=N_CONN, unit="connections", simpy_connections_per_s=simpy_rate,
                speedup_vs_simpy=kernel_rate / simpy_rate, kernel_mean_sojourn_s=kernel_mean,
                simpy_mean_sojourn_s=simpy_mean,
                kernel_200k_mean_sojourn_s=float(np.mean(r.conn_sojourn)))
