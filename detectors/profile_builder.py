"""Build ReferenceProfiles: from a warm-up window delta, from events, or from a training table.

All three go through the same sketches as the live windows, so a reference and the windows
compared with it are summarised the same way.

>>> columns = {"age": [30.0, 41.0, None, 52.0], "plan": ["pro", "free", "pro", "pro"],
...            "prediction": [0.2, 0.9, 0.4, 0.7], "label": [0, 1, 0, 1]}
>>> profile = profile_from_frame(columns, model="churn", model_version="3", label="label")
>>> profile.features["age"].kind, profile.features["age"].null_rate, profile.task
('numeric', 0.25, 'binary')
>>> profile.features["plan"].categories, profile.quality.error_rate
({'free': 1, 'pro': 3}, 0.0)
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np

from detectors.accumulate import PartitionAccumulator, fold_outcomes, fold_predictions
from detectors.categorical import CategoricalSketch
from detectors.join import LabelJoiner, Outcome
from detectors.quality import ClassificationSketch
from detectors.regression import RegressionSketch
from detectors.sketches import NumericSketch
from detectors.stats import quantile_edges
from detectors.window import ALL_TRAFFIC, SliceDelta, WindowDelta
from schemas.events import LabelEvent, PredictionEvent
from schemas.monitor_config import ModelMonitorConfig, MonitorConfig, Task
from schemas.profile import FeatureProfile, QualityBaseline, ReferenceProfile, SliceProfile

__all__ = [
    "infer_task",
    "profile_from_delta",
    "profile_from_events",
    "profile_from_frame",
    "quality_baseline",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def infer_task(label_kinds: Mapping[str, int], classes: int = 0) -> Task | None:
    """The task the labels suggest: strings or bools or 0/1 -> classification, else regression.

    >>> infer_task({"binary": 10}), infer_task({"number": 3, "binary": 1})
    ('binary', 'regression')
    >>> infer_task({"string": 5}, classes=3), infer_task({})
    ('multiclass', None)
    """
    if label_kinds.get("string"):
        return "multiclass" if classes > 2 else "binary"
    if label_kinds.get("number"):
        return "regression"
    return "binary" if label_kinds.get("binary") else None


def quality_baseline(
    task: Task | None,
    classification: ClassificationSketch | None,
    regression: RegressionSketch | None,
) -> QualityBaseline | None:
    """The performance summary of these outcomes, or None when there are none for ``task``."""
    if task in ("binary", "multiclass") and classification is not None and classification.count:
        accuracy = classification.accuracy or 0.0
        errors = classification.count - round(accuracy * classification.count)
        return QualityBaseline(
            task=task, count=classification.count, errors=errors,
            error_rate=errors / classification.count, accuracy=accuracy,
            precision=classification.precision, recall=classification.recall,
            f1=classification.f1, roc_auc=classification.roc_auc,
            log_loss=classification.log_loss,
        )  # fmt: skip
    if task == "regression" and regression is not None and regression.count:
        mae = regression.mae or 0.0
        second = regression.sq_error_sum / regression.count  # E[|e|^2] = E[e^2]
        return QualityBaseline(
            task=task, count=regression.count, mae=mae,
            mae_std=math.sqrt(max(second - mae * mae, 0.0)), rmse=regression.rmse,
        )  # fmt: skip
    return None


def _sample(values: np.ndarray, size: int) -> list[float]:
    if values.size <= size:
        return [float(v) for v in values]
    pick = np.sort(np.random.default_rng(values.size).choice(values.size, size, replace=False))
    return [float(v) for v in values[pick]]


def _numeric_profile(
    sketch: NumericSketch | None, rows: int, types: dict[str, int], config: ModelMonitorConfig
) -> FeatureProfile:
    if sketch is None or sketch.count == 0:
        nulls = types.get("null", rows)
        return FeatureProfile(
            kind="numeric",
            count=0,
            nulls=nulls,
            null_rate=nulls / rows if rows else 0.0,
            types=types,
        )
    values = sketch.values()
    edges = quantile_edges(values, bins=config.reference.bins)
    nulls = types.get("null", max(rows - sketch.count, 0))
    return FeatureProfile(
        kind="numeric", count=sketch.count, nulls=nulls, null_rate=nulls / rows if rows else 0.0,
        edges=[float(e) for e in edges], counts=[float(c) for c in sketch.histogram(edges)],
        sample=_sample(values, config.reference.sample_size), min=sketch.min, max=sketch.max,
        mean=sketch.mean, std=sketch.std, types=types,
    )  # fmt: skip


def _categorical_profile(
    sketch: CategoricalSketch | None, rows: int, types: dict[str, int]
) -> FeatureProfile:
    counts = dict(sorted(sketch.counts.items())) if sketch is not None else {}
    count = sum(counts.values())
    nulls = types.get("null", max(rows - count, 0))
    return FeatureProfile(
        kind="categorical", count=count, nulls=nulls, null_rate=nulls / rows if rows else 0.0,
        categories=counts, types=types,
    )  # fmt: skip


def _feature_kind(
    declared: str | None, types: Mapping[str, int]
) -> Literal["numeric", "categorical"]:
    if declared in ("numeric", "categorical"):
        return "numeric" if declared == "numeric" else "categorical"
    numbers = types.get("number", 0)
    others = types.get("string", 0) + types.get("bool", 0)
    return "numeric" if numbers >= others else "categorical"


def _slice_profile(part: SliceDelta, config: ModelMonitorConfig, task: Task | None) -> SliceProfile:
    features: dict[str, FeatureProfile] = {}
    rows = part.count
    for name in part.types.features:
        if name in config.ignore:
            continue
        types = dict(sorted(part.types.counts.get(name, {}).items()))
        if part.types.absent(name):
            types["null"] = types.get("null", 0) + part.types.absent(name)
        if _feature_kind(config.features.get(name), types) == "numeric":
            features[name] = _numeric_profile(part.numeric.get(name), rows, types, config)
        else:
            features[name] = _categorical_profile(part.categorical.get(name), rows, types)
    prediction: FeatureProfile | None = None
    numeric, categorical = part.prediction_numeric, part.prediction_categorical
    n_numeric = numeric.count if numeric is not None else 0
    n_categorical = sum(categorical.counts.values()) if categorical is not None else 0
    if n_numeric and n_numeric >= n_categorical:
        prediction = _numeric_profile(numeric, rows, {"number": n_numeric}, config)
    elif n_categorical:
        prediction = _categorical_profile(categorical, rows, {"string": n_categorical})
    scores = {
        cls: _numeric_profile(sketch, rows, {"number": sketch.count}, config)
        for cls, sketch in sorted(part.scores.items())
    }
    quality = quality_baseline(task, part.classification, part.regression)
    return SliceProfile(
        count=rows, features=features, prediction=prediction, scores=scores, quality=quality
    )


def _top_segments(delta: WindowDelta, config: ModelMonitorConfig) -> list[str]:
    keep: list[str] = []
    for key in config.segments.keys:
        ranked = sorted(
            (
                (-part.count, name)
                for name, part in delta.slices.items()
                if name.startswith(f"{key}=") and part.count >= config.segments.min_count
            )
        )
        keep.extend(name for _, name in ranked[: config.segments.max_values])
    return sorted(keep)


def profile_from_delta(
    delta: WindowDelta,
    config: ModelMonitorConfig,
    *,
    source: Literal["warmup", "profile"] = "warmup",
    profile_id: str | None = None,
    created_at: datetime | None = None,
    task: Task | None = None,
) -> ReferenceProfile:
    """The profile of everything folded into ``delta`` (a warm-up or a training set)."""
    whole = delta.slices.get(ALL_TRAFFIC, SliceDelta())
    if task is None:
        task = config.task
    if task is None:
        classes = len(whole.classification.classes) if whole.classification else 0
        task = infer_task(whole.label_kinds, classes)
    base = _slice_profile(whole, config, task)
    segments = {
        key: _slice_profile(delta.slices[key], config, task) for key in _top_segments(delta, config)
    }
    profile = ReferenceProfile(
        model=delta.model, model_version=delta.model_version, profile_id="pending",
        source=source, count=delta.count, created_at=created_at or delta.end, task=task,
        features=base.features, prediction=base.prediction, scores=base.scores,
        quality=base.quality, segments=segments,
    )  # fmt: skip
    if profile_id is None:
        body = json.dumps(profile.model_dump(mode="json"), sort_keys=True).encode()
        profile_id = f"{source}-{hashlib.sha256(body).hexdigest()[:16]}"
    return profile.model_copy(update={"profile_id": profile_id})


def profile_from_events(
    predictions: Iterable[PredictionEvent],
    labels: Iterable[LabelEvent] = (),
    *,
    model: str,
    config: MonitorConfig | None = None,
    source: Literal["warmup", "profile"] = "profile",
    profile_id: str | None = None,
) -> ReferenceProfile:
    """A profile of one model's predictions (other models' events are skipped) and labels."""
    config = config or MonitorConfig()
    mine = [event for event in predictions if event.model == model]
    if not mine:
        raise ValueError(f"no predictions of model {model!r}: nothing to profile")
    version = mine[-1].model_version
    mine = [event for event in mine if event.model_version == version]
    joiner = LabelJoiner({}, {}, ttl_seconds=math.inf)
    accumulator = PartitionAccumulator(config)
    accumulator.add_predictions(mine)
    outcomes = joiner.add_predictions(mine) + joiner.add_labels(
        label for label in labels if label.model == model
    )
    accumulator.add_outcomes(outcomes)
    [delta] = accumulator.drain()
    return profile_from_delta(delta, config.for_model(model), source=source, profile_id=profile_id)


def _column_dict(frame: Any) -> dict[str, list[Any]]:
    if isinstance(frame, Mapping):
        return {str(k): list(v) for k, v in frame.items()}
    if hasattr(frame, "to_dict"):  # a pandas DataFrame (detectors does not import pandas)
        return {str(k): list(v) for k, v in frame.to_dict(orient="list").items()}
    raise TypeError(
        f"profile_from_frame takes a DataFrame or a mapping of columns, got {type(frame).__name__}"
    )


def _plain(value: Any) -> Any:
    """numpy scalars as Python ones; NaN and None as None."""
    if value is None:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def profile_from_frame(
    frame: Any,
    *,
    model: str,
    model_version: str | None = None,
    prediction: str = "prediction",
    label: str | None = None,
    scores: Mapping[str, str] | None = None,
    features: Sequence[str] | None = None,
    config: ModelMonitorConfig | None = None,
    profile_id: str | None = None,
    created_at: datetime | None = None,
) -> ReferenceProfile:
    """A ``source="profile"`` profile of a training (or holdout) table.

    ``frame``: a pandas DataFrame or a mapping column -> values. ``features`` defaults to every
    column but the prediction, label and score columns; ``scores`` maps class -> column.
    NaN counts as null. With ``label``, the quality baseline is the model's performance on it.
    """
    config = config or ModelMonitorConfig()
    columns = {name: [_plain(v) for v in values] for name, values in _column_dict(frame).items()}
    if prediction not in columns:
        raise ValueError(f"no prediction column {prediction!r}; columns are {sorted(columns)}")
    score_columns = dict(scores or {})
    reserved = {prediction, *score_columns.values(), *([label] if label else [])}
    names = list(features) if features is not None else [c for c in columns if c not in reserved]
    missing = [c for c in [*names, *reserved] if c not in columns]
    if missing:
        raise ValueError(f"columns {missing} are not in the table; it has {sorted(columns)}")
    rows = len(columns[prediction])
    stamp = created_at or _EPOCH
    events = [
        PredictionEvent.model_construct(
            event_id=str(i), model=model, model_version=model_version, timestamp=stamp,
            features={name: columns[name][i] for name in names if columns[name][i] is not None},
            prediction=columns[prediction][i],
            scores={cls: columns[col][i] for cls, col in score_columns.items()
                    if columns[col][i] is not None} or None,
            segment=None,
        )
        for i in range(rows)
    ]  # fmt: skip
    delta = WindowDelta(model, model_version)
    fold_predictions(delta, events, config)
    if label is not None:
        outcomes = [
            Outcome(e.event_id, model, model_version, e.prediction, e.scores, value, 0, 0)
            for e, value in zip(events, columns[label], strict=True)
            if value is not None and e.prediction is not None
        ]
        fold_outcomes(delta, outcomes, config)
    return profile_from_delta(
        delta, config, source="profile", profile_id=profile_id, created_at=created_at
    )
