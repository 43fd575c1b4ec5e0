"""Saving a fitted model as an MLflow model directory (imports mlflow: load it lazily).

scikit-learn estimators use the sklearn flavour (cloudpickle, so any pipeline loads back);
anything else with ``predict(DataFrame)`` is wrapped as a python-function model.
"""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc
import mlflow.sklearn
import sklearn
from mlflow.pyfunc.model import PythonModel

__all__ = ["PredictWrapper", "save_model"]


class PredictWrapper(PythonModel):
    """Delegates ``predict`` to the wrapped model."""

    _skip_type_hint_validation = True
    """A delegating wrapper has no input schema to declare (MLflow would warn about ``Any``)."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
        return self.model.predict(model_input)


def save_model(model: Any, path: str) -> None:
    """Write ``model`` as an MLflow model directory at ``path``."""
    if not hasattr(model, "predict"):
        raise TypeError(
            f"the trainer returned a {type(model).__name__} without predict(): return a "
            f"fitted model"
        )
    requirements = [f"scikit-learn=={sklearn.__version__}"]
    if hasattr(model, "get_params"):
        mlflow.sklearn.save_model(
            model, path, serialization_format="cloudpickle", pip_requirements=requirements
        )
    else:
        mlflow.pyfunc.save_model(
            path, python_model=PredictWrapper(model), pip_requirements=requirements
        )
