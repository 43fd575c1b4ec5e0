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
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from time import monotonic
from typing import Any, Final

__all__ = ["FILL_CHECKS", "ack_batch", "channel_batches"]

FILL_CHECKS: Final = 5
"""How often a filling batch looks whether it is full before its ``within`` is up."""


async def channel_batches(
    app: Any,
    queue: Any,
    *,
    max_events: int,
    within: float,
    ack_when_next: bool = True,
    on_first: Callable[[], None] | None = None,
) -> AsyncIterator[list[Any]]:
    """Lists of at most ``max_events`` Faust events from ``queue`` (an agent's channel
    queue, ``stream.channel.queue``), each acked when the next list is asked for
    (``ack_when_next=False``: when the caller passes it to `ack_batch`, for a caller that
    collects the next batch while it still processes this one). ``on_first`` is called once,
    when the first event that counts is taken from the queue."""
    loop = asyncio.get_running_loop()
    consumer = app.consumer
    track = consumer.unacked.add
    acking_topics = app.topics.acking_topics
    flow_control = app.flow_control
    check_every = within / FILL_CHECKS
    handed_out_at: float | None = None
    while True:
        batch: list[Any] = []
        try:
            if handed_out_at is not None and not queue.empty():
                # Events came while the last batch was processed: its processing time counts
                # towards this one's wait, so a worker that is behind never idles.
                admit(queue.get_nowait(), batch, app, flow_control, track, acking_topics)
                closes_at = handed_out_at + within
            else:
                admit(await queue.get(), batch, app, flow_control, track, acking_topics)
                closes_at = loop.time() + within
            while True:
                while len(batch) < max_events and not queue.empty():
                    admit(queue.get_nowait(), batch, app, flow_control, track, acking_topics)
                if on_first is not None and batch:  # no await since it was taken: same tick
                    on_first()
                    on_first = None
                left = closes_at - loop.time()
                if len(batch) >= max_events or left <= 0:
                    break
                await asyncio.sleep(min(left, check_every))
        except StopAsyncIteration:
            # Faust throws it into the queue when the agent stops; raised out of this async
            # generator it became a RuntimeError, logged as a crash on every SIGTERM. The
            # partial batch is dropped unacked: Kafka delivers it again.
            return
        if not batch:
            continue  # every event was stale
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
) -> None:
    """Append ``event`` to ``batch`` and track it, or ack it if the stream would skip it."""
    message = event.message
    if not flow_control.is_active() or message.generation_id != app.consumer_generation_id:
        event.ack()  # fetched before the last rebalance: Kafka delivers it again
        return
    if message.topic in acking_topics and not message.tracked:
        message.tracked = True
        track(message)
    batch.append(event)


def mark_inbound(app: Any, batch: list[Any]) -> None:
    """Record that ``batch``'s partitions reached an agent now, as Faust's stream does per event
    (``Monitor.on_stream_event_in``): its livelock check reports partitions without it."""
    inbound = getattr(getattr(app, "monitor", None), "stream_inbound_time", None)
    if inbound is None:
        return
    now = monotonic()
    for tp in {event.message.tp for event in batch}:
        inbound[tp] = now
