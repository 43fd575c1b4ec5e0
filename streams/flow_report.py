"""Why a worker does not read its input: Faust's flow state and where every task waits.

A worker that is Ready, whose group is stable and owns its partitions, can still read
nothing (the 27th session's join-recovery flake). mode's stack dump on SIGUSR1 ends each
task's stack at the first ``async for`` ("[rest of traceback truncated]"): Faust's fetcher
waits inside ``Consumer.getmany``, an async generator, and the dump cannot say on what. The
worker logs this report on SIGUSR2 (``kill -USR2 <pid>``):

- the flow switches that gate delivery: the app's flow control (agents' queues), the
  consumer's flow (the fetcher), and which partitions Faust and aiokafka hold paused;
- per active partition, where reading stands: aiokafka's position (or that it awaits an
  offset reset), the broker's highwater, Faust's read and committed offsets, whether the
  fetcher holds records not yet taken, and how many channels the conductor routes it to
  (0: its messages are dropped);
- each running asyncio task's await chain, followed through async generators: every async
  generator that is awaiting something is found among the live objects and its chain shown.

Reading another thread's consumer state is racy; a report is for a human, not a decision.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
from collections.abc import Iterable
from typing import Any, Final

__all__ = ["await_chain", "flow_report", "flow_state", "waiting_async_generators"]

MAX_DEPTH: Final = 40
"""Await chains longer than this are cut (a cycle would otherwise never end)."""


def flow_report(app: Any) -> str:
    """The whole report for a running Faust ``app``: flow state, then where tasks wait."""
    lines = ["flow state:", *(f"  {line}" for line in flow_state(app))]
    lines += ["tasks:", *_task_lines(asyncio.get_running_loop())]
    # Faust runs aiokafka's consumer on a thread with its own event loop.
    consumer_loop = getattr(getattr(app.consumer, "_thread", None), "thread_loop", None)
    if consumer_loop is not None:
        lines += ["consumer thread's tasks:", *_task_lines(consumer_loop)]
    lines.append("async generators awaiting:")
    for agen in waiting_async_generators():
        lines.append(f"  {agen.__qualname__}: {' <- '.join(await_chain(agen))}")
    return "\n".join(lines)


def flow_state(app: Any) -> list[str]:
    """One line per flow switch of ``app`` (a value that cannot be read says why)."""
    consumer = app.consumer
    return [
        _read("app.flow_control active", lambda: app.flow_control.is_active()),
        _read("app.rebalancing", lambda: app.rebalancing),
        _read("consumer.flow_active", lambda: consumer.flow_active),
        _read("consumer.can_resume_flow set", lambda: consumer.can_resume_flow.is_set()),
        _read("consumer.suspend_flow set", lambda: consumer.suspend_flow.is_set()),
        _read("recovery completed", lambda: app.tables.recovery.completed.is_set()),
        _read("recovery in progress", lambda: app.tables.recovery.in_recovery),
        _read("faust active partitions", lambda: _tps(consumer._active_partitions or ())),
        _read("faust paused partitions", lambda: _tps(consumer._paused_partitions)),
        _read("aiokafka paused partitions", lambda: _tps(_aiokafka(app).paused())),
        _read("aiokafka assignment", lambda: _tps(_aiokafka(app).assignment())),
        _read("agent queue sizes", lambda: _queue_sizes(app)),
        _read("input positions", lambda: _input_positions(app)),
    ]


def await_chain(awaitable: Any) -> list[str]:
    """Where ``awaitable`` (a coroutine, generator or async generator) waits, outermost first:
    each frame as ``function (file:line)``, ending with what the innermost awaits."""
    chain: list[str] = []
    current = awaitable
    for _ in range(MAX_DEPTH):
        frame = _frame_of(current)
        if frame is None:
            chain.append(_describe_leaf(current))
            break
        code = frame.f_code
        chain.append(f"{code.co_name} ({_short(code.co_filename)}:{frame.f_lineno})")
        inner = _awaited_by(current)
        if inner is None:
            break
        if _frame_of(inner) is None and "self" in frame.f_locals:
            # The innermost frame's object says what it waits for: an Event, a Queue.
            chain[-1] += f" on {_describe_leaf(frame.f_locals['self'])}"
        current = inner
    return chain


def waiting_async_generators(objects: Iterable[Any] | None = None) -> list[Any]:
    """Async generators suspended in an ``await`` (not at a ``yield``): an ``async for``
    over one shows only ``async_generator_asend`` in its caller's chain."""
    found = gc.get_objects() if objects is None else objects
    return [
        obj
        for obj in found
        if inspect.isasyncgen(obj) and obj.ag_frame is not None and obj.ag_await is not None
    ]


def _frame_of(obj: Any) -> Any:
    """The frame of a coroutine, async generator or generator (None: anything else)."""
    return _first_set(obj, ("cr_frame", "ag_frame", "gi_frame"))


def _awaited_by(obj: Any) -> Any:
    """What a coroutine, async generator or generator waits on (None: not waiting)."""
    return _first_set(obj, ("cr_await", "ag_await", "gi_yieldfrom"))


def _first_set(obj: Any, names: tuple[str, ...]) -> Any:
    return next((value for name in names if (value := getattr(obj, name, None)) is not None), None)


def _task_lines(loop: asyncio.AbstractEventLoop) -> list[str]:
    return [
        f"  {_task_name(task)}: {' <- '.join(await_chain(task.get_coro()))}"
        for task in asyncio.all_tasks(loop)
    ]


def _task_name(task: asyncio.Task[Any]) -> str:
    name = task.get_name()
    if not name.startswith("<"):
        return name
    coro = task.get_coro()
    return str(getattr(coro, "__qualname__", name))


def _describe_leaf(obj: Any) -> str:
    text = repr(obj)
    return text if len(text) <= 160 else text[:157] + "..."


def _short(path: str) -> str:
    parts = path.split("/")
    return "/".join(parts[-2:])


def _read(name: str, value: Any) -> str:
    try:
        return f"{name}: {value()}"
    except Exception as exc:  # a report line, never a crash: say why it is missing
        return f"{name}: unreadable ({exc!r})"


def _tps(tps: Iterable[Any]) -> str:
    names = sorted(f"{tp.topic}[{tp.partition}]" for tp in tps)
    return ", ".join(names) if names else "none"


def _aiokafka(app: Any) -> Any:
    return app.consumer._thread._ensure_consumer()


def _input_positions(app: Any) -> str:
    consumer = app.consumer
    aiokafka = _aiokafka(app)
    assignment = aiokafka._subscription.subscription.assignment
    buffered = aiokafka._fetcher._records
    routes = app.topics._tp_index
    lines = []
    for tp in sorted(consumer._active_partitions or (), key=lambda tp: (tp.topic, tp.partition)):
        state = assignment.state_value(tp)
        position = state.position if state is not None and state.has_valid_position else None
        lines.append(
            f"\n    {tp.topic}[{tp.partition}]: position {position}"
            f" (awaiting reset: {state is not None and state.awaiting_reset}),"
            f" highwater {aiokafka.highwater(tp)}, faust read {consumer._read_offset.get(tp)},"
            f" committed {consumer._committed_offset.get(tp)},"
            f" buffered {tp in buffered}, routes {len(routes.get(tp, ()))}"
        )
    return "".join(lines) if lines else "none"


def _queue_sizes(app: Any) -> str:
    sizes = [
        f"{agent.name.rsplit('.', 1)[-1]}={actor.stream.channel.queue.qsize()}"
        for agent in app.agents.values()
        for actor in list(agent._actors)
    ]
    return ", ".join(sizes) if sizes else "none"
