"""Helpers shared by the tests that run driftline processes on the real broker.

Import as ``from kafka_helpers import ...``: pytest puts ``tests/`` on ``sys.path`` (rootdir
conftest, no ``__init__.py``). Processes themselves come from the ``driftline_processes``
fixture (``streams.processes.ProcessGroup``).
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from datetime import datetime

    from schemas.events import PredictionEvent
    from schemas.settings import Settings
    from streams.processes import ManagedProcess

__all__ = ["describe_group", "read_topic", "scrape", "shifted_x_stream", "stack_dump", "wait_for"]


def read_topic(
    bootstrap: str,
    topic: str,
    *,
    until: Callable[[list[dict[str, Any]]], bool],
    timeout: float,
    settle: float = 0.0,
) -> list[dict[str, Any]]:
    """JSON messages of every partition of ``topic``, from the beginning, until
    ``until(messages)`` (then ``settle`` seconds more, to catch anything unexpected) or the
    timeout. Waits for the topic to exist."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-reader-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
        }
    )
    try:
        deadline = time.monotonic() + timeout
        partitions: list[int] = []
        while not partitions and time.monotonic() < deadline:
            metadata = consumer.list_topics(topic, timeout=5).topics.get(topic)
            if metadata is not None and metadata.error is None:
                partitions = sorted(metadata.partitions)
            else:
                time.sleep(0.5)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        found: list[dict[str, Any]] = []
        settled_at: float | None = None
        while time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is not None and message.error() is None:
                found.append(json.loads(message.value() or b"null"))
            if settled_at is None and until(found):
                settled_at = time.monotonic() + settle
            if settled_at is not None and time.monotonic() >= settled_at:
                break
        return found
    finally:
        consumer.close()


def describe_group(settings: Settings) -> str:
    """The worker group's state, members and assignments as the broker sees them: for a
    failure message when a worker never gets past its startup."""
    from confluent_kafka.admin import AdminClient

    from streams.app import app_id_for

    group = app_id_for(settings)
    admin = AdminClient({"bootstrap.servers": settings.kafka.bootstrap_servers})
    try:
        found = admin.describe_consumer_groups([group])[group].result(timeout=10)
    except Exception as exc:  # a diagnostic: say why there is none
        return f"group {group}: not described ({exc})"
    lines = [f"group {group}: {found.state}, coordinator {found.coordinator}"]
    for member in found.members:
        parts = sorted(f"{tp.topic}[{tp.partition}]" for tp in member.assignment.topic_partitions)
        lines.append(f"  {member.client_id} {member.host}: {', '.join(parts) or 'nothing'}")
    return "\n".join(lines)


def stack_dump(
    worker: ManagedProcess,
    wait: float = 3.0,
    characters: int = 100_000,
    which: signal.Signals = signal.SIGUSR1,
) -> str:
    """What a running worker writes to its log on ``which``: where a stuck worker waits.

    SIGUSR1: every thread and asyncio task with its stack (mode's ``cry``); SIGUSR2: the flow
    report (`streams.flow_report`): Faust's flow switches, paused partitions, and each task's
    await chain followed into async generators, where SIGUSR1's stacks stop."""
    if not worker.alive():
        return f"{worker.name} is not running: no stacks"
    before = len(worker.log())
    os.kill(worker.pid, which)
    time.sleep(wait)
    return worker.log()[before:][:characters]


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.5) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` seconds passed; its last answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def wait_until_steady(read: Callable[[], float], steady: float, timeout: float) -> bool:
    """Poll ``read`` until it gave one value for ``steady`` seconds; False after ``timeout``."""
    deadline = time.monotonic() + timeout
    value, since = read(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = read()
        if now != value:
            value, since = now, time.monotonic()
        elif time.monotonic() - since >= steady:
            return True
    return False


def scrape(worker: ManagedProcess) -> dict[str, float]:
    """A worker's /metrics samples as ``{'name{labels}': value}`` (URL from its banner)."""
    from streams.processes import scrape_metrics

    return scrape_metrics(worker.banner.group(1))


def shifted_x_stream(
    *, model: str, id_prefix: str, seed: int, total: int, shift_at: int, start: datetime
) -> list[PredictionEvent]:
    """One event per second; ``x`` moves by 1.5 standard deviations at ``shift_at``, ``y`` and
    ``plan`` never change. The same seed gives the same stream."""
    from datetime import timedelta

    import numpy as np

    from schemas.events import PredictionEvent

    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 1.0, total)
    x[shift_at:] += 1.5
    y = rng.normal(5.0, 2.0, total)
    plans = rng.choice(["free", "pro", "team"], total, p=[0.5, 0.3, 0.2])
    return [
        PredictionEvent(
            event_id=f"{id_prefix}{i}",
            model=model,
            timestamp=start + timedelta(seconds=i),
            features={"x": float(x[i]), "y": float(y[i]), "plan": str(plans[i])},
            prediction=float(1 / (1 + np.exp(-y[i] + 5))),
        )
        for i in range(total)
    ]
