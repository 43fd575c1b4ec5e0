"""The ingest notices input offsets that never reached it and merges them back in order."""

from __future__ import annotations

from streams.ingest_rounds import offset_gaps, replay_tail, split_replay, with_read_back

Message = tuple[str, int]


def _locate(message: Message) -> Message:
    return message


def test_no_gap_when_offsets_follow_the_progress() -> None:
    batch = [("predictions", 12), ("labels", 98), ("predictions", 13), ("labels", 99)]
    assert offset_gaps(batch, _locate, {"predictions": 11, "labels": 97}) == []


def test_offsets_already_folded_are_not_gaps() -> None:
    # A redelivery after a crash starts below the progress: the fold skips those, no read-back.
    batch = [("labels", 90), ("labels", 97), ("labels", 98)]
    assert offset_gaps(batch, _locate, {"labels": 97}) == []


def test_a_source_without_progress_reports_nothing() -> None:
    assert offset_gaps([("labels", 40)], _locate, {"labels": -1}) == []
    assert offset_gaps([("labels", 40)], _locate, {}) == []


def test_gaps_before_and_inside_a_batch() -> None:
    batch = [("labels", 99), ("labels", 103), ("predictions", 20)]
    gaps = offset_gaps(batch, _locate, {"predictions": 11, "labels": 97})
    assert gaps == [("labels", 98, 99), ("labels", 100, 103), ("predictions", 12, 20)]


def test_read_back_messages_fold_in_offset_order_and_replays_still_split() -> None:
    events = [("labels", 97), ("predictions", 5), ("labels", 99)]
    merged = with_read_back([("labels", 98)], events, _locate)
    assert [m for m in merged if m[0] == "labels"] == [("labels", 97), ("labels", 98),
                                                       ("labels", 99)]  # fmt: skip
    assert sorted(merged) == sorted([*events, ("labels", 98)])
    assert with_read_back([], events, _locate) == events
    # The unfinished batch [predictions 5-5, labels 97-98] is replayed with the read-back one.
    again, rest = split_replay(merged, _locate, [5, 5, 97, 98], {"predictions": 4, "labels": 96})
    assert sorted(again) == [("labels", 97), ("labels", 98), ("predictions", 5)]
    assert rest == [("labels", 99)]


def test_the_unfetched_tail_of_a_crashed_batch_is_read_ahead_then_replayed_whole() -> None:
    intent, progress = [5, 9, 2, 4], {"predictions": 4, "labels": 1}
    arrived = [("predictions", 5), ("labels", 2), ("predictions", 6)]  # the fetch stopped here
    tail = replay_tail(arrived, _locate, intent, progress)
    assert tail == [("predictions", 7, 10), ("labels", 3, 5)]
    read = [(source, offset) for source, low, high in tail for offset in range(low, high)]
    replay, rest = split_replay(with_read_back(read, arrived, _locate), _locate, intent, progress)
    assert sorted(replay) == sorted([*arrived, *read]) and rest == []


def test_no_tail_when_the_batch_arrived_whole_or_was_recorded() -> None:
    whole = [("predictions", 5), ("predictions", 6), ("labels", 2)]
    assert replay_tail(whole, _locate, [5, 6, 2, 2], {"predictions": 4, "labels": 1}) == []
    assert replay_tail(whole, _locate, [5, 6, 2, 2], {"predictions": 6, "labels": 2}) == []
    assert replay_tail(whole, _locate, None, {"predictions": 4}) == []


def test_a_batch_without_labels_reads_no_labels() -> None:
    tail = replay_tail([("predictions", 5)], _locate, [5, 7, -1, -1], {"predictions": 4})
    assert tail == [("predictions", 6, 8)]
