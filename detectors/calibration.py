"""False-alarm calibration: per-test alpha from a target run length, and null thresholds.

The budget: a model should see one false alarm per ``target_run_length`` judged windows on a
stationary stream. With ``D`` decisions per window (features x segments x tests), a union
bound gives every decision a per-window breach probability of ``1 / (ARL * D)``; this holds
whatever the dependence between windows (they all share one reference). k-of-m and the
resolve run only make alerts rarer. With ``independent=True`` the k-of-m gain is credited as
if windows were independent (larger alpha, more power, no longer a bound). See
docs/monitoring.md for the derivation and measured numbers.

Statistics without an exact null (PSI, Jensen-Shannon, Wasserstein) get thresholds by
simulation of the two-sample null: reference and window histograms ~ Multinomial(m, p_ref)
and Multinomial(n, p_ref), or bootstrap resamples of the reference sample for Wasserstein.
The (1 - alpha) quantile is the empirical one when ``alpha * draws >= 10``, else extrapolated:
PSI and JS (squared) are close to quadratic forms, so a moment-matched scaled chi-square
(Satterthwaite) is fitted to them; Wasserstein has a heavier tail and gets a log-normal fit.

>>> round(per_test_alpha(10_000, decisions=10), 9)
1e-05
>>> a = per_test_alpha(10_000, decisions=10, k=2, m=3, independent=True)
>>> round(firing_probability(a, k=2, m=3) * 10_000 * 10, 6)
1.0
>>> round(ks_threshold(0.05, 500, 2000), 3)
0.067
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from itertools import pairwise, product
from typing import Final, Literal

import numpy as np
import numpy.typing as npt
from scipy import special
from scipy import stats as _scipy_stats

from detectors.stats import PSI_EPSILON

__all__ = [
    "DEFAULT_DRAWS",
    "DEFAULT_WASSERSTEIN_DRAWS",
    "NullThresholds",
    "chi_square_threshold",
    "firing_probability",
    "ks_threshold",
    "lognormal_quantile",
    "per_test_alpha",
    "run_length",
    "scaled_chi2_quantile",
    "stephens_factor",
]

DEFAULT_DRAWS: Final = 2000
"""Null draws of PSI and JS per (statistic, n, m, bins, reference proportions)."""
DEFAULT_WASSERSTEIN_DRAWS: Final = 500
"""Bootstrap pairs per Wasserstein threshold (each sorts m + n values)."""
FloatArray = npt.NDArray[np.float64]
_BLOCK_VALUES: Final = 65_536
"""Values per bootstrap array computed at once (512 kB): see `NullThresholds.wasserstein`."""
HistogramStatistic = Literal["psi", "jensen_shannon"]


def firing_probability(alpha: float, *, k: int, m: int) -> float:
    """P(an alert starts firing at a given window) for iid breaches with probability alpha.

    Fires when the current window breaches, at least k of the last m breached, and fewer than
    k of the m windows before it did (stationary k-of-m rule, resolution ignored).
    """
    if k == 1:
        return alpha
    total = 0.0
    for pattern in product((0, 1), repeat=m):  # windows t-m+1 .. t-1, t  (and t-m before)
        if not pattern[-1] or sum(pattern) < k:
            continue
        for first in (0, 1):  # window t-m: with it, the previous m may already have fired
            if first + sum(pattern[:-1]) >= k:
                continue
            ones = sum(pattern) + first
            total += alpha**ones * (1 - alpha) ** (m + 1 - ones)
    return total


def per_test_alpha(
    target_run_length: float,
    decisions: int,
    *,
    k: int = 2,
    m: int = 3,
    independent: bool = False,
) -> float:
    """Per-window breach probability of each decision that meets the run-length target."""
    if target_run_length <= 0 or decisions <= 0:
        raise ValueError(
            f"target_run_length ({target_run_length}) and decisions ({decisions}) must be positive"
        )
    budget = 1.0 / (target_run_length * decisions)
    if not independent:
        return budget
    lo, hi = budget, 0.5  # firing_probability(a) <= a, so the answer is at least the budget
    for _ in range(200):
        mid = math.sqrt(lo * hi)
        if firing_probability(mid, k=k, m=m) > budget:
            hi = mid
        else:
            lo = mid
    return lo


def run_length(alpha: float, decisions: int, *, k: int = 2, m: int = 3) -> float:
    """Expected windows between false alarms if the decisions' breaches were independent."""
    return 1.0 / (decisions * firing_probability(alpha, k=k, m=m))


def stephens_factor(n: int, m: int) -> float:
    """Stephens' finite-sample scaling of the two-sample KS statistic (``d`` times it is
    asymptotically Kolmogorov distributed); see ``detectors.kernels.ks_p_value``."""
    en = n * m / (n + m)
    return math.sqrt(en) + 0.12 + 0.11 / math.sqrt(en)


def ks_threshold(alpha: float, n: int, m: int) -> float:
    """The two-sample KS statistic whose p-value (Stephens' approximation) is alpha."""
    return float(special.kolmogi(alpha)) / stephens_factor(n, m)


def chi_square_threshold(alpha: float, dof: int) -> float:
    return float(special.chdtri(max(dof, 1), alpha))


def scaled_chi2_quantile(draws: FloatArray, alpha: float) -> float:
    """(1 - alpha) quantile of s * chi2(nu) with the mean and variance of ``draws``."""
    mean, var = float(np.mean(draws)), float(np.var(draws))
    if not (mean > 0 and var > 0):
        return float(np.max(draws)) if draws.size else 0.0
    scale, dof = var / (2 * mean), 2 * mean * mean / var
    return scale * float(_scipy_stats.chi2.isf(alpha, dof))


def lognormal_quantile(draws: FloatArray, alpha: float) -> float:
    """(1 - alpha) quantile of the log-normal with the log-mean and log-std of ``draws``."""
    positive = draws[draws > 0]
    if positive.size < 2:
        return float(np.max(draws)) if draws.size else 0.0
    logs = np.log(positive)
    return math.exp(float(logs.mean()) + float(logs.std()) * float(_scipy_stats.norm.isf(alpha)))


def _quantile(
    draws: FloatArray, alpha: float, *, tail: Literal["chi2", "chi2_sq", "lognormal"]
) -> float:
    if alpha * draws.size >= 10:
        return float(np.quantile(draws, 1 - alpha))
    if tail == "lognormal":
        return lognormal_quantile(draws, alpha)
    if tail == "chi2_sq":
        return math.sqrt(scaled_chi2_quantile(draws * draws, alpha))
    return scaled_chi2_quantile(draws, alpha)


def psi_rows(ref: FloatArray, cur: FloatArray) -> FloatArray:
    """Row-wise PSI, same smoothing as ``detectors.stats.psi``."""
    p_r = ref / ref.sum(axis=1, keepdims=True) + PSI_EPSILON
    p_c = cur / cur.sum(axis=1, keepdims=True) + PSI_EPSILON
    p_r /= p_r.sum(axis=1, keepdims=True)
    p_c /= p_c.sum(axis=1, keepdims=True)
    out: FloatArray = np.sum((p_c - p_r) * np.log(p_c / p_r), axis=1)
    return out


def js_rows(ref: FloatArray, cur: FloatArray) -> FloatArray:
    """Row-wise Jensen-Shannon distance (base 2), as ``detectors.stats.jensen_shannon``."""
    p = ref / ref.sum(axis=1, keepdims=True)
    q = cur / cur.sum(axis=1, keepdims=True)
    mid = (p + q) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_p = np.where(p > 0, p * np.log2(p / mid), 0.0).sum(axis=1)
        kl_q = np.where(q > 0, q * np.log2(q / mid), 0.0).sum(axis=1)
    out: FloatArray = np.sqrt(np.clip((kl_p + kl_q) / 2, 0.0, 1.0))
    return out


_ROWS: Final[dict[str, Callable[[FloatArray, FloatArray], FloatArray]]] = {
    "psi": psi_rows,
    "jensen_shannon": js_rows,
}


class NullThresholds:
    """Simulated null thresholds, cached; deterministic for a given seed.

    >>> thresholds = NullThresholds(draws=500)
    >>> t = thresholds.histogram("psi", np.full(10, 200.0), n=500, alpha=1e-4)
    >>> 0.02 < t < 0.2, thresholds.histogram("psi", np.full(10, 200.0), n=500, alpha=1e-4) == t
    (True, True)
    """

    def __init__(
        self,
        *,
        draws: int = DEFAULT_DRAWS,
        wasserstein_draws: int = DEFAULT_WASSERSTEIN_DRAWS,
        seed: int = 0,
    ) -> None:
        self.draws = draws
        self.wasserstein_draws = wasserstein_draws
        self.seed = seed
        self._cache: dict[tuple[object, ...], float] = {}

    def _rng(self, key: tuple[object, ...]) -> np.random.Generator:
        return np.random.default_rng([self.seed, zlib.crc32(repr(key).encode())])

    def histogram(
        self, statistic: HistogramStatistic, ref_counts: npt.ArrayLike, *, n: int, alpha: float
    ) -> float:
        """Threshold of PSI or JS between m reference and n window values over these bins."""
        counts = np.asarray(ref_counts, dtype=np.float64)
        m = round(float(counts.sum()))
        if m <= 0 or n <= 0 or counts.size < 2:
            return math.inf
        probs = counts / counts.sum()
        key = (statistic, n, m, counts.size, tuple(np.round(probs, 3).tolist()), alpha)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        rng = self._rng(key)
        ref = rng.multinomial(m, probs, size=self.draws).astype(np.float64)
        cur = rng.multinomial(n, probs, size=self.draws).astype(np.float64)
        draws = _ROWS[statistic](ref, cur)
        value = _quantile(draws, alpha, tail="chi2_sq" if statistic == "jensen_shannon" else "chi2")
        self._cache[key] = value
        return value

    def wasserstein(
        self, ref_sample: npt.ArrayLike, *, n: int, alpha: float, key: object = None
    ) -> float:
        """Threshold of the std-normalised 1-Wasserstein distance (bootstrap of the sample).

        ``key`` names the sample for the cache (e.g. profile id and feature); without it the
        sample's bytes are hashed. Uses ``wasserstein_draws`` bootstrap pairs, drawn from a
        seed of the sample's values: the same sample gives the same threshold on any machine.
        """
        raw = np.asarray(ref_sample, dtype=np.float64)
        m = raw.size
        if m < 2 or n <= 0:
            return math.inf
        ident = key if key is not None else zlib.crc32(raw.tobytes())
        cache_key = ("wasserstein", ident, n, m, alpha)
        cached = self._cache.get(cache_key)
        if cached is not None:
            return cached
        sample = np.sort(raw)
        # Seeded by the sample's own bytes, not by ``key``: a profile id hashes computed floats
        # whose last bits follow the machine's BLAS kernel, and a threshold must not.
        rng = self._rng(("wasserstein", zlib.crc32(sample.tobytes()), n, m, alpha))
        scale = float(sample.std()) or 1.0
        size = max(n, m)
        grid = (np.arange(size) + 0.5) / size
        at_ref, at_cur = (grid * m).astype(np.int64), (grid * n).astype(np.int64)
        draws = np.empty(self.wasserstein_draws, dtype=np.float64)
        chunk = max(1, 1_000_000 // size)  # draws per batch of random numbers (fixes them)
        for start in range(0, draws.size, chunk):
            rows = min(chunk, draws.size - start)
            picks_ref = rng.integers(0, m, size=(rows, m))
            picks_cur = rng.integers(0, m, size=(rows, n))
            # In blocks of rows that stay in cache (a whole batch makes ~8 MB arrays: page
            # faults, cache misses). A draw depends on its own row only, reduced in the same
            # order whatever the block (blocks of >= 2 rows keep the arrays' layout).
            blocks = max(1, rows // max(2, _BLOCK_VALUES // size))
            bounds = [rows * i // blocks for i in range(blocks + 1)]
            for first, last in pairwise(bounds):
                ref = sample[picks_ref[first:last]]
                ref.sort(axis=1)
                cur = sample[picks_cur[first:last]]
                cur.sort(axis=1)
                # W1 = integral over u of |Q_ref(u) - Q_cur(u)|, on a grid as fine as the
                # finer step; in place, on the layout of |ref[:, at_ref] - cur[:, at_cur]|.
                gaps = ref[:, at_ref]
                np.subtract(gaps, cur[:, at_cur], out=gaps)
                distance = np.abs(gaps, out=gaps).mean(axis=1)
                stds = ref.std(axis=1)
                draws[start + first : start + last] = distance / np.where(stds > 0, stds, scale)
        value = _quantile(draws, alpha, tail="lognormal")
        self._cache[cache_key] = value
        return value
