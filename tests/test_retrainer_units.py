"""Retrainer pieces without Kafka or MLflow: dataset, trainer, evaluation, profile, events,
retries. Statistics are checked against scikit-learn computed independently."""

from __future__ import annotations

import math
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn import metrics as skm

from retrainer.dataset import LABEL, PREDICTION, DataWindow, build_dataset
from retrainer.errors import RegistryUnavailable, TrainerLoadError
from retrainer.evaluation import evaluate, logged_classes, resolve_metric, task_metrics
from retrainer.publisher import model_event
from retrainer.reference import challenger_profile, profile_size
from retrainer.retry import Retrying, is_transient
from retrainer.trainer import TrainingSpec, default_trainer, load_trainer, predict
from schemas.events import LabelEvent, PredictionEvent
from schemas.monitor_config import ModelMonitorConfig

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _stream(seed: int = 5, n: int = 1_600, change: int | None = 0) -> tuple[list[Any], list[Any]]:
    from streams.synthetic import generate_stream

    predictions, labels = generate_stream(
        seed=seed, n_events=n, features=6, concept_change_at=change, label_delay_seconds=30.0
    )
    return (
        [PredictionEvent.model_validate(p) for p in predictions],
        [LabelEvent.model_validate(label) for label in labels],
    )


def _event(i: int, **changes: Any) -> PredictionEvent:
    fields: dict[str, Any] = {
        "event_id": f"e{i}",
        "model": "m",
        "timestamp": T0 + timedelta(seconds=i),
        "features": {"x": float(i), "flag": i % 2 == 0, "label": "clash"},
        "prediction": 0.2 if i % 3 else 0.9,
        **changes,
    }
    return PredictionEvent(**fields)


def _label(i: int, value: Any = 1, model: str = "m") -> LabelEvent:
    return LabelEvent(event_id=f"e{i}", model=model, timestamp=T0, label=value)


# -- dataset -----------------------------------------------------------------------------------


def test_dataset_joins_by_event_id_inside_the_window_and_splits_by_time() -> None:
    predictions = [_event(i) for i in range(20)] + [_event(99, model="other")]
    labels = [_label(i, i % 2) for i in range(3, 18)] + [_label(5, 7), _label(99)]
    window = DataWindow(T0 + timedelta(seconds=2))
    data = build_dataset(predictions[::-1], labels, model="m", window=window, holdout_fraction=0.2)
    assert list(data.frame["event_id"]) == [f"e{i}" for i in range(3, 18)]  # time order
    assert list(data.frame[LABEL])[2] == 1  # e5: the first label wins over the later 7
    assert data.predictions_seen == 18 and data.unlabelled == 3
    assert (len(data.train), len(data.holdout)) == (12, 3)  # ceil(15 * 0.2) = 3
    assert data.train["timestamp"].max() < data.holdout["timestamp"].min()
    assert data.task == "binary" and data.prediction_format == "score"
    # A feature called "label" does not overwrite the label column.
    assert data.feature_names == {"features.label": "label", "flag": "flag", "x": "x"}
    assert data.numeric == ("x",) and data.categorical == ("flag", "features.label")
    model_input = data.model_input()
    assert set(model_input["flag"]) == {"true", "false"}  # spelled like the monitor's sketches
    assert set(data.frame["flag"]) == {True, False}  # raw values kept for the profile


def test_dataset_keeps_the_most_recent_rows_and_infers_the_task() -> None:
    predictions = [_event(i, prediction="b") for i in range(30)]
    labels = [_label(i, "abc"[i % 3]) for i in range(30)]
    data = build_dataset(predictions, labels, model="m", window=DataWindow(T0), max_rows=10)
    assert list(data.frame["event_id"]) == [f"e{i}" for i in range(20, 30)]
    assert data.task == "multiclass" and data.prediction_format == "class"
    numbers = build_dataset(
        [_event(i) for i in range(5)],
        [_label(i, 2.5 * i) for i in range(5)],
        model="m",
        window=DataWindow(T0),
    )
    assert numbers.task == "regression" and numbers.prediction_format == "value"
    empty = build_dataset([], [], model="m", window=DataWindow(T0))
    assert empty.task is None and len(empty.frame) == 0 and empty.holdout_size == 0


# -- trainer and evaluation ----------------------------------------------------------------------


def test_default_trainer_is_the_documented_sklearn_pipeline_and_beats_a_stale_model() -> None:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    predictions, labels = _stream()
    data = build_dataset(predictions, labels, model="fraud-scorer", window=DataWindow(T0))
    assert data.task == "binary"
    spec = TrainingSpec("binary", LABEL, data.numeric, data.categorical, seed=3)
    train, holdout = data.model_input(data.train), data.model_input(data.holdout)
    fitted = default_trainer(train, spec)
    independent = Pipeline(
        [
            (
                "features",
                ColumnTransformer(
                    [
                        (
                            "n",
                            make_pipeline(SimpleImputer(strategy="median"), StandardScaler()),
                            list(data.numeric),
                        ),
                        ("c", OneHotEncoder(handle_unknown="ignore"), list(data.categorical)),
                    ]
                ),
            ),
            ("model", LogisticRegression(max_iter=2000, random_state=3)),
        ]
    ).fit(train[spec.features], train[LABEL].to_numpy())
    ours = predict(fitted, holdout, spec)
    assert ours.scores is not None and set(ours.scores) == {"0", "1"}
    np.testing.assert_allclose(
        ours.scores["1"], independent.predict_proba(holdout[spec.features])[:, 1], atol=1e-9
    )
    truth = list(data.holdout[LABEL])
    challenger = skm.accuracy_score(truth, ours.classes)
    stale = skm.accuracy_score(truth, list(data.holdout[PREDICTION]))  # the logged predictions
    assert challenger > stale + 0.2, (challenger, stale)


def test_regression_trainer_and_metrics_match_sklearn() -> None:
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(1)
    x = rng.normal(size=400)
    frame_rows = {"x": x, "kind": rng.choice(["a", "b"], 400), LABEL: 3 * x + rng.normal(size=400)}
    import pandas as pd

    frame = pd.DataFrame(frame_rows)
    spec = TrainingSpec("regression", LABEL, ("x",), ("kind",))
    fitted = default_trainer(frame, spec)
    assert isinstance(fitted.named_steps["model"], Ridge)
    values = predict(fitted, frame, spec)
    assert values.scores is None
    got = task_metrics("regression", list(frame[LABEL]), list(values.classes))
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(frame[LABEL], values.classes))
    assert got["rmse"] == pytest.approx(
        math.sqrt(skm.mean_squared_error(frame[LABEL], values.classes))
    )


def test_classification_metrics_match_sklearn() -> None:
    rng = np.random.default_rng(2)
    truth = rng.choice(["cat", "dog", "eel"], 300).tolist()
    guess = [t if rng.random() < 0.7 else "dog" for t in truth]
    got = task_metrics("multiclass", truth, guess)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(truth, guess))
    assert got["f1"] == pytest.approx(skm.f1_score(truth, guess, average="macro"))
    # Logged bools and numpy ints compare with int labels by class key.
    assert task_metrics("binary", [1, 0, 1], [True, np.int64(0), 0.0])["accuracy"] == 2 / 3


def test_promotion_needs_the_margin_in_the_metrics_direction() -> None:
    labels = [0, 1] * 50
    better = labels[:90] + [1 - v for v in labels[90:]]  # accuracy 0.90
    worse = labels[:80] + [1 - v for v in labels[80:]]  # 0.80
    exact = evaluate("binary", labels, challenger=better, champion=worse, margin=0.1,
                     champion_source="logged")  # fmt: skip
    assert exact.promote and exact.challenger == 0.9 and exact.champion == 0.8
    short = evaluate("binary", labels, challenger=better, champion=worse, margin=0.11,
                     champion_source="logged")  # fmt: skip
    assert not short.promote and "does not beat" in short.reason
    values = [1.0, 2.0, 3.0, 4.0]
    lower = evaluate(
        "regression", values, challenger=[1.1, 2.1, 3.1, 4.1], champion=[2.0, 3.0, 4.0, 5.0],
        margin=0.5, champion_source="registry",
    )  # fmt: skip
    assert lower.metric == "rmse" and lower.promote
    assert lower.as_metrics()["champion_rmse"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="does not fit a regression model"):
        resolve_metric("regression", "accuracy")


def test_logged_scores_are_thresholded_to_classes() -> None:
    assert logged_classes([0.1, 0.5, 0.93], [0, 1], score=True) == ["0", "1", "1"]
    assert logged_classes(["a", "b"], ["a"], score=False) == ["a", "b"]


# -- reference profile -------------------------------------------------------------------------


def test_challenger_profile_has_the_live_shape_and_shrinks_to_fit() -> None:
    from detectors.profile_builder import profile_from_events

    predictions, labels = _stream(n=1_200)
    data = build_dataset(predictions, labels, model="fraud-scorer", window=DataWindow(T0))
    spec = TrainingSpec("binary", LABEL, data.numeric, data.categorical)
    fitted = default_trainer(data.model_input(data.train), spec)
    full = predict(fitted, data.model_input(), spec)
    profile = challenger_profile(data, full, version="7", monitor=ModelMonitorConfig())
    live = profile_from_events(predictions, labels, model="fraud-scorer")
    assert profile.model_version == "7" and profile.source == "profile"
    assert profile.features.keys() == live.features.keys()
    for name, feature in profile.features.items():
        assert feature.kind == live.features[name].kind, name
        assert feature.types.keys() == live.features[name].types.keys(), name
    assert profile.scores.keys() == live.scores.keys() == {"0", "1"}
    assert profile.prediction is not None and live.prediction is not None
    assert profile.prediction.kind == live.prediction.kind
    assert profile.quality is not None and profile.quality.count == len(data.frame)
    expected_errors = int(np.sum(np.asarray(full.classes) != data.frame[LABEL].to_numpy()))
    assert profile.quality.errors == expected_errors
    big = profile_size(profile)
    small = challenger_profile(
        data, full, version="7", monitor=ModelMonitorConfig(), max_bytes=big // 4
    )
    assert profile_size(small) <= big // 4
    numeric = [name for name, f in profile.features.items() if f.kind == "numeric"]
    assert all(len(small.features[n].sample) < len(profile.features[n].sample) for n in numeric)


# -- events, retries, plug-ins -----------------------------------------------------------------


def test_model_events_have_deterministic_ids_and_finite_metrics() -> None:
    event = model_event(
        "promoted", model="churn", version="3", aliases=["champion"], run_id="r",
        trigger_alert_id="alert-1", metrics={"a": 0.5, "b": math.nan}, reference={"x": 1},
        reason="x" * 5000, now=T0,
    )  # fmt: skip
    assert event.event_id == "alert-1:promoted" and event.metrics == {"a": 0.5}
    assert event.reason is not None and len(event.reason) == 4096
    manual = model_event(
        "promoted", model="churn", version="3", aliases=[], run_id=None, trigger_alert_id=None,
        metrics={}, reference=None, reason=None, now=T0,
    )  # fmt: skip
    assert manual.event_id.startswith("churn:3:promoted:")


def test_retrying_backs_off_then_gives_up_and_never_retries_refusals() -> None:
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST

    delays: list[float] = []
    retrying = Retrying(attempts=4, backoff_seconds=1.0, backoff_max_seconds=3.0,
                        sleep=delays.append, target="MLflow at http://x")  # fmt: skip

    def down() -> None:
        raise ConnectionError("connection refused")

    with pytest.raises(RegistryUnavailable, match="MLflow at http://x failed to ping 4 times"):
        retrying.call("ping", down)
    assert delays == [1.0, 2.0, 3.0] and retrying.failures == 4

    def refused() -> None:
        raise MlflowException("no such model", error_code=RESOURCE_DOES_NOT_EXIST)

    with pytest.raises(MlflowException):
        retrying.call("read", refused)
    assert delays == [1.0, 2.0, 3.0]
    assert is_transient(ConnectionRefusedError()) and is_transient(MlflowException("HTTP 503"))
    assert not is_transient(FileNotFoundError("no profile logged")) and not is_transient(
        ValueError("a bug")
    )


def test_trainer_plugins_load_by_path_with_helpful_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "my_trainers.py").write_text("def fit(frame, spec):\n    return 'fitted'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_trainer("my_trainers:fit")(None, None) == "fitted"  # type: ignore[arg-type]
    with pytest.raises(TrainerLoadError, match="cannot import trainer module 'nowhere_x'"):
        load_trainer("nowhere_x:fit")
    with pytest.raises(TrainerLoadError, match="has no callable 'missing'"):
        load_trainer("my_trainers:missing")
    assert load_trainer("retrainer.trainer:default_trainer") is default_trainer
    sys.modules.pop("my_trainers", None)
