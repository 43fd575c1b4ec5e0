"""Drive the offline monitor with event-time ordered batches, switching references on the way.

``driftline backtest`` (files) and ``driftline report --from-kafka`` (topics) both merge
predictions and labels with ``streams.readers.merge_by_event_time`` and hand the batches to
``feed_monitor``, so the two run the monitor in exactly the same way. A ``ReferenceSwitch`` is a
``promoted`` ModelEvent's profile: it applies when event time reaches ``at`` or, when it names a
``version``, at the model's first prediction of that version (when the live judge starts
judging the new model). Batches are cut there, so events before it see the old reference.

>>> from datetime import UTC, datetime, timedelta
>>> from schemas.events import PredictionEvent
>>> t0 = datetime(2024, 5, 1, tzinfo=UTC)
>>> events = [PredictionEvent(event_id=str(i), model="m", model_version="1" if i < 3 else "2",
...           timestamp=t0 + timedelta(seconds=i), features={}, prediction=0) for i in range(5)]
>>> ReferenceSwitch("m", "profile", version="2").due(events, []) == events[3].timestamp
True
>>> ReferenceSwitch("m", "profile", at=t0 + timedelta(seconds=9)).due(events, []) is None
True
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from schemas.events import Alert, LabelEvent, PredictionEvent

__all__ = ["FeedResult", "ReferenceSwitch", "feed_monitor"]


@dataclass(frozen=True)
class ReferenceSwitch:
    """Switch ``model``'s reference to ``profile`` (a ``ReferenceProfile``) at ``at`` (event
    time) or, with ``version``, at the first prediction of that model version."""

    model: str
    profile: Any
    at: datetime | None = None
    version: str | None = None
    event_id: str | None = None
    """The ModelEvent it comes from, to find where it applied."""

    def __post_init__(self) -> None:
        if (self.at is None) == (self.version is None):
            raise ValueError("a ReferenceSwitch needs exactly one of `at` and `version`")

    def due(
        self, predictions: Sequence[PredictionEvent], labels: Sequence[LabelEvent]
    ) -> datetime | None:
        """The event time in this (event-time ordered) batch where the switch applies."""
        if self.version is not None:
            return next(
                (
                    event.timestamp
                    for event in predictions
                    if event.model == self.model and event.model_version == self.version
                ),
                None,
            )
        assert self.at is not None
        ends = [batch[-1].timestamp for batch in (predictions, labels) if batch]
        return self.at if ends and max(ends) >= self.at else None


@dataclass
class FeedResult:
    """What ``feed_monitor`` passed to the monitor."""

    predictions: int = 0
    labels: int = 0
    switched: list[tuple[ReferenceSwitch, datetime]] = field(default_factory=list)
    """The switches applied, each with the event time it applied at."""


def _time(event: PredictionEvent | LabelEvent) -> datetime:
    return event.timestamp


def feed_monitor(
    monitor: Any,
    batches: Iterable[tuple[list[PredictionEvent], list[LabelEvent]]],
    emit: Callable[[list[Alert]], None],
    switches: Iterable[ReferenceSwitch] = (),
) -> FeedResult:
    """``monitor.process`` every batch (from ``merge_by_event_time``), then ``monitor.finish``.

    ``monitor`` is a ``detectors.monitor.FleetMonitor`` (or anything with its ``process``,
    ``set_reference`` and ``finish``); ``emit`` gets the alerts as they are decided. Switches
    that never become due are not applied.
    """
    result = FeedResult()
    pending = list(switches)
    for predictions, labels in batches:
        result.predictions += len(predictions)
        result.labels += len(labels)
        while pending:  # cut the batch where a reference switch happens, earliest first
            due = [
                (at, i)
                for i, candidate in enumerate(pending)
                if (at := candidate.due(predictions, labels)) is not None
            ]
            if not due:
                break
            at, index = min(due)
            switch = pending.pop(index)
            p_cut = bisect_left(predictions, at, key=_time)
            l_cut = bisect_left(labels, at, key=_time)
            emit(monitor.process(predictions[:p_cut], labels[:l_cut]))
            monitor.set_reference(switch.model, switch.profile)
            result.switched.append((switch, at))
            predictions, labels = predictions[p_cut:], labels[l_cut:]
        emit(monitor.process(predictions, labels))
    emit(monitor.finish())
    return result
