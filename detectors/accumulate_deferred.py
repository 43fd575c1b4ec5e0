"""Window deltas folded when they are published, so a round folds each model once.

A live worker joins each input partition on its own, and until now also folded each one on
its own: at a steady 700 predictions/s over 3 partitions and 20 models, a round held ~60
(partition, model) slices of one or two events each, and each slice paid the fold's fixed
cost (~200 us of numpy calls whatever its size). `streams.delta_merge` then merged the
slices' deltas per model.

`DeferredAccumulator` has ``PartitionAccumulator``'s interface but only records what it is
given. Its `DeferredDelta` knows what the merge needs without folding (model version, event
time span, counts), merges by concatenating inputs, and folds them all in one go when its
state is first asked for.

A deferred delta that was never merged folds exactly the calls the eager accumulator makes
(the same state, bit for bit). A merged one holds the same events, counts, moments (up to
rounding) and reservoir values as the eager deltas merged; its reservoir keys come from one
run instead of one per part, an equally random sample.

>>> import numpy as np
>>> from detectors.columns import PredictionColumns
>>> from schemas.monitor_config import MonitorConfig
>>> def rows(ids, xs):
...     return PredictionColumns.from_arrays(model="m", event_ids=ids,
...         times_us=np.arange(len(ids)), features={"x": np.array(xs)}, prediction=[0] * len(ids))
>>> first, second = DeferredAccumulator(MonitorConfig()), DeferredAccumulator(MonitorConfig())
>>> first.add_columns(rows(["a", "b"], [1.0, 2.0]))
>>> second.add_columns(rows(["c"], [6.0]))
>>> (delta,), (other,) = first.drain(), second.drain()
>>> delta.merge(other)
>>> delta.count, delta.to_state()["slices"][""]["numeric"]["x"]["count"]
(3, 3)
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import numpy as np

from detectors.accumulate import _group, _outcome_key, fold_outcomes
from detectors.accumulate_columns import fold_columns
from detectors.columns import PredictionColumns
from detectors.columns_concat import concat_columns
from detectors.join import Outcome, from_epoch_us
from detectors.window import WindowDelta
from schemas.monitor_config import ModelMonitorConfig, MonitorConfig

__all__ = ["DeferredAccumulator", "DeferredDelta"]


class DeferredDelta:
    """A `WindowDelta`'s inputs: one model version's predictions and outcomes, not folded yet.

    Attributes read by `streams.delta_merge` (``model_version``, ``start_us``, ``end_us``,
    ``count``, ``outcomes``) mean what they mean on `WindowDelta`.
    """

    def __init__(self, model: str, model_version: str | None, config: ModelMonitorConfig) -> None:
        self.model = model
        self.model_version = model_version
        self.config = config
        self.start_us: int | None = None
        self.end_us: int | None = None
        self.count = 0
        self.outcomes = 0
        self.labels_behind = False
        self._columns: list[PredictionColumns] = []
        self._outcomes: list[Outcome] = []
        self._folded: WindowDelta | None = None

    @property
    def start(self) -> datetime | None:
        return None if self.start_us is None else from_epoch_us(self.start_us)

    def see_time(self, first_us: int, last_us: int) -> None:
        self.start_us = first_us if self.start_us is None else min(self.start_us, first_us)
        self.end_us = last_us if self.end_us is None else max(self.end_us, last_us)

    def add_columns(self, columns: PredictionColumns) -> None:
        self._unfolded()
        if len(columns):  # the fold's own bookkeeping, ahead of it
            times = columns.times_us
            self.see_time(int(np.minimum.reduce(times)), int(np.maximum.reduce(times)))
            self.count += len(columns)
            self._columns.append(columns)

    def add_outcomes(self, outcomes: list[Outcome]) -> None:
        self._unfolded()
        if outcomes:
            times = [outcome.labelled_us for outcome in outcomes]
            self.see_time(min(times), max(times))
            self.outcomes += len(outcomes)
            self._outcomes += outcomes

    def merge(self, other: DeferredDelta) -> None:
        """Take ``other``'s inputs after this one's (the order they will be folded in)."""
        if (other.model, other.model_version) != (self.model, self.model_version):
            raise ValueError(
                f"cannot merge a delta of {other.model!r} version {other.model_version!r} into "
                f"one of {self.model!r} version {self.model_version!r}"
            )
        self._unfolded()
        if other.start_us is not None and other.end_us is not None:
            self.see_time(other.start_us, other.end_us)
        self.count += other.count
        self.outcomes += other.outcomes
        self.labels_behind = self.labels_behind or other.labels_behind
        self._columns += other._columns
        self._outcomes += other._outcomes

    def fold(self) -> WindowDelta:
        """The inputs folded into one `WindowDelta` (once; the inputs are final after this)."""
        if self._folded is None:
            delta = WindowDelta(self.model, self.model_version)
            if self._columns:
                fold_columns(delta, concat_columns(self._columns), self.config)
            if self._outcomes:
                fold_outcomes(delta, self._outcomes, self.config)
            delta.labels_behind = self.labels_behind
            self._folded = delta
            self._columns, self._outcomes = [], []
        return self._folded

    def to_state(self) -> dict[str, Any]:
        return self.fold().to_state()

    def _unfolded(self) -> None:
        if self._folded is not None:
            raise RuntimeError(f"the delta of {self.model!r} is folded: nothing can join it now")


class DeferredAccumulator:
    """``PartitionAccumulator`` that defers the fold: `drain` hands out `DeferredDelta`s, in
    the order the eager accumulator hands out its deltas."""

    def __init__(self, config: MonitorConfig) -> None:
        self.config = config
        self._deltas: dict[tuple[str, str | None], DeferredDelta] = {}

    def _delta(self, model: str, version: str | None) -> DeferredDelta:
        key = (model, version)
        delta = self._deltas.get(key)
        if delta is None:
            delta = self._deltas[key] = DeferredDelta(model, version, self.config.for_model(model))
        return delta

    def add_columns(self, columns: PredictionColumns) -> None:
        self._delta(columns.model, columns.model_version).add_columns(columns)

    def add_outcomes(self, outcomes: Iterable[Outcome]) -> None:
        for (model, version), group in _group(outcomes, _outcome_key).items():
            self._delta(model, version).add_outcomes(group)

    def drain(self) -> list[DeferredDelta]:
        """The deltas recorded so far (in first-seen order); the accumulator starts empty."""
        deltas = list(self._deltas.values())
        self._deltas = {}
        return deltas
