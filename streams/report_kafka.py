"""``driftline report --from-kafka``: the HTML report of what the live system saw and decided.

Reads the predictions, labels, alerts and models topics from the beginning up to the end
offsets taken when it starts (so it terminates while producers keep writing). The alerts and
model events are shown as the live system published them. The statistics over time are not
stored anywhere, so they are recomputed: predictions and labels are merged in event-time order
and fed through ``detectors.monitor.FleetMonitor`` exactly as ``driftline backtest`` does
(``streams.monitor_feed``). A ``promoted`` model event carrying a reference profile for
version V switches that model's reference at its first prediction of version V, when the live
judge starts judging the new model.

Messages that fail validation are skipped and counted (the workers sent them to the
dead-letter topic already).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from schemas.events import Alert, ModelEvent
from schemas.monitor_config import MonitorConfig
from schemas.settings import Settings
from streams.kafka_snapshot import SnapshotError, SnapshotReader, Traffic
from streams.monitor_feed import ReferenceSwitch, feed_monitor

__all__ = [
    "ReportSummary",
    "SnapshotError",
    "TopicsSnapshot",
    "describe",
    "read_topics",
    "report_from_topics",
]


@dataclass(frozen=True)
class ReportSummary:
    """What ``report_from_topics`` read and wrote."""

    path: Path
    predictions: int
    labels: int
    points: int
    """Judged statistics drawn (one per window, statistic and series)."""
    alerts: int
    """Alert events read from the alerts topic."""
    model_events: int
    seconds: float
    invalid: dict[str, int] = field(default_factory=dict)
    """Messages skipped because they failed validation, per topic role."""
    switches: int = 0
    """Reference switches applied (``promoted`` events with a profile)."""

    @property
    def events_per_second(self) -> float:
        return (self.predictions + self.labels) / self.seconds if self.seconds > 0 else 0.0


@dataclass
class TopicsSnapshot:
    """Everything read from the topics, and the statistics recomputed from them."""

    points: list[Any]
    """``detectors.evaluate.StatisticPoint`` of every judged window, in decision order."""
    alerts: list[Alert]
    model_events: list[ModelEvent]
    traffic: Traffic
    switched_at: dict[str, datetime]
    """ModelEvent id -> event time its reference switch applied at."""
    offline_alerts: list[Alert]
    """What the offline monitor decided (compare with ``alerts`` to spot a divergence)."""
    joined: int
    """Labels joined to their prediction by the offline monitor."""
    out_of_order: int
    notes: list[str]
    seconds: float


def _monitor_config(settings: Settings, config: MonitorConfig | None) -> MonitorConfig:
    from schemas.monitor_config import load_monitor_config

    return config if config is not None else load_monitor_config(settings.monitor_config)


def _switches(events: list[ModelEvent], notes: list[str]) -> list[ReferenceSwitch]:
    """A ReferenceSwitch per ``promoted`` event with a usable reference, in topic order."""
    from schemas.profile import ReferenceProfile
    from streams.agents_monitor import MonitorKit

    switches: list[ReferenceSwitch] = []
    for event in events:
        if event.type != "promoted" or event.reference is None:
            continue
        try:
            profile = ReferenceProfile.model_validate(MonitorKit.resolve_reference(event.reference))
        except (ValueError, OSError) as exc:
            notes.append(
                f"model event {event.event_id} ({event.model} version {event.version}): its "
                f"reference is not a usable profile, not switched: {exc}"
            )
            continue
        if event.version is not None:
            switches.append(
                ReferenceSwitch(
                    event.model, profile, version=event.version, event_id=event.event_id
                )
            )
        else:  # no version to wait for: switch when event time reaches the promotion
            switches.append(
                ReferenceSwitch(event.model, profile, at=event.timestamp, event_id=event.event_id)
            )
    return switches


def read_topics(
    settings: Settings,
    *,
    model: str | None = None,
    config: MonitorConfig | None = None,
    progress: bool = False,
    chunk_events: int = 10_000,
    idle_timeout_seconds: float = 30.0,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> TopicsSnapshot:
    """Read the four topics (only ``model``'s events when given) and recompute the statistics.

    Raises ``streams.kafka_snapshot.SnapshotError`` when Kafka or the predictions topic cannot
    be read, and ``schemas.monitor_config.MonitorConfigError`` for a bad monitor configuration.
    """
    from detectors.monitor import FleetMonitor
    from streams.readers import MergeStats, merge_by_event_time

    monitor_config = _monitor_config(settings, config)
    started = time.perf_counter()
    points: list[Any] = []
    offline: list[Alert] = []
    with SnapshotReader(
        settings, model=model, progress=progress, idle_timeout_seconds=idle_timeout_seconds
    ) as reader:
        model_events = reader.model_events()
        alerts = reader.alerts()
        notes = list(reader.notes)
        switches = _switches(model_events, notes)
        monitor = FleetMonitor(monitor_config, clock=clock, on_point=points.append)
        stats = MergeStats()
        fed = feed_monitor(
            monitor,
            merge_by_event_time(
                reader.predictions(chunk_events), reader.labels(chunk_events), stats=stats
            ),
            offline.extend,
            switches,
        )
        traffic = reader.traffic
    applied = {switch.event_id for switch, _ in fed.switched}
    for switch in switches:
        if switch.event_id not in applied:
            never = (
                f"no prediction of {switch.model} version {switch.version} was read"
                if switch.version is not None
                else f"the events read end before {_stamp(switch.at)}"
            )
            notes.append(f"model event {switch.event_id}: not switched to its reference, {never}")
    return TopicsSnapshot(
        points=points,
        alerts=alerts,
        model_events=model_events,
        traffic=traffic,
        switched_at={s.event_id: at for s, at in fed.switched if s.event_id is not None},
        offline_alerts=offline,
        joined=monitor.joiner.stats.joined,
        out_of_order=stats.out_of_order,
        notes=notes,
        seconds=time.perf_counter() - started,
    )


def _stamp(moment: datetime | None) -> str:
    return "-" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def _percent(part: int, whole: int) -> str:
    return f"{part / whole:.1%}" if whole else "-"


def describe(
    snapshot: TopicsSnapshot, settings: Settings, read_at: datetime
) -> list[tuple[str, str]]:
    """The report's "About this report" rows: where the data came from and what it holds."""
    topics, traffic = settings.topics, snapshot.traffic
    facts = [
        (
            "source",
            f"Kafka {settings.kafka.bootstrap_servers}: {topics.predictions}, {topics.labels}, "
            f"{topics.alerts} and {topics.models}, from the beginning to their end offsets at "
            f"{_stamp(read_at)}",
        ),
        (
            "events",
            f"{traffic.predictions:,} predictions and {traffic.labels:,} labels; event time "
            f"{_stamp(traffic.first)} to {_stamp(traffic.last)}",
        ),
        (
            "label coverage",
            f"{snapshot.joined:,} labels joined to their prediction "
            f"({_percent(snapshot.joined, traffic.predictions)} of the predictions)"
            + "".join(
                f"; {name}: {traffic.labels_by_model.get(name, 0):,} labels for {count:,} "
                f"predictions"
                for name, count in sorted(traffic.predictions_by_model.items())
            ),
        ),
        (
            "model versions in traffic",
            "; ".join(
                f"{name} version {version or '(none)'}: {span.count:,} predictions, "
                f"{_stamp(span.first)} to {_stamp(span.last)}"
                for (name, version), span in sorted(
                    traffic.versions.items(), key=lambda item: (item[0][0], item[1].first)
                )
            )
            or "-",
        ),
        (
            "alerts",
            f"{_count(len(snapshot.alerts), 'alert event')} on {topics.alerts}, as the workers "
            f"published them. The charts recompute the statistics offline with the same monitor "
            f"code; that recomputation decided "
            f"{_count(len(snapshot.offline_alerts), 'alert event')} "
            f"({sum(a.status == 'firing' for a in snapshot.offline_alerts)} firing).",
        ),
    ]
    if snapshot.switched_at:
        by_id = {event.event_id: event for event in snapshot.model_events}
        facts.append((
            "reference switches",
            "; ".join(
                f"{by_id[event_id].model} to the profile of version {by_id[event_id].version} "
                f"at {_stamp(at)} (event time of its first prediction)"
                for event_id, at in snapshot.switched_at.items()
            ),
        ))  # fmt: skip
    invalid = traffic.invalid
    if sum(invalid.values()):
        facts.append((
            "skipped",
            f"{sum(invalid.values()):,} invalid messages ("
            + ", ".join(f"{role}: {count:,}" for role, count in sorted(invalid.items()) if count)
            + f"); the workers sent them to {topics.deadletter}",
        ))  # fmt: skip
    if snapshot.out_of_order:
        facts.append((
            "out of order",
            f"{snapshot.out_of_order:,} events arrived behind newer ones in their partition and "
            f"were judged late",
        ))  # fmt: skip
    facts += [("note", note) for note in snapshot.notes]
    return facts


def report_from_topics(
    settings: Settings,
    out: Path,
    *,
    model: str | None = None,
    title: str = "driftline report (live topics)",
    config: MonitorConfig | None = None,
    progress: bool = True,
) -> ReportSummary:
    """Read the topics (``read_topics``) and write the HTML report to ``out``.

    ``progress`` shows a progress bar on stderr when it is a terminal.
    """
    from streams.report import write_report

    read_at = datetime.now(UTC)
    snapshot = read_topics(settings, model=model, config=config, progress=progress)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_report(
        out,
        snapshot.points,
        snapshot.alerts,
        snapshot.model_events,
        title=title,
        subtitle=f"live topics {settings.topics.prefix}*" + (f", model {model}" if model else ""),
        facts=describe(snapshot, settings, read_at),
        switched_at=snapshot.switched_at,
    )
    return ReportSummary(
        path=out,
        predictions=snapshot.traffic.predictions,
        labels=snapshot.traffic.labels,
        points=len(snapshot.points),
        alerts=len(snapshot.alerts),
        model_events=len(snapshot.model_events),
        seconds=snapshot.seconds,
        invalid=dict(snapshot.traffic.invalid),
        switches=len(snapshot.switched_at),
    )
