"""Which messages of a partition the ingest folds first after a crash (pure).

The ingest writes the batch it is about to publish (its *intent*: ``[first prediction offset,
last, first label offset, last]``) before it publishes the batch's deltas, and its progress
offsets after. A worker that died in between left an intent beyond its progress: after the
restart the messages up to the intent's end are folded again *as that batch* (same id, so
the judge drops deltas it already applied), and only then the rest as a new batch.

>>> messages = [("predictions", 5), ("labels", 3), ("predictions", 6), ("predictions", 9)]
>>> split_replay(messages, lambda m: m, [5, 6, 2, 3], {"predictions": 4, "labels": 2})
([('predictions', 5), ('labels', 3), ('predictions', 6)], [('predictions', 9)])
>>> split_replay(messages, lambda m: m, [5, 6, 2, 3], {"predictions": 6, "labels": 3})
([], [('predictions', 5), ('labels', 3), ('predictions', 6), ('predictions', 9)])
>>> split_replay(messages, lambda m: m, None, {"predictions": 4, "labels": 2})[0]
[]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from streams.agents_monitor import DeltaOut

__all__ = [
    "Folded",
    "offset_gaps",
    "offset_span",
    "replay_tail",
    "split_replay",
    "with_read_back",
]

T = TypeVar("T")


def _unfinished_ends(
    intent: Sequence[int] | None, progress: Mapping[str, int]
) -> dict[str, int] | None:
    """The last offset per source of the ``intent`` batch, or None when there is none or it
    was published and recorded (``progress`` reached it)."""
    if intent is None:
        return None
    last = {"predictions": int(intent[1]), "labels": int(intent[3])}
    if all(progress.get(source, -1) >= end for source, end in last.items()):
        return None
    return last


def split_replay(
    messages: Sequence[T],
    locate: Callable[[T], tuple[str, int]],
    intent: Sequence[int] | None,
    progress: Mapping[str, int],
) -> tuple[list[T], list[T]]:
    """(messages of the unfinished ``intent`` batch, the rest), both in input order.

    ``locate`` gives a message's source (``predictions`` or ``labels``) and offset;
    ``progress``: the last offset per source the ingest recorded as published.
    """
    last = _unfinished_ends(intent, progress)
    if last is None:
        return [], list(messages)
    replay: list[T] = []
    rest: list[T] = []
    for message in messages:
        source, offset = locate(message)
        (replay if offset <= last[source] else rest).append(message)
    return replay, rest


def replay_tail(
    messages: Sequence[T],
    locate: Callable[[T], tuple[str, int]],
    intent: Sequence[int] | None,
    progress: Mapping[str, int],
) -> list[tuple[str, int, int]]:
    """``(source, low, high)``: offsets of the unfinished ``intent`` batch that did not arrive
    with ``messages`` (after the last that did), to read back before the batch is replayed.

    A restarted worker's first fetch may stop inside the crashed batch (a fetch returns about
    1 MB per partition; the batch may have been gathered from several). Replayed in two parts,
    both would carry the batch's id and the judge would drop the second part's deltas as
    already applied: the whole batch must be folded again at once.

    >>> messages = [("predictions", 5), ("labels", 3)]
    >>> replay_tail(messages, lambda m: m, [5, 8, 2, 3], {"predictions": 4, "labels": 2})
    [('predictions', 6, 9)]
    >>> replay_tail([], lambda m: m, [5, 8, -1, -1], {"predictions": 4, "labels": 7})
    [('predictions', 5, 9)]
    >>> replay_tail(messages, lambda m: m, [5, 8, 2, 3], {"predictions": 8, "labels": 3})
    []
    """
    last = _unfinished_ends(intent, progress)
    if last is None:
        return []
    arrived = dict(progress)
    for message in messages:
        source, offset = locate(message)
        arrived[source] = max(arrived.get(source, -1), offset)
    return [
        (source, arrived.get(source, -1) + 1, end + 1)
        for source, end in last.items()
        if arrived.get(source, -1) < end
    ]


def offset_gaps(
    messages: Sequence[T], locate: Callable[[T], tuple[str, int]], progress: Mapping[str, int]
) -> list[tuple[str, int, int]]:
    """``(source, low, high)``: offsets ``low <= offset < high`` of a source that never reached
    the ingest, between the last one folded (``progress``) and those in ``messages``.

    Faust can drop a message fetched while a worker finishes its startup recovery (it resumes
    the input partitions before it seeks them to their committed offsets), and that message's
    offset is then committed with the ones after it. A source without progress (-1) has no
    known start: nothing is reported for it.

    >>> messages = [("labels", 99), ("predictions", 12), ("labels", 101)]
    >>> offset_gaps(messages, lambda m: m, {"predictions": 11, "labels": 97})
    [('labels', 98, 99), ('labels', 100, 101)]
    >>> offset_gaps(messages, lambda m: m, {"predictions": -1, "labels": 98})
    [('labels', 100, 101)]
    """
    offsets: dict[str, list[int]] = {}
    for message in messages:
        source, offset = locate(message)
        offsets.setdefault(source, []).append(offset)
    gaps: list[tuple[str, int, int]] = []
    for source, seen in offsets.items():
        expected = progress.get(source, -1) + 1
        if expected == 0:
            continue
        for offset in sorted(seen):
            if offset > expected:
                gaps.append((source, expected, offset))
            expected = max(expected, offset + 1)
    return gaps


def with_read_back(
    found: Sequence[T], messages: Sequence[T], locate: Callable[[T], tuple[str, int]]
) -> list[T]:
    """``messages`` with the ``found`` ones read back, each source in offset order (the
    ingest skips an offset at or below the last it folded).

    >>> with_read_back([("labels", 98)], [("labels", 97), ("predictions", 5), ("labels", 99)],
    ...                lambda m: m)
    [('labels', 97), ('labels', 98), ('labels', 99), ('predictions', 5)]
    """
    if not found:
        return list(messages)
    by_source: dict[str, list[T]] = {}
    for message in [*messages, *found]:
        by_source.setdefault(locate(message)[0], []).append(message)
    return [
        message
        for group in by_source.values()
        for message in sorted(group, key=lambda item: locate(item)[1])
    ]


def offset_span(offsets: Sequence[tuple[str, int]]) -> dict[str, tuple[int, int]]:
    """Source -> (first, last) offset of the ``(source, offset)`` pairs.

    >>> offset_span([("predictions", 7), ("labels", 2), ("predictions", 9)])
    {'predictions': (7, 9), 'labels': (2, 2)}
    """
    span: dict[str, tuple[int, int]] = {}
    for source, offset in offsets:
        first, last = span.get(source, (offset, offset))
        span[source] = (min(first, offset), max(last, offset))
    return span


@dataclass(frozen=True)
class Folded:
    """One partition's part of an ingest batch, folded and ready to publish."""

    partition: int
    first: Any
    """The part's first Faust event: made current before table writes of this partition."""
    deltas: list[DeltaOut]
    offsets: dict[str, int]
    """Progress keys (``predictions:N``, ``labels:N``) -> last offset folded."""
    batch: list[int]
    """The batch id carried by the deltas' origin (see `streams.judge_record`)."""
    partitions: int
    """Partitions of the input topics (the judge orders the warm-up across all of them)."""

    @property
    def origin(self) -> dict[str, Any]:
        """What each delta of this part carries besides its index."""
        return {"partition": self.partition, "batch": self.batch, "partitions": self.partitions}

    def as_batch(self, intent: Sequence[int]) -> Folded:
        """The same fold published as the unfinished batch ``intent`` (a crash replay)."""
        return replace(self, batch=[int(x) for x in intent])
