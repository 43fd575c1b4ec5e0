"""The per-event monitor both naive baselines run (Faust and Quix Streams), and their reporting.

Per event: validate with ``parse_prediction_payload``, then one ``update([value])`` per feature
on a window sketch (``NumericSketch`` / ``CategoricalSketch``). Every 500 events of a model,
``detectors.stats.ks`` per numeric feature against its reference (the first 2,000 values),
then the window restarts. Imports only ``schemas``, ``detectors`` and numpy, so it runs in the
baseline venv with the repository on PYTHONPATH.

>>> import json
>>> monitor = NaiveMonitor(warmup=4, every=2)
>>> for i in range(8):
...     raw = json.dumps({"event_id": f"e{i}", "model": "m", "timestamp": "2024-01-01T00:00:00Z",
...                       "features": {"x": float(i), "c": "a"}, "prediction": 0.5}).encode()
...     monitor.process(raw)
1
1
1
1
1
1
1
1
>>> monitor.tests, monitor.models["m"].numeric["x"].count
(3, 0)
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from detectors.categorical import CategoricalSketch
from detectors.sketches import NumericSketch
from detectors.stats import ks
from schemas.events import PredictionEvent, parse_prediction_payload

__all__ = ["NaiveMonitor", "Reporter", "emit"]


@dataclass
class _Model:
    numeric: dict[str, NumericSketch] = field(default_factory=dict)
    categorical: dict[str, CategoricalSketch] = field(default_factory=dict)
    reference: dict[str, list[float]] = field(default_factory=dict)
    frozen: dict[str, np.ndarray] = field(default_factory=dict)
    count: int = 0


class NaiveMonitor:
    """One model's state per model name; ``drifts`` counts KS p-values below ``alpha``."""

    def __init__(self, warmup: int = 2_000, every: int = 500, alpha: float = 0.01) -> None:
        self.warmup = warmup
        self.every = every
        self.alpha = alpha
        self.models: dict[str, _Model] = {}
        self.tests = 0
        self.drifts = 0

    def process(self, raw: bytes | None) -> int:
        """Handle one Kafka message value; returns how many predictions it held."""
        events = parse_prediction_payload(raw)
        for event in events:
            self._one(event)
        return len(events)

    def _one(self, event: PredictionEvent) -> None:
        model = self.models.get(event.model)
        if model is None:
            model = self.models[event.model] = _Model()
        for name, value in event.features.items():
            if isinstance(value, str | bool):
                sketch = model.categorical.get(name)
                if sketch is None:
                    sketch = model.categorical[name] = CategoricalSketch()
                sketch.update([value])
                continue
            numeric = model.numeric.get(name)
            if numeric is None:
                numeric = model.numeric[name] = NumericSketch()
            numeric.update([value])
            if value is not None and name not in model.frozen:
                reference = model.reference.setdefault(name, [])
                reference.append(float(value))
                if len(reference) >= self.warmup:
                    model.frozen[name] = np.asarray(reference, dtype=float)
        model.count += 1
        if model.count % self.every == 0:
            self._close_window(model)

    def _close_window(self, model: _Model) -> None:
        for name, sketch in model.numeric.items():
            reference = model.frozen.get(name)
            if reference is not None and sketch.count:
                self.tests += 1
                p_value = ks(reference, sketch.values()).p_value
                if p_value is not None and p_value < self.alpha:
                    self.drifts += 1
            sketch.reset()
        for categorical in model.categorical.values():
            categorical.reset()


class Reporter:
    """Counts predictions and prints the timing lines the benchmark reads."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.count = 0
        self.messages = 0
        self.first: float | None = None
        self.first_cpu = 0.0
        self.last_progress = 0.0
        self.finished = False

    def start(self) -> None:
        if self.first is None:
            self.first, self.first_cpu = time.time(), time.process_time()
            emit({"event": "first", "t": self.first})

    def add(self, predictions: int, extra: dict[str, Any] | None = None) -> bool:
        """Record one message; True exactly once, when the target is reached."""
        self.count += predictions
        self.messages += 1
        now = time.time()
        if now - self.last_progress >= 2.0:
            self.last_progress = now
            cpu = time.process_time() - self.first_cpu
            emit({"event": "progress", "t": now, "count": self.count, "cpu_seconds": cpu})
        if self.finished or self.count < self.target:
            return False
        self.finished = True
        emit(
            {
                "event": "done",
                "t_first": self.first,
                "t_done": now,
                "count": self.count,
                "messages": self.messages,
                "cpu_seconds": time.process_time() - self.first_cpu,
                **(extra or {}),
            }
        )
        return True


def emit(record: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()
