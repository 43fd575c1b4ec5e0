"""Read driftline's topics once: from the beginning to the end offsets taken at the start.

``SnapshotReader`` is what ``driftline report --from-kafka`` reads through. Every partition of
the predictions and labels topics gets its own consumer, and the partitions are merged by event
time (each partition is in event-time order when services publish as they predict), so memory
holds about one fetch per partition however long the topics are. Messages that fail validation
are skipped and counted per topic role; tombstones are ignored.
"""

from __future__ import annotations

import heapq
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any, Final, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from schemas.events import (
    Alert,
    LabelEvent,
    ModelEvent,
    PredictionEvent,
    parse_event,
    parse_label,
    parse_prediction_payload,
)
from schemas.settings import Settings

__all__ = ["SnapshotError", "SnapshotReader", "Traffic", "VersionSpan"]

E = TypeVar("E", PredictionEvent, LabelEvent, Alert, ModelEvent)
_FETCH: Final = 1000
_QUEUE_KBYTES: Final = 8192
"""Prefetch per partition consumer (librdkafka's default is 64 MB each)."""


class SnapshotError(RuntimeError):
    """Kafka or a required topic cannot be read; the message says what to check."""


@dataclass
class VersionSpan:
    """Predictions of one model version: how many, first and last event time."""

    count: int
    first: datetime
    last: datetime


@dataclass
class Traffic:
    """What the predictions and labels topics held (of the selected model)."""

    predictions: int = 0
    labels: int = 0
    first: datetime | None = None
    last: datetime | None = None
    predictions_by_model: Counter[str] = field(default_factory=Counter)
    labels_by_model: Counter[str] = field(default_factory=Counter)
    versions: dict[tuple[str, str | None], VersionSpan] = field(default_factory=dict)
    invalid: Counter[str] = field(default_factory=Counter)
    """Topic role (predictions, labels, alerts, models) -> messages that failed validation."""

    def _seen(self, moment: datetime) -> None:
        self.first = moment if self.first is None else min(self.first, moment)
        self.last = moment if self.last is None else max(self.last, moment)

    def add_prediction(self, event: PredictionEvent) -> None:
        self.predictions += 1
        self.predictions_by_model[event.model] += 1
        self._seen(event.timestamp)
        span = self.versions.get((event.model, event.model_version))
        if span is None:
            self.versions[(event.model, event.model_version)] = VersionSpan(
                1, event.timestamp, event.timestamp
            )
        else:
            span.count += 1
            span.first = min(span.first, event.timestamp)
            span.last = max(span.last, event.timestamp)

    def add_label(self, event: LabelEvent) -> None:
        self.labels += 1
        self.labels_by_model[event.model] += 1
        self._seen(event.timestamp)


def _event_time(event: PredictionEvent | LabelEvent) -> datetime:
    return event.timestamp


class SnapshotReader:
    """The four topics as they are now; use as a context manager (it closes its consumers).

    ``model`` keeps one model's events. ``progress`` shows a rich progress bar on stderr (when
    stderr is a terminal). A partition that delivers nothing for ``idle_timeout_seconds``
    although it should have more raises ``SnapshotError``.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        model: str | None = None,
        progress: bool = False,
        idle_timeout_seconds: float = 30.0,
    ) -> None:
        self.settings = settings
        self.model = model
        self.idle_timeout_seconds = idle_timeout_seconds
        self.traffic = Traffic()
        self.notes: list[str] = []
        self._config: dict[str, Any] = {
            **settings.kafka.confluent_config(),
            "group.id": f"driftline-report-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            "queued.max.messages.kbytes": _QUEUE_KBYTES,
            # Connection failures become one SnapshotError, not a log line every 50 ms.
            "log_level": 2,
        }
        self._bounds: dict[str, list[tuple[int, int, int]]] = {}
        self._open: list[Any] = []
        self._progress: Any = None
        self._task: Any = None
        self._want_progress = progress

    # -- lifecycle -----------------------------------------------------------------------------

    def __enter__(self) -> SnapshotReader:
        topics = self.settings.topics
        bootstrap = self.settings.kafka.bootstrap_servers
        meta = Consumer(self._config)
        try:
            try:
                existing = meta.list_topics(timeout=10).topics
            except KafkaException as exc:
                raise SnapshotError(
                    f"cannot reach Kafka at {bootstrap}: {exc.args[0]}; start it (make "
                    f"kafka-up) or set DRIFTLINE_KAFKA__BOOTSTRAP_SERVERS"
                ) from exc
            for name in (topics.predictions, topics.labels, topics.alerts, topics.models):
                if name not in existing or existing[name].error is not None:
                    if name == topics.predictions:
                        raise SnapshotError(
                            f"topic {name!r} does not exist on {bootstrap}: check "
                            f"DRIFTLINE_TOPICS__PREFIX (now {topics.prefix!r}), or create the "
                            f"topics with `driftline topics create`"
                        )
                    self.notes.append(f"topic {name} does not exist: read as empty")
                    self._bounds[name] = []
                    continue
                self._bounds[name] = [
                    (partition, *self._watermarks(meta, name, partition))
                    for partition in sorted(existing[name].partitions)
                ]
        finally:
            meta.close()
        self._start_progress()
        return self

    def _watermarks(self, consumer: Any, topic: str, partition: int) -> tuple[int, int]:
        try:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=10, cached=False
            )
        except KafkaException as exc:
            raise SnapshotError(
                f"cannot read the offsets of {topic}[{partition}] on "
                f"{self.settings.kafka.bootstrap_servers}: {exc.args[0]}"
            ) from exc
        return int(low), int(high)

    def _start_progress(self) -> None:
        if not self._want_progress:
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        console = Console(stderr=True)
        total = sum(high - low for bounds in self._bounds.values() for _, low, high in bounds)
        self._progress = Progress(
            "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
            "messages", TimeRemainingColumn(), console=console, transient=True,
            disable=not console.is_terminal,
        )  # fmt: skip
        self._task = self._progress.add_task("reading topics", total=total)
        self._progress.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        while self._open:
            self._open.pop().close()
        if self._progress is not None:
            self._progress.stop()

    # -- topics --------------------------------------------------------------------------------

    def model_events(self) -> list[ModelEvent]:
        """The models topic in offset order (one partition)."""
        return list(self._read(self.settings.topics.models, "models", _parse_as(ModelEvent)))

    def alerts(self) -> list[Alert]:
        return list(self._read(self.settings.topics.alerts, "alerts", _parse_as(Alert)))

    def predictions(self, chunk_events: int) -> Iterator[list[PredictionEvent]]:
        """Event-time ordered chunks of predictions, merged over the partitions."""
        return self._merged(
            self.settings.topics.predictions, "predictions", parse_prediction_payload,
            self.traffic.add_prediction, chunk_events,
        )  # fmt: skip

    def labels(self, chunk_events: int) -> Iterator[list[LabelEvent]]:
        return self._merged(
            self.settings.topics.labels, "labels", lambda raw: [parse_label(raw)],
            self.traffic.add_label, chunk_events,
        )  # fmt: skip

    def _read(self, topic: str, role: str, parse: Callable[[bytes], list[E]]) -> Iterator[E]:
        for partition, low, high in self._bounds[topic]:
            yield from self._decoded(topic, role, partition, low, high, parse)

    def _merged(
        self,
        topic: str,
        role: str,
        parse: Callable[[bytes], list[Any]],
        tally: Callable[[Any], None],
        chunk_events: int,
    ) -> Iterator[list[Any]]:
        parts = [
            self._decoded(topic, role, partition, low, high, parse)
            for partition, low, high in self._bounds[topic]
        ]
        chunk: list[Any] = []
        for event in heapq.merge(*parts, key=_event_time):
            tally(event)
            chunk.append(event)
            if len(chunk) >= chunk_events:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    def _decoded(
        self,
        topic: str,
        role: str,
        partition: int,
        low: int,
        high: int,
        parse: Callable[[bytes], list[E]],
    ) -> Iterator[E]:
        for value in self._values(topic, partition, low, high):
            try:
                events = parse(value)
            except ValueError:  # InvalidEvent: already in the dead-letter topic
                self.traffic.invalid[role] += 1
                continue
            for event in events:
                if self.model is None or event.model == self.model:
                    yield event

    def _values(self, topic: str, partition: int, low: int, high: int) -> Iterator[bytes]:
        """Message values of one partition from ``low`` up to (excluding) ``high``."""
        if high <= low:
            return
        consumer = Consumer(self._config)
        self._open.append(consumer)
        try:
            for messages in read_range(
                consumer, topic, partition, low, high, idle_seconds=self.idle_timeout_seconds,
                where=f"is Kafka at {self.settings.kafka.bootstrap_servers} still up?",
            ):  # fmt: skip
                if self._progress is not None:
                    self._progress.advance(self._task, len(messages))
                for message in messages:
                    value = message.value()
                    if value is not None:  # a tombstone deletes a key; nothing to show
                        yield value
        finally:
            if consumer in self._open:
                self._open.remove(consumer)
                consumer.close()


def read_range(
    consumer: Any, topic: str, partition: int, low: int, high: int, *, idle_seconds: float,
    where: str,
) -> Iterator[list[Any]]:  # fmt: skip
    """Batches of the messages of ``topic[partition]`` with ``low <= offset < high``, read by
    ``consumer`` (assigned here; the caller closes it). Raises `SnapshotError` when the
    partition delivers nothing for ``idle_seconds`` (``where`` says what to check)."""
    if high <= low:
        return
    consumer.assign([TopicPartition(topic, partition, low)])
    idle_since = time.monotonic()
    while True:
        # Take what is queued; wait only when nothing is (consume waits for a full batch).
        messages = consumer.consume(num_messages=_FETCH, timeout=0)
        messages = messages or consumer.consume(num_messages=1, timeout=0.5)
        if not messages:
            if time.monotonic() - idle_since > idle_seconds:
                raise SnapshotError(
                    f"{topic}[{partition}] delivered nothing for {idle_seconds:.0f} s before "
                    f"offset {high}: {where}"
                )
            continue
        idle_since = time.monotonic()
        batch: list[Any] = []
        done = False
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    done = True
                    break
                raise SnapshotError(f"reading {topic}[{partition}] failed: {error}")
            offset = _offset(message)
            if offset >= high:
                done = True
                break
            batch.append(message)
            if offset >= high - 1:
                done = True
                break
        if batch:
            yield batch
        if done:
            return


def _offset(message: Any) -> int:
    offset = message.offset()
    return -1 if offset is None else int(offset)


def _parse_as(event_type: type[E]) -> Callable[[bytes], list[E]]:
    def parse(raw: bytes) -> list[E]:
        return [parse_event(raw, event_type)]

    return parse
