"""Regression quality over joined outcomes: count and sums of absolute and squared errors.

>>> r = RegressionSketch()
>>> r.update([1.0, 2.0], [1.5, 4.0])
>>> r.mae, round(r.rmse, 6)
(1.25, 1.457738)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from detectors.sketches import check_state_kind

__all__ = ["RegressionSketch"]


class RegressionSketch:
    """Count and sums of absolute and squared errors (exact; merge adds)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.count = 0
        self.abs_error_sum = 0.0
        self.sq_error_sum = 0.0

    def update(self, predictions: npt.ArrayLike, labels: npt.ArrayLike) -> None:
        """Fold predicted and true values (numbers; bool counts as 0/1)."""
        try:
            pred = np.asarray(predictions, dtype=np.float64).ravel()
            true = np.asarray(labels, dtype=np.float64).ravel()
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"RegressionSketch takes numbers ({exc}): use ClassificationSketch for classes"
            ) from None
        if pred.shape != true.shape:
            raise ValueError(f"{pred.size} predictions but {true.size} labels: pass pairs")
        if not (np.isfinite(pred).all() and np.isfinite(true).all()):
            raise ValueError("predictions and labels must be finite: drop NaN/inf outcomes first")
        err = pred - true
        self.count += err.size
        self.abs_error_sum += float(np.abs(err).sum())
        self.sq_error_sum += float(np.square(err).sum())

    def copy(self) -> Self:
        """An independent copy."""
        clone = type(self)()
        clone.count, clone.abs_error_sum, clone.sq_error_sum = (
            self.count, self.abs_error_sum, self.sq_error_sum,
        )  # fmt: skip
        return clone

    def merge(self, other: RegressionSketch) -> None:
        if not isinstance(other, RegressionSketch):
            raise TypeError(f"cannot merge {type(other).__name__} into RegressionSketch")
        self.count += other.count
        self.abs_error_sum += other.abs_error_sum
        self.sq_error_sum += other.sq_error_sum

    @property
    def mae(self) -> float | None:
        return self.abs_error_sum / self.count if self.count else None

    @property
    def rmse(self) -> float | None:
        return math.sqrt(self.sq_error_sum / self.count) if self.count else None

    def to_state(self) -> dict[str, Any]:
        return {
            "kind": "regression",
            "count": self.count,
            "abs_error_sum": self.abs_error_sum,
            "sq_error_sum": self.sq_error_sum,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Self:
        check_state_kind(state, "regression")
        sketch = cls()
        sketch.count = int(state["count"])
        sketch.abs_error_sum = float(state["abs_error_sum"])
        sketch.sq_error_sum = float(state["sq_error_sum"])
        return sketch
