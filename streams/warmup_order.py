"""The warm-up reference from the earliest events of every input partition, not the first to
arrive.

Workers fold their partitions independently, so during a catch-up or a replay a worker with
fewer partitions runs ahead in event time and its deltas reach the judge first. A warm-up made
of whatever arrives first would then hold later events (maybe the very change it should
reveal). While a judge has no reference, a delta whose events end beyond the slowest input
partition's event time (every partition's latest delta end, known from the deltas' origins)
is parked with its partition's other parked deltas, until every partition passed its end;
deltas are released in event-time order. A partition keeps at most `MAX_PARKED` deltas: beyond
that its two newest are merged (sketches: bounded however many events they hold), so the
earliest events, the ones the warm-up wants, keep their order. Once the reference exists the
parked deltas are applied first, then everything as it comes. A partition is waited for until
it sent its first delta, unless the others sent a warm-up's worth each meanwhile (it has no
traffic of the model: producers key by ``event_id``, so this is a safety net).

>>> def delta(start, end, count=10):
...     return {"format": 2, "model": "m", "model_version": None, "start_us": start,
...             "end_us": end, "count": count, "outcomes": 0, "slices": {}}
>>> record = JudgeRecord()
>>> def route(d, p, warming_up=True):
...     origin = {"partition": p, "batch": [0, 0, -1, -1], "index": 0, "partitions": 2}
...     out = route_delta(record, d, [origin], warming_up=warming_up, warmup_events=100)
...     return [(s["start_us"], s["end_us"], s["count"]) for s in out]
>>> route(delta(0, 9), 0)  # partition 1 not heard of yet: park
[]
>>> route(delta(0, 5), 1), route(delta(20, 29), 0)  # 0..9 is not below 5; 20.. is ahead
([(0, 5, 10)], [])
>>> route(delta(6, 12), 1)  # every partition passed 9
[(0, 9, 10), (6, 12, 10)]
>>> route(delta(13, 30), 1)  # ... and 29: partition 0's next delta goes; 30 waits for 0
[(20, 29, 10)]
>>> route(delta(31, 40), 0), route(delta(31, 35), 1)
([(13, 30, 10)], [(31, 35, 10)])
>>> route(delta(36, 39), 1, warming_up=False)  # reference exists: parked deltas go first
[(31, 40, 10), (36, 39, 10)]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from detectors.window import WindowDelta
from streams.judge_record import JudgeRecord

__all__ = ["release_parked", "route_delta"]


MAX_PARKED = 64
"""Parked deltas kept apart per input partition; beyond that the newest two are merged."""


def route_delta(
    record: JudgeRecord,
    delta: dict[str, Any],
    origins: Sequence[Mapping[str, Any]] | None,
    *,
    warming_up: bool,
    warmup_events: int,
) -> list[dict[str, Any]]:
    """The delta states to apply now, in order (none: ``delta`` was parked).

    ``origins``: one per input partition whose events the delta holds (several once merged,
    `streams.delta_merge`, each with its part's own ``end_us``); the delta is parked with
    the first one's partition.
    """
    if not warming_up:
        return [*release_parked(record), delta]
    start, end = delta.get("start_us"), delta.get("end_us")
    if not origins or any("partitions" not in o for o in origins) or start is None or end is None:
        return [delta]  # from an older worker, or no events: nothing to order it by
    partitions = int(origins[0]["partitions"])
    for origin in origins:
        source, part_end = str(int(origin["partition"])), int(origin.get("end_us") or end)
        record.watermarks[source] = max(record.watermarks.get(source, part_end), part_end)
    parked = record.parked.setdefault(str(int(origins[0]["partition"])), [])
    if parked and parked[-1]["model_version"] != delta["model_version"]:
        return [delta]  # a version change: its own warm-up, not ours to reorder
    parked.append(delta)
    if len(parked) > MAX_PARKED:
        parked[-2:] = [_merged(parked[-2], parked[-1])]
    if len(record.watermarks) < partitions:
        waiting = sum(state["count"] for states in record.parked.values() for state in states)
        if waiting <= partitions * warmup_events:
            return []
        slowest = max(record.watermarks.values())  # a partition without traffic: stop waiting
    else:
        slowest = min(record.watermarks.values())
    ready: list[dict[str, Any]] = []
    for key in list(record.parked):
        states = record.parked[key]
        ready += [state for state in states if state["end_us"] <= slowest]
        kept = [state for state in states if state["end_us"] > slowest]
        if kept:
            record.parked[key] = kept
        else:
            del record.parked[key]
    return _in_time_order(ready)


def release_parked(record: JudgeRecord) -> list[dict[str, Any]]:
    """Every parked delta, in event-time order, and the record emptied of them: once the
    reference exists nothing is waited for (not even the next delta, which may never come).

    >>> record = JudgeRecord(parked={"0": [{"start_us": 5, "end_us": 9}],
    ...                              "1": [{"start_us": 1, "end_us": 4}]}, watermarks={"0": 9})
    >>> [state["start_us"] for state in release_parked(record)], record.parked, record.watermarks
    ([1, 5], {}, {})
    """
    waiting = _in_time_order([state for states in record.parked.values() for state in states])
    record.parked, record.watermarks = {}, {}
    return waiting


def _in_time_order(states: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(states, key=lambda state: (state["start_us"], state["end_us"]))


def _merged(older: dict[str, Any], newer: dict[str, Any]) -> dict[str, Any]:
    into = WindowDelta.from_state(older)
    into.merge(WindowDelta.from_state(newer))
    return into.to_state()
