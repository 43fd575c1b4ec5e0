"""Change points from river's synthetic generators, through the monitor.

SEA concepts (Street & Kim, 2001) label x0 + x1 against a threshold; switching the concept at
a known position changes the labels but not the features, so the monitor must raise a
performance alert after the change and nothing before it, and no feature drift at all.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from river.datasets import synth

from detectors.monitor import FleetMonitor
from schemas.events import Alert, LabelEvent, PredictionEvent
from schemas.monitor_config import MonitorConfig

T0 = datetime(2024, 5, 1, tzinfo=UTC)
CHANGE_AT = 8_000
TOTAL = 14_000


def _sea_stream(seed: int) -> tuple[list[PredictionEvent], list[LabelEvent]]:
    """A model that learned SEA concept 0 (threshold 8); the world moves to concept 2 (7)."""
    stream = synth.ConceptDriftStream(
        stream=synth.SEA(variant=0, noise=0.05, seed=seed),
        drift_stream=synth.SEA(variant=2, noise=0.05, seed=seed + 1),
        position=CHANGE_AT,
        width=200,  # width 1 overflows math.exp inside river
        seed=seed,
    )
    predictions, labels = [], []
    for i, (x, y) in enumerate(itertools.islice(stream, TOTAL)):
        at = T0 + timedelta(seconds=i)
        event_id = f"sea-{i}"
        predictions.append(
            PredictionEvent(
                event_id=event_id,
                model="sea",
                timestamp=at,
                features={f"x{k}": float(v) for k, v in x.items()},
                prediction=int(x[0] + x[1] > 8.0),
            )
        )
        labels.append(
            LabelEvent(
                event_id=event_id, model="sea", timestamp=at + timedelta(seconds=30), label=int(y)
            )
        )
    return predictions, labels


def _run(predictions: list[PredictionEvent], labels: list[LabelEvent]) -> list[Alert]:
    monitor = FleetMonitor(MonitorConfig(), clock=lambda: T0)
    events: list[PredictionEvent | LabelEvent] = [*predictions, *labels]
    merged = sorted(events, key=lambda e: e.timestamp)
    alerts: list[Alert] = []
    for start in range(0, len(merged), 1_000):
        chunk = merged[start : start + 1_000]
        alerts += monitor.process(
            [e for e in chunk if isinstance(e, PredictionEvent)],
            [e for e in chunk if isinstance(e, LabelEvent)],
        )
    return alerts + monitor.finish()


def test_sea_concept_change_raises_performance_alerts_only_after_the_change() -> None:
    """The error rate moves from ~5 % to ~12 %: close to the threshold, so a window may dip
    below it and an episode may resolve and fire again; every firing is after the change."""
    for seed in (1, 2, 3):
        alerts = _run(*_sea_stream(seed))
        firing = [a for a in alerts if a.status == "firing"]
        assert firing and {a.kind for a in firing} == {"performance"}, (seed, firing)
        delays = [(a.fired_at - T0).total_seconds() - CHANGE_AT for a in firing]
        assert all(delay >= 0 for delay in delays), (seed, delays)
        assert delays[0] <= 3_000, (seed, delays)


def test_sea_without_a_change_raises_nothing() -> None:
    predictions, labels = _sea_stream(4)
    stable = [p for p in predictions if (p.timestamp - T0).total_seconds() < CHANGE_AT]
    ids = {p.event_id for p in stable}
    assert _run(stable, [label for label in labels if label.event_id in ids]) == []
