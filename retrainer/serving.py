"""Score prediction events with a registered version: what a serving layer does after a
promotion. The demo uses it to close the loop; real services keep their own serving stack and
only need to stamp ``model_version`` on what they publish."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from detectors.quality import class_key
from retrainer.errors import RetrainerError
from retrainer.registry import Registry, VersionInfo
from schemas.events import PredictionEvent

__all__ = ["VersionScorer", "load_scorer", "rescore_with_version"]


class VersionScorer:
    """One registered version of a model, able to rescore v1 prediction events."""

    def __init__(self, info: VersionInfo, model: Any) -> None:
        self.info = info
        self.model = model

    def score(self, events: Sequence[PredictionEvent]) -> list[PredictionEvent]:
        """``events`` as this version would have predicted them (features unchanged)."""
        if not events:
            return []
        frame = pd.DataFrame([event.features for event in events])
        classes = np.asarray(self.model.predict(frame))
        proba = None
        known = getattr(self.model, "classes_", None)
        if known is not None and hasattr(self.model, "predict_proba"):
            proba = np.asarray(self.model.predict_proba(frame), dtype=np.float64)
        keys = [class_key(_plain(c)) for c in known] if known is not None else []
        rescored = []
        for row, event in enumerate(events):
            update: dict[str, Any] = {
                "model_version": self.info.version,
                "prediction": _plain(classes[row]),
            }
            if proba is not None:
                update["scores"] = {
                    key: round(float(p), 6) for key, p in zip(keys, proba[row], strict=True)
                }
            rescored.append(event.model_copy(update=update))
        return rescored


def load_scorer(tracking_uri: str, model: str, alias: str = "champion") -> VersionScorer:
    """The version of ``model`` under ``alias`` in the registry at ``tracking_uri``."""
    registry = Registry(tracking_uri)
    info = registry.alias_version(model, alias)
    if info is None:
        raise RetrainerError(
            f"model {model!r} has no version under the alias {alias!r} in {tracking_uri}: "
            f"see `driftline models list`"
        )
    loaded = registry.load_model(info)
    raw = loaded.get_raw_model() if hasattr(loaded, "get_raw_model") else loaded
    inner = getattr(raw, "model", raw)  # PredictWrapper holds the trainer's model
    return VersionScorer(info, inner)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def rescore_with_version(
    tracking_uri: str, model: str, version: str, events: Sequence[PredictionEvent]
) -> list[PredictionEvent]:
    """``events`` scored by the champion of ``model``, which must be ``version``."""
    scorer = load_scorer(tracking_uri, model)
    if scorer.info.version != version:
        raise RetrainerError(
            f"the champion of {model!r} is version {scorer.info.version}, not {version}: "
            f"it changed while the events were being scored"
        )
    return scorer.score(events)
