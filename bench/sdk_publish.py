"""Publish rate of the producer SDK against a raw confluent-kafka producer, same broker, same run.

    .venv/bin/python bench/sdk_publish.py [--events 100000]   (needs `make kafka-up`)

Rows:
- raw confluent-kafka: pre-serialised bytes, same producer config (idempotent, acks=all, lz4,
  murmur2) -- the ceiling the SDK can reach;
- SDK send(): validated PredictionEvent objects, one message each (serialise + enqueue);
- SDK predict(): builds and validates the event from keyword arguments, like a model service;
- SDK send_batch(): PredictionBatch envelopes of 500 predictions.
Each row times enqueue + flush until every delivery report arrived. Prints a table; no asserts.
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from confluent_kafka import Producer
from rich.console import Console
from rich.table import Table

from schemas.events import PredictionEvent, to_json_bytes
from schemas.settings import Settings
from streams.producer import PredictionProducer
from streams.topics import ensure_topics


def _events(count: int) -> list[PredictionEvent]:
    now = datetime.now(UTC)
    return [
        PredictionEvent(
            event_id=uuid.uuid4().hex,
            model="bench",
            model_version="1",
            timestamp=now,
            features={"amount": float(i % 997), "country": "DE" if i % 3 else "FR", "n": i % 7},
            prediction=(i % 100) / 100,
        )
        for i in range(count)
    ]


def _raw(settings: Settings, events: list[PredictionEvent]) -> float:
    payloads = [(event.event_id, to_json_bytes(event)) for event in events]
    producer = Producer(
        {
            **settings.kafka.confluent_config(),
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 20,
            "compression.type": "lz4",
            "batch.size": 1_000_000,
            "queue.buffering.max.messages": 100_000,
            "partitioner": "murmur2_random",
        }
    )
    started = time.perf_counter()
    for key, value in payloads:
        while True:
            try:
                producer.produce(settings.topics.predictions, value=value, key=key)
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    producer.flush(60)
    return time.perf_counter() - started


def _sdk(settings: Settings, action: Callable[[PredictionProducer], None]) -> float:
    producer = PredictionProducer(settings, max_block_seconds=5.0)
    started = time.perf_counter()
    action(producer)
    producer.close(timeout_seconds=60)
    elapsed = time.perf_counter() - started
    assert producer.stats.failed == 0 and producer.stats.dropped == 0, producer.stats
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    count = parser.parse_args().events
    settings = Settings()
    settings = settings.model_copy(
        update={
            "topics": settings.topics.model_copy(update={"prefix": f"bench{uuid.uuid4().hex[:6]}."})
        }
    )
    ensure_topics(settings)
    events = _events(count)

    def send_each(producer: PredictionProducer) -> None:
        for event in events:
            producer.send(event)

    def predict_each(producer: PredictionProducer) -> None:
        for event in events:
            producer.predict(
                model=event.model,
                features=event.features,
                prediction=event.prediction,
                model_version="1",
            )

    def send_batches(producer: PredictionProducer) -> None:
        producer.send_batch(events, max_batch=500)

    rows = [
        ("raw confluent-kafka, pre-serialised (baseline)", _raw(settings, events)),
        ("SDK send(event)", _sdk(settings, send_each)),
        ("SDK predict(**fields) (validates)", _sdk(settings, predict_each)),
        ("SDK send_batch(events), 500 per envelope", _sdk(settings, send_batches)),
    ]
    table = Table(title=f"{count:,} predictions to {settings.kafka.bootstrap_servers}")
    table.add_column("producer")
    table.add_column("seconds", justify="right")
    table.add_column("predictions/s", justify="right")
    for name, seconds in rows:
        table.add_row(name, f"{seconds:.2f}", f"{count / seconds:,.0f}")
    Console().print(table)


if __name__ == "__main__":
    main()
