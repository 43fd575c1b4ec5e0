"""Columnar monitor input: bulk validation, and the same deltas, joins and alerts as events."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from state_helpers import batching_free

from detectors.accumulate import PartitionAccumulator
from detectors.columns import ABSENT, ColumnsError, NumericColumn, PredictionColumns, columns_of
from detectors.join import LabelJoiner, epoch_us
from detectors.monitor import FleetMonitor
from schemas.events import Alert, LabelEvent, PredictionEvent
from schemas.monitor_config import MonitorConfig, parse_monitor_config

T0 = datetime(2024, 5, 1, tzinfo=UTC)


def varied_events(
    n: int, seed: int, *, model: str = "m", version: str | None = "1"
) -> list[PredictionEvent]:
    """Every feature shape the accumulator routes differently: numbers (int and float),
    nulls, absent features, strings, bools, mixed types, a declared-categorical number;
    scores missing on some events; segments on most."""
    rng = np.random.default_rng(seed)
    events = []
    for i in range(n):
        features: dict[str, Any] = {
            "x": round(float(rng.normal(10, 3)), 3),
            "count": int(rng.poisson(4)),
            "spiky": None if rng.random() < 0.1 else float(rng.normal()),
            "plan": str(rng.choice(["free", "pro", "team"])),
            "flag": bool(rng.random() < 0.3),
            "mixed": ["a", 1, 2.5, None, True][int(rng.integers(5))],
            "zone": int(rng.integers(3)),
        }
        if rng.random() < 0.05:
            del features["x"]
        if rng.random() < 0.05:
            features["rare"] = "y"
        p = round(float(rng.random()), 6)
        events.append(PredictionEvent(
            event_id=f"{model}-{i}", model=model, model_version=version,
            timestamp=T0 + timedelta(seconds=i), features=features,
            prediction=p if i % 7 else int(p > 0.5),
            scores=None if i % 11 == 0 else {"0": round(1 - p, 6), "1": p},
            segment=None if i % 13 == 0 else {"region": "eu" if rng.random() < 0.6 else "us"},
        ))  # fmt: skip
    return events


def uniform_events(n: int, seed: int) -> list[PredictionEvent]:
    """The common shape: the same numeric features on every event, scores on all."""
    rng = np.random.default_rng(seed)
    values = np.round(rng.normal(size=(n, 5)) * 4 + 20, 4).tolist()
    return [
        PredictionEvent(
            event_id=f"u{i}", model="m", timestamp=T0 + timedelta(seconds=i),
            features={f"f{k}": v for k, v in enumerate(values[i])},
            prediction=int(i % 3 == 0), scores={"0": 0.25, "1": 0.75},
        )
        for i in range(n)
    ]  # fmt: skip


CONFIGS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "segments+declared": {"defaults": {"segments": {"keys": ["region"], "max_values": 1},
                                       "features": {"zone": "categorical"}}},
    "ignore": {"defaults": {"ignore": ["plan", "x"]}},
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("make", [varied_events, uniform_events])
def test_add_columns_gives_the_delta_of_add_predictions(
    name: str, make: Callable[[int, int], list[PredictionEvent]]
) -> None:
    config = parse_monitor_config(CONFIGS[name])
    events = make(600, 3)
    by_events, by_columns = PartitionAccumulator(config), PartitionAccumulator(config)
    for start in (0, 250):  # two folds into the same delta
        part = events[start : start + 250 if start == 0 else None]
        by_events.add_predictions(part)
        by_columns.add_columns(PredictionColumns.from_events(part))
    [expected], [got] = by_events.drain(), by_columns.drain()
    assert got.to_state() == expected.to_state()
    assert got.count == 600 and got.slices[""].numeric  # something was compared


def test_varied_columns_keep_nulls_absent_and_mixed_apart() -> None:
    events = varied_events(300, 1)
    cols = PredictionColumns.from_events(events)
    x, spiky = cols.features["x"], cols.features["spiky"]
    assert isinstance(x, NumericColumn) and x.absent is not None and x.nulls is None
    assert isinstance(spiky, NumericColumn) and spiky.nulls is not None
    assert isinstance(cols.features["mixed"], list) and isinstance(cols.features["flag"], list)
    rare = cols.features["rare"]
    assert isinstance(rare, list)
    assert rare.count(ABSENT) == sum("rare" not in e.features for e in events)
    assert cols.scores is not None and np.isnan(cols.scores["1"][0])  # event 0 has no scores
    assert [cols.event(i) for i in range(len(cols))] == events


def test_columns_round_trip_through_take() -> None:
    events = varied_events(50, 2)
    cols = PredictionColumns.from_events(events)
    rows = np.array([3, 1, 40], dtype=np.intp)
    assert [cols.take(rows).event(i) for i in range(3)] == [events[i] for i in (3, 1, 40)]
    assert [cols.take(slice(5, 8)).event(i) for i in range(3)] == events[5:8]


def test_from_arrays_builds_what_from_events_builds() -> None:
    events = uniform_events(20, 5)
    naive_utc = [e.timestamp.replace(tzinfo=None) for e in events]
    arrays = PredictionColumns.from_arrays(
        model="m", event_ids=[e.event_id for e in events],
        times_us=np.array(naive_utc, dtype="datetime64[us]"),
        features={f"f{k}": np.array([e.features[f"f{k}"] for e in events]) for k in range(5)},
        prediction=[e.prediction for e in events],
        scores={c: np.array([e.scores[c] for e in events if e.scores]) for c in ("0", "1")},
    )  # fmt: skip
    assert [arrays.event(i) for i in range(20)] == events
    acc_a, acc_b = PartitionAccumulator(MonitorConfig()), PartitionAccumulator(MonitorConfig())
    acc_a.add_columns(arrays)
    acc_b.add_predictions(events)
    assert acc_a.drain()[0].to_state() == acc_b.drain()[0].to_state()


def _arrays(**change: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "model": "m", "event_ids": ["a", "b", "c"], "times_us": np.array([1, 2, 3]),
        "features": {"x": np.array([1.0, 2.0, 3.0])}, "prediction": [0, 1, 1],
    }  # fmt: skip
    return base | change


@pytest.mark.parametrize(
    ("change", "field", "row"),
    [
        ({"event_ids": ["a", "", "c"]}, "event_ids", 1),
        ({"event_ids": ["a", "b"]}, "times_us", None),
        ({"event_ids": ["a", "b", 3]}, "event_ids", 2),
        ({"model": ""}, "model", None),
        ({"times_us": [T0, T0.replace(tzinfo=None), T0]}, "times_us", 1),
        ({"times_us": np.array([1.5, 2.0, 3.0])}, "times_us", None),
        ({"features": {"x": np.array([1.0, np.inf, 3.0])}}, "features['x']", 1),
        ({"features": {"x": np.array([1.0, 2.0])}}, "features['x']", None),
        ({"features": {"x": ["a", {"b": 1}, None]}}, "features['x']", 1),
        ({"features": {"x": ["a", "b" * 2000, None]}}, "features['x']", 1),
        ({"features": {"x": [1.0, float("nan"), None]}}, "features['x']", 1),
        ({"features": {"": [1, 2, 3]}}, "feature name", None),
        ({"prediction": [0, None, 1]}, "prediction", 1),
        ({"prediction": np.array([0.1, np.nan, 0.2])}, "prediction", 1),
        ({"scores": {"1": np.array([0.1, 1.5, 0.2])}}, "scores['1']", 1),
        ({"segments": [None, {"region": 5}, None]}, "segments", 1),
        ({"nulls": {"y": np.array([False] * 3)}}, "nulls", None),
    ],
)
def test_from_arrays_rejects_bad_columns_naming_field_and_row(
    change: dict[str, Any], field: str, row: int | None
) -> None:
    with pytest.raises(ColumnsError) as caught:
        PredictionColumns.from_arrays(**_arrays(**change))
    assert (caught.value.field, caught.value.row) == (field, row)
    assert field in str(caught.value)


def test_null_mask_marks_nulls_not_nan() -> None:
    cols = PredictionColumns.from_arrays(**_arrays(
        features={"x": np.array([1.0, np.nan, 3.0])}, nulls={"x": np.array([False, True, False])}
    ))  # fmt: skip
    assert cols.event(1).features == {"x": None}
    acc = PartitionAccumulator(MonitorConfig())
    acc.add_columns(cols)
    part = acc.drain()[0].slices[""]
    assert part.types.counts["x"] == {"number": 2, "null": 1}
    assert (part.numeric["x"].count, part.numeric["x"].nans) == (2, 0)


def test_from_events_needs_one_model_version() -> None:
    events = varied_events(5, 0) + varied_events(5, 0, version="2")
    with pytest.raises(ColumnsError, match="columns_of"):
        PredictionColumns.from_events(events)
    assert [(c.model_version, len(c)) for c in columns_of(events)] == [("1", 5), ("2", 5)]


def test_prediction_columns_join_like_events() -> None:
    events = varied_events(200, 4)
    labels = [
        LabelEvent(event_id=f"m-{i}", model="m" if i != 7 else "other",
                   timestamp=T0 + timedelta(seconds=i), label=i % 2)
        for i in range(0, 200, 3)
    ]  # fmt: skip
    cols = PredictionColumns.from_events(events)
    results = []
    for bulk in (False, True):
        joiner = LabelJoiner({}, {}, ttl_seconds=3600)
        out = joiner.add_labels(labels[:30])  # early labels: the per-row path
        if bulk:
            out += joiner.add_prediction_columns(cols.take(slice(0, 150)))
            out += joiner.add_prediction_columns(cols.take(slice(140, 200)))  # duplicates
        else:
            out += joiner.add_predictions(events[:150])
            out += joiner.add_predictions(events[140:200])
        out += joiner.add_labels(labels[30:])
        results.append((out, joiner.pending, joiner.early, joiner.stats))
    assert results[1] == results[0]
    assert results[0][3].joined > 50 and results[0][3].duplicate_predictions == 10


def test_bulk_join_fast_path_pends_every_prediction() -> None:
    events = uniform_events(100, 6)
    a, b = LabelJoiner({}, {}, ttl_seconds=60), LabelJoiner({}, {}, ttl_seconds=60)
    assert a.add_predictions(events) == b.add_prediction_columns(
        PredictionColumns.from_events(events)
    ) == []  # fmt: skip
    assert a.pending == b.pending and len(a.pending) == 100


def shifted_stream(n: int, seed: int) -> tuple[list[PredictionEvent], list[LabelEvent]]:
    """10 numeric features, one shifting by 1.5 sd at 60 %; labels (concept flip at 80 %)."""
    rng = np.random.default_rng(seed)
    values = np.round(rng.normal(size=(n, 10)), 4)
    values[int(n * 0.6) :, 2] += 1.5
    score = 1 / (1 + np.exp(-values[:, :3].sum(axis=1)))
    truth = rng.random(n) < score
    truth[int(n * 0.8) :] = ~truth[int(n * 0.8) :]
    rows = values.tolist()
    predictions = [
        PredictionEvent(
            event_id=f"e{i}", model="shift", model_version="1",
            timestamp=T0 + timedelta(seconds=i),
            features={f"f{k}": v for k, v in enumerate(rows[i])},
            prediction=int(score[i] >= 0.5),
            scores={"0": round(1 - float(score[i]), 6), "1": round(float(score[i]), 6)},
        )
        for i in range(n)
    ]  # fmt: skip
    labels = [
        LabelEvent(event_id=f"e{i}", model="shift",
                   timestamp=T0 + timedelta(seconds=i + 90), label=int(truth[i]))
        for i in range(0, n, 2)
    ]  # fmt: skip
    return predictions, labels


def _clock() -> Callable[[], datetime]:
    ticks = itertools.count()
    return lambda: datetime(2030, 1, 1, tzinfo=UTC) + timedelta(seconds=next(ticks))


def _batches(
    predictions: list[PredictionEvent], labels: list[LabelEvent], size: int
) -> list[tuple[list[PredictionEvent], list[LabelEvent]]]:
    merged: list[PredictionEvent | LabelEvent] = [*predictions, *labels]
    merged.sort(key=lambda e: (e.timestamp, isinstance(e, LabelEvent)))
    return [
        ([e for e in part if isinstance(e, PredictionEvent)],
         [e for e in part if isinstance(e, LabelEvent)])
        for part in (merged[i : i + size] for i in range(0, len(merged), size))
    ]  # fmt: skip


def _run(
    batches: list[tuple[list[PredictionEvent], list[LabelEvent]]], columnar: bool
) -> tuple[list[Alert], int]:
    monitor = FleetMonitor(MonitorConfig(), clock=_clock())
    alerts: list[Alert] = []
    for predictions, labels in batches:
        if columnar:
            alerts += monitor.process_columns(columns_of(predictions), labels)
        else:
            alerts += monitor.process(predictions, labels)
    alerts += monitor.finish()
    return alerts, sum(judge.windows for judge in monitor.judges.values())


@pytest.mark.parametrize("size", [997, 10_000])
def test_process_columns_fires_the_alerts_of_process(size: int) -> None:
    predictions, labels = shifted_stream(12_000, 11)
    batches = _batches(predictions, labels, size)
    expected, windows = _run(batches, columnar=False)
    got, windows_columnar = _run(batches, columnar=True)
    assert got == expected
    assert windows == windows_columnar >= 15
    assert {a.feature for a in expected if a.kind == "feature_drift"} >= {"f2"}


def test_process_columns_takes_several_models_and_unsorted_rows() -> None:
    a, b = varied_events(3000, 7, model="a"), varied_events(3000, 8, model="b")
    merged = sorted(a + b, key=lambda e: e.timestamp)
    shuffled = list(np.random.default_rng(0).permutation(len(merged)))
    jumbled = [merged[i] for i in shuffled]  # out of order inside the batch
    events_monitor = FleetMonitor(MonitorConfig(), clock=_clock())
    columns_monitor = FleetMonitor(MonitorConfig(), clock=_clock())
    expected = events_monitor.process(jumbled) + events_monitor.finish()
    got = columns_monitor.process_columns(columns_of(jumbled)) + columns_monitor.finish()
    assert sorted(got, key=repr) == sorted(expected, key=repr) or got == expected
    assert [j.windows for j in columns_monitor.judges.values()] == [
        j.windows for j in events_monitor.judges.values()
    ]
    assert events_monitor.judges["a"].windows >= 1


def test_process_columns_of_nothing() -> None:
    monitor = FleetMonitor(MonitorConfig(), clock=_clock())
    assert monitor.process_columns([]) == []
    label = LabelEvent(event_id="x", model="m", timestamp=T0, label=1)
    assert monitor.process_columns([], [label]) == []
    assert monitor.joiner.early["x"][0] == epoch_us(T0)


def test_update_rows_into_fresh_sketches_equals_one_update_per_row() -> None:
    from detectors.sketches import NumericSketch, update_rows

    rng = np.random.default_rng(12)
    for n in (1, 2, 49, 50, 501):
        block = np.round(rng.normal(size=(7, n)) * rng.uniform(0.1, 100), 3) + 1e3
        fast, slow = [NumericSketch() for _ in range(7)], [NumericSketch() for _ in range(7)]
        update_rows(fast, block)
        for sketch, row in zip(slow, block, strict=True):
            sketch.update(row)
        assert [s.to_state() for s in fast] == [s.to_state() for s in slow]
        block[:] = 0.0  # the sketches keep their own copy
        assert fast[0].count == n and fast[0].max != 0.0


# -- deferred deltas (the live ingest folds a model once per round) -------------------------


def _fold_like_the_ingest(accumulator: Any, events: list[PredictionEvent]) -> Any:
    """One delta as `streams.fold_columns` makes it: the columns in one call, then the
    outcomes in one call (the labels of every other prediction arrived first)."""
    joiner = LabelJoiner({}, {}, ttl_seconds=86_400)
    joiner.add_labels([
        LabelEvent(event_id=e.event_id, model=e.model, timestamp=e.timestamp, label=i % 2)
        for i, e in enumerate(events) if i % 2
    ])  # fmt: skip
    columns = PredictionColumns.from_events(events)
    accumulator.add_columns(columns)
    accumulator.add_outcomes(joiner.add_prediction_columns(columns))
    [delta] = accumulator.drain()
    return delta


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("make", [varied_events, uniform_events])
def test_a_deferred_delta_folds_to_the_eager_one_bit_for_bit(
    name: str, make: Callable[[int, int], list[PredictionEvent]]
) -> None:
    from detectors.accumulate_deferred import DeferredAccumulator

    config = parse_monitor_config(CONFIGS[name])
    events = make(300, 4)
    eager = _fold_like_the_ingest(PartitionAccumulator(config), events)
    deferred = _fold_like_the_ingest(DeferredAccumulator(config), events)
    assert (deferred.count, deferred.outcomes) == (eager.count, eager.outcomes) == (300, 150)
    assert (deferred.start_us, deferred.end_us) == (eager.start_us, eager.end_us)
    assert deferred.to_state() == eager.to_state()


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_merged_deferred_deltas_hold_what_the_merged_eager_deltas_hold(name: str) -> None:
    from detectors.accumulate_deferred import DeferredAccumulator

    config = parse_monitor_config(CONFIGS[name])
    events = varied_events(240, 5)
    parts = [events[i::3] for i in range(3)]  # three partitions' shares of a round
    eager = [_fold_like_the_ingest(PartitionAccumulator(config), part) for part in parts]
    deferred = [_fold_like_the_ingest(DeferredAccumulator(config), part) for part in parts]
    for other_eager, other_deferred in zip(eager[1:], deferred[1:], strict=True):
        eager[0].merge(other_eager)
        deferred[0].merge(other_deferred)
    merged, expected = deferred[0].to_state(), eager[0].to_state()
    assert merged["count"] == 240 and merged["outcomes"] == 120
    assert batching_free(merged) == batching_free(expected)
    with pytest.raises(RuntimeError, match="is folded"):
        deferred[0].merge(_fold_like_the_ingest(DeferredAccumulator(config), parts[0]))
