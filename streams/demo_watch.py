"""Follow the alerts and models topics in a background thread and tell a human what happens.

The demo prints each alert and model event the moment it is on the wire, exactly as on-call
tooling and the workers see them; :class:`TopicWatch` also keeps them for the final summary.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable

from schemas.events import Alert, InvalidEvent, ModelEvent, parse_event
from schemas.settings import Settings

__all__ = ["TopicWatch", "describe_model_event"]


def describe_model_event(event: ModelEvent) -> str:
    """One line for a terminal."""
    metrics = ", ".join(
        f"{name} {value:.3f}" for name, value in sorted(event.metrics.items()) if "accuracy" in name
    )
    reason = f" ({event.reason})" if event.reason else ""
    details = f"; {metrics}" if metrics else ""
    what = _MEANING.get(event.type, "")
    version = f" version {event.version}" if event.version is not None else ""
    return f"{event.type.upper():10} {event.model}{version}{what}{details}{reason}"


_MEANING = {
    "registered": ", a challenger retrained on the labelled data since the alert",
    "promoted": ", now the champion; workers switch to its reference",
    "rejected": ", not better than the champion",
}


class TopicWatch:
    """A thread reading ``alerts`` and ``models`` from the beginning until `stop`."""

    def __init__(
        self,
        settings: Settings,
        *,
        on_alert: Callable[[Alert], None],
        on_model_event: Callable[[ModelEvent], None],
    ) -> None:
        self.settings = settings
        self.on_alert = on_alert
        self.on_model_event = on_model_event
        self.alerts: list[Alert] = []
        self.model_events: list[ModelEvent] = []
        self.invalid = 0
        self._changed = threading.Condition()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-watch", daemon=True)

    def start(self) -> TopicWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=15)

    def wait_for(self, predicate: Callable[[TopicWatch], bool], timeout: float) -> bool:
        """Block until ``predicate(self)`` holds (checked on every new event) or the timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self), timeout=timeout)

    def _run(self) -> None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        topics = self.settings.topics
        consumer = Consumer(
            {
                **self.settings.kafka.confluent_config(),
                "group.id": f"driftline-demo-watch-{uuid.uuid4().hex}",  # never committed
                "enable.auto.commit": False,
            }
        )
        try:
            assignment = []
            for topic in (topics.alerts, topics.models):
                metadata = consumer.list_topics(topic, timeout=10).topics[topic]
                assignment += [
                    TopicPartition(topic, p, OFFSET_BEGINNING) for p in metadata.partitions
                ]
            consumer.assign(assignment)
            while not self._stopping.is_set():
                message = consumer.poll(0.2)
                if message is None or message.error() is not None:
                    continue
                self._handle(message.topic() == topics.alerts, message.value())
        finally:
            consumer.close()

    def _handle(self, is_alert: bool, raw: bytes | None) -> None:
        try:
            if is_alert:
                alert = parse_event(raw, Alert)
            else:
                event = parse_event(raw, ModelEvent)
        except InvalidEvent:
            self.invalid += 1
            return
        with self._changed:
            if is_alert:
                self.alerts.append(alert)
                self.on_alert(alert)
            else:
                self.model_events.append(event)
                self.on_model_event(event)
            self._changed.notify_all()
