"""Prometheus metrics of one worker, on an explicit registry served at ``/metrics``.

Names follow Prometheus conventions (``driftline_`` prefix, seconds as the unit, ``_total`` for
counters). Labels are bounded: topic roles, error classes, join outcomes, and per-statistic
series (model, kind, feature, detector) capped at ``max_statistic_series`` so a model with
runaway feature names cannot blow up the scrape. A worker exports the per-model series of the
models it judges only: `forget_model` drops them when the model's judge moves to another worker.

>>> metrics = WorkerMetrics()
>>> metrics.events_in.labels(source="predictions").inc(3)
>>> metrics.set_statistic("churn", "feature_drift", "age", "psi", 0.12, 0.25)
True
>>> b'driftline_events_received_total{source="predictions"} 3.0' in metrics.exposition()
True
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import start_http_server

from streams.partitioning import partition_for

__all__ = ["DEFAULT_MAX_STATISTIC_SERIES", "MetricsServer", "WorkerMetrics", "serve_metrics"]

DEFAULT_MAX_STATISTIC_SERIES: Final = 2_000
AlertIdentity = tuple[str, str | None, str]
"""(kind, feature, detector): what an alert-state series is labelled by."""
_LATENCY_BUCKETS: Final = (
    0.001,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
_DECISION_LATENCY_BUCKETS: Final = (
    0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 60.0, 600.0, 3600.0,
    86400.0,
)  # fmt: skip
"""Fine around the live pipeline's 0.1-1 s; the long ones are replays of old event times."""
_LABEL_LATENCY_BUCKETS: Final = (
    1.0,
    10.0,
    60.0,
    300.0,
    900.0,
    3600.0,
    4 * 3600.0,
    86400.0,
    3 * 86400.0,
    7 * 86400.0,
)


class WorkerMetrics:
    """Every metric a worker exports; ``registry`` is injected so tests can read it back."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        max_statistic_series: int = DEFAULT_MAX_STATISTIC_SERIES,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.max_statistic_series = max_statistic_series
        self._statistic_series: dict[tuple[str, str, str, str], tuple[float, float]] = {}
        """(model, kind, feature, detector) -> the last (value, threshold) exported."""
        self._alert_series: set[tuple[str, str, str, str]] = set()
        self._lag_series: set[tuple[str, str]] = set()
        r = self.registry
        self.events_in = Counter(
            "driftline_events_received",
            "Valid events consumed, by source topic role.",
            ["source"],
            registry=r,
        )
        self.messages_in = Counter(
            "driftline_messages_received",
            "Kafka messages consumed (a batch envelope is one).",
            ["source"],
            registry=r,
        )
        self.invalid_events = Counter(
            "driftline_invalid_events",
            "Messages sent to the dead-letter topic, by source and error class.",
            ["source", "error_class"],
            registry=r,
        )
        self.key_placement = Counter(
            "driftline_input_key_placement",
            "Input keys sampled, one per source and partition batch: does Kafka's default "
            "partitioner (murmur2) explain their partition, or another one (other)?",
            ["source", "partitioner"],
            registry=r,
        )
        for source in ("predictions", "labels"):
            for partitioner in ("murmur2", "other"):  # both exist at 0 for the rule's ratio
                self.key_placement.labels(source, partitioner)
        self.join_outcomes = Counter(
            "driftline_label_join",
            "Label join outcomes: hit, early (held for its prediction), duplicate, orphan, "
            "late, expired (prediction never labelled).",
            ["outcome"],
            registry=r,
        )
        self.label_latency = Histogram(
            "driftline_label_latency_seconds",
            "Event time from a prediction to its label.",
            registry=r,
            buckets=_LABEL_LATENCY_BUCKETS,
        )
        self.processing_latency = Histogram(
            "driftline_processing_latency_seconds",
            "Wall time from a message's Kafka timestamp to the end of its processing.",
            ["stage"],
            registry=r,
            buckets=_LATENCY_BUCKETS,
        )
        self.decision_latency = Histogram(
            "driftline_decision_latency_seconds",
            "Wall time from the event time of a judged window's last event to the judge's "
            "verdict on it: how late a firing alert can be, detection delay excluded.",
            registry=r,
            buckets=_DECISION_LATENCY_BUCKETS,
        )
        self.batch_duration = Histogram(
            "driftline_batch_duration_seconds",
            "Wall time spent processing one batch of messages.",
            ["stage"],
            registry=r,
            buckets=_LATENCY_BUCKETS,
        )
        self.sketches_published = Counter(
            "driftline_sketches_published",
            "Window deltas sent to the judges.",
            registry=r,
        )
        self.statistic_value = Gauge(
            "driftline_statistic_value",
            "Latest value of a monitored statistic.",
            ["model", "kind", "feature", "detector"],
            registry=r,
        )
        self.statistic_threshold = Gauge(
            "driftline_statistic_threshold",
            "Threshold the statistic is compared with.",
            ["model", "kind", "feature", "detector"],
            registry=r,
        )
        self.alert_state = Gauge(
            "driftline_alert_firing",
            "1 while an alert of this identity fires (whole traffic or any segment), else 0.",
            ["model", "kind", "feature", "detector"],
            registry=r,
        )
        self.alerts_emitted = Counter(
            "driftline_alerts_emitted",
            "Alert state changes published.",
            ["status", "severity"],
            registry=r,
        )
        self.alerts_suppressed = Counter(
            "driftline_alerts_suppressed",
            "Alert state changes not published again because the alert table had them.",
            registry=r,
        )
        self.consumer_lag = Gauge(
            "driftline_consumer_lag_messages",
            "Messages between the last consumed offset and the high watermark.",
            ["topic", "partition"],
            registry=r,
        )
        self.reference_switches = Counter(
            "driftline_reference_switches",
            "Reference baselines replaced on `promoted`.",
            registry=r,
        )
        self.duplicate_deltas = Counter(
            "driftline_duplicate_deltas",
            "Sketches messages not applied again after a crash: redelivered (offset not "
            "committed) or replayed_batch (an ingest folded a published batch again).",
            ["reason"],
            registry=r,
        )
        self.judge_saves = Counter(
            "driftline_judge_saves",
            "Judge states written to the judge table (every few seconds per active model).",
            registry=r,
        )
        self.input_read_back = Counter(
            "driftline_input_read_back_messages",
            "Messages read back from Kafka because their offsets never reached the ingest "
            "or the judge (Faust can drop one fetched while a worker finishes its recovery), "
            "or because a batch a crash left unfinished must be folded again whole.",
            ["source"],
            registry=r,
        )
        for source in ("predictions", "labels", "sketches"):  # 0 is news too: nothing dropped
            self.input_read_back.labels(source)
        self.input_rewinds = Counter(
            "driftline_input_rewinds",
            "Input partitions sought back because messages aiokafka had fetched never reached "
            "the ingest or the judge (Faust drops some around a rebalance; see "
            "streams.input_rewind).",
            ["source"],
            registry=r,
        )
        for source in ("predictions", "labels", "sketches"):
            self.input_rewinds.labels(source)
        self.judge_catchup_deltas = Counter(
            "driftline_judge_catchup_messages",
            "Sketches messages read back from Kafka because a judge's stored state was behind.",
            registry=r,
        )
        self.judged_events = Gauge(
            "driftline_judged_events",
            "Prediction events in the window deltas a model's judge applied (from its state: "
            "survives restarts; equals the events produced when nothing was lost or doubled).",
            ["model"],
            registry=r,
        )
        self.rocksdb_cache = Gauge(
            "driftline_rocksdb_cache_bytes",
            "The worker's one RocksDB cache, memtables and index and filter blocks included: "
            "usage, pinned (in use, not evictable) and capacity (rocksdb stores only).",
            ["kind"],
            registry=r,
        )
        self.heap_released = Counter(
            "driftline_heap_released_bytes",
            "Anonymous memory the worker's periodic heap trims gave back to the kernel "
            "(glibc malloc_trim, Settings.malloc_trim_seconds): free pages malloc kept.",
            registry=r,
        )

    def watch_rocksdb_cache(
        self, usage: Callable[[], float], pinned: Callable[[], float], capacity: int
    ) -> None:
        """Read the RocksDB cache at each scrape (the cache is shared by every store)."""
        self.rocksdb_cache.labels("usage").set_function(usage)
        self.rocksdb_cache.labels("pinned").set_function(pinned)
        self.rocksdb_cache.labels("capacity").set(capacity)

    def set_statistic(
        self,
        model: str,
        kind: str,
        feature: str | None,
        detector: str,
        value: float,
        threshold: float,
    ) -> bool:
        """Record a statistic; False (and nothing recorded) once the series cap is reached."""
        key = (model, kind, feature or "", detector)
        series = self._statistic_series
        if key not in series and len(series) >= self.max_statistic_series:
            return False
        series[key] = (value, threshold)
        self.statistic_value.labels(*key).set(value)
        self.statistic_threshold.labels(*key).set(threshold)
        return True

    def statistics_of(self, model: str) -> list[tuple[str, str | None, str, float, float]]:
        """``(kind, feature, detector, value, threshold)`` of every statistic of ``model`` this
        worker exports, as `set_statistic` takes them back (a judge's next owner shows them).

        >>> metrics = WorkerMetrics()
        >>> metrics.set_statistic("churn", "performance", None, "auc", 0.81, 0.7)
        True
        >>> metrics.statistics_of("churn")
        [('performance', None, 'auc', 0.81, 0.7)]
        """
        return [
            (kind, feature or None, detector, value, threshold)
            for (owner, kind, feature, detector), (value, threshold) in sorted(
                self._statistic_series.items()
            )
            if owner == model
        ]

    def set_alert_state(
        self, model: str, kind: str, feature: str | None, detector: str, firing: bool
    ) -> None:
        key = (model, kind, feature or "", detector)
        self._alert_series.add(key)
        self.alert_state.labels(*key).set(1.0 if firing else 0.0)

    def show_alert_states(
        self,
        model: str,
        changed: Iterable[AlertIdentity],
        firing: Iterable[AlertIdentity],
    ) -> None:
        """Set the alert gauge of each (kind, feature, detector) in ``changed`` from the
        judge's ``firing`` identities. The whole traffic and its segments share one series, so
        it stays 1 while any of them fires: a segment's resolve must not clear another's fire.

        >>> metrics = WorkerMetrics()
        >>> drift = ("feature_drift", "x", "ks")
        >>> metrics.show_alert_states("m", [drift], firing=[drift])  # "country=DE" resolved
        >>> b'feature="x",kind="feature_drift",model="m"} 1.0' in metrics.exposition()
        True
        >>> metrics.show_alert_states("m", [drift], firing=[])  # ... and the last one did
        >>> b'feature="x",kind="feature_drift",model="m"} 0.0' in metrics.exposition()
        True
        """
        still_firing = set(firing)
        for kind, feature, detector in set(changed):
            firing_now = (kind, feature, detector) in still_firing
            self.set_alert_state(model, kind, feature, detector, firing_now)

    def sample_key_placement(
        self, source: str, event_id: str, partition: int, partitions: int
    ) -> None:
        """Count whether murmur2 puts ``event_id`` where it arrived. Predictions and labels
        join only if their producers share a partitioner: two different shares of ``other``
        say they do not (the DriftlineLabelsPartitionedDifferently rule).

        >>> metrics = WorkerMetrics()
        >>> metrics.sample_key_placement("labels", "e-1", 1 - partition_for(b"e-1", 2), 2)
        >>> b'partitioner="other",source="labels"} 1.0' in metrics.exposition()
        True
        """
        placed = partition_for(event_id.encode(), partitions) == partition
        self.key_placement.labels(source, "murmur2" if placed else "other").inc()

    def set_lag(self, topic: str, partition: int, messages: int) -> None:
        self._lag_series.add((topic, str(partition)))
        self.consumer_lag.labels(topic, str(partition)).set(messages)

    def keep_lag_of(self, assigned: set[tuple[str, int]]) -> int:
        """Drop the lag series of partitions not in ``assigned``; returns how many.

        >>> metrics = WorkerMetrics()
        >>> metrics.set_lag("t", 0, 5), metrics.set_lag("t", 1, 7)
        (None, None)
        >>> metrics.keep_lag_of({("t", 1)}), b'partition="0"' in metrics.exposition()
        (1, False)
        """
        keep = {(topic, str(partition)) for topic, partition in assigned}
        gone = self._lag_series - keep
        for key in gone:
            self.consumer_lag.remove(*key)
        self._lag_series -= gone
        return len(gone)

    def forget_model(self, model: str) -> int:
        """Drop every statistic, threshold and alert-state series of ``model`` (its judge moved
        to another worker, which exports them from now on); returns the series dropped.

        >>> metrics = WorkerMetrics(max_statistic_series=1)
        >>> metrics.set_statistic("churn", "feature_drift", "age", "psi", 0.3, 0.25)
        True
        >>> metrics.forget_model("churn"), b'model="churn"' in metrics.exposition()
        (1, False)
        >>> metrics.set_statistic("fraud", "feature_drift", "amount", "psi", 0.1, 0.25)
        True
        """
        statistics = {key for key in self._statistic_series if key[0] == model}
        alerts = {key for key in self._alert_series if key[0] == model}
        for key in statistics:
            self.statistic_value.remove(*key)
            self.statistic_threshold.remove(*key)
        for key in alerts:
            self.alert_state.remove(*key)
        with contextlib.suppress(KeyError):  # never judged here
            self.judged_events.remove(model)
        for key in statistics:
            del self._statistic_series[key]
        self._alert_series -= alerts
        return len(statistics) + len(alerts)

    def exposition(self) -> bytes:
        """The text a scrape of ``/metrics`` returns."""
        return generate_latest(self.registry)


class MetricsServer:
    """A running ``/metrics`` HTTP server; ``port`` is the bound port (useful with port 0)."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry) -> None:
        server, thread = start_http_server(port, addr=host, registry=registry)
        self._server = server
        self._thread = thread
        self.host = host
        self.port: int = int(server.server_port)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve_metrics(metrics: WorkerMetrics, host: str, port: int) -> MetricsServer:
    """Serve ``metrics`` on ``http://host:port/metrics`` from a daemon thread."""
    try:
        return MetricsServer(host, port, metrics.registry)
    except OSError as exc:
        raise OSError(
            f"cannot serve metrics on {host}:{port}: {exc}; set DRIFTLINE_METRICS__PORT to a free "
            f"port (0 picks one)"
        ) from exc
