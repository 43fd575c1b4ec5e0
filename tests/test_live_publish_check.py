"""A publish the broker refuses ends the round loudly (`streams.publish_check`)."""

from __future__ import annotations

import asyncio

import pytest

from streams.publish_check import PublishFailed, confirm_published


def _future(result: object = None, error: BaseException | None = None) -> asyncio.Future[object]:
    future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)
    return future


def test_acknowledged_publishes_pass() -> None:
    async def run() -> None:
        await confirm_published([("a delta of model 'm'", 10, _future("ok")) for _ in range(3)])

    asyncio.run(run())


def test_a_refused_publish_names_what_was_lost_and_why() -> None:
    class MessageSizeTooLargeError(Exception):
        pass

    async def run() -> None:
        sent = [
            ("a delta of model 'ok'", 10, _future("ok")),
            ("a delta of model 'wide'", 1_314_528, _future(error=MessageSizeTooLargeError())),
        ]
        await confirm_published(sent)

    with pytest.raises(PublishFailed) as caught:
        asyncio.run(run())
    message = str(caught.value)
    assert "a delta of model 'wide' (1,314,528 bytes)" in message
    assert "MessageSizeTooLargeError" in message and "max.message.bytes" in message
    assert isinstance(caught.value.__cause__, MessageSizeTooLargeError)


def test_a_publish_still_in_flight_is_waited_for() -> None:
    async def run() -> list[str]:
        loop = asyncio.get_running_loop()
        pending: asyncio.Future[object] = loop.create_future()
        order: list[str] = []

        def acknowledge() -> None:
            order.append("acked")
            pending.set_result("ok")

        loop.call_later(0.05, acknowledge)
        await confirm_published([("a delta", 1, pending)])
        order.append("confirmed")
        return order

    assert asyncio.run(run()) == ["acked", "confirmed"]
