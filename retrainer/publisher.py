"""ModelEvents on ``driftline.models`` (key = model): one for every outcome.

Events triggered by an alert have deterministic ids (``<alert_id>:<type>``), so a consumer can
drop the duplicate that a crash between publishing and committing may cause. Publishing waits
for the broker's acknowledgement; a failure raises :class:`PublishError` and the alert stays
uncommitted.

>>> from datetime import UTC, datetime
>>> event = model_event("rejected", model="churn", version=None, aliases=[], run_id=None,
...                     trigger_alert_id="a-1", metrics={}, reference=None,
...                     reason="too few labels", now=datetime(2024, 5, 1, tzinfo=UTC))
>>> event.event_id, event.type, event.reason
('a-1:rejected', 'rejected', 'too few labels')
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from retrainer.errors import PublishError
from schemas.events import MAX_TEXT_LENGTH, ModelEvent, ModelEventType, to_json_bytes
from schemas.settings import Settings

__all__ = ["ModelEventPublisher", "model_event"]


def model_event(
    type: ModelEventType,
    *,
    model: str,
    version: str | None,
    aliases: Sequence[str],
    run_id: str | None,
    trigger_alert_id: str | None,
    metrics: Mapping[str, float],
    reference: dict[str, Any] | str | None,
    reason: str | None,
    now: datetime,
) -> ModelEvent:
    """A validated ModelEvent; non-finite metrics are dropped, long reasons shortened."""
    if reason is not None and len(reason) > MAX_TEXT_LENGTH:
        reason = reason[: MAX_TEXT_LENGTH - 3] + "..."
    event_id = (
        f"{trigger_alert_id}:{type}"
        if trigger_alert_id is not None
        else f"{model}:{version}:{type}:{uuid.uuid4().hex[:12]}"
    )
    return ModelEvent(
        event_id=event_id[:256],
        type=type,
        model=model,
        version=version,
        aliases=sorted(aliases),
        run_id=run_id,
        trigger_alert_id=trigger_alert_id,
        metrics={k: float(v) for k, v in metrics.items() if math.isfinite(float(v))},
        reference=reference,
        reason=reason,
        timestamp=now,
    )


class ModelEventPublisher:
    """Publishes ModelEvents and waits for the acknowledgement of each."""

    def __init__(
        self, settings: Settings, *, producer: Any = None, timeout_seconds: float = 30.0
    ) -> None:
        self.topic = settings.topics.models
        self.timeout_seconds = timeout_seconds
        if producer is None:
            from confluent_kafka import Producer

            producer = Producer(
                {
                    **settings.kafka.confluent_config(),
                    "enable.idempotence": True,
                    "acks": "all",
                    "message.max.bytes": 2_000_000,
                    "message.timeout.ms": int(timeout_seconds * 1000),
                }
            )
        self._producer = producer
        self.published: list[ModelEvent] = []
        """Every event acknowledged by this publisher, in order (for logs and tests)."""

    def publish(self, event: ModelEvent) -> None:
        errors: list[str] = []

        def report(error: Any, _message: Any) -> None:
            if error is not None:
                errors.append(str(error))

        try:
            self._producer.produce(
                self.topic, key=event.model.encode(), value=to_json_bytes(event), on_delivery=report
            )
        except Exception as exc:  # BufferError (queue full) or KafkaException
            raise PublishError(f"cannot publish {event.type} of {event.model}: {exc}") from exc
        if self._producer.flush(self.timeout_seconds) > 0:
            raise PublishError(
                f"{event.type} of {event.model} was not acknowledged within "
                f"{self.timeout_seconds:.0f} s: check the brokers"
            )
        if errors:
            raise PublishError(f"Kafka refused {event.type} of {event.model}: {errors[0]}")
        self.published.append(event)

    def close(self) -> None:
        self._producer.flush(self.timeout_seconds)
