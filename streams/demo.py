"""`driftline demo`: publish a seeded example stream through the SDK and read it back.

This grows with the product; today it proves the foundation end to end: topics, the producer
SDK (single events and batch envelopes), delivery reports, and a plain consumer reading back.
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta

from confluent_kafka import Consumer
from rich.console import Console
from rich.progress import Progress

from schemas.events import LabelEvent, PredictionEvent
from schemas.settings import Settings
from streams.producer import LabelProducer, PredictionProducer
from streams.topics import ensure_topics

__all__ = ["run_demo"]


def _example(seed: int, count: int) -> tuple[list[PredictionEvent], list[LabelEvent]]:
    rng = random.Random(seed)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    predictions, labels = [], []
    for index in range(count):
        at = start + timedelta(seconds=index)
        amount = rng.lognormvariate(3.0, 1.0)
        score = min(1.0, amount / 200.0)
        event_id = f"demo-{seed}-{index}"
        predictions.append(
            PredictionEvent(
                event_id=event_id,
                model="fraud-scorer",
                model_version="1",
                timestamp=at,
                features={"amount": round(amount, 2), "country": rng.choice(["DE", "FR", "US"])},
                prediction=round(score, 4),
            )
        )
        labels.append(
            LabelEvent(
                event_id=event_id,
                model="fraud-scorer",
                timestamp=at + timedelta(minutes=5),
                label=int(rng.random() < score),
            )
        )
    return predictions, labels


def _count_back(settings: Settings, topic: str, expected: int, timeout_seconds: float) -> int:
    consumer = Consumer(
        {
            **settings.kafka.confluent_config(),
            "group.id": f"driftline-demo-{time.time_ns()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    seen, deadline = 0, time.monotonic() + timeout_seconds
    try:
        while seen < expected and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=1000, timeout=0.5):
                if message.error() is None:
                    seen += 1
    finally:
        consumer.close()
    return seen


def run_demo(seed: int = 7, count: int = 20_000, console: Console | None = None) -> bool:
    """Publish ``count`` predictions and labels, read them back; True when nothing was lost."""
    out = console or Console()
    settings = Settings()
    run_prefix = f"{settings.topics.prefix}demo{seed}-{time.strftime('%H%M%S')}."
    settings = settings.model_copy(
        update={"topics": settings.topics.model_copy(update={"prefix": run_prefix})}
    )
    created = ensure_topics(settings)
    out.print(f"topics: {', '.join(sorted(created))}")
    predictions, labels = _example(seed, count)
    started = time.perf_counter()
    with Progress(console=out) as progress:
        task = progress.add_task("publishing predictions and labels", total=2 * count)
        with PredictionProducer(settings) as producer, LabelProducer(settings) as label_producer:
            for start in range(0, count, 1000):
                producer.send_batch(predictions[start : start + 1000], max_batch=500)
                label_producer.send_many(labels[start : start + 1000])
                progress.advance(task, 2000)
    elapsed = time.perf_counter() - started
    out.print(
        f"published {2 * count:,} events in {elapsed:.2f} s "
        f"({2 * count / elapsed:,.0f} events/s) with delivery confirmed"
    )
    read_labels = _count_back(settings, settings.topics.labels, count, 60.0)
    out.print(f"read back {read_labels:,} of {count:,} labels from {settings.topics.labels}")
    return read_labels == count
