"""Connection workloads for the connection-level simulator (issue 5, "Connection simulator").

A workload is a set of TCP connections, each with an arrival time, a client address and source
port (the flow key hash schedulers see, spec A.6–A.8), a Service, and a list of requests
(``requests × service time``). Everything random is drawn here, once, from one integer seed, so
the simulator itself is deterministic given the workload (and the scheduler's own seed).

Units: seconds. A request's ``size`` is its service time on a worker of rate 1; a backend worker
of rate r serves it in ``size / r``.

Arrivals (``ARRIVALS``):
  * ``poisson``  — exponential inter-arrival times of rate ``rate``.
  * ``mmpp2``    — bursty on/off, a 2-state Markov-modulated Poisson process: the high state is
    occupied a fraction ``on_fraction`` of the time with rate ``burst_ratio·rate``, the low state
    carries the rest so the long-run mean rate is ``rate``; state sojourns are exponential with
    means ``on_fraction·cycle_s`` and ``(1−on_fraction)·cycle_s``.
  * ``trace``    — arrival times given as an array (sorted, seconds).
Clients (``CLIENTS``):
  * ``uniform``  — ``n_clients`` addresses (10.0.0.1 …) chosen uniformly; source port uniform in
    Linux's default ephemeral range 32768–60999.
  * ``zipf``     — as ``uniform`` but client i is chosen with probability ∝ 1/(i+1)^client_zipf_s.
  * ``nat``      — ``n_nat`` gateway addresses (100.64.0.1 …, uniform) with source ports uniform in
    1024–65535: few addresses, many ports (heavy clients behind NAT).
Services: ``uniform`` or ``zipf`` (probability ∝ 1/(i+1)^service_zipf_s) over ``n_services``.
Request sizes (``SIZE_DISTS``, given mean and squared coefficient of variation SCV):
  ``exponential`` (SCV 1), ``deterministic`` (SCV 0), ``lognormal`` (σ² = ln(1+SCV)),
  ``pareto`` (classic Pareto, shape α = 1 + √(1 + 1/SCV) so that α(α−2) = 1/SCV; needs SCV > 0).
Requests per connection: exactly 1 when ``requests_mean == 1``; otherwise geometric on {1, 2, …}
with that mean — keepalive connections that issue requests one after another, separated by
exponential think times of mean ``think_mean_s`` (the first request follows the handshake).
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np
from numba import njit

from harness.errors import UserError

ARRIVALS = ("poisson", "mmpp2", "trace")
CLIENTS = ("uniform", "zipf", "nat")
POPULARITY = ("uniform", "zipf")
SIZE_DISTS = ("exponential", "deterministic", "lognormal", "pareto")

CLIENT_BASE = 0x0A000001  # 10.0.0.1
NAT_BASE = 0x64400001  # 100.64.0.1 (carrier-grade NAT range)
EPHEMERAL_LO, EPHEMERAL_HI = 32768, 60999  # net.ipv4.ip_local_port_range default
NAT_PORT_LO, NAT_PORT_HI = 1024, 65535

Workload = namedtuple(
    "Workload",
    "arrival client_addr client_port service req_ptr req_size req_think",
)
Workload.__doc__ = """Connections as arrays (n connections, R requests in total).

arrival float64[n] (s, non-decreasing); client_addr int64[n] (host-order IPv4);
client_port int64[n]; service int64[n]; req_ptr int64[n+1] (requests of connection i are
req_ptr[i]:req_ptr[i+1]); req_size float64[R] (s of work at rate 1); req_think float64[R]
(s between the previous response, or the handshake, and this request; 0 for the first).
"""


def popularity_weights(n: int, kind: str, zipf_s: float) -> np.ndarray:
    """Probability of each of ``n`` items: uniform, or Zipf ∝ 1/(i+1)^s (float64[n], sums to 1)."""
    if kind == "uniform" or zipf_s == 0.0:
        w = np.ones(n)
    else:
        w = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** zipf_s
    return w / w.sum()


def pareto_shape(scv: float) -> float:
    """Shape α of the classic Pareto with squared coefficient of variation ``scv``."""
    return 1.0 + np.sqrt(1.0 + 1.0 / scv)


@njit(cache=True)
def _pick(cdf: np.ndarray) -> int:
    """Index drawn from a cumulative distribution (last entry 1)."""
    i = np.searchsorted(cdf, np.random.random(), side="right")
    return min(i, cdf.shape[0] - 1)


@njit(cache=True)
def _size(dist: int, mean: float, scv: float) -> float:
    if dist == 0:
        return np.random.exponential(mean)
    if dist == 1:
        return mean
    if dist == 2:
        s2 = np.log(1.0 + scv)
        return np.exp(np.random.normal(np.log(mean) - 0.5 * s2, np.sqrt(s2)))
    alpha = 1.0 + np.sqrt(1.0 + 1.0 / scv)
    xm = mean * (alpha - 1.0) / alpha
    return xm / (1.0 - np.random.random()) ** (1.0 / alpha)


@njit(cache=True)
def _generate(n, rate, seed, arrival_kind, burst_ratio, on_fraction, cycle_s, trace,
              client_kind, client_cdf, n_nat, service_cdf, size_dist, mean_size, scv,
              requests_mean, think_mean):
    np.random.seed(seed)
    arrival = np.empty(n)
    if arrival_kind == 0:
        t = 0.0
        for i in range(n):
            t += np.random.exponential(1.0 / rate)
            arrival[i] = t
    elif arrival_kind == 1:
        hi = burst_ratio * rate
        lo = (rate - on_fraction * hi) / (1.0 - on_fraction)
        mean_on = on_fraction * cycle_s
        mean_off = (1.0 - on_fraction) * cycle_s
        t = 0.0
        on = np.random.random() < on_fraction
        state_end = np.random.exponential(mean_on if on else mean_off)
        i = 0
        while i < n:
            r = hi if on else lo
            cand = t + (np.random.exponential(1.0 / r) if r > 0.0 else np.inf)
            if cand <= state_end:
                t = cand
                arrival[i] = t
                i += 1
            else:
                t = state_end
                on = not on
                state_end = t + np.random.exponential(mean_on if on else mean_off)
    else:
        for i in range(n):
            arrival[i] = trace[i]
    client_addr = np.empty(n, np.int64)
    client_port = np.empty(n, np.int64)
    for i in range(n):
        if client_kind == 2:
            client_addr[i] = NAT_BASE + np.random.randint(0, n_nat)
            client_port[i] = np.random.randint(NAT_PORT_LO, NAT_PORT_HI + 1)
        else:
            client_addr[i] = CLIENT_BASE + _pick(client_cdf)
            client_port[i] = np.random.randint(EPHEMERAL_LO, EPHEMERAL_HI + 1)
    service = np.empty(n, np.int64)
    for i in range(n):
        service[i] = _pick(service_cdf)
    req_ptr = np.empty(n + 1, np.int64)
    req_ptr[0] = 0
    p = 1.0 / requests_mean
    for i in range(n):
        k = 1 if requests_mean == 1.0 else np.random.geometric(p)
        req_ptr[i + 1] = req_ptr[i] + k
    total = req_ptr[n]
    req_size = np.empty(total)
    req_think = np.zeros(total)
    for i in range(n):
        for j in range(req_ptr[i], req_ptr[i + 1]):
            req_size[j] = _size(size_dist, mean_size, scv)
            if j > req_ptr[i] and think_mean > 0.0:
                req_think[j] = np.random.exponential(think_mean)
    return arrival, client_addr, client_port, service, req_ptr, req_size, req_think


def _choice(name: str, value: str, allowed: tuple) -> int:
    if value not in allowed:
        raise UserError(f"workload: {name}: expected one of {', '.join(allowed)}, got {value!r}")
    return allowed.index(value)


def generate_workload(
    n_connections: int,
    rate: float,
    seed: int,
    *,
    arrivals: str = "poisson",
    burst_ratio: float = 4.0,
    on_fraction: float = 0.2,
    cycle_s: float = 10.0,
    trace: np.ndarray | None = None,
    clients: str = "uniform",
    n_clients: int = 10_000,
    client_zipf_s: float = 1.0,
    n_nat: int = 4,
    popularity: str = "uniform",
    n_services: int = 1,
    service_zipf_s: float = 1.0,
    size_dist: str = "exponential",
    mean_service_s: float = 1.0,
    size_scv: float = 1.0,
    requests_mean: float = 1.0,
    think_mean_s: float = 0.0,
) -> Workload:
    """Draw ``n_connections`` connections (see the module docstring); deterministic in ``seed``.

    ``rate`` is the mean connection arrival rate (1/s); ignored for ``arrivals="trace"``, whose
    times come from ``trace`` (float64, sorted, at least ``n_connections`` entries).
    """
    a = _choice("arrivals", arrivals, ARRIVALS)
    c = _choice("clients", clients, CLIENTS)
    _choice("popularity", popularity, POPULARITY)
    d = _choice("size_dist", size_dist, SIZE_DISTS)
    if n_connections < 1:
        raise UserError(f"workload: connections: expected >= 1, got {n_connections}")
    if a != 2 and not rate > 0.0:
        raise UserError(f"workload: rate: expected > 0, got {rate}")
    if a == 1 and not (0.0 < on_fraction < 1.0 and 1.0 <= burst_ratio <= 1.0 / on_fraction):
        raise UserError("workload: burst_ratio/on_fraction: expected 0 < on_fraction < 1 and "
                        f"1 <= burst_ratio <= 1/on_fraction, got {burst_ratio}/{on_fraction}")
    if a == 1 and not cycle_s > 0.0:
        raise UserError(f"workload: cycle_s: expected > 0, got {cycle_s}")
    if a == 2:
        if trace is None or len(trace) < n_connections:
            raise UserError("workload: trace: expected an array of >= n_connections times")
        trace = np.ascontiguousarray(trace[:n_connections], dtype=np.float64)
        if np.any(np.diff(trace) < 0) or trace[0] < 0:
            raise UserError("workload: trace: expected non-negative, non-decreasing times")
    else:
        trace = np.zeros(1)
    if d == 0 and size_scv != 1.0:
        raise UserError(f"workload: size_scv: expected 1 for exponential sizes, got {size_scv}")
    if d == 1 and size_scv != 0.0:
        raise UserError(f"workload: size_scv: expected 0 for deterministic sizes, got {size_scv}")
    if d >= 2 and not size_scv > 0.0:
        raise UserError(f"workload: size_scv: expected > 0 for {size_dist} sizes, got {size_scv}")
    if not mean_service_s > 0.0:
        raise UserError(f"workload: mean_service_s: expected > 0, got {mean_service_s}")
    if not requests_mean >= 1.0:
        raise UserError(f"workload: requests_mean: expected >= 1, got {requests_mean}")
    if think_mean_s < 0.0:
        raise UserError(f"workload: think_mean_s: expected >= 0, got {think_mean_s}")
    if n_clients < 1 or n_nat < 1 or n_services < 1:
        raise UserError("workload: n_clients/n_nat/n_services: expected >= 1, got "
                        f"{n_clients}/{n_nat}/{n_services}")
    client_cdf = np.cumsum(popularity_weights(
        n_clients, "zipf" if clients == "zipf" else "uniform", client_zipf_s))
    service_cdf = np.cumsum(popularity_weights(n_services, popularity, service_zipf_s))
    client_cdf[-1] = service_cdf[-1] = 1.0
    out = _generate(int(n_connections), float(rate), int(seed), a, float(burst_ratio),
                    float(on_fraction), float(cycle_s), trace, c, client_cdf, int(n_nat),
                    service_cdf, d, float(mean_service_s), float(size_scv),
                    float(requests_mean), float(think_mean_s))
    return Workload(*out)
