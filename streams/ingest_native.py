"""The native lane of `streams.ingest_columns`: predictions from bytes to columns in Rust.

``driftline_native`` (``native/``, built by ``make venv``) parses and checks an envelope whose
rows all have one shape - what SDKs send - or a run of single-event messages whose rows have
one shape per model version, and answers None for anything else, which the Python lanes then
decide (`streams.ingest_uniform`, then pydantic with its exact words). It
reads the same values as those lanes and never vouches for a row pydantic would reject
(``tests/test_ingest_native.py`` compares them); it costs ~2.5 us per row of a 500-row
envelope against ~6 us for the Python lanes, and parses without the GIL, so the consumer
thread keeps fetching meanwhile.

The module is an accelerator, not a dependency: without it (a checkout built without Rust) or
with ``DRIFTLINE_NATIVE_INGEST=false`` (``Settings.native_ingest``) every message takes the
Python lanes, with the same results. `native_status` says which is in use (the worker logs it
at start).

>>> from datetime import UTC, datetime
>>> from schemas.events import PredictionBatch, PredictionEvent, to_json_bytes
>>> row = PredictionEvent(event_id="e-1", model="m", timestamp=datetime(2024, 5, 1, tzinfo=UTC),
...     features={"x": 1.5, "plan": "pro"}, prediction=0.5)
>>> raw = to_json_bytes(PredictionBatch(batch_id="b", model="m", predictions=[row]))
>>> columns = envelope_columns(raw)
>>> NATIVE is None or (columns.event_ids, columns.features["x"].values.tolist(),
...     columns.features["plan"]) == (["e-1"], [1.5], ["pro"])
True
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from detectors.columns import FeatureColumn, NumericColumn, PredictionColumns
from schemas import fields
from schemas.events import PredictionBatch, PredictionEvent

__all__ = [
    "NATIVE", "NativeRows", "envelope_columns", "envelopes_columns", "event_columns",
    "native_status",
]  # fmt: skip


class NativeRows(NamedTuple):
    """Rows the native lane vouched for: their columns, and each row's join entry as the join
    table stores a prediction waiting for its label (`detectors.join`; JSON, encoded by the
    parse on its threads, so the ingest need not build and encode them)."""

    columns: PredictionColumns
    join_entries: list[bytes]


def _load() -> tuple[ModuleType | None, str]:
    try:
        import driftline_native
    except ImportError:
        return None, "not built (make venv builds native/ where cargo is installed)"
    # A stale build's checks would not be the contract's.
    theirs = driftline_native.limits()
    ours = {name: getattr(fields, name) for name in theirs}
    if theirs != ours:
        return None, f"refused: its limits {theirs} differ from schemas.fields {ours}"
    names = {key: sorted(value) for key, value in driftline_native.fields().items()}
    if names != _field_names():
        return None, f"refused: its field names {names} differ from schemas.events'"
    # A build older than its Python side answers another tuple (e.g. without join entries).
    (probe,) = driftline_native.parse_envelopes([_PROBE])
    if probe is None or len(probe) != _TUPLE_LENGTH:
        return None, "refused: a stale build (its columns differ): rebuild it with make venv"
    return driftline_native, "on"


_PROBE: bytes = (
    b'{"batch_id": "b", "model": "m", "predictions": [{"event_id": "e", "model": "m", '
    b'"timestamp": "2024-05-01T00:00:00Z", "features": {}, "prediction": 1.0}]}'
)
_TUPLE_LENGTH = 9
"""model, version, ids, times, features, prediction, scores, segments, join entries."""


def _field_names() -> dict[str, list[str]]:
    row = PredictionEvent.model_fields
    return {
        "envelope": sorted(PredictionBatch.model_fields), "row": sorted(row),
        "required": sorted(name for name, field in row.items() if field.is_required()),
    }  # fmt: skip


NATIVE: ModuleType | None
_STATUS: str
NATIVE, _STATUS = _load()


def native_status(enabled: bool = True) -> str:
    """``on``, or why the native lane is not in use (``enabled``: ``Settings.native_ingest``)."""
    return _STATUS if enabled else "off (DRIFTLINE_NATIVE_INGEST=false)"


def envelope_columns(raw: bytes | None) -> PredictionColumns | None:
    """The rows of an envelope the native lane vouches for in full, else None (also for a
    single event, a value that is not bytes, and always when the lane is off)."""
    if NATIVE is None or type(raw) is not bytes or b'"predictions"' not in raw:
        return None  # a single event (or a tombstone): no parse for nothing
    found = envelopes_columns([raw])[0]
    return None if found is None else found.columns


def envelopes_columns(values: list[bytes | None]) -> list[NativeRows | None]:
    """The rows of each of ``values`` the native lane vouches for in full (else None, as
    `envelope_columns`), parsed and checked on the machine's cores (up to 4 threads, without
    the GIL)."""
    if NATIVE is None:
        return [None] * len(values)
    return [None if one is None else _rows(one) for one in NATIVE.parse_envelopes(values)]


def event_columns(
    values: list[bytes | None],
) -> list[tuple[npt.NDArray[np.int64], NativeRows]] | None:
    """Single-event messages (``values``: their bytes) as columns per model version, each with
    its rows' indices in ``values``; None unless the native lane vouches for every message
    (a value that is not bytes included; always when the lane is off): then the Python lanes
    decide them all."""
    parsed = None if NATIVE is None else NATIVE.parse_events(values)
    if parsed is None:
        return None
    return [(np.frombuffer(places, dtype=np.int64), _rows(rows)) for places, rows in parsed]


def _rows(parsed: tuple[Any, ...]) -> NativeRows:
    model, version, ids, times, features, prediction, scores, segments, entries = parsed
    columns = PredictionColumns(
        model,
        version,
        ids,
        np.frombuffer(times, dtype=np.int64),
        {name: _feature(column) for name, column in features},
        _values(prediction),
        None if scores is None else {c: np.frombuffer(v, dtype=np.float64) for c, v in scores},
        segments,
    )
    return NativeRows(columns, entries)


def _values(column: tuple[Any, Any]) -> Any:
    """A prediction column: float64 (bytearray), ints alone (bytes of int64; builds from the
    40th session on), else the values as sent."""
    values, _ = column
    if isinstance(values, bytearray):
        return np.frombuffer(values, dtype=np.float64)
    if isinstance(values, bytes):
        return np.frombuffer(values, dtype=np.int64)
    return values


def _feature(column: tuple[Any, Any]) -> FeatureColumn:
    values, nulls = column
    if not isinstance(values, bytearray):
        return values  # type: ignore[no-any-return]
    mask = None if nulls is None else np.frombuffer(nulls, dtype=np.bool_)
    return NumericColumn(np.frombuffer(values, dtype=np.float64), mask)
