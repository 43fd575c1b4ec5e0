"""streams.synthetic: seeded streams, and the drift they promise, checked with scipy/sklearn."""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import accuracy_score

from schemas.events import LabelEvent, PredictionEvent
from streams.synthetic import feature_specs, flatten_event, generate_stream, write_stream

N = 6000


def _column(predictions: list[dict[str, Any]], name: str) -> np.ndarray:
    return np.array([p["features"][name] for p in predictions])


def test_same_seed_same_stream_other_seed_other_stream() -> None:
    first = generate_stream(seed=11, n_events=500, shift_at=200, concept_change_at=300)
    again = generate_stream(seed=11, n_events=500, shift_at=200, concept_change_at=300)
    other = generate_stream(seed=12, n_events=500, shift_at=200, concept_change_at=300)
    assert first == again
    assert first[0] != other[0]


def test_changes_leave_everything_before_them_alone() -> None:
    plain, plain_labels = generate_stream(seed=5, n_events=1000)
    shifted, shifted_labels = generate_stream(
        seed=5, n_events=1000, shift_at=600, categorical_shift_at=700, concept_change_at=800
    )
    assert plain[:600] == shifted[:600]
    before = {label["event_id"] for label in plain_labels if int(label["event_id"][-8:]) < 600}
    assert [x for x in plain_labels if x["event_id"] in before] == [
        x for x in shifted_labels if x["event_id"] in before
    ]


def test_events_are_valid_v1_and_in_event_time_order() -> None:
    predictions, labels = generate_stream(seed=1, n_events=2000, label_fraction=0.5)
    parsed = [PredictionEvent.model_validate(p) for p in predictions]
    parsed_labels = [LabelEvent.model_validate(x) for x in labels]
    assert all(a.timestamp < b.timestamp for a, b in itertools.pairwise(parsed))
    assert all(a.timestamp <= b.timestamp for a, b in itertools.pairwise(parsed_labels))
    assert {p.model for p in parsed} == {"fraud-scorer"}
    assert all(p.scores is not None and abs(sum(p.scores.values()) - 1) < 1e-5 for p in parsed)
    # label_fraction: a binomial count, 5 sigma wide
    assert abs(len(labels) - 1000) < 5 * np.sqrt(2000 * 0.25)


def test_labels_arrive_after_their_prediction_within_the_delay_band() -> None:
    predictions, labels = generate_stream(seed=2, n_events=500, label_delay_seconds=600)
    when = {p["event_id"]: datetime.fromisoformat(p["timestamp"]) for p in predictions}
    delays = [
        (datetime.fromisoformat(x["timestamp"]) - when[x["event_id"]]).total_seconds()
        for x in labels
    ]
    assert len(labels) == 500 and min(delays) >= 300 and max(delays) <= 900
    assert abs(np.mean(delays) - 600) < 30


def test_numeric_shift_moves_only_the_chosen_feature_by_sigma() -> None:
    predictions, _ = generate_stream(
        seed=3, n_events=N, shift_at=N // 2, shift_feature="distance_km", shift_sigma=1.5
    )
    spec = {s.name: s for s in feature_specs(10)}["distance_km"]
    values = _column(predictions, "distance_km")
    moved = (values[N // 2 :].mean() - values[: N // 2].mean()) / spec.std
    assert moved == pytest.approx(1.5, abs=0.1)
    assert stats.ks_2samp(values[: N // 2], values[N // 2 :]).pvalue < 1e-20
    for name in ("amount", "tx_count_24h", "merchant_risk"):
        other = _column(predictions, name)
        assert stats.ks_2samp(other[: N // 2], other[N // 2 :]).pvalue > 1e-3


def test_categorical_shift_reverses_frequencies_of_one_feature() -> None:
    predictions, _ = generate_stream(seed=4, n_events=N, categorical_shift_at=N // 2)
    for name, shifted in (("country", True), ("channel", False)):
        before = Counter(p["features"][name] for p in predictions[: N // 2])
        after = Counter(p["features"][name] for p in predictions[N // 2 :])
        keys = sorted(set(before) | set(after))
        table = np.array([[before[k] for k in keys], [after[k] for k in keys]])
        p_value = stats.chi2_contingency(table).pvalue
        assert (p_value < 1e-12) if shifted else (p_value > 1e-3)
    assert (
        Counter(p["features"]["country"] for p in predictions[N // 2 :]).most_common(1)[0][0]
        == "IN"
    )


def test_concept_change_lowers_accuracy() -> None:
    predictions, labels = generate_stream(seed=6, n_events=N, concept_change_at=N // 2)
    by_id = {p["event_id"]: p for p in predictions}
    late = [int(x["event_id"][-8:]) >= N // 2 for x in labels]
    truth = np.array([x["label"] for x in labels])
    predicted = np.array([by_id[x["event_id"]]["prediction"] for x in labels])
    mask = np.array(late)
    before = accuracy_score(truth[~mask], predicted[~mask])
    after = accuracy_score(truth[mask], predicted[mask])
    assert before > 0.78 and after < 0.62
    # before the change the scores are calibrated: mean score ~ positive rate
    scores = np.array([by_id[x["event_id"]]["scores"]["1"] for x in labels])
    assert abs(scores[~mask].mean() - truth[~mask].mean()) < 0.03


def test_feature_layout_mixes_kinds_and_rejects_bad_arguments() -> None:
    kinds = Counter(spec.kind for spec in feature_specs(10))
    assert kinds == {"numeric": 7, "categorical": 3}
    assert [s.name for s in feature_specs(12)][7:9] == ["num_7", "num_8"]
    with pytest.raises(ValueError, match="shift_feature='country' is not one of"):
        generate_stream(seed=0, n_events=10, shift_at=5, shift_feature="country")
    with pytest.raises(ValueError, match="label_fraction"):
        generate_stream(seed=0, n_events=10, label_fraction=1.5)


def test_nulls_follow_null_rate() -> None:
    predictions, _ = generate_stream(seed=8, n_events=2000, null_rate=0.1, features=5)
    nulls = sum(v is None for p in predictions for v in p["features"].values())
    assert abs(nulls / (2000 * 5) - 0.1) < 0.015


def test_write_stream_names_and_flat_columns(tmp_path: Path) -> None:
    predictions, labels = generate_stream(seed=0, n_events=20, features=4)
    pred_path, label_path = write_stream(tmp_path, predictions, labels, "csv")
    assert (pred_path.name, label_path.name if label_path else None) == (
        "predictions.csv", "labels.csv",
    )  # fmt: skip
    header = pred_path.read_text().splitlines()[0].split(",")
    assert header[:5] == ["schema_version", "event_id", "model", "model_version", "timestamp"]
    assert {"amount", "country", "scores.0", "scores.1", "prediction"} <= set(header)
    assert flatten_event({"features": {"timestamp": 1, "a.b": 2}, "segment": {"k": "v"}}) == {
        "features.timestamp": 1, "features.a.b": 2, "segment.k": "v",
    }  # fmt: skip
    start = datetime.fromisoformat(predictions[0]["timestamp"])
    assert datetime.fromisoformat(predictions[-1]["timestamp"]) - start == timedelta(seconds=19)
