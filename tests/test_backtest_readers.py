"""streams.readers: JSONL/CSV/Parquet round trips, bad rows with line numbers, event-time merge."""

from __future__ import annotations

import gzip
import io
import itertools
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from detectors.join import epoch_us
from schemas.events import LabelEvent, PredictionEvent
from streams.readers import (
    InputFileError,
    MergeStats,
    detect_format,
    merge_by_event_time,
    read_events,
    read_labels,
    read_predictions,
)
from streams.readers_columns import (
    ColumnReader,
    _event_row,
    bulk_ok,
    bulk_times,
    merge_rows_by_event_time,
)
from streams.synthetic import FORMATS, StreamFormat, generate_stream, write_stream

T0 = datetime(2024, 5, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def stream() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    return generate_stream(seed=3, n_events=600, features=6, label_fraction=0.7, null_rate=0.05)


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_reads_back_the_events_written(
    tmp_path: Path, fmt: str, stream: tuple[list[dict[str, Any]], list[dict[str, Any]]]
) -> None:
    predictions, labels = stream
    pred_path, label_path = write_stream(tmp_path, predictions, labels, fmt)  # type: ignore[arg-type]
    assert label_path is not None
    reader = read_predictions(pred_path, chunk_rows=128)
    chunks = list(reader)
    assert [len(c) for c in chunks] == [128, 128, 128, 128, 88]
    assert [e for c in chunks for e in c] == [
        PredictionEvent.model_validate(p) for p in predictions
    ]
    got_labels = [e for c in read_labels(label_path, chunk_rows=100) for e in c]
    assert got_labels == [LabelEvent.model_validate(label) for label in labels]
    assert (reader.valid, reader.invalid, reader.errors) == (600, 0, [])


def test_json_array_and_ndjson_suffixes(tmp_path: Path) -> None:
    predictions, _ = generate_stream(seed=1, n_events=5, features=3)
    (tmp_path / "a.json").write_text(json.dumps(predictions, indent=1))
    (tmp_path / "b.ndjson").write_text("\n".join(json.dumps(p) for p in predictions))
    expected = [PredictionEvent.model_validate(p) for p in predictions]
    for name in ("a.json", "b.ndjson"):
        assert [e for c in read_predictions(tmp_path / name) for e in c] == expected


def test_jsonl_batch_envelope_lines_expand(tmp_path: Path) -> None:
    predictions, _ = generate_stream(seed=1, n_events=4, features=3, model_version=None)
    envelope = {"batch_id": "b1", "model": "fraud-scorer", "predictions": predictions[:3]}
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps(envelope) + "\n" + json.dumps(predictions[3]) + "\n")
    assert [e.event_id for c in read_predictions(path) for e in c] == [
        p["event_id"] for p in predictions
    ]


def _prediction(i: int, **changes: Any) -> dict[str, Any]:
    event = {
        "event_id": f"e{i}", "model": "m", "timestamp": (T0 + timedelta(seconds=i)).isoformat(),
        "features": {"x": float(i)}, "prediction": 1,
    }  # fmt: skip
    event.update(changes)
    return event


def test_jsonl_bad_rows_are_counted_with_line_numbers(tmp_path: Path) -> None:
    lines = [
        json.dumps(_prediction(1)),
        "{not json",
        json.dumps({k: v for k, v in _prediction(3).items() if k != "prediction"}),
        "",
        json.dumps(_prediction(5, colour="red")),
        '{"event_id": "e6", "model": "m", "timestamp": "2024-05-01T00:00:00Z", '
        '"features": {}, "prediction": NaN}',
        json.dumps(_prediction(7, timestamp="2024-05-01T00:00:00")),
        json.dumps(_prediction(8)),
    ]
    path = tmp_path / "p.jsonl.gz"
    with gzip.open(path, "wt") as handle:
        handle.write("\n".join(lines) + "\n")
    reader = read_predictions(path)
    events = [e for c in reader for e in c]
    assert [e.event_id for e in events] == ["e1", "e8"]
    assert reader.valid == 2 and reader.invalid == 5
    assert [error.line for error in reader.errors] == [2, 3, 5, 6, 7]
    text = [str(error) for error in reader.errors]
    assert text[0].startswith(f"{path}:2: ") and "not valid JSON" in text[0]
    assert "prediction: required field is missing" in text[1]
    assert "colour: unknown field" in text[2]
    assert "finite number" in text[3]
    assert "has no zone" in text[4]


def test_csv_columns_types_and_bad_rows(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text(
        "event_id,timestamp,prediction,amount,country,flag,features.model,scores.1,"
        "segment.region,label\n"
        "1,2024-05-01T00:00:00Z,0.7,12.5,DE,true,3,0.7,eu,1\n"
        "2,2024-05-01T00:00:01Z,0.2,,FR,FALSE,4,,,0\n"
        "3,2024-05-01T00:00:02Z,0.1,7\n"
        "4,yesterday,0.4,1,DE,true,1,0.4,eu,1\n"
        "5,2024-05-01T00:00:04Z,,1,DE,true,1,0.4,eu,1\n"
        '6,2024-05-01T00:00:05Z,0.9,"2,5",US,false,1,1.5,us,0\n'
        "7,2024-05-01T00:00:06+02:00,yes,nan,BR,false,0,0.3,sa,0\n"
    )
    reader = read_predictions(path, model="default-model")
    events = [e for c in reader for e in c]
    first, second, last = events
    assert first.model == "default-model" and first.event_id == "1"
    assert first.features == {"amount": 12.5, "country": "DE", "flag": True, "model": 3}
    assert first.scores == {"1": 0.7} and first.segment == {"region": "eu"}
    assert second.features == {"amount": None, "country": "FR", "flag": False, "model": 4}
    assert second.scores is None and second.segment is None
    assert last.prediction == "yes" and last.features["amount"] is None
    assert last.timestamp == datetime(2024, 5, 1, tzinfo=UTC) + timedelta(seconds=6, hours=-2)
    assert reader.ignored_columns == ["label"]
    assert [(e.line, e.reason.split(":")[0]) for e in reader.errors] == [
        (4, "has 4 cells but the header has 10 columns"),
        (5, "invalid prediction event"),
        (6, "invalid prediction event"),
        (7, "invalid prediction event"),
    ]
    assert "timestamp" in reader.errors[1].reason and "prediction" in reader.errors[2].reason
    assert "scores.1" in reader.errors[3].reason


def test_parquet_struct_columns_and_bad_rows(tmp_path: Path) -> None:
    path = tmp_path / "p.parquet"
    table = pa.table({
        "event_id": [1, 2, 3],
        "model": ["m", "m", "m"],
        "model_version": [None, "2", "2"],
        "timestamp": [T0, T0 + timedelta(seconds=1), T0 + timedelta(seconds=2)],
        "prediction": [0.5, None, 0.5],
        "features": [{"a": 1.0, "b": "x"}, {"a": None, "b": "y"}, {"a": 2.0, "b": None}],
        "scores": [{"1": 0.5}, {"1": 0.5}, {"1": 1.5}],
    })  # fmt: skip
    pq.write_table(table, path)
    reader = read_predictions(path)
    events = [e for c in reader for e in c]
    assert len(events) == 1 and events[0].event_id == "1" and events[0].model_version is None
    assert events[0].features == {"a": 1.0, "b": "x"} and events[0].scores == {"1": 0.5}
    assert [e.line for e in reader.errors] == [2, 3]
    assert "prediction" in reader.errors[0].reason and "scores.1" in reader.errors[1].reason
    # A naive timestamp column is not RFC 3339 with a zone: every row says so.
    naive = table.set_column(3, "timestamp", pa.array([datetime(2024, 5, 1)] * 3))
    pq.write_table(naive, tmp_path / "naive.parquet")
    reader = read_predictions(tmp_path / "naive.parquet")
    assert sum(len(c) for c in reader) == 0 and reader.invalid == 3
    assert "timestamp: has no zone" in reader.errors[0].reason


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("p.txt", "x", "unknown file type .txt"),
        ("missing.jsonl", None, "no such file"),
        ("p.csv", "event_id,prediction,x\n1,2,3\n", "missing column(s) model, timestamp"),
        ("p.parquet", "not parquet", "not a readable Parquet file"),
        ("p.jsonl.gz", "not gzip", "cannot read it as jsonl"),
    ],
)
def test_unreadable_files_raise_naming_the_file(
    tmp_path: Path, name: str, content: str | None, problem: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(InputFileError) as caught:
        list(read_predictions(path))
    assert str(caught.value).startswith(str(path)) and problem in str(caught.value)


def test_detect_format_suffixes() -> None:
    assert [detect_format(Path(n)) for n in ("a.JSONL", "a.csv.gz", "a.parquet", "a.json")] == [
        "jsonl", "csv", "parquet", "jsonl",
    ]  # fmt: skip
    with pytest.raises(InputFileError, match=r"parquet\.gz"):
        detect_format(Path("a.parquet.gz"))


def test_progress_callback_covers_the_file(tmp_path: Path) -> None:
    predictions, _ = generate_stream(seed=2, n_events=3000, features=4)
    formats: tuple[StreamFormat, ...] = ("jsonl", "csv.gz")
    for fmt in formats:
        path, _ = write_stream(tmp_path / fmt, predictions, None, fmt)
        seen: list[int] = []
        list(read_predictions(path, chunk_rows=500, on_bytes=seen.append))
        assert sum(seen) == path.stat().st_size and len(seen) > 1


def test_read_events_strict_names_the_bad_row(tmp_path: Path) -> None:
    path = tmp_path / "l.jsonl"
    good = {"event_id": "e", "model": "m", "timestamp": "2024-05-01T00:00:00Z", "label": 1}
    path.write_text(json.dumps(good) + "\n" + json.dumps({**good, "label": None}) + "\n")
    assert [e.event_id for e in read_events(path, "label", strict=False)] == ["e"]
    with pytest.raises(InputFileError, match=r"l.jsonl:2: invalid label event: label"):
        list(read_events(path, "label"))


def _events(n: int, seed: int) -> tuple[list[PredictionEvent], list[LabelEvent]]:
    rng = random.Random(seed)
    predictions = [
        PredictionEvent(event_id=f"e{i}", model="m", timestamp=T0 + timedelta(seconds=i),
                        features={}, prediction=1)
        for i in range(n)
    ]  # fmt: skip
    labels = sorted(
        (LabelEvent(event_id=f"e{i}", model="m", label=0,
                    timestamp=T0 + timedelta(seconds=i + rng.randint(0, 50)))
         for i in range(n) if rng.random() < 0.6),
        key=lambda e: e.timestamp,
    )  # fmt: skip
    return predictions, labels


def _chunked(items: list[Any], rng: random.Random) -> list[list[Any]]:
    chunks, start = [], 0
    while start < len(items):
        size = rng.randint(1, 40)
        chunks.append(items[start : start + size])
        start += size
    return chunks


@pytest.mark.parametrize("seed", range(5))
def test_merge_yields_global_event_time_order(seed: int) -> None:
    predictions, labels = _events(400, seed)
    rng = random.Random(seed)
    stats = MergeStats()
    batches = list(
        merge_by_event_time(
            _chunked(predictions, rng), _chunked(labels, rng), batch_size=25, stats=stats
        )
    )
    assert all(0 < len(ps) + len(ls) <= 25 for ps, ls in batches)
    assert [e for ps, _ in batches for e in ps] == predictions
    assert [e for _, ls in batches for e in ls] == labels
    # Across batches, time never goes back: every batch ends before the next one starts.
    spans = [
        (min(times), max(times))
        for times in ([e.timestamp for e in ps] + [e.timestamp for e in ls] for ps, ls in batches)
    ]
    assert all(end <= start for (_, end), (start, _) in itertools.pairwise(spans))
    assert stats.out_of_order == 0


def test_merge_counts_events_older_than_what_was_emitted() -> None:
    predictions, _ = _events(30, 0)
    late = predictions[:10] + predictions[20:] + predictions[10:20]  # a block arrives late
    stats = MergeStats()
    merged = [e for ps, _ in merge_by_event_time([late[:10], late[10:20], late[20:]], [],
                                                 stats=stats) for e in ps]  # fmt: skip
    assert sorted(merged, key=lambda e: e.event_id) == sorted(predictions, key=lambda e: e.event_id)
    assert stats.out_of_order == 10


def test_merge_without_labels_and_with_empty_chunks() -> None:
    predictions, _ = _events(10, 1)
    batches = list(merge_by_event_time([[], predictions[:4], [], predictions[4:]]))
    assert [e for ps, ls in batches for e in ps] == predictions
    assert all(ls == [] for _, ls in batches)


# -- columnar reading (streams.readers_columns) ---------------------------------------------------


def _same_as_event_reader(path: Path, chunk_rows: int = 10_000, **kwargs: Any) -> ColumnReader:
    """Read ``path`` both ways: the same events per chunk, the same counts and errors."""
    events = read_predictions(path, chunk_rows=chunk_rows, **kwargs)
    columns = ColumnReader(path, chunk_rows=chunk_rows, **kwargs)
    expected = [chunk for chunk in events if chunk]
    got = [
        [part.event(i) for part in parts for i in range(len(part))]
        for parts in columns.column_chunks()
    ]
    got = [chunk for chunk in got if chunk]
    assert [sorted(c, key=lambda e: e.event_id) for c in got] == [
        sorted(c, key=lambda e: e.event_id) for c in expected
    ]
    assert (columns.valid, columns.invalid, columns.errors) == (
        events.valid, events.invalid, events.errors
    )  # fmt: skip
    return columns


@pytest.mark.parametrize("fmt", FORMATS)
def test_column_reader_reads_what_the_event_reader_reads(
    tmp_path: Path, fmt: str, stream: tuple[list[dict[str, Any]], list[dict[str, Any]]]
) -> None:
    pred_path, _ = write_stream(tmp_path, *stream, fmt)  # type: ignore[arg-type]
    reader = _same_as_event_reader(pred_path, chunk_rows=128)
    assert reader.valid == 600


def test_column_reader_sends_bad_and_unusual_rows_the_per_row_way(tmp_path: Path) -> None:
    lines = [
        json.dumps(_prediction(1)),
        "{not json",
        json.dumps({k: v for k, v in _prediction(3).items() if k != "prediction"}),
        json.dumps(_prediction(4, scores={"1": 1})),  # an int score: valid, but per row
        json.dumps(_prediction(5, colour="red")),
        '{"event_id": "e6", "model": "m", "timestamp": "2024-05-01T00:00:00Z", '
        '"features": {}, "prediction": NaN}',
        json.dumps(_prediction(7, timestamp="2024-05-01T00:00:00")),
        json.dumps(_prediction(8, timestamp="2024-02-30T00:00:00Z")),
        json.dumps(_prediction(9, timestamp="2024-05-01 00:00:09+02:00")),  # space: per row
        json.dumps(
            {"batch_id": "b", "model": "m", "predictions": [_prediction(10), _prediction(11)]}
        ),
        json.dumps(_prediction(12, features={"x": "y" * 2000})),
        json.dumps(_prediction(13, event_id="")),
        json.dumps(_prediction(14, segment={"region": 5})),
        json.dumps(_prediction(15, features={"x": 1.0, "": 2.0})),
        json.dumps(_prediction(16)),
    ]
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(lines) + "\n")
    for size in (1, 2, 3, 100):  # chunks end after the same rows (envelopes stay whole)
        reader = _same_as_event_reader(path, chunk_rows=size)
    assert reader.valid == 6 and reader.invalid == 10  # line 10 holds two events
    assert [error.line for error in reader.errors] == [2, 3, 5, 6, 7, 8, 11, 12, 13, 14]


def test_column_reader_tabular_bad_rows(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text(
        "event_id,timestamp,prediction,amount,country,scores.1\n"
        "1,2024-05-01T00:00:00Z,0.7,12.5,DE,0.7\n"
        "2,2024-05-01T00:00:01Z,0.2,,FR,\n"
        "3,yesterday,0.4,1,DE,0.4\n"
        "4,2024-05-01T00:00:03+02:00,1,1,DE,1\n"
        "5,2024-05-01T00:00:04Z,0.9,2,US,1.5\n"
    )
    reader = _same_as_event_reader(path, chunk_rows=2, model="m")
    assert reader.valid == 3 and [e.line for e in reader.errors] == [4, 6]


def test_bulk_times_reads_rfc3339_like_pydantic() -> None:
    stamps = ["2024-05-01T00:00:00Z", "2024-05-01T02:00:00.5+02:00", "2024-04-30T23:00:00-01:00"]
    got = bulk_times(stamps)
    assert got is not None
    expected = [PredictionEvent.model_validate(_prediction(0, timestamp=s)).timestamp
                for s in stamps]  # fmt: skip
    assert got.tolist() == [epoch_us(t) for t in expected]
    for bad in ("2024-02-30T00:00:00Z", "0000-01-01T00:00:00Z", "2024-05-01T00:00:00+24:00",
                "2024-05-01T00:00:00", "2024-05-01T00:00:00.1234567Z"):  # fmt: skip
        assert bulk_times([stamps[0], bad]) is None


@pytest.mark.parametrize("with_labels", [False, True])
@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_columnar_backtest_decides_what_the_event_backtest_decides(
    tmp_path: Path, fmt: str, with_labels: bool
) -> None:
    from schemas.monitor_config import MonitorConfig
    from streams.cli_backtest import run_backtest

    predictions, labels = generate_stream(
        seed=5, n_events=9000, features=5, shift_at=5000, label_delay_seconds=300.0,
        label_fraction=0.7,
    )  # fmt: skip
    pred_path, label_path = write_stream(tmp_path, predictions, labels, fmt)  # type: ignore[arg-type]
    lines = pred_path.read_bytes().splitlines(keepends=True) if fmt == "jsonl" else []
    if lines:  # a few bad rows
        lines[3], lines[4000] = b"{oops\n", lines[4000].replace(b'"prediction"', b'"pred"')
        pred_path.write_bytes(b"".join(lines))
    results = []
    for bulk in (True, False):
        results.append(run_backtest(
            pred_path, label_path if with_labels else None, MonitorConfig(), io.BytesIO(),
            clock=lambda: datetime(2030, 1, 1, tzinfo=UTC), chunk_rows=700, columnar=bulk,
        ))  # fmt: skip
    columnar, events = results
    assert columnar.alerts == events.alerts and columnar.errors == events.errors
    assert (columnar.predictions, columnar.labels, columnar.invalid_predictions) == (
        events.predictions, events.labels, events.invalid_predictions
    )  # fmt: skip
    assert any(a.kind == "feature_drift" for a in events.alerts)


def test_merge_rows_counts_late_rows_like_merge_by_event_time() -> None:
    predictions, labels = _events(300, 2)
    rows = [_event_row(e) for e in predictions]
    late = rows[:100] + rows[200:] + rows[100:200]
    stats, expected_stats = MergeStats(), MergeStats()
    rng = random.Random(1)
    label_chunks = _chunked(labels, rng)
    got = list(merge_rows_by_event_time([late[:100], late[100:200], late[200:]], label_chunks,
                                        stats=stats))  # fmt: skip
    events_late = predictions[:100] + predictions[200:] + predictions[100:200]
    expected = list(merge_by_event_time(
        [events_late[:100], events_late[100:200], events_late[200:]], label_chunks,
        stats=expected_stats,
    ))  # fmt: skip
    assert [([p.event(i).event_id for p in ps for i in range(len(p))], ls) for ps, ls in got] == [
        ([e.event_id for e in ps], ls) for ps, ls in expected
    ]
    assert stats.out_of_order == expected_stats.out_of_order == 100


def test_bulk_checks_still_check_the_values_next_to_a_malformed_row() -> None:
    """A row whose features are not a mapping used to make the checks skip the values of the
    chunk's other rows: an infinite feature then passed as valid."""
    good = {"event_id": "a", "model": "m", "timestamp": "2024-05-01T00:00:00Z",
            "features": {"x": 1.5}, "prediction": 1}  # fmt: skip
    infinite = {**good, "event_id": "b", "features": {"x": float("inf")}}
    malformed = {**good, "event_id": "c", "features": ["x", 1.5]}
    assert bulk_ok([malformed, infinite, good]).tolist() == [False, False, True]
