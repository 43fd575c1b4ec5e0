"""The judge's warm-up takes the earliest events of every input partition (pure part)."""

from __future__ import annotations

from typing import Any

from streams.judge_record import JudgeRecord
from streams.warmup_order import route_delta

WARMUP = 2_000


def _delta(start: int, end: int, count: int = 250) -> dict[str, Any]:
    return {"format": 2, "model": "m", "model_version": None, "start_us": start,
            "end_us": end, "count": count, "outcomes": 0, "slices": {}}  # fmt: skip


def _partition(p: int, deltas: int = 8) -> list[tuple[int, dict[str, Any]]]:
    """A partition's deltas: 250 events over 750 s of event time each."""
    return [(p, _delta(i * 750 + p, i * 750 + 749)) for i in range(deltas)]


def _warm_up(arrivals: list[tuple[int, dict[str, Any]]], partitions: int) -> list[dict[str, Any]]:
    """The deltas a judge would build its warm-up reference from (until WARMUP events)."""
    record, warm, seen = JudgeRecord(), [], 0
    for p, delta in arrivals:
        origin = {"partition": p, "batch": [0, 0, -1, -1], "index": 0, "partitions": partitions}
        for state in route_delta(
            record, delta, [origin], warming_up=seen < WARMUP, warmup_events=WARMUP
        ):
            if seen < WARMUP:
                warm.append(state)
            seen += state["count"]
    return warm


def test_a_partition_far_ahead_waits_for_the_others() -> None:
    # Partition 0's worker published its whole stream before the other worker began.
    arrivals = _partition(0) + [
        d for pair in zip(_partition(1), _partition(2), strict=True) for d in pair
    ]
    warm = _warm_up(arrivals, partitions=3)
    assert sum(d["count"] for d in warm) >= WARMUP
    # In arrival order the warm-up would have been partition 0's first 8 deltas (6,000 s).
    assert max(d["end_us"] for d in warm) < 2_300, [(d["start_us"], d["count"]) for d in warm]


def test_in_order_arrivals_are_not_held_back() -> None:
    arrivals = [d for trio in zip(*(_partition(p) for p in range(3)), strict=True) for d in trio]
    record = JudgeRecord()
    applied = []
    for p, delta in arrivals[:6]:
        origin = {"partition": p, "batch": [0, 0, -1, -1], "index": 0, "partitions": 3}
        applied += route_delta(record, delta, [origin], warming_up=True, warmup_events=WARMUP)
    # A delta waits only until every partition passed its end.
    assert [d["start_us"] for d in applied] == [0, 1, 2, 750, 751, 752]
    assert record.parked == {}


def test_a_partition_without_traffic_is_not_waited_for_forever() -> None:
    warm = _warm_up(_partition(0, deltas=30), partitions=2)
    # Released once parking passed 2 x 2000 events, earliest first, one delta at a time.
    assert sum(d["count"] for d in warm) == WARMUP
    assert [d["start_us"] for d in warm] == [i * 750 for i in range(WARMUP // 250)]


def test_everything_of_two_partitions_before_the_third_still_warms_up_in_time_order() -> None:
    """A fast ingest publishes whole partitions before the judge reads anything: the judge
    then sees partitions 0 and 1 completely before partition 2's first delta."""
    arrivals = _partition(0) + _partition(1) + _partition(2)
    record, applied, seen = JudgeRecord(), [], 0
    for p, delta in arrivals:
        origin = {"partition": p, "batch": [0, 0, -1, -1], "index": 0, "partitions": 3}
        states = route_delta(
            record, delta, [origin], warming_up=seen < WARMUP, warmup_events=WARMUP
        )
        for state in states:
            applied.append(state)
            seen += state["count"]
    warm: list[dict[str, Any]] = []
    for state in applied:
        if sum(d["count"] for d in warm) < WARMUP:
            warm.append(state)
    # The warm-up is the earliest 2,000 events of all partitions, no merged spans ...
    assert max(d["end_us"] for d in warm) < 3 * 750, [(d["start_us"], d["end_us"]) for d in warm]
    # ... and every event is applied by the end, none left parked.
    assert sum(d["count"] for d in applied) == 3 * 8 * 250 and record.parked == {}
