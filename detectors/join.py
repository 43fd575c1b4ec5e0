"""Join labels to predictions by ``event_id``, in any arrival order, over plain mappings.

The two mappings are the join's whole state (Faust tables behind JSON views live, dicts
offline); entries are short JSON lists holding only what quality statistics need, event time
(epoch microseconds) first:

- ``pending[event_id]``: a prediction waiting for its label ``[t, model, version, prediction,
  scores, segment]``, or, once joined, a tombstone ``[t]`` kept until the TTL so a duplicate
  label is recognised and ignored.
- ``early[event_id]``: ``[t, model, label]``, a label that arrived before its prediction, kept
  until the TTL; if the prediction never comes it is an orphan.

The live worker's native parse encodes the waiting prediction's list too
(``native/src/entry.rs``); ``tests/test_ingest_native.py`` holds both to the same values.

>>> from datetime import UTC, datetime
>>> from schemas.events import LabelEvent, PredictionEvent
>>> t = datetime(2024, 5, 1, tzinfo=UTC)
>>> joiner = LabelJoiner({}, {}, ttl_seconds=3600)
>>> joiner.add_labels([LabelEvent(event_id="e1", model="m", timestamp=t, label=1)])
[]
>>> out = joiner.add_predictions(
...     [PredictionEvent(event_id="e1", model="m", timestamp=t, features={}, prediction=0.9)])
>>> (out[0].event_id, out[0].prediction, out[0].label)
('e1', 0.9, 1)
>>> joiner.add_labels([LabelEvent(event_id="e1", model="m", timestamp=t, label=1)])  # duplicate
[]
>>> joiner.stats.joined, joiner.stats.duplicate_labels
(1, 1)
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import repeat
from typing import TYPE_CHECKING, Any, NamedTuple

from schemas.events import LabelEvent, PredictionEvent

if TYPE_CHECKING:
    from detectors.columns import PredictionColumns

__all__ = ["JoinStats", "LabelJoiner", "Outcome", "epoch_us", "expiry_horizon_us", "from_epoch_us"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

Value = float | int | str | bool


def epoch_us(moment: datetime) -> int:
    """Microseconds since the Unix epoch, exactly (no float rounding).

    >>> epoch_us(datetime(1970, 1, 1, 0, 0, 1, 5, tzinfo=UTC))
    1000005
    """
    return (moment - _EPOCH) // _MICROSECOND


def expiry_horizon_us(now_event_time: datetime, ttl_seconds: float) -> int:
    """The event time (epoch microseconds) before which a join entry expires at ``now``.

    >>> expiry_horizon_us(datetime(1970, 1, 1, 0, 1, tzinfo=UTC), 30)
    30000000
    """
    return epoch_us(now_event_time) - int(ttl_seconds * 1e6)


def from_epoch_us(micros: int) -> datetime:
    """The aware UTC datetime of ``epoch_us``."""
    return _EPOCH + timedelta(microseconds=micros)


class Outcome(NamedTuple):
    """A prediction joined with its label (a named tuple: joins make one per label)."""

    event_id: str
    model: str
    model_version: str | None
    prediction: Value
    scores: dict[str, float] | None
    label: Value
    predicted_us: int
    """Event time of the prediction (``epoch_us``)."""
    labelled_us: int
    """Event time of the label."""
    segment: dict[str, str] | None = None

    @property
    def latency_seconds(self) -> float:
        """How long after the prediction the truth was observed (0 when earlier)."""
        return max(0, self.labelled_us - self.predicted_us) / 1e6


@dataclass
class JoinStats:
    """Counters of one joiner instance (the caller turns them into metrics)."""

    joined: int = 0
    early: int = 0
    """Labels held because their prediction had not arrived yet."""
    duplicate_labels: int = 0
    duplicate_predictions: int = 0
    model_mismatch: int = 0
    """Labels whose model differs from their prediction's (ignored)."""
    orphans: int = 0
    """Early labels whose prediction never came within the TTL."""
    unlabelled: int = 0
    """Predictions whose label never came within the TTL."""


class LabelJoiner:
    """Labels to predictions by event_id, late or early, duplicates ignored, bounded by a TTL."""

    def __init__(
        self,
        pending: MutableMapping[str, Any],
        early: MutableMapping[str, Any],
        *,
        ttl_seconds: float,
    ) -> None:
        if ttl_seconds <= 0:
            raise ValueError(f"ttl_seconds must be positive, got {ttl_seconds}: use e.g. 604800")
        self.pending = pending
        self.early = early
        self.ttl_seconds = ttl_seconds
        self.stats = JoinStats()

    def add_predictions(
        self, predictions: Iterable[PredictionEvent], *, times_us: Iterable[int] | None = None
    ) -> list[Outcome]:
        """Remember predictions; returns the outcomes of those whose label came first.

        ``times_us``: the predictions' ``epoch_us`` timestamps, in order, if already known.
        """
        outcomes: list[Outcome] = []
        pending, early, stats = self.pending, self.early, self.stats
        predictions = list(predictions)
        times = (
            list(map(epoch_us, [event.timestamp for event in predictions]))
            if times_us is None else list(times_us)
        )  # fmt: skip
        if type(pending) is dict and type(early) is dict and not early:
            ids = [event.event_id for event in predictions]
            if pending.keys().isdisjoint(ids) and len(set(ids)) == len(ids):
                # No label waits and nothing repeats (offline, the common case): all pend.
                pending.update(zip(ids, [
                    [at, event.model, event.model_version, event.prediction, event.scores,
                     event.segment]
                    for event, at in zip(predictions, times, strict=True)
                ], strict=True))  # fmt: skip
                return outcomes
        for event, at in zip(predictions, times, strict=True):
            key = event.event_id
            if key in pending:
                stats.duplicate_predictions += 1
                continue
            held = early.get(key)
            if held is None:
                pending[key] = [
                    at, event.model, event.model_version, event.prediction, event.scores,
                    event.segment,
                ]  # fmt: skip
                continue
            del early[key]
            pending[key] = [at]
            if held[1] != event.model:
                stats.model_mismatch += 1
                continue
            stats.joined += 1
            outcomes.append(
                Outcome(
                    key, event.model, event.model_version, event.prediction, event.scores,
                    held[2], at, int(held[0]), event.segment,
                )
            )  # fmt: skip
        return outcomes

    def add_prediction_columns(self, columns: PredictionColumns) -> list[Outcome]:
        """`add_predictions` for one model version's columns (same state, same outcomes)."""
        model, version = columns.model, columns.model_version
        ids, times = columns.event_ids, columns.times_us.tolist()
        predictions, scores = columns.prediction_list(), columns.score_dicts()
        segments: Iterable[dict[str, str] | None] = (
            columns.segments if columns.segments is not None else repeat(None)
        )
        pending, early, stats = self.pending, self.early, self.stats
        plain = type(pending) is dict and type(early) is dict and not early
        if plain and pending.keys().isdisjoint(ids) and len(set(ids)) == len(ids):
            # No label waits and nothing repeats (offline, the common case): all pend.
            entries = zip(times, repeat(model), repeat(version), predictions, scores, segments)
            pending.update(zip(ids, map(list, entries), strict=False))
            return []
        outcomes: list[Outcome] = []
        rows = zip(ids, times, predictions, scores, segments, strict=False)
        for key, at, prediction, score, segment in rows:
            if key in pending:
                stats.duplicate_predictions += 1
                continue
            held = early.get(key)
            if held is None:
                pending[key] = [at, model, version, prediction, score, segment]
                continue
            del early[key]
            pending[key] = [at]
            if held[1] != model:
                stats.model_mismatch += 1
                continue
            stats.joined += 1
            outcomes.append(
                Outcome(key, model, version, prediction, score, held[2], at, int(held[0]), segment)
            )
        return outcomes

    def add_labels(
        self, labels: Iterable[LabelEvent], *, times_us: Iterable[int] | None = None
    ) -> list[Outcome]:
        """Join labels to waiting predictions; early labels are held, duplicates ignored.

        ``times_us``: the labels' ``epoch_us`` timestamps, in order, if already known.
        """
        outcomes: list[Outcome] = []
        append = outcomes.append
        pending, early, stats = self.pending, self.early, self.stats
        labels = list(labels)
        times = (
            list(map(epoch_us, [label.timestamp for label in labels]))
            if times_us is None else list(times_us)
        )  # fmt: skip
        for label, labelled in zip(labels, times, strict=True):
            key = label.event_id
            entry = pending.get(key)
            if entry is None:
                if key in early:
                    stats.duplicate_labels += 1
                else:
                    early[key] = [labelled, label.model, label.label]
                    stats.early += 1
                continue
            if len(entry) == 1:
                stats.duplicate_labels += 1
                continue
            at, model, version, prediction, scores, segment = entry
            if model != label.model:
                stats.model_mismatch += 1
                continue
            pending[key] = [at]
            stats.joined += 1
            append(
                Outcome(
                    key, model, version, prediction, scores, label.label, int(at), labelled,
                    segment,
                )
            )  # fmt: skip
        return outcomes

    def expire(self, now_event_time: datetime) -> int:
        """Forget entries older than the TTL at ``now_event_time``; returns the orphan labels.

        Scans both mappings, so call it now and then (e.g. every few minutes of event time),
        not per batch.
        """
        horizon = expiry_horizon_us(now_event_time, self.ttl_seconds)
        for key in _older(self.pending, horizon):
            if len(self.pending[key]) > 1:
                self.stats.unlabelled += 1
            del self.pending[key]
        orphans = _older(self.early, horizon)
        for key in orphans:
            del self.early[key]
        self.stats.orphans += len(orphans)
        return len(orphans)


def _older(mapping: MutableMapping[str, Any], horizon: int) -> Sequence[str]:
    # Keys are collected before anything is deleted, so iterating the live view is safe.
    return [key for key, entry in mapping.items() if entry[0] < horizon]
