"""Producer SDK: how model services publish predictions and labels to driftline.

Three lines are enough::

    from streams.producer import PredictionProducer
    with PredictionProducer() as producer:
        event_id = producer.predict(model="churn", features={"age": 41}, prediction=0.83)

Sending never blocks a request path for long. librdkafka keeps a bounded local queue; when it
is full the ``on_full`` policy decides: ``"wait"`` serves delivery reports for up to
``max_block_seconds`` and then drops, ``"drop"`` drops at once. Dropped events and delivery
failures are counted in :attr:`KafkaEventProducer.stats` and reported to ``on_failure``.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal, Self

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from schemas.events import LabelEvent, PredictionBatch, PredictionEvent, to_json_bytes
from schemas.settings import Settings
from streams.partitioning import partition_for

__all__ = [
    "DeliveryFailure",
    "KafkaEventProducer",
    "LabelProducer",
    "OnFull",
    "PredictionProducer",
    "ProducerStats",
]

OnFull = Literal["wait", "drop"]


@dataclass(frozen=True)
class DeliveryFailure:
    """An event that did not reach Kafka: either dropped locally or refused by the broker."""

    key: str
    topic: str
    reason: str
    dropped_locally: bool


@dataclass
class ProducerStats:
    """Counters of one producer; read them, or export them as metrics."""

    enqueued: int = 0
    delivered: int = 0
    failed: int = 0
    dropped: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + amount)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class KafkaEventProducer:
    """Shared machinery: idempotent, ``acks=all``, murmur2 keys, bounded queue, delivery reports.

    A daemon thread serves delivery reports every ``poll_interval_seconds`` so failures reach
    ``on_failure`` even while the service is not sending.
    """

    def __init__(
        self,
        topic: str,
        settings: Settings | None = None,
        *,
        on_full: OnFull = "wait",
        max_block_seconds: float = 0.05,
        queue_max_messages: int = 100_000,
        delivery_timeout_seconds: float = 30.0,
        linger_ms: int = 20,
        on_failure: Callable[[DeliveryFailure], None] | None = None,
        extra_config: Mapping[str, str | int | float | bool] | None = None,
        poll_interval_seconds: float = 0.1,
    ) -> None:
        if on_full not in ("wait", "drop"):
            raise ValueError(f"on_full must be 'wait' or 'drop', got {on_full!r}")
        self.settings = settings or Settings()
        self.topic = topic
        self.on_full = on_full
        self.max_block_seconds = max_block_seconds
        self.on_failure = on_failure
        self.stats = ProducerStats()
        config: dict[str, Any] = {
            **self.settings.kafka.confluent_config(),
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": linger_ms,
            "compression.type": "lz4",
            "batch.size": 1_000_000,
            "queue.buffering.max.messages": queue_max_messages,
            "message.timeout.ms": int(delivery_timeout_seconds * 1000),
            # Same key -> partition mapping as Java clients and Faust (aiokafka): the label join
            # relies on predictions and labels of one event_id sharing a partition.
            "partitioner": "murmur2_random",
        }
        config.update(extra_config or {})
        self._producer = Producer(config)
        self._partition_counts: dict[str, int] = {}
        self._closed = threading.Event()
        self._poller = threading.Thread(
            target=self._serve_reports,
            args=(poll_interval_seconds,),
            daemon=True,
            name=f"driftline-producer-{topic}",
        )
        self._poller.start()

    # -- sending ---------------------------------------------------------------------------

    def send_raw(self, key: str, value: bytes, partition: int | None = None) -> bool:
        """Enqueue one message; True when enqueued, False when dropped by the full-queue policy."""
        if self._closed.is_set():
            raise RuntimeError("producer is closed; create a new one")
        deadline = time.monotonic() + (self.max_block_seconds if self.on_full == "wait" else 0.0)
        kwargs: dict[str, Any] = {"key": key.encode(), "value": value, "on_delivery": self._report}
        if partition is not None:
            kwargs["partition"] = partition
        while True:
            try:
                self._producer.produce(self.topic, **kwargs)
                self.stats.add("enqueued")
                return True
            except BufferError:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._drop(key, "local queue full")
                    return False
                self._producer.poll(min(remaining, 0.01))

    def flush(self, timeout_seconds: float = 30.0) -> int:
        """Wait for outstanding deliveries; returns how many are still in flight at the timeout."""
        return int(self._producer.flush(timeout_seconds))

    def close(self, timeout_seconds: float = 30.0) -> int:
        """Flush, stop the report thread; what is still queued after the timeout is failed."""
        if self._closed.is_set():
            return 0
        remaining = self.flush(timeout_seconds)
        self._closed.set()
        self._poller.join(timeout=5)
        if remaining:
            self.stats.add("failed", remaining)
        return remaining

    def partitions(self, timeout_seconds: float = 10.0) -> int:
        """Partition count of the topic (cached), needed to place batch envelopes by key."""
        if self.topic not in self._partition_counts:
            metadata = self._producer.list_topics(self.topic, timeout=timeout_seconds)
            topic = metadata.topics.get(self.topic)
            if topic is None or topic.error is not None or not topic.partitions:
                raise KafkaException(
                    f"topic {self.topic!r} has no partitions; run `driftline topics create`"
                )
            self._partition_counts[self.topic] = len(topic.partitions)
        return self._partition_counts[self.topic]

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- delivery reports --------------------------------------------------------------------

    def _serve_reports(self, interval: float) -> None:
        while not self._closed.is_set():
            self._producer.poll(interval)

    def _report(self, error: KafkaError | None, message: Message) -> None:
        if error is None:
            self.stats.add("delivered")
            return
        self.stats.add("failed")
        if self.on_failure is not None:
            key = message.key()
            self.on_failure(
                DeliveryFailure(
                    key=key.decode(errors="replace") if isinstance(key, bytes) else "",
                    topic=self.topic,
                    reason=error.str(),
                    dropped_locally=False,
                )
            )

    def _drop(self, key: str, reason: str) -> None:
        self.stats.add("dropped")
        if self.on_failure is not None:
            self.on_failure(DeliveryFailure(key, self.topic, reason, dropped_locally=True))


class PredictionProducer(KafkaEventProducer):
    """Publishes :class:`PredictionEvent`s (one per message, or batch envelopes per partition)."""

    def __init__(self, settings: Settings | None = None, **options: Any) -> None:
        settings = settings or Settings()
        super().__init__(settings.topics.predictions, settings, **options)

    def send(self, event: PredictionEvent) -> bool:
        """Publish a validated event keyed by its ``event_id``."""
        return self.send_raw(event.event_id, to_json_bytes(event))

    def predict(
        self,
        *,
        model: str,
        features: Mapping[str, float | int | str | bool | None],
        prediction: float | int | str | bool,
        scores: Mapping[str, float] | None = None,
        model_version: str | None = None,
        segment: Mapping[str, str] | None = None,
        event_id: str | None = None,
        timestamp: datetime | None = None,
    ) -> str:
        """Build, validate and publish one prediction; returns its ``event_id`` for the label."""
        event = PredictionEvent(
            event_id=event_id or uuid.uuid4().hex,
            model=model,
            model_version=model_version,
            timestamp=timestamp or _utc_now(),
            features=dict(features),
            prediction=prediction,
            scores=dict(scores) if scores is not None else None,
            segment=dict(segment) if segment is not None else None,
        )
        self.send(event)
        return event.event_id

    def send_batch(self, events: Sequence[PredictionEvent], max_batch: int = 1_000) -> int:
        """Publish many predictions as envelopes, one per (model, partition of the event_id).

        Each envelope goes to the partition its events' keys map to, so labels (keyed by
        ``event_id``) still meet their predictions in one partition. Returns envelopes enqueued.
        """
        partitions = self.partitions()
        groups: dict[tuple[str, str | None, int], list[PredictionEvent]] = {}
        for event in events:
            slot = partition_for(event.event_id.encode(), partitions)
            groups.setdefault((event.model, event.model_version, slot), []).append(event)
        sent = 0
        for (model, version, slot), group in groups.items():
            for start in range(0, len(group), max_batch):
                chunk = group[start : start + max_batch]
                batch = PredictionBatch(
                    batch_id=uuid.uuid4().hex,
                    model=model,
                    model_version=version,
                    predictions=chunk,
                )
                if self.send_raw(batch.batch_id, to_json_bytes(batch), partition=slot):
                    sent += 1
        return sent


class LabelProducer(KafkaEventProducer):
    """Publishes :class:`LabelEvent`s keyed by the prediction's ``event_id``."""

    def __init__(self, settings: Settings | None = None, **options: Any) -> None:
        settings = settings or Settings()
        super().__init__(settings.topics.labels, settings, **options)

    def send(self, event: LabelEvent) -> bool:
        return self.send_raw(event.event_id, to_json_bytes(event))

    def label(
        self,
        *,
        event_id: str,
        model: str,
        label: float | int | str | bool,
        timestamp: datetime | None = None,
    ) -> bool:
        """Publish the ground truth of one earlier prediction."""
        return self.send(
            LabelEvent(
                event_id=event_id,
                model=model,
                label=label,
                timestamp=timestamp or _utc_now(),
            )
        )

    def send_many(self, events: Iterable[LabelEvent]) -> int:
        return sum(1 for event in events if self.send(event))
