"""Columnar monitor input: one model version's predictions as arrays, validated in bulk.

`PredictionColumns` is what ``PartitionAccumulator.add_columns``, ``LabelJoiner.
add_prediction_columns`` and ``FleetMonitor.process_columns`` read instead of one
`PredictionEvent` per prediction. It holds the same information: numeric features are float64
arrays with a null mask (numbers are finite in v1, so a null is never mixed up with a NaN:
non-finite values are rejected), other features stay lists of plain values (``ABSENT`` marks a
feature an event did not have), class scores are float64 arrays (NaN: that event has no score
for the class).

>>> import numpy as np
>>> cols = PredictionColumns.from_arrays(
...     model="churn", event_ids=["a", "b"], times_us=np.array([0, 1_000_000]),
...     features={"age": np.array([41.0, 0.0]), "plan": ["pro", None]},
...     nulls={"age": np.array([False, True])}, prediction=np.array([0.2, 0.9]))
>>> len(cols), cols.numeric_names(), cols.features["plan"]
(2, ['age'], ['pro', None])
>>> cols.event(1).features
{'age': None, 'plan': None}
>>> PredictionColumns.from_arrays(model="m", event_ids=["a"], times_us=np.array([0]),
...     features={"x": np.array([np.nan])}, prediction=[1])
Traceback (most recent call last):
...
detectors.columns_check.ColumnsError: features['x'] row 0: nan is not a finite number; ...
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from operator import itemgetter
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from detectors.columns_check import (
    ABSENT,
    ColumnsError,
    check_ids,
    check_name,
    check_numbers,
    check_prediction,
    check_scores,
    check_segments,
    check_times,
    check_values,
)
from detectors.join import epoch_us, from_epoch_us
from schemas.events import MAX_FEATURES, PredictionEvent

__all__ = ["ABSENT", "ColumnsError", "NumericColumn", "PredictionColumns", "columns_of"]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
Value = float | int | str | bool
_NUMBER: Final = frozenset({int, float})
_EXACT_INT: Final = 2.0**53
"""Integers beyond this are not exact in float64: such a column stays a list."""


@dataclass(frozen=True, slots=True, eq=False)
class NumericColumn:
    """A feature whose values are all numbers (or null / absent).

    ``values`` is float64; at null or absent rows it holds 0.0. ``nulls`` / ``absent`` are
    boolean masks (None: no such row).
    """

    values: FloatArray
    nulls: BoolArray | None = None
    absent: BoolArray | None = None

    def take(self, rows: slice | npt.NDArray[np.intp]) -> NumericColumn:
        return NumericColumn(
            self.values[rows],
            None if self.nulls is None else self.nulls[rows],
            None if self.absent is None else self.absent[rows],
        )

    def python(self) -> list[Any]:
        """The values as an event holds them (None for null, ABSENT where absent)."""
        values: list[Any] = self.values.tolist()
        for mask, marker in ((self.nulls, None), (self.absent, ABSENT)):
            if mask is not None:
                for i in np.flatnonzero(mask).tolist():
                    values[i] = marker
        return values


FeatureColumn = NumericColumn | list[Any]


@dataclass(frozen=True, slots=True, eq=False)
class PredictionColumns:
    """Predictions of one model version, column by column (build with a constructor)."""

    model: str
    model_version: str | None
    event_ids: list[str]
    times_us: npt.NDArray[np.int64]
    """Event time, microseconds since the Unix epoch (UTC)."""
    features: dict[str, FeatureColumn]
    prediction: FloatArray | npt.NDArray[np.int64] | list[Value]
    """Float64 when every prediction is a float, else the values as sent; the native lane
    gives ints alone as int64 (`prediction_list` gives the same ints back)."""
    scores: dict[str, FloatArray] | None = None
    """Class -> probability; NaN where an event has no score for the class."""
    segments: list[dict[str, str] | None] | None = None

    def __len__(self) -> int:
        return len(self.event_ids)

    def numeric_names(self) -> list[str]:
        return sorted(k for k, v in self.features.items() if isinstance(v, NumericColumn))

    @classmethod
    def from_arrays(
        cls,
        *,
        model: str,
        event_ids: Sequence[str],
        times_us: npt.ArrayLike | Sequence[datetime],
        features: Mapping[str, npt.ArrayLike | Sequence[Any]],
        prediction: npt.ArrayLike | Sequence[Value],
        model_version: str | None = None,
        nulls: Mapping[str, npt.ArrayLike] | None = None,
        scores: Mapping[str, npt.ArrayLike] | None = None,
        segments: Sequence[Mapping[str, str] | None] | None = None,
    ) -> PredictionColumns:
        """Validate columnar data in bulk; raises `ColumnsError` naming the field and row.

        ``times_us``: int64 epoch microseconds, ``datetime64`` (UTC) or aware datetimes.
        ``features``: numeric arrays (``nulls[name]`` marks null rows) or lists of numbers,
        strings, booleans and None. ``scores``: class -> probabilities (NaN: no score).
        """
        check_name("model", model)
        if model_version is not None:
            check_name("model_version", model_version)
        ids = check_ids(event_ids)
        n = len(ids)
        times = check_times(times_us, n)
        if len(features) > MAX_FEATURES:
            raise ColumnsError("features", None, f"{len(features)} features, limit {MAX_FEATURES}")
        columns: dict[str, FeatureColumn] = {}
        for name, column in features.items():
            check_name("feature name", name)
            mask = None if nulls is None or name not in nulls else nulls[name]
            columns[name] = _feature(name, column, mask, n)
        unknown = set(nulls or ()) - set(features)
        if unknown:
            raise ColumnsError("nulls", None, f"names no feature: {sorted(unknown)}")
        return cls(
            model, model_version, ids, times, columns,
            check_prediction(prediction, n),
            None if scores is None else check_scores(scores, n),
            None if segments is None else check_segments(segments, n),
        )  # fmt: skip

    @classmethod
    def from_events(cls, events: Sequence[PredictionEvent]) -> PredictionColumns:
        """The columns of already validated events of one model version (at least one)."""
        if not events:
            raise ColumnsError("events", None, "no events: pass at least one")
        first = events[0]
        key = (first.model, first.model_version)
        for i, event in enumerate(events):
            if (event.model, event.model_version) != key:
                raise ColumnsError(
                    "model", i, f"{event.model!r} version {event.model_version!r} differs "
                    f"from row 0's {key}: split with columns_of()",
                )  # fmt: skip
        times = np.fromiter(
            map(epoch_us, [e.timestamp for e in events]), dtype=np.int64, count=len(events)
        )
        return cls.from_valid_rows(
            first.model, first.model_version, [e.event_id for e in events], times,
            [e.features for e in events], [e.prediction for e in events],
            [e.scores for e in events], [e.segment for e in events],
        )  # fmt: skip

    @classmethod
    def from_valid_rows(
        cls,
        model: str,
        model_version: str | None,
        event_ids: list[str],
        times_us: npt.NDArray[np.int64],
        features: list[dict[str, Any]],
        predictions: list[Value],
        scores: list[dict[str, float] | None],
        segments: list[dict[str, str] | None],
    ) -> PredictionColumns:
        """Columns of rows that already passed the v1 checks (a reader's bulk validator or
        pydantic): no checks here, so never pass unchecked data."""
        columns: dict[str, FeatureColumn] = {}
        first = features[0].keys() if features else {}.keys()
        same = all(row.keys() == first for row in features)
        names = list(first) if same else dict.fromkeys(k for row in features for k in row)
        for name in names:
            column: list[Any] = (
                [row[name] for row in features] if same
                else [row.get(name, ABSENT) for row in features]
            )  # fmt: skip
            columns[name] = _from_values(column)
        prediction: FloatArray | list[Value] = (
            np.array(predictions, dtype=np.float64)
            if set(map(type, predictions)) == {float} else predictions
        )  # fmt: skip
        return cls(
            model, model_version, event_ids, times_us, columns, prediction, _scores(scores),
            None if segments.count(None) == len(segments) else segments,
        )  # fmt: skip

    def take(self, rows: slice | npt.NDArray[np.intp]) -> PredictionColumns:
        """The given rows (a slice or positions), without validating again."""

        def pick(values: list[Any]) -> list[Any]:
            return values[rows] if isinstance(rows, slice) else [values[i] for i in positions]

        positions = [] if isinstance(rows, slice) else rows.tolist()
        return PredictionColumns(
            self.model, self.model_version, pick(self.event_ids), self.times_us[rows],
            {
                name: col.take(rows) if isinstance(col, NumericColumn) else pick(col)
                for name, col in self.features.items()
            },
            self.prediction[rows] if isinstance(self.prediction, np.ndarray)
            else pick(self.prediction),
            None if self.scores is None else {k: v[rows] for k, v in self.scores.items()},
            None if self.segments is None else pick(self.segments),
        )  # fmt: skip

    def prediction_list(self) -> list[Value]:
        if isinstance(self.prediction, np.ndarray):
            values: list[Value] = self.prediction.tolist()
            return values
        return self.prediction

    def score_dicts(self) -> list[dict[str, float] | None]:
        """Every event's scores as a dict (None: no score at all)."""
        if self.scores is None:
            return [None] * len(self)
        classes = list(self.scores)
        block = np.array([self.scores[c] for c in classes]).reshape(len(classes), len(self))
        if not np.isnan(block).any():
            if len(classes) == 2:  # the common binary case: a dict display is cheapest
                a, b = classes
                return [{a: x, b: y} for x, y in zip(*block.tolist(), strict=True)]
            return [dict(zip(classes, row, strict=True)) for row in block.T.tolist()]
        out: list[dict[str, float] | None] = []
        for row in block.T.tolist():
            given = {c: v for c, v in zip(classes, row, strict=True) if v == v}
            out.append(given or None)
        return out

    def event(self, i: int) -> PredictionEvent:
        """Row ``i`` as an event (for messages and tests; not a fast path)."""
        features = {}
        for name, col in self.features.items():
            value = (
                col.take(slice(i, i + 1)).python()[0]
                if isinstance(col, NumericColumn)
                else (col[i])
            )
            if value is not ABSENT:
                features[name] = value
        return PredictionEvent(
            event_id=self.event_ids[i], model=self.model, model_version=self.model_version,
            timestamp=from_epoch_us(int(self.times_us[i])), features=features,
            prediction=self.prediction_list()[i], scores=self.score_dicts()[i],
            segment=None if self.segments is None else self.segments[i],
        )  # fmt: skip


def columns_of(events: Sequence[PredictionEvent]) -> list[PredictionColumns]:
    """One `PredictionColumns` per model version, in order of first appearance."""
    groups: dict[tuple[str, str | None], list[PredictionEvent]] = {}
    for event in events:
        groups.setdefault((event.model, event.model_version), []).append(event)
    return [PredictionColumns.from_events(group) for group in groups.values()]


def _from_values(column: list[Any]) -> FeatureColumn:
    """A numeric column when every value is a number, null or absent; else the list."""
    kinds = set(map(type, column))
    if not kinds <= _NUMBER | {type(None), type(ABSENT)}:
        return column
    if not kinds & _NUMBER:
        return column  # only nulls: nothing numeric to fold
    if kinds <= _NUMBER:
        try:
            values = np.array(column, dtype=np.float64)
        except OverflowError:  # an int beyond float64: the list keeps it
            return column
        nulls = absent = None
    else:
        absent_mask = np.fromiter((v is ABSENT for v in column), bool, len(column))
        null_mask = np.fromiter((v is None for v in column), bool, len(column))
        try:
            values = np.array(
                [0.0 if v is None or v is ABSENT else v for v in column], dtype=np.float64
            )
        except OverflowError:
            return column
        nulls = null_mask if null_mask.any() else None
        absent = absent_mask if absent_mask.any() else None
    if int in kinds and float(np.abs(values).max()) >= _EXACT_INT:
        return column
    return NumericColumn(values, nulls, absent)


def _feature(name: str, column: Any, mask: Any, n: int) -> FeatureColumn:
    field = f"features[{name!r}]"
    if isinstance(column, np.ndarray) and column.dtype.kind in "iuf":
        values = check_numbers(field, column, n, mask)
        nulls = None if mask is None else np.asarray(mask, dtype=bool)
        if nulls is not None and not nulls.any():
            nulls = None
        return NumericColumn(values, nulls)
    if mask is not None:
        raise ColumnsError(f"nulls[{name!r}]", None, "only numeric arrays take a null mask")
    items = column.tolist() if isinstance(column, np.ndarray) else list(column)
    return _from_values(check_values(field, items, n))


def _scores(given: list[dict[str, float] | None]) -> dict[str, FloatArray] | None:
    if given.count(None) == len(given):
        return None
    first = given[0]
    if first and all(s is not None and s.keys() == first.keys() for s in given):
        pick: Any = itemgetter(*first)
        block = np.array(list(map(pick, given)), dtype=np.float64).reshape(len(given), len(first))
        return {c: np.ascontiguousarray(block[:, i]) for i, c in enumerate(first)}
    classes = dict.fromkeys(c for s in given if s for c in s)
    if not classes:
        return None
    nan = float("nan")
    return {
        c: np.array([nan if s is None else s.get(c, nan) for s in given], dtype=np.float64)
        for c in classes
    }
