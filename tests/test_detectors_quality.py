"""Quality accumulators against scikit-learn, merge == concatenation, JSON state."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics

from detectors.latency import LatencySketch
from detectors.quality import ClassificationSketch, class_key
from detectors.regression import RegressionSketch

SEED = 99


def _json(state: dict[str, Any]) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(json.dumps(state, allow_nan=False))
    return loaded


def _nan_to_none(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def _binary_stream(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.integers(0, 2, size=n)
    probs = np.clip(0.3 * labels + rng.uniform(0, 0.7, size=n), 0, 1)
    return labels, probs


def test_binary_with_probability_predictions_matches_sklearn() -> None:
    rng = np.random.default_rng(SEED)
    labels, probs = _binary_stream(3000, rng)
    sketch = ClassificationSketch()
    for part in np.array_split(np.arange(3000), 9):
        sketch.update([float(p) for p in probs[part]], [bool(v) for v in labels[part]])
    predicted = (probs >= 0.5).astype(int)
    assert sketch.accuracy == pytest.approx(metrics.accuracy_score(labels, predicted))
    assert sketch.precision == pytest.approx(metrics.precision_score(labels, predicted))
    assert sketch.recall == pytest.approx(metrics.recall_score(labels, predicted))
    assert sketch.f1 == pytest.approx(metrics.f1_score(labels, predicted))
    assert sketch.roc_auc == pytest.approx(metrics.roc_auc_score(labels, probs), abs=1e-12)
    assert sketch.log_loss == pytest.approx(metrics.log_loss(labels, probs), rel=1e-9)
    assert sketch.positive == "1" and sketch.is_binary


def test_binary_string_classes_with_score_dicts_matches_sklearn() -> None:
    rng = np.random.default_rng(SEED)
    y = rng.choice(["cat", "dog"], size=800)
    p_dog = np.clip(np.where(y == "dog", 0.6, 0.4) + rng.normal(0, 0.25, size=800), 0.01, 0.99)
    # ties in the scores, as a calibrated model rounding to 2 decimals produces
    p_dog = np.round(p_dog, 2)
    pred = np.where(p_dog >= 0.5, "dog", "cat")
    scores = [{"cat": 1 - p, "dog": p} for p in p_dog]
    sketch = ClassificationSketch()
    sketch.update(list(pred), list(y), scores)
    assert sketch.positive == "dog"
    assert sketch.precision == pytest.approx(metrics.precision_score(y, pred, pos_label="dog"))
    assert sketch.recall == pytest.approx(metrics.recall_score(y, pred, pos_label="dog"))
    assert sketch.f1 == pytest.approx(metrics.f1_score(y, pred, pos_label="dog"))
    assert sketch.roc_auc == pytest.approx(metrics.roc_auc_score(y == "dog", p_dog), abs=1e-12)
    proba = np.column_stack([1 - p_dog, p_dog])
    assert sketch.log_loss == pytest.approx(metrics.log_loss(y, proba, labels=["cat", "dog"]))


def test_multiclass_is_macro_averaged_like_sklearn_with_nan_zero_division() -> None:
    rng = np.random.default_rng(SEED)
    classes = np.array(["a", "b", "c", "d"])
    y = rng.choice(classes[:3], size=600)  # "d" is predicted but never true
    noisy = rng.random(600) < 0.35
    pred = np.where(noisy, rng.choice(classes, size=600), y)
    raw = rng.dirichlet(np.ones(4), size=600)
    sketch = ClassificationSketch(seed=3)
    sketch.update(list(pred), list(y), [dict(zip(classes, row, strict=True)) for row in raw])
    assert not sketch.is_binary and sketch.roc_auc is None
    assert sketch.accuracy == pytest.approx(metrics.accuracy_score(y, pred))
    for name, fn in (
        ("precision", metrics.precision_score),
        ("recall", metrics.recall_score),
        ("f1", metrics.f1_score),
    ):
        want = fn(y, pred, average="macro", zero_division=np.nan)
        assert getattr(sketch, name) == pytest.approx(want), name
    assert sketch.log_loss == pytest.approx(metrics.log_loss(y, raw, labels=list(classes)))


def test_undefined_metrics_are_none() -> None:
    sketch = ClassificationSketch()
    assert (sketch.accuracy, sketch.precision, sketch.f1, sketch.roc_auc, sketch.log_loss) == (
        None,
        None,
        None,
        None,
        None,
    )
    sketch.update([0, 0], [0, 0])  # no positive anywhere
    assert sketch.accuracy == 1.0
    assert sketch.positive == "1"
    assert (sketch.precision, sketch.recall, sketch.f1, sketch.roc_auc) == (None, None, None, None)
    want = metrics.precision_score([0, 0], [0, 0], zero_division=np.nan)
    assert math.isnan(want)
    one_class = ClassificationSketch()
    one_class.update(["x"], ["x"])
    assert one_class.positive is None and one_class.f1 is None


def test_class_keys_unify_bool_int_float_and_explicit_positive_class() -> None:
    assert [class_key(v) for v in (True, 1, 1.0, "1", False, 0)] == ["1"] * 4 + ["0"] * 2
    sketch = ClassificationSketch(positive_class="no", average="binary")
    sketch.update(["yes", "no", "no"], ["no", "no", "yes"])
    assert sketch.precision == pytest.approx(
        metrics.precision_score(["no", "no", "yes"], ["yes", "no", "no"], pos_label="no")
    )
    with pytest.raises(ValueError, match="one entry per outcome"):
        sketch.update([1], [1, 0])


def test_single_entry_score_dicts_imply_the_other_class() -> None:
    labels = [1, 0, 1, 0, 1]
    p1 = [0.9, 0.2, 0.6, 0.7, 0.4]
    sketch = ClassificationSketch()
    sketch.update([int(p >= 0.5) for p in p1], labels, [{"1": p} for p in p1])
    assert sketch.roc_auc == pytest.approx(metrics.roc_auc_score(labels, p1))
    assert sketch.log_loss == pytest.approx(metrics.log_loss(labels, p1))
    zero_keyed = ClassificationSketch()
    zero_keyed.update([int(p >= 0.5) for p in p1], labels, [{"0": 1 - p} for p in p1])
    assert zero_keyed.roc_auc == pytest.approx(sketch.roc_auc)
    assert zero_keyed.log_loss == pytest.approx(sketch.log_loss)


def test_roc_auc_reservoir_beyond_capacity_is_close_and_merge_uniform() -> None:
    rng = np.random.default_rng(SEED)
    labels, probs = _binary_stream(40_000, rng)
    parts = [ClassificationSketch(capacity=2000, seed=s) for s in range(4)]
    for i, part in enumerate(np.array_split(np.arange(40_000), 4)):
        for chunk in np.array_split(part, 20):
            parts[i].update([float(p) for p in probs[chunk]], [int(v) for v in labels[chunk]])
    merged = parts[0]
    for other in parts[1:]:
        merged.merge(ClassificationSketch.from_state(_json(other.to_state())))
    assert len(merged.to_state()["labels"]) == 2000
    exact = metrics.roc_auc_score(labels, probs)
    assert merged.roc_auc == pytest.approx(exact, abs=0.03)
    assert merged.log_loss == pytest.approx(metrics.log_loss(labels, probs), rel=1e-9)


outcome = st.tuples(
    st.one_of(st.integers(0, 1), st.floats(0, 1), st.booleans()),
    st.integers(0, 1),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(outcome, max_size=20), min_size=1, max_size=5))
def test_merge_equals_one_sketch_of_the_concatenation(
    parts: list[list[tuple[int | float | bool, int]]],
) -> None:
    merged = ClassificationSketch(capacity=50)
    for part in parts:
        piece = ClassificationSketch(capacity=50)
        piece.update([p for p, _ in part], [y for _, y in part])
        merged.merge(ClassificationSketch.from_state(_json(piece.to_state())))
    whole = ClassificationSketch(capacity=50)
    flat = [o for part in parts for o in part]
    whole.update([p for p, _ in flat], [y for _, y in flat])
    for name in ("accuracy", "precision", "recall", "f1", "log_loss"):
        assert getattr(merged, name) == pytest.approx(getattr(whole, name)), name
    if merged.log_loss_count <= 50:
        assert merged.roc_auc == pytest.approx(whole.roc_auc)


def test_classification_state_reset() -> None:
    sketch = ClassificationSketch(positive_class="1", capacity=10, seed=2)
    sketch.update([0.2, 0.8, 1], [0, 1, 1])
    restored = ClassificationSketch.from_state(_json(sketch.to_state()))
    assert restored.to_state() == sketch.to_state()
    with pytest.raises(ValueError, match="kind"):
        ClassificationSketch.from_state(RegressionSketch().to_state())
    sketch.reset()
    assert sketch.count == 0 and sketch.to_state()["labels"] == []


def test_regression_matches_sklearn_and_merges() -> None:
    rng = np.random.default_rng(SEED)
    y = rng.normal(10, 3, size=5000)
    pred = y + rng.normal(0.5, 1.0, size=5000)
    a, b = RegressionSketch(), RegressionSketch()
    a.update(pred[:1234], y[:1234])
    b.update(pred[1234:], y[1234:])
    a.merge(RegressionSketch.from_state(_json(b.to_state())))
    assert a.count == 5000
    assert a.mae == pytest.approx(metrics.mean_absolute_error(y, pred), rel=1e-12)
    assert a.rmse == pytest.approx(np.sqrt(metrics.mean_squared_error(y, pred)), rel=1e-12)
    with pytest.raises(TypeError, match="ClassificationSketch"):
        a.update(["x"], ["y"])
    with pytest.raises(ValueError, match="pairs"):
        a.update([1.0, 2.0], [1.0])
    a.reset()
    assert a.mae is None and a.rmse is None


def test_latency_quantiles_within_a_bin_of_numpy_and_exact_mean() -> None:
    rng = np.random.default_rng(SEED)
    seconds = rng.lognormal(np.log(3600), 1.5, size=20_000)
    a, b = LatencySketch(), LatencySketch()
    a.update(seconds[:7000])
    b.update(seconds[7000:])
    a.merge(LatencySketch.from_state(_json(b.to_state())))
    assert a.count == 20_000
    assert a.mean == pytest.approx(seconds.mean(), rel=1e-12)
    assert (a.min, a.max) == (seconds.min(), seconds.max())
    for q in (0.01, 0.1, 0.5, 0.9, 0.99):
        ratio = a.quantile(q) / np.quantile(seconds, q)  # type: ignore[operator]
        assert 10**-0.1 <= ratio <= 10**0.1, q
    assert a.quantile(0.0) == seconds.min() and a.quantile(1.0) == seconds.max()
    with pytest.raises(ValueError, match="within"):
        a.quantile(1.5)


def test_latency_edge_cases() -> None:
    sketch = LatencySketch()
    assert sketch.quantile(0.5) is None and sketch.mean is None
    sketch.update([-5.0, 0.0, 0.0005])
    assert sketch.min == 0.0 and sketch.quantile(0.5) == pytest.approx(0.0, abs=0.0005)
    single = LatencySketch()
    single.update([42.0])
    assert single.quantile(0.5) == 42.0
    restored = LatencySketch.from_state(_json(single.to_state()))
    assert restored.to_state() == single.to_state()
    with pytest.raises(ValueError, match="finite"):
        sketch.update([float("nan")])


pairs = st.lists(
    st.tuples(st.floats(-1e6, 1e6), st.floats(-1e6, 1e6)),
    max_size=20,
)


@settings(max_examples=60, deadline=None)
@given(st.lists(pairs.filter(bool), min_size=1, max_size=5))
def test_regression_and_latency_merge_equal_concatenation(
    parts: list[list[tuple[float, float]]],
) -> None:
    reg, lat = RegressionSketch(), LatencySketch()
    for part in parts:
        piece_reg, piece_lat = RegressionSketch(), LatencySketch()
        piece_reg.update([p for p, _ in part], [y for _, y in part])
        piece_lat.update([abs(p) for p, _ in part])
        reg.merge(RegressionSketch.from_state(_json(piece_reg.to_state())))
        lat.merge(LatencySketch.from_state(_json(piece_lat.to_state())))
    flat = [o for part in parts for o in part]
    whole_reg, whole_lat = RegressionSketch(), LatencySketch()
    whole_reg.update([p for p, _ in flat], [y for _, y in flat])
    whole_lat.update([abs(p) for p, _ in flat])
    assert reg.count == whole_reg.count == len(flat)
    assert reg.mae == pytest.approx(whole_reg.mae, rel=1e-9)
    assert reg.rmse == pytest.approx(whole_reg.rmse, rel=1e-9)
    assert lat.counts.tolist() == whole_lat.counts.tolist()
    assert (lat.min, lat.max) == (whole_lat.min, whole_lat.max)
    assert lat.quantile(0.5) == pytest.approx(whole_lat.quantile(0.5), rel=1e-9)
