"""Two-sample drift statistics between a reference and a window.

Numeric tests take either raw values (a sketch's reservoir: `ks`, `wasserstein`) or bin
counts over shared edges (a sketch's `histogram(edges)`: `psi`, `jensen_shannon`);
`NUMERIC_INPUT` says which. Categorical tests take ``{category: count}`` mappings.
Every function returns a `StatResult`; a side with no data gives a NaN statistic (nothing to
compare, and NaN never breaches a threshold) and no p-value.

Conventions:
- PSI: ``sum((c - r) * ln(c / r))`` over proportions smoothed additively: each proportion
  gets ``PSI_EPSILON`` and the vector is renormalised, so empty bins give a large finite
  term instead of infinity.
- Jensen-Shannon: the JS *distance* (square root of the divergence), base 2, in [0, 1];
  no smoothing needed (0 * log 0 = 0). Equals ``scipy.spatial.distance.jensenshannon(p, q,
  base=2)``.
- Wasserstein: the 1-Wasserstein distance divided by the reference's population std (the
  raw distance when the reference is constant).
- Chi-square: Pearson's test of homogeneity on the 2 x K table (reference row, window row),
  without Yates' correction; categories absent from both sides are dropped.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> ref, cur = rng.normal(size=500), rng.normal(0.5, size=500)
>>> ks(ref, cur).p_value < 1e-6, ks(ref, ref).statistic
(True, 0.0)
>>> edges = quantile_edges(ref, bins=10)
>>> len(edges)
9
>>> round(chi_square({"a": 50, "b": 50}, {"a": 50, "b": 50}).statistic, 6)
0.0
>>> unseen_rate({"a": 10}, {"a": 3, "z": 1}).statistic
0.25
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
import numpy.typing as npt
from scipy import stats as _scipy_stats

__all__ = [
    "CATEGORICAL_TESTS",
    "NUMERIC_INPUT",
    "NUMERIC_TESTS",
    "PSI_EPSILON",
    "StatResult",
    "categorical_js",
    "categorical_psi",
    "chi_square",
    "jensen_shannon",
    "ks",
    "psi",
    "quantile_edges",
    "unseen_rate",
    "wasserstein",
]

PSI_EPSILON: Final = 1e-4
"""Added to every proportion before PSI's logarithm (then renormalised)."""

FloatArray = npt.NDArray[np.float64]
Counts = Mapping[str, int] | Mapping[str, float]


@dataclass(frozen=True, slots=True)
class StatResult:
    """A statistic and, for hypothesis tests, its p-value."""

    statistic: float
    p_value: float | None = None


_NO_DATA: Final = StatResult(math.nan, None)


def _values(values: npt.ArrayLike, name: str) -> FloatArray:
    arr = np.asarray(values, dtype=np.float64).ravel()
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} holds NaN or inf: pass only finite values (sketch.values())")
    return arr


def _proportions_pair(ref: npt.ArrayLike, cur: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    r = np.asarray(ref, dtype=np.float64).ravel()
    c = np.asarray(cur, dtype=np.float64).ravel()
    if r.shape != c.shape:
        raise ValueError(
            f"reference has {r.size} bins and window {c.size}: histogram both sides over the "
            "same edges"
        )
    if np.any(r < 0) or np.any(c < 0) or not (np.isfinite(r).all() and np.isfinite(c).all()):
        raise ValueError("bin counts must be finite and non-negative")
    return r, c


def ks(ref: npt.ArrayLike, cur: npt.ArrayLike) -> StatResult:
    """Two-sample Kolmogorov-Smirnov (two-sided; exact p-value for samples up to 10,000).

    The p-value is that of the samples given (a reservoir's size, not the stream's count).
    """
    r, c = _values(ref, "reference"), _values(cur, "window")
    if r.size == 0 or c.size == 0:
        return _NO_DATA
    result = _scipy_stats.ks_2samp(r, c, alternative="two-sided", method="auto")
    return StatResult(float(result.statistic), float(result.pvalue))


def wasserstein(ref: npt.ArrayLike, cur: npt.ArrayLike) -> StatResult:
    """1-Wasserstein distance between the samples, in units of the reference std."""
    r, c = np.sort(_values(ref, "reference")), np.sort(_values(cur, "window"))
    if r.size == 0 or c.size == 0:
        return _NO_DATA
    # Integral of |F_r - F_c| over the merged support (both ECDFs are step functions).
    grid = np.sort(np.concatenate([r, c]))
    widths = np.diff(grid)
    f_r = np.searchsorted(r, grid[:-1], side="right") / r.size
    f_c = np.searchsorted(c, grid[:-1], side="right") / c.size
    distance = float(np.sum(np.abs(f_r - f_c) * widths))
    scale = float(r.std())
    return StatResult(distance / scale if scale > 0 else distance, None)


def psi(ref_counts: npt.ArrayLike, cur_counts: npt.ArrayLike) -> StatResult:
    """Population stability index over shared bins (see the module doc for smoothing)."""
    r, c = _proportions_pair(ref_counts, cur_counts)
    if r.sum() <= 0 or c.sum() <= 0:
        return _NO_DATA
    p_r, p_c = _smoothed(r), _smoothed(c)
    return StatResult(float(np.sum((p_c - p_r) * np.log(p_c / p_r))), None)


def _smoothed(counts: FloatArray) -> FloatArray:
    p: FloatArray = counts / counts.sum() + PSI_EPSILON
    smoothed: FloatArray = p / p.sum()
    return smoothed


def jensen_shannon(ref_counts: npt.ArrayLike, cur_counts: npt.ArrayLike) -> StatResult:
    """Jensen-Shannon distance (base 2, in [0, 1]) between two binned distributions."""
    r, c = _proportions_pair(ref_counts, cur_counts)
    if r.sum() <= 0 or c.sum() <= 0:
        return _NO_DATA
    p, q = r / r.sum(), c / c.sum()
    m = (p + q) / 2
    divergence = (_kl_bits(p, m) + _kl_bits(q, m)) / 2
    return StatResult(math.sqrt(min(max(divergence, 0.0), 1.0)), None)


def _kl_bits(p: FloatArray, m: FloatArray) -> float:
    mask = p > 0  # 0 * log(0 / m) = 0; m > 0 wherever p > 0
    return float(np.sum(p[mask] * np.log2(p[mask] / m[mask])))


def _aligned(ref: Counts, cur: Counts) -> tuple[FloatArray, FloatArray]:
    """Count vectors over the sorted union of categories, minus those zero on both sides."""
    keys = sorted(k for k in set(ref) | set(cur) if ref.get(k, 0) > 0 or cur.get(k, 0) > 0)
    r = np.array([ref.get(k, 0) for k in keys], dtype=np.float64)
    c = np.array([cur.get(k, 0) for k in keys], dtype=np.float64)
    return r, c


def chi_square(ref_counts: Counts, cur_counts: Counts) -> StatResult:
    """Pearson chi-square test of homogeneity of the two category distributions."""
    r, c = _aligned(ref_counts, cur_counts)
    n_r, n_c = r.sum(), c.sum()
    if n_r <= 0 or n_c <= 0:
        return _NO_DATA
    if r.size < 2:
        return StatResult(0.0, 1.0)  # one category on both sides: identical distributions
    table = np.vstack([r, c])
    expected = np.outer([n_r, n_c], r + c) / (n_r + n_c)
    statistic = float(np.sum((table - expected) ** 2 / expected))
    p_value = float(_scipy_stats.chi2.sf(statistic, r.size - 1))
    return StatResult(statistic, p_value)


def categorical_psi(ref_counts: Counts, cur_counts: Counts) -> StatResult:
    """PSI over the union of categories (a category missing on one side counts 0 there;
    categories at 0 on both sides are ignored, so they do not dilute the smoothing)."""
    r, c = _aligned(ref_counts, cur_counts)
    return psi(r, c)


def categorical_js(ref_counts: Counts, cur_counts: Counts) -> StatResult:
    """Jensen-Shannon distance over the union of categories."""
    r, c = _aligned(ref_counts, cur_counts)
    return jensen_shannon(r, c)


def unseen_rate(ref_counts: Counts, cur_counts: Counts) -> StatResult:
    """Share of the window whose category never occurred in the reference."""
    total = float(sum(cur_counts.values()))
    if total <= 0:
        return _NO_DATA
    unseen = sum(n for k, n in cur_counts.items() if ref_counts.get(k, 0) <= 0)
    return StatResult(float(unseen) / total, None)


def quantile_edges(values: npt.ArrayLike, bins: int = 10) -> FloatArray:
    """Unique inner bin edges at the reference's quantiles 1/bins, ..., (bins-1)/bins.

    Use with `NumericSketch.histogram`: bins are (-inf, e1], ..., (ek, inf). Edges are
    observed values (inverse-CDF quantiles) and ties collapse, so a feature with few distinct
    values gets fewer bins.
    """
    if bins < 2:
        raise ValueError(f"bins must be >= 2, got {bins}")
    arr = _values(values, "values")
    if arr.size == 0:
        return np.empty(0, dtype=np.float64)
    # inverted_cdf: edges are observed values, so ties of a discrete feature stay in one bin.
    return np.unique(np.quantile(arr, np.arange(1, bins) / bins, method="inverted_cdf"))


NumericTest = Callable[[npt.ArrayLike, npt.ArrayLike], StatResult]
CategoricalTest = Callable[[Counts, Counts], StatResult]

NUMERIC_TESTS: Final[dict[str, NumericTest]] = {
    "ks": ks,
    "psi": psi,
    "wasserstein": wasserstein,
    "jensen_shannon": jensen_shannon,
}
"""Numeric drift tests by configuration name."""

NUMERIC_INPUT: Final[dict[str, Literal["values", "counts"]]] = {
    "ks": "values",
    "psi": "counts",
    "wasserstein": "values",
    "jensen_shannon": "counts",
}
"""What each numeric test takes: raw ``values`` (a reservoir) or bin ``counts`` over edges."""

CATEGORICAL_TESTS: Final[dict[str, CategoricalTest]] = {
    "chi_square": chi_square,
    "psi": categorical_psi,
    "jensen_shannon": categorical_js,
    "unseen_rate": unseen_rate,
}
"""Categorical drift tests by configuration name; all take ``{category: count}``."""
