"""Forwards ``driftline.alerts`` to Alertmanager (``POST {url}/api/v2/alerts``), at least once.

A confluent-kafka consumer in its own group reads alerts in batches; each batch is collapsed to
the latest state per fingerprint and posted. The batch's offsets are committed only after
Alertmanager accepted it; Alertmanager deduplicates by labels, so a re-post is harmless.

Error policy:
- invalid message on the topic: logged, counted, skipped (committed with its batch);
- connection error, timeout or any HTTP error but 400/422: the batch is not committed, the
  consumer seeks back and retries after an exponential backoff with jitter (polling goes on,
  so the group membership survives a long outage);
- HTTP 400/422 (Alertmanager refused our payload): logged with its answer, counted, committed.

Alertmanager expires a firing alert at its ``endsAt``. The bridge keeps the episodes that are
firing in memory, rebuilt from the topic when partitions are assigned (from the oldest retained
message up to where forwarding resumes), and re-posts them every ``resend_seconds`` with
``endsAt`` four resend periods ahead, as Prometheus does. If the bridge stops, Alertmanager
resolves them after that time. Episodes whose firing alert left the topic's retention are not
rebuilt.
"""

from __future__ import annotations

import logging
import random
import signal
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

from schemas.events import Alert, InvalidEvent, parse_event
from schemas.settings import Settings
from streams.alertmanager import FiringSet, to_alertmanager
from streams.alertmanager_client import (
    AlertmanagerClient,
    AlertmanagerRejected,
    AlertmanagerUnavailable,
    Backoff,
    BridgeError,
)

__all__ = ["AlertmanagerBridge", "BridgeConfig", "BridgeStats", "run_bridge"]

log = logging.getLogger("driftline.alertmanager")
MAX_ALERTS_PER_POST: Final = 200
Outcome = Literal["accepted", "rejected", "retry"]


@dataclass(frozen=True)
class BridgeConfig:
    url: str
    group: str | None = None
    """Consumer group; default ``<topic prefix>alertmanager-bridge``."""
    resend_seconds: float = 60.0
    from_beginning: bool = True
    """Where a group without committed offsets starts: the oldest alert, or new ones only."""
    timeout_seconds: float = 10.0
    generator_url: str | None = None
    batch_size: int = 500
    poll_seconds: float = 0.5
    backoff_seconds: float = 0.5
    backoff_max_seconds: float = 30.0
    rebuild_timeout_seconds: float = 60.0

    def group_for(self, topic_prefix: str) -> str:
        return self.group or f"{topic_prefix}alertmanager-bridge"


@dataclass
class BridgeStats:
    firing: int = 0
    """Firing alerts forwarded from the topic."""
    resolved: int = 0
    invalid: int = 0
    """Messages on the topic that are not valid v1 alerts (skipped)."""
    rejected: int = 0
    """Alerts in posts Alertmanager refused with 400/422 (skipped)."""
    failed_posts: int = 0
    """Posts that failed and were retried (connection error, timeout, 5xx...)."""
    resent: int = 0
    """Firing alerts re-posted to keep them active."""
    rebuilt: int = 0
    """Alerts read back on partition assignment to rebuild the firing set."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


class AlertmanagerBridge:
    """The consumer loop. ``consumer`` and ``client`` are injectable; defaults are real."""

    def __init__(
        self,
        settings: Settings,
        config: BridgeConfig,
        *,
        client: AlertmanagerClient | None = None,
        consumer: Any = None,
        clock: Callable[[], datetime] = _utc_now,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.config = config
        self.topic = settings.topics.alerts
        self.group = config.group_for(settings.topics.prefix)
        self.client = client or AlertmanagerClient(
            config.url, timeout_seconds=config.timeout_seconds
        )
        if consumer is None:
            from confluent_kafka import Consumer

            consumer = Consumer(
                {
                    **settings.kafka.confluent_config(),
                    "group.id": self.group,
                    "enable.auto.commit": False,
                    "auto.offset.reset": "earliest" if config.from_beginning else "latest",
                }
            )
        self.consumer = consumer
        self.clock = clock
        self.backoff = Backoff(
            config.backoff_seconds, config.backoff_max_seconds, rng=rng or random.Random()
        )
        self.firing = FiringSet()
        self.stats = BridgeStats()
        self._resend_at = float("inf")  # armed once partitions are assigned

    def run(self, stop: threading.Event | None = None) -> BridgeStats:
        """Forward until ``stop`` is set; the consumer is closed on the way out."""
        stop = stop or threading.Event()
        try:
            self._check_topic()  # raises BridgeError
            self.consumer.subscribe(
                [self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke
            )
            while not stop.is_set():
                messages = self.consumer.consume(
                    num_messages=self.config.batch_size, timeout=self.config.poll_seconds
                )
                good = []
                for message in messages:
                    if message.error() is not None:
                        log.warning("consumer_error error=%s", message.error())
                    else:
                        good.append(message)
                if good:
                    self._forward(good, stop)
                if time.monotonic() >= self._resend_at and not stop.is_set():
                    self._resend()
        finally:
            self.consumer.close()
        return self.stats

    def _check_topic(self) -> None:
        found = self.consumer.list_topics(self.topic, timeout=10).topics.get(self.topic)
        if found is None or found.error is not None:
            raise BridgeError(
                f"alerts topic {self.topic!r} does not exist at "
                f"{self.settings.kafka.bootstrap_servers}: run `driftline topics create`"
            )

    # -- forwarding -------------------------------------------------------------------------

    def _forward(self, messages: list[Any], stop: threading.Event) -> None:
        tentative = self.firing.copy()  # becomes the state only once Alertmanager accepted
        latest: dict[str, tuple[Alert, Alert | None]] = {}
        for message in messages:
            try:
                alert = parse_event(message.value(), Alert)
            except InvalidEvent as exc:
                self.stats.invalid += 1
                log.warning(
                    "invalid_alert partition=%d offset=%d error=%s",
                    message.partition(), message.offset(), exc,
                )  # fmt: skip
                continue
            opened_by = tentative.apply(alert, partition=message.partition())
            latest.pop(alert.fingerprint, None)  # re-insert: post in topic order
            latest[alert.fingerprint] = (alert, opened_by)
        now = self.clock()
        payloads = [self._payload(alert, opened_by, now) for alert, opened_by in latest.values()]
        outcome = self._post(payloads) if payloads else "accepted"
        if outcome == "retry":
            self._rewind(messages)
            delay = self.backoff.next_delay()
            log.warning("batch_uncommitted alerts=%d retry_in_s=%.1f", len(payloads), delay)
            stop.wait(delay)
            return
        self.firing = tentative
        for alert, _ in latest.values():
            if outcome == "accepted" and alert.status == "firing":
                self.stats.firing += 1
            elif outcome == "accepted":
                self.stats.resolved += 1
            log.info(
                "%s status=%s severity=%s model=%s kind=%s feature=%s detector=%s "
                "fingerprint=%s alert_id=%s",
                "forwarded" if outcome == "accepted" else "rejected", alert.status,
                alert.severity, alert.model, alert.kind, alert.feature, alert.detector,
                alert.fingerprint, alert.alert_id,
            )  # fmt: skip
        self._commit(messages)

    def _payload(self, alert: Alert, opened_by: Alert | None, now: datetime) -> dict[str, Any]:
        return to_alertmanager(
            alert,
            generator_url=self.config.generator_url,
            opened_by=opened_by,
            firing_until=now + timedelta(seconds=4 * self.config.resend_seconds),
        )

    def _post(self, payloads: list[dict[str, Any]]) -> Outcome:
        outcome: Outcome = "accepted"
        for start in range(0, len(payloads), MAX_ALERTS_PER_POST):
            chunk = payloads[start : start + MAX_ALERTS_PER_POST]
            try:
                self.client.post(chunk)
            except AlertmanagerRejected as exc:
                self.stats.rejected += len(chunk)
                log.error("alerts_rejected alerts=%d skipped, error=%s", len(chunk), exc)
                outcome = "rejected"
            except AlertmanagerUnavailable as exc:
                self.stats.failed_posts += 1
                log.warning("alertmanager_unavailable error=%s", exc)
                return "retry"
        self.backoff.reset()
        return outcome

    def _resend(self) -> None:
        episodes = self.firing.episodes()
        self._resend_at = time.monotonic() + self.config.resend_seconds
        if not episodes:
            return
        now = self.clock()
        payloads = [self._payload(e.latest, e.opened_by, now) for e in episodes]
        if self._post(payloads) == "retry":
            delay = min(self.backoff.next_delay(), self.config.resend_seconds)
            self._resend_at = time.monotonic() + delay
            return
        self.stats.resent += len(payloads)
        log.info("resent firing=%d", len(payloads))

    def _rewind(self, messages: list[Any]) -> None:
        from confluent_kafka import KafkaException, TopicPartition

        first: dict[int, int] = {}
        for message in messages:
            first[message.partition()] = min(
                message.offset(), first.get(message.partition(), message.offset())
            )
        for partition, offset in first.items():
            try:
                self.consumer.seek(TopicPartition(self.topic, partition, offset))
            except KafkaException as exc:  # revoked meanwhile: the new owner reads it again
                log.warning("seek_failed partition=%d error=%s", partition, exc)

    def _commit(self, messages: list[Any]) -> None:
        from confluent_kafka import KafkaException, TopicPartition

        after: dict[int, int] = {}
        for message in messages:
            after[message.partition()] = max(
                message.offset() + 1, after.get(message.partition(), 0)
            )
        offsets = [TopicPartition(self.topic, p, o) for p, o in sorted(after.items())]
        try:
            self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:  # revoked: the new owner re-posts, Alertmanager dedups
            log.warning("commit_failed offsets=%s error=%s", after, exc)

    # -- assignment: rebuild the firing set ---------------------------------------------------

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        from confluent_kafka import TopicPartition

        try:
            starts: list[Any] = []
            ranges: dict[int, tuple[int, int]] = {}
            for tp in consumer.committed(partitions, timeout=10):
                low, high = consumer.get_watermark_offsets(tp, timeout=10)
                if tp.offset >= 0:
                    start = min(max(tp.offset, low), high)
                else:
                    start = low if self.config.from_beginning else high
                starts.append(TopicPartition(self.topic, tp.partition, start))
                ranges[tp.partition] = (low, start)
            self._rebuild(ranges)
            consumer.assign(starts)
        except Exception as exc:  # never lose the assignment over the rebuild
            log.warning("rebuild_failed error=%s (firing alerts re-posted when seen again)", exc)
            consumer.assign(partitions)
        log.info(
            "assigned partitions=%s firing=%d",
            sorted(tp.partition for tp in partitions), len(self.firing),
        )  # fmt: skip
        self._resend_at = time.monotonic()  # re-post what is firing at once

    def _on_revoke(self, _consumer: Any, partitions: list[Any]) -> None:
        dropped = self.firing.drop_partitions(tp.partition for tp in partitions)
        log.info(
            "revoked partitions=%s firing_dropped=%d", [tp.partition for tp in partitions], dropped
        )

    def _rebuild(self, ranges: dict[int, tuple[int, int]]) -> None:
        """Fold [low, start) of each partition into the firing set, without posting."""
        from confluent_kafka import Consumer, TopicPartition

        todo = {p: bounds for p, bounds in ranges.items() if bounds[1] > bounds[0]}
        if not todo:
            return
        reader = Consumer(
            {
                **self.settings.kafka.confluent_config(),
                "group.id": f"{self.group}-rebuild-{uuid.uuid4().hex[:8]}",  # never committed
                "enable.auto.commit": False,
            }
        )
        deadline = time.monotonic() + self.config.rebuild_timeout_seconds
        try:
            reader.assign([TopicPartition(self.topic, p, low) for p, (low, _) in todo.items()])
            while todo and time.monotonic() < deadline:
                batch: list[Any] = reader.consume(num_messages=500, timeout=0.5)
                for message in batch:
                    bounds = todo.get(message.partition())
                    if message.error() is not None or bounds is None:
                        continue
                    if message.offset() < bounds[1]:
                        try:
                            alert = parse_event(message.value(), Alert)
                        except InvalidEvent:
                            continue
                        self.firing.apply(alert, partition=message.partition())
                        self.stats.rebuilt += 1
                for tp in reader.position([TopicPartition(self.topic, p) for p in list(todo)]):
                    if tp.offset >= todo[tp.partition][1]:
                        del todo[tp.partition]
        finally:
            reader.close()
        if todo:
            log.warning("rebuild_incomplete partitions=%s (timed out)", sorted(todo))


def run_bridge(settings: Settings, config: BridgeConfig, *, loglevel: str = "info") -> BridgeStats:
    """Run until SIGTERM or SIGINT; prints one parseable banner line first."""
    logging.basicConfig(
        level=loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    bridge = AlertmanagerBridge(settings, config)
    stop = threading.Event()

    def request_stop(signum: int, _frame: Any) -> None:
        log.info("stopping on signal %d", signum)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    print(
        f"driftline alertmanager-bridge: url={bridge.client.endpoint} group={bridge.group} "
        f"alerts={bridge.topic} resend_s={config.resend_seconds:g} "
        f"from_beginning={config.from_beginning}",
        flush=True,
    )
    stats = bridge.run(stop)
    log.info(
        "stopped: firing=%d resolved=%d invalid=%d rejected=%d failed_posts=%d resent=%d "
        "rebuilt=%d",
        stats.firing, stats.resolved, stats.invalid, stats.rejected, stats.failed_posts,
        stats.resent, stats.rebuilt,
    )  # fmt: skip
    return stats
