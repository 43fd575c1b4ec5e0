"""Follow ``driftline.alerts``: for humans (one readable line) and pipes (``--json``, one object
per line, exactly the message on the wire).

A plain confluent-kafka consumer assigned to every partition, no consumer group: tailing never
moves anybody's offsets.

>>> from datetime import UTC, datetime
>>> from schemas.events import Alert, AlertReference, AlertWindow
>>> t = datetime(2024, 5, 1, tzinfo=UTC)
>>> alert = Alert(alert_id="a1", fingerprint="f1", status="firing", severity="critical",
...     model="churn", model_version=None, kind="feature_drift", feature="age", segment=None,
...     detector="psi", statistic=0.31, threshold=0.2, window=AlertWindow(start=t, end=t, count=5),
...     reference=AlertReference(source="warmup", model_version=None, count=100), fired_at=t,
...     emitted_at=t, summary="age drifted")
>>> AlertFilter(model="churn", severity="critical").accepts(alert)
True
>>> describe_alert(alert)
'2024-05-01T00:00:00+00:00 FIRING   critical churn feature_drift age psi=0.31 > 0.2  age drifted'
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from schemas.events import Alert, InvalidEvent, parse_event
from schemas.settings import Settings

__all__ = ["AlertFilter", "describe_alert", "tail_alerts"]


@dataclass(frozen=True)
class AlertFilter:
    """Which alerts to show; None matches everything."""

    model: str | None = None
    severity: str | None = None
    status: str | None = None

    def accepts(self, alert: Alert) -> bool:
        return (
            (self.model is None or alert.model == self.model)
            and (self.severity is None or alert.severity == self.severity)
            and (self.status is None or alert.status == self.status)
        )


def describe_alert(alert: Alert) -> str:
    """One line for a terminal."""
    comparison = ">" if alert.status == "firing" else "<="
    feature = f" {alert.feature}" if alert.feature else ""
    segment = f" [{alert.segment}]" if alert.segment else ""
    return (
        f"{alert.fired_at.isoformat()} {alert.status.upper():8} {alert.severity} {alert.model} "
        f"{alert.kind}{feature}{segment} {alert.detector}={alert.statistic:.4g} {comparison} "
        f"{alert.threshold:.4g}  {alert.summary}"
    )


def tail_alerts(
    settings: Settings,
    *,
    alert_filter: AlertFilter | None = None,
    from_beginning: bool = False,
    max_alerts: int | None = None,
    idle_timeout_seconds: float | None = None,
    on_invalid: Callable[[bytes | None, InvalidEvent], None] | None = None,
) -> Iterator[tuple[bytes, Alert]]:
    """Yield ``(raw message, alert)`` as alerts arrive, until ``max_alerts`` or idle timeout."""
    from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, TopicPartition

    topic = settings.topics.alerts
    consumer = Consumer(
        {
            **settings.kafka.confluent_config(),
            "group.id": f"driftline-tail-{uuid.uuid4().hex}",  # required, never committed
            "enable.auto.commit": False,
            "enable.partition.eof": False,
        }
    )
    selected = alert_filter or AlertFilter()
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        found = metadata.topics.get(topic)
        if found is None or found.error is not None:
            raise RuntimeError(
                f"alerts topic {topic!r} does not exist at {settings.kafka.bootstrap_servers}: "
                f"run `driftline topics create` or start a worker"
            )
        start = OFFSET_BEGINNING if from_beginning else OFFSET_END
        consumer.assign([TopicPartition(topic, p, start) for p in sorted(found.partitions)])
        shown = 0
        last_activity = time.monotonic()
        while max_alerts is None or shown < max_alerts:
            message = consumer.poll(0.2)
            if message is None or message.error() is not None:
                if (
                    idle_timeout_seconds is not None
                    and time.monotonic() - last_activity > idle_timeout_seconds
                ):
                    return
                continue
            last_activity = time.monotonic()
            raw = message.value()
            try:
                alert = parse_event(raw, Alert)
            except InvalidEvent as exc:
                if on_invalid is not None:
                    on_invalid(raw, exc)
                continue
            if selected.accepts(alert):
                shown += 1
                yield raw or b"", alert
    finally:
        consumer.close()
