"""Accumulating events into window deltas, and building reference profiles from them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score

from detectors.accumulate import PartitionAccumulator
from detectors.join import Outcome
from detectors.profile_builder import infer_task, profile_from_events, profile_from_frame
from detectors.window import WindowDelta
from schemas.events import LabelEvent, PredictionEvent
from schemas.monitor_config import parse_monitor_config

T0 = datetime(2024, 5, 1, tzinfo=UTC)


def event(i: int, features: dict[str, Any], prediction: Any = 0.5, **kw: Any) -> PredictionEvent:
    return PredictionEvent(
        event_id=f"e{i}", model=str(kw.get("model", "m")), model_version=kw.get("version"),
        timestamp=T0 + timedelta(seconds=i), features=features, prediction=prediction,
        scores=kw.get("scores"), segment=kw.get("segment"),
    )  # fmt: skip


def test_values_are_routed_by_type_and_declared_kind() -> None:
    config = parse_monitor_config({"defaults": {"features": {"zip": "categorical"}}})
    accumulator = PartitionAccumulator(config)
    accumulator.add_predictions(
        [
            event(0, {"x": 1.0, "zip": 10115, "mix": 1, "flag": True}, "yes"),
            event(1, {"x": None, "zip": "10115", "mix": "a"}, "no", scores={"yes": 0.2}),
            event(2, {"x": 3, "zip": 80331, "mix": None, "flag": False}, "yes"),
        ]
    )
    [delta] = accumulator.drain()
    part = delta.slices[""]
    assert part.numeric["x"].values().tolist() == [1.0, 3.0]
    assert part.categorical["zip"].counts == {"10115": 2, "80331": 1}
    assert "zip" not in part.numeric
    assert part.numeric["mix"].count == 1 and part.categorical["mix"].counts == {"a": 1}
    assert part.categorical["flag"].counts == {"true": 1, "false": 1}
    assert part.types.counts["x"] == {"number": 2, "null": 1}
    assert part.types.absent("flag") == 1
    assert part.prediction_categorical is not None
    assert part.prediction_categorical.counts == {"yes": 2, "no": 1}
    assert part.scores["yes"].count == 1
    assert (delta.count, delta.start, delta.end) == (3, T0, T0 + timedelta(seconds=2))


def test_key_order_does_not_matter() -> None:
    accumulator = PartitionAccumulator(parse_monitor_config({}))
    accumulator.add_predictions([event(0, {"a": 1.0, "b": "x"}), event(1, {"b": "y", "a": 2.0})])
    [delta] = accumulator.drain()
    part = delta.slices[""]
    assert part.numeric["a"].values().tolist() == [1.0, 2.0]
    assert part.categorical["b"].counts == {"x": 1, "y": 1}


def test_deltas_are_one_per_model_version_and_merge_in_place() -> None:
    accumulator = PartitionAccumulator(parse_monitor_config({}))
    accumulator.add_predictions(
        [
            event(i, {"x": float(i)}, version=str(i % 2), model="a" if i < 4 else "b")
            for i in range(6)
        ]
    )
    deltas = accumulator.drain()
    assert [(d.model, d.model_version, d.count) for d in deltas] == [
        ("a", "0", 2), ("a", "1", 2), ("b", "0", 1), ("b", "1", 1),
    ]  # fmt: skip
    with pytest.raises(ValueError, match="merge per model version"):
        deltas[0].merge(deltas[1])
    first, other = deltas[2], deltas[2].copy()
    first.merge(other)
    assert first.count == 2 and other.count == 1
    assert first.slices[""].numeric["x"].values().tolist() == [4.0, 4.0]
    restored = WindowDelta.from_state(json.loads(json.dumps(first.to_state())))
    assert restored.to_state() == first.to_state()
    with pytest.raises(ValueError, match="format"):
        WindowDelta.from_state({**first.to_state(), "format": 99})


def test_outcomes_feed_the_quality_sketches_of_their_task() -> None:
    config = parse_monitor_config({})
    accumulator = PartitionAccumulator(config)
    outcomes = [
        Outcome("e1", "m", None, 0.9, None, 1, 0, 2_000_000),
        Outcome("e2", "m", None, 0.2, None, True, 0, 4_000_000),
        Outcome("e3", "m", None, 2.5, None, 3.0, 0, 6_000_000),
        Outcome("e4", "m", None, "cat", None, "dog", 0, 8_000_000),
    ]
    accumulator.add_outcomes(outcomes)
    [delta] = accumulator.drain()
    part = delta.slices[""]
    assert part.label_kinds == {"binary": 2, "number": 1, "string": 1}
    assert part.classification is not None and part.classification.count == 3
    assert part.regression is not None and part.regression.count == 2  # e1 and e3
    assert part.latency is not None and part.latency.mean == 5.0
    assert delta.outcomes == 4 and delta.count == 0


def test_profile_from_a_training_frame_matches_numpy_and_sklearn() -> None:
    rng = np.random.default_rng(3)
    n = 3000
    age = rng.normal(40, 10, n)
    age[rng.random(n) < 0.1] = np.nan
    plan = rng.choice(["free", "pro", "team"], n, p=[0.6, 0.3, 0.1])
    score = rng.random(n)
    label = (rng.random(n) < score).astype(int)
    frame = pd.DataFrame({"age": age, "plan": plan, "score": score, "label": label})
    profile = profile_from_frame(
        frame, model="churn", model_version="5", prediction="score", label="label",
        profile_id="train-5",
    )  # fmt: skip
    assert (profile.profile_id, profile.source, profile.count, profile.task) == (
        "train-5", "profile", n, "binary",
    )  # fmt: skip
    feature = profile.features["age"]
    finite = age[np.isfinite(age)]
    assert feature.kind == "numeric" and feature.count == finite.size
    assert feature.null_rate == pytest.approx(np.isnan(age).mean())
    assert feature.mean == pytest.approx(finite.mean()) and feature.std == pytest.approx(
        finite.std()
    )
    assert (feature.min, feature.max) == (finite.min(), finite.max())
    deciles = np.quantile(finite, np.arange(1, 10) / 10, method="inverted_cdf")
    assert feature.edges == pytest.approx(deciles)
    assert sum(feature.counts) == pytest.approx(finite.size)
    assert len(feature.sample) == 2000  # sample_size
    names, counts = np.unique(plan, return_counts=True)
    assert profile.features["plan"].categories == dict(zip(names, counts, strict=True))
    assert profile.prediction is not None and profile.prediction.kind == "numeric"
    quality = profile.quality
    assert quality is not None and quality.count == n
    predicted = (score >= 0.5).astype(int)
    assert quality.accuracy == pytest.approx(accuracy_score(label, predicted))
    assert quality.error_rate == pytest.approx(1 - accuracy_score(label, predicted))
    assert quality.f1 == pytest.approx(f1_score(label, predicted))
    assert quality.roc_auc == pytest.approx(roc_auc_score(label, score))
    assert quality.log_loss == pytest.approx(log_loss(label, score))
    with pytest.raises(ValueError, match="no prediction column 'p'"):
        profile_from_frame(frame, model="churn", prediction="p")


def test_profile_from_events_joins_labels_and_is_content_addressed() -> None:
    predictions = [event(i, {"x": float(i % 10)}, float(i % 2)) for i in range(300)]
    labels = [
        LabelEvent(event_id=f"e{i}", model="m", timestamp=T0 + timedelta(seconds=i), label=i % 2)
        for i in range(0, 300, 3)
    ]
    first = profile_from_events(predictions, labels, model="m")
    again = profile_from_events(predictions, labels, model="m")
    assert first.profile_id == again.profile_id and first.profile_id.startswith("profile-")
    assert first.quality is not None and first.quality.count == 100
    assert first.quality.error_rate == 0.0
    assert json.loads(first.model_dump_json())["features"]["x"]["max"] == 9.0
    with pytest.raises(ValueError, match="no predictions of model 'other'"):
        profile_from_events(predictions, model="other")


def test_task_inference() -> None:
    assert infer_task({"binary": 5}) == "binary"
    assert infer_task({"binary": 5, "number": 1}) == "regression"
    assert infer_task({"string": 5}, classes=2) == "binary"
    assert infer_task({"string": 5}, classes=4) == "multiclass"


def test_the_package_exports_resolve_lazily_to_their_modules() -> None:
    import importlib

    import detectors

    for name in detectors.__all__:
        value = getattr(detectors, name)
        module = importlib.import_module(f"detectors.{detectors._EXPORTS[name]}")
        assert value is getattr(module, name)
        assert name in module.__all__
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = detectors.nope
