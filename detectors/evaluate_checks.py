"""Data-quality, performance and label-coverage checks of one window slice.

Tested checks (in the false-alarm budget) breach only when the test rejects at alpha *and*
the effect passes its configured floor:

- null rate: window nulls ~ beta-binomial predictive of the reference null rate;
- out of range: under H0 a new value falls outside the reference [min, max] of m values with
  probability 2 / (m + 1) (any continuous distribution); window count ~ binomial;
- error rate: window errors ~ beta-binomial predictive of the baseline's errors / count;
- MAE: one-sided z-test of the mean absolute error against the baseline's;
- label coverage: joined labels ~ Poisson(baseline coverage x predictions), lower tail.

Rule checks (deterministic, outside the budget): values of a type the reference never had,
a reference feature with no value at all in the window, a feature the reference never had.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt
from scipy import special
from scipy import stats as _scipy_stats

from detectors.alerting import Reading
from detectors.window import SliceDelta
from schemas.monitor_config import ModelMonitorConfig
from schemas.profile import FeatureProfile, QualityBaseline, SliceProfile

__all__ = ["MIN_EXPECTED_LABELS", "CheckContext", "data_quality_readings", "quality_readings"]

MIN_EXPECTED_LABELS: Final = 20
"""Label coverage is judged only when the baseline expects at least this many labels."""


@dataclass
class CheckContext:
    """Alpha, configuration and the threshold caches of one reference."""

    alpha: float
    config: ModelMonitorConfig
    cache: dict[tuple[str | int, ...], float] = field(default_factory=dict)
    """Thresholds by (check, ints...); part of the judge's state (they cost ~1 ms each)."""

    def _cached(self, key: tuple[str | int, ...], compute: Callable[[], float]) -> float:
        value = self.cache.get(key)
        if value is None:
            value = self.cache[key] = compute()
        return value

    def null_threshold(self, feature: FeatureProfile, n: int) -> float:
        """Window null rate above which the null-rate check breaches."""
        cached = self.cache.get(("null", feature.nulls, feature.count, n))
        if cached is not None:  # every window of the same size: skip building the closure
            return cached
        a, b = feature.nulls + 0.5, feature.count + 0.5  # Jeffreys prior on the null rate

        def compute() -> float:
            critical = float(_scipy_stats.betabinom.isf(self.alpha, n, a, b)) / n
            return max(critical, feature.null_rate + self.config.data_quality.null_rate_increase)

        return self._cached(("null", feature.nulls, feature.count, n), compute)

    def range_threshold(self, feature: FeatureProfile, n: int) -> float:
        m = feature.count
        cached = self.cache.get(("range", m, n))
        if cached is not None:
            return cached

        def compute() -> float:
            critical = float(_scipy_stats.binom.isf(self.alpha, n, 2.0 / (m + 1))) / n
            return max(critical, self.config.data_quality.out_of_range_rate)

        return self._cached(("range", m, n), compute)

    @staticmethod
    def unseen_mass(feature: FeatureProfile) -> tuple[int, float]:
        """(singletons, Good-Turing unseen mass): the reference's unseen mass is about its
        singletons / m; the mass is also the unseen rate expected without drift."""
        singletons = sum(1 for c in feature.categories.values() if c == 1)
        return singletons, (singletons + 1) / (feature.count + 1)

    def unseen_threshold(self, feature: FeatureProfile, n: int) -> tuple[float, float]:
        """(threshold, unseen mass) of the unseen rate of ``n`` values: the singletons are
        counted once for both."""
        singletons, mass = self.unseen_mass(feature)

        def compute() -> float:
            return float(_scipy_stats.binom.isf(self.alpha, n, mass)) / n

        return self._cached(("unseen", singletons, feature.count, n), compute), mass

    def error_threshold(self, baseline: QualityBaseline, n: int) -> float:
        errors, count = baseline.errors or 0, baseline.count
        a, b = errors + 0.5, count - errors + 0.5

        def compute() -> float:
            critical = float(_scipy_stats.betabinom.isf(self.alpha, n, a, b)) / n
            return max(critical, (errors / count) * (1 + self.config.quality.min_effect))

        return self._cached(("errors", errors, count, n), compute)


def _reading(
    kind: str, feature: str | None, segment: str | None, detector: str, statistic: float,
    threshold: float, p_value: float | None, breached: bool, count: int,
    summary: str | Callable[[], str], center: float = 0.0, trials: int = 0,
) -> Reading:  # fmt: skip
    return Reading(
        kind, feature, segment, detector, float(statistic), float(threshold), p_value, breached,
        True, count, summary, center, trials,
    )  # fmt: skip


def _poisson_cdf(k: int, mu: float) -> float:
    """``scipy.stats.poisson.cdf(k, mu)`` for k >= 0 (the same special function, without the
    ~70 us of argument handling; tested equal)."""
    if k < 0 or not mu >= 0:
        return float(_scipy_stats.poisson.cdf(k, mu))
    return min(max(float(special.pdtr(k, mu)), 0.0), 1.0)


def _poisson_ppf(q: float, mu: float) -> float:
    """``scipy.stats.poisson.ppf(q, mu)`` for 0 < q < 1 (scipy's own formula; tested equal)."""
    if not (0.0 < q < 1.0 and mu >= 0):
        return float(_scipy_stats.poisson.ppf(q, mu))
    vals = math.ceil(float(special.pdtrik(q, mu)))
    lower = max(vals - 1, 0)
    return float(lower if float(special.pdtr(lower, mu)) >= q else vals)


def _outside(values: npt.NDArray[np.float64], low: float | None, high: float | None) -> float:
    """`out_of_range_rate` of a non-empty reservoir (the same float: count / size)."""
    if low is not None and high is not None and low > high:  # not a profile's range
        return float(((values < low) | (values > high)).mean())
    count = 0 if low is None else int(np.count_nonzero(values < low))
    count += 0 if high is None else int(np.count_nonzero(values > high))
    return count / values.size


def _type_change(known: Mapping[str, int], types: Mapping[str, int]) -> float:
    """`type_changes` of one feature: the share of non-null values of a type never seen."""
    total = new = 0
    for kind, n in types.items():
        if kind != "null" and n > 0:
            total += n
            if known.get(kind, 0) <= 0:
                new += n
    return new / total if total and new else 0.0


def data_quality_readings(
    ctx: CheckContext,
    reference: SliceProfile,
    part: SliceDelta,
    segment: str | None,
    known_new: frozenset[str],
) -> list[Reading]:
    """Null rate, out-of-range, type changes, missing and new features of one slice."""
    settings = ctx.config.data_quality
    if not settings.enabled or part.count == 0:
        return []
    readings: list[Reading] = []
    rows = part.count
    tracker = part.types
    for name, feature in reference.features.items():
        types = tracker.counts.get(name, {})
        nulls = types.get("null", 0) + tracker.absent(name)
        values = rows - nulls
        if settings.missing_features:
            missing = values == 0 and feature.count > 0
            readings.append(_reading(
                "data_quality", name, segment, "missing_feature", 1.0 if missing else 0.0, 1.0,
                None, missing, rows, _missing_text(name, rows, feature.count),
            ))  # fmt: skip
            if missing:
                continue
        rate = nulls / rows
        threshold = ctx.null_threshold(feature, rows)
        breached = rate > threshold
        p_value = None
        if breached:
            a, b = feature.nulls + 0.5, feature.count + 0.5
            p_value = float(_scipy_stats.betabinom.sf(nulls - 1, rows, a, b))
        readings.append(_reading(
            "data_quality", name, segment, "null_rate", rate, threshold, p_value, breached, rows,
            _null_text(name, rate, feature.null_rate, threshold), feature.null_rate, rows,
        ))  # fmt: skip
        if values:
            changed = _type_change(feature.types, types)
            floor = settings.type_change_rate
            readings.append(_reading(
                "data_quality", name, segment, "type_change", changed, floor, None,
                changed >= floor, values, _type_text(name, changed, feature.types), 0.0, values,
            ))  # fmt: skip
        sketch = part.numeric.get(name)
        if feature.kind == "numeric" and feature.count and sketch is not None and sketch.count:
            low, high = feature.min, feature.max
            lo, hi = sketch.min, sketch.max
            assert lo is not None and hi is not None  # count > 0
            inside = (low is None or lo >= low) and (high is None or hi <= high)
            # Every value within the reference range (the exact min/max say so): no scan.
            outside = 0.0 if inside else _outside(sketch.reservoir, low, high)
            threshold = ctx.range_threshold(feature, sketch.count)
            # The share is exact when inside, else counted on the reservoir's values.
            trials = sketch.count if inside else int(sketch.reservoir.size)
            readings.append(_reading(
                "data_quality", name, segment, "out_of_range", outside, threshold, None,
                outside > threshold, sketch.count, _range_text(name, outside, low, high), 0.0,
                trials,
            ))  # fmt: skip
    if settings.new_features:
        present = {
            n for n in tracker.features if tracker.seen(n) > tracker.counts[n].get("null", 0)
        }
        ignored = set(ctx.config.ignore)
        for name in sorted((present | known_new) - set(reference.features) - ignored):
            share = (tracker.seen(name) - tracker.counts.get(name, {}).get("null", 0)) / rows
            readings.append(_reading(
                "data_quality", name, segment, "new_feature", share, 0.0, None, share > 0, rows,
                f"feature {name!r} is not in the reference but {share:.1%} of events have it",
            ))  # fmt: skip
    return readings


# Summaries are written only for the readings that become alerts.


def _missing_text(name: str, rows: int, count: int) -> Callable[[], str]:
    return lambda: f"feature {name!r} had no value in {rows} events (the reference had {count})"


def _null_text(name: str, rate: float, reference: float, threshold: float) -> Callable[[], str]:
    return lambda: (
        f"null rate of feature {name!r} rose to {rate:.1%} (reference {reference:.1%}, "
        f"threshold {threshold:.1%})"
    )


def _type_text(name: str, changed: float, known: Mapping[str, int]) -> Callable[[], str]:
    return lambda: (
        f"{changed:.1%} of feature {name!r} values have a type the reference never had "
        f"(it had {sorted(k for k in known if k != 'null')})"
    )


def _range_text(
    name: str, outside: float, low: float | None, high: float | None
) -> Callable[[], str]:
    return lambda: (
        f"{outside:.1%} of feature {name!r} values fell outside the reference range "
        f"[{low:.4g}, {high:.4g}]"
    )


def quality_readings(
    ctx: CheckContext,
    baseline: QualityBaseline | None,
    part: SliceDelta,
    segment: str | None,
    coverage: float | None,
) -> list[Reading]:
    """Performance against the baseline, and label coverage (all traffic only)."""
    readings: list[Reading] = []
    settings = ctx.config.quality
    if baseline is not None and baseline.task in ("binary", "multiclass"):
        sketch = part.classification
        n = sketch.count if sketch is not None else 0
        if sketch is not None and n >= settings.min_labels and baseline.count:
            errors = n - round((sketch.accuracy or 0.0) * n)
            rate, threshold = errors / n, ctx.error_threshold(baseline, n)
            base_errors = baseline.errors or 0
            p_errors = float(_scipy_stats.betabinom.sf(
                errors - 1, n, base_errors + 0.5, baseline.count - base_errors + 0.5
            ))  # fmt: skip
            readings.append(_reading(
                "performance", None, segment, "error_rate", rate, threshold,
                min(max(p_errors, 0.0), 1.0), rate > threshold, n,
                f"error rate rose to {rate:.1%} over {n} labelled predictions (baseline "
                f"{baseline.error_rate or 0.0:.1%}, threshold {threshold:.1%})",
                base_errors / baseline.count, n,
            ))  # fmt: skip
    elif baseline is not None and baseline.task == "regression":
        sketch_r = part.regression
        n = sketch_r.count if sketch_r is not None else 0
        if sketch_r is not None and n >= settings.min_labels and baseline.mae is not None:
            mae = sketch_r.mae or 0.0
            var_w = max(sketch_r.sq_error_sum / n - mae * mae, 0.0)
            se = math.sqrt(var_w / n + (baseline.mae_std or 0.0) ** 2 / max(baseline.count, 1))
            z_alpha = float(_scipy_stats.norm.isf(ctx.alpha))
            threshold = max(baseline.mae + z_alpha * se, baseline.mae * (1 + settings.min_effect))
            p_value: float | None = (
                float(_scipy_stats.norm.sf((mae - baseline.mae) / se)) if se > 0 else None
            )
            readings.append(_reading(
                "performance", None, segment, "mae", mae, threshold, p_value, mae > threshold,
                n, f"MAE rose to {mae:.4g} over {n} labelled predictions (baseline "
                f"{baseline.mae:.4g}, threshold {threshold:.4g})", baseline.mae,
            ))  # fmt: skip
    if coverage is not None and settings.label_coverage and part.count:
        expected = coverage * part.count
        if expected >= MIN_EXPECTED_LABELS:
            critical = _poisson_ppf(ctx.alpha, expected)
            threshold = min(critical / part.count, settings.coverage_floor * coverage)
            rate = part.outcomes / part.count
            readings.append(_reading(
                "label_coverage", None, segment, "label_coverage", rate, threshold,
                _poisson_cdf(part.outcomes, expected), rate < threshold,
                part.count,
                f"labels joined for {rate:.1%} of predictions (baseline {coverage:.1%}, "
                f"threshold {threshold:.1%})", coverage, part.count,
            ))  # fmt: skip
    return readings
