"""Workload generator: determinism, rates, mixes and size moments (tolerances stated per test)."""

import numpy as np
import pytest

from harness.errors import UserError
from kernels.workload import (
    EPHEMERAL_HI,
    EPHEMERAL_LO,
    generate_workload,
    pareto_shape,
    popularity_weights,
)


def test_deterministic_for_seed():
    a = generate_workload(5000, 3.0, 7, requests_mean=3, think_mean_s=0.5, clients="zipf")
    b = generate_workload(5000, 3.0, 7, requests_mean=3, think_mean_s=0.5, clients="zipf")
    c = generate_workload(5000, 3.0, 8, requests_mean=3, think_mean_s=0.5, clients="zipf")
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.arrival, c.arrival)


@pytest.mark.parametrize("arrivals", ["poisson", "mmpp2"])
def test_mean_rate(arrivals):
    """Long-run rate within 3% of the target over 200k arrivals (MMPP: 20k cycles, sd ~1%)."""
    w = generate_workload(200_000, 50.0, 1, arrivals=arrivals, cycle_s=0.2)
    assert 200_000 / w.arrival[-1] == pytest.approx(50.0, rel=0.03)
    assert np.all(np.diff(w.arrival) >= 0)


def test_mmpp_is_burstier_than_poisson():
    """Index of dispersion of counts per 1 s window: ~1 for Poisson, clearly > 1 for MMPP-2."""
    disp = {}
    for kind in ("poisson", "mmpp2"):
        w = generate_workload(100_000, 100.0, 2, arrivals=kind, cycle_s=5.0)
        counts = np.bincount(w.arrival.astype(np.int64))[:-1]
        disp[kind] = counts.var() / counts.mean()
    assert disp["poisson"] == pytest.approx(1.0, abs=0.15)
    assert disp["mmpp2"] > 10.0


def test_trace_arrivals():
    trace = np.array([0.0, 0.5, 0.5, 2.0])
    w = generate_workload(3, 1.0, 0, arrivals="trace", trace=trace)
    np.testing.assert_array_equal(w.arrival, [0.0, 0.5, 0.5])
    with pytest.raises(UserError):
        generate_workload(3, 1.0, 0, arrivals="trace", trace=np.array([1.0, 0.5, 2.0]))


def test_client_populations():
    w = generate_workload(50_000, 1.0, 3, clients="nat", n_nat=3)
    assert len(np.unique(w.client_addr)) == 3
    assert len(np.unique(w.client_port)) > 30_000
    w = generate_workload(50_000, 1.0, 3, n_clients=1000)
    assert w.client_port.min() >= EPHEMERAL_LO and w.client_port.max() <= EPHEMERAL_HI
    counts = np.bincount(w.client_addr - w.client_addr.min())
    assert counts.max() / counts.mean() < 2.0
    w = generate_workload(50_000, 1.0, 3, clients="zipf", n_clients=1000, client_zipf_s=1.0)
    top = np.bincount(w.client_addr - w.client_addr.min()).max() / 50_000
    assert top == pytest.approx(popularity_weights(1000, "zipf", 1.0)[0], rel=0.05)


def test_service_popularity():
    """Zipf(1) over 100 Services: share of Service 0 within 5% of 1/H_100."""
    w = generate_workload(100_000, 1.0, 4, n_services=100, popularity="zipf")
    share = np.mean(w.service == 0)
    assert share == pytest.approx(1.0 / np.sum(1.0 / np.arange(1, 101)), rel=0.05)
    assert w.service.max() == 99


@pytest.mark.parametrize(("dist", "scv"), [("exponential", 1.0), ("deterministic", 0.0),
                                           ("lognormal", 4.0), ("lognormal", 0.25)])
def test_size_moments(dist, scv):
    """Sample mean within 2% and SCV within 10% (lognormal SCV 4: 15%) over 400k sizes."""
    w = generate_workload(400_000, 1.0, 5, size_dist=dist, size_scv=scv, mean_service_s=2.0)
    m = w.req_size.mean()
    assert m == pytest.approx(2.0, rel=0.02)
    assert w.req_size.var() / m**2 == pytest.approx(scv, rel=0.15 if scv > 1 else 0.10, abs=1e-9)


def test_pareto_size():
    """Pareto: mean within 3%; minimum = x_m; shape solves alpha(alpha-2) = 1/SCV."""
    a = pareto_shape(2.0)
    assert a * (a - 2) == pytest.approx(0.5)
    w = generate_workload(400_000, 1.0, 6, size_dist="pareto", size_scv=2.0)
    assert w.req_size.mean() == pytest.approx(1.0, rel=0.03)
    assert w.req_size.min() >= (a - 1) / a - 1e-12


def test_keepalive_requests():
    """Geometric requests per connection, mean 8 (within 2%); think times only after the first."""
    w = generate_workload(50_000, 1.0, 9, requests_mean=8.0, think_mean_s=2.0)
    k = np.diff(w.req_ptr)
    assert k.min() == 1 and k.mean() == pytest.approx(8.0, rel=0.02)
    assert np.all(w.req_think[w.req_ptr[:-1]] == 0.0)
    later = np.ones(w.req_think.shape, bool)
    later[w.req_ptr[:-1]] = False
    assert w.req_think[later].mean() == pytest.approx(2.0, rel=0.02)


def test_bad_input():
    with pytest.raises(UserError, match="size_scv"):
        generate_workload(10, 1.0, 0, size_dist="exponential", size_scv=2.0)
    with pytest.raises(UserError, match="arrivals"):
        generate_workload(10, 1.0, 0, arrivals="bursty")
    with pytest.raises(UserError, match="burst_ratio"):
        generate_workload(10, 1.0, 0, arrivals="mmpp2", burst_ratio=10.0, on_fraction=0.2)
