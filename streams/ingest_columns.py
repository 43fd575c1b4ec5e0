"""The live worker's columnar boundary: raw Kafka bytes in, `PredictionColumns` out.

`split_columns` keeps the contract of ``streams.validation.split_messages`` (the same dead
letters, counts and labels) but hands valid predictions out as columns, without one pydantic
object per event. An SDK envelope the native lane vouches for (`streams.ingest_native`, Rust)
becomes its columns at once, and so do up to `SUB_BATCH_ROWS` consecutive single events it
vouches for all together. Any other prediction message's JSON is parsed once
(``streams.json_read.from_json``: the values of the parser pydantic's own path uses, so both
see the same values); the rows of `SUB_BATCH_ROWS` consecutive messages are checked at once,
column by column: by `streams.ingest_uniform.UniformRows` when they all have one shape (what
SDKs send; it also builds the columns), else row by row by
``streams.readers_columns.bulk_ok``/``bulk_times``. A message the checks cannot vouch for in
full - an invalid or merely unusual row, an envelope whose fields do not check out, an oversize
payload - goes through ``split_messages`` as a whole, so whatever pydantic rejects is rejected
with its exact words, and an envelope with one bad row stays invalid as a whole. Labels always
take that path.

Predictions come out as `PredictionColumns` of one model version each, with ``positions``:
each row's place in the batch (`streams.fold_columns.fold_columns` cuts its chunks by them, so
interleaved single events of many models cost no more than envelopes). A model version's rows
are in more than one `PredictionColumns` where the native lane took an envelope (one each) and
where ``scores`` list their classes in another order, so every row's scores come back exactly
as sent (the join stores them); ``scores: {}`` comes back as no scores (null), which every
consumer reads alike.

>>> from datetime import UTC, datetime
>>> now = datetime(2024, 5, 1, tzinfo=UTC)
>>> row = (b'{"event_id": "e-%d", "model": "m", "timestamp": "2024-05-01T00:00:0%dZ", '
...        b'"features": {"x": %d}, "prediction": 0.5}')
>>> batch = b'{"batch_id": "b", "model": "m", "predictions": [%s, %s]}' % (row % (1, 1, 1),
...     row % (2, 2, 2))
>>> split = split_columns([RawMessage("predictions", batch, "p", 0, 1),
...     RawMessage("predictions", row % (3, 3, 3), "p", 0, 2),
...     RawMessage("predictions", b'{"oops', "p", 0, 3)], now=now)
>>> [(c.model, i) for c in split.predictions for i in c.event_ids], split.prediction_messages
([('m', 'e-1'), ('m', 'e-2'), ('m', 'e-3')], 3)
>>> [p for where in split.positions for p in where.tolist()]
[0, 1, 2]
>>> split.dead_letters[0].error_class, split.dead_letters[0].offset
('json', 3)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from detectors.columns import PredictionColumns
from detectors.join import epoch_us
from schemas.events import (
    MAX_BATCH_BYTES,
    MAX_BATCH_PREDICTIONS,
    MAX_EVENT_BYTES,
    MAX_FEATURES,
    MAX_ID_LENGTH,
    MAX_NAME_LENGTH,
    DeadLetter,
    LabelEvent,
    PredictionEvent,
)
from streams.ingest_native import NativeRows, envelopes_columns, event_columns
from streams.ingest_uniform import UniformRows
from streams.json_read import from_json
from streams.readers_columns import bulk_ok, bulk_times
from streams.validation import RawMessage, split_messages

__all__ = ["ColumnSplit", "split_columns"]

_ENVELOPE: Final = frozenset(
    {"schema_version", "batch_id", "model", "model_version", "predictions"}
)
Rows = list[dict[str, Any]]
SUB_BATCH_ROWS: Final = 1_000
"""Rows parsed and checked together: an SDK envelope or two, or a thousand single events."""
ENVELOPES_PER_CALL: Final = 8
"""Envelopes the native lane parses at once, on the machine's cores (a few MB of parse
trees at a time)."""


@dataclass
class ColumnSplit:
    """`split_messages`' result with the valid predictions as columns, one per model version
    (and order of score classes); ``positions`` say where each row came in the batch."""

    predictions: list[PredictionColumns] = field(default_factory=list)
    labels: list[LabelEvent] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    prediction_messages: int = 0
    label_messages: int = 0
    positions: list[npt.NDArray[np.int64]] = field(default_factory=list)
    """Per element of ``predictions``: each row's place in consumption order (0, 1, ...)."""
    join_entries: dict[int, list[bytes]] = field(default_factory=dict)
    """Index in ``predictions`` -> each row's join entry, for the elements the native lane
    read (`NativeRows.join_entries`)."""

    def all_join_entries(self) -> list[list[bytes]] | None:
        """Every element's join entries, in order; None unless the native lane read them all."""
        if len(self.join_entries) != len(self.predictions):
            return None
        return [self.join_entries[index] for index in range(len(self.predictions))]

    @property
    def prediction_count(self) -> int:
        """Valid predictions (``len(split.predictions)`` of `split_messages`)."""
        return sum(map(len, self.predictions))


def split_columns(
    messages: Sequence[RawMessage], *, now: datetime, native: bool = True
) -> ColumnSplit:
    """Parse each message; an invalid one becomes a dead letter (``now`` is its received_at).
    ``native``: let the native lane take the envelopes and the runs of single events it
    vouches for (where it is built).

    Faust delivers the topics round-robin, message by message. Labels take pydantic's path
    and have no place among the predictions: they are split on their own, after the
    predictions, so runs of single events stay whole. Dead letters come in consumption order
    per source topic (the predictions' first).

    Messages are parsed, checked and turned into columns `SUB_BATCH_ROWS` rows at a time, so
    the parsed dicts of one part are freed before the next is parsed: with a whole round's
    rows alive at once (90 envelopes of 500: 45,000 rows, 135,000 dicts) a row cost ~1.6x
    as much (cache misses, and collections walking the young dicts again and again).
    """
    split = ColumnSplit()
    part: list[RawMessage] = []
    candidates: list[Rows | None] = []
    rows = 0
    run: list[RawMessage] = []
    """Consecutive single events for the native lane. At most one of ``run`` and ``part``
    holds messages, so the rows and dead letters keep their order."""
    labels = [message for message in messages if message.source != "predictions"]
    predictions = _predictions_of(messages) if labels else messages
    envelopes = _native_envelopes(predictions) if native else {}
    for index, message in enumerate(predictions):
        if native and _single_event(message.value):
            if part:
                _split_part(part, candidates, now, split)
                part, candidates, rows = [], [], 0
            run.append(message)
            if len(run) >= SUB_BATCH_ROWS:
                _split_run(run, now, split)
                run = []
            continue
        if run:
            _split_run(run, now, split)
            run = []
        whole = envelopes.get(index)
        if whole is not None:
            if part:  # the rows before it keep their places
                _split_part(part, candidates, now, split)
                part, candidates, rows = [], [], 0
            start = split.prediction_count
            split.join_entries[len(split.predictions)] = whole.join_entries
            split.predictions.append(whole.columns)
            split.positions.append(np.arange(start, start + len(whole.columns), dtype=np.int64))
            split.prediction_messages += 1
            continue
        candidate = _rows_of(message.value)
        part.append(message)
        candidates.append(candidate)
        rows += 1 if candidate is None else len(candidate)
        if rows >= SUB_BATCH_ROWS:
            _split_part(part, candidates, now, split)
            part, candidates, rows = [], [], 0
    if run:
        _split_run(run, now, split)
    if part:
        _split_part(part, candidates, now, split)
    if labels:
        _split_part(labels, [None] * len(labels), now, split)
    return split


def _predictions_of(messages: Sequence[RawMessage]) -> list[RawMessage]:
    return [message for message in messages if message.source == "predictions"]


def _native_envelopes(messages: Sequence[RawMessage]) -> dict[int, NativeRows]:
    """Index -> rows (columns, join entries) of the envelopes among ``messages`` the native
    lane vouches for, parsed `ENVELOPES_PER_CALL` at a time (a few MB of parse trees alive at
    once)."""
    waiting = [
        index for index, message in enumerate(messages)
        if type(message.value) is bytes and b'"predictions"' in message.value
    ]  # fmt: skip
    found: dict[int, NativeRows] = {}
    for start in range(0, len(waiting), ENVELOPES_PER_CALL):
        chunk = waiting[start : start + ENVELOPES_PER_CALL]
        values = [messages[index].value for index in chunk]
        for index, rows in zip(chunk, envelopes_columns(values), strict=True):
            if rows is not None:
                found[index] = rows
    return found


def _single_event(value: bytes | None) -> bool:
    """A prediction message that may be a single event (an envelope names its rows)."""
    return type(value) is bytes and b'"predictions"' not in value


def _split_run(run: list[RawMessage], now: datetime, split: ColumnSplit) -> None:
    """Consecutive single-event predictions, added to ``split`` after what it holds: by the
    native lane when it vouches for them all, else by the Python lanes."""
    found = event_columns([message.value for message in run])
    if found is None:
        _split_part(run, [_rows_of(message.value) for message in run], now, split)
        return
    start = split.prediction_count
    for places, rows in found:
        split.join_entries[len(split.predictions)] = rows.join_entries
        split.predictions.append(rows.columns)
        split.positions.append(places + start)
    split.prediction_messages += len(run)


def _split_part(
    messages: list[RawMessage], candidates: list[Rows | None], now: datetime, split: ColumnSplit
) -> None:
    """`split_columns` of consecutive ``messages`` (parsed: ``candidates``), added to ``split``
    after what it holds."""
    offset = split.prediction_count
    vouched, uniform = _vouch(candidates)
    groups = _Groups()
    waiting: list[RawMessage] = []

    def flush() -> None:
        # Consecutive messages the bulk checks left alone: today's path, in their order.
        if waiting:
            slow = split_messages(waiting, now=now)
            split.labels += slow.labels
            split.dead_letters += slow.dead_letters
            split.prediction_messages += slow.prediction_messages
            split.label_messages += slow.label_messages
            groups.add_events(slow.predictions)
            waiting.clear()

    first = 0  # where the message's rows start in the batch's candidate rows
    for message, rows, times in zip(messages, candidates, vouched, strict=True):
        if rows is None or times is None:
            first += 0 if rows is None else len(rows)
            waiting.append(message)
            continue
        flush()
        split.prediction_messages += 1
        groups.add_rows(rows, times, first)
        first += len(rows)
    flush()
    columns, positions = groups.columns(uniform)
    split.predictions += columns
    split.positions += [where + offset for where in positions]


def _id_ok(value: Any, limit: int = MAX_ID_LENGTH) -> bool:
    return type(value) is str and 1 <= len(value) <= limit


def _rows_of(value: bytes | None) -> Rows | None:
    """The rows of a prediction message whose outer layer is certainly valid, else None.

    Outer layer: size limits, a JSON object, and for an envelope every field of
    ``PredictionBatch`` but the rows' own (every row a dict of the batch's model version).
    """
    if type(value) is not bytes or not value or len(value) > MAX_BATCH_BYTES:
        return None
    try:
        data = from_json(value)  # the values schemas.events parses (pydantic_core)
    except ValueError:
        return None
    if type(data) is not dict:
        return None
    if "predictions" not in data:
        return [data] if len(value) <= MAX_EVENT_BYTES else None
    rows = data["predictions"]
    version = data.get("model_version")
    model = data.get("model")
    if not (
        data.keys() <= _ENVELOPE
        and type(rows) is list
        and 1 <= len(rows) <= MAX_BATCH_PREDICTIONS
        and data.get("schema_version", 1) == 1
        and type(data.get("schema_version", 1)) is int
        and _id_ok(data.get("batch_id"))
        and _id_ok(model, MAX_NAME_LENGTH)
        and (version is None or _id_ok(version))
    ):
        return None
    for row in rows:
        # bulk_ok checks every field of a dict row; the batch's own rule is checked here.
        if type(row) is not dict or row.get("model") != model:
            return None
        if row.get("model_version") != version:
            return None
    return rows


def _features_shape_ok(row: Any) -> bool:
    features = row.get("features") if type(row) is dict else None
    return type(features) is dict and len(features) <= MAX_FEATURES


def _vouch(candidates: list[Rows | None]) -> tuple[list[list[int] | None], UniformRows | None]:
    """Per message, the epoch-us times of its rows when every row passes the checks; and the
    batch's rows as columns when they all have one shape (`UniformRows`)."""
    owners: list[int] = []
    flat: Rows = []
    for index, rows in enumerate(candidates):
        if rows is not None:
            flat += rows
            owners += [index] * len(rows)
    out: list[list[int] | None] = [None] * len(candidates)
    if not flat:
        return out, None
    uniform = UniformRows.check(flat)
    if uniform is not None:
        at = uniform.times.tolist()
        ok = np.ones(len(flat), dtype=bool)
    else:
        ok, at = _rows_ok(flat)
    bad = {owners[i] for i in np.flatnonzero(~ok).tolist()}
    start = 0
    for index, rows in enumerate(candidates):
        if rows is None:
            continue
        end = start + len(rows)
        if index not in bad:
            out[index] = at[start:end]
        start = end
    return out, uniform


def _rows_ok(flat: Rows) -> tuple[npt.NDArray[np.bool_], list[int]]:
    """Row by row: does it pass the bulk checks; its epoch-us time (0 where it does not)."""
    # bulk_ok answers only "no" for every row of a list where some row's features are not a
    # small enough dict, without checking the others' values: such rows never reach it.
    ok = np.fromiter(map(_features_shape_ok, flat), dtype=bool, count=len(flat))
    good = np.flatnonzero(ok).tolist()
    if len(good) == len(flat):
        ok = bulk_ok(flat)
    elif good:
        ok[good] = bulk_ok([flat[i] for i in good])
    good = np.flatnonzero(ok).tolist()
    stamps = [flat[i]["timestamp"] for i in good]
    times = bulk_times(stamps)
    if times is None:  # some timestamp needs pydantic: find which (rare, so row by row)
        parsed = [bulk_times([stamp]) for stamp in stamps]
        for i, one in zip(good, parsed, strict=True):
            ok[i] = one is not None
        times = np.array([int(one[0]) for one in parsed if one is not None], dtype=np.int64)
        good = np.flatnonzero(ok).tolist()
    at: list[int] = [0] * len(flat)
    for i, t in zip(good, times.tolist(), strict=True):
        at[i] = t
    return ok, at


def _score_order(scores: Any) -> tuple[str, ...] | None:
    return tuple(scores) if scores else None


@dataclass
class _Group:
    model: str
    version: str | None
    order: tuple[str, ...] | None
    """The classes of the group's scored rows, in their order (None: no row scored yet)."""
    rows: Rows = field(default_factory=list)
    times: list[int] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    candidates: list[int] = field(default_factory=list)
    """Each row's place among the batch's candidate rows (-1: a row pydantic validated)."""


class _Groups:
    """Accepted rows by model version (and order of score classes), with their positions."""

    def __init__(self) -> None:
        self.groups: list[_Group] = []
        self._open: dict[tuple[str, str | None], _Group] = {}
        """(model, version) -> its group last added to (where unscored rows go)."""
        self._by_order: dict[tuple[str, str | None, tuple[str, ...]], _Group] = {}
        self.count = 0

    def add_rows(self, rows: Rows, times: list[int], first: int = -1) -> None:
        """Rows of one message (all of one model version: a single event, or an envelope);
        ``first``: the place of its first row among the candidate rows (-1: none)."""
        key = (rows[0]["model"], rows[0].get("model_version"))
        orders = [_score_order(row.get("scores")) for row in rows]
        distinct = set(orders) - {None}
        start, self.count = self.count, self.count + len(rows)
        if len(distinct) <= 1:
            group = self._group(key, distinct.pop() if distinct else None)
            group.rows += rows
            group.times += times
            group.positions += range(start, self.count)
            group.candidates += range(first, first + len(rows)) if first >= 0 else [-1] * len(rows)
            return
        for i, (row, at, order) in enumerate(zip(rows, times, orders, strict=True)):
            group = self._group(key, order)
            group.rows.append(row)
            group.times.append(at)
            group.positions.append(start + i)
            group.candidates.append(first + i if first >= 0 else -1)

    def add_events(self, events: list[PredictionEvent]) -> None:
        """Events pydantic validated, as rows."""
        for event in events:
            row = {
                "event_id": event.event_id, "model": event.model,
                "model_version": event.model_version, "features": event.features,
                "prediction": event.prediction, "scores": event.scores, "segment": event.segment,
            }  # fmt: skip
            self.add_rows([row], [epoch_us(event.timestamp)])

    def _group(self, key: tuple[str, str | None], order: tuple[str, ...] | None) -> _Group:
        group = self._open.get(key)
        if group is not None and (order is None or group.order in (None, order)):
            if group.order is None and order is not None:
                group.order = order
                self._by_order[(*key, order)] = group
            return group
        if order is not None:
            group = self._by_order.get((*key, order))
        if group is None:
            group = _Group(key[0], key[1], order)
            self.groups.append(group)
            if order is not None:
                self._by_order[(*key, order)] = group
        self._open[key] = group
        return group

    def columns(
        self, uniform: UniformRows | None
    ) -> tuple[list[PredictionColumns], list[npt.NDArray[np.int64]]]:
        out = []
        for group in self.groups:
            if uniform is not None and -1 not in group.candidates:
                rows_at = np.array(group.candidates, dtype=np.int64)
                out.append(uniform.columns(group.model, group.version, rows_at))
                continue
            rows = group.rows
            built = PredictionColumns.from_valid_rows(
                group.model, group.version, [row["event_id"] for row in rows],
                np.array(group.times, dtype=np.int64), [row["features"] for row in rows],
                [row["prediction"] for row in rows], [row.get("scores") for row in rows],
                [row.get("segment") for row in rows],
            )  # fmt: skip
            out.append(built)
        return out, [np.array(group.positions, dtype=np.int64) for group in self.groups]
