"""The whole monitor in one process: joiner, accumulator and one judge per model.

``driftline backtest`` feeds it recorded events; it runs the very code the workers run
(``LabelJoiner`` -> ``PartitionAccumulator`` -> ``WindowDelta`` -> ``ModelJudge``), so its
alerts are the ones the live system would have sent. Batches are cut where a judge's warm-up
or window completes, so each window holds exactly ``window.size`` events (live, deltas from
partitions may overshoot a little), or where enough labels may complete one on outcomes.

>>> from datetime import UTC, datetime, timedelta
>>> from schemas.events import PredictionEvent
>>> from schemas.monitor_config import parse_monitor_config
>>> t0 = datetime(2024, 5, 1, tzinfo=UTC)
>>> config = parse_monitor_config({"defaults": {"reference": {"warmup_events": 100},
...                                             "window": {"size": 100}}})
>>> monitor = FleetMonitor(config, clock=lambda: t0)
>>> events = [PredictionEvent(event_id=str(i), model="m", timestamp=t0 + timedelta(seconds=i),
...           features={"x": float(i % 7)}, prediction=0.5) for i in range(400)]
>>> monitor.process(events, []), monitor.finish()
([], [])
>>> monitor.judges["m"].windows
3
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Final

import numpy as np

from detectors.accumulate import PartitionAccumulator
from detectors.columns import PredictionColumns
from detectors.evaluate import StatisticPoint
from detectors.join import LabelJoiner, Outcome, epoch_us, from_epoch_us
from detectors.judge import ModelJudge
from schemas.events import Alert, LabelEvent, PredictionEvent
from schemas.monitor_config import MonitorConfig
from schemas.profile import ReferenceProfile

__all__ = ["EXPIRE_EVERY_TTL_FRACTION", "FleetMonitor"]

EXPIRE_EVERY_TTL_FRACTION: Final = 0.25
"""The join is expired whenever event time advanced by this fraction of the TTL."""


class FleetMonitor:
    """Every model's monitor, offline: ``process`` event-time ordered batches, then ``finish``."""

    def __init__(
        self,
        config: MonitorConfig,
        *,
        clock: Callable[[], datetime],
        on_point: Callable[[StatisticPoint], None] | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.on_point = on_point
        self.joiner = LabelJoiner({}, {}, ttl_seconds=config.join.ttl_seconds)
        self.accumulator = PartitionAccumulator(config)
        self.judges: dict[str, ModelJudge] = {}
        self._expired_us: int | None = None
        self._now_us: int | None = None

    def judge(self, model: str) -> ModelJudge:
        """The judge of ``model`` (created on first use)."""
        judge = self.judges.get(model)
        if judge is None:
            judge = self.judges[model] = ModelJudge(
                model, self.config, clock=self.clock, on_point=self.on_point
            )
        return judge

    def set_reference(self, model: str, profile: ReferenceProfile) -> None:
        """A ``promoted`` model event: switch the model's reference."""
        self.judge(model).set_reference(profile)

    def process(
        self, predictions: Sequence[PredictionEvent], labels: Sequence[LabelEvent] = ()
    ) -> list[Alert]:
        """Fold a batch of predictions and labels (merged in event-time order)."""
        n_pred = len(predictions)
        times = np.fromiter(
            (epoch_us(event.timestamp) for seq in (predictions, labels) for event in seq),
            dtype=np.int64, count=n_pred + len(labels),
        )  # fmt: skip
        if times.size == 0:
            return []
        order, sorted_times, position = _event_time_order(times, n_pred)
        label_rows = np.flatnonzero(order >= n_pred)
        models = [event.model for event in predictions]
        if models and models.count(models[0]) == n_pred:  # the common case: one model
            positions = {models[0]: np.sort(position[:n_pred])}
        else:
            by_model: dict[str, list[int]] = {}
            for index, model in enumerate(models):
                by_model.setdefault(model, []).append(index)
            positions = {model: np.sort(position[idx]) for model, idx in by_model.items()}
        alerts: list[Alert] = []
        start = 0
        while start < times.size:
            cut = self._next_cut(start, positions, label_rows, sorted_times)
            chunk = order[start:cut]
            is_label = chunk >= n_pred
            if not is_label.any():  # predictions only, in event-time order
                chunk_predictions = [predictions[j] for j in chunk.tolist()]
                chunk_labels: list[LabelEvent] = []
                chunk_times, label_times = sorted_times[start:cut].tolist(), []
            else:
                mine, theirs = chunk[~is_label], chunk[is_label]
                chunk_predictions = [predictions[j] for j in mine.tolist()]
                chunk_labels = [labels[j] for j in (theirs - n_pred).tolist()]
                chunk_times, label_times = times[mine].tolist(), times[theirs].tolist()
            alerts += self._fold(
                chunk_predictions, chunk_labels, int(sorted_times[cut - 1]),
                chunk_times, label_times,
            )  # fmt: skip
            start = cut
        return alerts

    def _next_cut(
        self,
        start: int,
        positions: dict[str, np.ndarray],
        label_rows: np.ndarray,
        sorted_times: np.ndarray,
    ) -> int:
        """End (exclusive) of the next chunk: where the first warm-up or window completes."""
        cut = sorted_times.size
        # Outcomes also close count windows (labels arriving after the traffic stopped); a
        # label joins at most one outcome, so cutting after that many labels never overshoots.
        done = int(np.searchsorted(label_rows, start))
        if done < label_rows.size:  # only labels ahead can close a window on outcomes
            need = min(
                (n for judge in self.judges.values() if (n := judge.labels_until_decision())),
                default=None,
            )
            if need is not None and done + need - 1 < label_rows.size:
                cut = int(label_rows[done + need - 1]) + 1
        for model, where in positions.items():
            done = int(np.searchsorted(where, start))
            if done >= where.size:
                continue
            judge = self.judge(model)
            need = judge.events_until_decision()
            if need is not None and done + max(need, 1) - 1 < where.size:
                cut = min(cut, int(where[done + max(need, 1) - 1]) + 1)
            step = judge.events_until_step()  # CUSUM updates: cut before the next step's first
            if step is not None and done + step < where.size:  # prediction, so no window moves
                cut = min(cut, int(where[done + step]))
            boundary = judge.time_of_decision(int(sorted_times[where[done]]))
            if boundary is not None:
                index = int(np.searchsorted(sorted_times, boundary, side="left"))
                if index > start:
                    cut = min(cut, index)
        return cut

    def _fold(
        self,
        predictions: list[PredictionEvent],
        labels: list[LabelEvent],
        last_us: int,
        times_us: list[int],
        label_times_us: list[int],
    ) -> list[Alert]:
        outcomes = self.joiner.add_predictions(predictions, times_us=times_us)
        outcomes += self.joiner.add_labels(labels, times_us=label_times_us)
        self.accumulator.add_predictions(predictions, times_us=times_us)
        self.accumulator.add_outcomes(outcomes)
        return self._settle(last_us)

    def _settle(self, last_us: int) -> list[Alert]:
        """Judge what the accumulator folded; expire the join now and then."""
        alerts: list[Alert] = []
        for delta in self.accumulator.drain():
            alerts += self.judge(delta.model).apply(delta)
        self._now_us = last_us if self._now_us is None else max(self._now_us, last_us)
        every = int(self.config.join.ttl_seconds * EXPIRE_EVERY_TTL_FRACTION * 1e6)
        if self._expired_us is None:
            self._expired_us = self._now_us
        elif self._now_us - self._expired_us >= every:
            self.joiner.expire(from_epoch_us(self._now_us))
            self._expired_us = self._now_us
        return alerts

    def process_columns(
        self, columns: Sequence[PredictionColumns], labels: Sequence[LabelEvent] = ()
    ) -> list[Alert]:
        """`process` for columnar predictions (one `PredictionColumns` per model version).

        Chunks are cut where `process` cuts them and folded column-wise, so the alerts are
        those of `process` on the same events (taken in the order of ``columns``).
        """
        parts = [part for part in columns if len(part)]
        offsets = np.cumsum([0, *map(len, parts)])
        n_pred = int(offsets[-1])
        label_times = np.fromiter(
            (epoch_us(label.timestamp) for label in labels), dtype=np.int64, count=len(labels)
        )
        times = np.concatenate([*(part.times_us for part in parts), label_times])
        if times.size == 0:
            return []
        order, sorted_times, position = _event_time_order(times, n_pred)
        label_rows = np.flatnonzero(order >= n_pred)
        by_model: dict[str, list[np.ndarray]] = {}
        for k, part in enumerate(parts):
            by_model.setdefault(part.model, []).append(position[offsets[k] : offsets[k + 1]])
        positions = {model: np.sort(np.concatenate(p)) for model, p in by_model.items()}
        alerts: list[Alert] = []
        start = 0
        while start < times.size:
            cut = self._next_cut(start, positions, label_rows, sorted_times)
            chunk = order[start:cut]
            is_label = chunk >= n_pred
            mine, theirs = chunk[~is_label], chunk[is_label] - n_pred
            pieces = _pieces(parts, offsets, mine)
            chunk_labels = [labels[j] for j in theirs.tolist()]
            outcomes: list[Outcome] = []
            for piece in pieces:
                outcomes += self.joiner.add_prediction_columns(piece)
            outcomes += self.joiner.add_labels(chunk_labels, times_us=label_times[theirs].tolist())
            for piece in pieces:
                self.accumulator.add_columns(piece)
            self.accumulator.add_outcomes(outcomes)
            alerts += self._settle(int(sorted_times[cut - 1]))
            start = cut
        return alerts

    def finish(self) -> list[Alert]:
        """End of input: alerts still queued (a partial last window is not judged)."""
        alerts: list[Alert] = []
        for model in sorted(self.judges):
            alerts += self.judges[model].flush()
        return alerts


def _pieces(
    parts: list[PredictionColumns], offsets: np.ndarray, rows: np.ndarray
) -> list[PredictionColumns]:
    """The rows (global positions, in event-time order) of each part, parts by first row."""
    if rows.size == 0:
        return []
    if len(parts) == 1:
        owner, order = None, [0]
    else:
        owner = np.searchsorted(offsets, rows, side="right") - 1
        kinds, first = np.unique(owner, return_index=True)
        order = kinds[np.argsort(first)].tolist()
    pieces: list[PredictionColumns] = []
    for k in order:
        mine = rows if owner is None or len(order) == 1 else rows[owner == k]
        local = mine - offsets[k]
        lo, hi = int(local[0]), int(local[-1]) + 1
        contiguous = hi - lo == local.size and bool((np.diff(local) == 1).all())
        part = parts[k]
        if contiguous and lo == 0 and hi == len(part):
            pieces.append(part)
        else:
            pieces.append(part.take(slice(lo, hi) if contiguous else local.astype(np.intp)))
    return pieces


def _event_time_order(times: np.ndarray, n_pred: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(order, sorted times, position of each input in that order) of predictions (the first
    ``n_pred`` times) and labels: predictions before labels at equal times, stable otherwise."""
    keys = times * 2 + (np.arange(times.size) >= n_pred)
    order = np.argsort(keys, kind="stable")
    position = np.empty(times.size, dtype=np.int64)
    position[order] = np.arange(times.size)
    return order, times[order], position
