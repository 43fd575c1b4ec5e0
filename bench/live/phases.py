"""The benchmark's measurements: worker and baseline throughput, and the sustained paced run.

Each returns plain numbers; ``bench/worker_throughput.py`` turns them into the table.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import numpy as np

from live.backlog import ShiftPlan, paced_stream
from live.kafka_io import group_caught_up, read_all
from live.procs import Proc, ProcessGroup, cpu_seconds, log_time, rss_mib
from schemas.settings import Settings
from streams.processes import scrape_metrics

__all__ = [
    "EVENTS_PER_MODEL",
    "REPO",
    "SustainedResult",
    "Throughput",
    "WorkerProbe",
    "baseline_throughput",
    "settings_for",
    "sustained_run",
    "worker_throughput",
]

REPO = Path(__file__).resolve().parents[2]
_EVENTS = 'driftline_events_received_total{source="predictions"}'
_CACHE_USAGE = 'driftline_rocksdb_cache_bytes{kind="usage"}'
_SKETCHES = "driftline_sketches_published_total"
_STAGE = 'driftline_batch_duration_seconds_{}{{stage="{}"}}'
FIRST_INPUT = r"input flowing: first message taken"
"""The worker's log line (at info) when its ingest takes its first message: row a's clock start."""
WARMUP_EVENTS = 2_000
"""Default reference warm-up per model (MonitorConfig): no alert can fire before it ends."""
EVENTS_PER_MODEL = 4_500
"""Enough for warm-up, a window, a shift and two windows to decide (k=2 of m=3)."""


def settings_for(bootstrap: str, prefix: str) -> Settings:
    return Settings(
        kafka={"bootstrap_servers": bootstrap}, topics={"prefix": prefix, "partitions": 3}
    )


PASSED_SETTINGS: Final = (
    "DRIFTLINE_NATIVE_INGEST",
    "DRIFTLINE_FIXED_MALLOC_THRESHOLDS",
    "DRIFTLINE_ROCKSDB__CACHE_MIB",
    "DRIFTLINE_MALLOC_TRIM_SECONDS",
)
"""Settings of the caller's environment the bench's workers get: to measure with and without."""


def worker_env(bootstrap: str, prefix: str, monitor_config: Path | None = None) -> dict[str, str]:
    """The caller's environment without DRIFTLINE_* (so defaults apply), plus ours; but the
    worker-tuning variables in `PASSED_SETTINGS` pass (e.g. ``DRIFTLINE_NATIVE_INGEST=false``
    measures the worker without its native lane)."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("DRIFTLINE_") or name in PASSED_SETTINGS
    }
    if monitor_config is not None:
        env["DRIFTLINE_MONITOR_CONFIG"] = str(monitor_config.resolve())
    return {
        **env,
        "DRIFTLINE_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "DRIFTLINE_TOPICS__PREFIX": prefix,
        "DRIFTLINE_TOPICS__PARTITIONS": "3",
        "DRIFTLINE_METRICS__PORT": "0",
        "PYTHONUNBUFFERED": "1",
    }


@dataclass
class Throughput:
    """Predictions handled between the first message consumed and the last one processed."""

    predictions: int
    seconds: float
    cpu_seconds: float | None
    partial: bool = False
    judge_seconds: float | None = None
    """Our worker only: until the judge had applied every published delta."""
    notes: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.predictions / self.seconds if self.seconds > 0 else 0.0

    @property
    def per_cpu(self) -> float | None:
        return self.predictions / self.cpu_seconds if self.cpu_seconds else None


@dataclass
class WorkerProbe:
    """A running ``python -m streams.worker`` and where to read it."""

    proc: Proc
    url: str
    group: str


def start_worker(
    procs: ProcessGroup, name: str, bootstrap: str, prefix: str, datadir: Path,
    profile: Path | None = None, options: Sequence[str] = (), monitor_config: Path | None = None,
) -> WorkerProbe:  # fmt: skip
    """Start a worker at log level info; returns once it logged ``[^Worker]: Ready``.
    ``monitor_config``: a monitor YAML for the worker (default: the built-in defaults)."""
    argv = [sys.executable]
    if profile is not None:
        argv += ["-m", "cProfile", "-o", str(profile)]
    argv += ["-m", "streams.worker", "--datadir", str(datadir), "--loglevel", "info", *options]
    env = worker_env(bootstrap, prefix, monitor_config)
    proc = procs.start(name, argv, env=env, cwd=REPO)
    _, banner = proc.wait_for(r"metrics=(http://\S+/metrics)", 120)
    proc.wait_for(r"\[\^Worker\]: Ready", 180)
    return WorkerProbe(proc, banner.group(1), f"{prefix}worker")


def worker_throughput(
    probe: WorkerProbe, bootstrap: str, settings: Settings, total: int, timeout: float
) -> Throughput:
    """Poll /metrics until every prediction is counted and the group committed everything.

    Done = events_received reached ``total`` and the worker's group committed the predictions
    and sketches topics to their ends (the judge applied every delta). The ingest end is the
    first poll that saw the final events and sketches_published counts; the judge end the first
    that saw the final judge batch count.
    """
    pid = probe.proc.pid
    topics = [settings.topics.predictions, settings.topics.sketches]
    history: list[tuple[float, float, float, float, float | None]] = []
    last_check, done = 0.0, False
    deadline = time.monotonic() + timeout
    samples: dict[str, float] = {}
    while time.monotonic() < deadline and probe.proc.alive():
        samples = scrape_metrics(probe.url)
        now = time.time()
        events, sketches = samples.get(_EVENTS, 0.0), samples.get(_SKETCHES, 0.0)
        judged = samples.get(_STAGE.format("count", "judge"), 0.0)
        history.append((now, events, sketches, judged, cpu_seconds(pid)))
        if events >= total and now - last_check >= 1.0:
            last_check = now
            if group_caught_up(bootstrap, probe.group, topics):
                done = True
                break
        time.sleep(0.2)
    if not history:
        raise RuntimeError(f"worker produced no metrics:\n{probe.proc.tail()}")
    # The clock starts when the ingest takes its first message, as the baselines' clocks do
    # (their first message); from "Ready" it also counted the first fetch (~0.3 s of row b).
    arrived, first = probe.proc.wait_for(FIRST_INPUT, 5)
    started = log_time(first.string, arrived)
    cpu0 = next((h[4] for h in history if h[0] >= started and h[4] is not None), None)
    final = history[-1]
    ingest_end = next(h for h in history if h[1] == final[1] and h[2] == final[2])
    judge_end = next(h for h in history if h[1:4] == final[1:4])
    cpu_end = judge_end[4]
    result = Throughput(
        predictions=int(final[1]),
        seconds=ingest_end[0] - started,
        cpu_seconds=cpu_end - cpu0 if cpu_end is not None and cpu0 is not None else None,
        partial=not done,
        judge_seconds=judge_end[0] - started if done else None,
    )
    ingest_busy = samples.get(_STAGE.format("sum", "ingest"), 0.0)
    judge_busy = samples.get(_STAGE.format("sum", "judge"), 0.0)
    wall = judge_end[0] - started
    result.notes.append(
        f"busy: ingest batches {ingest_busy:.1f} s + judge batches {judge_busy:.1f} s of "
        f"{wall:.1f} s wall; {int(final[2]):,} deltas; RSS {rss_mib(pid) or 0:.0f} MiB, "
        f"peak {rss_mib(pid, 'VmHWM') or 0:.0f} MiB"  # the end's depends on when glibc trimmed
    )
    if not done:
        lag = sum(
            value
            for name, value in samples.items()
            if name.startswith("driftline_consumer_lag_messages{")
            and f'topic="{settings.topics.sketches}"' in name
        )
        result.notes.append(f"stopped at the time cap; judge {lag:,.0f} deltas behind")
    return result


def baseline_throughput(proc: Proc, total: int, timeout: float) -> Throughput:
    """Wait for a baseline app's ``done`` line (or time out and use its last progress line)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not proc.json_lines("done") and proc.alive():
        time.sleep(0.2)
    done = proc.json_lines("done")
    if done:
        line = done[0]
        result = Throughput(
            predictions=int(line["count"]),
            seconds=float(line["t_done"]) - float(line["t_first"]),
            cpu_seconds=float(line["cpu_seconds"]),
        )
        if "tests" in line:
            result.notes.append(f"{line['tests']:,} KS tests, {line['drifts']} below alpha")
        return result
    first, progress = proc.json_lines("first"), proc.json_lines("progress")
    if not first or not progress:
        raise RuntimeError(f"{proc.name} reported nothing:\n{proc.tail()}")
    last = progress[-1]
    return Throughput(
        predictions=int(last["count"]),
        seconds=float(last["t"]) - float(first[0]["t"]),
        cpu_seconds=float(last["cpu_seconds"]),
        partial=True,
        notes=["stopped at the time cap"],
    )


@dataclass
class SustainedResult:
    rate: float
    sent: int
    seconds: float
    behind_at_end: int
    caught_up_seconds: float | None
    latencies: list[float]
    alerts: int
    models_alerted: int
    models: int
    rss: list[tuple[float, float]]
    rocksdb_cache: list[tuple[float, float]]
    """(elapsed seconds, MiB in the worker's RocksDB cache), scraped with the RSS: memory the
    cache's capacity bounds, so RSS minus it is what no budget bounds."""
    cpu: list[tuple[float, float]]
    """(elapsed seconds, the worker's CPU seconds so far), sampled with the RSS."""
    file_backed: list[tuple[float, float]]
    """(elapsed seconds, MiB of the RSS in pages of mapped files: ``RssFile``), sampled with
    the RSS: code of libraries grows it as it is first run, not the heap."""
    warmup_seconds: float
    """When every model's reference warm-up is over (models x 2,000 events / rate)."""
    decisions: list[tuple[float, float]]
    """The worker's ``driftline_decision_latency_seconds`` buckets: (upper bound, cumulative
    count), one per judged window; the alerts are a few of those windows."""
    started_epoch: float = 0.0
    """Wall clock (epoch seconds) at elapsed 0, for charts."""
    alert_targets: dict[str, int] = field(default_factory=dict)
    """Firing alerts by what they are about (`alert_target`): on-call sees every one."""
    refired: list[str] = field(default_factory=list)
    """Alert identities ("model kind feature detector") that fired more than once, each with
    what resolved its earlier episode (the resolved alert's summary)."""
    duplicated: int = 0
    """Firing alerts published more than once (the same ``alert_id``: the same episode), which
    exactly-once publishing rules out."""

    def decision_quantile(self, q: float) -> float | None:
        """Seconds below which a share ``q`` of the window verdicts fell (linear within the
        bucket, as Prometheus's ``histogram_quantile``); None without verdicts."""
        return histogram_quantile(self.decisions, q)

    def cores(self, after: float = 0.0) -> float | None:
        """CPU the worker used per second of the run after ``after`` s (1.0: one core busy);
        at a fixed rate, the most stable measure of what a change costs."""
        points = [(t, c) for t, c in self.cpu if t >= after]
        if len(points) < 2 or points[-1][0] <= points[0][0]:
            return None
        return (points[-1][1] - points[0][1]) / (points[-1][0] - points[0][0])

    def outside_cache(self) -> list[tuple[float, float]]:
        """RSS minus the RocksDB cache's usage at the same tick, MiB."""
        cache = dict(self.rocksdb_cache)
        return [(t, m - cache[t]) for t, m in self.rss if t in cache]

    def heap_outside_cache(self) -> list[tuple[float, float]]:
        """RSS minus the RocksDB cache and minus the pages of mapped files, MiB: the
        anonymous memory no budget bounds."""
        files = dict(self.file_backed)
        return [(t, m - files[t]) for t, m in self.outside_cache() if t in files]

    def slope(
        self, after: float = 0.0, *, outside_cache: bool = False, heap_only: bool = False
    ) -> float:
        """Least-squares RSS slope in MiB per minute over the samples taken after ``after`` s
        (``outside_cache``: of RSS minus the RocksDB cache; ``heap_only``: minus the pages of
        mapped files too)."""
        series = (
            self.heap_outside_cache() if heap_only
            else self.outside_cache() if outside_cache else self.rss
        )  # fmt: skip
        points = [(t, m) for t, m in series if t >= after]
        if len(points) < 3:
            return float("nan")
        minutes = np.array([t for t, _ in points]) / 60.0
        return float(np.polyfit(minutes, np.array([m for _, m in points]), 1)[0])


def histogram_quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """The ``q`` quantile of a Prometheus histogram's ``(le, cumulative count)`` buckets.

    >>> histogram_quantile([(0.1, 0), (0.2, 50), (0.4, 100), (float("inf"), 100)], 0.5)
    0.2
    >>> histogram_quantile([(0.1, 0), (0.2, 50), (0.4, 100), (float("inf"), 100)], 0.75)
    0.3
    """
    total = buckets[-1][1] if buckets else 0.0
    if total <= 0:
        return None
    rank, lower, below = q * total, 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if upper == float("inf"):
                return lower
            return round(lower + (upper - lower) * (rank - below) / max(count - below, 1e-12), 9)
        lower, below = upper, count
    return lower


def decision_buckets(samples: dict[str, float]) -> list[tuple[float, float]]:
    """``(le, cumulative count)`` of ``driftline_decision_latency_seconds`` in a scrape."""
    prefix = 'driftline_decision_latency_seconds_bucket{le="'
    found = [
        (float(name[len(prefix) : -2]), value)
        for name, value in samples.items()
        if name.startswith(prefix)
    ]
    return sorted(found)


def alert_target(alert: dict[str, Any], plan: ShiftPlan) -> str:
    """What a firing alert of the sustained run is about: "shifted feature" (the model's
    planned shift), "other feature" (a feature drift nothing caused), else its kind."""
    if alert["kind"] != "feature_drift":
        return str(alert["kind"])
    if alert["model"] in plan.models:
        shifted = plan.feature[plan.models.index(alert["model"])]
        if alert["feature"] == shifted:
            return "shifted feature"
    return "other feature"


def sustained_run(
    probe: WorkerProbe, bootstrap: str, settings: Settings, *, rate: float, seconds: float,
    models: int, rss_interval: float,
) -> SustainedResult:  # fmt: skip
    """Paced shifted stream for ``seconds``: RSS every ``rss_interval`` s, then alert latency.

    Latency of a firing alert = its Kafka timestamp (set when the worker hands it to its
    producer) minus ``fired_at`` (event time of the last event its deciding window saw, which
    is that event's produce time here).
    """
    plan = ShiftPlan.staggered(models, int(rate * seconds / models))
    warmup_seconds = models * WARMUP_EVENTS / rate
    pid = probe.proc.pid
    rss: list[tuple[float, float]] = []
    cache: list[tuple[float, float]] = []
    cpu: list[tuple[float, float]] = []
    file_backed: list[tuple[float, float]] = []

    def on_tick(elapsed: float, sent: int) -> None:
        if not rss or elapsed - rss[-1][0] >= rss_interval:
            value, used = rss_mib(pid), cpu_seconds(pid)
            in_files = rss_mib(pid, "RssFile")
            if value is not None:
                rss.append((elapsed, value))
                if in_files is not None:
                    file_backed.append((elapsed, in_files))
                in_cache = scrape_metrics(probe.url).get(_CACHE_USAGE)
                if in_cache is not None:
                    cache.append((elapsed, in_cache / (1 << 20)))
            if used is not None:
                cpu.append((elapsed, used))

    started_epoch = time.time()
    sent, elapsed = paced_stream(settings, plan, rate=rate, seconds=seconds, on_tick=on_tick)
    on_tick(elapsed + rss_interval, sent)
    behind = sent - int(scrape_metrics(probe.url).get(_EVENTS, 0.0))
    caught_up: float | None = None
    started = time.monotonic()
    topics = [settings.topics.predictions, settings.topics.sketches]
    while time.monotonic() - started < 90 and probe.proc.alive():
        if scrape_metrics(probe.url).get(_EVENTS, 0.0) >= sent and group_caught_up(
            bootstrap, probe.group, topics
        ):
            caught_up = time.monotonic() - started
            break
        time.sleep(0.5)
    decisions = decision_buckets(scrape_metrics(probe.url)) if probe.proc.alive() else []
    latencies: list[float] = []
    alerted: set[str] = set()
    firing = 0
    targets: Counter[str] = Counter()
    episodes: Counter[tuple[str, str, str | None, str]] = Counter()
    resolved_by: dict[tuple[str, str, str | None, str], str] = {}
    published: Counter[str] = Counter()
    for message in read_all(bootstrap, settings.topics.alerts):
        alert = json.loads(message.value())
        identity = (alert["model"], alert["kind"], alert["feature"], alert["detector"])
        if alert["status"] != "firing":
            resolved_by.setdefault(identity, alert["summary"])
            continue
        published[alert["alert_id"]] += 1
        firing += 1
        _, stamp_ms = message.timestamp()
        latencies.append(stamp_ms / 1000 - datetime.fromisoformat(alert["fired_at"]).timestamp())
        target = alert_target(alert, plan)
        targets[target] += 1
        episodes[identity] += 1
        if target == "shifted feature":
            alerted.add(alert["model"])
    return SustainedResult(
        rate=rate, sent=sent, seconds=elapsed, behind_at_end=behind,
        caught_up_seconds=caught_up, latencies=latencies, alerts=firing,
        models_alerted=len(alerted), models=models, rss=rss, rocksdb_cache=cache, cpu=cpu,
        alert_targets=dict(targets.most_common()),
        refired=[
            f"{' '.join(map(str, key))} ({resolved_by.get(key, 'never resolved')})"
            for key, count in episodes.items() if count > 1
        ],
        duplicated=sum(1 for count in published.values() if count > 1),
        file_backed=file_backed,
        warmup_seconds=warmup_seconds,
        decisions=decisions, started_epoch=started_epoch,
    )  # fmt: skip
