"""Read a model's sketches messages back from Kafka: the judge's catch-up after a crash.

A judge stores its state every few seconds, not after every batch (a state is hundreds of KB).
Before it applies a batch it has not stored, it marks the model with the offset of that batch's
first message. A worker that loads a judge whose mark is still there lost the batches since:
their offsets may already be committed, so they are read again from the sketches topic (kept
for days) and applied before anything newer; the judge's record drops what it had applied.
"""

from __future__ import annotations

import contextlib
from typing import Any, Final

from schemas.settings import Settings
from streams import json_read

__all__ = ["read_model_envelopes"]

_IDLE_SECONDS: Final = 30.0


def read_model_envelopes(
    settings: Settings, topic: str, partition: int, low: int, high: int, model: str
) -> list[tuple[int, dict[str, Any]]]:
    """(offset, envelope) of ``model``'s messages in ``topic[partition]``, ``low <= offset <
    high``, in offset order. Runs in a thread: it blocks until the range is read."""
    from confluent_kafka import Consumer

    from streams.kafka_snapshot import read_range

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
        for messages in read_range(
            consumer, topic, partition, low, high, idle_seconds=_IDLE_SECONDS,
            where="a judge was catching up: is Kafka up?",
        ):  # fmt: skip
            for message in messages:
                value = message.value()
                if message.key() == key and value:
                    # A malformed message is skipped (and logged) by the judge when it is live.
                    with contextlib.suppress(ValueError):
                        found.append((int(message.offset() or 0), json_read.loads_own(value)))
    finally:
        consumer.close()
    return found
