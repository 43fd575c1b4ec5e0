"""Read input messages back from Kafka when offsets never reached the ingest.

Faust resumes a worker's input partitions before it seeks them to their committed offsets at
the end of its startup recovery; a message fetched in between can be dropped while the ones
after it are processed, and its offset is then committed with theirs.
`streams.app.hold_input_while_seeking` now keeps such messages out of the queues Faust
clears; this read-back stays as the second line, for drops it does not foresee. The ingest
notices the hole in its progress offsets (`streams.ingest_rounds.offset_gaps`), the judge a
hole between two batches of a sketches partition; both read the missing offsets here, with a
plain consumer outside the group, before they go on. Offsets the topic no longer has (retention,
or transaction markers of another producer) are simply not returned. Holes are looked for
only just after a rebalance (`GapWatch`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from schemas.settings import Settings

__all__ = ["GAP_WATCH_SECONDS", "GapWatch", "RefetchedEvent", "read_input_range"]

_IDLE_SECONDS: Final = 30.0
GAP_WATCH_SECONDS: Final = 30.0
"""How long after a rebalance the first batches are checked for holes (see `GapWatch`)."""


class GapWatch:
    """When to look for offsets that never arrived: from the first batch after a rebalance,
    for ``seconds``. The drop happens right when a worker's recovery ends, which is when its
    first batches flow; checking for ever would read back, batch after batch, every offset a
    transactional producer's commit markers take.

    >>> clock = iter([100.0, 110.0, 131.0, 200.0]).__next__
    >>> watch = GapWatch(30.0, clock)
    >>> [watch.watching(), watch.watching(), watch.watching()]
    [True, True, False]
    >>> watch.rearm(); watch.watching()
    True
    """

    def __init__(
        self, seconds: float = GAP_WATCH_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._seconds = seconds
        self._clock = clock
        self._until: float | None = None

    def rearm(self) -> None:
        """A rebalance: watch again from the next batch."""
        self._until = None

    def watching(self) -> bool:
        """Is this batch to be checked (the first call after `rearm` opens the window)?"""
        now = self._clock()
        if self._until is None:
            self._until = now + self._seconds
        return now <= self._until


@dataclass(frozen=True)
class _Message:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True)
class RefetchedEvent:
    """A message read back, shaped like the parts of a Faust event the ingest reads."""

    message: _Message


def read_input_range(
    settings: Settings, topic: str, partition: int, low: int, high: int, *,
    who: str = "the ingest was reading back skipped input",
) -> list[RefetchedEvent]:  # fmt: skip
    """The messages of ``topic[partition]`` with ``low <= offset < high``, in offset order.
    Blocks until the range is read: run it in a thread. ``who`` is named if Kafka is silent."""
    from confluent_kafka import Consumer

    from streams.kafka_snapshot import read_range

    consumer = Consumer(
        {
            **settings.kafka.confluent_config(),
            "group.id": f"{settings.topics.prefix}read-back",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    found: list[RefetchedEvent] = []
    try:
        for messages in read_range(
            consumer, topic, partition, low, high, idle_seconds=_IDLE_SECONDS,
            where=f"{who}: is Kafka up?",
        ):  # fmt: skip
            for message in messages:
                offset = int(message.offset() or 0)
                found.append(
                    RefetchedEvent(
                        _Message(topic, partition, offset, message.key(), message.value())
                    )
                )
    finally:
        consumer.close()
    return found
