"""Challenger against champion on the same holdout, with the task's metric and a margin.

The champion is the registry's ``champion`` version when there is one; a model trained
elsewhere is represented by the predictions it logged (``prediction`` of the events) on the
holdout rows. A logged positive-class score is thresholded at 0.5.

>>> labels = [0, 1, 1, 0, 1]
>>> result = evaluate("binary", labels, challenger=[0, 1, 1, 0, 0], champion=[1, 1, 0, 0, 0],
...                   margin=0.1, champion_source="logged")
>>> result.metric, result.challenger, result.champion, result.promote
('accuracy', 0.8, 0.4, True)
>>> result.reason
'challenger accuracy 0.8000 beats champion (logged) 0.4000 by 0.4000 >= margin 0.1'
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

from detectors.quality import class_key
from schemas.monitor_config import Task

__all__ = [
    "CLASSIFICATION_METRICS",
    "HIGHER_IS_BETTER",
    "REGRESSION_METRICS",
    "Evaluation",
    "evaluate",
    "logged_classes",
    "resolve_metric",
    "task_metrics",
]

CLASSIFICATION_METRICS: Final = ("accuracy", "f1")
REGRESSION_METRICS: Final = ("mae", "rmse")
HIGHER_IS_BETTER: Final = {"accuracy": True, "f1": True, "mae": False, "rmse": False}
_ROUNDING: Final = 1e-12


def resolve_metric(task: Task, metric: str = "auto") -> str:
    """The metric to compare with: ``auto`` is accuracy for classifiers, rmse for regressors.

    >>> resolve_metric("multiclass"), resolve_metric("regression", "mae")
    ('accuracy', 'mae')
    """
    allowed = REGRESSION_METRICS if task == "regression" else CLASSIFICATION_METRICS
    if metric == "auto":
        return allowed[-1] if task == "regression" else allowed[0]
    if metric not in allowed:
        raise ValueError(
            f"metric {metric!r} does not fit a {task} model: use one of {', '.join(allowed)} "
            f"(DRIFTLINE_RETRAINER__METRIC)"
        )
    return metric


def task_metrics(task: Task, y_true: Sequence[Any], y_pred: Sequence[Any]) -> dict[str, float]:
    """Every metric of the task (accuracy and macro F1, or MAE and RMSE)."""
    if len(y_true) != len(y_pred):
        raise ValueError(f"{len(y_true)} labels but {len(y_pred)} predictions")
    if not len(y_true):
        return {}
    if task == "regression":
        errors = np.asarray(y_pred, dtype=np.float64) - np.asarray(y_true, dtype=np.float64)
        return {
            "mae": float(np.mean(np.abs(errors))),
            "rmse": float(math.sqrt(np.mean(errors**2))),
        }
    truth = [class_key(v) for v in y_true]
    guess = [class_key(_plain(v)) for v in y_pred]
    accuracy = sum(a == b for a, b in zip(truth, guess, strict=True)) / len(truth)
    f1s = []
    for cls in sorted(set(truth) | set(guess)):
        tp = sum(a == cls and b == cls for a, b in zip(truth, guess, strict=True))
        fp = sum(a != cls and b == cls for a, b in zip(truth, guess, strict=True))
        fn = sum(a == cls and b != cls for a, b in zip(truth, guess, strict=True))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return {"accuracy": accuracy, "f1": float(np.mean(f1s))}


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def logged_classes(predictions: Sequence[Any], labels: Sequence[Any], *, score: bool) -> list[Any]:
    """Logged predictions as classes; ``score``: positive-class scores, thresholded at 0.5
    (the positive class is ``1`` when the labels have it, else the last in sorted order).

    >>> logged_classes([0.2, 0.7], [0, 1], score=True)
    ['0', '1']
    """
    if not score:
        return list(predictions)
    classes = sorted({class_key(label) for label in labels}) or ["0", "1"]
    positive = "1" if "1" in classes else classes[-1]
    negative = next((c for c in classes if c != positive), "0")
    return [positive if float(p) >= 0.5 else negative for p in predictions]


@dataclass(frozen=True)
class Evaluation:
    """The outcome of challenger vs champion on one holdout."""

    metric: str
    challenger: float
    champion: float
    champion_source: str
    """``registry version N`` or ``logged``."""
    margin: float
    promote: bool
    reason: str
    holdout_count: int
    challenger_metrics: dict[str, float] = field(default_factory=dict)
    champion_metrics: dict[str, float] = field(default_factory=dict)

    def as_metrics(self) -> dict[str, float]:
        """Flat metric names for MLflow and the ModelEvent."""
        out = {f"challenger_{k}": v for k, v in self.challenger_metrics.items()}
        out.update({f"champion_{k}": v for k, v in self.champion_metrics.items()})
        out["holdout_count"] = float(self.holdout_count)
        return out


def evaluate(
    task: Task,
    labels: Sequence[Any],
    *,
    challenger: Sequence[Any],
    champion: Sequence[Any],
    margin: float,
    champion_source: str,
    metric: str = "auto",
) -> Evaluation:
    """Promote only when the challenger beats the champion by at least ``margin``."""
    name = resolve_metric(task, metric)
    ours = task_metrics(task, labels, challenger)
    theirs = task_metrics(task, labels, champion)
    if not ours:
        raise ValueError("the holdout is empty: nothing to compare on")
    a, b = ours[name], theirs[name]
    gain = a - b if HIGHER_IS_BETTER[name] else b - a
    promote = math.isfinite(gain) and gain >= margin - _ROUNDING  # 0.9 - 0.8 < 0.1 in floats
    verb = "beats" if promote else "does not beat"
    reason = (
        f"challenger {name} {a:.4f} {verb} champion ({champion_source}) {b:.4f} by "
        f"{gain:.4f} {'>=' if promote else '<'} margin {margin:g}"
    )
    return Evaluation(
        metric=name, challenger=a, champion=b, champion_source=champion_source, margin=margin,
        promote=promote, reason=reason, holdout_count=len(labels),
        challenger_metrics=ours, champion_metrics=theirs,
    )  # fmt: skip
