"""The ingest notices input offsets that never reached it and merges them back in order."""

from __future__ import annotations

from streams.ingest_rounds import offset_gaps, split_replay, with_read_back

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
