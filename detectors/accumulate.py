"""Fold one partition's predictions and joined outcomes into window deltas, column-wise.

Stateless between drains: the worker builds one accumulator per batch, folds it and publishes
``drain()``. Events are grouped per model version once, every feature becomes one column,
and each column updates its sketches in one vectorised call.

Feature values are routed by their type: numbers to a `NumericSketch`, strings and bools to a
`CategoricalSketch` (numbers too when the configuration declares the feature categorical);
nulls and absent features are only counted (in the slice's type tracker). The judge picks the
sketch that matches the reference's kind and reports the rest as type changes.

>>> from datetime import UTC, datetime
>>> from schemas.events import PredictionEvent
>>> from schemas.monitor_config import MonitorConfig
>>> t = datetime(2024, 5, 1, tzinfo=UTC)
>>> acc = PartitionAccumulator(MonitorConfig())
>>> acc.add_predictions([PredictionEvent(event_id=str(i), model="m", timestamp=t,
...     features={"x": float(i), "plan": "pro"}, prediction=0.5) for i in range(3)])
>>> [delta] = acc.drain()
>>> part = delta.slices[""]
>>> delta.count, part.numeric["x"].count, part.categorical["plan"].counts
(3, 3, {'pro': 3})
>>> acc.drain()
[]
"""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from operator import attrgetter, itemgetter
from typing import TYPE_CHECKING, Any, Final, cast

import numpy as np

from detectors.categorical import CategoricalSketch, category_key
from detectors.join import Outcome, epoch_us
from detectors.latency import LatencySketch
from detectors.quality import ClassificationSketch, class_key
from detectors.regression import RegressionSketch
from detectors.sketches import NumericSketch, update_rows
from detectors.window import ALL_TRAFFIC, SliceDelta, WindowDelta
from schemas.events import PredictionEvent
from schemas.monitor_config import ModelMonitorConfig, MonitorConfig

if TYPE_CHECKING:
    from detectors.columns import PredictionColumns

__all__ = [
    "SEGMENTS_PER_KEY_FACTOR",
    "PartitionAccumulator",
    "fold_outcomes",
    "fold_prediction",
    "fold_predictions",
]

SEGMENTS_PER_KEY_FACTOR: Final = 4
"""A delta keeps at most this many times ``segments.max_values`` values per segment key."""
_NUMBER: Final = frozenset({int, float})
_NUMBER_OR_NULL: Final = frozenset({int, float, type(None)})
_STR_ONLY: Final = frozenset({str})
_BINARY_LABELS: Final = frozenset({"0", "1"})


class PartitionAccumulator:
    """Window deltas of one partition's events, one per model version, until ``drain``."""

    def __init__(self, config: MonitorConfig) -> None:
        self.config = config
        self._deltas: dict[tuple[str, str | None], WindowDelta] = {}

    def _delta(self, model: str, version: str | None) -> WindowDelta:
        key = (model, version)
        delta = self._deltas.get(key)
        if delta is None:
            delta = self._deltas[key] = WindowDelta(model, version)
        return delta

    def add_predictions(
        self, predictions: Iterable[PredictionEvent], *, times_us: Sequence[int] | None = None
    ) -> None:
        """Fold prediction events; ``times_us``: their ``epoch_us`` timestamps if known."""
        predictions = list(predictions)
        for (model, version), where in _group_positions(predictions, _prediction_key).items():
            events = predictions if where is None else [predictions[i] for i in where]
            span = None
            if times_us is not None:
                mine = times_us if where is None else [times_us[i] for i in where]
                span = (min(mine), max(mine))
            fold_predictions(
                self._delta(model, version), events, self.config.for_model(model), span=span
            )

    def add_columns(self, columns: PredictionColumns) -> None:
        """Fold columnar predictions: the same delta as ``add_predictions`` on their events."""
        from detectors.accumulate_columns import fold_columns  # it builds on this module

        delta = self._delta(columns.model, columns.model_version)
        fold_columns(delta, columns, self.config.for_model(columns.model))

    def add_outcomes(self, outcomes: Iterable[Outcome]) -> None:
        for (model, version), group in _group(outcomes, _outcome_key).items():
            fold_outcomes(self._delta(model, version), group, self.config.for_model(model))

    def drain(self) -> list[WindowDelta]:
        """The deltas folded so far (in first-seen order); the accumulator starts empty."""
        deltas = list(self._deltas.values())
        self._deltas = {}
        return deltas


_prediction_key = _outcome_key = attrgetter("model", "model_version")
"""(model, model_version) of a prediction or an outcome."""


def _group(items: Iterable[Any], key: Any) -> dict[tuple[str, str | None], list[Any]]:
    items = list(items)
    return {
        group: items if where is None else [items[i] for i in where]
        for group, where in _group_positions(items, key).items()
    }


def _group_positions(items: list[Any], key: Any) -> dict[tuple[str, str | None], list[int] | None]:
    """Group -> positions of its items (None: all of them, the common case)."""
    if not items:
        return {}
    keys = list(map(key, items))
    if keys.count(keys[0]) == len(keys):
        return {keys[0]: None}
    groups: dict[tuple[str, str | None], list[int] | None] = {}
    for i, group in enumerate(keys):
        where = groups.setdefault(group, [])
        assert where is not None
        where.append(i)
    return groups


def _columns(rows: list[dict[str, Any]], ignore: Sequence[str]) -> dict[str, Sequence[Any]] | None:
    """Feature -> values when every row has the same keys (else None: the slow path)."""
    if ignore or not rows:
        return None
    names = tuple(rows[0])
    if not names or set(map(len, rows)) != {len(names)}:
        return None
    try:
        values = list(map(itemgetter(*names), rows))
    except KeyError:
        return None
    if len(names) == 1:
        return {names[0]: values}
    return dict(zip(names, zip(*values, strict=True), strict=True))


def _segments(
    segments: Sequence[dict[str, str] | None], config: ModelMonitorConfig
) -> dict[str, list[int]]:
    """Segment slice key -> positions of its events (the most frequent values per key)."""
    out: dict[str, list[int]] = {}
    limit = config.segments.max_values * SEGMENTS_PER_KEY_FACTOR
    for key in config.segments.keys:
        positions: dict[str, list[int]] = {}
        for i, segment in enumerate(segments):
            if segment is not None and key in segment:
                positions.setdefault(segment[key], []).append(i)
        ranked = sorted(positions.items(), key=lambda item: (-len(item[1]), item[0]))
        for value, where in ranked[:limit]:
            out[f"{key}={value}"] = where
    return out


def fold_predictions(
    delta: WindowDelta,
    events: Sequence[PredictionEvent],
    config: ModelMonitorConfig,
    *,
    span: tuple[int, int] | None = None,
) -> None:
    """Fold one model version's prediction events into ``delta``.

    ``span``: the earliest and latest ``epoch_us`` of the events, when the caller knows them.
    """
    if not events:
        return
    if span is None:
        times = [epoch_us(event.timestamp) for event in events]
        span = (min(times), max(times))
    delta.see_time(*span)
    delta.count += len(events)
    _fold_slice(delta.slice(ALL_TRAFFIC), events, config)
    if config.segments.keys:
        for key, where in _segments([e.segment for e in events], config).items():
            _fold_slice(delta.slice(key), [events[i] for i in where], config)


def _fold_slice(
    part: SliceDelta, events: Sequence[PredictionEvent], config: ModelMonitorConfig
) -> None:
    part.count += len(events)
    rows = [event.features for event in events]
    columns = _columns(rows, config.ignore)
    if columns is not None:
        part.types.add_rows(len(rows))
        numbers: list[str] = []
        for name in sorted(columns):
            column = columns[name]
            kinds = set(map(type, column))
            part.types.update_column(name, column, kinds=kinds)
            declared = config.features.get(name)
            if kinds <= _NUMBER and declared != "categorical":
                numbers.append(name)  # folded together below
            else:
                _fold_column(part, name, column, declared, kinds)
        if numbers:
            sketches = [part.numeric.get(name) or NumericSketch() for name in numbers]
            part.numeric.update(zip(numbers, sketches, strict=True))
            # array("d") converts a tuple of numbers faster than numpy does.
            update_rows(sketches, np.array([array("d", columns[name]) for name in numbers]))
    else:
        ignore = set(config.ignore)
        names = sorted({name for row in rows for name in row} - ignore)
        part.types.update([{k: v for k, v in row.items() if k not in ignore} for row in rows])
        for name in names:
            _fold_column(part, name, [row.get(name) for row in rows], config.features.get(name))
    if config.detectors.prediction:
        fold_prediction(part, *_split([event.prediction for event in events], None))
    if config.detectors.scores:
        _fold_scores(part, events)


def fold_prediction(part: SliceDelta, numeric: np.ndarray | None, categorical: list[Any]) -> None:
    """Fold a slice's predictions: numbers (as floats) and categorical values."""
    if numeric is not None:
        part.prediction_numeric = part.prediction_numeric or NumericSketch()
        part.prediction_numeric.update(numeric)
    if categorical:
        part.prediction_categorical = part.prediction_categorical or CategoricalSketch()
        part.prediction_categorical.update(categorical)


def _fold_scores(part: SliceDelta, events: Sequence[PredictionEvent]) -> None:
    scores = [event.scores for event in events]
    first = scores[0]
    if first and None not in scores:
        scored = cast(list[dict[str, float]], scores)
        classes = sorted(first)
        pick: Callable[[Any], Any] = itemgetter(*classes)
        try:  # every event scores the same classes: one block, a row per class
            same = set(map(len, scored)) == {len(classes)}
            picked = list(map(pick, scored)) if same else []
        except KeyError:  # other classes
            same = False
        if same:
            rows = list(zip(*picked, strict=True)) if len(classes) > 1 else [tuple(picked)]
            if all(set(map(type, row)) <= _NUMBER for row in rows):
                sketches = [part.scores.get(cls) or NumericSketch() for cls in classes]
                part.scores.update(zip(classes, sketches, strict=True))
                update_rows(sketches, np.array([array("d", row) for row in rows]))
                return
    classes = sorted({c for s in scores if s for c in s})
    for cls in classes:
        values = [s.get(cls) if s else None for s in scores]
        sketch = part.scores.get(cls)
        if sketch is None:
            sketch = part.scores[cls] = NumericSketch()
        sketch.update(np.array([v for v in values if v is not None], dtype=np.float64))


def _fold_column(
    part: SliceDelta,
    name: str,
    column: Sequence[Any],
    declared: str | None,
    kinds: set[type] | None = None,
) -> None:
    numeric, categorical = _split(column, declared, kinds)
    if numeric is not None and numeric.size:
        sketch = part.numeric.get(name)
        if sketch is None:
            sketch = part.numeric[name] = NumericSketch()
        sketch.update(numeric)
    if categorical:
        cat = part.categorical.get(name)
        if cat is None:
            cat = part.categorical[name] = CategoricalSketch()
        cat.update(categorical)


def _split(
    column: Sequence[Any], declared: str | None, kinds: set[type] | None = None
) -> tuple[np.ndarray | None, list[Any]]:
    """(non-null numbers as floats, non-null categorical values) of one column."""
    if kinds is None:
        kinds = set(map(type, column))
    if kinds == _STR_ONLY:  # all categorical, whatever declared: what follows, in one step
        values = column if isinstance(column, list) else list(column)
        return (None if declared == "categorical" else np.empty(0, dtype=np.float64)), values
    if declared == "categorical":
        values = [
            v if isinstance(v, str | bool) else category_key(v) for v in column if v is not None
        ]
        return None, values
    if kinds <= _NUMBER_OR_NULL:
        if type(None) in kinds:
            column = [v for v in column if v is not None]
        return np.array(column, dtype=np.float64), []
    numbers = [v for v in column if type(v) in _NUMBER]
    others = [v for v in column if v is not None and type(v) not in _NUMBER]
    return np.array(numbers, dtype=np.float64), others


def _label_kind(label: Any) -> str:
    kind = type(label)
    if kind is str:
        return "string"
    if kind is int or kind is float:  # the common cases first, as the checks below
        return "binary" if label in (0, 1) else "number"
    if isinstance(label, bool):
        return "binary"
    if isinstance(label, int | float):
        return "binary" if label in (0, 1) else "number"
    return "string"


def fold_outcomes(
    delta: WindowDelta, outcomes: Sequence[Outcome], config: ModelMonitorConfig
) -> None:
    """Fold one model version's joined outcomes into ``delta`` (at the labels' event time)."""
    if not outcomes:
        return
    times = [outcome.labelled_us for outcome in outcomes]
    delta.see_time(min(times), max(times))
    delta.outcomes += len(outcomes)
    _fold_outcome_slice(delta.slice(ALL_TRAFFIC), outcomes, config, latency=True)
    if config.segments.keys:
        for key, where in _segments([o.segment for o in outcomes], config).items():
            _fold_outcome_slice(delta.slice(key), [outcomes[i] for i in where], config)


def _fold_outcome_slice(
    part: SliceDelta,
    outcomes: Sequence[Outcome],
    config: ModelMonitorConfig,
    *,
    latency: bool = False,
) -> None:
    part.outcomes += len(outcomes)
    kinds = list(map(_label_kind, [o.label for o in outcomes]))
    for kind, n in Counter(kinds).items():
        part.label_kinds[kind] = part.label_kinds.get(kind, 0) + n
    if latency:
        part.latency = part.latency or LatencySketch()
        part.latency.update(
            np.fromiter((o.labelled_us - o.predicted_us for o in outcomes), np.float64) / 1e6
        )
    task = config.task
    if task != "regression":
        classified = (
            list(outcomes) if task is not None
            else [o for o, kind in zip(outcomes, kinds, strict=True) if kind != "number"]
        )  # fmt: skip
        if classified:
            part.classification = part.classification or ClassificationSketch()
            threshold = config.quality.threshold
            if threshold == 0.5:
                predictions = [o.prediction for o in classified]
                scores = [o.scores for o in classified]
            else:
                pairs = [_predicted(o, threshold) for o in classified]
                predictions, scores = [p for p, _ in pairs], [s for _, s in pairs]
            part.classification.update(predictions, [o.label for o in classified], scores)
    if task is None or task == "regression":
        numeric = [
            o for o in outcomes
            if type(o.label) in _NUMBER and type(o.prediction) in _NUMBER
        ]  # fmt: skip
        if numeric:
            part.regression = part.regression or RegressionSketch()
            part.regression.update(
                np.fromiter((o.prediction for o in numeric), np.float64, len(numeric)),
                np.fromiter((o.label for o in numeric), np.float64, len(numeric)),
            )


def _predicted(outcome: Outcome, threshold: float) -> tuple[Any, dict[str, float] | None]:
    """(predicted class, scores); a probability of a 0/1 label is cut at ``threshold``."""
    prediction = outcome.prediction
    if (
        threshold != 0.5
        and isinstance(prediction, float)
        and 0.0 <= prediction <= 1.0
        and class_key(outcome.label) in _BINARY_LABELS
    ):
        return ("1" if prediction >= threshold else "0"), outcome.scores or {"1": prediction}
    return prediction, outcome.scores
