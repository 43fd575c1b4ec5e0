"""Drift statistics against independent scipy/numpy computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.spatial.distance import jensenshannon

from detectors.sketches import NumericSketch
from detectors.stats import (
    CATEGORICAL_TESTS,
    NUMERIC_INPUT,
    NUMERIC_TESTS,
    PSI_EPSILON,
    StatResult,
    categorical_js,
    categorical_psi,
    chi_square,
    jensen_shannon,
    ks,
    psi,
    quantile_edges,
    unseen_rate,
    wasserstein,
)

RNG_SEED = 20240501


@pytest.mark.parametrize(("n", "m", "shift"), [(50, 70, 0.0), (4096, 500, 0.1), (300, 300, 1.0)])
def test_ks_equals_scipy_on_sketch_reservoirs_within_capacity(n: int, m: int, shift: float) -> None:
    rng = np.random.default_rng(RNG_SEED)
    ref_data, cur_data = rng.normal(size=n), rng.normal(shift, size=m)
    ref, cur = NumericSketch(capacity=4096), NumericSketch(capacity=4096)
    for chunk in np.array_split(ref_data, 7):
        ref.update(chunk)
    cur.update(cur_data)
    got = ks(ref.values(), cur.values())
    want = stats.ks_2samp(ref_data, cur_data)
    assert got.statistic == pytest.approx(want.statistic, abs=1e-15)
    assert got.p_value == pytest.approx(want.pvalue, rel=1e-12)
    # the statistic itself, from the two ECDFs
    grid = np.concatenate([ref_data, cur_data])
    f_r = np.searchsorted(np.sort(ref_data), grid, side="right") / n
    f_c = np.searchsorted(np.sort(cur_data), grid, side="right") / m
    assert got.statistic == pytest.approx(np.max(np.abs(f_r - f_c)), abs=1e-15)


def test_ks_detects_a_shift_and_not_a_stationary_window() -> None:
    rng = np.random.default_rng(RNG_SEED)
    ref = rng.normal(size=2000)
    assert ks(ref, rng.normal(size=500)).p_value > 0.01  # type: ignore[operator]
    assert ks(ref, rng.normal(0.5, size=500)).p_value < 1e-8  # type: ignore[operator]


def test_wasserstein_equals_scipy_divided_by_reference_std() -> None:
    rng = np.random.default_rng(RNG_SEED)
    for _ in range(5):
        ref = rng.gamma(2.0, 3.0, size=int(rng.integers(1, 400)))
        cur = rng.gamma(2.5, 3.0, size=int(rng.integers(1, 400)))
        want = stats.wasserstein_distance(ref, cur)
        scale = ref.std() if ref.std() > 0 else 1.0
        assert wasserstein(ref, cur).statistic == pytest.approx(want / scale, rel=1e-10)
    # ties and a constant reference (raw distance)
    assert wasserstein([1.0, 1.0], [1.0, 3.0]).statistic == pytest.approx(1.0)
    assert wasserstein([2.0, 2.0, 3.0], [2.0, 3.0, 3.0]).statistic == pytest.approx(
        stats.wasserstein_distance([2, 2, 3], [2, 3, 3]) / np.std([2, 2, 3])
    )


def test_psi_is_the_standard_formula_with_documented_smoothing() -> None:
    ref = np.array([100.0, 200.0, 300.0, 400.0])
    cur = np.array([150.0, 250.0, 250.0, 350.0])
    p, q = ref / ref.sum(), cur / cur.sum()
    unsmoothed = np.sum((q - p) * np.log(q / p))
    assert psi(ref, cur).statistic == pytest.approx(unsmoothed, rel=1e-3)
    ps, qs = (p + PSI_EPSILON) / (1 + 4 * PSI_EPSILON), (q + PSI_EPSILON) / (1 + 4 * PSI_EPSILON)
    assert psi(ref, cur).statistic == pytest.approx(np.sum((qs - ps) * np.log(qs / ps)))
    # an empty bin gives a large but finite value, identical inputs give 0
    empty_bin = psi([10, 10, 0], [10, 10, 10]).statistic
    assert math.isfinite(empty_bin) and empty_bin > 1.0
    assert psi(ref, ref * 3).statistic == pytest.approx(0.0, abs=1e-15)


def test_jensen_shannon_is_scipy_distance_base_2() -> None:
    rng = np.random.default_rng(RNG_SEED)
    for _ in range(10):
        r = rng.integers(0, 50, size=8).astype(float)
        c = rng.integers(0, 50, size=8).astype(float)
        r[0], c[1] = 0.0, 0.0  # zero bins on either side
        want = jensenshannon(r, c, base=2)
        assert jensen_shannon(r, c).statistic == pytest.approx(want, abs=1e-12)
    assert jensen_shannon([1, 0], [0, 1]).statistic == pytest.approx(1.0)
    assert jensen_shannon([3, 4], [6, 8]).statistic == pytest.approx(0.0, abs=1e-7)


def test_chi_square_equals_scipy_contingency_with_one_sided_and_zero_categories() -> None:
    ref = {"a": 120, "b": 80, "c": 0, "d": 5, "__other__": 3}
    cur = {"a": 40, "b": 70, "e": 9, "d": 0}
    got = chi_square(ref, cur)
    keys = ["a", "b", "d", "e", "__other__"]  # "c" is zero on both sides
    table = np.array([[ref.get(k, 0) for k in keys], [cur.get(k, 0) for k in keys]])
    want = stats.chi2_contingency(table, correction=False)
    assert got.statistic == pytest.approx(want.statistic, rel=1e-12)
    assert got.p_value == pytest.approx(want.pvalue, rel=1e-9)
    two = stats.chi2_contingency([[30, 70], [45, 55]], correction=False)
    assert chi_square({"x": 30, "y": 70}, {"x": 45, "y": 55}).p_value == pytest.approx(two.pvalue)
    assert chi_square({"a": 5}, {"a": 9}) == StatResult(0.0, 1.0)


@settings(max_examples=50, deadline=None)
@given(
    st.dictionaries(st.sampled_from("abcdefg"), st.integers(0, 500), min_size=1),
    st.dictionaries(st.sampled_from("abcdefgh"), st.integers(0, 500), min_size=1),
)
def test_categorical_tests_match_scipy_for_any_counts(
    ref: dict[str, int], cur: dict[str, int]
) -> None:
    keys = sorted(k for k in set(ref) | set(cur) if ref.get(k, 0) + cur.get(k, 0) > 0)
    r = np.array([ref.get(k, 0) for k in keys], dtype=float)
    c = np.array([cur.get(k, 0) for k in keys], dtype=float)
    got = chi_square(ref, cur)
    if r.sum() == 0 or c.sum() == 0:
        assert math.isnan(got.statistic) and got.p_value is None
        assert math.isnan(categorical_js(ref, cur).statistic)
        return
    if len(keys) >= 2:
        want = stats.chi2_contingency(np.vstack([r, c]), correction=False)
        assert got.statistic == pytest.approx(want.statistic, rel=1e-9, abs=1e-9)
        assert got.p_value == pytest.approx(want.pvalue, rel=1e-6, abs=1e-12)
    assert categorical_js(ref, cur).statistic == pytest.approx(
        jensenshannon(r, c, base=2), abs=1e-7
    )
    p = (r / r.sum() + PSI_EPSILON) / (1 + len(keys) * PSI_EPSILON)
    q = (c / c.sum() + PSI_EPSILON) / (1 + len(keys) * PSI_EPSILON)
    assert categorical_psi(ref, cur).statistic == pytest.approx(
        np.sum((q - p) * np.log(q / p)), rel=1e-9, abs=1e-12
    )


def test_unseen_rate_counts_window_mass_on_categories_absent_from_reference() -> None:
    assert unseen_rate({"a": 5, "b": 0}, {"a": 6, "b": 2, "c": 2}).statistic == 0.4
    assert unseen_rate({"a": 5}, {"a": 1}).statistic == 0.0
    assert math.isnan(unseen_rate({"a": 5}, {}).statistic)


def test_empty_sides_give_nan_without_p_value() -> None:
    for result in (ks([], [1.0]), wasserstein([1.0], []), psi([0, 0], [1, 2])):
        assert math.isnan(result.statistic) and result.p_value is None


def test_bad_inputs_say_what_to_do() -> None:
    with pytest.raises(ValueError, match="same edges"):
        psi([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="finite"):
        ks([1.0, float("nan")], [1.0])
    with pytest.raises(ValueError, match="non-negative"):
        jensen_shannon([1, -1], [1, 1])
    with pytest.raises(ValueError, match="bins"):
        quantile_edges([1.0], bins=1)


def test_quantile_edges_are_unique_reference_quantiles_usable_with_histogram() -> None:
    rng = np.random.default_rng(RNG_SEED)
    ref = rng.normal(size=10_000)
    edges = quantile_edges(ref, bins=10)
    assert np.array_equal(edges, np.quantile(ref, np.arange(1, 10) / 10, method="inverted_cdf"))
    sketch = NumericSketch(capacity=20_000)
    sketch.update(ref)
    hist = sketch.histogram(edges)
    assert hist.size == 10 and np.all(np.abs(hist - 1000) <= 1)
    assert quantile_edges([1, 1, 1, 2], bins=4).tolist() == [1.0]
    assert quantile_edges([1, 2, 3, 4], bins=4).tolist() == [1.0, 2.0, 3.0]
    assert quantile_edges([], bins=4).size == 0


def test_registries_map_names_to_functions_and_inputs() -> None:
    assert (
        set(NUMERIC_TESTS) == set(NUMERIC_INPUT) == {"ks", "psi", "wasserstein", "jensen_shannon"}
    )
    assert set(CATEGORICAL_TESTS) == {"chi_square", "psi", "jensen_shannon", "unseen_rate"}
    rng = np.random.default_rng(RNG_SEED)
    ref, cur = NumericSketch(), NumericSketch()
    ref.update(rng.normal(size=1000))
    cur.update(rng.normal(2.0, size=1000))
    edges = quantile_edges(ref.values())
    for name, test in NUMERIC_TESTS.items():
        if NUMERIC_INPUT[name] == "values":
            result = test(ref.values(), cur.values())
        else:
            result = test(ref.histogram(edges), cur.histogram(edges))
        assert result.statistic > 0.3, name
