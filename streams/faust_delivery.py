"""Faust's per-message path from the fetcher to an agent's queue, made cheap.

py-spy of a Faust agent that only drained its queue put ~70 % of its main thread in Faust's
delivery of each message; that agent moved ~5,300 messages/s on the 2-core box
(bench/worker_throughput.py row e-drain), below the issue's single-message goal whatever the
agent does. Three costs, three replacements, each keeping Faust's behaviour:

- `deliver_without_tasks`: the consumer delivers every message with ``await
  self.wait_first(callback(message), self.suspend_flow.wait())`` (``Consumer._drain_messages``)
  so that a delivery blocked on a full agent queue can be abandoned when a rebalance suspends
  the flow. ``Service.wait_first`` wraps the delivery, the flow event, and the consumer's
  stopped and crashed events in four tasks, waits for the first, then cancels three: ~8
  event-loop steps for a delivery that almost always finishes at once. The replacement
  (its only caller is that line) runs the delivery as a plain coroutine first. A delivery
  that finishes without waiting is the winner ``wait_first`` would have returned, provided no
  flow, stop or crash event was set, which is checked before it runs. A delivery that has to
  wait goes on in Faust's own ``wait_first`` from where it stopped; so does every call while
  an event is set.
- `raw_bytes_schema`: decoding a raw-bytes message ran its key and value through the
  serializer registry (which returns them unchanged) and looked the event class up in the
  settings, per message.
- `quick_producer_ebb`: the conductor asks the producer's send-soon buffer for its size before
  each message, a settings lookup each time.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Coroutine, Generator
from typing import Any

__all__ = [
    "ResumedCoroutine",
    "deliver_without_tasks",
    "quick_producer_ebb",
    "quicken_faust_delivery",
    "raw_bytes_schema",
]

log = logging.getLogger("driftline.worker")


class ResumedCoroutine:
    """An awaitable that finishes a coroutine already stepped once, which yielded ``first``.

    The same delegation as ``yield from``: what the awaiting task sends or throws goes on
    to the coroutine.
    """

    def __init__(self, coroutine: Coroutine[Any, Any, Any], first: Any) -> None:
        self._coroutine = coroutine
        self._first = first

    def __await__(self) -> Generator[Any, Any, Any]:
        coroutine, pending = self._coroutine, self._first
        while True:
            try:
                sent = yield pending
            except GeneratorExit:
                coroutine.close()
                raise
            except BaseException as exc:  # thrown in (a cancel): pass it on
                try:
                    pending = coroutine.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    pending = coroutine.send(sent)
                except StopIteration as stop:
                    return stop.value


def quicken_faust_delivery(app: Any) -> None:
    """Install the delivery hand-off and the quick buffer check on ``app``'s consumer and
    producer (idempotent). Call from an agent's start: both exist then, and partitions are
    not assigned yet (the conductor's handlers take the buffer check when they are built).
    (`raw_bytes_schema` is given to the topics when they are declared.)"""
    deliver_without_tasks(app.consumer)
    quick_producer_ebb(app)


def deliver_without_tasks(consumer: Any) -> bool:
    """Give ``consumer`` (Faust's, once it exists) the quick ``wait_first``; False, with a
    warning, when Faust no longer looks as this module expects."""
    from mode.services import WaitResults

    original = getattr(consumer, "wait_first", None)
    suspend_flow = getattr(consumer, "suspend_flow", None)
    stopped = getattr(consumer, "_stopped", None)
    crashed = getattr(consumer, "_crashed", None)
    events = (suspend_flow, stopped, crashed)
    if original is None or not all(hasattr(event, "is_set") for event in events):
        log.warning("cannot speed up the consumer's message delivery (Faust changed): "
                    "it stays at Faust's rate")  # fmt: skip
        return False
    if getattr(original, "_driftline_quick", False):
        return True
    assert suspend_flow is not None and stopped is not None and crashed is not None

    async def wait_first(*coros: Any, timeout: Any = None) -> Any:
        delivery = coros[0] if coros else None
        if (
            len(coros) != 2
            or timeout is not None
            or not isinstance(delivery, Coroutine)
            or suspend_flow.is_set()
            or stopped.is_set()
            or crashed.is_set()
        ):
            return await original(*coros, timeout=timeout)
        try:
            pending = delivery.send(None)
        except StopIteration as done:
            _close(coros[1])
            return WaitResults([delivery], [done.value], False)
        except BaseException:
            _close(coros[1])  # wait_first would raise it too, from the delivery's task
            raise
        return await original(ResumedCoroutine(delivery, pending), coros[1], timeout=timeout)

    wait_first._driftline_quick = True  # type: ignore[attr-defined]
    consumer.wait_first = wait_first
    return True


def _close(waitable: Awaitable[Any] | Any) -> None:
    """Close a coroutine that will never run (no "never awaited" warning)."""
    if isinstance(waitable, Coroutine):
        waitable.close()


def raw_bytes_schema() -> Any:
    """A Faust schema for raw-bytes topics whose decode builds the event and nothing else.

    Faust's own decode runs the key and the value through the serializer registry (which
    returns raw bytes unchanged) and looks the event class up in the app's settings, per
    message: ~8 % of the main thread of a worker at one prediction per message.
    """
    import faust

    class RawBytesSchema(faust.Schema[bytes, bytes]):
        def compile(self, app: Any, **_: Any) -> Any:
            event_class = app.conf.Event

            async def decode(message: Any, *, propagate: bool = False) -> Any:
                return event_class(app, message.key, message.value, message.headers, message)

            return decode

    return RawBytesSchema(
        key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )


def quick_producer_ebb(app: Any) -> None:
    """Check the size of Faust's send-soon buffer without a settings lookup per message.

    Faust's conductor awaits ``producer.buffer.wait_until_ebb()`` before each message; its
    ``size`` reads ``app.conf.producer_threaded`` every time (~3 % of the main thread). Call
    once the producer exists and before partitions are assigned (the conductor's handlers
    take the method when they are built).
    """
    buffer = app.producer.buffer
    pending: Any = getattr(buffer, "pending", None)
    if app.conf.producer_threaded or not hasattr(pending, "qsize"):
        return  # the threaded producer's buffer, or a Faust that changed: keep Faust's
    wait_until_ebb = buffer.wait_until_ebb
    if getattr(wait_until_ebb, "_driftline_quick", False):
        return
    limit = buffer.max_messages

    async def quick_wait_until_ebb() -> None:
        if pending.qsize() > limit:
            await wait_until_ebb()

    quick_wait_until_ebb._driftline_quick = True  # type: ignore[attr-defined]
    buffer.wait_until_ebb = quick_wait_until_ebb
