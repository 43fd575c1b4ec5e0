"""The native lane (`streams.ingest_native`) reads envelopes and runs of single events exactly
as the Python lanes do.

For every envelope it vouches for, its columns equal `UniformRows`' to the type of each value
(float arrays, lists of ints, strings, booleans, nulls), and pydantic accepts the envelope with
the same values; on everything else it answers None and the Python lanes decide.
`tests/test_live_ingest_columns.py` runs the whole columnar ingest with and without it.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import random
import sys
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.accumulate_columns import fold_columns
from detectors.columns import NumericColumn, PredictionColumns
from detectors.join import LabelJoiner
from detectors.window import WindowDelta
from schemas import fields
from schemas.events import (
    InvalidEvent,
    PredictionBatch,
    PredictionEvent,
    parse_prediction_payload,
    to_json_bytes,
)
from schemas.monitor_config import ModelMonitorConfig
from streams import ingest_native
from streams.ingest_columns import _rows_of
from streams.ingest_native import (
    NATIVE,
    NativeRows,
    envelope_columns,
    envelopes_columns,
    event_columns,
    native_status,
)
from streams.ingest_uniform import UniformRows
from streams.join_batch import stubs_of
from streams.readers_columns import bulk_times

pytestmark = pytest.mark.skipif(
    NATIVE is None and not os.environ.get("CI"), reason=f"native lane: {native_status()}"
)


def test_the_native_lane_is_built_and_checks_the_contracts_limits() -> None:
    # Under CI it must be there: a build that silently fell back would test nothing here.
    assert native_status() == "on"
    assert NATIVE is not None
    assert NATIVE.limits() == {name: getattr(fields, name) for name in NATIVE.limits()}
    envelope = sorted(PredictionBatch.model_fields)
    assert sorted(NATIVE.fields()["envelope"]) == envelope


def test_a_stale_build_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    built = NATIVE
    assert built is not None
    # Bound here: a class body does not see the narrowing of ``built``.
    built_limits, built_fields, built_parse = built.limits, built.fields, built.parse_envelopes

    class Stale:  # a build from before the join entries: 8 columns per envelope
        limits = staticmethod(built_limits)
        fields = staticmethod(built_fields)

        @staticmethod
        def parse_envelopes(raws: list[bytes | None]) -> list[Any]:
            return [None if one is None else one[:8] for one in built_parse(raws)]

    monkeypatch.setitem(sys.modules, "driftline_native", Stale)
    module, status = ingest_native._load()
    assert module is None and "stale build" in status and "make venv" in status


def _python_lane(raw: bytes) -> PredictionColumns | None:
    """What `split_columns` builds for a whole envelope without the native lane."""
    rows = _rows_of(raw)
    uniform = (
        None if rows is None or "predictions" not in json.loads(raw) else (UniformRows.check(rows))
    )
    if uniform is None or rows is None:
        return None
    return uniform.columns(rows[0]["model"], rows[0].get("model_version"),
                           np.arange(len(rows), dtype=np.int64))  # fmt: skip


def _typed(values: Any) -> Any:
    """A column with the type of every value: 1 and 1.0 and True differ here."""
    if isinstance(values, np.ndarray):
        return ("array", str(values.dtype), values.tolist())
    if isinstance(values, NumericColumn):
        nulls = None if values.nulls is None else values.nulls.tolist()
        return ("numeric", _typed(values.values), nulls, values.absent)
    if values is None:
        return None
    return ("list", [(type(v).__name__, v) for v in values])


def _canonical(columns: PredictionColumns) -> Any:
    # Ints alone come from the native lane as int64 (`prediction_list` gives them back as the
    # Python lane keeps them, a list of ints): compared as those ints.
    prediction = columns.prediction
    as_sent = isinstance(prediction, np.ndarray) and prediction.dtype == np.int64
    return (
        columns.model, columns.model_version, columns.event_ids, _typed(columns.times_us),
        [(name, _typed(column)) for name, column in columns.features.items()],
        _typed(columns.prediction_list() if as_sent else prediction),
        None if columns.scores is None else [(c, _typed(v)) for c, v in columns.scores.items()],
        columns.segments,
    )  # fmt: skip


def _typed_entry(entry: Any) -> Any:
    """A join entry with the type of every value (1, 1.0 and True differ here) and the order
    of every dict's keys."""
    if isinstance(entry, dict):
        return [("dict", key, _typed_entry(value)) for key, value in entry.items()]
    if isinstance(entry, list):
        return [_typed_entry(value) for value in entry]
    return (type(entry).__name__, entry)


def assert_entries_as_the_joiner_stores(native: NativeRows, python: PredictionColumns) -> None:
    """Each row's join entry encoded by the parse decodes to what the joiner stores for the
    Python lane's columns (`streams.join_batch.fresh_entries` writes them in its place)."""
    stored: dict[str, Any] = {}
    LabelJoiner(stored, {}, ttl_seconds=60).add_prediction_columns(python)
    assert len(native.join_entries) == len(python)
    decoded = [orjson.loads(entry) for entry in native.join_entries]
    assert [_typed_entry(entry) for entry in decoded] == [
        _typed_entry(stored[event_id]) for event_id in python.event_ids
    ]


def assert_native_reads_as_python(raw: bytes) -> PredictionColumns | None:
    found = envelopes_columns([raw])[0]
    if found is None:
        assert envelope_columns(raw) is None
        return None
    native = found.columns
    python = _python_lane(raw)
    assert python is not None, f"native vouched for what the Python lanes refuse: {raw[:300]!r}"
    assert _canonical(native) == _canonical(python)
    if len(set(python.event_ids)) == len(python):  # else the joiner keeps only the first
        assert_entries_as_the_joiner_stores(found, python)
    events = parse_prediction_payload(raw)  # raises if pydantic refuses it
    assert [e.event_id for e in events] == native.event_ids
    return native


def _row(i: int, **fields_: Any) -> dict[str, Any]:
    return {"event_id": f"e-{i}", "model": "m", "timestamp": "2024-05-01T00:00:00Z",
            "features": {"x": 1.5}, "prediction": 0.5, **fields_}  # fmt: skip


def _envelope(rows: list[dict[str, Any]], **fields_: Any) -> bytes:
    envelope = {"batch_id": "b", "model": "m", "predictions": rows, **fields_}
    return json.dumps(envelope).encode()


def test_an_sdk_envelope_reads_as_the_python_lane_reads_it() -> None:
    events = [
        PredictionEvent(
            event_id=f"m-{i}", model="m", model_version="7",
            timestamp=datetime(2024, 5, 1, 0, 0, i % 60, i * 997 % 1_000_000, tzinfo=UTC),
            features={"age": 20 + i % 50, "spend": i / 7, "plan": ["a", "b"][i % 2],
                      "vip": bool(i % 3), "gap": None if i % 4 else 0.5},
            prediction=round(i / 100, 3), scores={"no": 0.25, "yes": 0.75},
            segment={"region": "eu"} if i % 2 else None,
        )
        for i in range(100)
    ]  # fmt: skip
    raw = to_json_bytes(PredictionBatch(batch_id="b", model="m", model_version="7",
                                        predictions=events))  # fmt: skip
    native = assert_native_reads_as_python(raw)
    assert native is not None and len(native) == 100
    gap = native.features["gap"]
    assert isinstance(gap, NumericColumn) and gap.nulls is not None and int(gap.nulls.sum()) == 75
    assert native.features["age"] == [20 + i % 50 for i in range(100)]  # ints stay ints


def test_int_predictions_come_as_an_int64_column_and_fold_as_the_python_lanes_list() -> None:
    rows = [_row(i, prediction=[0, 1, 2, -3][i % 4]) for i in range(40)]
    mixed = [_row(1, prediction=1), _row(2, prediction=True)]  # a bool: the values as sent
    raw = _envelope(rows)
    native = assert_native_reads_as_python(raw)
    python = _python_lane(raw)
    assert native is not None and python is not None
    assert isinstance(native.prediction, np.ndarray) and native.prediction.dtype == np.int64
    assert python.prediction == [[0, 1, 2, -3][i % 4] for i in range(40)]
    assert [type(v) for v in native.prediction_list()] == [int] * 40
    config = ModelMonitorConfig()
    states = []
    for columns in (native, python):
        delta = WindowDelta("m", None)
        fold_columns(delta, columns, config)
        states.append(delta.to_state())
    assert states[0] == states[1]
    odd = assert_native_reads_as_python(_envelope(mixed))
    assert odd is not None and odd.prediction == [1, True]


@pytest.mark.parametrize(
    "raw",
    [
        json.dumps(_row(1)).encode(),  # a single event: the Python lanes'
        _envelope([_row(1), _row(2, scores={"a": 0.5})]),  # rows of two shapes
        _envelope([_row(1, scores={"a": 0.5, "b": 0.5}), _row(2, scores={"b": 0.5, "a": 0.5})]),
        _envelope([_row(1, features={"x": 1.0}), _row(2, features={"y": 1.0})]),
        _envelope([_row(1, scores={"a": 1})]),  # an int probability: pydantic decides
        _envelope([_row(1, prediction=None)]),
        _envelope([_row(1, features={"x": 9_223_372_036_854_775_808})]),  # beyond int64
        _envelope([_row(1, features={"x": -9_223_372_036_854_775_809})]),  # serde: a float
        _envelope([_row(1, features={"x": 1e300})]),  # a float that could have been an int
        _envelope([_row(1)]).replace(b'"x": 1.5', b'"x": -0'),  # Python: int 0; serde: -0.0
        _envelope([_row(1, timestamp="2024-05-01T00:00:00+05:30:00")]),
        _envelope([_row(1, timestamp="2024-05-01T00:00:00")]),  # no zone
        _envelope([_row(1, timestamp="٢٠٢٤-05-01T00:00:00Z")]),  # digits, but not ASCII
        _envelope([_row(1)], model_version="1"),  # the rows' version is not the envelope's
        _envelope([_row(1)], schema_version=True),
        _envelope([_row(1)])[:-1] + b",}",
        _envelope([_row(1, segment={"k": 1})]),
        b'{"batch_id":"b","model":"m","predictions":[' + b'{"event_id":"e\\ud800","model":"m",'
        b'"timestamp":"2024-05-01T00:00:00Z","features":{},"prediction":1}]}',  # lone surrogate
    ],
)
def test_the_native_lane_leaves_the_unusual_to_python(raw: bytes) -> None:
    assert envelope_columns(raw) is None


def test_long_numeric_ids_in_strings_stay_native() -> None:
    raw = _envelope([_row(1, event_id="1234567890123456789012"), _row(2, features={"x": 1e-7})])
    native = assert_native_reads_as_python(raw)
    assert native is not None and native.event_ids[0] == "1234567890123456789012"


@pytest.mark.parametrize(
    "stamp",
    [
        "2024-05-01T00:00:00Z", "2024-05-01T00:00:00.5Z", "2024-05-01T00:00:00.000001Z",
        "2024-05-01T23:59:59.999999-23:59", "2024-02-29T12:00:00+01:00", "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59.123+00:00", "1969-12-31T23:59:59.999Z", "2000-02-29T00:00:00Z",
    ],
)  # fmt: skip
def test_times_match_the_python_reader(stamp: str) -> None:
    native = envelope_columns(_envelope([_row(1, timestamp=stamp)]))
    assert native is not None
    expected = bulk_times([stamp])
    assert expected is not None and native.times_us.tolist() == expected.tolist()


@pytest.mark.parametrize(
    "stamp",
    [
        "1900-02-29T00:00:00Z",
        "2024-13-01T00:00:00Z",
        "2024-05-01T24:00:00Z",
        "2024-05-01T00:60:00Z",
        "2024-05-01T00:00:60Z",
        "2024-05-01T00:00:00+24:00",
    ],
)
def test_impossible_times_are_left_to_python(stamp: str) -> None:
    assert envelope_columns(_envelope([_row(1, timestamp=stamp)])) is None


def test_floats_parse_to_the_same_doubles() -> None:
    rng = random.Random(7)
    texts = [repr(rng.uniform(-1e6, 1e6)) for _ in range(300)]
    texts += [f"{rng.random():.18f}" for _ in range(300)]  # more digits than a double holds
    texts += [f"{rng.random():.16f}e{rng.randint(-320, 17)}" for _ in range(300)]
    texts += ["0.0", "-0.0", "1e-320", "2.2250738585072011e-308", "9.1e18", "-9.1e18"]
    body = ",".join(
        f'{{"event_id":"e-{i}","model":"m","timestamp":"2024-05-01T00:00:00Z",'
        f'"features":{{"x":{text}}},"prediction":0.5}}'
        for i, text in enumerate(texts)
    )
    raw = b'{"batch_id":"b","model":"m","predictions":[' + body.encode() + b"]}"
    native = assert_native_reads_as_python(raw)
    assert native is not None
    x = native.features["x"]
    assert isinstance(x, NumericColumn)
    assert x.values.tolist() == [float(text) for text in texts]


_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(width=64),
    st.text(max_size=5),
    st.sampled_from(["", "x" * 1025, "é" * 300]),
)


ODD_FIELDS = ["prediction", "event_id", "segment", "schema_version", "model_version",
              "timestamp", "junk"]  # fmt: skip


@st.composite
def _odd_rows(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Mostly valid rows of one shape, with odd values and fields drawn in."""
    n = draw(st.integers(1, 6))
    names = draw(st.lists(st.sampled_from(["x", "y", "plan", "é"]), max_size=3, unique=True))
    rows = []
    for i in range(n):
        row: dict[str, Any] = _row(i, features={
            name: draw(st.one_of(st.floats(-1e9, 1e9), _SCALARS)) for name in names
        })  # fmt: skip
        if draw(st.booleans()):
            row["scores"] = {"a": draw(st.floats(0, 1)), "b": draw(st.floats(-0.5, 1.5))}
        if draw(st.integers(0, 9)) == 0:
            odd_field = draw(st.sampled_from(ODD_FIELDS))
            row[odd_field] = draw(_SCALARS)
        rows.append(row)
    return rows


def _byte_oddity(draw: st.DrawFn, raw: bytes) -> bytes:
    """Now and then: cut, a NaN, a duplicate key."""
    if draw(st.integers(0, 9)) != 0:
        return raw
    at = draw(st.integers(0, len(raw)))
    twice = raw.replace(b'"model": "m"', b'"model": "m", "model": "m"')
    return draw(st.sampled_from([raw[:at], raw.replace(b"0.5", b"NaN", 1), twice]))


@st.composite
def _envelopes(draw: st.DrawFn) -> bytes:
    """Mostly valid envelopes of one shape, with odd values, fields and bytes drawn in."""
    rows = draw(_odd_rows())
    raw = json.dumps({"batch_id": "b", "model": "m", "predictions": rows}).encode()
    return _byte_oddity(draw, raw)


@st.composite
def _event_runs(draw: st.DrawFn) -> list[bytes]:
    """Runs of single events of one or two models, with odd values, fields and bytes."""
    rows = draw(_odd_rows())
    for row in rows:
        row["model"] = draw(st.sampled_from(["m", "m", "n"]))
    return [_byte_oddity(draw, json.dumps(row).encode()) for row in rows]


@settings(max_examples=400, deadline=None)
@given(_envelopes())
def test_whatever_the_native_lane_vouches_for_pydantic_accepts_alike(raw: bytes) -> None:
    native = envelope_columns(raw)
    if native is None:
        return
    try:
        assert_native_reads_as_python(raw)
    except InvalidEvent as error:  # pragma: no cover - the failure this test exists for
        pytest.fail(f"native vouched for an invalid envelope: {error}")


def assert_native_events_read_as_python(raws: list[bytes]) -> list[PredictionColumns] | None:
    found = event_columns(list(raws))
    if found is None:
        return None
    events = [event for raw in raws for event in parse_prediction_payload(raw)]  # pydantic
    placed: list[int] = []
    for places, rows_read in found:
        native = rows_read.columns
        rows = [row for i in places.tolist() for row in (_rows_of(raws[i]) or [])]
        assert len(rows) == len(places), "native vouched for what the Python lanes refuse"
        uniform = UniformRows.check(rows)
        assert uniform is not None, "native vouched for rows the Python lanes would not columnise"
        python = uniform.columns(native.model, native.model_version,
                                 np.arange(len(rows), dtype=np.int64))  # fmt: skip
        assert _canonical(native) == _canonical(python)
        if len(set(python.event_ids)) == len(python):
            assert_entries_as_the_joiner_stores(rows_read, python)
        assert native.event_ids == [events[i].event_id for i in places.tolist()]
        assert {(e.model, e.model_version) for e in map(events.__getitem__, places.tolist())} == {
            (native.model, native.model_version)
        }
        placed += places.tolist()
    assert sorted(placed) == list(range(len(raws)))
    return [rows_read.columns for _, rows_read in found]


def test_single_events_of_two_models_read_as_the_python_lane_reads_them() -> None:
    raws = [json.dumps(_row(i, model=["m", "n"][i % 2], model_version=["1", None][i % 2],
                            features={"x": i / 3, "plan": ["a", "b"][i % 3 % 2], "k": i},
                            scores={"a": 0.25, "b": 0.75},
                            segment={"r": "eu"} if i % 4 else None)).encode()
            for i in range(40)]  # fmt: skip
    found = assert_native_events_read_as_python(raws)
    assert found is not None
    assert [(c.model, c.model_version, len(c)) for c in found] == [("m", "1", 20), ("n", None, 20)]


@pytest.mark.parametrize(
    "odd",
    [
        b'{"event_id": "e-9"}',  # invalid
        json.dumps(_row(9, features={"y": 1.0})).encode(),  # another shape for model m
        _envelope([_row(9)]),  # an envelope among single events
        json.dumps(_row(9, model="x" * 257)).encode(),  # a model name beyond its limit
        json.dumps(_row(9, model_version="")).encode(),
        json.dumps(_row(9)).encode() + b" " * (fields.MAX_EVENT_BYTES + 1),  # oversize
        b"[" + json.dumps(_row(9)).encode() + b"]",
    ],
)
def test_one_unusual_single_event_leaves_the_whole_run_to_python(odd: bytes) -> None:
    raws: list[bytes | None] = [json.dumps(_row(i)).encode() for i in range(5)]
    assert event_columns(raws) is not None
    assert event_columns([*raws[:2], odd, *raws[2:]]) is None


@settings(max_examples=300, deadline=None)
@given(_event_runs())
def test_whatever_the_native_lane_vouches_for_in_a_run_pydantic_accepts_alike(
    raws: list[bytes],
) -> None:
    try:
        assert_native_events_read_as_python(raws)
    except InvalidEvent as error:  # pragma: no cover - the failure this test exists for
        pytest.fail(f"native vouched for an invalid single event: {error}")


def test_envelopes_parsed_on_several_threads_read_as_one_by_one() -> None:
    values: list[bytes | None] = [
        _envelope([_row(i, features={"x": i / 7, "plan": ["a", "b"][i % 2]}) for i in range(k)])
        for k in range(1, 40)
    ]  # fmt: skip
    values[5] = _envelope([_row(1)])[:-2]  # cut
    values[9] = None  # a tombstone
    values[11] = json.dumps(_row(1)).encode()  # a single event
    values[17] = _envelope([_row(1, features={"x": 1.0}), _row(2, features={"y": 1.0})])
    together = envelopes_columns(values)
    alone = [None if v is None else envelope_columns(v) for v in values]
    assert [None if c is None else _canonical(c.columns) for c in together] == [
        None if c is None else _canonical(c) for c in alone
    ]
    assert [None if c is None else len(c.join_entries) for c in together] == [
        None if c is None else len(c) for c in alone
    ]
    assert sum(c is None for c in together) == 4


_ENTRIES = [
    b"[5]",
    b'[1700000000000000,"m",null,1,null,null]',
    b"[-7]",
    b'[-7,"m"]',
    b"[999999999999999999]",
]


@pytest.mark.parametrize("older_than", [None, 6, 1_700_000_000_000_001, -8])
def test_the_native_expiry_scan_reads_leading_times_as_python(older_than: int | None) -> None:
    assert NATIVE is not None
    items = [(f"e-{i}".encode(), entry) for i, entry in enumerate(_ENTRIES)]
    python = stubs_of(iter(items), older_than)  # not a list: the Python loop
    assert stubs_of(items, older_than) == python
    found = NATIVE.entry_times([entry for _, entry in items], older_than)
    assert found is not None and len(found[0]) == len(python)


@pytest.mark.parametrize("odd", [b"[7.0]", b"[ 5]", b"[+5]", b"[5 ,1]", b"[12345678901234567890]"])
def test_the_native_expiry_scan_leaves_other_layouts_to_python(odd: bytes) -> None:
    assert NATIVE is not None
    items = [(b"e-0", b"[5]"), (b"e-1", odd)]
    assert NATIVE.entry_times([entry for _, entry in items], None) is None
    assert stubs_of(items) == stubs_of(iter(items))


def test_the_native_expiry_scan_leaves_values_other_than_bytes_to_python() -> None:
    assert NATIVE is not None
    items: list[tuple[bytes, bytes]] = [(b"e-0", b"[5]"), (b"e-1", bytearray(b"[6,1]"))]  # type: ignore[list-item]
    assert NATIVE.entry_times([entry for _, entry in items], None) is None
    assert stubs_of(items) == {"e-0": (5,), "e-1": (6, 0)}


_JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats()  # NaN and infinities included: json.dumps writes them as words
    | st.text(),
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None)
@given(_JSON_VALUES)
def test_native_json_writes_the_bytes_json_dumps_writes(value: Any) -> None:
    assert NATIVE is not None
    assert NATIVE.dumps_compact(value) == json.dumps(value, separators=(",", ":")).encode()


def test_native_json_writes_floats_as_python_repr_does() -> None:
    assert NATIVE is not None
    rng = np.random.default_rng(7)
    # Every bit pattern (all exponents; ties of the last digit included), then decimals.
    patterns = rng.integers(0, 2**64, 20_000, dtype=np.uint64).view(np.float64).tolist()
    places = rng.integers(0, 9, 20_000).tolist()
    decimals = [
        round(x, p) for x, p in zip(rng.uniform(-1e6, 1e6, 20_000).tolist(), places, strict=True)
    ]
    floats = patterns + decimals
    assert NATIVE.dumps_compact(floats) == json.dumps(floats, separators=(",", ":")).encode()


@pytest.mark.parametrize(
    "odd",
    [{1: "int key"}, 2**64, "\udcff", [np.float64(1.5)], -(2**70)],
)
def test_native_json_leaves_to_json_dumps_what_it_does_not_write_exactly(odd: Any) -> None:
    assert NATIVE is not None
    assert NATIVE.dumps_compact(odd) is None
    from streams.agent_events import dumps_compact

    assert dumps_compact(odd) == json.dumps(odd, separators=(",", ":")).encode()


def test_native_json_leaves_deep_nesting_to_json_dumps() -> None:
    assert NATIVE is not None
    deep: list[Any] = []
    for _ in range(100):
        deep = [deep]
    assert NATIVE.dumps_compact(deep) is None


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_native_base64_writes_and_reads_what_the_standard_library_does(data: bytes) -> None:
    assert NATIVE is not None
    text = base64.b64encode(data).decode("ascii")
    assert NATIVE.b64encode(data) == text
    assert NATIVE.b64decode(text) == data


def _strict_a2b(text: str) -> bytes | None:
    try:
        return binascii.a2b_base64(text, strict_mode=True)
    except ValueError:  # binascii.Error is one
        return None


# Text near valid base64: the alphabet, padding in any place, a few characters strict mode
# refuses (whitespace, URL-safe letters, non-ASCII).
_NEAR_BASE64 = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=== \n-_é",
    max_size=24,
)


@settings(max_examples=2000, deadline=None)
@given(_NEAR_BASE64)
def test_native_base64_reads_only_what_it_reads_as_binascii_does(text: str) -> None:
    assert NATIVE is not None
    decoded, strict = NATIVE.b64decode(text), _strict_a2b(text)
    if decoded is not None:
        assert decoded == strict
    else:  # left to binascii: only text b64encode does not write
        assert strict is None or base64.b64encode(strict).decode() != text


@pytest.mark.parametrize(
    ("text", "native"),
    [("Zg==", b"f"), ("", b""), ("Zh==", None), ("Zm9=", None), ("====", None),
     ("Zg==Zg==", None), ("\udcff===", None), ("Zg", None), ("Zm9v\n", None), (b"Zg==", None)],
)  # fmt: skip
def test_native_base64_leaves_the_unusual_to_binascii(text: Any, native: bytes | None) -> None:
    assert NATIVE is not None
    assert NATIVE.b64decode(text) == native
    from detectors.reservoir import unpack_floats

    try:
        expected: Any = np.frombuffer(binascii.a2b_base64(text, strict_mode=True), "<f8").tolist()
    except ValueError:
        expected = ValueError
    try:
        got: Any = unpack_floats(text).tolist()
    except ValueError:
        got = ValueError
    assert got == expected


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.binary(max_size=40), st.none() | st.binary(max_size=80), max_size=60))
def test_native_journal_frames_the_bytes_python_frames(changes: dict[bytes, bytes | None]) -> None:
    from streams import journal_table

    native = journal_table.encode_journal(changes)
    saved = journal_table._NATIVE_ENCODE
    assert saved is not None
    try:
        journal_table._NATIVE_ENCODE = None  # type: ignore[misc]
        assert native == journal_table.encode_journal(changes)
    finally:
        journal_table._NATIVE_ENCODE = saved  # type: ignore[misc]
    assert journal_table.decode_journal(native) == changes


@pytest.mark.parametrize("odd", [{"text": b"v"}, {b"k": "text"}, {b"k": bytearray(b"v")}])
def test_native_journal_leaves_other_types_to_python(odd: Any) -> None:
    assert NATIVE is not None
    assert NATIVE.encode_journal(odd, b"DLJ\x02") is None
