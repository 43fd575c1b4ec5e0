"""The fast lane of `streams.ingest_columns`: a batch whose rows all have the same shape.

What an SDK sends (every row with the same fields, the same feature names, the same score
classes in the same order) is checked and turned into columns in one pass: the rows are
transposed once, each column is checked against the v1 contract as a whole, and the columns of
any subset of rows (a model version's) are cut from the batch's. `UniformRows.check` answers
None for anything else - another shape, an unusual value, an invalid one - and the caller falls
back to ``streams.readers_columns.bulk_ok``, which decides row by row. It never says yes to a
row pydantic would reject (``tests/test_live_ingest_columns.py`` compares them on malformed
variants), but may say no to a valid one.

>>> rows = [{"event_id": f"e-{i}", "model": "m", "timestamp": "2024-05-01T00:00:00Z",
...          "features": {"x": 1.5, "plan": "pro"}, "prediction": 0.5} for i in range(3)]
>>> batch = UniformRows.check(rows)
>>> cols = batch.columns("m", None, np.array([0, 2]))
>>> cols.event_ids, cols.features["x"].values.tolist(), cols.features["plan"]
(['e-0', 'e-2'], [1.5, 1.5], ['pro', 'pro'])
>>> UniformRows.check(rows + [{**rows[0], "prediction": None}]) is None
True
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from detectors.columns import FeatureColumn, NumericColumn, PredictionColumns
from schemas.events import (
    MAX_FEATURES,
    MAX_ID_LENGTH,
    MAX_NAME_LENGTH,
    MAX_SCORES,
    MAX_SEGMENT_KEYS,
    MAX_SEGMENT_VALUE_LENGTH,
    MAX_STRING_VALUE_LENGTH,
)
from streams.readers_columns import bulk_times

__all__ = ["UniformRows"]

_ALLOWED: Final = frozenset(
    {"schema_version", "event_id", "model", "model_version", "timestamp", "features",
     "prediction", "scores", "segment"}
)  # fmt: skip
_REQUIRED: Final = frozenset({"event_id", "model", "timestamp", "features", "prediction"})
_NONE: Final = type(None)
_SCALARS: Final = frozenset({int, float, str, bool})
IntArray = npt.NDArray[np.int64]
Column = tuple[Any, ...]
Values = npt.NDArray[np.float64] | Column
"""A checked column: float64 (every value a finite float, or null where ``nulls``) or the
values as sent."""


def _name_ok(value: Any, limit: int = MAX_NAME_LENGTH, shortest: int = 1) -> bool:
    return type(value) is str and shortest <= len(value) <= limit


def _transpose(items: Column, names: tuple[str, ...]) -> dict[str, Column] | None:
    """Per name, its values over ``items`` (dicts with exactly those keys), else None."""
    if set(map(len, items)) != {len(names)}:
        return None
    try:  # a column at a time: no tuple per row (allocations wake the garbage collector)
        return {name: tuple(map(itemgetter(name), items)) for name in names}
    except KeyError:
        return None


def _values(column: Column, nullable: bool) -> tuple[Values, npt.NDArray[np.bool_] | None] | None:
    """A column of scalars checked as a whole (with its nulls), or None."""
    kinds = set(map(type, column))
    if kinds == {float} or (nullable and kinds == {float, _NONE}):
        nulls = None
        if _NONE in kinds:
            nulls = np.fromiter((v is None for v in column), bool, len(column))
            column = tuple(0.0 if v is None else v for v in column)
        values = np.array(column, dtype=np.float64)
        return (values, nulls) if np.isfinite(values).all() else None
    if not kinds <= (_SCALARS | {_NONE} if nullable else _SCALARS):
        return None
    texts = column if kinds == {str} else [v for v in column if type(v) is str]
    if texts and max(map(len, texts)) > MAX_STRING_VALUE_LENGTH:
        return None
    if float in kinds and not all(math.isfinite(v) for v in column if type(v) is float):
        return None
    return column, None


def _pick(values: Values, rows: IntArray | slice) -> Any:
    if isinstance(values, np.ndarray):
        return values[rows]
    if isinstance(rows, slice):
        return list(values[rows])
    picked = itemgetter(*rows.tolist())(values) if rows.size else ()
    return list(picked) if rows.size != 1 else [picked]


@dataclass(frozen=True)
class UniformRows:
    """A batch's rows, checked and transposed (build with `check`)."""

    ids: Column
    times: IntArray
    features: dict[str, tuple[Values, npt.NDArray[np.bool_] | None]]
    prediction: Values
    scores: dict[str, npt.NDArray[np.float64]] | None
    segments: Column | None

    @classmethod
    def check(cls, rows: list[Any]) -> UniformRows | None:
        """The rows as columns if every row certainly is a valid v1 PredictionEvent."""
        if not rows or set(map(type, rows)) != {dict}:
            return None
        names = tuple(rows[0])
        if not (_REQUIRED <= set(names) <= _ALLOWED):
            return None
        fields = _transpose(tuple(rows), names)
        if fields is None:
            return None
        checks: list[Callable[[], bool]] = [
            lambda: _versions_ok(fields.get("schema_version")),
            lambda: _texts_ok(fields["event_id"], MAX_ID_LENGTH, distinct=False),
            lambda: _texts_ok(fields["model"], MAX_NAME_LENGTH),
            lambda: _texts_ok(fields.get("model_version", (None,)), MAX_ID_LENGTH, True),
            lambda: set(map(type, fields["timestamp"])) == {str},
        ]
        if not all(check() for check in checks):
            return None
        times = bulk_times(list(fields["timestamp"]))
        prediction = _values(fields["prediction"], nullable=False)
        features = _features(fields["features"])
        scores = _scores(fields.get("scores"))
        segments = fields.get("segment")
        if times is None or prediction is None or features is None or scores is False:
            return None
        if segments is not None and not _segments_ok(segments):
            return None
        if segments is not None and segments.count(None) == len(segments):
            segments = None
        assert scores is not True
        return cls(fields["event_id"], times, features, prediction[0], scores, segments)

    def columns(self, model: str, version: str | None, rows: IntArray) -> PredictionColumns:
        """The columns of ``rows`` (increasing positions in the batch), all of that version."""
        n = rows.size
        where: IntArray | slice = rows
        if n and int(rows[-1]) - int(rows[0]) == n - 1:
            where = slice(int(rows[0]), int(rows[-1]) + 1)  # contiguous: cheaper to slice
        features: dict[str, FeatureColumn] = {}
        for name, (values, nulls) in self.features.items():
            picked = _pick(values, where)
            if isinstance(picked, np.ndarray):
                mask = None if nulls is None else nulls[where]
                features[name] = NumericColumn(picked, mask if mask is not None and mask.any()
                                               else None)  # fmt: skip
            else:
                features[name] = picked
        segments = None if self.segments is None else _pick(self.segments, where)
        return PredictionColumns(
            model, version, _pick(self.ids, where), self.times[where], features,
            _pick(self.prediction, where),
            None if self.scores is None else {c: v[where] for c, v in self.scores.items()},
            None if segments is None or segments.count(None) == n else segments,
        )  # fmt: skip


def _versions_ok(column: Column | None) -> bool:
    return column is None or (set(map(type, column)) == {int} and set(column) == {1})


def _texts_ok(column: Column, limit: int, nullable: bool = False, distinct: bool = True) -> bool:
    """Strings of 1 to ``limit`` characters (or null); ``distinct``: few distinct values."""
    kinds = set(map(type, column))
    if not (kinds == {str} or (nullable and kinds <= {str, _NONE})):
        return False
    texts: Column | set[Any] | list[Any] = set(column) if distinct else column
    if _NONE in kinds:
        texts = [v for v in texts if v is not None]
    return not texts or (min(map(len, texts)) >= 1 and max(map(len, texts)) <= limit)


def _features(column: Column) -> dict[str, tuple[Values, npt.NDArray[np.bool_] | None]] | None:
    if set(map(type, column)) != {dict}:
        return None
    names = tuple(column[0])
    if len(names) > MAX_FEATURES or not all(map(_name_ok, names)):
        return None
    by_name = _transpose(column, names)
    if by_name is None:
        return None
    out = {}
    for name, values in by_name.items():
        checked = _values(values, nullable=True)
        if checked is None:
            return None
        out[name] = checked
    return out


def _scores(column: Column | None) -> dict[str, npt.NDArray[np.float64]] | bool | None:
    """Class -> probabilities when every row scores the same classes in the same order; None
    when no row has scores; False: anything else (the row-by-row path decides)."""
    if column is None or column.count(None) == len(column):
        return None
    if set(map(type, column)) != {dict}:
        return False
    classes = tuple(column[0])
    if not classes or len(classes) > MAX_SCORES or not all(map(_name_ok, classes)):
        return False
    if set(map(tuple, column)) != {classes}:
        return False  # another order: a row's scores must come back in its own order
    by_class = _transpose(column, classes)
    if by_class is None:
        return False
    out = {}
    for name, values in by_class.items():
        if set(map(type, values)) != {float}:
            return False
        probabilities = np.array(values, dtype=np.float64)
        if not ((probabilities >= 0.0) & (probabilities <= 1.0)).all():
            return False
        out[name] = probabilities
    return out


def _segments_ok(column: Column) -> bool:
    kinds = set(map(type, column))
    if not kinds <= {dict, _NONE}:
        return False
    try:
        seen = {tuple(s.items()) for s in column if s is not None}
    except TypeError:  # an unhashable value: certainly no string
        return False
    for items in seen:
        if len(items) > MAX_SEGMENT_KEYS:
            return False
        for key, value in items:
            if not (_name_ok(key, MAX_SEGMENT_VALUE_LENGTH)
                    and _name_ok(value, MAX_SEGMENT_VALUE_LENGTH, 0)):  # fmt: skip
                return False
    return True
