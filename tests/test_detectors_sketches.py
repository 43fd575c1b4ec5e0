"""NumericSketch / CategoricalSketch: exact moments, uniform reservoir, merge, JSON state."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from detectors.categorical import OTHER, CategoricalSketch, category_key
from detectors.sketches import NumericSketch


def _roundtrip(state: dict[str, Any]) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(json.dumps(state, allow_nan=False))
    return loaded


def test_numeric_moments_equal_numpy_over_many_batches() -> None:
    rng = np.random.default_rng(7)
    data = rng.lognormal(3.0, 1.2, size=50_000)
    sketch = NumericSketch(capacity=1000)
    for chunk in np.array_split(data, 137):
        sketch.update(chunk)
    assert sketch.count == data.size
    assert sketch.mean == pytest.approx(data.mean(), rel=1e-12)
    assert sketch.std == pytest.approx(data.std(), rel=1e-10)
    assert (sketch.min, sketch.max) == (data.min(), data.max())
    assert sketch.values().size == 1000
    assert set(sketch.values()) <= set(data)


def test_numeric_counts_null_nan_inf_separately_and_stores_only_finite() -> None:
    sketch = NumericSketch()
    sketch.update([1.0, None, float("nan"), float("inf"), -float("inf"), 2, True])
    sketch.update(np.array([np.nan, 4.0]))
    sketch.update(np.array([None, 5.0], dtype=object))
    assert (sketch.count, sketch.nulls, sketch.nans, sketch.infs) == (5, 2, 2, 2)
    assert sketch.total == 11
    assert sketch.values().tolist() == [1.0, 2.0, 1.0, 4.0, 5.0]
    assert sketch.mean == pytest.approx(13 / 5)


def test_numeric_empty_reads_none_and_rejects_strings_without_changing_state() -> None:
    sketch = NumericSketch()
    assert (sketch.mean, sketch.std, sketch.min, sketch.max) == (None, None, None, None)
    with pytest.raises(TypeError, match="CategoricalSketch"):
        sketch.update([None, "a"])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="CategoricalSketch"):
        sketch.update(np.array(["a", "b"]))
    assert sketch.total == 0
    sketch.update([])
    assert sketch.histogram(np.array([0.0])).tolist() == [0.0, 0.0]


def test_histogram_bins_are_right_closed_and_scaled_to_count() -> None:
    sketch = NumericSketch()
    sketch.update(np.array([0.0, 1.0, 1.5, 2.0, 3.0]))
    assert sketch.histogram(np.array([1.0, 2.0])).tolist() == [2.0, 2.0, 1.0]
    with pytest.raises(ValueError, match="increasing"):
        sketch.histogram(np.array([2.0, 1.0]))

    rng = np.random.default_rng(3)
    data = rng.normal(size=100_000)
    big = NumericSketch(capacity=4096)
    big.update(data)
    edges = np.quantile(data, [0.1 * i for i in range(1, 10)])
    hist = big.histogram(edges)
    assert hist.sum() == pytest.approx(data.size)
    exact = np.bincount(np.searchsorted(edges, data, side="left"), minlength=10)
    # a 4096-value reservoir: each decile within ~5 sd of its binomial expectation
    assert np.all(np.abs(hist - exact) < 5 * np.sqrt(data.size * 0.1 * 0.9 * 24))


def test_reservoir_is_a_uniform_sample_of_the_stream() -> None:
    n, k = 200_000, 2000
    sketch = NumericSketch(capacity=k, seed=11)
    positions = np.arange(n, dtype=np.float64)
    for chunk in np.array_split(positions, 400):
        sketch.update(chunk)
    sample = sketch.values()
    assert sample.size == k and np.unique(sample).size == k  # without replacement
    # positions are uniform on [0, n) iff the sample is uniform over arrivals
    assert stats.kstest(sample / n, "uniform").pvalue > 0.01


def test_merge_is_uniform_over_the_union_weighted_by_counts() -> None:
    k = 1000
    big, small = NumericSketch(capacity=k, seed=0), NumericSketch(capacity=k, seed=0)
    for chunk in np.array_split(np.arange(90_000, dtype=np.float64), 90):
        big.update(chunk)
    small.update(np.arange(90_000, 100_000, dtype=np.float64))
    big.merge(small)
    sample = big.values()
    assert big.count == 100_000 and sample.size == k
    from_small = int((sample >= 90_000).sum())
    assert abs(from_small - 100) < 4 * np.sqrt(k * 0.1 * 0.9)
    assert stats.kstest(sample / 100_000, "uniform").pvalue > 0.01


def test_same_seed_partitions_draw_different_keys_for_different_data() -> None:
    a, b = NumericSketch(capacity=10), NumericSketch(capacity=10)
    a.update(np.arange(100.0))
    b.update(np.arange(100.0, 200.0))
    assert a.to_state()["keys"] != b.to_state()["keys"]


def test_reservoir_is_deterministic_for_the_same_seed_and_batches() -> None:
    data = np.random.default_rng(1).normal(size=10_000)
    one, two, other = NumericSketch(100, 5), NumericSketch(100, 5), NumericSketch(100, 6)
    for sketch in (one, two, other):
        for chunk in np.array_split(data, 10):
            sketch.update(chunk)
    assert np.array_equal(one.values(), two.values())
    assert not np.array_equal(one.values(), other.values())


def test_numeric_state_roundtrips_through_json_and_continues_identically() -> None:
    rng = np.random.default_rng(2)
    first, second = rng.normal(size=5000), rng.normal(size=5000)
    live = NumericSketch(capacity=300, seed=4)
    live.update(first)
    live.update([None, float("nan")])
    restored = NumericSketch.from_state(_roundtrip(live.to_state()))
    assert restored.to_state() == live.to_state()
    live.update(second)
    restored.update(second)
    assert restored.to_state() == live.to_state()
    empty = NumericSketch.from_state(_roundtrip(NumericSketch().to_state()))
    assert empty.min is None and empty.count == 0
    with pytest.raises(ValueError, match="kind"):
        NumericSketch.from_state(CategoricalSketch().to_state())


def test_reset_and_copy() -> None:
    sketch = NumericSketch()
    sketch.update([1.0, None])
    clone = sketch.copy()
    sketch.reset()
    assert sketch.total == 0 and clone.total == 2 and clone.values().tolist() == [1.0]


finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)
maybe = st.one_of(finite, st.none(), st.just(float("nan")), st.just(float("inf")))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(maybe, max_size=30), min_size=1, max_size=6), st.integers(1, 200))
def test_merge_of_parts_equals_one_sketch_of_the_concatenation(
    parts: list[list[float | None]], capacity: int
) -> None:
    merged = NumericSketch(capacity=capacity)
    for part in parts:
        piece = NumericSketch(capacity=capacity)
        piece.update(part)
        merged.merge(_fresh(piece))
    whole = [v for part in parts for v in part]
    finite_values = np.array([v for v in whole if v is not None and np.isfinite(v)])
    assert merged.count == finite_values.size
    assert merged.nulls == sum(v is None for v in whole)
    assert merged.total == len(whole)
    if finite_values.size:
        assert merged.mean == pytest.approx(finite_values.mean(), rel=1e-9, abs=1e-6)
        assert merged.std == pytest.approx(finite_values.std(), rel=1e-6, abs=1e-4)
        assert merged.min == finite_values.min() and merged.max == finite_values.max()
    sample = merged.values()
    assert sample.size == min(capacity, finite_values.size)
    if finite_values.size <= capacity:
        assert sorted(sample.tolist()) == sorted(finite_values.tolist())


def _fresh(sketch: NumericSketch) -> NumericSketch:
    return NumericSketch.from_state(_roundtrip(sketch.to_state()))


def test_category_keys_and_folding_beyond_max_categories() -> None:
    assert [category_key(v) for v in (True, False, 1, 1.0, 1.5, "x")] == [
        "true",
        "false",
        "1",
        "1",
        "1.5",
        "x",
    ]
    sketch = CategoricalSketch(max_categories=3)
    sketch.update([True, 1, "a", None, 1.0])
    assert sketch.counts == {"true": 1, "1": 2, "a": 1} and sketch.nulls == 1
    sketch.update(["b", "a", "c"])
    assert sketch.counts == {"true": 1, "1": 2, "a": 2, OTHER: 2}
    assert sketch.total == 8


def test_categorical_merge_state_and_reset() -> None:
    a, b = CategoricalSketch(max_categories=2), CategoricalSketch(max_categories=2)
    a.update(["x", "y", "x"])
    b.update(["z", "x", None])
    a.merge(CategoricalSketch.from_state(_roundtrip(b.to_state())))
    assert a.counts == {"x": 3, "y": 1, OTHER: 1} and a.nulls == 1
    restored = CategoricalSketch.from_state(_roundtrip(a.to_state()))
    assert restored.to_state() == a.to_state()
    c = CategoricalSketch()
    c.merge(restored)  # OTHER stays OTHER, never takes a category slot
    assert c.counts == restored.counts
    with pytest.raises(TypeError):
        a.merge(NumericSketch())  # type: ignore[arg-type]
    a.reset()
    assert a.total == 0 and a.counts == {}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.one_of(st.sampled_from("abcdef"), st.none(), st.integers(0, 3)))))
def test_categorical_merge_equals_concatenation_within_capacity(
    parts: list[list[str | int | None]],
) -> None:
    merged = CategoricalSketch()
    for part in parts:
        piece = CategoricalSketch()
        piece.update(part)
        merged.merge(piece)
    whole = CategoricalSketch()
    whole.update([v for part in parts for v in part])
    assert merged.counts == whole.counts and merged.nulls == whole.nulls


def test_merge_of_different_capacities_stays_uniform_over_the_union() -> None:
    small_exact = NumericSketch(capacity=1000)
    small_exact.update(np.full(50, -1.0))  # 50 values, all kept
    big_truncated = NumericSketch(capacity=100)
    big_truncated.update(np.arange(1000, dtype=np.float64))  # 100 of 1000 kept
    small_exact.merge(big_truncated)
    sample = small_exact.values()
    # every union key below the truncated side's cut-off: ~100 * 1050 / 1000 values
    assert small_exact.count == 1050 and 100 <= sample.size <= 120
    # ~50/1050 of the sample comes from the 50 exact values, not all 50 of them
    assert int((sample == -1.0).sum()) < 15
    # later values enter at the same rate as the merged ones, not all of them
    small_exact.update(np.arange(5000.0, 6050.0))
    later = small_exact.values()
    assert 170 <= later.size <= 250
    assert abs(int((later >= 5000).sum()) - later.size / 2) < 4 * np.sqrt(later.size / 4)


def test_huge_finite_values_and_all_non_finite_batches() -> None:
    sketch = NumericSketch()
    with np.errstate(over="ignore"):
        sketch.update(np.array([1e308, 1e308, np.nan]))  # the batch sum overflows
    assert (sketch.count, sketch.nans, sketch.mean, sketch.std) == (2, 1, 1e308, 0.0)
    sketch.update(np.array([np.inf, -np.inf, np.nan]))
    assert (sketch.count, sketch.nans, sketch.infs) == (2, 2, 2)
    assert sketch.values().tolist() == [1e308, 1e308]


def _window_parts(parts: int, events: int, seed: int) -> list[Any]:
    """``parts`` window deltas of ``events`` predictions each: numeric and categorical
    features, a numeric prediction, class scores, a segment slice (as the ingest folds them)."""
    from detectors.accumulate_columns import fold_columns
    from detectors.columns import PredictionColumns
    from detectors.window import WindowDelta
    from schemas.monitor_config import parse_monitor_config

    config = parse_monitor_config({"defaults": {"segments": {"keys": ["plan"]}}}).for_model("m")
    rng = np.random.default_rng(seed)
    deltas = []
    for k in range(parts):
        ids = [f"e-{k}-{i}" for i in range(events)]
        columns = PredictionColumns.from_arrays(
            model="m", event_ids=ids, times_us=np.arange(events) + k * events,
            features={"x": rng.normal(size=events), "y": rng.exponential(size=events),
                      "plan": list(rng.choice(["a", "b"], size=events))},
            prediction=rng.random(events),
            scores={"yes": rng.random(events), "no": rng.random(events)},
            segments=[{"plan": str(p)} for p in rng.choice(["a", "b"], size=events)],
        )  # fmt: skip
        delta = WindowDelta("m", None)
        fold_columns(delta, columns, config)
        deltas.append(delta)
    return deltas


@pytest.mark.parametrize(("parts", "events"), [(8, 2500), (3, 1000), (5, 700)])
def test_a_window_merged_in_one_go_equals_one_merged_delta_by_delta(
    parts: int, events: int
) -> None:
    """The judge merges a window's deltas when it reads the window (`merge_later`): the state
    is the one merging them one by one gave, reservoirs past their capacity included."""
    eager, lazy = _window_parts(parts, events, 3), _window_parts(parts, events, 3)
    one_by_one = eager[0]
    for delta in eager[1:]:
        one_by_one.merge(delta)
    at_once = lazy[0]
    for delta in lazy[1:]:
        at_once.merge_later(delta)
    assert at_once.count == one_by_one.count  # counted at once, merged when read
    assert at_once._later
    assert at_once.to_state() == one_by_one.to_state()
    assert not at_once._later


def test_merge_many_keeps_the_smallest_keys_of_every_side_under_the_tightest_cut_off() -> None:
    sides = []
    for seed, capacity in ((1, 64), (2, 16), (3, 64)):
        sketch = NumericSketch(capacity=capacity, seed=seed)
        sketch.update(np.random.default_rng(seed).normal(size=200))
        sides.append(sketch)
    merged = sides[0].copy()
    merged.merge_many(sides[1:])
    cut = min(side._cutoff() for side in sides)
    every = np.concatenate([side._key_array() for side in sides])
    expected = np.sort(every[every <= cut])[:64]
    assert np.array_equal(np.sort(merged._key_array()), expected)
    assert merged.count == 600
    assert merged.mean == pytest.approx(
        np.mean(np.concatenate([np.random.default_rng(s).normal(size=200) for s in (1, 2, 3)]))
    )
