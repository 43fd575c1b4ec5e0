"""The worker's rewind of input partitions whose fetched messages never reached the ingest
(`streams.input_rewind`), driven by hand against a stand-in for Faust's app and consumer."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import pytest

from streams.input_rewind import IngestPulse, install_input_rewind
from streams.metrics import WorkerMetrics


class TP(NamedTuple):
    topic: str
    partition: int


@dataclass
class Consumer:
    """aiokafka's positions and the group's committed offsets, as Faust's consumer shows them."""

    positions: dict[TP, int]
    committed: dict[TP, int] = field(default_factory=dict)
    sought: list[tuple[TP, int]] = field(default_factory=list)

    @property
    def _committed_offset(self) -> dict[TP, int]:
        return self.committed

    def assignment(self) -> set[TP]:
        return set(self.positions)

    async def position(self, tp: TP) -> int:
        if tp not in self.positions:
            raise RuntimeError(f"{tp} is not assigned")  # aiokafka's IllegalStateError
        return self.positions[tp]

    async def seek(self, tp: TP, offset: int) -> None:
        self.sought.append((tp, offset))
        self.positions[tp] = offset


class FlowControl:
    def is_active(self) -> bool:
        return True


class Signal:
    def __init__(self) -> None:
        self.receivers: list[Callable[..., Awaitable[None]]] = []

    def connect(self, receiver: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
        self.receivers.append(receiver)
        return receiver


class App:
    def __init__(self, consumer: Consumer) -> None:
        self.consumer = consumer
        self.rebalancing = False
        self.flow_control = FlowControl()
        self.on_partitions_revoked = Signal()
        self.ticks: list[Callable[[], Coroutine[Any, Any, None]]] = []
        self.timer_names: list[str | None] = []

    def timer(
        self, seconds: float, name: str | None = None
    ) -> Callable[[Callable[[], Coroutine[Any, Any, None]]], Any]:
        def register(tick: Callable[[], Coroutine[Any, Any, None]]) -> Any:
            self.ticks.append(tick)
            self.timer_names.append(name)
            return tick

        return register

    def tick(self) -> None:
        for tick in self.ticks:
            asyncio.run(tick())


class Queue:
    def __init__(self) -> None:
        self.size = 0

    def empty(self) -> bool:
        return self.size == 0


LABELS = TP("driftline.labels", 0)
PREDICTIONS = TP("driftline.predictions", 0)


@pytest.fixture
def folded() -> dict[tuple[str, int], int]:
    return {}


def install(
    consumer: Consumer, folded: dict[tuple[str, int], int]
) -> tuple[App, IngestPulse, WorkerMetrics]:
    app, pulse, metrics = App(consumer), IngestPulse(queue=Queue()), WorkerMetrics()
    sources = {LABELS.topic: "labels", PREDICTIONS.topic: "predictions"}
    install_input_rewind(
        app, metrics, pulse, sources, lambda source, part: folded.get((source, part), -1)
    )
    return app, pulse, metrics


def test_labels_fetched_but_never_folded_are_fetched_again_from_the_start(
    folded: dict[tuple[str, int], int],
) -> None:
    """The flake of test_live_join_recovery: no committed offset, no progress, aiokafka at
    the highwater, the ingest idle."""
    consumer = Consumer({LABELS: 312, PREDICTIONS: 41})
    folded[("predictions", 0)] = 40
    app, _pulse, metrics = install(consumer, folded)
    app.tick()
    assert consumer.sought == []  # one look proves nothing
    app.tick()
    assert consumer.sought == [(LABELS, 0)]
    assert metrics.input_rewinds.labels(source="labels")._value.get() == 1.0
    consumer.positions[LABELS] = 312  # the refetch read nothing new in (transaction markers)
    app.tick()
    app.tick()
    assert consumer.sought == [(LABELS, 0)], "a pair already rewound is not rewound again"


def test_a_partition_with_progress_or_a_commit_is_sought_to_the_first_offset_not_folded(
    folded: dict[tuple[str, int], int],
) -> None:
    consumer = Consumer({LABELS: 90, PREDICTIONS: 60}, committed={PREDICTIONS: 50})
    folded[("labels", 0)] = 79
    app, _pulse, _metrics = install(consumer, folded)
    app.tick()
    app.tick()
    assert sorted(consumer.sought) == [(LABELS, 80), (PREDICTIONS, 50)]


def test_nothing_is_sought_while_the_ingest_has_work_in_hand(
    folded: dict[tuple[str, int], int],
) -> None:
    consumer = Consumer({LABELS: 90})
    folded[("labels", 0)] = 79
    app, pulse, _metrics = install(consumer, folded)
    pulse.taken = 1  # a batch in flight: its offsets are not in the progress yet
    app.tick()
    app.tick()
    pulse.finished = 1
    pulse.queue.size = 3  # messages queued for the ingest
    app.tick()
    app.tick()
    assert consumer.sought == []
    pulse.queue.size = 0
    app.tick()
    pulse.taken, pulse.finished = 2, 2  # a batch came and went between two looks
    app.tick()
    assert consumer.sought == []
    folded[("labels", 0)] = 89  # and folded the rest: caught up
    app.tick()
    app.tick()
    assert consumer.sought == []


def test_a_rebalance_between_two_looks_starts_the_count_again(
    folded: dict[tuple[str, int], int],
) -> None:
    consumer = Consumer({LABELS: 90})
    app, _pulse, _metrics = install(consumer, folded)
    app.tick()
    app.rebalancing = True
    app.tick()
    app.rebalancing = False
    app.tick()
    assert consumer.sought == []
    app.tick()
    assert consumer.sought == [(LABELS, 0)]


def test_a_partition_revoked_between_the_assignment_and_its_position_is_left_alone(
    folded: dict[tuple[str, int], int],
) -> None:
    consumer = Consumer({LABELS: 90, PREDICTIONS: 10})
    folded[("predictions", 0)] = 9
    app, _pulse, _metrics = install(consumer, folded)
    assigned = consumer.assignment()
    consumer.assignment = lambda: assigned  # type: ignore[method-assign]  # a stale view
    del consumer.positions[LABELS]
    app.tick()
    app.tick()
    assert consumer.sought == []


def test_the_judge_watches_its_sketches_beside_the_ingest_on_its_own_pulse(
    folded: dict[tuple[str, int], int],
) -> None:
    """Two installs on one app (the worker's ingest and judge): each looks only at its own
    topics, judges idleness by its own agent, and counts under its own source."""
    sketches = TP("driftline.sketches", 0)
    consumer = Consumer({LABELS: 5, PREDICTIONS: 5, sketches: 30})
    folded.update({("labels", 0): 4, ("predictions", 0): 4})
    app, ingest_pulse, metrics = install(consumer, folded)
    judge_pulse, seen = IngestPulse(queue=Queue()), {0: 19}
    install_input_rewind(
        app, metrics, judge_pulse, {sketches.topic: "sketches"},
        lambda _source, part: seen.get(part, -1), agent="judge",
    )  # fmt: skip
    assert app.timer_names == ["rewind_dropped_input.ingest", "rewind_dropped_input.judge"]
    ingest_pulse.taken = 1  # the ingest is busy: that does not hold the judge back
    app.tick()
    judge_pulse.taken = judge_pulse.finished = 1  # a batch in between, finished: counts again
    app.tick()
    app.tick()
    assert consumer.sought == [(sketches, 20)]
    assert metrics.input_rewinds.labels(source="sketches")._value.get() == 1.0
    assert metrics.input_rewinds.labels(source="labels")._value.get() == 0.0
