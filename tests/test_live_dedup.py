"""A judge never applies a window delta twice: pure parts of the crash handling."""

from __future__ import annotations

from streams.ingest_rounds import split_replay
from streams.judge_record import JudgeRecord, batch_of


def _origin(partition: int, batch: list[int], index: int) -> dict[str, object]:
    return {"partition": partition, "batch": batch, "index": index}


def test_a_bare_judge_state_from_before_records_still_loads() -> None:
    legacy = {"model": "churn", "windows": 3}
    record = JudgeRecord.load(legacy)
    assert record.judge == legacy and record.sketches_offset == -1 and record.events == 0
    assert JudgeRecord.load(record.dump()).judge == legacy


def test_replayed_batch_is_dropped_and_its_missing_deltas_are_not() -> None:
    record = JudgeRecord()
    batch = batch_of({"predictions": (100, 299), "labels": (40, 59)})
    assert batch == [100, 299, 40, 59]
    assert [record.accept(_origin(1, batch, i)) for i in (2, 0)] == [True, True]
    # After a crash the same batch is folded again: applied deltas drop, the lost one counts.
    assert [record.accept(_origin(1, batch, i)) for i in (0, 1, 2)] == [False, True, False]
    assert record.duplicates == 2


def test_partitions_are_independent_and_older_batches_are_covered() -> None:
    record = JudgeRecord()
    assert record.accept(_origin(0, [0, 99, -1, -1], 0))
    assert record.accept(_origin(1, [0, 99, -1, -1], 0))  # same offsets, other partition
    assert record.accept(_origin(0, [-1, -1, 0, 9], 0))  # labels only
    assert not record.accept(_origin(0, [50, 80, -1, -1], 0))  # inside what was applied
    assert not record.accept(_origin(0, [-1, -1, 3, 9], 0))
    assert record.accept(_origin(0, [100, 120, 5, 12], 0))  # new messages of both sources
    assert record.applied["0"] == [120, 12]


def test_redelivered_sketches_messages_are_recognised_by_offset() -> None:
    record = JudgeRecord(sketches_offset=41)
    assert record.seen(41) and record.seen(3) and not record.seen(42)


def test_replay_split_keeps_the_unfinished_batch_apart() -> None:
    messages = [("predictions", o) for o in range(10, 16)] + [("labels", 7), ("labels", 8)]
    intent = [10, 13, 7, 7]
    replay, rest = split_replay(messages, lambda m: m, intent, {"predictions": 9, "labels": 6})
    assert replay == [("predictions", o) for o in range(10, 14)] + [("labels", 7)]
    assert rest == [("predictions", 14), ("predictions", 15), ("labels", 8)]
    # Once its progress is recorded the intent is history.
    done = {"predictions": 13, "labels": 7}
    assert split_replay(messages, lambda m: m, intent, done) == ([], messages)


def test_a_merged_delta_counts_once_and_its_replayed_parts_are_dropped() -> None:
    """`streams.delta_merge`: one delta holds the parts of three partitions' batches; after a
    crash the ingest replays those batches part by part, and none of them counts again."""
    record = JudgeRecord()
    parts = [_origin(p, [10 * p, 10 * p + 9, -1, -1], 0) for p in range(3)]
    assert record.accept_all(parts)
    assert [record.accept(part) for part in parts] == [False, False, False]
    assert not record.accept_all(parts)  # the merged message itself, delivered again
    assert record.duplicates == 4  # three parts, then one merged delta
    assert record.accept_all([_origin(p, [10 * p + 10, 10 * p + 19, -1, -1], 0) for p in (0, 2)])
    assert record.applied == {"0": [19, -1], "1": [19, -1], "2": [39, -1]}
