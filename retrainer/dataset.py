"""The retraining dataset: predictions joined with their labels, read back from Kafka by time.

``read_window`` seeks each partition of the predictions and labels topics with
``offsets_for_times`` to the window start (minus a slack for clock skew) and reads up to the
high watermarks taken when it started. Kafka timestamps are produce times, and an event is
produced after it happens, so no event of the window lies before that offset; events are then
filtered by their own event time. (A replay of old history has produce times far after its
event times: the seek then lands at the start of retention, which is slower, never wrong.)

``build_dataset`` is pure: join by ``event_id``, one row per labelled prediction in time order,
the most recent ``holdout_fraction`` as the holdout.

>>> from datetime import UTC, datetime, timedelta
>>> t0 = datetime(2024, 5, 1, tzinfo=UTC)
>>> preds = [PredictionEvent(event_id=f"e{i}", model="m", timestamp=t0 + timedelta(seconds=i),
...          features={"x": float(i), "plan": "pro"}, prediction=i % 2) for i in range(10)]
>>> labels = [LabelEvent(event_id=f"e{i}", model="m", timestamp=t0, label=1) for i in range(8)]
>>> data = build_dataset(preds, labels, model="m", window=DataWindow(t0), holdout_fraction=0.25)
>>> data.task, len(data.train), len(data.holdout), data.numeric, data.categorical, data.unlabelled
('binary', 6, 2, ('x',), ('plan',), 2)
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final, Literal

import pandas as pd

from detectors.categorical import category_key
from detectors.profile_builder import infer_task
from detectors.quality import class_key
from retrainer.errors import DatasetUnavailable
from schemas.events import (
    Alert,
    InvalidEvent,
    LabelEvent,
    PredictionEvent,
    parse_label,
    parse_prediction_payload,
)
from schemas.monitor_config import Task
from schemas.settings import Settings

__all__ = [
    "EVENT_ID",
    "LABEL",
    "MODEL_VERSION",
    "PREDICTION",
    "SCORE_PREFIX",
    "TIMESTAMP",
    "DataWindow",
    "Dataset",
    "PredictionFormat",
    "build_dataset",
    "read_window",
    "window_for",
]

EVENT_ID: Final = "event_id"
TIMESTAMP: Final = "timestamp"
MODEL_VERSION: Final = "model_version"
PREDICTION: Final = "prediction"
"""The prediction the serving model logged: what stands for a champion not in the registry."""
LABEL: Final = "label"
SCORE_PREFIX: Final = "scores."
_META: Final = frozenset({EVENT_ID, TIMESTAMP, MODEL_VERSION, PREDICTION, LABEL})
_SEEK_SLACK_SECONDS: Final = 300.0
"""Produce clocks may run behind event clocks by this much without losing events."""
PredictionFormat = Literal["class", "score", "value"]
log = logging.getLogger("driftline.retrainer.dataset")


@dataclass(frozen=True)
class DataWindow:
    """Event-time range of the dataset: ``start`` inclusive, ``end`` (None: up to now)."""

    start: datetime
    end: datetime | None = None

    def contains(self, when: datetime) -> bool:
        return when >= self.start and (self.end is None or when <= self.end)


def window_for(alert: Alert, lookback_seconds: float = 0.0) -> DataWindow:
    """Since the alert's window started (where the change showed), up to the newest label."""
    return DataWindow(alert.window.start - timedelta(seconds=lookback_seconds))


@dataclass(frozen=True)
class Dataset:
    """Labelled predictions of one model in event-time order, split by time."""

    model: str
    task: Task | None
    frame: pd.DataFrame
    """Columns: event_id, timestamp, model_version, the features (raw values), prediction,
    scores.<class>, label. A feature whose name collides with those is renamed
    ``features.<name>``. Trainers get :meth:`model_input` instead."""
    holdout_size: int
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    feature_names: dict[str, str]
    """Column -> the feature's name in the events."""
    score_classes: tuple[str, ...]
    """Classes of the logged ``scores`` (columns ``scores.<class>``)."""
    prediction_format: PredictionFormat
    """How the serving model logs ``prediction``: a class, a positive-class score, a value."""
    window: DataWindow
    predictions_seen: int
    unlabelled: int
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def train(self) -> pd.DataFrame:
        return self.frame.iloc[: len(self.frame) - self.holdout_size]

    @property
    def holdout(self) -> pd.DataFrame:
        return self.frame.iloc[len(self.frame) - self.holdout_size :]

    @property
    def features(self) -> tuple[str, ...]:
        return self.numeric + self.categorical

    def model_input(self, frame: pd.DataFrame | None = None) -> pd.DataFrame:
        """What trainers and models see: numeric columns as floats (NaN for null), categorical
        ones as text keys spelled like the monitor's (``true``, ``3``), plus the label."""
        part = self.frame if frame is None else frame
        out = part[[*self.numeric, LABEL]].copy()
        for column in self.categorical:
            out[column] = [None if v is None else category_key(v) for v in part[column]]
        return out

    @property
    def start(self) -> datetime | None:
        return _as_datetime(self.frame[TIMESTAMP].iloc[0]) if len(self.frame) else None

    @property
    def end(self) -> datetime | None:
        return _as_datetime(self.frame[TIMESTAMP].iloc[-1]) if len(self.frame) else None


def _as_datetime(value: Any) -> datetime:
    return value.to_pydatetime() if isinstance(value, pd.Timestamp) else value


def _column_for(name: str) -> str:
    return f"features.{name}" if name in _META or name.startswith(SCORE_PREFIX) else name


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _label_kind(label: Any) -> str:
    if isinstance(label, bool):
        return "binary"
    if _is_number(label):
        return "binary" if label in (0, 1) else "number"
    return "string"


def _infer_task(labels: Sequence[Any]) -> Task | None:
    kinds: dict[str, int] = {}
    for label in labels:
        kind = _label_kind(label)
        kinds[kind] = kinds.get(kind, 0) + 1
    return infer_task(kinds, len({class_key(label) for label in labels}))


def _prediction_format(
    task: Task | None, predictions: Sequence[Any], labels: Sequence[Any]
) -> PredictionFormat:
    if task == "regression" or task is None:
        return "value"
    classes = {class_key(label) for label in labels}
    scores = [p for p in predictions if _is_number(p)]
    if (
        task == "binary"
        and len(scores) == len(predictions)
        and all(0.0 <= float(p) <= 1.0 for p in scores)
        and any(class_key(p) not in classes for p in scores)
    ):
        return "score"
    return "class"


def build_dataset(
    predictions: Iterable[PredictionEvent],
    labels: Iterable[LabelEvent],
    *,
    model: str,
    window: DataWindow,
    holdout_fraction: float = 0.3,
    max_rows: int = 200_000,
    task: Task | None = None,
) -> Dataset:
    """Join ``model``'s predictions inside ``window`` with their labels (first label wins)."""
    if not 0.0 < holdout_fraction < 1.0:
        raise ValueError(f"holdout_fraction must be in (0, 1), got {holdout_fraction}")
    truth: dict[str, Any] = {}
    for label in labels:
        if label.model == model:
            truth.setdefault(label.event_id, label.label)
    seen: dict[str, PredictionEvent] = {}
    for event in predictions:
        if event.model == model and window.contains(event.timestamp):
            seen.setdefault(event.event_id, event)
    ordered = sorted(seen.values(), key=lambda event: event.timestamp)
    labelled = [event for event in ordered if event.event_id in truth][-max_rows:]

    names = sorted({name for event in labelled for name in event.features})
    numeric = [
        name
        for name in names
        if all(_is_number(v) for e in labelled if (v := e.features.get(name)) is not None)
    ]
    score_classes = sorted({cls for event in labelled for cls in (event.scores or {})})
    rows: dict[str, list[Any]] = {
        EVENT_ID: [e.event_id for e in labelled],
        TIMESTAMP: [e.timestamp for e in labelled],
        MODEL_VERSION: [e.model_version for e in labelled],
    }
    for name in names:
        values = [event.features.get(name) for event in labelled]
        if name in numeric:
            rows[_column_for(name)] = [math.nan if v is None else float(v) for v in values]
        else:  # raw values: the profile needs their types; model_input() spells them as text
            rows[_column_for(name)] = values
    rows[PREDICTION] = [e.prediction for e in labelled]
    for cls in score_classes:
        rows[SCORE_PREFIX + cls] = [(e.scores or {}).get(cls, math.nan) for e in labelled]
    label_values = [truth[e.event_id] for e in labelled]
    rows[LABEL] = label_values
    frame = pd.DataFrame(rows)
    frame[TIMESTAMP] = pd.to_datetime(frame[TIMESTAMP], utc=True)
    task = task or _infer_task(label_values)
    holdout = math.ceil(len(frame) * holdout_fraction) if len(frame) else 0
    return Dataset(
        model=model,
        task=task,
        frame=frame,
        holdout_size=holdout,
        numeric=tuple(_column_for(n) for n in numeric),
        categorical=tuple(_column_for(n) for n in names if n not in numeric),
        feature_names={_column_for(n): n for n in names},
        score_classes=tuple(score_classes),
        prediction_format=_prediction_format(task, rows[PREDICTION], label_values),
        window=window,
        predictions_seen=len(ordered),
        unlabelled=len(ordered) - len([e for e in ordered if e.event_id in truth]),
    )


# -- reading back from Kafka -------------------------------------------------------------------


def read_window(
    settings: Settings,
    model: str,
    window: DataWindow,
    *,
    timeout_seconds: float = 120.0,
) -> tuple[list[PredictionEvent], list[LabelEvent]]:
    """``model``'s predictions in ``window`` and every label of it produced since its start.

    Raises :class:`DatasetUnavailable` when Kafka does not deliver up to the high watermarks
    in time. Invalid messages are skipped (the workers dead-letter them).
    """
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    topics = settings.topics
    consumer = Consumer(
        {
            **settings.kafka.confluent_config(),
            "group.id": f"{topics.prefix}retrainer-reader-{uuid.uuid4().hex[:12]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    seek_ms = max(0, int((window.start.timestamp() - _SEEK_SLACK_SECONDS) * 1000))
    deadline = time.monotonic() + timeout_seconds
    predictions: list[PredictionEvent] = []
    labels: list[LabelEvent] = []
    try:
        ends: dict[tuple[str, int], int] = {}
        starts: list[Any] = []
        for topic in (topics.predictions, topics.labels):
            metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
            if metadata is None or metadata.error is not None:
                log.warning("topic %s is missing; the dataset has none of its events", topic)
                continue
            wanted = [TopicPartition(topic, p, seek_ms) for p in sorted(metadata.partitions)]
            for found in consumer.offsets_for_times(wanted, timeout=10):
                _low, high = consumer.get_watermark_offsets(
                    TopicPartition(topic, found.partition), timeout=10
                )
                if found.offset < 0 or found.offset >= high:
                    continue  # nothing at or after the window start
                ends[(topic, found.partition)] = high
                starts.append(TopicPartition(topic, found.partition, found.offset))
        consumer.assign(starts)
        while ends:
            if time.monotonic() > deadline:
                raise DatasetUnavailable(
                    f"reading the dataset of {model} from Kafka took longer than "
                    f"{timeout_seconds:.0f} s ({len(ends)} partitions unfinished): check the "
                    f"brokers, or raise DRIFTLINE_RETRAINER__READ_TIMEOUT_SECONDS"
                )
            messages = consumer.consume(1000, timeout=0.5)
            for message in messages:
                if message.error() is not None:
                    continue
                key = (message.topic(), message.partition())
                offset = message.offset()
                if key in ends and offset is not None and offset >= ends[key] - 1:
                    del ends[key]
                _collect(message, topics.predictions, model, window, predictions, labels)
            if not messages:  # gaps (compaction, transactions): ask where each partition is
                for position in consumer.position([TopicPartition(t, p) for t, p in ends]):
                    if position.offset >= ends[(position.topic, position.partition)]:
                        del ends[(position.topic, position.partition)]
    except KafkaException as exc:
        raise DatasetUnavailable(f"cannot read the dataset of {model} from Kafka: {exc}") from exc
    finally:
        consumer.close()
    return predictions, labels


def _collect(
    message: Any,
    predictions_topic: str,
    model: str,
    window: DataWindow,
    predictions: list[PredictionEvent],
    labels: list[LabelEvent],
) -> None:
    try:
        if message.topic() == predictions_topic:
            predictions.extend(
                event
                for event in parse_prediction_payload(message.value())
                if event.model == model and window.contains(event.timestamp)
            )
        else:
            label = parse_label(message.value())
            if label.model == model:
                labels.append(label)
    except InvalidEvent:
        pass
