"""Load-balancing metrics: fairness, latency percentiles, disruption (issue 5, "Metrics").

* Jain's index J(x) = (Σx)² / (n·Σx²) ∈ [1/n, 1] (validation case 1); J = 1/(1 + CoV²) with the
  population coefficient of variation CoV = σ/μ (validation case 2). An all-zero vector has J = 1
  (nothing to be unfair about) and CoV = 0.
* Peak-to-mean = max(x) / mean(x).
* Latency percentiles by linear interpolation between order statistics (numpy's default).
* Disruption on a backend-set change: the share of flow keys whose backend changes, and its
  optimum 1 − |A ∩ B| / max(|A|, |B|) for sets A → B — k/N when k of N backends leave, k/(N+k) when
  k join (validation case 11).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from harness.errors import UserError


@njit(cache=True)
def _jain(x: np.ndarray) -> float:
    s = 0.0
    s2 = 0.0
    for v in x:
        s += v
        s2 += v * v
    if s2 == 0.0:
        return 1.0
    return s * s / (x.shape[0] * s2)


@njit(cache=True)
def _cov(x: np.ndarray) -> float:
    n = x.shape[0]
    m = 0.0
    for v in x:
        m += v
    m /= n
    if m == 0.0:
        return 0.0
    var = 0.0
    for v in x:
        var += (v - m) * (v - m)
    return np.sqrt(var / n) / m


@njit(cache=True)
def _peak_to_mean(x: np.ndarray) -> float:
    m = x.mean()
    return x.max() / m if m > 0.0 else 1.0


@njit(cache=True)
def _normalise_by_group(x: np.ndarray, group: np.ndarray, n_groups: int) -> np.ndarray:
    tot = np.zeros(n_groups)
    cnt = np.zeros(n_groups)
    for i in range(x.shape[0]):
        tot[group[i]] += x[i]
        cnt[group[i]] += 1.0
    out = np.empty(x.shape[0])
    for i in range(x.shape[0]):
        m = tot[group[i]] / cnt[group[i]]
        out[i] = x[i] / m if m > 0.0 else 1.0
    return out


@njit(cache=True)
def _changed_share(before: np.ndarray, after: np.ndarray) -> float:
    moved = 0
    for i in range(before.shape[0]):
        if before[i] != after[i]:
            moved += 1
    return moved / before.shape[0]


def _vec(x, name: str) -> np.ndarray:
    a = np.ascontiguousarray(x, dtype=np.float64)
    if a.ndim != 1 or a.shape[0] == 0:
        raise UserError(f"metrics: {name}: expected a non-empty 1-d array, got shape {a.shape}")
    return a


def jain_index(x) -> float:
    """Jain's fairness index of the non-negative loads ``x`` (validation case 1)."""
    return float(_jain(_vec(x, "x")))


def cov(x) -> float:
    """Population coefficient of variation σ/μ of ``x`` (validation case 2)."""
    return float(_cov(_vec(x, "x")))


def peak_to_mean(x) -> float:
    """max(x) / mean(x); 1 for an all-zero vector."""
    return float(_peak_to_mean(_vec(x, "x")))


def normalise_by_group(x, group, n_groups: int) -> np.ndarray:
    """Each ``x[i]`` divided by the mean of its group (e.g. per-backend counts by Service).

    Pooling backends of many Services this way makes one fairness vector whose ideal is all ones;
    for a single group it is a rescaling, which leaves Jain, CoV and peak-to-mean unchanged.
    """
    g = np.ascontiguousarray(group, dtype=np.int64)
    xv = _vec(x, "x")
    if g.shape != xv.shape or g.min() < 0 or g.max() >= n_groups:
        raise UserError("metrics: group: expected one group id in [0, n_groups) per element")
    return _normalise_by_group(xv, g, int(n_groups))


def latency_percentiles(latency, qs=(50.0, 90.0, 99.0, 99.9)) -> np.ndarray:
    """Percentiles ``qs`` (in %) of ``latency``; NaN for an empty sample."""
    a = np.asarray(latency, dtype=np.float64)
    if a.size == 0:
        return np.full(len(qs), np.nan)
    return np.percentile(a, qs)


def changed_share(before, after) -> float:
    """Share of flow keys mapped to a different backend in ``after`` than in ``before``.

    Arrays of backend ids per key (−1 = no backend); a key that loses its backend counts as moved.
    """
    b = np.ascontiguousarray(before, dtype=np.int64)
    a = np.ascontiguousarray(after, dtype=np.int64)
    if b.shape != a.shape or b.ndim != 1 or b.shape[0] == 0:
        raise UserError("metrics: before/after: expected equal-length non-empty 1-d arrays")
    return float(_changed_share(b, a))


def optimal_disruption(before_set, after_set) -> float:
    """Least share of keys that must move when the backend set goes from ``before_set`` to
    ``after_set``: 1 − |A ∩ B| / max(|A|, |B|) (k/N for k of N removed; validation case 11)."""
    a, b = set(before_set), set(after_set)
    if not a and not b:
        return 0.0
    return 1.0 - len(a & b) / max(len(a), len(b))
