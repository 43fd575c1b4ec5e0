"""Hand each fetched message to the agents without four asyncio tasks per message.

Faust's consumer delivers every message with ``await self.wait_first(callback(message),
self.suspend_flow.wait())`` (``Consumer._drain_messages``): so that a delivery blocked on a
full agent queue can be abandoned when a rebalance suspends the flow. ``Service.wait_first``
wraps the delivery, the flow event, and the consumer's stopped and crashed events in four
tasks, waits for the first, then cancels three: ~8 event-loop steps for a delivery that almost
always finishes at once (it puts the message in a queue). py-spy of a Faust agent that only
drains its queue put ~70 % of the main thread there; that agent moved ~5,300 messages/s on the
2-core box (bench/worker_throughput.py row e-drain), below the issue's single-message goal
whatever the agent does.

:func:`deliver_without_tasks` replaces ``wait_first`` on the consumer (its only caller is that
line) with one that first runs the delivery as a plain coroutine. A delivery that finishes
without waiting is the winner ``wait_first`` would have returned, provided no flow, stop or
crash event was set, which is checked before it runs. A delivery that has to wait goes on in
Faust's own ``wait_first``, from where it stopped; so does every call while an event is set.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Coroutine, Generator
from typing import Any

__all__ = ["ResumedCoroutine", "deliver_without_tasks"]

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
