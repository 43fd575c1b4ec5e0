"""The judge's fast paths compute exactly what the plain ones do (and what scipy does)."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from scipy import stats as scipy_stats

from detectors import stats
from detectors.accumulate import PartitionAccumulator
from detectors.alerting import Reading
from detectors.evaluate import Evaluator
from detectors.evaluate_checks import _poisson_cdf, _poisson_ppf
from detectors.kernels import (
    bins_statistics,
    ecdf_distances,
    histogram_counts,
    histogram_statistics,
    ks_distance,
    reference_bins,
)
from detectors.profile_builder import profile_from_events
from detectors.sketches import NumericSketch
from schemas.events import PredictionEvent
from schemas.monitor_config import MonitorConfig

RNG = np.random.default_rng(20240612)


def _sample(n: int, decimals: int, shift: float = 0.0) -> np.ndarray:
    return np.round(RNG.normal(shift, 3, n), decimals)


@pytest.mark.parametrize("decimals", [0, 1, 3, 12])  # from all ties to none
def test_ks_distance_is_bitwise_the_merged_grid_statistic_and_scipy(decimals: int) -> None:
    for m, n in [(2000, 500), (37, 11), (1, 1), (300, 900)]:
        for shift in (0.0, 0.3):
            ref, cur = np.sort(_sample(m, decimals)), _sample(n, decimals, shift)
            d = ks_distance(ref, cur)
            assert d == ecdf_distances(ref, float(ref.std()), cur)[0]  # the same float
            assert d == pytest.approx(scipy_stats.ks_2samp(ref, cur).statistic, abs=1e-12)


def test_ks_distance_handles_equal_values_on_both_sides() -> None:
    ref = np.sort(np.array([-0.0, 0.0, 0.0, 1.0, 1.0, 2.0]))
    for cur in (np.zeros(4), np.array([1.0, 1.0, 0.0, -0.0]), np.array([3.0]), np.array([-1.0])):
        expected = scipy_stats.ks_2samp(ref, cur).statistic
        assert ks_distance(ref, cur) == ecdf_distances(ref, 1.0, cur)[0]
        assert ks_distance(ref, cur) == pytest.approx(expected, abs=1e-12)


def test_binned_statistics_against_a_cached_reference_equal_the_plain_ones() -> None:
    for bins in (2, 5, 10):
        ref = RNG.integers(0, 60, bins).astype(float)
        ref[RNG.random(bins) < 0.2] = 0.0  # empty reference bins take the masked path
        cur = RNG.integers(0, 40, bins).astype(float)
        cur[RNG.random(bins) < 0.2] = 0.0
        if ref.sum() == 0 or cur.sum() == 0:
            continue
        psi, js = bins_statistics(reference_bins(ref), cur)
        assert (psi, js) == histogram_statistics(ref, cur)
        assert psi == pytest.approx(stats.psi(ref, cur).statistic, rel=1e-12)
        assert js == pytest.approx(stats.jensen_shannon(ref, cur).statistic, rel=1e-12)


def test_histogram_counts_equal_the_sketch_histogram() -> None:
    sketch = NumericSketch(capacity=300)
    for _ in range(4):
        sketch.update(_sample(200, 2))  # beyond capacity: counts are scaled
    edges = np.quantile(_sample(1000, 2), np.arange(1, 10) / 10)
    assert np.array_equal(
        histogram_counts(sketch.reservoir, edges, sketch.count), sketch.histogram(edges)
    )


def test_poisson_shortcuts_equal_scipy_exactly() -> None:
    for mu in (0.0, 0.7, 19.5, 20.0, 400.25, 3333.3):
        for k in (0, 1, 5, int(mu), int(mu * 1.5) + 2):
            assert _poisson_cdf(k, mu) == float(scipy_stats.poisson.cdf(k, mu))
        for q in (1e-12, 3.4e-6, 0.01, 0.5, 0.999):
            assert _poisson_ppf(q, mu) == float(scipy_stats.poisson.ppf(q, mu))
    assert _poisson_ppf(0.0, 5.0) == float(scipy_stats.poisson.ppf(0.0, 5.0))  # the fallback


def test_deciding_readings_do_not_depend_on_computing_the_reported_ones() -> None:
    t0 = datetime(2024, 5, 1, tzinfo=UTC)

    def events(start: int, n: int, shift: float) -> list[PredictionEvent]:
        return [
            PredictionEvent(
                event_id=str(start + i), model="m", timestamp=t0 + timedelta(seconds=start + i),
                features={"x": float(RNG.normal(shift)), "k": int(RNG.poisson(3)),
                          "c": str(RNG.choice(["a", "b", "c"]))},
                prediction=float(RNG.random()),
            )
            for i in range(n)
        ]  # fmt: skip

    config = MonitorConfig()
    profile = profile_from_events(events(0, 2000, 0.0), model="m", config=config)
    accumulator = PartitionAccumulator(config)
    accumulator.add_predictions(events(2000, 500, 0.4))
    [window] = accumulator.drain()
    evaluator = Evaluator("m", profile, config.for_model("m"), alpha=1e-4)
    every = evaluator.evaluate(window, baseline=None, coverage=None)
    deciding = evaluator.evaluate(window, baseline=None, coverage=None, everything=False)
    assert len(deciding) < len(every)

    def plain(readings: list[Reading]) -> list[tuple[object, ...]]:
        return [
            (*(getattr(r, f.name) for f in fields(r) if f.name != "describe"), r.summary)
            for r in readings
        ]

    assert plain([r for r in every if r.decides]) == plain(deciding)
    assert {r.detector for r in every} >= {"ks", "psi", "wasserstein", "chi_square"}
    assert any(r.breached and r.feature == "x" for r in deciding)  # the shift is seen


def test_the_out_of_range_count_equals_the_data_quality_helper() -> None:
    from detectors.data_quality import out_of_range_rate
    from detectors.evaluate_checks import _outside

    for capacity in (50, 4096):
        sketch = NumericSketch(capacity=capacity)
        sketch.update(_sample(700, 1))
        for low, high in [(-2.0, 2.0), (None, 1.0), (-1.0, None), (-9.0, 9.0), (1.0, -1.0)]:
            assert _outside(sketch.reservoir, low, high) == out_of_range_rate(sketch, low, high)
