"""Bulk checks of columnar predictions: the v1 limits of ``schemas.events``, one pass per column.

Each check raises `ColumnsError` naming the field and the first bad row, or returns the column
in the form `detectors.columns.PredictionColumns` keeps.

>>> check_ids(["a", ""])
Traceback (most recent call last):
...
detectors.columns_check.ColumnsError: event_ids row 1: empty id; every prediction needs one
>>> check_times(np.array(["2024-05-01T00:00:01"], dtype="datetime64[s]"), 1).tolist()
[1714521601000000]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from detectors.join import epoch_us
from schemas.events import (
    MAX_ID_LENGTH,
    MAX_NAME_LENGTH,
    MAX_SCORES,
    MAX_SEGMENT_KEYS,
    MAX_SEGMENT_VALUE_LENGTH,
    MAX_STRING_VALUE_LENGTH,
)

__all__ = [
    "ABSENT",
    "ColumnsError",
    "check_ids",
    "check_name",
    "check_numbers",
    "check_prediction",
    "check_scores",
    "check_segments",
    "check_times",
    "check_values",
]

FloatArray = npt.NDArray[np.float64]


class _Absent:
    """The marker of a feature an event does not have (not the same as a null value)."""

    _instance: _Absent | None = None

    def __new__(cls) -> _Absent:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Final = _Absent()
_PLAIN: Final = frozenset({bool, int, float, str, type(None)})


class ColumnsError(ValueError):
    """Columnar input that breaks the v1 contract; says which field, which row and why."""

    def __init__(self, field: str, row: int | None, problem: str) -> None:
        self.field, self.row, self.problem = field, row, problem
        where = field if row is None else f"{field} row {row}"
        super().__init__(f"{where}: {problem}")


def _length(field: str, size: int, n: int) -> None:
    if size != n:
        raise ColumnsError(field, None, f"has {size} rows but event_ids has {n}: align them")


def check_name(field: str, value: object, limit: int = MAX_NAME_LENGTH) -> None:
    if type(value) is not str or not 1 <= len(value) <= limit:
        shown = f"{len(value)} characters" if isinstance(value, str) else type(value).__name__
        raise ColumnsError(field, None, f"must be a string of 1 to {limit} characters, got {shown}")


def check_ids(ids: Sequence[str]) -> list[str]:
    out = ids.tolist() if isinstance(ids, np.ndarray) else list(ids)
    if not out:
        raise ColumnsError("event_ids", None, "no rows: pass at least one prediction")
    if set(map(type, out)) != {str}:
        row = next(i for i, v in enumerate(out) if type(v) is not str)
        raise ColumnsError("event_ids", row, f"{type(out[row]).__name__} is not a string id")
    lengths = np.fromiter(map(len, out), dtype=np.int64, count=len(out))
    bad = np.flatnonzero((lengths < 1) | (lengths > MAX_ID_LENGTH))
    if bad.size:
        row = int(bad[0])
        problem = (
            "empty id; every prediction needs one" if lengths[row] < 1
            else f"id of {lengths[row]} characters, limit {MAX_ID_LENGTH}"
        )  # fmt: skip
        raise ColumnsError("event_ids", row, problem)
    return out


def check_times(times: Any, n: int) -> npt.NDArray[np.int64]:
    """Epoch microseconds (int64) from int64 µs, ``datetime64`` (UTC) or aware datetimes."""
    if isinstance(times, np.ndarray) and times.dtype.kind == "M":
        if np.isnat(times).any():
            raise ColumnsError("times_us", int(np.flatnonzero(np.isnat(times))[0]), "NaT")
        out = times.astype("datetime64[us]").astype(np.int64)
    elif isinstance(times, np.ndarray) and times.dtype.kind in "iu":
        out = times.astype(np.int64, copy=False)
    elif isinstance(times, np.ndarray) and times.dtype.kind != "O":
        raise ColumnsError(
            "times_us", None, f"dtype {times.dtype}: pass int64 epoch microseconds or datetime64"
        )
    else:
        items = list(times)
        for i, value in enumerate(items):
            if not isinstance(value, datetime) or value.utcoffset() is None:
                raise ColumnsError(
                    "times_us", i, f"{value!r} is not an aware datetime: add a timezone (UTC)"
                )
        out = np.fromiter(map(epoch_us, items), dtype=np.int64, count=len(items))
    _length("times_us", out.shape[0] if out.ndim == 1 else -1, n)
    return np.ascontiguousarray(out)


def check_numbers(field: str, column: npt.NDArray[Any], n: int, nulls: Any) -> FloatArray:
    """float64 values, finite wherever ``nulls`` (a bool mask, or None) is not set."""
    values = np.ascontiguousarray(column, dtype=np.float64)
    _length(field, values.shape[0] if values.ndim == 1 else -1, n)
    bad = ~np.isfinite(values)
    if nulls is not None:
        mask = np.asarray(nulls)
        if mask.dtype != np.bool_ or mask.shape != (n,):
            raise ColumnsError(field, None, f"null mask must be {n} booleans")
        bad &= ~mask
        values = np.where(mask, 0.0, values)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ColumnsError(
            field, row, f"{values[row]} is not a finite number; mark nulls in `nulls` instead"
        )
    return values


def _value_problem(value: Any, nullable: bool) -> str | None:
    kind = type(value)
    if kind is str:
        return (
            None if len(value) <= MAX_STRING_VALUE_LENGTH
            else f"string of {len(value)} characters, limit {MAX_STRING_VALUE_LENGTH}"
        )  # fmt: skip
    if kind is float:
        return None if math.isfinite(value) else f"{value} is not a finite number"
    if kind is int or kind is bool or (kind is type(None) and nullable):
        return None
    allowed = "a number, string, boolean or null" if nullable else "a number, string or boolean"
    return f"must be {allowed}, got {kind.__name__}"


def check_values(field: str, items: list[Any], n: int, *, nullable: bool = True) -> list[Any]:
    """Plain values (numbers finite, strings within the limit); numpy scalars become Python."""
    _length(field, len(items), n)
    kinds = set(map(type, items))
    if not kinds <= _PLAIN:
        items = [v.item() if isinstance(v, np.generic) else v for v in items]
        kinds = set(map(type, items))
    slow = not kinds <= _PLAIN or (not nullable and type(None) in kinds)
    if not slow and str in kinds:
        slow = max(len(v) for v in items if type(v) is str) > MAX_STRING_VALUE_LENGTH
    if not slow and float in kinds:
        slow = not all(map(math.isfinite, [v for v in items if type(v) is float]))
    if slow:  # find the first bad row for the message
        for i, value in enumerate(items):
            problem = _value_problem(value, nullable)
            if problem is not None:
                raise ColumnsError(field, i, problem)
    return items


def check_prediction(prediction: Any, n: int) -> FloatArray | list[Any]:
    """A float64 array when every prediction is a float, else a list of plain values."""
    if isinstance(prediction, np.ndarray) and prediction.dtype.kind == "f":
        return check_numbers("prediction", prediction, n, None)
    items = prediction.tolist() if isinstance(prediction, np.ndarray) else list(prediction)
    items = check_values("prediction", items, n, nullable=False)
    if set(map(type, items)) == {float}:
        return np.array(items, dtype=np.float64)
    return items


def check_scores(scores: Mapping[str, Any], n: int) -> dict[str, FloatArray]:
    if len(scores) > MAX_SCORES:
        raise ColumnsError("scores", None, f"{len(scores)} classes, limit {MAX_SCORES}")
    out: dict[str, FloatArray] = {}
    for cls, column in scores.items():
        check_name("scores class", cls)
        field = f"scores[{cls!r}]"
        values = np.ascontiguousarray(column, dtype=np.float64)
        _length(field, values.shape[0] if values.ndim == 1 else -1, n)
        bad = ~np.isnan(values) & ~((values >= 0.0) & (values <= 1.0))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ColumnsError(field, row, f"{values[row]} is not a probability in [0, 1]")
        out[cls] = values
    return out


def check_segments(
    segments: Sequence[Mapping[str, str] | None], n: int
) -> list[dict[str, str] | None]:
    items = list(segments)
    _length("segments", len(items), n)
    out: list[dict[str, str] | None] = []
    for i, segment in enumerate(items):
        if segment is None:
            out.append(None)
            continue
        if not isinstance(segment, Mapping) or len(segment) > MAX_SEGMENT_KEYS:
            raise ColumnsError(
                "segments", i, f"must be a mapping of at most {MAX_SEGMENT_KEYS} keys"
            )
        for key, value in segment.items():
            if (
                type(key) is not str or not 1 <= len(key) <= MAX_SEGMENT_VALUE_LENGTH
                or type(value) is not str or len(value) > MAX_SEGMENT_VALUE_LENGTH
            ):  # fmt: skip
                raise ColumnsError(
                    "segments", i, f"{key!r}: {value!r} is not a short string key and value "
                    f"(at most {MAX_SEGMENT_VALUE_LENGTH} characters)",
                )  # fmt: skip
        out.append(dict(segment))
    return out
