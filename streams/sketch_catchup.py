"""Read a model's sketches messages back from Kafka: the judge's catch-up after a crash.

A judge stores its state every few seconds, not after every batch (a state is hundreds of KB).
Before it applies a batch it has not stored, it marks the model with the offset of that batch's
first message. A worker that loads a judge whose mark is still there lost the batches since:
their offsets may already be committed, so they are read again from the sketches topic (kept
for days) and applied before anything newer; the judge's record drops what it had applied.
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any, Final

from schemas.settings import Settings

__all__ = ["read_model_envelopes"]

_IDLE_SECONDS: Final = 30.0


def read_model_envelopes(
    settings: Settings, topic: str, partition: int, low: int, high: int, model: str
) -> list[tuple[int, dict[str, Any]]]:
    """(offset, envelope) of ``model``'s messages in ``topic[partition]``, ``low <= offset <
    high``, in offset order. Runs in a thread: it blocks until the range is read."""
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    if high <= low:
        return []
    consumer = Consumer(
        {
            **settings.kafka.confluent_config(),
            "group.id": f"{settings.topics.prefix}judge-catchup",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    key = model.encode()
    found: list[tuple[int, dict[str, Any]]] = []
    try:
        consumer.assign([TopicPartition(topic, partition, low)])
        idle_since = time.monotonic()
        while True:
            messages = consumer.consume(num_messages=500, timeout=0.5)
            if not messages:
                if time.monotonic() - idle_since > _IDLE_SECONDS:
                    raise RuntimeError(
                        f"{topic}[{partition}] delivered nothing for {_IDLE_SECONDS:.0f} s "
                        f"before offset {high} while a judge caught up: is Kafka up?"
                    )
                continue
            idle_since = time.monotonic()
            for message in messages:
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        return found
                    raise RuntimeError(f"reading {topic}[{partition}] failed: {error}")
                offset = int(message.offset() or 0)
                if offset >= high:
                    return found
                value = message.value()
                if message.key() == key and value:
                    # A malformed message is skipped (and logged) by the judge when it is live.
                    with contextlib.suppress(ValueError):
                        found.append((offset, json.loads(value)))
                if offset >= high - 1:
                    return found
    finally:
        consumer.close()
