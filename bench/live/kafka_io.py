"""Broker-side views the benchmark needs: group progress, topic contents, cleanup."""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

__all__ = ["group_caught_up", "read_all"]


def _partitions(consumer: Consumer, topic: str) -> list[int]:
    metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
    if metadata is None or metadata.error is not None:
        return []
    return sorted(metadata.partitions)


def group_caught_up(bootstrap: str, group: str, topics: list[str]) -> bool:
    """True when ``group`` has committed every partition of ``topics`` up to its high watermark.

    The consumer is only used for OffsetFetch and watermark requests; it never joins the group.
    """
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False}
    )
    try:
        for topic in topics:
            parts = [TopicPartition(topic, p) for p in _partitions(consumer, topic)]
            committed = {tp.partition: tp.offset for tp in consumer.committed(parts, timeout=10)}
            for tp in parts:
                _, high = consumer.get_watermark_offsets(tp, timeout=10)
                if high > 0 and committed.get(tp.partition, -1) < high:
                    return False
        return True
    finally:
        consumer.close()


def read_all(
    bootstrap: str, topic: str, *, idle_seconds: float = 2.0, timeout: float = 60.0
) -> list[Any]:
    """Every message of ``topic`` from the beginning, until none arrives for ``idle_seconds``."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-reader-{time.monotonic_ns()}",
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.assign(
            [TopicPartition(topic, p, OFFSET_BEGINNING) for p in _partitions(consumer, topic)]
        )
        messages: list[Any] = []
        deadline = time.monotonic() + timeout
        last = time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - last < idle_seconds:
            message = consumer.poll(0.2)
            if message is not None and message.error() is None:
                messages.append(message)
                last = time.monotonic()
        return messages
    finally:
        consumer.close()
