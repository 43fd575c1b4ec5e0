"""The flow report follows await chains into async generators and never fails on a missing
attribute (streams.flow_report); the live worker's SIGUSR2 report is tested in
tests/test_live_pipeline.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from types import SimpleNamespace

from streams.flow_report import await_chain, flow_state, waiting_async_generators


async def _ticks(gate: asyncio.Event) -> AsyncGenerator[int, None]:
    await gate.wait()
    yield 1


async def _consume(gate: asyncio.Event) -> None:
    async for _ in _ticks(gate):
        pass


def test_an_async_for_chain_is_found_through_the_waiting_generator() -> None:
    async def scenario() -> tuple[list[str], list[list[str]]]:
        gate = asyncio.Event()
        task = asyncio.ensure_future(_consume(gate))
        await asyncio.sleep(0)  # the task now waits in the generator, on the gate
        outer = await_chain(task.get_coro())
        inner = [await_chain(agen) for agen in waiting_async_generators()]
        gate.set()
        await task
        return outer, inner

    outer, inner = asyncio.run(scenario())
    # The task's own chain stops at the generator's asend, as mode's stack dump does ...
    assert outer[0].startswith("_consume (tests/test_flow_report.py:")
    assert "async_generator_asend" in outer[-1]
    # ... and the generator's chain says what it waits on: the Event, unset.
    ticks = [chain for chain in inner if chain[0].startswith("_ticks ")]
    assert len(ticks) == 1, inner
    assert any("asyncio.locks.Event" in link and "unset" in link for link in ticks[0]), ticks


def test_a_generator_at_a_yield_is_not_waiting() -> None:
    async def scenario() -> list[object]:
        gate = asyncio.Event()
        gate.set()
        agen = _ticks(gate)
        assert await agen.__anext__() == 1  # suspended at its yield now
        found = waiting_async_generators([agen])
        await agen.aclose()
        return found

    assert asyncio.run(scenario()) == []


def test_flow_state_says_which_values_it_could_not_read() -> None:
    consumer = SimpleNamespace(flow_active=False)
    app = SimpleNamespace(consumer=consumer, rebalancing=True)
    lines = flow_state(app)
    assert "consumer.flow_active: False" in lines
    assert "app.rebalancing: True" in lines
    unreadable = [line for line in lines if "unreadable (AttributeError(" in line]
    assert any(line.startswith("app.flow_control active: ") for line in unreadable), lines
    assert any(line.startswith("aiokafka paused partitions: ") for line in unreadable), lines
