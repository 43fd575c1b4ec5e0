"""Data-quality signals: type tracking, rates against numpy, feature set changes."""

from __future__ import annotations

import json
from collections import Counter
from decimal import Decimal
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.categorical import CategoricalSketch
from detectors.data_quality import (
    FeatureTypeTracker,
    missing_features,
    new_features,
    non_finite_rate,
    null_rate,
    out_of_range_rate,
    type_changes,
    value_type,
)
from detectors.sketches import NumericSketch


def _json(state: dict[str, Any]) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(json.dumps(state, allow_nan=False))
    return loaded


def test_value_types_keep_bool_apart_from_numbers_and_accept_numpy_scalars() -> None:
    values = [1, 2.5, np.float32(1), np.int64(3), Decimal(1), True, np.bool_(False), "1", None, {}]
    assert [value_type(v) for v in values] == (
        ["number"] * 5 + ["bool", "bool", "string", "null", "other"]
    )


def test_tracker_counts_types_absence_and_dominant_type() -> None:
    tracker = FeatureTypeTracker()
    tracker.update(
        [
            {"age": 41, "plan": "pro", "flag": True},
            {"age": "41", "plan": None, "flag": np.bool_(True)},
            {"age": 39.5, "plan": "free"},
        ]
    )
    assert tracker.counts["age"] == {"number": 2, "string": 1}
    assert tracker.counts["plan"] == {"string": 2, "null": 1}
    assert tracker.counts["flag"] == {"bool": 2}
    assert (tracker.rows, tracker.seen("flag"), tracker.absent("flag")) == (3, 2, 1)
    assert tracker.absent("never") == 3
    assert tracker.features == ["age", "flag", "plan"]
    assert tracker.dominant_type("age") == "number"
    only_nulls = FeatureTypeTracker()
    only_nulls.update([{"x": None}])
    assert only_nulls.dominant_type("x") is None


def test_column_updates_equal_row_updates() -> None:
    rows: list[dict[str, object]] = [{"a": 1, "b": "x"}, {"a": None, "b": True}, {"a": 2.0}]
    by_rows, by_columns = FeatureTypeTracker(), FeatureTypeTracker()
    by_rows.update(rows)
    for name in ("a", "b"):
        by_columns.update_column(name, [row[name] for row in rows if name in row])
    by_columns.add_rows(len(rows))
    assert by_rows.to_state() == by_columns.to_state()


row = st.dictionaries(
    st.sampled_from(["a", "b", "c"]),
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text()),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(row, max_size=10), max_size=5))
def test_tracker_merge_equals_concatenation(parts: list[list[dict[str, object]]]) -> None:
    merged = FeatureTypeTracker()
    for part in parts:
        piece = FeatureTypeTracker()
        piece.update(part)
        merged.merge(FeatureTypeTracker.from_state(_json(piece.to_state())))
    whole = FeatureTypeTracker()
    whole.update([r for part in parts for r in part])
    assert merged.counts == whole.counts and merged.rows == whole.rows
    for name in whole.features:
        expected = Counter(value_type(r[name]) for part in parts for r in part if name in r)
        assert whole.counts[name] == dict(expected)
        assert whole.absent(name) == whole.rows - sum(expected.values())


def test_tracker_state_reset_and_errors() -> None:
    tracker = FeatureTypeTracker()
    tracker.update([{"a": 1}])
    assert FeatureTypeTracker.from_state(_json(tracker.to_state())).to_state() == (
        tracker.to_state()
    )
    with pytest.raises(ValueError, match="FeatureTypeTracker"):
        FeatureTypeTracker.from_state({"kind": "numeric"})
    with pytest.raises(TypeError):
        tracker.merge(NumericSketch())  # type: ignore[arg-type]
    tracker.reset()
    assert tracker.rows == 0 and tracker.counts == {}


def test_null_non_finite_and_out_of_range_rates_equal_numpy() -> None:
    rng = np.random.default_rng(5)
    data = rng.normal(10, 2, size=2000)
    data[::50] = np.nan
    data[::97] = np.inf
    sketch = NumericSketch(capacity=4096)
    sketch.update(data)
    sketch.update([None] * 40)
    total = data.size + 40
    assert null_rate(sketch) == pytest.approx(40 / total)
    assert non_finite_rate(sketch) == pytest.approx((~np.isfinite(data)).sum() / total)
    finite = data[np.isfinite(data)]
    want = np.mean((finite < 7.0) | (finite > 13.0))
    assert out_of_range_rate(sketch, 7.0, 13.0) == pytest.approx(want)
    assert out_of_range_rate(sketch, None, 13.0) == pytest.approx(np.mean(finite > 13.0))
    assert out_of_range_rate(sketch, None, None) == 0.0
    assert out_of_range_rate(NumericSketch(), 0.0, 1.0) is None
    categorical = CategoricalSketch()
    categorical.update(["a", None, None, "b"])
    assert null_rate(categorical) == 0.5
    assert null_rate(CategoricalSketch()) is None and non_finite_rate(NumericSketch()) is None


def test_out_of_range_on_a_reservoir_estimates_the_stream() -> None:
    rng = np.random.default_rng(6)
    data = rng.normal(size=200_000)
    sketch = NumericSketch(capacity=4096)
    for chunk in np.array_split(data, 50):
        sketch.update(chunk)
    exact = np.mean(np.abs(data) > 2.0)
    # binomial sd of a 4096 sample at p ~ 0.0455 is ~0.0033
    assert out_of_range_rate(sketch, -2.0, 2.0) == pytest.approx(exact, abs=0.013)


def test_type_changes_report_share_of_types_unknown_to_reference() -> None:
    ref = {"age": {"number": 95, "null": 5}, "plan": {"string": 10}, "gone": {"bool": 1}}
    cur = {
        "age": {"number": 30, "string": 10, "null": 60},
        "plan": {"string": 4, "null": 4},
        "new": {"number": 1},
    }
    assert type_changes(ref, cur) == {"age": 0.25}
    assert type_changes({"x": {"null": 3}}, {"x": {"bool": 2, "null": 1}}) == {"x": 1.0}
    assert type_changes({"x": {"number": 0}}, {"x": {"number": 2}}) == {"x": 1.0}


def test_missing_and_new_features_are_sorted_set_differences() -> None:
    ref, cur = ["b", "a", "c"], {"c": 1, "d": 2, "a": 3}
    assert missing_features(ref, cur) == ["b"]
    assert new_features(ref, cur) == ["d"]
    assert missing_features(ref, ref) == [] == new_features(ref, ref)
