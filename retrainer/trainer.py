"""Trainers: a plug-in ``module:function`` gets the training DataFrame and returns a fitted model.

A trainer is ``def train(frame: pandas.DataFrame, spec: TrainingSpec) -> model`` where the
model has ``predict(DataFrame)`` (and, for classifiers, ideally ``predict_proba`` and
``classes_``). ``spec`` names the feature columns (numeric and categorical), the label column,
the task and a seed. scikit-learn estimators are logged with MLflow's sklearn flavour, anything
else as a pickled python model.

The default is a scikit-learn pipeline: median imputation and scaling for numeric columns,
one-hot encoding for categorical ones, then logistic regression (classification) or ridge
regression. Linear models are quick, hard to overfit, and their in-sample predictions profile
honestly. ``boosting_trainer`` uses histogram gradient boosting instead.

>>> import pandas as pd
>>> frame = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0] * 5, "plan": ["a", "b"] * 10,
...                       "label": [0, 0, 1, 1] * 5})
>>> spec = TrainingSpec(task="binary", label="label", numeric=("x",), categorical=("plan",))
>>> model = default_trainer(frame, spec)
>>> predict(model, frame.head(4), spec).classes.tolist()
[0, 0, 1, 1]
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from retrainer.errors import TrainerLoadError
from schemas.monitor_config import Task

__all__ = [
    "Prediction",
    "TrainerFn",
    "TrainingSpec",
    "boosting_trainer",
    "default_trainer",
    "load_trainer",
    "predict",
]


@dataclass(frozen=True)
class TrainingSpec:
    """What a trainer needs to know about the DataFrame it gets."""

    task: Task
    label: str
    numeric: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    seed: int = 0

    @property
    def features(self) -> list[str]:
        return [*self.numeric, *self.categorical]


TrainerFn = Callable[[pd.DataFrame, TrainingSpec], Any]


def load_trainer(path: str) -> TrainerFn:
    """Import ``module:function``; errors say what is wrong and how to fix it."""
    module_name, _, function_name = path.partition(":")
    if not module_name or not function_name:
        raise TrainerLoadError(f"trainer must look like 'package.module:function', got {path!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise TrainerLoadError(
            f"cannot import trainer module {module_name!r} ({exc}): install it or put its "
            f"folder on PYTHONPATH"
        ) from exc
    function = getattr(module, function_name, None)
    if not callable(function):
        raise TrainerLoadError(
            f"{module_name!r} has no callable {function_name!r}: set "
            f"DRIFTLINE_RETRAINER__TRAINER to an existing function"
        )
    trainer: TrainerFn = function
    return trainer


def _preprocessor(spec: TrainingSpec) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    parts: list[tuple[str, Any, list[str]]] = []
    if spec.numeric:
        numeric = make_pipeline(SimpleImputer(strategy="median"), StandardScaler())
        parts.append(("numeric", numeric, list(spec.numeric)))
    if spec.categorical:
        categorical = make_pipeline(
            SimpleImputer(strategy="constant", fill_value="__missing__"),
            OneHotEncoder(handle_unknown="ignore"),
        )
        parts.append(("categorical", categorical, list(spec.categorical)))
    if not parts:
        raise ValueError("the dataset has no feature columns: nothing to train on")
    return ColumnTransformer(parts, remainder="drop")


def _fit(frame: pd.DataFrame, spec: TrainingSpec, estimator: Any) -> Any:
    from sklearn.pipeline import Pipeline

    pipeline = Pipeline([("features", _preprocessor(spec)), ("model", estimator)])
    features = frame[spec.features].astype({c: object for c in spec.categorical})
    pipeline.fit(features, frame[spec.label].to_numpy())
    return pipeline


def default_trainer(frame: pd.DataFrame, spec: TrainingSpec) -> Any:
    """Logistic regression (classification) or ridge regression on scaled and one-hot features."""
    from sklearn.linear_model import LogisticRegression, Ridge

    if spec.task == "regression":
        return _fit(frame, spec, Ridge(alpha=1.0))
    return _fit(frame, spec, LogisticRegression(max_iter=2000, random_state=spec.seed))


def boosting_trainer(frame: pd.DataFrame, spec: TrainingSpec) -> Any:
    """Histogram gradient boosting, for non-linear concepts (and more data)."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    if spec.task == "regression":
        return _fit(frame, spec, HistGradientBoostingRegressor(random_state=spec.seed))
    return _fit(frame, spec, HistGradientBoostingClassifier(random_state=spec.seed))


@dataclass(frozen=True)
class Prediction:
    """A model's output on a frame: classes (or values), and class scores when it has them."""

    classes: npt.NDArray[Any]
    scores: dict[str, npt.NDArray[np.float64]] | None = None


def predict(model: Any, frame: pd.DataFrame, spec: TrainingSpec) -> Prediction:
    """``model``'s predictions on ``frame``'s feature columns (missing ones filled with NaN)."""
    from detectors.quality import class_key

    features = frame.reindex(columns=spec.features).astype({c: object for c in spec.categorical})
    classes = np.asarray(model.predict(features))
    scores: dict[str, npt.NDArray[np.float64]] | None = None
    if spec.task != "regression" and hasattr(model, "predict_proba"):
        known = getattr(model, "classes_", None)
        if known is not None:
            proba = np.asarray(model.predict_proba(features), dtype=np.float64)
            scores = {class_key(_plain(c)): proba[:, i] for i, c in enumerate(known)}
    return Prediction(classes=classes, scores=scores)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
