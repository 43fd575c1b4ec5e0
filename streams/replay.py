"""Replay recorded predictions and labels into Kafka through the SDK, in event-time order.

``speed="max"`` sends as fast as the producer goes; a number N paces the stream at N times
event time (``speed=60``: an hour of history in a minute). Consecutive predictions may be
packed into batch envelopes (``batch_size > 1``); envelopes keep predictions on the partition
of their ``event_id``, so the label join is unaffected.

>>> parse_speed("max"), parse_speed("60")
(None, 60.0)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from schemas.events import LabelEvent, PredictionEvent
from schemas.settings import Settings

__all__ = ["ReplayResult", "parse_speed", "replay_events"]

ReplayEvent = PredictionEvent | LabelEvent


def parse_speed(text: str) -> float | None:
    """``max`` -> None (no pacing); a positive number -> that multiple of event time."""
    if text.strip().lower() == "max":
        return None
    try:
        speed = float(text)
    except ValueError:
        speed = -1.0
    if not speed > 0:
        raise ValueError(f"speed must be 'max' or a positive number, got {text!r}")
    return speed


@dataclass(frozen=True)
class ReplayResult:
    predictions: int
    labels: int
    messages: int
    seconds: float
    failed: int

    @property
    def events_per_second(self) -> float:
        return (self.predictions + self.labels) / self.seconds if self.seconds > 0 else 0.0


def replay_events(
    settings: Settings,
    events: Iterable[ReplayEvent],
    *,
    speed: float | None = None,
    batch_size: int = 1,
    on_progress: Callable[[int], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> ReplayResult:
    """Send ``events`` (already in event-time order) and wait until Kafka has them all."""
    from streams.producer import LabelProducer, PredictionProducer

    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    predictions = PredictionProducer(settings, max_block_seconds=5.0)
    labels = LabelProducer(settings, max_block_seconds=5.0)
    started = time.monotonic()
    first_event_time: datetime | None = None
    pending: list[PredictionEvent] = []
    counts = {"predictions": 0, "labels": 0, "messages": 0}

    def flush_predictions() -> None:
        if not pending:
            return
        if batch_size == 1:
            for event in pending:
                predictions.send(event)
            counts["messages"] += len(pending)
        else:
            counts["messages"] += predictions.send_batch(pending, max_batch=batch_size)
        if on_progress is not None:
            on_progress(len(pending))
        pending.clear()

    try:
        for event in events:
            if speed is not None:
                first_event_time = first_event_time or event.timestamp
                due = (event.timestamp - first_event_time).total_seconds() / speed
                wait = due - (time.monotonic() - started)
                if wait > 0:
                    flush_predictions()
                    sleep(wait)
            if isinstance(event, PredictionEvent):
                counts["predictions"] += 1
                pending.append(event)
                if len(pending) >= batch_size:
                    flush_predictions()
            else:
                flush_predictions()
                counts["labels"] += 1
                counts["messages"] += 1
                labels.send(event)
                if on_progress is not None:
                    on_progress(1)
        flush_predictions()
    finally:
        failed = predictions.close() + labels.close()
    failed += predictions.stats.failed + predictions.stats.dropped
    failed += labels.stats.failed + labels.stats.dropped
    return ReplayResult(
        predictions=counts["predictions"],
        labels=counts["labels"],
        messages=counts["messages"],
        seconds=time.monotonic() - started,
        failed=failed,
    )
