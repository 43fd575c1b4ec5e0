"""Rewind an input partition whose fetched messages never reached the ingest.

Faust drops a fetched message in several places around a rebalance (its ``getmany`` stops
mid-batch when flow control stops or the generation changes; a stream drops events of an
earlier generation), and aiokafka's position has already moved past it. Faust's seek to the
committed offsets brings most back, but not on a partition with no committed offset (a topic
the group never read: one worker's labels in ``test_live_join_recovery`` were fetched to the
highwater and never read), nor a drop after the seek. `streams.input_refetch` reads a hole
back once a later offset arrives; a dropped tail has nothing after it and stayed lost.

So every `AUDIT_SECONDS` the worker compares, per input partition, aiokafka's position with
the next offset the ingest has not folded (its progress offsets). When twice in a row the
ingest was idle with an empty queue, nothing moved, and the position is past that offset, the
messages in between were fetched and dropped: the partition is sought back to it and Kafka
delivers them again. The ingest skips offsets it folded before, so a rewind that was not
needed costs a fetch, never a double count. Each (offset, position) pair is rewound once: a
transactional producer's commit markers take offsets that no message fills.

The judge's sketches input is watched the same way, on its own pulse, from the last offset it
took in since the last rebalance (a delta it applied before is dropped as redelivered).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from streams.metrics import WorkerMetrics

__all__ = ["AUDIT_SECONDS", "IngestPulse", "RewindWatch", "Sample", "install_input_rewind"]

log = logging.getLogger(__name__)

AUDIT_SECONDS: Final = 2.0
"""Between two looks at the input positions; a rewind needs two quiet looks in a row."""


@dataclass
class IngestPulse:
    """What the ingest agent has in hand: batches taken from its queue and finished, and the
    queue itself (set when the agent starts)."""

    taken: int = 0
    finished: int = 0
    queue: Any = None

    def idle(self) -> bool:
        """No batch in flight and nothing queued for the ingest."""
        return self.queue is not None and self.queue.empty() and self.taken == self.finished


@dataclass(frozen=True)
class Sample:
    """One look at an input partition: aiokafka's ``position`` (next offset to fetch, None
    when unknown), the next offset the ingest has not folded (``expected``), whether the
    ingest was ``idle``, and how many batches it had taken by then."""

    position: int | None
    expected: int
    idle: bool
    taken: int


class RewindWatch:
    """Which partitions to rewind, and to which offset.

    >>> watch = RewindWatch()
    >>> watch.rewind_to("labels-0", Sample(312, 0, idle=True, taken=4)) is None  # first look
    True
    >>> watch.rewind_to("labels-0", Sample(312, 0, idle=True, taken=4))  # still: dropped
    0
    >>> watch.rewind_to("labels-0", Sample(312, 0, idle=True, taken=4)) is None  # done once
    True
    >>> watch.rewind_to("labels-1", Sample(90, 80, idle=True, taken=4)) is None
    True
    >>> watch.rewind_to("labels-1", Sample(90, 80, idle=True, taken=5)) is None  # a batch came
    True
    >>> watch.rewind_to("labels-1", Sample(90, 90, idle=True, taken=5)) is None  # caught up
    True
    """

    def __init__(self) -> None:
        self._last: dict[str, Sample] = {}
        self._rewound: dict[str, tuple[int, int]] = {}

    def forget(self) -> None:
        """A rebalance: looks from before it prove nothing."""
        self._last.clear()

    def rewind_to(self, key: str, sample: Sample) -> int | None:
        """The offset to seek ``key``'s partition to, or None."""
        last, self._last[key] = self._last.get(key), sample
        if sample.position is None or sample.position <= sample.expected:
            return None
        if last is None or not (last.idle and sample.idle) or last != sample:
            return None
        pair = (sample.expected, sample.position)
        if self._rewound.get(key) == pair:
            return None  # sought back there already: what is missing is not a message
        self._rewound[key] = pair
        return sample.expected


def install_input_rewind(
    app: Any,
    metrics: WorkerMetrics,
    pulse: IngestPulse,
    sources: Mapping[str, str],
    folded_up_to: Callable[[str, int], int],
    *,
    agent: str = "ingest",
) -> None:
    """Look at ``agent``'s input partitions every `AUDIT_SECONDS` and rewind dropped ones.
    ``sources``: topic -> source name; ``folded_up_to(source, partition)``: the last offset
    the agent took in (-1: none). Installed once per agent that reads input (the ingest;
    the judge, whose sketches topic can lose a tail the same way)."""
    watch = RewindWatch()

    @app.on_partitions_revoked.connect  # type: ignore[untyped-decorator]  # (sender, revoked)
    async def forget_on_rebalance(sender: Any, revoked: Any, **_: Any) -> None:
        watch.forget()

    @app.timer(AUDIT_SECONDS, name=f"rewind_dropped_input.{agent}")  # type: ignore[untyped-decorator]
    async def rewind_dropped_input() -> None:
        consumer = app.consumer
        if app.rebalancing or not app.flow_control.is_active():
            watch.forget()
            return
        for tp in sorted(consumer.assignment(), key=lambda tp: (tp.topic, tp.partition)):
            source = sources.get(tp.topic)
            if source is None:
                continue
            idle, taken = pulse.idle(), pulse.taken
            expected = _next_offset(consumer, tp, folded_up_to(source, tp.partition))
            try:
                position = await consumer.position(tp)
            except Exception as exc:  # revoked meanwhile: the next look starts over
                log.debug("no position for %s[%d]: %r", tp.topic, tp.partition, exc)
                continue
            sample = Sample(position, expected, idle and pulse.idle(), taken)
            offset = watch.rewind_to(f"{tp.topic}-{tp.partition}", sample)
            if offset is None or app.rebalancing:
                continue
            log.warning(
                "%s[%d]: offsets %d-%d were fetched but never reached the %s: "
                "seeking back to %d", tp.topic, tp.partition, offset, int(position or 0) - 1,
                agent, offset,
            )  # fmt: skip
            metrics.input_rewinds.labels(source=source).inc()
            await consumer.seek(tp, offset)


def _next_offset(consumer: Any, tp: Any, folded: int) -> int:
    """The first offset of ``tp`` the ingest has not folded: after its progress, else the
    group's committed offset, else 0 (Kafka starts a partition with no committed offset at
    its earliest offset, and a seek below it resets there)."""
    if folded >= 0:
        return folded + 1
    committed = consumer._committed_offset.get(tp)
    return int(committed) if committed is not None else 0
