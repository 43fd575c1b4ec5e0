"""The worker's quick paths around Faust's per-message machinery, without a broker.

`streams.faust_delivery` (delivery without four tasks per message) against mode's own
``Service.wait_first``; `streams.channel_batches` (batches straight from a channel queue)
against the stream's rules: stale events dropped and acked, live ones tracked until acked.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from mode import Service

from streams.channel_batches import MIN_QUEUE_MESSAGES, channel_batches
from streams.faust_delivery import deliver_without_tasks


class _Consumer(Service):
    """The parts of Faust's consumer the hand-off reads: a mode Service with a flow event."""

    def __init__(self) -> None:
        super().__init__()
        self.suspend_flow = asyncio.Event()
        self.slow_calls = 0
        quick_first = self.wait_first

        async def counted(*coros: Any, timeout: Any = None) -> Any:
            self.slow_calls += 1
            return await quick_first(*coros, timeout=timeout)

        self.wait_first = counted  # type: ignore[method-assign]  # the "original" to count


def _quick_consumer() -> _Consumer:
    consumer = _Consumer()
    assert deliver_without_tasks(consumer)
    return consumer


def test_a_delivery_that_does_not_wait_needs_no_task() -> None:
    async def scenario() -> None:
        consumer = _quick_consumer()
        delivered: list[int] = []

        async def deliver(n: int) -> int:
            delivered.append(n)
            return n * 10

        tasks_before = len(asyncio.all_tasks())
        result = await consumer.wait_first(deliver(4), consumer.suspend_flow.wait())
        assert (result.done, result.results, result.stopped) == ([result.done[0]], [40], False)
        assert delivered == [4]
        assert consumer.slow_calls == 0
        assert len(asyncio.all_tasks()) == tasks_before

    with _NoNeverAwaitedWarning():
        asyncio.run(scenario())


def test_a_delivery_that_waits_finishes_in_faust_wait_first_from_where_it_stopped() -> None:
    async def scenario() -> None:
        consumer = _quick_consumer()
        room = asyncio.get_running_loop().create_future()
        steps: list[str] = []

        async def deliver() -> str:
            steps.append("before")
            seat = await room  # a full queue
            steps.append(f"after {seat}")
            return "put"

        waiting = asyncio.ensure_future(
            consumer.wait_first(deliver(), consumer.suspend_flow.wait())
        )
        await asyncio.sleep(0.01)
        assert steps == ["before"] and not waiting.done()
        room.set_result("free")
        result = await asyncio.wait_for(waiting, 1)
        assert result.results == ["put"] and not result.stopped
        assert steps == ["before", "after free"]  # run once, not restarted
        assert consumer.slow_calls == 1

    asyncio.run(scenario())


def test_a_waiting_delivery_is_abandoned_when_the_flow_is_suspended() -> None:
    async def scenario() -> None:
        consumer = _quick_consumer()
        cleaned: list[str] = []

        async def deliver() -> None:
            try:
                await asyncio.get_running_loop().create_future()  # never room
            finally:
                cleaned.append("cancelled inside")

        waiting = asyncio.ensure_future(
            consumer.wait_first(deliver(), consumer.suspend_flow.wait())
        )
        await asyncio.sleep(0.01)
        consumer.suspend_flow.set()  # a rebalance
        result = await asyncio.wait_for(waiting, 1)
        assert result.results == [True]  # the flow event won (Event.wait returns True)
        await asyncio.sleep(0.01)
        assert cleaned == ["cancelled inside"]

    asyncio.run(scenario())


def test_while_the_flow_is_suspended_every_delivery_goes_through_faust() -> None:
    async def scenario() -> None:
        consumer = _quick_consumer()
        consumer.suspend_flow.set()

        async def deliver() -> str:
            return "put"

        result = await consumer.wait_first(deliver(), consumer.suspend_flow.wait())
        assert consumer.slow_calls == 1
        assert result.results[-1] is True  # the set flow event is among the winners

    asyncio.run(scenario())


def test_a_delivery_that_raises_raises_from_wait_first() -> None:
    async def scenario() -> None:
        consumer = _quick_consumer()

        async def deliver() -> None:
            raise ValueError("bad message")

        with pytest.raises(ValueError, match="bad message"):
            await consumer.wait_first(deliver(), consumer.suspend_flow.wait())

    with _NoNeverAwaitedWarning():
        asyncio.run(scenario())


class _NoNeverAwaitedWarning:
    """Fail on "coroutine ... was never awaited" (the flow event's coroutine must be closed)."""

    def __enter__(self) -> None:
        import warnings

        self._catcher = warnings.catch_warnings()
        self._catcher.__enter__()
        warnings.simplefilter("error", RuntimeWarning)

    def __exit__(self, *exc: Any) -> None:
        import gc

        gc.collect()  # a leaked coroutine warns when it is collected
        self._catcher.__exit__(*exc)


# --- channel_batches -------------------------------------------------------------------


@dataclass(eq=False)
class _Message:
    offset: int
    generation_id: int = 1
    topic: str = "predictions"
    tracked: bool = False
    partition: int = 0
    serialized_value_size: int = 100

    @property
    def tp(self) -> tuple[str, int]:
        return (self.topic, self.partition)


@dataclass
class _Event:
    message: _Message
    acks: list[int] = field(default_factory=list)

    def ack(self) -> bool:
        self.acks.append(self.message.offset)
        return True


class _FlowControl:
    def __init__(self) -> None:
        self.active = True

    def is_active(self) -> bool:
        return self.active


class _App:
    def __init__(self) -> None:
        self.consumer_generation_id = 1
        self.flow_control = _FlowControl()
        self.consumer = type("C", (), {"unacked": set()})()
        self.topics = type("T", (), {"acking_topics": {"predictions"}})()
        self.monitor = type("M", (), {"stream_inbound_time": {}})()


def _events(*offsets: int, generation: int = 1) -> list[_Event]:
    return [_Event(_Message(offset, generation)) for offset in offsets]


async def _next(batches: AsyncIterator[list[Any]], timeout: float = 1.0) -> list[Any]:
    return await asyncio.wait_for(batches.__anext__(), timeout)


def test_a_full_batch_goes_at_once_and_the_rest_waits_for_the_next() -> None:
    async def scenario() -> None:
        app, queue = _App(), asyncio.Queue[Any]()
        events = _events(1, 2, 3, 4, 5)
        for event in events:
            queue.put_nowait(event)
        batches = channel_batches(app, queue, max_events=3, within=30.0)
        first = await _next(batches)  # far sooner than within
        assert [e.message.offset for e in first] == [1, 2, 3]
        assert all(e.message.tracked for e in first)
        assert {id(e.message) for e in first} == {id(m) for m in app.consumer.unacked}
        assert not any(e.acks for e in first)  # not before the caller is done with it
        pending = asyncio.ensure_future(_next(batches, timeout=0.3))
        await asyncio.sleep(0.05)
        assert [e.acks for e in first] == [[1], [2], [3]]  # acked when the next is asked for
        with pytest.raises(TimeoutError):
            await pending  # two events, 30 s to fill: still open

    asyncio.run(scenario())


def test_a_batch_closes_at_max_bytes_and_the_queue_is_fitted_to_hold_about_as_many() -> None:
    from mode.utils.queues import FlowControlEvent, FlowControlQueue

    def faust_queue(*events: _Event, each_bytes: int) -> Any:
        queue = FlowControlQueue[Any](maxsize=4096, flow_control=FlowControlEvent())
        for event in events:
            event.message.serialized_value_size = each_bytes
            queue.put_nowait(event)
        return queue

    async def scenario() -> None:
        app = _App()
        # SDK envelopes of ~500 rows: a 500 kB budget holds 2.5 of them.
        queue = faust_queue(*_events(*range(1, 9)), each_bytes=200_000)
        batches = channel_batches(app, queue, max_events=100, within=30.0, max_bytes=500_000)
        first = await _next(batches)  # far sooner than within: its bytes closed it
        assert [e.message.offset for e in first] == [1, 2, 3]  # the third crossed 500 kB
        assert queue.maxsize == MIN_QUEUE_MESSAGES  # 2 fit, raised to the floor
        assert queue.pressure_high_size == int(MIN_QUEUE_MESSAGES / 1.25)  # Faust's was 3276
        assert [e.message.offset for e in await _next(batches)] == [4, 5, 6]
        # Single events of 400 bytes under the worker's budget: Faust's own limit stays.
        queue = faust_queue(*_events(*range(5)), each_bytes=400)
        batches = channel_batches(app, queue, max_events=5, within=30.0, max_bytes=32 << 20)
        assert len(await _next(batches)) == 5
        assert queue.maxsize == 4096
        # Without max_bytes nothing changes: messages alone bound the batch and the queue.
        queue = faust_queue(*_events(*range(4)), each_bytes=200_000)
        batches = channel_batches(app, queue, max_events=3, within=30.0)
        assert len(await _next(batches)) == 3
        assert queue.maxsize == 4096

    asyncio.run(scenario())


def test_a_batch_closes_within_seconds_after_its_first_event() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        app, queue = _App(), asyncio.Queue[Any]()
        batches = channel_batches(app, queue, max_events=100, within=0.2)
        waiting = asyncio.ensure_future(_next(batches, timeout=5))
        await asyncio.sleep(0.3)  # nothing arrived: no batch, however long
        assert not waiting.done()
        queue.put_nowait(_events(7)[0])
        started = loop.time()
        await asyncio.sleep(0.05)
        queue.put_nowait(_events(8)[0])
        batch = await waiting
        took = loop.time() - started
        assert [e.message.offset for e in batch] == [7, 8]
        assert 0.15 <= took < 1.0

    asyncio.run(scenario())


def test_a_callers_processing_time_counts_towards_the_next_batchs_wait() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        app, queue = _App(), asyncio.Queue[Any]()
        batches = channel_batches(app, queue, max_events=100, within=0.5)
        queue.put_nowait(_events(1)[0])
        await _next(batches)
        queue.put_nowait(_events(2)[0])  # arrives while the caller works
        await asyncio.sleep(0.6)  # the caller's work took longer than within
        started = loop.time()
        batch = await _next(batches)
        assert [e.message.offset for e in batch] == [2]
        assert loop.time() - started < 0.2  # not another 0.5 s of waiting: it is behind
        waiting = asyncio.ensure_future(_next(batches, timeout=5))
        await asyncio.sleep(0.05)
        queue.put_nowait(_events(3)[0])  # a quiet queue: the batch starts with its event
        started = loop.time()
        assert [e.message.offset for e in await waiting] == [3]
        assert loop.time() - started >= 0.4

    asyncio.run(scenario())


def test_with_ack_when_next_off_only_the_caller_acks() -> None:
    from streams.channel_batches import ack_batch

    async def scenario() -> None:
        app, queue = _App(), asyncio.Queue[Any]()
        events = _events(1, 2, 3)
        for event in events:
            queue.put_nowait(event)
        batches = channel_batches(app, queue, max_events=2, within=0.01, ack_when_next=False)
        first = await _next(batches)
        second = await _next(batches)  # asked for while the first is still being processed
        assert [e.message.offset for e in first + second] == [1, 2, 3]
        assert not any(e.acks for e in events)
        ack_batch(first)
        assert [e.acks for e in events] == [[1], [2], []]

    asyncio.run(scenario())


def test_events_from_before_a_rebalance_or_while_suspended_are_acked_and_dropped() -> None:
    async def scenario() -> None:
        app, queue = _App(), asyncio.Queue[Any]()
        stale = _events(1, 2, generation=0)
        live = _events(3)
        for event in [*stale, *live]:
            queue.put_nowait(event)
        batches = channel_batches(app, queue, max_events=10, within=0.01)
        batch = await _next(batches)
        assert [e.message.offset for e in batch] == [3]
        assert [e.acks for e in stale] == [[1], [2]]
        assert not any(e.message.tracked for e in stale)
        app.flow_control.active = False
        suspended = _events(4)
        queue.put_nowait(suspended[0])
        queue.put_nowait(_events(5, generation=1)[0])
        pending = asyncio.ensure_future(_next(batches, timeout=0.3))
        with pytest.raises(TimeoutError):
            await pending  # both dropped while the flow is suspended
        assert suspended[0].acks == [4]

    asyncio.run(scenario())


def test_on_first_is_called_once_when_the_first_event_that_counts_is_taken() -> None:
    async def scenario() -> None:
        app, queue = _App(), asyncio.Queue[Any]()
        calls: list[int] = []
        batches = channel_batches(
            app, queue, max_events=10, within=0.01, on_first=lambda: calls.append(queue.qsize())
        )
        pending = asyncio.ensure_future(_next(batches))
        await asyncio.sleep(0.05)
        assert calls == []  # nothing taken yet
        for event in [*_events(1, generation=0), *_events(2, 3)]:  # a stale one first
            queue.put_nowait(event)
        assert [e.message.offset for e in await pending] == [2, 3]
        assert calls == [0]  # once, when the queue's live events were taken
        queue.put_nowait(_events(4)[0])
        await _next(batches)
        assert calls == [0]

    asyncio.run(scenario())


def test_a_batch_whose_processing_raised_is_not_acked() -> None:
    async def scenario() -> None:
        app, queue = _App(), asyncio.Queue[Any]()
        events = _events(1, 2)
        for event in events:
            queue.put_nowait(event)
        batches = channel_batches(app, queue, max_events=10, within=0.01)
        with pytest.raises(RuntimeError):
            async for _batch in batches:
                raise RuntimeError("fold failed")
        await batches.aclose()  # type: ignore[attr-defined]
        assert not any(e.acks for e in events)
        assert len(app.consumer.unacked) == 2  # a rebalance still waits for them

    asyncio.run(scenario())


@pytest.mark.parametrize("while_filling", [False, True])
def test_the_batches_end_when_faust_throws_stop_into_the_queue(while_filling: bool) -> None:
    # Faust stops an agent by throwing StopAsyncIteration into its channel's queue (mode's
    # ThrowableQueue); leaking it out of the generator made every SIGTERM a logged crash.
    from mode.utils.queues import FlowControlEvent, ThrowableQueue

    async def scenario() -> None:
        app, queue = (
            _App(),
            ThrowableQueue[Any](flow_control=FlowControlEvent(initially_suspended=False)),
        )
        batches = channel_batches(app, queue, max_events=10, within=0.2)
        events = _events(1)
        if while_filling:
            queue.put_nowait(events[0])
        waiting = asyncio.ensure_future(_next(batches, timeout=5))
        await asyncio.sleep(0.05)
        await queue.throw(StopAsyncIteration())
        with pytest.raises(StopAsyncIteration):
            await waiting  # the iteration ends: no RuntimeError
        assert not events[0].acks  # a batch cut short is not acked: Kafka delivers it again

    asyncio.run(scenario())


# --- raw_bytes_schema ------------------------------------------------------------------


@pytest.mark.parametrize("key, value", [(b"e-1", b'{"x": 1}'), (None, b"\xff\x00 not json"),
                                        (b"k", None), (b"", b"")])  # fmt: skip
def test_the_raw_bytes_decode_builds_the_event_faust_would(key: bytes | None,
                                                          value: bytes | None) -> None:  # fmt: skip
    import faust
    from faust.types import TP
    from faust.types.tuples import Message

    from streams.faust_delivery import raw_bytes_schema

    app = faust.App("handoff-unit", broker="memory://", autodiscover=False)
    faust_schema: Any = faust.Schema(
        key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )
    message = Message("predictions", 2, 41, 1.5, 0, [("h", b"v")], key, value, None,
                      tp=TP("predictions", 2))  # fmt: skip

    async def decoded(schema: Any) -> Any:
        return await schema.compile(app)(message, propagate=True)

    ours, faust_own = asyncio.run(decoded(raw_bytes_schema())), asyncio.run(decoded(faust_schema))
    assert type(ours) is type(faust_own)
    assert (ours.key, ours.value, ours.headers) == (faust_own.key, faust_own.value,
                                                    faust_own.headers)  # fmt: skip
    assert ours.message is message is faust_own.message


# --- quick_producer_ebb ----------------------------------------------------------------


def test_the_quick_ebb_waits_only_when_the_send_buffer_is_over_its_limit() -> None:
    from types import SimpleNamespace

    from streams.faust_delivery import quick_producer_ebb

    async def scenario() -> None:
        flushed: list[int] = []
        pending: asyncio.Queue[int] = asyncio.Queue()

        async def faust_wait_until_ebb() -> None:
            flushed.append(pending.qsize())

        buffer = SimpleNamespace(pending=pending, max_messages=2,
                                 wait_until_ebb=faust_wait_until_ebb)  # fmt: skip
        app = SimpleNamespace(conf=SimpleNamespace(producer_threaded=False),
                              producer=SimpleNamespace(buffer=buffer))  # fmt: skip
        quick_producer_ebb(app)
        quick_producer_ebb(app)  # idempotent: wraps once
        for size in (0, 2, 3):
            while pending.qsize() < size:
                pending.put_nowait(0)
            await buffer.wait_until_ebb()
        assert flushed == [3]  # Faust's wait (flush) only over the limit, as Faust's own check

    asyncio.run(scenario())


def test_the_threaded_producer_keeps_faust_ebb() -> None:
    from types import SimpleNamespace

    from streams.faust_delivery import quick_producer_ebb

    async def faust_wait_until_ebb() -> None:
        return None

    buffer = SimpleNamespace(
        pending=asyncio.Queue(), max_messages=2, wait_until_ebb=faust_wait_until_ebb
    )
    app = SimpleNamespace(conf=SimpleNamespace(producer_threaded=True),
                          producer=SimpleNamespace(buffer=buffer))  # fmt: skip
    quick_producer_ebb(app)
    assert buffer.wait_until_ebb is faust_wait_until_ebb


def test_a_batch_marks_its_partitions_as_read_for_faust_livelock_check() -> None:
    async def scenario() -> None:
        app, queue = _App(), asyncio.Queue[Any]()
        events = _events(1, 2, 3)
        events[2].message.partition = 2
        for event in events:
            queue.put_nowait(event)
        before = time.monotonic()
        await _next(channel_batches(app, queue, max_events=3, within=5.0))
        marked = app.monitor.stream_inbound_time
        assert set(marked) == {("predictions", 0), ("predictions", 2)}
        assert all(before <= at <= time.monotonic() for at in marked.values())

    asyncio.run(scenario())
