"""``MonitorKit.fold_partition`` for columnar predictions (`streams.ingest_columns`).

`fold_columns` cuts the predictions where ``fold_partition`` cuts them
(`MonitorKit.chunk_starts`: every ``kit.delta_events_for(models)`` predictions of the batch in
consumption order and at the steps of time windows, then the labels), hands each model
version's rows of a chunk to the accumulator in one ``add_columns`` call, as
``add_predictions`` folds its group of the chunk (sketches keep the batches they were updated
with, so the deltas come out the same), and joins the chunk as ``add_predictions`` does.
The deltas are deferred (`detectors.accumulate_deferred`): folded when their state is first
read, after `streams.delta_merge` gave each one the same model's rows of the round's other
partitions. Expiry stays the caller's (``on_joined`` hands it the joiner before the join
metrics count).

>>> from datetime import UTC, datetime
>>> from prometheus_client import CollectorRegistry
>>> from schemas.monitor_config import MonitorConfig
>>> from streams.ingest_columns import split_columns
>>> from streams.metrics import WorkerMetrics
>>> from streams.validation import RawMessage
>>> row = (b'{"event_id": "e-%d", "model": "m", "timestamp": "2024-05-01T00:00:0%dZ", '
...        b'"features": {"x": %d}, "prediction": 0.5}')
>>> split = split_columns([RawMessage("predictions", row % (i, i, i), "p", 0, i)
...     for i in range(3)], now=datetime(2024, 5, 1, tzinfo=UTC))
>>> kit = MonitorKit(MonitorConfig(), delta_events=2)
>>> pending: dict[str, object] = {}
>>> deltas = fold_columns(kit, pending, {}, split.predictions, split.labels,
...     WorkerMetrics(CollectorRegistry()), labels_behind=False, positions=split.positions)
>>> [delta.state["count"] for delta in deltas], sorted(pending)
([2, 1], ['e-0', 'e-1', 'e-2'])
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import numpy.typing as npt

from detectors.accumulate import PartitionAccumulator
from detectors.accumulate_deferred import DeferredAccumulator
from detectors.columns import PredictionColumns
from detectors.columns_concat import concat_columns
from detectors.join import LabelJoiner, Outcome, epoch_us, from_epoch_us
from schemas.events import LabelEvent
from streams.agents_monitor import DeltaOut, MonitorKit, TimedRun, count_join_outcomes

if TYPE_CHECKING:
    from streams.metrics import WorkerMetrics

__all__ = ["fold_columns"]

IntArray = npt.NDArray[np.int64]


def fold_columns(
    kit: MonitorKit,
    pending: MutableMapping[str, Any],
    early: MutableMapping[str, Any],
    columns: Sequence[PredictionColumns],
    labels: Sequence[LabelEvent],
    metrics: WorkerMetrics,
    *,
    labels_behind: bool,
    positions: Sequence[IntArray] | None = None,
    on_joined: Callable[[LabelJoiner, datetime], None] | None = None,
    defer: bool = True,
    join_predictions: bool = True,
) -> list[DeltaOut]:
    """Join and fold one partition's batch into deltas of at most `MonitorKit.delta_events_for`
    its models each.

    ``positions``: per element of ``columns``, its rows' places in consumption order
    (``ColumnSplit.positions``: 0 to n-1 over all rows, increasing within each element); None:
    ``columns`` are consecutive runs, in consumption order. ``on_joined(joiner, newest)``, when
    given, runs after the join with the batch's newest event time as
    ``MonitorKit.expire_partition`` takes it (the later of the last prediction's and the last
    label's), so expiry on that joiner is counted in the same join metrics. ``defer=False``
    folds each chunk at once, as the ingest did before (`bench/ingest_fold.py`'s baseline).
    ``join_predictions=False``: the caller pended the predictions itself, because none meets
    a label or an entry of the join (`streams.join_batch.fresh_entries`); they are only folded.
    """
    joiner = LabelJoiner(pending, early, ttl_seconds=kit.join_ttl_seconds)
    accumulator = DeferredAccumulator(kit.config) if defer else PartitionAccumulator(kit.config)
    out: list[DeltaOut] = []
    step = kit.delta_events_for(part.model for part in columns)
    parts = _parts(columns, positions)
    rows = sum(len(part.columns) for part in parts)
    for pieces in _chunks(parts, kit.chunk_starts(rows, step, _timed_runs(kit, parts))):
        for group in _by_version(pieces):
            accumulator.add_columns(group)
        outcomes = _join(joiner, pieces) if join_predictions else []
        out.extend(kit.fold_joined(accumulator, outcomes, metrics, labels_behind))
    out.extend(kit.fold_labels(joiner, accumulator, labels, metrics, labels_behind))
    newest = _newest(parts, labels)
    if on_joined is not None and newest is not None:
        on_joined(joiner, newest)
    count_join_outcomes(joiner.stats, metrics)
    return out


class _Piece(NamedTuple):
    columns: PredictionColumns
    positions: IntArray


def _parts(
    columns: Sequence[PredictionColumns], positions: Sequence[IntArray] | None
) -> list[_Piece]:
    if positions is None:
        ends = np.cumsum([len(part) for part in columns], dtype=np.int64)
        positions = [
            np.arange(end - len(part), end) for part, end in zip(columns, ends, strict=True)
        ]
    if len(positions) != len(columns):
        raise ValueError(f"{len(positions)} position arrays for {len(columns)} columns: pass "
                         "ColumnSplit.positions with ColumnSplit.predictions")  # fmt: skip
    parts = []
    for part, where in zip(columns, positions, strict=True):
        where = np.asarray(where, dtype=np.int64)
        if where.shape != (len(part),) or (where.size > 1 and not (np.diff(where) > 0).all()):
            raise ValueError(f"positions of {part.model!r} must be {len(part)} increasing numbers")
        if len(part):
            parts.append(_Piece(part, where))
    return parts


def _timed_runs(kit: MonitorKit, parts: list[_Piece]) -> list[TimedRun]:
    """The rows of each time-windowed model (all its versions) as one `TimedRun`, as
    ``fold_partition`` sees them."""
    by_model: dict[str, list[_Piece]] = {}
    for part in parts:
        if kit.time_step_us(part.columns.model) is not None:
            by_model.setdefault(part.columns.model, []).append(part)
    runs: list[TimedRun] = []
    for model, mine in by_model.items():
        places = np.concatenate([part.positions for part in mine])
        times = np.concatenate([part.columns.times_us for part in mine])
        order = np.argsort(places, kind="stable")
        runs.append((model, places[order], times[order]))
    return runs


def _chunks(parts: list[_Piece], starts: list[int]) -> Iterator[list[_Piece]]:
    """Each run of positions from one of ``starts`` to the next: the pieces of the parts in
    it, by first position."""
    if not parts:
        return
    every = np.concatenate([part.positions for part in parts])
    owner = np.repeat(np.arange(len(parts)), [len(part.columns) for part in parts])
    order = np.argsort(every, kind="stable")
    if not np.array_equal(every[order], np.arange(every.size)):
        raise ValueError("positions must number the rows 0 to n-1, each once")
    owners = owner[order]
    cursor = [0] * len(parts)
    for start, end in itertools.pairwise([*starts, every.size]):
        mine = owners[start:end]
        seen, first = np.unique(mine, return_index=True)
        counts = np.bincount(mine, minlength=len(parts))
        pieces = []
        for k in seen[np.argsort(first)].tolist():
            part, lo = parts[k], cursor[k]
            hi = cursor[k] = lo + int(counts[k])
            whole = lo == 0 and hi == len(part.columns)
            pieces.append(_Piece(
                part.columns if whole else part.columns.take(slice(lo, hi)),
                part.positions[lo:hi],
            ))  # fmt: skip
        yield pieces


def _join(joiner: LabelJoiner, pieces: list[_Piece]) -> list[Outcome]:
    """``add_predictions`` of the chunk's rows in consumption order (same state, outcomes)."""
    if len(pieces) == 1:
        return joiner.add_prediction_columns(pieces[0].columns)
    ids = [i for piece in pieces for i in piece.columns.event_ids]
    outcomes: list[Outcome] = []
    if len(set(ids)) < len(ids):
        # One event_id twice: which of its rows pends depends on the order. Rows in order.
        for run in _in_order(pieces):
            outcomes += joiner.add_prediction_columns(run)
        return outcomes
    # Distinct ids: each row touches only its own keys, so the order matters only for the
    # outcomes' order, which their positions restore.
    for piece in pieces:
        outcomes += joiner.add_prediction_columns(piece.columns)
    if outcomes:
        place = dict(zip(ids, np.concatenate([p.positions for p in pieces]).tolist(), strict=True))
        outcomes.sort(key=lambda outcome: place[outcome.event_id])
    return outcomes


def _in_order(pieces: list[_Piece]) -> Iterator[PredictionColumns]:
    """The pieces' rows in consumption order, as runs of consecutive rows of one piece."""
    every = np.concatenate([piece.positions for piece in pieces])
    owner = np.repeat(np.arange(len(pieces)), [len(piece.columns) for piece in pieces])
    local = np.concatenate([np.arange(len(piece.columns)) for piece in pieces])
    order = np.argsort(every, kind="stable")
    owner, local = owner[order], local[order]
    cuts = [0, *(np.flatnonzero(np.diff(owner)) + 1).tolist(), len(owner)]
    for a, b in itertools.pairwise(cuts):
        yield pieces[int(owner[a])].columns.take(slice(int(local[a]), int(local[b - 1]) + 1))


def _newest(parts: list[_Piece], labels: Sequence[LabelEvent]) -> datetime | None:
    last = [epoch_us(label.timestamp) for label in labels[-1:]]
    if parts:  # the prediction that came last
        final = max(parts, key=lambda part: int(part.positions[-1]))
        last.append(int(final.columns.times_us[-1]))
    return from_epoch_us(max(last)) if last else None


def _by_version(pieces: list[_Piece]) -> list[PredictionColumns]:
    """One `PredictionColumns` per model version of the pieces (in first-seen order), its rows
    in consumption order."""
    groups: dict[tuple[str, str | None], list[_Piece]] = {}
    for piece in pieces:
        groups.setdefault((piece.columns.model, piece.columns.model_version), []).append(piece)
    out = []
    for group in groups.values():
        if len(group) == 1:
            out.append(group[0].columns)
            continue
        merged = concat_columns([piece.columns for piece in group])
        places = np.concatenate([piece.positions for piece in group])
        if (places[1:] > places[:-1]).all():
            out.append(merged)  # consecutive envelopes: already in order (a take was ~4 %)
            continue
        out.append(merged.take(np.argsort(places, kind="stable")))
    return out
