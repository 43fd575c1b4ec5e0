"""The worker's boundary: raw Kafka bytes in, validated events or dead letters out.

The error policy is explicit and never stops a worker: anything that is not a valid v1 event
(bad JSON, wrong types, unknown fields, NaN, oversize) becomes a :class:`DeadLetter` carrying the
reason and the original bytes; everything else is returned for the monitor.

>>> from datetime import UTC, datetime
>>> now = datetime(2024, 5, 1, tzinfo=UTC)
>>> split = split_messages(
...     [RawMessage("predictions", b'{"oops', "p", 0, 7)], now=now)
>>> split.dead_letters[0].error_class, split.dead_letters[0].offset
('json', 7)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from schemas.events import (
    DeadLetter,
    LabelEvent,
    PredictionEvent,
    deadletter_for,
    parse_label,
    parse_prediction_payload,
)

__all__ = ["RawMessage", "Source", "SplitMessages", "split_messages"]

Source = Literal["predictions", "labels"]


@dataclass(frozen=True)
class RawMessage:
    """One consumed message: its topic role, value bytes and where it came from."""

    source: Source
    value: bytes | None
    topic: str
    partition: int
    offset: int


@dataclass
class SplitMessages:
    """Valid predictions and labels of a batch, in consumption order, plus its dead letters."""

    predictions: list[PredictionEvent] = field(default_factory=list)
    labels: list[LabelEvent] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    prediction_messages: int = 0
    label_messages: int = 0


def split_messages(messages: Iterable[RawMessage], *, now: datetime) -> SplitMessages:
    """Parse each message; an invalid one becomes a dead letter (``now`` is its received_at)."""
    split = SplitMessages()
    for message in messages:
        try:
            if message.source == "predictions":
                split.prediction_messages += 1
                split.predictions.extend(parse_prediction_payload(message.value))
            else:
                split.label_messages += 1
                split.labels.append(parse_label(message.value))
        except Exception as exc:
            split.dead_letters.append(
                deadletter_for(
                    message.value, message.topic, message.partition, message.offset, exc, now
                )
            )
    return split
