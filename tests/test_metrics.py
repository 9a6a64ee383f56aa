"""Metrics: exact fairness cases (validation case 1), binomial CoV (case 2), disruption."""

import numpy as np
import pytest

from harness.errors import UserError
from kernels.metrics import (
    changed_share,
    cov,
    jain_index,
    latency_percentiles,
    normalise_by_group,
    optimal_disruption,
    peak_to_mean,
)


@pytest.mark.parametrize(
    ("x", "expected"),
    [((1, 1, 1, 1), 1.0), ((1, 0, 0, 0), 0.25), ((1, 2, 3, 4), 0.8333333333333334),
     ((5, 5, 5, 0, 0, 0, 0, 0), 3 / 8), ((0, 0), 1.0)],
)
def test_jain_exact(x, expected):
    """Validation case 1: exact values (k of n equally loaded -> k/n)."""
    assert jain_index(x) == pytest.approx(expected, rel=1e-12)


def test_jain_is_one_over_one_plus_cov_squared():
    rng = np.random.default_rng(3)
    for _ in range(20):
        x = rng.exponential(size=50)
        assert jain_index(x) == pytest.approx(1.0 / (1.0 + cov(x) ** 2), rel=1e-12)


def test_peak_to_mean_and_cov_exact():
    assert peak_to_mean([1, 2, 3, 6]) == pytest.approx(2.0)
    assert cov([1, 1, 1]) == 0.0
    assert cov([0, 2]) == pytest.approx(1.0)


@pytest.mark.parametrize(("m", "n", "cov_expected", "jain_expected"),
                         [(10_000, 10, 0.0300, 0.9991), (10_000, 100, 0.0995, 0.990)])
def test_binomial_cov(m, n, cov_expected, jain_expected):
    """Validation case 2: uniform assignment of m to n, mean CoV over 200 seeds within 5%."""
    covs, jains = [], []
    for seed in range(200):
        counts = np.bincount(np.random.default_rng(seed).integers(0, n, m), minlength=n)
        covs.append(cov(counts))
        jains.append(jain_index(counts))
    assert np.sqrt((n - 1) / m) == pytest.approx(cov_expected, abs=5e-5)
    assert np.mean(covs) == pytest.approx(cov_expected, rel=0.05)
    assert np.mean(jains) == pytest.approx(jain_expected, abs=5e-4)


def test_normalise_by_group_pools_services():
    x = normalise_by_group([10, 30, 1, 3], [0, 0, 1, 1], 2)
    np.testing.assert_allclose(x, [0.5, 1.5, 0.5, 1.5])
    assert jain_index([10, 30]) == pytest.approx(jain_index(x))


def test_percentiles():
    p = latency_percentiles(np.arange(1001.0), (50, 99, 99.9))
    np.testing.assert_allclose(p, [500, 990, 999])
    assert np.isnan(latency_percentiles([])).all()


def test_disruption_and_optimum():
    assert changed_share([0, 1, 2, 3], [0, 1, 2, -1]) == 0.25
    assert optimal_disruption(range(5), range(4)) == pytest.approx(0.2)
    assert optimal_disruption(range(4), range(5)) == pytest.approx(0.2)
    assert optimal_disruption(range(10), list(range(9)) + [10]) == pytest.approx(0.1)


def test_bad_input():
    with pytest.raises(UserError):
        jain_index([])
    with pytest.raises(UserError):
        changed_share([1, 2], [1])
