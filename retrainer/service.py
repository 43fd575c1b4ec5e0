"""The retrainer process: consumes ``driftline.alerts`` in its own group, one alert at a time.

Commits are manual: an alert's offset is committed only after its outcome is recorded (MLflow
written, ModelEvents acknowledged). A transient failure (MLflow or Kafka unreachable) leaves
it uncommitted: the consumer seeks back to it and tries again after a growing pause, so a
restart or another retrainer also picks it up. An invalid message is logged and committed;
an unexpected error publishes a ``rejected`` outcome and moves on (no poison pill).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from retrainer.config import RetrainerConfig
from retrainer.errors import (
    AlertInProgress,
    DatasetUnavailable,
    PublishError,
    RegistryUnavailable,
)
from retrainer.pipeline import Outcome, Retrainer
from schemas.events import Alert, InvalidEvent, parse_event
from schemas.settings import Settings

__all__ = ["RetrainerService", "build_retrainer", "run_retrainer"]

TRANSIENT = (RegistryUnavailable, DatasetUnavailable, PublishError, AlertInProgress)
log = logging.getLogger("driftline.retrainer.service")


def _utc_now() -> datetime:
    return datetime.now(UTC)


class RetrainerService:
    """The consumer loop around a :class:`Retrainer`."""

    def __init__(
        self,
        settings: Settings,
        config: RetrainerConfig,
        retrainer: Retrainer,
        *,
        consumer: Any = None,
    ) -> None:
        self.settings = settings
        self.config = config
        self.retrainer = retrainer
        self.group = config.group_for(settings.topics.prefix)
        self.topic = settings.topics.alerts
        if consumer is None:
            from confluent_kafka import Consumer

            consumer = Consumer(
                {
                    **settings.kafka.confluent_config(),
                    "group.id": self.group,
                    "enable.auto.commit": False,
                    "auto.offset.reset": "earliest",
                    "max.poll.interval.ms": config.max_poll_interval_seconds * 1000,
                }
            )
        self.consumer = consumer
        self.outcomes: list[Outcome] = []
        self.uncommitted = 0
        """Times an alert was left uncommitted after a transient failure."""
        self._pause = config.backoff_seconds

    def run(self, stop: threading.Event | None = None, *, max_alerts: int | None = None) -> None:
        """Consume until ``stop`` is set (or ``max_alerts`` alerts were committed)."""
        stop = stop or threading.Event()
        self.consumer.subscribe([self.topic])
        committed = 0
        try:
            while not stop.is_set() and (max_alerts is None or committed < max_alerts):
                message = self.consumer.poll(self.config.poll_seconds)
                if message is None:
                    continue
                if message.error() is not None:
                    log.warning("consumer_error error=%s", message.error())
                    continue
                if self._process(message, stop):
                    committed += 1
        finally:
            self.consumer.close()

    def _process(self, message: Any, stop: threading.Event) -> bool:
        """Handle one alert message; True when its offset was committed."""
        try:
            alert = parse_event(message.value(), Alert)
        except InvalidEvent as exc:
            log.warning("invalid_alert offset=%s error=%s", message.offset(), exc)
            return self._commit(message)
        try:
            outcome = self.retrainer.handle(alert)
        except TRANSIENT as exc:
            self.uncommitted += 1
            log.error(
                "alert_uncommitted alert=%s model=%s retry_in_s=%.1f error=%s",
                alert.alert_id, alert.model, self._pause, exc,
            )  # fmt: skip
            self._rewind(message)
            stop.wait(self._pause)
            self._pause = min(max(self._pause * 2, 0.1), self.config.backoff_max_seconds)
            return False
        except Exception as exc:
            log.exception("alert_failed alert=%s model=%s", alert.alert_id, alert.model)
            try:
                outcome = self.retrainer.reject(
                    alert, f"internal error: {type(exc).__name__}: {exc}"
                )
            except TRANSIENT:
                self._rewind(message)
                return False
        self._pause = self.config.backoff_seconds
        self.outcomes.append(outcome)
        return self._commit(message)

    def _rewind(self, message: Any) -> None:
        from confluent_kafka import KafkaException, TopicPartition

        try:
            self.consumer.seek(
                TopicPartition(message.topic(), message.partition(), message.offset())
            )
        except KafkaException as exc:  # revoked meanwhile: the new owner reads it again
            log.warning("seek_failed partition=%s error=%s", message.partition(), exc)

    def _commit(self, message: Any) -> bool:
        from confluent_kafka import KafkaException

        try:
            self.consumer.commit(message=message, asynchronous=False)
        except KafkaException as exc:  # revoked: another retrainer gets it, idempotently
            log.warning("commit_failed offset=%s error=%s", message.offset(), exc)
            return False
        return True


def build_retrainer(
    settings: Settings,
    config: RetrainerConfig,
    *,
    clock: Callable[[], datetime] = _utc_now,
    trainer: Callable[..., Any] | None = None,
) -> Retrainer:
    """A Retrainer wired to the configured MLflow, Kafka, trainer and monitor configuration."""
    from retrainer.publisher import ModelEventPublisher
    from retrainer.registry import Registry
    from retrainer.trainer import load_trainer
    from schemas.monitor_config import load_monitor_config

    monitor = load_monitor_config(settings.monitor_config)
    registry = Registry.from_config(settings.mlflow.tracking_uri, config)
    return Retrainer(
        settings,
        config,
        registry=registry,
        publisher=ModelEventPublisher(settings),
        trainer=trainer or load_trainer(config.trainer),
        clock=clock,
        monitor=monitor,
    )


def run_retrainer(settings: Settings, config: RetrainerConfig, *, loglevel: str = "info") -> None:
    """Run the service until SIGTERM or SIGINT; prints one parseable banner line first."""
    from retrainer.retry import quiet_mlflow_http_retries

    logging.basicConfig(
        level=loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    quiet_mlflow_http_retries()
    retrainer = build_retrainer(settings, config)
    service = RetrainerService(settings, config, retrainer)
    stop = threading.Event()

    def request_stop(signum: int, _frame: Any) -> None:
        log.info("stopping on signal %d", signum)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    print(
        f"driftline retrainer: group={service.group} alerts={service.topic} "
        f"models={settings.topics.models} tracking_uri={settings.mlflow.tracking_uri} "
        f"trainer={config.trainer}",
        flush=True,
    )
    started = time.monotonic()
    service.run(stop)
    log.info(
        "stopped after %.0f s: %d outcomes, %d times an alert was left uncommitted",
        time.monotonic() - started, len(service.outcomes), service.uncommitted,
    )  # fmt: skip
