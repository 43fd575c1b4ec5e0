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

__all__ = ["Folded", "offset_span", "split_replay"]

T = TypeVar("T")


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
    if intent is None:
        return [], list(messages)
    last = {"predictions": int(intent[1]), "labels": int(intent[3])}
    if all(progress.get(source, -1) >= end for source, end in last.items()):
        return [], list(messages)  # the batch was published and recorded
    replay: list[T] = []
    rest: list[T] = []
    for message in messages:
        source, offset = locate(message)
        (replay if offset <= last[source] else rest).append(message)
    return replay, rest


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
