"""LabelJoiner: late, early and out-of-order labels, duplicates, model mismatches, TTL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from detectors.join import LabelJoiner, Outcome, epoch_us, from_epoch_us
from schemas.events import LabelEvent, PredictionEvent
from streams.agents_state import JsonTableView

T0 = datetime(2024, 5, 1, tzinfo=UTC)
HOUR = 3600.0


def prediction(i: int, seconds: float = 0.0, model: str = "m") -> PredictionEvent:
    return PredictionEvent(
        event_id=f"e{i}", model=model, model_version="2", timestamp=T0 + timedelta(seconds=seconds),
        features={"x": float(i)}, prediction=0.25 * (i % 4), scores={"1": 0.5},
        segment={"country": "DE"},
    )  # fmt: skip


def label(i: int, seconds: float, value: int | str = 1, model: str = "m") -> LabelEvent:
    return LabelEvent(
        event_id=f"e{i}", model=model, timestamp=T0 + timedelta(seconds=seconds), label=value
    )


def test_late_labels_join_in_any_order_and_keep_what_quality_needs() -> None:
    joiner = LabelJoiner({}, {}, ttl_seconds=HOUR)
    assert joiner.add_predictions([prediction(i, i) for i in range(5)]) == []
    outcomes = joiner.add_labels([label(i, 100 - i, value=i % 2) for i in (4, 2, 0, 3, 1)])
    assert [o.event_id for o in outcomes] == ["e4", "e2", "e0", "e3", "e1"]
    first = outcomes[0]
    assert first == Outcome(
        "e4", "m", "2", 0.0, {"1": 0.5}, 0, epoch_us(T0 + timedelta(seconds=4)),
        epoch_us(T0 + timedelta(seconds=96)), {"country": "DE"},
    )  # fmt: skip
    assert first.latency_seconds == 92.0
    assert joiner.stats.joined == 5 and joiner.stats.early == 0


def test_early_labels_wait_for_their_prediction() -> None:
    joiner = LabelJoiner({}, {}, ttl_seconds=HOUR)
    assert joiner.add_labels([label(1, 5), label(2, 6)]) == []
    assert joiner.stats.early == 2 and set(joiner.early) == {"e1", "e2"}
    outcomes = joiner.add_predictions([prediction(2, 10), prediction(3, 11)])
    assert [(o.event_id, o.label) for o in outcomes] == [("e2", 1)]
    assert outcomes[0].latency_seconds == 0.0  # the truth was known before the prediction
    assert set(joiner.early) == {"e1"} and "e3" in joiner.pending


def test_duplicates_are_ignored_everywhere() -> None:
    joiner = LabelJoiner({}, {}, ttl_seconds=HOUR)
    joiner.add_predictions([prediction(1, 0)])
    assert len(joiner.add_labels([label(1, 1), label(1, 2)])) == 1  # second one is a duplicate
    assert joiner.add_labels([label(1, 3)]) == []  # and again, in a later batch
    assert joiner.add_predictions([prediction(1, 4)]) == []  # a replayed prediction
    joiner.add_labels([label(7, 5)])
    assert joiner.add_labels([label(7, 6, value=0)]) == []  # duplicate early label
    [outcome] = joiner.add_predictions([prediction(7, 7)])
    assert outcome.label == 1  # the first label wins
    stats = joiner.stats
    assert (stats.joined, stats.duplicate_labels, stats.duplicate_predictions) == (2, 3, 1)


def test_labels_of_another_model_are_not_joined() -> None:
    joiner = LabelJoiner({}, {}, ttl_seconds=HOUR)
    joiner.add_predictions([prediction(1, 0, model="a")])
    assert joiner.add_labels([label(1, 1, model="b")]) == []
    assert joiner.stats.model_mismatch == 1


def test_expire_counts_orphans_only_after_the_ttl() -> None:
    joiner = LabelJoiner({}, {}, ttl_seconds=HOUR)
    joiner.add_predictions([prediction(1, 0), prediction(2, 10)])
    joiner.add_labels([label(2, 20), label(9, 30)])  # e9 never gets a prediction
    assert joiner.expire(T0 + timedelta(seconds=HOUR)) == 0  # nothing is old enough yet
    assert set(joiner.pending) == {"e1", "e2"} and set(joiner.early) == {"e9"}
    assert joiner.expire(T0 + timedelta(seconds=HOUR + 31)) == 1
    assert joiner.stats.orphans == 1 and joiner.stats.unlabelled == 1  # e1 was never labelled
    assert joiner.pending == {} and joiner.early == {}  # the e2 tombstone went too
    # A label arriving after its prediction expired is held, then expires as an orphan.
    assert joiner.add_labels([label(1, HOUR + 40)]) == []
    assert joiner.expire(T0 + timedelta(seconds=2 * HOUR + 41)) == 1


def test_state_lives_in_json_tables_like_the_workers_use() -> None:
    pending_store: dict[bytes, bytes] = {}
    early_store: dict[bytes, bytes] = {}
    first = LabelJoiner(JsonTableView(pending_store), JsonTableView(early_store), ttl_seconds=HOUR)
    first.add_predictions([prediction(1, 0), prediction(2, 1)])
    first.add_labels([label(3, 2)])
    assert json.loads(pending_store[b"e1"])[0] == epoch_us(T0)
    # A new joiner over the same tables (next batch, another worker) continues the join.
    second = LabelJoiner(JsonTableView(pending_store), JsonTableView(early_store), ttl_seconds=HOUR)
    outcomes = second.add_labels([label(2, 5, value="churned")]) + second.add_predictions(
        [prediction(3, 6)]
    )
    assert [(o.event_id, o.label, o.scores) for o in outcomes] == [
        ("e2", "churned", {"1": 0.5}), ("e3", 1, {"1": 0.5}),
    ]  # fmt: skip
    assert second.add_labels([label(2, 9)]) == []


def test_epoch_microseconds_are_exact_and_reversible() -> None:
    moment = datetime(2031, 2, 3, 4, 5, 6, 789_012, tzinfo=UTC)
    assert from_epoch_us(epoch_us(moment)) == moment
    with pytest.raises(ValueError, match="ttl_seconds must be positive"):
        LabelJoiner({}, {}, ttl_seconds=0)
