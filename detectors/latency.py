"""Label latency (label time - prediction time) as a mergeable log-bin histogram.

>>> lat = LatencySketch()
>>> lat.update([2.0, 4.0, 60.0])
>>> lat.mean, lat.quantile(1.0)
(22.0, 60.0)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final, Self

import numpy as np
import numpy.typing as npt

from detectors.sketches import check_state_kind

__all__ = ["LATENCY_EDGES", "LatencySketch"]

LATENCY_EDGES: Final = 10.0 ** (np.arange(-30, 81) / 10)
"""Fixed bin edges in seconds: 10 per decade from 1 ms to 1e8 s (~3 years)."""


class LatencySketch:
    """Label latency in seconds: exact count/sum/min/max plus a fixed log-bin histogram.

    `quantile` interpolates geometrically inside the bin holding the rank, clamped to the
    observed min and max: within a factor 10**0.1 (~26 %) of the exact quantile. Negative
    latencies (a label stamped before its prediction) count as 0.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.count = 0
        self.sum = 0.0
        self._min = math.inf
        self._max = -math.inf
        self.counts = np.zeros(LATENCY_EDGES.size + 1, dtype=np.int64)

    def update(self, seconds: npt.ArrayLike) -> None:
        values = np.asarray(seconds, dtype=np.float64).ravel()
        if values.size == 0:
            return
        if not np.isfinite(values).all():
            raise ValueError("latencies must be finite seconds")
        values = np.maximum(values, 0.0)
        self.count += values.size
        self.sum += float(values.sum())
        self._min = min(self._min, float(values.min()))
        self._max = max(self._max, float(values.max()))
        bins = np.searchsorted(LATENCY_EDGES, values, side="left")
        self.counts += np.bincount(bins, minlength=self.counts.size)

    def copy(self) -> Self:
        """An independent copy."""
        clone = type(self)()
        clone.count, clone.sum, clone._min, clone._max = self.count, self.sum, self._min, self._max
        clone.counts = self.counts.copy()
        return clone

    def merge(self, other: LatencySketch) -> None:
        if not isinstance(other, LatencySketch):
            raise TypeError(f"cannot merge {type(other).__name__} into LatencySketch")
        self.count += other.count
        self.sum += other.sum
        self._min = min(self._min, other._min)
        self._max = max(self._max, other._max)
        self.counts += other.counts

    @property
    def mean(self) -> float | None:
        return self.sum / self.count if self.count else None

    @property
    def min(self) -> float | None:
        return self._min if self.count else None

    @property
    def max(self) -> float | None:
        return self._max if self.count else None

    def quantile(self, q: float) -> float | None:
        """Approximate q-quantile (0 <= q <= 1); None while empty."""
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"q must be within [0, 1], got {q}")
        if not self.count:
            return None
        rank = q * self.count
        cumulative = np.cumsum(self.counts)
        b = int(np.searchsorted(cumulative, max(rank, 1e-12), side="left"))
        before = float(cumulative[b - 1]) if b else 0.0
        frac = (rank - before) / float(self.counts[b])
        lo = max(float(LATENCY_EDGES[b - 1]) if b else self._min, self._min)
        hi = min(float(LATENCY_EDGES[b]) if b < LATENCY_EDGES.size else self._max, self._max)
        # Geometric inside a log bin; linear where the bin starts at 0.
        geometric = lo > 0.0 and hi > lo
        value = lo * (hi / lo) ** frac if geometric else lo + (hi - lo) * frac
        return min(max(value, self._min), self._max)

    def to_state(self) -> dict[str, Any]:
        return {
            "kind": "latency",
            "count": self.count,
            "sum": self.sum,
            "min": self.min,
            "max": self.max,
            "counts": {str(i): int(n) for i, n in enumerate(self.counts) if n},
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Self:
        check_state_kind(state, "latency")
        sketch = cls()
        sketch.count = int(state["count"])
        sketch.sum = float(state["sum"])
        sketch._min = math.inf if state["min"] is None else float(state["min"])
        sketch._max = -math.inf if state["max"] is None else float(state["max"])
        for i, n in state["counts"].items():
            sketch.counts[int(i)] = int(n)
        return sketch
