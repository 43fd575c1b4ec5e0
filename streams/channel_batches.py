"""Batches of events read straight from an agent's channel queue, without Faust's `Stream`.

``Stream.take_events`` costs per event: the stream's iterator (sensors, processors, a task
context switch), then a take-buffer processor, then an ack through the stream. py-spy of a
worker with one prediction per message put ~10 % of the main thread in the stream's passive
drainer alone, on top of the consumer's delivery. Its loop also wakes every ``within`` seconds
whether or not anything arrived (the judge 100 times a second on an idle worker), and starts a
batch at its next tick rather than when the first event comes.

`channel_batches` takes what the conductor put in the queue in bulk and keeps the part of the
stream's work that matters for correctness, per event:

- events of an earlier consumer generation (fetched before a rebalance), and any that arrive
  while flow control is suspended, are acked and dropped, as the stream drops them;
- every other event is tracked as unacked by the consumer, so a rebalance waits for it
  (``Consumer.wait_empty``) and no commit passes it;
- a batch is acked only once the caller asks for the next one (or, with
  ``ack_when_next=False``, when the caller acks it: `ack_batch`): a batch whose processing
  raised is never acked (``take_events`` acks in a ``finally``);
- each batch marks its partitions as read in Faust's monitor, which Faust's livelock check
  reads: without it a worker with lag logged "Stream has not started processing" as an error
  every 2.5 s per busy partition from its fifth minute on.

A batch starts with the first event that arrives and closes ``within`` seconds later, or at
once when it holds ``max_events``. Events that came while the caller processed the batch
before start the next one at once, and the time since that batch was handed out counts
towards the wait: a worker that is behind takes what arrived and goes on, rather than idle
for ``within`` after every batch (row b of ``bench/worker_throughput.py`` idled ~30 % of the
time). The batches end when Faust stops the agent.

With ``max_bytes``, a batch also closes once its messages' bytes reach it, and the queue is
kept to about as many bytes of messages: Faust bounds an agent's queue in messages only
(``stream_buffer_maxsize``, 4,096). That suits single events (~400 bytes: under 2 MiB), but
a worker behind on SDK envelopes of 500 (~200 KB each) queued ~800 MB, and took batches of up
to 2,000 of them: row b of ``bench/worker_throughput.py`` ended a 1.5M-prediction backlog at
1.5 GiB of RSS. After each batch the queue's limit becomes ``max_bytes`` over the batch's
mean message size (between `MIN_QUEUE_MESSAGES` and Faust's own limit); Faust pauses a
partition's fetches at 80 % of the limit and resumes them at 40 %, as for its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from time import monotonic
from typing import Any, Final

__all__ = [
    "BATCH_BYTES",
    "FILL_CHECKS",
    "MIN_QUEUE_MESSAGES",
    "ack_batch",
    "channel_batches",
    "fit_queue",
]

FILL_CHECKS: Final = 5
"""How often a filling batch looks whether it is full before its ``within`` is up."""

BATCH_BYTES: Final = 32 << 20
"""The agents' ``max_bytes``: message bytes per batch, and about as many queued."""

MIN_QUEUE_MESSAGES: Final = 8
"""The fewest messages a queue bounded in bytes still holds (huge messages)."""


async def channel_batches(
    app: Any,
    queue: Any,
    *,
    max_events: int,
    within: float,
    ack_when_next: bool = True,
    on_first: Callable[[], None] | None = None,
    max_bytes: int | None = None,
) -> AsyncIterator[list[Any]]:
    """Lists of at most ``max_events`` Faust events from ``queue`` (an agent's channel
    queue, ``stream.channel.queue``), each acked when the next list is asked for
    (``ack_when_next=False``: when the caller passes it to `ack_batch`, for a caller that
    collects the next batch while it still processes this one). ``on_first`` is called once,
    when the first event that counts is taken from the queue. ``max_bytes``: close a batch at
    that many message bytes too, and keep about as many in the queue (`fit_queue`)."""
    loop = asyncio.get_running_loop()
    consumer = app.consumer
    track = consumer.unacked.add
    acking_topics = app.topics.acking_topics
    flow_control = app.flow_control
    check_every = within / FILL_CHECKS
    handed_out_at: float | None = None
    byte_limit = max_bytes if max_bytes is not None else float("inf")
    queue_ceiling = queue.maxsize  # Faust's stream_buffer_maxsize (0: unbounded)
    while True:
        batch: list[Any] = []
        size = 0
        try:
            if handed_out_at is not None and not queue.empty():
                # Events came while the last batch was processed: its processing time counts
                # towards this one's wait, so a worker that is behind never idles.
                size += admit(queue.get_nowait(), batch, app, flow_control, track, acking_topics)
                closes_at = handed_out_at + within
            else:
                size += admit(await queue.get(), batch, app, flow_control, track, acking_topics)
                closes_at = loop.time() + within
            while True:
                while len(batch) < max_events and size < byte_limit and not queue.empty():
                    size += admit(
                        queue.get_nowait(), batch, app, flow_control, track, acking_topics
                    )
                if on_first is not None and batch:  # no await since it was taken: same tick
                    on_first()
                    on_first = None
                left = closes_at - loop.time()
                if len(batch) >= max_events or size >= byte_limit or left <= 0:
                    break
                await asyncio.sleep(min(left, check_every))
        except StopAsyncIteration:
            # Faust throws it into the queue when the agent stops; raised out of this async
            # generator it became a RuntimeError, logged as a crash on every SIGTERM. The
            # partial batch is dropped unacked: Kafka delivers it again.
            return
        if not batch:
            continue  # every event was stale
        if max_bytes is not None:
            fit_queue(queue, max_bytes, size / len(batch), queue_ceiling)
        mark_inbound(app, batch)
        handed_out_at = loop.time()
        yield batch
        if ack_when_next:
            ack_batch(batch)


def ack_batch(batch: list[Any]) -> None:
    """Ack every event of ``batch``: its offsets may be committed from now on."""
    for event in batch:
        event.ack()


def admit(
    event: Any, batch: list[Any], app: Any, flow_control: Any, track: Any, acking_topics: Any
) -> int:
    """Append ``event`` to ``batch`` and track it, or ack it if the stream would skip it.
    Returns the bytes of its message's value that joined the batch (0: skipped)."""
    message = event.message
    if not flow_control.is_active() or message.generation_id != app.consumer_generation_id:
        event.ack()  # fetched before the last rebalance: Kafka delivers it again
        return 0
    if message.topic in acking_topics and not message.tracked:
        message.tracked = True
        track(message)
    batch.append(event)
    return int(message.serialized_value_size)


def fit_queue(queue: Any, max_bytes: int, mean_bytes: float, ceiling: int) -> int:
    """Limit ``queue`` (a Faust agent's ``FlowControlQueue``) to about ``max_bytes`` of
    messages of ``mean_bytes`` each: at least `MIN_QUEUE_MESSAGES`, at most ``ceiling``
    (unbounded when 0). Returns the limit.

    Faust's conductor waits while the queue is full and pauses a partition's fetches from
    80 % of the limit (``pressure_high_size``) until it drains to 40 %
    (``pressure_drop_size``); both are cached from the limit, so they are dropped here to be
    computed again.

    >>> from mode.utils.queues import FlowControlEvent, FlowControlQueue
    >>> queue = FlowControlQueue(maxsize=4096, flow_control=FlowControlEvent())
    >>> queue.pressure_high_size
    3276
    >>> fit_queue(queue, 32 << 20, 200_000.0, 4096), queue.maxsize, queue.pressure_high_size
    (167, 167, 133)
    >>> fit_queue(queue, 32 << 20, 400.0, 4096), fit_queue(queue, 32 << 20, 30e6, 4096)
    (4096, 8)
    """
    fits = int(max_bytes // max(mean_bytes, 1.0))
    limit = max(MIN_QUEUE_MESSAGES, fits if ceiling <= 0 else min(ceiling, fits))
    if limit != queue.maxsize:
        queue._maxsize = limit  # asyncio.Queue's own: full() and put() read it
        for cached in ("pressure_high_size", "pressure_drop_size"):
            queue.__dict__.pop(cached, None)
    return limit


def mark_inbound(app: Any, batch: list[Any]) -> None:
    """Record that ``batch``'s partitions reached an agent now, as Faust's stream does per event
    (``Monitor.on_stream_event_in``): its livelock check reports partitions without it."""
    inbound = getattr(getattr(app, "monitor", None), "stream_inbound_time", None)
    if inbound is None:
        return
    now = monotonic()
    for tp in {event.message.tp for event in batch}:
        inbound[tp] = now
