"""Merge chunked prediction and label streams into event-time ordered batches.

Files from services are written in event-time order, but predictions and labels come from two
files (labels minutes to days later); the monitor wants one timeline. ``merge_by_event_time``
interleaves them holding about one chunk of each in memory (re-exported by ``streams.readers``).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from heapq import merge
from typing import Any, cast

from schemas.events import LabelEvent, PredictionEvent

__all__ = ["MergeStats", "merge_by_event_time"]


@dataclass
class MergeStats:
    """What ``merge_by_event_time`` saw: events older than something it had already emitted."""

    out_of_order: int = 0


def merge_by_event_time(
    predictions: Iterable[Sequence[PredictionEvent]],
    labels: Iterable[Sequence[LabelEvent]] = (),
    *,
    batch_size: int | None = None,
    stats: MergeStats | None = None,
) -> Iterator[tuple[list[PredictionEvent], list[LabelEvent]]]:
    """Batches of (predictions, labels) in event-time order, from two chunked streams.

    Each stream should be in event-time order (as files written by services are); memory holds
    about one chunk of each. An event older than what was already emitted is passed on in the
    next batch and counted in ``stats.out_of_order``. ``batch_size`` caps events per batch;
    on equal timestamps predictions come first.

    >>> from datetime import UTC, datetime, timedelta
    >>> t = datetime(2024, 5, 1, tzinfo=UTC)
    >>> p = [PredictionEvent(event_id=str(i), model="m", timestamp=t + timedelta(seconds=i),
    ...                      features={}, prediction=1) for i in range(4)]
    >>> l = [LabelEvent(event_id="0", model="m", timestamp=t + timedelta(seconds=2), label=1)]
    >>> [(len(ps), len(ls)) for ps, ls in merge_by_event_time([p[:2], p[2:]], [l], batch_size=2)]
    [(2, 0), (1, 1), (1, 0)]
    """
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    counter = stats if stats is not None else MergeStats()
    sources: list[Iterator[Sequence[Any]]] = [iter(predictions), iter(labels)]
    buffers: list[list[Any]] = [[], []]
    highs: list[datetime | None] = [None, None]
    done = [False, False]
    emitted: datetime | None = None
    while not all(done):
        # Pull from the stream that is furthest behind: it bounds what is safe to emit.
        open_sides = [i for i in (0, 1) if not done[i]]
        unknown = [i for i in open_sides if highs[i] is None]
        side = unknown[0] if unknown else min(open_sides, key=lambda i: cast(datetime, highs[i]))
        chunk = next(sources[side], None)
        if chunk is None:
            done[side] = True
        elif chunk:
            ordered = sorted(chunk, key=_event_time)
            if emitted is not None:
                counter.out_of_order += bisect_left(ordered, emitted, key=_event_time)
            buffers[side] = list(merge(buffers[side], ordered, key=_event_time))
            high, seen = ordered[-1].timestamp, highs[side]
            highs[side] = high if seen is None else max(high, seen)
        marks = [highs[i] for i in (0, 1) if not done[i]]
        if None in marks:
            continue
        mark = min(cast(list[datetime], marks)) if marks else None
        ready: list[list[Any]] = [[], []]
        for i in (0, 1):
            cut = (
                len(buffers[i]) if mark is None else bisect_right(buffers[i], mark, key=_event_time)
            )
            ready[i], buffers[i] = buffers[i][:cut], buffers[i][cut:]
        if ready[0] or ready[1]:
            last = max(batch[-1].timestamp for batch in ready if batch)
            emitted = last if emitted is None else max(emitted, last)
            yield from _split(ready[0], ready[1], batch_size)


def _event_time(event: Any) -> datetime:
    return cast(datetime, event.timestamp)


def _split(
    predictions: list[PredictionEvent], labels: list[LabelEvent], size: int | None
) -> Iterator[tuple[list[PredictionEvent], list[LabelEvent]]]:
    if size is None or len(predictions) + len(labels) <= size:
        yield predictions, labels
        return
    tagged: Iterator[tuple[int, Any]] = merge(
        ((0, event) for event in predictions),
        ((1, event) for event in labels),
        key=lambda item: (item[1].timestamp, item[0]),
    )
    batch: tuple[list[PredictionEvent], list[LabelEvent]] = ([], [])
    for side, event in tagged:
        batch[side].append(event)
        if len(batch[0]) + len(batch[1]) >= size:
            yield batch
            batch = ([], [])
    if batch[0] or batch[1]:
        yield batch
