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
- a batch is acked only once the caller asks for the next one: a batch whose processing
  raised is never acked (``take_events`` acks in a ``finally``);
- each batch marks its partitions as read in Faust's monitor, which Faust's livelock check
  reads: without it a worker with lag logged "Stream has not started processing" as an error
  every 2.5 s per busy partition from its fifth minute on.

A batch starts with the first event that arrives and closes ``within`` seconds later, or at
once when it holds ``max_events``. The batches end when Faust stops the agent.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from time import monotonic
from typing import Any, Final

__all__ = ["FILL_CHECKS", "channel_batches"]

FILL_CHECKS: Final = 5
"""How often a filling batch looks whether it is full before its ``within`` is up."""


async def channel_batches(
    app: Any, queue: Any, *, max_events: int, within: float
) -> AsyncIterator[list[Any]]:
    """Lists of at most ``max_events`` Faust events from ``queue`` (an agent's channel
    queue, ``stream.channel.queue``), each acked when the next list is asked for."""
    loop = asyncio.get_running_loop()
    consumer = app.consumer
    track = consumer.unacked.add
    acking_topics = app.topics.acking_topics
    flow_control = app.flow_control
    check_every = within / FILL_CHECKS
    while True:
        batch: list[Any] = []
        try:
            admit(await queue.get(), batch, app, flow_control, track, acking_topics)
            closes_at = loop.time() + within
            while True:
                while len(batch) < max_events and not queue.empty():
                    admit(queue.get_nowait(), batch, app, flow_control, track, acking_topics)
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
        yield batch
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
