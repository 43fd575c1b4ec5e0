"""What the judge table keeps per model next to the judge: enough to never count a delta twice.

Two crashes can hand a judge the same events again:

- the judge applied sketches messages and stored its state, but the worker died before Faust
  committed the sketches offsets: the messages come again. The record keeps the offset of the
  last sketches message applied and skips everything at or below it.
- an ingest published its deltas but died before it stored its progress offsets: after the
  restart the same input messages are folded again and published as new deltas. Every delta
  carries its *origin* (input partition, the offsets its batch covered, its index in the batch;
  a delta merged from several partitions' parts carries one per part, `streams.delta_merge`);
  the ingest stores the batch it is about to publish (its intent) before publishing, so the
  replay after a crash uses the same batch, and the record drops deltas of batches it applied.

>>> record = JudgeRecord.load(None)
>>> origin = {"partition": 0, "batch": [0, 249, -1, -1], "index": 0}
>>> record.accept(origin), record.accept(origin)
(True, False)
>>> record.accept({"partition": 0, "batch": [0, 249, -1, -1], "index": 2})
True
>>> record.accept({"partition": 0, "batch": [0, 249, -1, -1], "index": 1})  # out of order
True
>>> record.accept({"partition": 0, "batch": [250, 499, 0, 9], "index": 0})
True
>>> record.accept({"partition": 0, "batch": [0, 99, -1, -1], "index": 0})  # older: covered
False
>>> JudgeRecord.load(record.dump()).batches == record.batches
True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = ["RECORD_FORMAT", "Batch", "JudgeRecord", "batch_of", "origins_of"]

RECORD_FORMAT: Final = 1
"""Stored as ``{"record": 1, "judge": ..., ...}``; a bare judge state (before) still loads."""
Batch = list[int]
"""``[first prediction offset, last, first label offset, last]`` of one ingest batch of one
input partition; ``-1, -1`` for a source the batch holds no message of."""


def origins_of(envelope: Mapping[str, Any]) -> list[Mapping[str, Any]] | None:
    """The origins of a sketches delta: several once merged (``origins``), else its one
    ``origin``; None when an older worker published it without any."""
    origins = envelope.get("origins")
    if origins:
        return list(origins)
    origin = envelope.get("origin")
    return None if origin is None else [origin]


def batch_of(offsets: Mapping[str, tuple[int, int]]) -> Batch:
    """The batch id of ``{"predictions": (first, last), "labels": (first, last)}``."""
    predictions = offsets.get("predictions", (-1, -1))
    labels = offsets.get("labels", (-1, -1))
    return [predictions[0], predictions[1], labels[0], labels[1]]


@dataclass
class JudgeRecord:
    """A model's judge state plus where its input stands (see the module docstring)."""

    judge: dict[str, Any] | None = None
    sketches_offset: int = -1
    """Offset of the last sketches message applied (the model's messages share a partition)."""
    applied: dict[str, list[int]] = field(default_factory=dict)
    """Input partition -> ``[last prediction offset, last label offset]`` applied."""
    batches: dict[str, list[int]] = field(default_factory=dict)
    """Input partition -> its last applied batch id followed by the indexes applied of it (a
    batch's deltas go out in event-time order, not in index order)."""
    events: int = 0
    """Prediction events in the deltas applied (warm-up included): equal to what was produced."""
    duplicates: int = 0
    """Deltas dropped because their batch had been applied."""
    reference_id: str | None = None
    """Profile id of the reference stored under the model's reference key (the judge state
    is stored without it)."""
    watermarks: dict[str, int] = field(default_factory=dict)
    """Input partition -> latest event time (µs) of its deltas, while warming up."""
    parked: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """Input partition -> its deltas ahead of the slowest partition during the warm-up, in
    arrival order (see `streams.warmup_order`)."""

    @classmethod
    def load(cls, value: Mapping[str, Any] | None) -> JudgeRecord:
        if value is None:
            return cls()
        if value.get("record") != RECORD_FORMAT:
            return cls(judge=dict(value))  # a bare judge state, stored before records existed
        return cls(
            judge=value.get("judge"),
            sketches_offset=int(value.get("sketches_offset", -1)),
            applied={k: [int(x) for x in v] for k, v in value.get("applied", {}).items()},
            batches={k: [int(x) for x in v] for k, v in value.get("batches", {}).items()},
            events=int(value.get("events", 0)),
            duplicates=int(value.get("duplicates", 0)),
            reference_id=value.get("reference_id"),
            watermarks={k: int(v) for k, v in value.get("watermarks", {}).items()},
            # Records from before kept one merged delta per partition.
            parked={
                key: states if isinstance(states, list) else [states]
                for key, states in (value.get("parked") or {}).items()
            },
        )

    def dump(self) -> dict[str, Any]:
        return {
            "record": RECORD_FORMAT,
            "judge": self.judge,
            "sketches_offset": self.sketches_offset,
            "applied": self.applied,
            "batches": self.batches,
            "events": self.events,
            "duplicates": self.duplicates,
            "reference_id": self.reference_id,
            "watermarks": self.watermarks,
            "parked": self.parked,
        }

    def seen(self, offset: int) -> bool:
        """Whether the sketches message at ``offset`` was applied before (a re-delivery)."""
        return offset <= self.sketches_offset

    def accept_all(self, origins: Sequence[Mapping[str, Any]] | None) -> bool:
        """Whether a delta merged from ``origins`` (`streams.delta_merge`) is new; records
        each of its new parts. One new part is enough: the ingest merges only fresh batches,
        so a replay sends a merged delta's parts again one by one, never a mix.

        >>> record = JudgeRecord()
        >>> parts = [{"partition": p, "batch": [0, 9, -1, -1], "index": 0} for p in (0, 1)]
        >>> record.accept_all(parts), record.accept(parts[1]), record.accept_all(parts)
        (True, False, False)
        >>> record.duplicates
        2
        """
        if not origins:
            return True  # published by an older worker: nothing to check it against
        duplicates = self.duplicates
        fresh = [self.accept(origin) for origin in origins]  # only new parts are recorded
        self.duplicates = duplicates + (0 if any(fresh) else 1)
        return any(fresh)

    def accept(self, origin: Mapping[str, Any] | None) -> bool:
        """Whether a delta of ``origin`` is new; records it when it is."""
        if origin is None:
            return True  # published by an older worker: nothing to check it against
        key = str(int(origin["partition"]))
        batch = [int(x) for x in origin["batch"]]
        index = int(origin["index"])
        last = self.batches.get(key)
        if last is not None and batch == last[:4]:
            if index in last[4:]:
                self.duplicates += 1
                return False
            last.append(index)
        else:
            applied = self.applied.get(key, [-1, -1])
            if batch[1] <= applied[0] and batch[3] <= applied[1]:
                self.duplicates += 1
                return False  # every message of it is older than what was applied
            self.batches[key] = [*batch, index]
        previous = self.applied.get(key, [-1, -1])
        self.applied[key] = [max(previous[0], batch[1]), max(previous[1], batch[3])]
        return True
