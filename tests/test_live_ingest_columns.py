"""Columnar live ingest: `split_columns` accepts and rejects what `split_messages` does (all
of its lanes: the native one, `UniformRows` and the row-by-row bulk checks), and
`fold_columns` gives the deltas, join state and metrics of ``MonitorKit.fold_partition``.

Every test runs twice: with the native lane (`streams.ingest_native`) where it is built, and
without it, so the Python lanes see the SDK's envelopes too."""

from __future__ import annotations

import json
import math
import os
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from detectors.columns import ABSENT, NumericColumn
from detectors.join import LabelJoiner, epoch_us
from schemas.events import (
    MAX_BATCH_BYTES,
    MAX_BATCH_PREDICTIONS,
    MAX_EVENT_BYTES,
    DeadLetter,
    PredictionEvent,
)
from schemas.monitor_config import MonitorConfig, parse_monitor_config
from streams import ingest_columns, ingest_native
from streams.agents_monitor import DeltaOut, MonitorKit
from streams.fold_columns import fold_columns
from streams.ingest_columns import SUB_BATCH_ROWS, ColumnSplit, split_columns
from streams.metrics import WorkerMetrics
from streams.synthetic import generate_stream
from streams.validation import RawMessage, SplitMessages, split_messages

NOW = datetime(2024, 5, 1, tzinfo=UTC)
CONFIGS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "segments+declared+ignore": {"defaults": {
        "segments": {"keys": ["region"], "max_values": 2},
        "features": {"zone": "categorical"}, "ignore": ["card_type"],
    }},
    "time windows": {"defaults": {"window": {"type": "time", "time_seconds": 20}}},
}  # fmt: skip


@pytest.fixture(autouse=True, params=["native", "python"])
def lane(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "python":
        monkeypatch.setattr(ingest_native, "NATIVE", None)
    elif ingest_native.NATIVE is None:
        reason = f"native lane: {ingest_native.native_status()}"
        if os.environ.get("CI"):  # CI builds it: its absence is a failure, never a skip
            pytest.fail(reason)
        pytest.skip(reason)
    return str(request.param)


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


# -- canonical forms of both splits ---------------------------------------------------------------


def _value(value: Any) -> Any:
    """A feature value as the fold reads it: an int and its float are the same number."""
    if type(value) in (int, float):
        return ("number", float(value))
    return (type(value).__name__, value)


def _rows_of_events(split: SplitMessages) -> list[Any]:
    return [
        (e.event_id, e.model, e.model_version, epoch_us(e.timestamp),
         {k: _value(v) for k, v in e.features.items()},
         (type(e.prediction).__name__, e.prediction),
         None if not e.scores else list(e.scores.items()), e.segment)
        for e in split.predictions
    ]  # fmt: skip


def _rows_of_columns(split: ColumnSplit) -> list[Any]:
    rows: list[tuple[int, Any]] = []
    for cols, positions in zip(split.predictions, split.positions, strict=True):
        features: dict[str, list[Any]] = {}
        for name, column in cols.features.items():
            features[name] = column.python() if isinstance(column, NumericColumn) else column
        predictions, scores = cols.prediction_list(), cols.score_dicts()
        for i, position in enumerate(positions.tolist()):
            rows.append((position, (
                cols.event_ids[i], cols.model, cols.model_version, int(cols.times_us[i]),
                {k: _value(v[i]) for k, v in features.items() if v[i] is not ABSENT},
                (type(predictions[i]).__name__, predictions[i]),
                None if not scores[i] else list(scores[i].items()),  # type: ignore[union-attr]
                None if cols.segments is None else cols.segments[i],
            )))  # fmt: skip
    rows.sort(key=lambda item: item[0])
    assert [position for position, _ in rows] == list(range(len(rows)))
    return [row for _, row in rows]


def _source_rank(letter: DeadLetter) -> int:
    return 0 if letter.source_topic == "p" else 1


def assert_same_split(messages: list[RawMessage]) -> tuple[SplitMessages, ColumnSplit]:
    expected = split_messages(messages, now=NOW)
    got = split_columns(messages, now=NOW)
    # Consumption order per source topic (Kafka orders nothing across topics either).
    assert got.dead_letters == sorted(expected.dead_letters, key=_source_rank)
    assert got.labels == expected.labels
    assert (got.prediction_messages, got.label_messages) == (
        expected.prediction_messages,
        expected.label_messages,
    )
    assert got.prediction_count == len(expected.predictions)
    assert _rows_of_columns(got) == _rows_of_events(expected)
    return expected, got


# -- malformed variants ---------------------------------------------------------------------------


def _valid_row(rng: np.random.Generator, i: int, model: str = "m", version: Any = "1") -> Any:
    row: dict[str, Any] = {
        "event_id": f"e-{i}", "model": model, "timestamp": f"2024-05-01T00:{i // 60 % 60:02d}:"
        f"{i % 60:02d}Z", "features": {"x": round(float(rng.normal()), 4), "n": i % 5,
        "plan": ["a", "b"][i % 2], "ok": bool(i % 3)}, "prediction": round(float(rng.random()), 4),
        "scores": {"0": 0.25, "1": 0.75}, "segment": {"region": "eu"},
    }  # fmt: skip
    if version is not None:
        row["model_version"] = version
    return row


LONG = "x" * 257
VARIANTS: dict[str, tuple[Any, ...]] = {
    "event_id": ("", LONG, 7, None, True, ["a"], "ok"),
    "model": ("", LONG, 7, None, True, ["a"], "ok"),
    "model_version": ("", LONG, 7, None, True, ["a"], "ok"),
    "schema_version": (1, 2, "1", True, 1.0, None),
    "timestamp": (
        1714521600, "2024-05-01", "2024-05-01T00:00:00", "2024-02-30T00:00:00Z",
        "2024-05-01T24:00:00Z", "2024-05-01t00:00:00z", "2024-05-01T00:00:00.1234567Z",
        "2024-05-01T00:00:00+05:30", "2024-05-01T00:00:00-00:00", "2024-05-01 00:00:00Z",
        "0000-01-01T00:00:00Z", "2024-05-01T00:00:00+24:00", None, "",
    ),
    "features": (
        None, [], "x", {}, {"": 1}, {LONG: 1}, {"y": [1]}, {"y": {}}, {"y": "s" * 1025},
        {"y": "s" * 1024}, {"y": 2**70}, {"y": 1e308}, {f"f{j}": j for j in range(1001)},
        {"y": None, "z": True},
    ),
    "prediction": (None, [], {}, "s" * 1025, "cat", True, 2**70, -0.0, 0),
    "scores": (
        None, {}, {"a": 1.5}, {"a": 1}, {"a": -0.0}, {"": 0.5}, [0.5], {"1": 0.75, "0": 0.25},
        {"1": 0.5}, {f"c{j}": 0.0 for j in range(1001)}, {LONG: 0.5}, {"a": True},
    ),
    "segment": (
        None, {}, {"k": ""}, {"": "v"}, {"k": "v" * 129}, {"k": 1},
        {f"k{j}": "v" for j in range(17)}, {"k" * 128: "v" * 128}, [],
    ),
    "unknown": (1,),
    "label": (1,),
}  # fmt: skip
ROW_MUTATIONS = [(key, value) for key, values in VARIANTS.items() for value in values]
RAW_TOKENS = [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"123456789012345678901234567890"]
ENVELOPE_MUTATIONS: list[tuple[str, Any]] = [
    ("batch_id", v) for v in ("", LONG, 3, None)
] + [("schema_version", v) for v in (2, True, "1")] + [
    ("model", "other"), ("model_version", "9"), ("model_version", None), ("unknown", 1),
    ("predictions", []), ("predictions", {}), ("predictions", "x"), ("predictions", None),
]  # fmt: skip


def _mutated_row(rng: np.random.Generator, i: int) -> Any:
    row = _valid_row(rng, i)
    for _ in range(int(rng.integers(0, 3))):
        key, value = ROW_MUTATIONS[int(rng.integers(len(ROW_MUTATIONS)))]
        if rng.random() < 0.15 and key in row:
            del row[key]
        else:
            row[key] = value
    return row


def _payload(rng: np.random.Generator, i: int) -> bytes:
    kind = rng.random()
    if kind < 0.4:  # a single event
        row = _mutated_row(rng, i) if rng.random() < 0.6 else _valid_row(rng, i)
        return _raw_tokens(rng, _dumps(row))
    bad = 0.0 if rng.random() < 0.5 else 0.1  # rows mutated
    rows = [
        _mutated_row(rng, i * 100 + j) if rng.random() < bad else _valid_row(rng, i * 100 + j)
        for j in range(int(rng.integers(1, 40)))
    ]
    if rng.random() < 0.15:  # rows of one shape, one odd value in every row
        key, value = ROW_MUTATIONS[int(rng.integers(len(ROW_MUTATIONS)))]
        rows = [{**row, key: value} for row in rows]
    if rng.random() < 0.05:
        rows.append(["event_id", "model", "timestamp", "features", "prediction"])
    elif rng.random() < 0.05:
        rows.append(None)
    envelope: dict[str, Any] = {"batch_id": f"b-{i}", "model": "m", "model_version": "1",
                                "predictions": rows}  # fmt: skip
    if rng.random() < 0.2:
        key, value = ENVELOPE_MUTATIONS[int(rng.integers(len(ENVELOPE_MUTATIONS)))]
        envelope[key] = value
    if rng.random() < 0.1:
        del envelope[["batch_id", "model", "model_version"][int(rng.integers(3))]]
    return _raw_tokens(rng, _dumps(envelope))


def _raw_tokens(rng: np.random.Generator, raw: bytes) -> bytes:
    """Now and then a JSON-level oddity: a non-finite number, a huge int, cut-off JSON."""
    draw = rng.random()
    if draw < 0.05:
        token = RAW_TOKENS[int(rng.integers(len(RAW_TOKENS)))]
        return raw.replace(b'"prediction":', b'"prediction":' + token + b',"_p":', 1)
    if draw < 0.1:
        return raw.replace(b'"x":', b'"x":' + RAW_TOKENS[int(rng.integers(4))] + b',"_x":', 1)
    if draw < 0.12:
        return raw[: int(rng.integers(len(raw)))]
    if draw < 0.14:
        return raw.replace(b'"event_id":', b'"event_id":"dup","event_id":', 1)
    return raw


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_split_columns_accepts_and_rejects_what_pydantic_does(seed: int) -> None:
    rng = np.random.default_rng(seed)
    messages = [RawMessage("predictions", _payload(rng, i), "p", 0, i) for i in range(400)]
    expected, _ = assert_same_split(messages)
    assert 40 < len(expected.dead_letters) < 360  # both outcomes were exercised
    assert len(expected.predictions) > 500
    for message in messages[:150]:  # alone too: a batch's other rows must not matter
        assert_same_split([message])


@pytest.mark.parametrize("sub_batch_rows", [1, 2, 50])
def test_a_batch_split_in_parts_gives_what_it_gives_whole(
    sub_batch_rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    messages, _ = _varied_stream(4)
    whole = split_columns(messages, now=NOW)
    monkeypatch.setattr(ingest_columns, "SUB_BATCH_ROWS", sub_batch_rows)
    _, parts = assert_same_split(messages)
    assert len(parts.predictions) > len(whole.predictions)  # it did cut the batch
    assert _rows_of_columns(parts) == _rows_of_columns(whole)


def _event_json(i: int, **extra: Any) -> dict[str, Any]:
    return {"event_id": f"e-{i}", "model": "m", "timestamp": "2024-05-01T00:00:00Z",
            "features": {"x": 1.0}, "prediction": 0.5, **extra}  # fmt: skip


def test_size_limits_and_odd_payloads_match() -> None:
    pad = b" " * MAX_EVENT_BYTES
    big_envelope = _dumps({"batch_id": "b", "model": "m", "predictions": [_event_json(1)]})
    rows = [_event_json(i) for i in range(MAX_BATCH_PREDICTIONS + 1)]
    row = _event_json(4, model_version=None)
    odd = [None, b"", b"[]", b"1", b"null", b'"s"', b"\xff\xfe", b"{" + pad + b"}"]
    payloads = [
        *odd,
        _dumps(_event_json(1))[:-1] + pad + b"}",  # a valid single event, but oversize
        big_envelope[:-1] + pad + b"}",  # an envelope may be bigger than one event
        big_envelope[:-1] + b" " * MAX_BATCH_BYTES + b"}",  # but not bigger than this
        _dumps({"batch_id": "b", "model": "m", "predictions": rows}),
        _dumps({"batch_id": "b", "model": "m", "predictions": rows[:-1]}),
        _dumps({**_event_json(2), "predictions": [_event_json(3)]}),
        _dumps({"batch_id": "b", "model": "m", "model_version": None, "predictions": [row]}),
        _dumps({"batch_id": "b", "model": "m", "predictions": [_event_json(5, model="n")]}),
    ]
    messages = [RawMessage("predictions", p, "p", 3, i) for i, p in enumerate(payloads)]
    messages.append(RawMessage("labels", b'{"event_id": "e-1"}', "l", 3, 99))
    expected, _ = assert_same_split(messages)
    assert [d.error_class for d in expected.dead_letters].count("oversize") == 3
    assert len(expected.predictions) == MAX_BATCH_PREDICTIONS + 2


def test_an_envelope_with_one_bad_row_is_rejected_whole() -> None:
    rows = [_event_json(i) for i in range(5)]
    rows[3]["prediction"] = None
    raw = _dumps({"batch_id": "b", "model": "m", "predictions": rows})
    split = split_columns([RawMessage("predictions", raw, "p", 0, 7)], now=NOW)
    assert split.predictions == [] and split.prediction_messages == 1
    [letter] = split.dead_letters
    assert letter.error_class == "validation" and "predictions[3].prediction" in (
        letter.error_message
    )


# -- runs -----------------------------------------------------------------------------------------


def test_one_columns_per_model_version_rows_in_order_with_their_positions() -> None:
    def message(i: int, model: str) -> RawMessage:
        return RawMessage("predictions", _dumps(_event_json(i, model=model)), "p", 0, i)

    messages = [message(0, "a"), message(1, "a"), message(2, "b"), message(3, "a")]
    messages.insert(2, RawMessage("labels", b"{", "l", 0, 10))  # Faust interleaves the topics
    messages.insert(1, RawMessage("predictions", b"[", "p", 0, 11))
    split = split_columns(messages, now=NOW)
    assert [(c.model, c.event_ids) for c in split.predictions] == [
        ("a", ["e-0", "e-1", "e-3"]), ("b", ["e-2"]),
    ]  # fmt: skip
    assert [p.tolist() for p in split.positions] == [[0, 1, 3], [2]]
    assert [d.offset for d in split.dead_letters] == [11, 10]  # the predictions' first


def test_a_run_of_single_events_takes_the_native_lane_whole_or_not_at_all(lane: str) -> None:
    rng = np.random.default_rng(3)
    valid = [RawMessage("predictions", _dumps(_valid_row(rng, i, model=f"m{i % 3}")), "p", 0, i)
             for i in range(SUB_BATCH_ROWS + 10)]  # fmt: skip
    split = split_columns(valid, now=NOW)
    if lane == "native":  # per model version, in each run of SUB_BATCH_ROWS messages
        assert [c.model for c in split.predictions] == ["m0", "m1", "m2", "m1", "m2", "m0"]
    assert split.prediction_count == len(valid) and split.dead_letters == []
    odd = [*valid[:5], RawMessage("predictions", b'{"event_id": 1}', "p", 0, 99), *valid[5:9]]
    split = split_columns(odd, now=NOW)  # one invalid message: Python decides the run
    assert [d.offset for d in split.dead_letters] == [99]
    assert split.prediction_count == 9 and split.prediction_messages == 10
    assert_same_split(odd)


def test_scores_come_back_in_each_rows_class_order() -> None:
    orders = [{"0": 0.25, "1": 0.75}, None, {"1": 0.5, "0": 0.5}, {"1": 0.5, "0": 0.5}, {},
              {"0": 0.5, "1": 0.5}]  # fmt: skip
    rows = [_event_json(i, scores=s) for i, s in enumerate(orders)]
    raw = _dumps({"batch_id": "b", "model": "m", "predictions": rows})
    split = split_columns([RawMessage("predictions", raw, "p", 0, 0)], now=NOW)
    assert [p.tolist() for p in split.positions] == [[0, 1, 5], [2, 3, 4]]
    got = [s for c in split.predictions for s in c.score_dicts()]
    classes = [None if s is None else "".join(s) for s in got]
    assert classes == ["01", None, "01", "10", "10", None]
    # Rows of one shape but for the order of their classes (no null scores).
    rows = [_event_json(i, scores=dict(sorted({"0": 0.5, "1": 0.5}.items(), reverse=i == 1)))
            for i in range(3)]  # fmt: skip
    raw = _dumps({"batch_id": "b", "model": "m", "predictions": rows})
    split = split_columns([RawMessage("predictions", raw, "p", 0, 0)], now=NOW)
    got = [s for c in split.predictions for s in c.score_dicts()]
    assert ["".join(s or "") for s in got] == ["01", "01", "10"]
    assert [p.tolist() for p in split.positions] == [[0, 2], [1]]


# -- the fold -------------------------------------------------------------------------------------


def _varied_stream(seed: int, *, uniform: bool = False) -> tuple[list[RawMessage], int]:
    """Three model versions cut into envelopes of 1-600 and single events, interleaved by event
    time, with labels (some before their prediction), segments, repeated event ids, invalid
    messages and (unless ``uniform``: rows of one shape, as an SDK sends) odd feature shapes."""
    rng = np.random.default_rng(seed)
    timed: list[tuple[float, str, bytes]] = []
    total = 0
    for k, (model, version, n) in enumerate([("fraud", "1", 1500), ("fraud", "2", 700),
                                             ("churn", None, 900)]):  # fmt: skip
        predictions, label_rows = generate_stream(
            seed=seed * 10 + k, n_events=n, model=model, model_version=version, features=8,
            label_fraction=0.6, label_delay_seconds=float(rng.choice([5.0, 60.0, 600.0])),
            null_rate=0.05, start=datetime(2024, 1, 1, tzinfo=UTC) + timedelta(seconds=k),
        )  # fmt: skip
        for i, row in enumerate(predictions):
            row["event_id"] = row["event_id"].replace(model, f"{model}-{version}", 1)
            _vary(rng, row, i, uniform)
        for label in label_rows:
            label["event_id"] = label["event_id"].replace(model, f"{model}-{version}", 1)
            early = float(rng.uniform(-300.0, 30.0))  # labels may overtake their prediction
            timed.append((_seconds(label["timestamp"]) + early, "labels", _dumps(label)))
        timed += [(at, "predictions", raw) for at, raw in _cut(rng, predictions, model, version)]
        total += n
    timed.sort(key=lambda item: item[0])
    values: list[tuple[str, bytes]] = []
    for _, source, raw in timed:
        values.append((source, raw))
        if rng.random() < 0.01:
            values.append(("predictions", b'{"event_id": "bad"'))
        if rng.random() < 0.005:
            values.append(("labels", _dumps({"event_id": "x", "model": "m", "label": 1})))
    messages = [RawMessage(source, raw, source[0], 0, i)  # type: ignore[arg-type]
                for i, (source, raw) in enumerate(values)]  # fmt: skip
    return messages, total


def _seconds(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp).timestamp()


def _vary(rng: np.random.Generator, row: dict[str, Any], i: int, uniform: bool) -> None:
    features = row["features"]
    features["zone"] = int(rng.integers(3))
    if uniform:
        row["segment"] = {"region": str(rng.choice(["eu", "us"]))} if i % 3 else None
        return
    if rng.random() < 0.05:
        del features["amount"]
    if rng.random() < 0.03:
        features["account_age_days"] = "unknown"
    if rng.random() < 0.02:
        features["rare"] = bool(rng.random() < 0.5)
    if rng.random() < 0.8:
        row["segment"] = {"region": str(rng.choice(["eu", "us", "apac"]))}
    if i % 17 == 0:
        row["scores"] = None
    elif i % 29 == 0:
        row["scores"] = dict(reversed(row["scores"].items()))
    if i % 13 == 0:
        row["prediction"] = round(float(rng.random()), 6)
    if i % 97 == 5:  # a prediction sent twice, or an event_id another model version has too
        row["event_id"] = f"fraud-1-{i - (i % 2):08d}"


def _cut(
    rng: np.random.Generator, rows: list[Any], model: str, version: Any
) -> list[tuple[float, bytes]]:
    """Messages of ``rows`` (single events and envelopes), each at its first row's time."""
    out, start = [], 0
    while start < len(rows):
        size = 1 if rng.random() < 0.5 else int(rng.choice([3, 20, 50, 250, 600]))
        group = rows[start : start + size]
        raw = _dumps(group[0]) if size == 1 else _dumps({
            "batch_id": f"{model}-{start}", "model": model, "model_version": version,
            "predictions": group,
        })  # fmt: skip
        out.append((_seconds(group[0]["timestamp"]), raw))
        start += size
    return out


def _metric_values(metrics: WorkerMetrics) -> dict[str, float | None]:
    registry = metrics.registry
    out: dict[str, float | None] = {
        outcome: registry.get_sample_value("driftline_label_join_total", {"outcome": outcome})
        for outcome in ("hit", "early", "duplicate", "orphan", "expired")
    }
    for name in ("sum", "count"):
        out[name] = registry.get_sample_value(f"driftline_label_latency_seconds_{name}")
    return out


def _deltas_json(deltas: list[DeltaOut]) -> list[str]:
    # Sorted keys: where events lack features, the event path lists a slice's type counts in
    # row order, the column path by name (detectors.accumulate_columns); the content is equal.
    return [json.dumps([d.model, d.start, d.state], sort_keys=True) for d in deltas]


@pytest.mark.parametrize("config", sorted(CONFIGS))
@pytest.mark.parametrize(
    ("seed", "delta_events", "uniform", "sub_batch_rows"),
    [(0, 250, False, SUB_BATCH_ROWS), (1, 97, False, 37), (2, 500, True, SUB_BATCH_ROWS),
     (3, 250, True, 3)],
)  # fmt: skip
def test_fold_columns_gives_the_deltas_of_fold_partition(
    config: str,
    seed: int,
    delta_events: int,
    uniform: bool,
    sub_batch_rows: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Small sub-batches: a batch's rows are checked and grouped in many parts, whose columns
    # and positions must still add up to the whole batch's.
    monkeypatch.setattr(ingest_columns, "SUB_BATCH_ROWS", sub_batch_rows)
    kit = MonitorKit(parse_monitor_config(CONFIGS[config]), delta_events=delta_events)
    messages, total = _varied_stream(seed, uniform=uniform)
    tables: list[tuple[dict[str, Any], dict[str, Any]]] = [({}, {}), ({}, {})]
    metrics = [WorkerMetrics(registry=CollectorRegistry()) for _ in range(2)]
    rng = np.random.default_rng(seed)
    start, deltas, folded = 0, 0, 0
    while start < len(messages):  # worker batches of varying size; the join state carries over
        batch = messages[start : start + int(rng.integers(1, 400))]
        start += len(batch)
        expected_split, got_split = assert_same_split(batch)
        (pending, early), (pending2, early2) = tables
        expected = kit.fold_partition(
            pending, early, expected_split.predictions, expected_split.labels, metrics[0],
            labels_behind=start % 2 == 0,
        )  # fmt: skip
        got = fold_columns(
            kit, pending2, early2, got_split.predictions, got_split.labels, metrics[1],
            labels_behind=start % 2 == 0, positions=got_split.positions,
        )  # fmt: skip
        assert _deltas_json(got) == _deltas_json(expected)
        assert pending2 == pending and early2 == early
        deltas += len(expected)
        folded += len(expected_split.predictions)
    assert _metric_values(metrics[1]) == _metric_values(metrics[0])
    hits = _metric_values(metrics[0])["hit"]
    assert folded == total and deltas > total // delta_events and hits is not None and hits > 500


def test_fold_columns_hands_the_joiner_to_expiry_before_counting() -> None:
    kit = MonitorKit(MonitorConfig(), delta_events=250)
    rows = [_event_json(i) for i in range(3)]
    rows[2]["timestamp"] = "2024-05-01T00:00:09Z"
    label = {"event_id": "gone", "model": "m", "timestamp": "2024-05-01T00:00:05Z", "label": 1}
    messages = [RawMessage("predictions", _dumps(r), "p", 0, i) for i, r in enumerate(rows)]
    messages.append(RawMessage("labels", _dumps(label), "l", 0, 5))
    split = split_columns(messages, now=NOW)
    seen: list[datetime] = []

    def expire(joiner: LabelJoiner, newest: datetime) -> None:
        seen.append(newest)
        far = LabelJoiner(joiner.pending, joiner.early, ttl_seconds=1.0)
        far.expire(newest + timedelta(days=1))
        joiner.stats.orphans += far.stats.orphans
        joiner.stats.unlabelled += far.stats.unlabelled

    metrics = WorkerMetrics(registry=CollectorRegistry())
    pending: dict[str, Any] = {}
    early: dict[str, Any] = {}
    fold_columns(
        kit, pending, early, split.predictions, split.labels, metrics, labels_behind=False,
        positions=split.positions, on_joined=expire,
    )  # fmt: skip
    assert seen == [datetime(2024, 5, 1, 0, 0, 9, tzinfo=UTC)]
    assert pending == {} and early == {}
    values = _metric_values(metrics)
    assert (values["orphan"], values["expired"], values["early"]) == (1.0, 3.0, 1.0)


def test_fold_columns_of_nothing_publishes_nothing() -> None:
    kit = MonitorKit(MonitorConfig())
    called: list[Any] = []
    deltas = fold_columns(
        kit, {}, {}, [], [], WorkerMetrics(registry=CollectorRegistry()), labels_behind=False,
        on_joined=lambda joiner, newest: called.append(newest),
    )  # fmt: skip
    assert deltas == [] and called == []


def test_runs_of_one_version_fold_as_one() -> None:
    """Interleaved runs of single events of two models: each chunk folds a model's runs together,
    mixing numeric and list representations of one feature (an independent check of the
    delta's numbers: numpy over the chunk's values)."""
    events: list[bytes] = []
    values: dict[str, list[float]] = {"a": [], "b": []}
    for i in range(40):
        model = "ab"[i % 2]
        x: Any = float(i) if i % 5 else ("text" if model == "a" else i)
        if type(x) is not str:
            values[model].append(float(x))
        events.append(_dumps(_event_json(i, model=model, features={"x": x})))
    messages = [RawMessage("predictions", raw, "p", 0, i) for i, raw in enumerate(events)]
    runs = [split_columns([message], now=NOW).predictions[0] for message in messages]
    kit = MonitorKit(MonitorConfig(), delta_events=40)
    deltas = fold_columns(  # no positions: consecutive runs
        kit, {}, {}, runs, [], WorkerMetrics(registry=CollectorRegistry()), labels_behind=False
    )
    assert [d.model for d in deltas] == ["a", "b"]
    for delta in deltas:
        numeric = delta.state["slices"][""]["numeric"]["x"]
        assert numeric["count"] == len(values[delta.model])
        assert math.isclose(numeric["mean"], float(np.mean(values[delta.model])))
    expected = kit.fold_partition(
        {}, {}, split_messages(messages, now=NOW).predictions, [],
        WorkerMetrics(registry=CollectorRegistry()),
    )  # fmt: skip
    assert _deltas_json(deltas) == _deltas_json(expected)


def test_a_repeated_event_id_pends_as_it_came_first() -> None:
    order = [("a", "e-0"), ("b", "e-1"), ("b", "dup"), ("a", "dup"), ("a", "e-2")]
    messages = [
        RawMessage("predictions", _dumps({**_event_json(i, model=model), "event_id": key}), "p",
                   0, i)
        for i, (model, key) in enumerate(order)
    ]  # fmt: skip
    kit = MonitorKit(MonitorConfig())
    split = split_columns(messages, now=NOW)
    pending: dict[str, Any] = {}
    fold_columns(kit, pending, {}, split.predictions, [], WorkerMetrics(CollectorRegistry()),
                 labels_behind=False, positions=split.positions)  # fmt: skip
    expected: dict[str, Any] = {}
    kit.fold_partition(expected, {}, split_messages(messages, now=NOW).predictions, [],
                       WorkerMetrics(CollectorRegistry()))  # fmt: skip
    assert pending == expected and pending["dup"][1] == "b"


def test_positions_must_number_the_rows() -> None:
    split = split_columns([RawMessage("predictions", _dumps(_event_json(i)), "p", 0, i)
                           for i in range(3)], now=NOW)  # fmt: skip
    kit, metrics = MonitorKit(MonitorConfig()), WorkerMetrics(registry=CollectorRegistry())
    for bad in ([np.array([0, 2, 1])], [np.array([0, 1, 5])], [np.array([0, 1])], []):
        with pytest.raises(ValueError, match="positions"):
            fold_columns(kit, {}, {}, split.predictions, [], metrics, labels_behind=False,
                         positions=bad)  # fmt: skip


def test_columns_of_a_split_are_valid_prediction_columns() -> None:
    messages, _ = _varied_stream(5)
    split = split_columns(messages[:200], now=NOW)
    for cols in split.predictions:  # every row rebuilds as a valid v1 event
        events: list[PredictionEvent] = [cols.event(i) for i in range(len(cols))]
        assert [e.event_id for e in events] == cols.event_ids


def test_valid_predictions_skip_pydantic(monkeypatch: pytest.MonkeyPatch) -> None:
    import streams.ingest_columns as module

    slow: list[RawMessage] = []

    def recording(messages: list[RawMessage], *, now: datetime) -> SplitMessages:
        slow.extend(messages)
        return split_messages(messages, now=now)

    monkeypatch.setattr(module, "split_messages", recording)
    messages, _ = _varied_stream(3)
    split = split_columns(messages, now=NOW)
    assert split.prediction_count > 3000
    odd = [m for m in slow if m.source == "predictions"]
    assert len(odd) == sum(d.source_topic == "p" for d in split.dead_letters) > 0
    assert all(m.value is not None and b"bad" in m.value for m in odd)
