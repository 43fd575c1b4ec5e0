"""The window delta: mergeable sketches of one model version's events over a stretch of time.

Each partition folds its events into deltas (``detectors.accumulate``); the model's judge merges
them into windows (``detectors.judge``). A delta holds one `SliceDelta` for all traffic (key
``""``) and one per segment (``"country=DE"``); every part merges in place and has JSON state.

>>> delta = WindowDelta.empty("churn", "3")
>>> other = WindowDelta.empty("churn", "3")
>>> other.count, other.start_us, other.end_us = 5, 10, 20
>>> other.slice("").count = 5
>>> delta.merge(other)
>>> (delta.count, delta.start_us, delta.end_us, delta.slices[""].count)
(5, 10, 20, 5)
>>> WindowDelta.from_state(delta.to_state()).to_state() == delta.to_state()
True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final, Self

from detectors.categorical import CategoricalSketch
from detectors.data_quality import FeatureTypeTracker
from detectors.join import from_epoch_us
from detectors.latency import LatencySketch
from detectors.quality import ClassificationSketch
from detectors.regression import RegressionSketch
from detectors.sketches import NumericSketch

__all__ = [
    "ALL_TRAFFIC", "DELTA_FORMAT", "LABEL_KINDS", "SliceDelta", "WindowDelta", "time_step_end",
]  # fmt: skip

ALL_TRAFFIC: Final = ""
"""The slice key of all of a model's traffic (segments are ``key=value``)."""
DELTA_FORMAT: Final = 2
"""2: sketches pack their arrays (base64) and key runs; format 1 states still load."""
_READABLE_FORMATS: Final = frozenset({1, DELTA_FORMAT})
LABEL_KINDS: Final = ("binary", "number", "string")
"""How labels looked: 0/1 or bool, other numbers, strings (for task inference)."""


def time_step_end(at_us: int, step_us: int) -> int:
    """Where the time-window step holding ``at_us`` ends: steps are ``step_us`` long from the
    Unix epoch (an hour's windows are clock hours, UTC), so a live worker can cut its deltas
    where the judge's windows end without knowing when the judge's first window began.

    >>> time_step_end(3_599_999_999, 3_600_000_000), time_step_end(3_600_000_000, 3_600_000_000)
    (3600000000, 7200000000)
    """
    return (at_us // step_us + 1) * step_us


def _merge_into(own: dict[str, Any], other: Mapping[str, Any]) -> None:
    """Merge sketch dicts; sketches only on the other side are merged into fresh copies."""
    for key, sketch in other.items():
        mine = own.get(key)
        if mine is None:
            own[key] = sketch.copy()
        else:
            mine.merge(sketch)


def _merge_many_into(own: dict[str, Any], others: Sequence[Mapping[str, Any]]) -> None:
    """`_merge_into` of each of ``others`` in order, each sketch (or slice) merged once with
    all of its later parts (``merge_many``)."""
    parts: dict[str, list[Any]] = {}
    for other in others:
        for key, sketch in other.items():
            parts.setdefault(key, []).append(sketch)
    for key, sketches in parts.items():
        own[key] = _merged_many(own.get(key), sketches)


def _merged_many(mine: Any, others: Sequence[Any]) -> Any:
    """`_merged` of each of ``others`` (None: absent) in order, merged in one go."""
    present = [other for other in others if other is not None]
    if not present:
        return mine
    if mine is None:
        mine, present = present[0].copy(), present[1:]
    if present:
        mine.merge_many(present)
    return mine


def _states(sketches: Mapping[str, Any]) -> dict[str, Any]:
    return {key: sketch.to_state() for key, sketch in sorted(sketches.items())}


class SliceDelta:
    """All of a slice's sketches: features, prediction, scores, outcomes."""

    def __init__(self) -> None:
        self.count = 0
        """Prediction events."""
        self.numeric: dict[str, NumericSketch] = {}
        """Feature -> its numeric values (non-null numbers)."""
        self.categorical: dict[str, CategoricalSketch] = {}
        """Feature -> its categorical values (strings and bools; numbers when declared)."""
        self.types = FeatureTypeTracker()
        self.prediction_numeric: NumericSketch | None = None
        self.prediction_categorical: CategoricalSketch | None = None
        self.scores: dict[str, NumericSketch] = {}
        self.outcomes = 0
        """Joined outcomes (labels that arrived in this delta)."""
        self.classification: ClassificationSketch | None = None
        self.regression: RegressionSketch | None = None
        self.latency: LatencySketch | None = None
        self.label_kinds: dict[str, int] = {}

    def merge_many(self, others: Sequence[SliceDelta]) -> None:
        """`merge` each of ``others`` in order; numeric sketches choose their reservoirs once
        for all of them."""
        for other in others:
            self._merge_except_numeric(other)
        _merge_many_into(self.numeric, [other.numeric for other in others])
        _merge_many_into(self.scores, [other.scores for other in others])
        self.prediction_numeric = _merged_many(
            self.prediction_numeric, [other.prediction_numeric for other in others]
        )

    def merge(self, other: SliceDelta) -> None:
        self.merge_many([other])

    def _merge_except_numeric(self, other: SliceDelta) -> None:
        self.count += other.count
        _merge_into(self.categorical, other.categorical)
        self.types.merge(other.types)
        self.prediction_categorical = _merged(
            self.prediction_categorical, other.prediction_categorical
        )
        self.outcomes += other.outcomes
        self.classification = _merged(self.classification, other.classification)
        self.regression = _merged(self.regression, other.regression)
        self.latency = _merged(self.latency, other.latency)
        for kind, n in other.label_kinds.items():
            self.label_kinds[kind] = self.label_kinds.get(kind, 0) + n

    def to_state(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "numeric": _states(self.numeric),
            "categorical": _states(self.categorical),
            "types": self.types.to_state(),
            "prediction_numeric": _state(self.prediction_numeric),
            "prediction_categorical": _state(self.prediction_categorical),
            "scores": _states(self.scores),
            "outcomes": self.outcomes,
            "classification": _state(self.classification),
            "regression": _state(self.regression),
            "latency": _state(self.latency),
            "label_kinds": dict(sorted(self.label_kinds.items())),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Self:
        part = cls()
        part.count = int(state["count"])
        part.numeric = {k: NumericSketch.from_state(v) for k, v in state["numeric"].items()}
        part.categorical = {
            k: CategoricalSketch.from_state(v) for k, v in state["categorical"].items()
        }
        part.types = FeatureTypeTracker.from_state(state["types"])
        part.prediction_numeric = _load(NumericSketch, state["prediction_numeric"])
        part.prediction_categorical = _load(CategoricalSketch, state["prediction_categorical"])
        part.scores = {k: NumericSketch.from_state(v) for k, v in state["scores"].items()}
        part.outcomes = int(state["outcomes"])
        part.classification = _load(ClassificationSketch, state["classification"])
        part.regression = _load(RegressionSketch, state["regression"])
        part.latency = _load(LatencySketch, state["latency"])
        part.label_kinds = {str(k): int(v) for k, v in state["label_kinds"].items()}
        return part

    def copy(self) -> SliceDelta:
        fresh = SliceDelta()
        fresh.merge(self)
        return fresh

    def split(self) -> tuple[SliceDelta, SliceDelta]:
        """(the predictions' sketches, the outcomes' sketches) as two new slices; they take
        this slice's sketches over, so do not use this one afterwards."""
        predictions, outcomes = SliceDelta(), SliceDelta()
        predictions.count, predictions.types = self.count, self.types
        predictions.numeric, predictions.categorical = self.numeric, self.categorical
        predictions.prediction_numeric = self.prediction_numeric
        predictions.prediction_categorical = self.prediction_categorical
        predictions.scores = self.scores
        outcomes.outcomes, outcomes.label_kinds = self.outcomes, self.label_kinds
        outcomes.classification, outcomes.regression = self.classification, self.regression
        outcomes.latency = self.latency
        return predictions, outcomes


def _merged(mine: Any, other: Any) -> Any:
    if other is None:
        return mine
    if mine is None:
        return other.copy()
    mine.merge(other)
    return mine


def _state(sketch: Any) -> dict[str, Any] | None:
    return None if sketch is None else dict(sketch.to_state())


def _load(kind: Any, state: Mapping[str, Any] | None) -> Any:
    return None if state is None else kind.from_state(state)


class WindowDelta:
    """One model version's events between ``start_us`` and ``end_us`` (event time, epoch us)."""

    def __init__(self, model: str, model_version: str | None) -> None:
        self.model = model
        self.model_version = model_version
        self.start_us: int | None = None
        """Earliest event time (predictions and labels)."""
        self.end_us: int | None = None
        """Latest event time: the last event a decision on this delta saw."""
        self.count = 0
        """Prediction events."""
        self.outcomes = 0
        self._slices: dict[str, SliceDelta] = {}
        self._later: list[WindowDelta] = []
        """Deltas `merge_later` took whose sketches are not merged in yet."""
        self.labels_behind = False
        """The labels of these events were still being read far behind the predictions (a
        catch-up or fast replay): the window's label coverage says nothing about the source."""

    @classmethod
    def empty(cls, model: str, model_version: str | None) -> WindowDelta:
        return cls(model, model_version)

    @property
    def slices(self) -> dict[str, SliceDelta]:
        """Slice key -> its sketches (with every delta `merge_later` took merged in)."""
        if self._later:
            self._merge_now()
        return self._slices

    @slices.setter
    def slices(self, slices: dict[str, SliceDelta]) -> None:
        self._later = []
        self._slices = slices

    @property
    def start(self) -> datetime | None:
        return None if self.start_us is None else from_epoch_us(self.start_us)

    @property
    def end(self) -> datetime | None:
        return None if self.end_us is None else from_epoch_us(self.end_us)

    def slice(self, key: str) -> SliceDelta:
        """The slice ``key`` (created empty when new)."""
        part = self.slices.get(key)
        if part is None:
            part = self.slices[key] = SliceDelta()
        return part

    def see_time(self, first_us: int, last_us: int) -> None:
        """Widen the time span to cover events from ``first_us`` to ``last_us``."""
        self.start_us = first_us if self.start_us is None else min(self.start_us, first_us)
        self.end_us = last_us if self.end_us is None else max(self.end_us, last_us)

    def merge(self, other: WindowDelta) -> None:
        """Fold ``other`` (same model and version) into this delta, in place."""
        self._count_in(other)
        _merge_many_into(self.slices, [other.slices])

    def merge_later(self, other: WindowDelta) -> None:
        """`merge` ``other``, whose sketches join this delta's when they are next read: the
        deltas taken so are merged in one go (`NumericSketch.merge_many`). This delta owns
        ``other`` from now on: change it no more."""
        self._count_in(other)
        self._later.append(other)

    def _count_in(self, other: WindowDelta) -> None:
        if (other.model, other.model_version) != (self.model, self.model_version):
            raise ValueError(
                f"cannot merge a delta of {other.model!r} version {other.model_version!r} into "
                f"one of {self.model!r} version {self.model_version!r}: merge per model version"
            )
        if other.start_us is not None and other.end_us is not None:
            self.see_time(other.start_us, other.end_us)
        self.count += other.count
        self.outcomes += other.outcomes
        self.labels_behind = self.labels_behind or other.labels_behind

    def _merge_now(self) -> None:
        later, self._later = self._later, []
        _merge_many_into(self._slices, [other.slices for other in later])

    def copy(self) -> WindowDelta:
        fresh = WindowDelta(self.model, self.model_version)
        fresh.merge(self)
        return fresh

    def split(self) -> tuple[WindowDelta, WindowDelta]:
        """(its predictions, its outcomes) as two deltas over the same time span; they take
        this delta's sketches over (`SliceDelta.split`)."""
        predictions = WindowDelta(self.model, self.model_version)
        outcomes = WindowDelta(self.model, self.model_version)
        for part in (predictions, outcomes):
            part.start_us, part.end_us = self.start_us, self.end_us
            part.labels_behind = self.labels_behind
        predictions.count, outcomes.outcomes = self.count, self.outcomes
        for key, whole in self.slices.items():
            predictions.slices[key], outcomes.slices[key] = whole.split()
        return predictions, outcomes

    def to_state(self) -> dict[str, Any]:
        """Plain JSON (str/int/float/bool/list/dict/None)."""
        return {
            "format": DELTA_FORMAT,
            "model": self.model,
            "model_version": self.model_version,
            "start_us": self.start_us,
            "end_us": self.end_us,
            "count": self.count,
            "outcomes": self.outcomes,
            "slices": {key: part.to_state() for key, part in sorted(self.slices.items())},
            **({"labels_behind": True} if self.labels_behind else {}),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> WindowDelta:
        if state.get("format") not in _READABLE_FORMATS:
            raise ValueError(
                f"window delta state has format {state.get('format')!r}, expected one of "
                f"{sorted(_READABLE_FORMATS)}: it was written by another driftline version"
            )
        delta = cls(str(state["model"]), state["model_version"])
        delta.start_us = None if state["start_us"] is None else int(state["start_us"])
        delta.end_us = None if state["end_us"] is None else int(state["end_us"])
        delta.count = int(state["count"])
        delta.outcomes = int(state["outcomes"])
        delta.slices = {k: SliceDelta.from_state(v) for k, v in state["slices"].items()}
        delta.labels_behind = bool(state.get("labels_behind", False))
        return delta

    def __repr__(self) -> str:
        return (
            f"WindowDelta({self.model!r}, {self.model_version!r}, count={self.count}, "
            f"outcomes={self.outcomes}, slices={sorted(self.slices)})"
        )
