"""The one place where the Faust agents touch the pure monitor (``detectors``).

Agents hand it validated events and plain mappings (Faust tables behind JSON views); it hands
back window-delta states to publish and alerts to emit. Everything crossing Kafka is plain JSON
(``to_state``/``from_state``), so a judge can be rebuilt from its table on any worker.
"""

from __future__ import annotations

import importlib
import itertools
import json
from collections.abc import Callable, Iterable, MutableMapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NamedTuple
from urllib.parse import urlparse

import numpy as np
import numpy.typing as npt

from detectors.accumulate_deferred import DeferredDelta
from detectors.join import JoinStats, LabelJoiner, epoch_us, expiry_horizon_us
from detectors.window import WindowDelta
from schemas.events import Alert, LabelEvent, PredictionEvent
from schemas.monitor_config import ModelMonitorConfig, MonitorConfig
from schemas.settings import Settings

if TYPE_CHECKING:
    from streams.metrics import WorkerMetrics

__all__ = [
    "DeltaCuts", "DeltaOut", "MonitorKit", "TimedRun", "count_join_outcomes",
    "import_monitor_modules",
]  # fmt: skip

EXPIRE_EVERY_TTL_FRACTION: Final = 0.25
"""A partition's join is expired whenever its event time advanced by this fraction of the TTL."""
DEFAULT_DELTA_EVENTS: Final = 250
"""Events per published delta at most for time windows (half the default count window)."""
MAX_DELTA_EVENTS: Final = 4_000
"""Events per delta at most for any model: under a window sketch's reservoir (4,096 values),
so a delta's samples stay whole (~110 bytes per event with 10 features; the sketches topic
takes messages of up to 32 MiB). Each delta costs the ingest and the judge a fixed amount
besides its events: a cap of 2,000 cost row b of `bench/worker_throughput.py` ~3 % against
2,500 (the high-volume configuration's eighth of the warm-up; 39th session)."""
DEFAULT_LABELS_LAG_TOLERANCE: Final = 500
"""Unread label messages of a partition beyond which its deltas are marked ``labels_behind``
(no label-coverage verdict): a worker reading in real time is far below it; a catch-up or a
replay at full speed, which reads the labels topic behind the predictions, is far above."""
MONITOR_MODULES: Final = (
    "detectors.accumulate", "detectors.accumulate_columns", "detectors.judge",
    "detectors.judge_state", "schemas.profile",
)  # fmt: skip
"""The modules `MonitorKit` imports when first used: the judge's pull in river and scipy."""


def import_monitor_modules() -> None:
    """Import `MONITOR_MODULES` now, for a worker about to start.

    They stay lazy for the commands that never judge (``driftline replay``), but a worker that
    imported them at its first delta stopped its event loop for ~2.5 s (river's drift package
    imports its datasets, hence scikit-learn and pandas) with a full batch in flight.
    """
    for name in MONITOR_MODULES:
        importlib.import_module(name)


@dataclass(frozen=True)
class DeltaOut:
    """A drained window delta of one model, ready for the sketches topic."""

    model: str
    window: WindowDelta | DeferredDelta
    """The delta itself, owned by this object: merged with others before it is written
    (`streams.delta_merge`), so its JSON state is built once, when published (a deferred
    delta is folded then too: `detectors.accumulate_deferred`)."""
    start: float
    """Event time (epoch seconds) of the delta's first event: the judge gets deltas in order."""

    @cached_property
    def state(self) -> dict[str, Any]:
        """The delta's JSON state (built on first use; merge nothing into it after that)."""
        return self.window.to_state()


def _sort_key(start: datetime | None) -> float:
    return start.timestamp() if start is not None else float("inf")


def delta_events_of(settings: ModelMonitorConfig) -> int:
    """Events per delta at most for a model configured so: the judge takes a delta whole, so
    a count window (or slide step) gets up to one delta more than its size, and a warm-up
    reference up to one delta more than ``warmup_events``. Half the step, an eighth of the
    warm-up and `MAX_DELTA_EVENTS` bound that (250 for the defaults: 500-event windows, a
    2000-event warm-up); time windows keep `DEFAULT_DELTA_EVENTS`, since their events per
    second are not known.

    >>> from schemas.monitor_config import parse_monitor_config
    >>> delta_events_of(parse_monitor_config({}).for_model("m"))
    250
    >>> big = {"window": {"size": 20000}, "reference": {"warmup_events": 20000}}
    >>> delta_events_of(parse_monitor_config({"defaults": big}).for_model("m"))
    2500
    """
    window, reference = settings.window, settings.reference
    if window.type != "count":
        return DEFAULT_DELTA_EVENTS
    bound = int(window.slide or window.size) // 2
    if reference.source == "warmup":
        bound = min(bound, reference.warmup_events // 8)
    return max(1, min(bound, MAX_DELTA_EVENTS))


class DeltaCuts(NamedTuple):
    """Where a model's live deltas end (`MonitorKit.cuts_of`)."""

    events: int
    """Events per delta at most (`delta_events_of`)."""
    time_step_us: int | None
    """Its time windows' step (`WindowConfig.step_us`): deltas end at each; None: count
    windows."""


Ints = Sequence[int] | npt.NDArray[np.int64]
TimedRun = tuple[str, Ints, Ints]
"""A model's rows of a batch: (model, their places in consumption order, epoch-µs times)."""


def _timed_runs(kit: MonitorKit, events: Sequence[PredictionEvent | LabelEvent]) -> list[TimedRun]:
    """Each time-windowed model's events as one `TimedRun` (labels, and the event path of
    `MonitorKit.fold_partition`)."""
    if not kit.time_windows:
        return []
    places: dict[str, list[int]] = {}
    times: dict[str, list[int]] = {}
    for place, event in enumerate(events):
        if kit.time_step_us(event.model) is None:
            continue
        places.setdefault(event.model, []).append(place)
        times.setdefault(event.model, []).append(epoch_us(event.timestamp))
    return [(model, places[model], times[model]) for model in places]


def _wall_clock() -> datetime:
    return datetime.now(UTC)


class MonitorKit:
    """Builds joiners, accumulators and judges from the monitor configuration."""

    def __init__(
        self,
        config: MonitorConfig,
        *,
        delta_events: int | None = None,
        labels_lag_tolerance: int = DEFAULT_LABELS_LAG_TOLERANCE,
        clock: Callable[[], datetime] = _wall_clock,
    ) -> None:
        if delta_events is not None and delta_events < 1:
            raise ValueError(f"delta_events must be at least 1, got {delta_events}")
        self.config = config
        self.join_ttl_seconds = config.join.ttl_seconds
        self._fixed_delta_events = delta_events
        """Events per delta for every model (tests), else each model's `delta_events_of`."""
        self._cuts: dict[str, DeltaCuts] = {}
        """Model -> where its deltas end (`cuts_of`), read from the configuration once."""
        configured = [self.cuts_of(name) for name in ["", *config.models]]
        self.delta_events = delta_events or min(cuts.events for cuts in configured)
        """The smallest cap of any configured model (labels are cut by it)."""
        self.time_windows = any(cuts.time_step_us is not None for cuts in configured)
        """Whether any model has time windows (else no batch is cut at time steps)."""
        self.labels_lag_tolerance = labels_lag_tolerance
        self.clock = clock
        self._expired_at: dict[int, float] = {}
        """Partition -> event time (epoch s) of its last expiry, in memory: after a restart
        the first batch of each partition expires once more, which is harmless."""

    def delta_events_for(self, models: Iterable[str]) -> int:
        """Events per delta at most for a batch of these models: the smallest of their caps
        (a batch is cut in runs of consumption order, across models)."""
        if self._fixed_delta_events is not None:
            return self._fixed_delta_events
        return min((self.cuts_of(model).events for model in set(models)),
                   default=self.delta_events)  # fmt: skip

    def cuts_of(self, model: str) -> DeltaCuts:
        """Where ``model``'s deltas end: its cap (`delta_events_of`) and time window step."""
        cuts = self._cuts.get(model)
        if cuts is None:
            settings = self.config.for_model(model)
            cuts = self._cuts[model] = DeltaCuts(delta_events_of(settings), settings.window.step_us)
        return cuts

    def time_step_us(self, model: str) -> int | None:
        """The step of ``model``'s time windows in µs (None: count windows)."""
        return self.cuts_of(model).time_step_us

    def chunk_starts(self, rows: int, step: int, runs: Iterable[TimedRun] = ()) -> list[int]:
        """Where a batch's chunks start (each folds into one delta per model version), rows
        numbered 0 to ``rows - 1`` in consumption order: every ``step`` rows, and at each row
        of a time-windowed model whose event time lies in another step of its window than the
        row of its run before it. ``runs``: (model, places, times in epoch µs) of the batch's
        rows, each run in increasing places.

        The judge takes a delta whole, so a delta across a time window's end made that window
        longer (a full-speed replay of a 1 event/s model with 60 s windows judged 250 s
        windows); cut at the steps (`detectors.window.time_step_end`), a live window holds
        what `driftline backtest` puts in it.

        >>> from schemas.monitor_config import parse_monitor_config
        >>> kit = MonitorKit(parse_monitor_config(
        ...     {"defaults": {"window": {"type": "time", "time_seconds": 60}}}))
        >>> times = np.array([0, 59, 60, 61, 119, 120, 121], dtype=np.int64) * 1_000_000
        >>> kit.chunk_starts(7, 250, [("m", np.arange(7), times)])
        [0, 2, 5]
        >>> kit.chunk_starts(7, 2, [("m", np.arange(7), times)])
        [0, 2, 4, 5]
        """
        cuts: set[int] = set()
        for model, places, times in runs:
            step_us = self.time_step_us(model)
            if step_us is not None and len(times) > 1:
                steps = np.asarray(times, dtype=np.int64) // step_us
                cuts.update(np.asarray(places)[1:][np.diff(steps) != 0].tolist())
        if not cuts:
            return list(range(0, rows, step))
        bounds = [0, *sorted(cuts - {0}), rows]
        return [start for a, b in itertools.pairwise(bounds) for start in range(a, b, step)]

    @classmethod
    def from_settings(cls, settings: Settings) -> MonitorKit:
        from schemas.monitor_config import load_monitor_config

        return cls(load_monitor_config(settings.monitor_config))

    # -- ingest side ---------------------------------------------------------------------------

    def fold_partition(
        self,
        pending: MutableMapping[str, Any],
        early: MutableMapping[str, Any],
        predictions: Sequence[PredictionEvent],
        labels: Sequence[LabelEvent],
        metrics: WorkerMetrics,
        *,
        partition: int | None = None,
        labels_behind: bool = False,
    ) -> list[DeltaOut]:
        """Join and fold one partition's batch into deltas of at most `delta_events_for` its
        models each; with ``partition``, expire its join now and then (the mappings hold its
        entries only).

        Bounded deltas keep event time roughly ordered at the judge: a replay at full speed
        hands a worker thousands of events per partition at once, and one delta spanning all
        of them would blur the warm-up reference with the very change it should reveal.
        """
        from detectors.accumulate import PartitionAccumulator

        joiner = LabelJoiner(pending, early, ttl_seconds=self.join_ttl_seconds)
        accumulator = PartitionAccumulator(self.config)
        out: list[DeltaOut] = []
        step = self.delta_events_for(event.model for event in predictions)
        starts = self.chunk_starts(len(predictions), step, _timed_runs(self, predictions))
        for start, end in itertools.pairwise([*starts, len(predictions)]):
            chunk = predictions[start:end]
            accumulator.add_predictions(chunk)
            outcomes = joiner.add_predictions(chunk)
            out.extend(self.fold_joined(accumulator, outcomes, metrics, labels_behind))
        out.extend(self.fold_labels(joiner, accumulator, labels, metrics, labels_behind))
        count_join_outcomes(joiner.stats, metrics)
        if partition is not None and (predictions or labels):
            newest = max(
                [event.timestamp for event in predictions[-1:]]
                + [event.timestamp for event in labels[-1:]]
            )
            if self.expiry_due(partition, newest):
                self.expire(pending, early, newest, metrics)
        return out

    def expiry_due(self, partition: int, newest: datetime) -> bool:
        """Whether ``partition``'s join should be expired now: its event time (``newest``, the
        later of its last prediction's and last label's) advanced by a fraction of the TTL
        since its last expiry. An expiry scans the partition's whole store."""
        now = newest.timestamp()
        last = self._expired_at.setdefault(partition, now)
        if now - last < self.join_ttl_seconds * EXPIRE_EVERY_TTL_FRACTION:
            return False
        self._expired_at[partition] = now
        return True

    def expiry_horizon_us(self, newest: datetime) -> int:
        """The event time (epoch microseconds) before which `expire` at ``newest`` drops an
        entry: a scan can skip every entry from then on."""
        return expiry_horizon_us(newest, self.join_ttl_seconds)

    def expire(
        self,
        pending: MutableMapping[str, Any],
        early: MutableMapping[str, Any],
        newest: datetime,
        metrics: WorkerMetrics,
    ) -> None:
        """Forget the join entries older than the TTL at ``newest``; count the orphans and the
        predictions that expired unlabelled. The mappings hold one partition's entries."""
        joiner = LabelJoiner(pending, early, ttl_seconds=self.join_ttl_seconds)
        joiner.expire(newest)
        count_join_outcomes(joiner.stats, metrics)

    def fold_joined(
        self, accumulator: Any, outcomes: list[Any], metrics: WorkerMetrics, labels_behind: bool
    ) -> list[DeltaOut]:
        """Record each join's label latency, fold the outcomes, drain the deltas."""
        observe_latency = metrics.label_latency.observe
        for joined in outcomes:
            observe_latency(joined.latency_seconds)
        accumulator.add_outcomes(outcomes)
        return self.drain(accumulator, labels_behind)

    def fold_labels(
        self,
        joiner: LabelJoiner,
        accumulator: Any,
        labels: Sequence[LabelEvent],
        metrics: WorkerMetrics,
        labels_behind: bool,
    ) -> list[DeltaOut]:
        """Join and fold a batch's labels, ``delta_events`` at a time (cut at the steps of
        time windows, as predictions are: `chunk_starts`)."""
        out: list[DeltaOut] = []
        starts = self.chunk_starts(len(labels), self.delta_events, _timed_runs(self, labels))
        for start, end in itertools.pairwise([*starts, len(labels)]):
            outcomes = joiner.add_labels(labels[start:end])
            out.extend(self.fold_joined(accumulator, outcomes, metrics, labels_behind))
        return out

    @staticmethod
    def drain(accumulator: Any, labels_behind: bool) -> list[DeltaOut]:
        """The accumulator's drained deltas, ready for the sketches topic."""
        out = []
        for delta in accumulator.drain():
            delta.labels_behind = labels_behind
            out.append(DeltaOut(delta.model, delta, _sort_key(delta.start)))
        return out

    # -- judge side ----------------------------------------------------------------------------

    def load_judge(self, model: str, state: dict[str, Any] | None, metrics: WorkerMetrics) -> Any:
        from detectors.judge import ModelJudge

        judges: list[Any] = []  # the judge below, once built
        timed = [-1]  # the judge's window count when a verdict was last timed

        def export(point: Any) -> None:
            # A window's first point: its verdict is being made now. Counted by the judge's
            # windows, not by window_end: windows of events with one timestamp share it.
            windows = judges[0].windows if judges else timed[0] + 1
            if windows != timed[0]:
                timed[0] = windows
                latency = (self.clock() - point.window_end).total_seconds()
                metrics.decision_latency.observe(max(0.0, latency))
            # Segments would multiply the series; Prometheus gets the all-traffic statistics.
            if point.segment is None:
                metrics.set_statistic(
                    point.model, point.kind, point.feature, point.detector,
                    point.statistic, point.threshold,
                )  # fmt: skip

        # Gauges show the deciding statistics: the report-only ones (and their simulated
        # thresholds) are for `driftline backtest` and `report`, which recompute them.
        options: dict[str, Any] = {"clock": self.clock, "on_point": export,
                                   "report_all_statistics": False}  # fmt: skip
        if state is None:
            judge = ModelJudge(model, self.config, **options)
        else:
            judge = ModelJudge.from_state(state, self.config, **options)
        judges.append(judge)
        return judge

    def apply_delta(self, judge: Any, delta_state: dict[str, Any]) -> list[Alert]:
        from detectors.window import WindowDelta

        alerts: list[Alert] = judge.apply(WindowDelta.from_state(delta_state))
        return alerts

    @staticmethod
    def sequential_statistics(judge: Any) -> list[tuple[str, str, float, float]]:
        """``(feature, detector, statistic, threshold)`` of the judge's per-feature CUSUMs
        (none before it has a reference)."""
        from detectors.judge_cusum import DETECTOR, statistics

        monitor = judge.mean_shift
        if monitor is None:
            return []
        return [(name, DETECTOR, value, h) for name, value, h in statistics(monitor)]

    def judge_state(self, judge: Any) -> dict[str, Any]:
        state: dict[str, Any] = judge.to_state()
        return state

    def switch_reference(self, judge: Any, reference: dict[str, Any]) -> list[Alert]:
        """Switch the judge's baseline; returns the resolves of alerts firing until now."""
        from schemas.profile import ReferenceProfile

        judge.set_reference(ReferenceProfile.model_validate(reference))
        resolved: list[Alert] = judge.flush()
        return resolved

    @staticmethod
    def resolve_reference(reference: dict[str, Any] | str) -> dict[str, Any]:
        """A ModelEvent's reference: the profile itself, or a ``file://`` URI / path to it."""
        if isinstance(reference, dict):
            return reference
        parsed = urlparse(reference)
        if parsed.scheme not in ("", "file"):
            raise ValueError(
                f"reference URI {reference!r} uses scheme {parsed.scheme!r}; workers load "
                f"file:// URIs or inline profiles"
            )
        path = Path(parsed.path if parsed.scheme == "file" else reference)
        loaded = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(loaded, dict):
            raise ValueError(f"reference file {str(path)!r} must hold a JSON object")
        return loaded


def count_join_outcomes(stats: JoinStats, metrics: WorkerMetrics) -> None:
    """Add a joiner's counts to ``driftline_label_join_total``."""
    for outcome, count in (
        ("hit", stats.joined),
        ("early", stats.early),
        ("duplicate", stats.duplicate_labels),
        ("orphan", stats.orphans),
        ("expired", stats.unlabelled),
    ):
        if count:
            metrics.join_outcomes.labels(outcome=outcome).inc(count)
