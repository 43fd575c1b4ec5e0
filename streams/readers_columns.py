"""Read prediction files into `PredictionColumns`, validating rows in bulk (``driftline backtest``).

`ColumnReader` is an `EventReader` of predictions whose chunks are lists of
``detectors.columns.PredictionColumns`` (one per model version) instead of one pydantic object
per event. Each chunk's rows are checked column by column against the v1 contract
(`bulk_ok`); a row the bulk checks cannot vouch for (invalid, or merely unusual: an int score,
a timestamp in another notation, a batch envelope) goes through the per-row pydantic path of
`EventReader`, so invalid rows are reported with exactly the same messages, and chunks end
after the same rows.

>>> rows = [{"event_id": "a", "model": "m", "timestamp": "2024-05-01T00:00:00Z",
...          "features": {"x": 1.5}, "prediction": 1},
...         {"event_id": "", "model": "m", "timestamp": "2024-05-01T00:00:01Z",
...          "features": {"x": 2.0}, "prediction": 0}]
>>> bulk_ok(rows).tolist()
[True, False]
"""

from __future__ import annotations

import math
import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from heapq import merge
from operator import itemgetter
from pathlib import Path
from typing import Any, Final, cast

import numpy as np
import numpy.typing as npt
import pydantic_core

from detectors.columns import PredictionColumns
from detectors.join import epoch_us
from schemas.events import (
    MAX_EVENT_BYTES,
    MAX_FEATURES,
    MAX_ID_LENGTH,
    MAX_NAME_LENGTH,
    MAX_SCORES,
    MAX_SEGMENT_KEYS,
    MAX_SEGMENT_VALUE_LENGTH,
    MAX_STRING_VALUE_LENGTH,
    InvalidEvent,
    LabelEvent,
    PredictionEvent,
)
from streams.readers import (
    DEFAULT_CHUNK_ROWS,
    EventReader,
    MergeStats,
    _open_binary,
    _starts_with_array,
)

__all__ = [
    "ColumnReader",
    "Row",
    "bulk_ok",
    "bulk_times",
    "columns_of_rows",
    "merge_rows_by_event_time",
]

BoolArray = npt.NDArray[np.bool_]
_ALLOWED: Final = frozenset(
    {"schema_version", "event_id", "model", "model_version", "timestamp", "features",
     "prediction", "scores", "segment"}
)  # fmt: skip
_REQUIRED: Final = frozenset({"event_id", "model", "timestamp", "features", "prediction"})
_PLAIN: Final = frozenset({int, float, str, bool, type(None)})
# RFC 3339 as pydantic reads it, narrowed to what numpy parses the same way: years 0001-9999,
# at most 6 fraction digits, offsets up to 23:59. Anything else takes the per-row path.
_RFC3339: Final = re.compile(
    r"((?!0000)\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?)(Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)"
)
Row = tuple[int, dict[str, Any]]
"""(epoch us, the event's fields as a dict): an accepted row."""


def _name_ok(value: Any, limit: int = MAX_NAME_LENGTH, shortest: int = 1) -> bool:
    return type(value) is str and shortest <= len(value) <= limit


def _value_ok(value: Any, nullable: bool = True) -> bool:
    kind = type(value)
    if kind is float:
        return math.isfinite(value)
    if kind is str:
        return len(value) <= MAX_STRING_VALUE_LENGTH
    return kind is int or kind is bool or (nullable and value is None)


def _column_ok(values: list[Any], nullable: bool = True) -> BoolArray:
    """Per value: a plain finite number, short string, bool (or null)."""
    kinds = set(map(type, values))
    if kinds <= {int, float} and float in kinds:
        try:
            return np.isfinite(np.array(values, dtype=np.float64))
        except OverflowError:
            pass
    elif (
        kinds <= {int, bool}
        or (nullable and kinds <= {int, bool, type(None)})
        or (kinds == {str} and max(map(len, values)) <= MAX_STRING_VALUE_LENGTH)
    ):
        return np.ones(len(values), dtype=bool)
    return np.fromiter((_value_ok(v, nullable) for v in values), bool, len(values))


def _version_ok(value: Any) -> bool:
    return type(value) is int and value == 1


def _version_name_ok(value: Any) -> bool:
    return value is None or _name_ok(value, MAX_ID_LENGTH)


def _each_ok(values: list[Any], check: Callable[[Any], bool]) -> BoolArray:
    """``check`` of every value, asked once per distinct (type, value) when values repeat."""
    try:
        verdicts = {k: check(k[1]) for k in set(zip(map(type, values), values, strict=True))}
    except TypeError:  # unhashable values
        return np.fromiter(map(check, values), bool, len(values))
    if all(verdicts.values()):
        return np.ones(len(values), dtype=bool)
    keys = zip(map(type, values), values, strict=True)
    return np.fromiter(map(verdicts.__getitem__, keys), bool, len(values))


def bulk_times(values: list[Any]) -> npt.NDArray[np.int64] | None:
    """Epoch microseconds of RFC 3339 strings (or aware datetimes); None if any is neither."""
    if set(map(type, values)) == {str}:
        matches = list(map(_RFC3339.fullmatch, values))
        if None in matches:
            return None
        local = [m.group(1) for m in matches if m is not None]
        zones = [m.group(2) for m in matches if m is not None]
        try:
            out = np.array(local, dtype="datetime64[us]").astype(np.int64)
        except ValueError:  # e.g. 30 February
            return None
        if zones.count("Z") != len(zones):
            offsets = [
                0 if z == "Z" else (1 if z[0] == "+" else -1) * (int(z[1:3]) * 60 + int(z[4:6]))
                for z in zones
            ]
            out -= np.array(offsets, dtype=np.int64) * 60_000_000
        return out
    if all(isinstance(v, datetime) and v.utcoffset() is not None for v in values):
        return np.fromiter(map(epoch_us, values), dtype=np.int64, count=len(values))
    return None


def bulk_ok(rows: list[Any]) -> BoolArray:
    """Per row: does it certainly validate as a v1 PredictionEvent, with the values as read?"""
    n = len(rows)
    if None in rows or not (
        all(map(_ALLOWED.issuperset, rows)) and all(map(_REQUIRED.issubset, rows))
    ):
        ok = np.fromiter(
            (type(r) is dict and r.keys() <= _ALLOWED and r.keys() >= _REQUIRED for r in rows),
            bool, n,
        )  # fmt: skip
        good = ok.nonzero()[0].tolist()
        if good:
            ok[good] = bulk_ok([rows[i] for i in good])
        return ok
    ok = _each_ok([r.get("schema_version", 1) for r in rows], _version_ok)
    ids = [r["event_id"] for r in rows]
    if set(map(type, ids)) == {str} and min(map(len, ids)) >= 1 and max(map(len, ids)) <= 256:
        pass  # every id is a string of 1 to MAX_ID_LENGTH characters
    else:
        ok &= np.fromiter((_name_ok(v, MAX_ID_LENGTH) for v in ids), bool, n)
    ok &= _each_ok([r["model"] for r in rows], _name_ok)
    ok &= _each_ok([r.get("model_version") for r in rows], _version_name_ok)
    times = [r["timestamp"] for r in rows]
    if set(map(type, times)) != {str}:
        ok &= np.fromiter((isinstance(t, str | datetime) for t in times), bool, n)
    ok &= _column_ok([r["prediction"] for r in rows], nullable=False)
    ok &= _features_ok([r["features"] for r in rows])
    ok &= _scores_ok([r.get("scores") for r in rows])
    ok &= _segments_ok([r.get("segment") for r in rows])
    return ok


def _features_ok(features: list[Any]) -> BoolArray:
    n = len(features)
    ok = np.fromiter((type(f) is dict and len(f) <= MAX_FEATURES for f in features), bool, n)
    if not ok.all():
        # Such rows take the per-row path; the others still need their values checked.
        good = ok.nonzero()[0]
        if good.size:
            ok[good] = _features_ok([features[i] for i in good.tolist()])
        return ok
    first = features[0].keys() if features else {}.keys()
    same = all(row.keys() == first for row in features)
    names = list(first) if same else list(dict.fromkeys(k for row in features for k in row))
    for name in names:
        if not _name_ok(name):
            ok &= np.fromiter((name not in row for row in features), bool, n)
            continue
        column = [row[name] for row in features] if same else [row.get(name) for row in features]
        ok &= _column_ok(column)
    return ok


def _scores_ok(scores: list[Any]) -> BoolArray:
    n = len(scores)
    if scores.count(None) == n:
        return np.ones(n, dtype=bool)

    def one(given: Any) -> bool:
        if given is None:
            return True
        if type(given) is not dict or len(given) > MAX_SCORES:
            return False
        return all(_name_ok(c) and type(p) is float and 0.0 <= p <= 1.0 for c, p in given.items())

    first = scores[0]
    if type(first) is dict and all(type(s) is dict and s.keys() == first.keys() for s in scores):
        if not (len(first) <= MAX_SCORES and all(map(_name_ok, first))):
            return np.zeros(n, dtype=bool)
        ok = np.ones(n, dtype=bool)
        for cls in first:
            column = [s[cls] for s in scores]
            if set(map(type, column)) != {float}:
                return np.fromiter(map(one, scores), bool, n)
            values = np.array(column, dtype=np.float64)
            ok &= (values >= 0.0) & (values <= 1.0)
        return ok
    return np.fromiter(map(one, scores), bool, n)


def _segments_ok(segments: list[Any]) -> BoolArray:
    n = len(segments)
    if segments.count(None) == n:
        return np.ones(n, dtype=bool)

    def one(given: Any) -> bool:
        if given is None:
            return True
        if type(given) is not dict or len(given) > MAX_SEGMENT_KEYS:
            return False
        return all(
            _name_ok(k, MAX_SEGMENT_VALUE_LENGTH) and _name_ok(v, MAX_SEGMENT_VALUE_LENGTH, 0)
            for k, v in given.items()
        )

    return np.fromiter(map(one, segments), bool, n)


def _event_row(event: PredictionEvent) -> Row:
    return epoch_us(event.timestamp), {
        "event_id": event.event_id, "model": event.model, "model_version": event.model_version,
        "features": event.features, "prediction": event.prediction, "scores": event.scores,
        "segment": event.segment,
    }  # fmt: skip


def columns_of_rows(rows: list[Row]) -> list[PredictionColumns]:
    """One PredictionColumns per (model, version), in order of first appearance."""
    if not rows:
        return []
    keys = [(item["model"], item.get("model_version")) for _, item in rows]
    if keys.count(keys[0]) == len(keys):
        return [_build(keys[0], rows)]
    groups: dict[tuple[str, str | None], list[Row]] = {}
    for key, row in zip(keys, rows, strict=True):
        groups.setdefault(key, []).append(row)
    return [_build(key, group) for key, group in groups.items()]


def _build(key: tuple[str, str | None], rows: list[Row]) -> PredictionColumns:
    items = [item for _, item in rows]
    return PredictionColumns.from_valid_rows(
        key[0], key[1], [item["event_id"] for item in items],
        np.fromiter((t for t, _ in rows), dtype=np.int64, count=len(rows)),
        [item["features"] for item in items], [item["prediction"] for item in items],
        [item.get("scores") for item in items], [item.get("segment") for item in items],
    )  # fmt: skip


class ColumnReader(EventReader[PredictionEvent]):
    """A prediction file in chunks of `PredictionColumns` (``column_chunks()``), or of the
    rows they are built from (``row_chunks()``, for `merge_rows_by_event_time`)."""

    def __init__(
        self,
        path: Path | str,
        *,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
        model: str | None = None,
        on_bytes: Callable[[int], None] | None = None,
    ) -> None:
        super().__init__(path, "prediction", chunk_rows=chunk_rows, model=model, on_bytes=on_bytes)

    def row_chunks(self) -> Iterator[list[Row]]:
        """The accepted rows of each chunk an `EventReader` would hand out, in file order."""
        chunks: Iterator[Any] = iter(self)
        yield from chunks

    def column_chunks(self) -> Iterator[list[PredictionColumns]]:
        """One `PredictionColumns` per model version of each chunk's rows."""
        for rows in self.row_chunks():
            yield columns_of_rows(rows)

    def _rows(self, numbered: list[tuple[int, Any]], raw: list[Any]) -> list[tuple[int, Row]]:
        """Accepted rows of ``numbered`` (line, parsed dict or None); the rest take the
        per-row path (``raw`` holds each row's original for it)."""
        ok = bulk_ok([item for _, item in numbered])
        times = None
        if ok.any():
            good = ok.nonzero()[0].tolist()
            times = bulk_times([numbered[i][1]["timestamp"] for i in good])
            if times is None:  # find the rows whose time needs the per-row path
                for i in good:
                    ok[i] = bulk_times([numbered[i][1]["timestamp"]]) is not None
                good = ok.nonzero()[0].tolist()
                times = bulk_times([numbered[i][1]["timestamp"] for i in good])
        at = [] if times is None else times.tolist()
        if len(at) == len(numbered):  # every row passed: the common case
            return list(zip(
                [number for number, _ in numbered],
                zip(at, [item for _, item in numbered], strict=True), strict=True,
            ))  # fmt: skip
        accepted: list[tuple[int, Row]] = []
        times_of = iter(at)
        for i, (number, item) in enumerate(numbered.copy()):
            if ok[i]:
                accepted.append((number, (next(times_of), item)))
                continue
            for event in self._slow(number, raw[i]):
                accepted.append((number, _event_row(event)))
        return accepted

    def _slow(self, number: int, raw: Any) -> list[PredictionEvent]:
        try:
            if isinstance(raw, bytes | str):
                return self._parse_json(raw)
            events: list[Any] = super()._validate_rows([(number, raw)])
        except InvalidEvent as exc:
            self._reject(number, str(exc))
            return []
        self.valid -= len(events)  # counted when the chunk is handed out
        return events

    def _jsonl(self) -> Iterator[list[Any]]:
        done = 0
        with _open_binary(self.path) as (raw, text):
            if _starts_with_array(text):
                for events in self._json_array(text):
                    yield [_event_row(event) for event in events]
                return
            lines = ((number, line) for number, line in enumerate(text, start=1) if line.strip())
            pending: list[tuple[int, Row]] = []
            while True:
                block = [item for _, item in zip(range(self.chunk_rows), lines, strict=False)]
                if not block:
                    break
                parsed = [(number, _parse(line)) for number, line in block]
                pending += self._rows(parsed, [line for _, line in block])
                while len(pending) >= self.chunk_rows:
                    cut = _cut(pending, self.chunk_rows)
                    self.valid += cut
                    done = self._progress(raw, done)
                    yield [row for _, row in pending[:cut]]
                    pending = pending[cut:]
            self.valid += len(pending)
            self._progress(raw, done)
        if pending:
            yield [row for _, row in pending]

    def _validate_rows(self, rows: list[tuple[int, dict[str, Any]]]) -> list[Any]:
        accepted = self._rows(list(rows), [data for _, data in rows])
        self.valid += len(accepted)
        return [row for _, row in accepted]


def merge_rows_by_event_time(
    predictions: Iterable[list[Row]],
    labels: Iterable[Sequence[LabelEvent]] = (),
    *,
    stats: MergeStats | None = None,
) -> Iterator[tuple[list[PredictionColumns], list[LabelEvent]]]:
    """``streams.readers.merge_by_event_time`` over row chunks: the same batches (as columns,
    one per model version), the same ``out_of_order`` count."""
    counter = stats if stats is not None else MergeStats()
    sources: list[Iterator[Sequence[Any]]] = [iter(predictions), iter(labels)]
    keys: list[Callable[[Any], int]] = [itemgetter(0), _label_us]
    buffers: list[list[Any]] = [[], []]
    highs: list[int | None] = [None, None]
    done = [False, False]
    emitted: int | None = None
    while not all(done):
        open_sides = [i for i in (0, 1) if not done[i]]
        unknown = [i for i in open_sides if highs[i] is None]
        side = unknown[0] if unknown else min(open_sides, key=lambda i: cast(int, highs[i]))
        chunk = next(sources[side], None)
        if chunk is None:
            done[side] = True
        elif chunk:
            key = keys[side]
            ordered = sorted(chunk, key=key)
            if emitted is not None:
                counter.out_of_order += bisect_left(ordered, emitted, key=key)
            buffers[side] = list(merge(buffers[side], ordered, key=key))
            high, seen = key(ordered[-1]), highs[side]
            highs[side] = high if seen is None else max(high, seen)
        marks = [highs[i] for i in (0, 1) if not done[i]]
        if None in marks:
            continue
        mark = min(cast(list[int], marks)) if marks else None
        ready: list[list[Any]] = [[], []]
        for i in (0, 1):
            cut = len(buffers[i]) if mark is None else bisect_right(buffers[i], mark, key=keys[i])
            ready[i], buffers[i] = buffers[i][:cut], buffers[i][cut:]
        if ready[0] or ready[1]:
            last = max(keys[i](ready[i][-1]) for i in (0, 1) if ready[i])
            emitted = last if emitted is None else max(emitted, last)
            yield columns_of_rows(ready[0]), ready[1]


def _label_us(label: LabelEvent) -> int:
    return epoch_us(label.timestamp)


def _parse(line: bytes) -> Any:
    """The line's JSON object, or None when the per-row path must look at it."""
    if len(line) > MAX_EVENT_BYTES:
        return None
    try:
        item = pydantic_core.from_json(line)
    except ValueError:
        return None
    return item if type(item) is dict and "predictions" not in item else None


def _cut(pending: list[tuple[int, Row]], size: int) -> int:
    """Rows in the first chunk: through the line whose events reach ``size`` (an envelope's
    events stay together, as `EventReader` keeps them)."""
    line = pending[size - 1][0]
    cut = size
    while cut < len(pending) and pending[cut][0] == line:
        cut += 1
    return cut
