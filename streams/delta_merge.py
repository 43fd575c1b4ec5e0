"""One delta per model and round, not one per model, input partition and round (pure).

A worker folds each input partition on its own, so one ingest round over 3 partitions and 20
models publishes up to 60 deltas. At a steady rate most of them hold one or two events, and
each costs the same to encode, send, parse and merge whatever it holds. Before publishing,
the ingest merges a round's deltas of the same model version whose event times lie within
`MERGE_GAP_US` of each other, up to the fold's own cut (``max_events`` predictions, and as
many outcomes). Each merged delta carries the origins of all its parts, so the judge still
recognises a replayed batch (`streams.judge_record`) and orders the warm-up by partition
(`streams.warmup_order`). The ingest's deltas are deferred (`detectors.accumulate_deferred`):
merging them concatenates their inputs, and each merged delta is folded once, when published.

Only fresh batches are merged. A batch replayed after a crash is published part by part,
exactly as before, so the judge drops each part it applied inside a merged delta.

Deltas far apart in event time stay apart. During a catch-up, a partition that is far ahead is
therefore not mixed into another partition's earlier events.

>>> from detectors.window import WindowDelta
>>> def delta(model, start, end, count=1):
...     window = WindowDelta(model, None)
...     window.start_us, window.end_us, window.count = start, end, count
...     return DeltaOut(model, window, start / 1e6)
>>> def origin(partition):
...     return {"partition": partition, "batch": [0, 9, -1, -1], "index": 0, "partitions": 3}
>>> round_ = [(delta("a", 10, 20), origin(0)), (delta("b", 12, 12), origin(0)),
...           (delta("a", 25, 30), origin(1)), (delta("a", 5_000_000, 5_000_001), origin(2))]
>>> len(merge_round(round_, max_events=1))  # the fold's cut holds
4
>>> merged = merge_round(round_, max_events=250)  # merges into the round's own deltas
>>> [(out.model, out.window.count, [o["partition"] for o in origins]) for out, origins in merged]
[('a', 2, [0, 1]), ('b', 1, [0]), ('a', 1, [2])]
>>> [o["end_us"] for o in merged[0][1]]  # each part's own last event
[20, 30]
>>> steps = merge_round([(delta("a", 10, 20), origin(0)), (delta("a", 25, 30), origin(1))],
...                     max_events=250, time_step_us=lambda model: 25)  # time windows of 25 µs
>>> [out.window.count for out, _ in steps]  # 10-20 and 25-30 lie in two steps
[1, 1]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from detectors.accumulate_deferred import DeferredDelta
from detectors.window import WindowDelta, time_step_end
from streams.agents_monitor import DeltaOut

__all__ = ["MERGE_GAP_US", "Origin", "merge_round"]

MERGE_GAP_US: Final = 1_000_000
"""Deltas of one model merge while each starts within this much event time (µs) of the
events merged so far: a round at a steady rate spans well under it; a catch-up of a partition
far ahead does not."""

Origin = Mapping[str, Any]
"""Where a delta's events came from: ``partition``, ``batch``, ``index``, ``partitions``."""


@dataclass
class _Group:
    first: DeltaOut
    origins: list[dict[str, Any]]

    @property
    def window(self) -> WindowDelta | DeferredDelta:
        return self.first.window

    def fits(self, part: DeltaOut, max_events: int, step_us: int | None) -> bool:
        mine, other = self.window, part.window
        if mine.end_us is None or other.start_us is None:
            return False
        if step_us is not None and not _one_step(step_us, mine, other):
            return False
        return (
            other.start_us <= mine.end_us + MERGE_GAP_US
            and mine.count + other.count <= max_events
            and mine.outcomes + other.outcomes <= max_events
        )

    def add(self, part: DeltaOut, origin: Origin) -> None:
        # The first part's delta: owned, not yet encoded.
        mine, other = self.window, part.window
        if isinstance(mine, DeferredDelta) and isinstance(other, DeferredDelta):
            mine.merge(other)  # the inputs: the round folds the model once
        elif isinstance(mine, WindowDelta) and isinstance(other, WindowDelta):
            mine.merge(other)
        else:
            raise TypeError("cannot merge a deferred delta with a folded one")
        self.origins.append(_with_end(origin, part))

    def out(self) -> tuple[DeltaOut, list[dict[str, Any]]]:
        if len(self.origins) == 1:
            return self.first, self.origins
        return DeltaOut(self.first.model, self.window, self.first.start), self.origins


def _one_step(step_us: int, *windows: WindowDelta | DeferredDelta) -> bool:
    """Whether the windows' events all lie in one step of a time window (the fold cut each
    delta at the steps; a merge must not join two steps again)."""
    ends = {
        time_step_end(at, step_us)
        for window in windows
        for at in (window.start_us, window.end_us)
        if at is not None
    }
    return len(ends) == 1


def _with_end(origin: Origin, part: DeltaOut) -> dict[str, Any]:
    """``origin`` plus the part's own last event time (the warm-up's per-partition clock)."""
    return {**origin, "end_us": part.window.end_us}


def merge_round(
    pairs: Sequence[tuple[DeltaOut, Origin]],
    *,
    max_events: int,
    time_step_us: Callable[[str], int | None] = lambda _model: None,
) -> list[tuple[DeltaOut, list[dict[str, Any]]]]:
    """The round's ``(delta, origin)`` pairs merged per model version: ``(delta, origins)``
    in the order of their first events (the order the judge should apply them in).
    ``time_step_us(model)``: the step of a model's time windows (`MonitorKit.time_step_us`);
    deltas in different steps stay apart.

    The deltas are merged in place: the round's deltas belong to it, none is encoded yet.
    """
    done: list[_Group] = []
    open_: dict[tuple[str, str | None], _Group] = {}
    for part, origin in sorted(pairs, key=lambda pair: pair[0].start):
        key = (part.model, part.window.model_version)
        group = open_.get(key)
        if group is not None and group.fits(part, max_events, time_step_us(part.model)):
            group.add(part, origin)
            continue
        if group is not None:
            done.append(group)
        open_[key] = _Group(part, [_with_end(origin, part)])
    done.extend(open_.values())
    done.sort(key=lambda group: group.first.start)
    return [group.out() for group in done]
