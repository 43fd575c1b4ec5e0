"""Judge one window against one reference: every statistic, and which of them decide.

`Evaluator.evaluate` returns `Reading`s: every statistic computed for the window (the ones
reported as `StatisticPoint`s) with ``decides`` set on the one per feature / check that counts
towards an alert. Drift and quality checks live here; data-quality checks in
``detectors.evaluate_checks``. Caches (sorted reference samples, thresholds) belong to one
reference and are rebuilt deterministically after a restart.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from detectors.alerting import Reading
from detectors.calibration import NullThresholds, chi_square_threshold, ks_threshold
from detectors.categorical import CategoricalSketch
from detectors.evaluate_checks import CheckContext, data_quality_readings, quality_readings
from detectors.kernels import (
    CategoricalReference,
    ReferenceBins,
    bins_statistics,
    categorical_reference,
    categorical_statistics,
    ecdf_distances,
    histogram_counts,
    ks_distance,
    ks_distances,
    ks_p_value,
    reference_bins,
)
from detectors.sketches import NumericSketch
from detectors.window import ALL_TRAFFIC, SliceDelta, WindowDelta
from schemas.monitor_config import ModelMonitorConfig
from schemas.profile import FeatureProfile, QualityBaseline, ReferenceProfile, SliceProfile

__all__ = [
    "Evaluator",
    "StatisticPoint",
    "bucket",
    "count_decisions",
]

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class StatisticPoint:
    """One statistic of one judged window, for charts and metrics (``ModelJudge.on_point``)."""

    model: str
    kind: str
    feature: str | None
    """None for model-level statistics (prediction, performance, coverage)."""
    detector: str
    statistic: float
    threshold: float
    p_value: float | None
    breached: bool
    window_start: datetime
    window_end: datetime
    count: int
    segment: str | None = None


def bucket(n: int) -> int:
    """``n`` to two significant digits: simulated thresholds are cached per bucket.

    >>> bucket(492), bucket(497), bucket(12345), bucket(87)
    (490, 500, 12000, 87)
    """
    digits = len(str(n)) - 2
    return n if digits <= 0 else round(n, -digits)


def judged_scores(scores: dict[str, FeatureProfile]) -> dict[str, FeatureProfile]:
    """The class scores worth a test: of two complementary binary probabilities (p, 1 - p in
    the reference) only the second class, since both would drift, alert and count together.

    >>> from schemas.profile import FeatureProfile
    >>> p = FeatureProfile(kind="numeric", count=9, mean=0.3, std=0.1)
    >>> q = FeatureProfile(kind="numeric", count=9, mean=0.7, std=0.1)
    >>> list(judged_scores({"0": q, "1": p})), list(judged_scores({"a": p, "b": p}))
    (['1'], ['a', 'b'])
    """
    if len(scores) != 2:
        return scores
    (_, first), (second_class, second) = sorted(scores.items())
    if first.mean is None or second.mean is None or first.std is None or second.std is None:
        return scores
    complementary = (
        abs(first.mean + second.mean - 1.0) < 1e-4 and abs(first.std - second.std) < 1e-4
    )
    return {second_class: second} if complementary else scores


def count_decisions(profile: ReferenceProfile, config: ModelMonitorConfig) -> int:
    """Decisions with a tested false-alarm rate per window: the Bonferroni denominator."""
    dq = config.data_quality.enabled
    total = 0
    slices: list[SliceProfile] = [profile, *profile.segments.values()]
    for part in slices:
        for feature in part.features.values():
            total += 1 + (dq and 1) + (dq and feature.kind == "numeric" and 1)
        if config.detectors.prediction and part.prediction is not None:
            total += 1
        if config.detectors.scores:
            total += len(judged_scores(part.scores))
        total += 1  # performance
    if config.quality.label_coverage:
        total += 1
    return max(total, 1)


class Evaluator:
    """Judges windows of one model against one reference profile."""

    def __init__(
        self,
        model: str,
        profile: ReferenceProfile,
        config: ModelMonitorConfig,
        *,
        alpha: float,
        thresholds: NullThresholds | None = None,
    ) -> None:
        self.model = model
        self.profile = profile
        self.config = config
        self.alpha = alpha
        self.thresholds = thresholds or NullThresholds()
        self._reference: dict[tuple[str, str], _NumericReference] = {}
        self._categories: dict[tuple[str, str], CategoricalReference] = {}
        self._thresholds: dict[tuple[str, str, str, int], float] = {}
        self._ks: dict[tuple[int, int], float] = {}
        self._checks = CheckContext(alpha=alpha, config=config)
        self._everything = True
        self._ks_batch: dict[tuple[str, str], float] = {}
        """KS distances of the slice being judged, computed together (`_batch_ks`)."""
        self._stacked: dict[tuple[int, ...], tuple[FloatArray, list[FloatArray]]] = {}
        detectors = config.detectors
        self._numeric_tests = list(
            dict.fromkeys([detectors.numeric.decide, *detectors.numeric.tests])
        )
        self._categorical_tests = list(
            dict.fromkeys([detectors.categorical.decide, *detectors.categorical.tests])
        )

    def evaluate(
        self,
        window: WindowDelta,
        *,
        baseline: QualityBaseline | None,
        coverage: float | None,
        new_features: frozenset[str] = frozenset(),
        everything: bool = True,
    ) -> list[Reading]:
        """Readings of every slice of ``window`` that has enough events.

        ``everything=False``: only the deciding readings (alerts follow those alone), so the
        statistics only reported (PSI, JS, Wasserstein by default) and their simulated
        thresholds are not computed; for judges whose points nobody reads.
        """
        self._everything = everything
        readings: list[Reading] = []
        slices: list[tuple[str, SliceProfile]] = [
            (ALL_TRAFFIC, self.profile),
            *sorted(self.profile.segments.items()),
        ]
        for key, reference in slices:
            part = window.slices.get(key)
            if part is None or (key and part.count < self.config.segments.min_count):
                continue
            segment = key or None
            checks = data_quality_readings(
                self._checks, reference, part, segment, new_features if not key else frozenset()
            )
            readings += checks
            missing = {r.feature for r in checks if r.detector == "missing_feature" and r.breached}
            self._batch_ks(key, reference, part, missing)
            for name, feature in reference.features.items():
                if name not in missing:
                    readings += self._drift(key, name, feature, part, "feature_drift", name)
            if self.config.detectors.prediction and reference.prediction is not None:
                readings += self._drift(
                    key, "", reference.prediction, part, "prediction_drift", None
                )
            if self.config.detectors.scores:
                for cls, feature in judged_scores(reference.scores).items():
                    readings += self._drift(
                        key, f"score:{cls}", feature, part, "prediction_drift", f"score:{cls}"
                    )
            readings += quality_readings(
                self._checks, baseline if not key else self._segment_baseline(reference),
                part, segment,
                coverage if not key else None,
            )  # fmt: skip
        return readings

    def _segment_baseline(self, reference: SliceProfile) -> QualityBaseline | None:
        quality = reference.quality
        enough = quality is not None and quality.count >= self.config.quality.min_labels
        return quality if enough else None

    # -- drift ---------------------------------------------------------------------------------

    def _drift(
        self,
        key: str,
        name: str,
        feature: FeatureProfile,
        part: SliceDelta,
        kind: str,
        label: str | None,
    ) -> list[Reading]:
        minimum = self.config.detectors.min_count
        if feature.count < minimum:
            return []
        if kind == "feature_drift":
            numeric, categorical = part.numeric.get(name), part.categorical.get(name)
        elif name.startswith("score:"):
            numeric, categorical = part.scores.get(name.removeprefix("score:")), None
        else:
            numeric, categorical = part.prediction_numeric, part.prediction_categorical
        segment = key or None
        if feature.kind == "numeric":
            if numeric is None or numeric.count < minimum:
                return []
            return self._numeric(key, name, feature, numeric, kind, label, segment)
        if categorical is None or sum(categorical.counts.values()) < minimum:
            return []
        return self._categorical(key, name, feature, categorical, kind, label, segment)

    def _numeric(
        self,
        key: str,
        name: str,
        feature: FeatureProfile,
        sketch: NumericSketch,
        kind: str,
        label: str | None,
        segment: str | None,
    ) -> list[Reading]:
        tests = self._numeric_tests if self._everything else self._numeric_tests[:1]
        values = sketch.reservoir
        ref = self._reference.get((key, name))
        if ref is None:
            ref = self._reference[(key, name)] = _NumericReference.of(feature)
        results: dict[str, tuple[float, float | None]] = {}
        m = ref.sorted.size
        if m and "wasserstein" in tests:
            d, w = ecdf_distances(ref.sorted, ref.std, values)
            results["ks"] = (d, ks_p_value(d, values.size, m))
            results["wasserstein"] = (w, None)
        elif m and "ks" in tests:  # no Wasserstein wanted: the cheaper way to the same KS
            batched = self._ks_batch.pop((kind, name), None)
            d = ks_distance(ref.sorted, values) if batched is None else batched
            results["ks"] = (d, ks_p_value(d, values.size, m))
        if ref.bins is not None and ("psi" in tests or "jensen_shannon" in tests):
            psi, js = bins_statistics(ref.bins, histogram_counts(values, ref.edges, sketch.count))
            results["psi"], results["jensen_shannon"] = (psi, None), (js, None)
        n = bucket(sketch.count)
        readings = []
        for test in tests:
            result = results.get(test)
            if result is None:
                continue
            if test == "ks":
                threshold = self._ks.get((values.size, m))
                if threshold is None:
                    threshold = self._ks[(values.size, m)] = ks_threshold(
                        self.alpha, values.size, m
                    )
            else:
                cached = self._thresholds.get((key, name, test, n))
                if cached is None:
                    if test == "wasserstein":
                        cached = self.thresholds.wasserstein(
                            ref.sorted, n=n, alpha=self.alpha,
                            key=(self.profile.profile_id, key, name),
                        )  # fmt: skip
                    else:
                        cached = self.thresholds.histogram(
                            "psi" if test == "psi" else "jensen_shannon", ref.counts, n=n,
                            alpha=self.alpha,
                        )  # fmt: skip
                    self._thresholds[(key, name, test, n)] = cached
                threshold = cached
            readings.append(
                self._reading(kind, label, segment, test, result, threshold,
                              test == tests[0], sketch.count, name)
            )  # fmt: skip
        return readings

    def _batch_ks(
        self, key: str, reference: SliceProfile, part: SliceDelta, missing: set[str | None]
    ) -> None:
        """The KS distances `_numeric` will want for this slice, all in one kernel call."""
        self._ks_batch = {}
        tests = self._numeric_tests if self._everything else self._numeric_tests[:1]
        if "ks" not in tests or "wasserstein" in tests:
            return
        minimum = self.config.detectors.min_count
        wanted: list[tuple[str, str, FeatureProfile, NumericSketch | None]] = [
            ("feature_drift", name, feature, part.numeric.get(name))
            for name, feature in reference.features.items() if name not in missing
        ]  # fmt: skip
        if self.config.detectors.prediction and reference.prediction is not None:
            wanted.append(("prediction_drift", "", reference.prediction, part.prediction_numeric))
        if self.config.detectors.scores:
            for cls, feature in judged_scores(reference.scores).items():
                wanted.append(("prediction_drift", f"score:{cls}", feature, part.scores.get(cls)))
        pairs: dict[tuple[str, str], tuple[FloatArray, FloatArray]] = {}
        for kind, name, feature, sketch in wanted:
            if feature.kind != "numeric" or feature.count < minimum:
                continue
            if sketch is None or sketch.count < minimum:
                continue
            ref = self._reference.get((key, name))
            if ref is None:
                ref = self._reference[(key, name)] = _NumericReference.of(feature)
            if ref.sorted.size:
                pairs[(kind, name)] = (ref.sorted, sketch.reservoir)
        if len(pairs) > 1:
            self._ks_batch = ks_distances(pairs, self._stacked)

    def _categorical(
        self,
        key: str,
        name: str,
        feature: FeatureProfile,
        sketch: CategoricalSketch,
        kind: str,
        label: str | None,
        segment: str | None,
    ) -> list[Reading]:
        tests = self._categorical_tests if self._everything else self._categorical_tests[:1]
        ref, cur = feature.categories, sketch.counts
        n = sum(cur.values())
        reference = self._categories.get((key, name))
        if reference is None:
            reference = self._categories[(key, name)] = categorical_reference(ref)
        results = categorical_statistics(ref, cur, reference)
        readings = []
        for test in tests:
            center = 0.0  # the statistic without drift, for the resolve's hysteresis
            if test == "chi_square":
                center = results["chi_square_dof"][0]
                threshold = chi_square_threshold(self.alpha, int(center))
            elif test == "unseen_rate":
                threshold, center = self._checks.unseen_threshold(feature, n)
            else:
                cached = self._thresholds.get((key, name, test, bucket(n)))
                if cached is None:
                    cached = self._thresholds[(key, name, test, bucket(n))] = (
                        self.thresholds.histogram(
                            "psi" if test == "psi" else "jensen_shannon",
                            [ref[k] for k in sorted(ref)], n=bucket(n), alpha=self.alpha,
                        )
                    )  # fmt: skip
                threshold = cached
            readings.append(
                self._reading(kind, label, segment, test, results[test], threshold,
                              test == tests[0], n, name, center,
                              n if test == "unseen_rate" else 0)
            )  # fmt: skip
        return readings

    def cache_state(self) -> dict[str, list[list[str | int | float]]]:
        """The thresholds computed so far, as JSON (a restored judge skips recomputing them)."""
        return {
            "drift": [[*key, value] for key, value in self._thresholds.items()
                      if math.isfinite(value)],
            "checks": [[*key, value] for key, value in self._checks.cache.items()
                       if math.isfinite(value)],
        }  # fmt: skip

    def load_cache(self, state: Mapping[str, list[list[Any]]]) -> None:
        for *key, value in state.get("drift", []):
            self._thresholds[(str(key[0]), str(key[1]), str(key[2]), int(key[3]))] = float(value)
        for *key, value in state.get("checks", []):
            self._checks.cache[tuple(key)] = float(value)

    def _reading(
        self,
        kind: str,
        label: str | None,
        segment: str | None,
        detector: str,
        result: tuple[float, float | None],
        threshold: float,
        decides: bool,
        count: int,
        name: str,
        center: float = 0.0,
        trials: int = 0,
    ) -> Reading:
        statistic, p_value = result
        breached = p_value < self.alpha if p_value is not None else bool(statistic > threshold)

        def summary() -> str:
            what = {
                "feature_drift": f"feature {name!r}",
                "prediction_drift": f"the {name.replace(':', ' ') if name else 'prediction'}",
            }[kind]
            p_text = f", p={p_value:.2g}" if p_value is not None else ""
            return (
                f"{what} of model {self.model!r} drifted from the reference: {detector} "
                f"{statistic:.4g} > {threshold:.4g}{p_text} over {count} values"
            )

        return Reading(
            kind, label, segment, detector, statistic, threshold, p_value, breached,
            decides, count, summary, center, trials,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class _NumericReference:
    """What the drift statistics need of one numeric reference feature, computed once."""

    sorted: FloatArray
    std: float
    counts: FloatArray
    edges: FloatArray
    bins: ReferenceBins | None
    """None when the reference has fewer than two bins (no PSI / JS)."""

    @classmethod
    def of(cls, feature: FeatureProfile) -> _NumericReference:
        sample = np.sort(np.asarray(feature.sample, dtype=np.float64))
        counts = np.asarray(feature.counts, dtype=np.float64)
        edges = np.asarray(feature.edges, dtype=np.float64)
        bins = reference_bins(counts) if counts.size >= 2 else None
        return cls(sample, float(sample.std()), counts, edges, bins)
