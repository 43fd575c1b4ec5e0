"""The reference profile of a challenger: what the workers compare windows with once it serves.

It profiles the dataset's features (raw values, so types match the live events), the
challenger's own predictions in the format the serving model logs them (class, positive-class
score or value, plus ``scores`` when the events carry them) and its quality on the labels.
Numeric samples shrink until the JSON fits in one ModelEvent.
"""

from __future__ import annotations

import json
from typing import Any, Final

import numpy as np

from detectors.profile_builder import profile_from_frame
from retrainer.dataset import LABEL, Dataset
from retrainer.trainer import Prediction
from schemas.monitor_config import ModelMonitorConfig
from schemas.profile import ReferenceProfile

__all__ = ["challenger_profile", "profile_size"]

_PREDICTION: Final = "__driftline_prediction__"
_LABEL: Final = "__driftline_label__"
_SCORE: Final = "__driftline_score__"
_MIN_SAMPLE: Final = 100


def _plain(values: Any) -> list[Any]:
    return [v.item() if isinstance(v, np.generic) else v for v in values]


def profile_size(profile: ReferenceProfile) -> int:
    """Bytes of the profile's JSON."""
    return len(json.dumps(profile.model_dump(mode="json"), separators=(",", ":")))


def challenger_profile(
    dataset: Dataset,
    prediction: Prediction,
    *,
    version: str,
    monitor: ModelMonitorConfig,
    max_bytes: int = 900_000,
) -> ReferenceProfile:
    """The profile of ``dataset`` as the challenger (registered as ``version``) sees it."""
    columns: dict[str, list[Any]] = {
        name: _plain(dataset.frame[column]) for column, name in dataset.feature_names.items()
    }
    scores = prediction.scores or {}
    if dataset.prediction_format == "score" and scores:
        positive = "1" if "1" in scores else sorted(scores)[-1]
        columns[_PREDICTION] = _plain(scores[positive])
    else:
        columns[_PREDICTION] = _plain(prediction.classes)
    score_columns: dict[str, str] = {}
    for cls in dataset.score_classes:
        if cls in scores:
            score_columns[cls] = f"{_SCORE}{cls}"
            columns[score_columns[cls]] = _plain(scores[cls])
    columns[_LABEL] = _plain(dataset.frame[LABEL])
    config = monitor
    while True:
        profile = profile_from_frame(
            columns,
            model=dataset.model,
            model_version=version,
            prediction=_PREDICTION,
            label=_LABEL,
            scores=score_columns,
            features=list(dataset.feature_names.values()),
            config=config,
            created_at=dataset.end,
        )
        sample = config.reference.sample_size
        if profile_size(profile) <= max_bytes or sample <= _MIN_SAMPLE:
            return profile
        smaller = config.reference.model_copy(update={"sample_size": max(_MIN_SAMPLE, sample // 2)})
        config = config.model_copy(update={"reference": smaller})
