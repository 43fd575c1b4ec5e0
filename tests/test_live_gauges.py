"""Per-model gauges follow the judge across workers (real broker, worker subprocesses).

Three models, one per sketches partition, drift on ``x`` while w1 runs alone. When w2 joins,
the models whose sketches partition it took leave w1's ``/metrics`` and show up on w2 (their
firing alert, events judged and statistics included, although no alert is published again,
and before their next event); w1 keeps the others. When w1
stops, w2 exports every firing alert.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kafka_helpers import read_topic, scrape, shifted_x_stream, wait_for

from schemas.events import PredictionEvent
from schemas.settings import Settings
from streams.partitioning import partition_for
from streams.processes import ManagedProcess, ProcessGroup

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(150)]

START = datetime(2024, 5, 1, tzinfo=UTC)
SHIFT_AT = 1_000
"""Past the 500-event warm-up by two windows: the reference never sees the shift."""
PHASES = ((0, 2_000), (2_000, 2_500), (2_500, 3_000))
"""Event ranges per model: w1 alone (the alerts fire), w1 + w2, w2 alone."""
MONITOR_YAML = "defaults:\n  reference:\n    warmup_events: 500\n  window:\n    size: 250\n"
X_DRIFT = 'detector="cusum",feature="x",kind="feature_drift"'


def _one_model_per_partition(partitions: int) -> dict[int, str]:
    names: dict[int, str] = {}
    for index in range(1_000):
        name = f"model-{index}"
        names.setdefault(partition_for(name.encode(), partitions), name)
        if len(names) == partitions:
            return names
    raise AssertionError(f"no model name for each of {partitions} partitions")


def _stream(model: str, seed: int, phase: tuple[int, int]) -> list[PredictionEvent]:
    """``x`` moves by 1.5 standard deviations at SHIFT_AT; the same seed, the same stream."""
    stream = shifted_x_stream(
        model=model, id_prefix=f"{model}-", seed=seed, total=PHASES[-1][1], shift_at=SHIFT_AT,
        start=START,
    )  # fmt: skip
    return stream[slice(*phase)]


def _series(worker: ManagedProcess, model: str) -> dict[str, float]:
    """The worker's per-model samples of ``model`` (statistic, threshold, alert state)."""
    return {
        key: value
        for key, value in scrape(worker).items()
        if key.startswith(("driftline_statistic_", "driftline_alert_firing"))
        and f'model="{model}"' in key
    }


def _x_drift_firing(worker: ManagedProcess, model: str) -> bool:
    key = f'driftline_alert_firing{{{X_DRIFT},model="{model}"}}'
    return scrape(worker).get(key) == 1.0


def _owned_sketches(worker: ManagedProcess, settings: Settings) -> set[int]:
    """Sketches partitions ``worker`` reported lag for (a fresh worker: its assignment)."""
    marker = f'topic="{settings.topics.sketches}"'
    found: set[int] = set()
    for key in scrape(worker):
        if key.startswith("driftline_consumer_lag_messages") and marker in key:
            found.add(int(key.split('partition="')[1].split('"')[0]))
    return found


@pytest.fixture
def start_worker(
    driftline_processes: ProcessGroup, tmp_path: Path
) -> Callable[[str], ManagedProcess]:
    config = tmp_path / "monitor.yaml"
    config.write_text(MONITOR_YAML, encoding="utf-8")

    def start(name: str) -> ManagedProcess:
        return driftline_processes.worker(
            name, tmp_path / f"data-{name}", DRIFTLINE_MONITOR_CONFIG=str(config)
        )

    return start


def test_gauges_follow_the_judge_when_models_move(
    settings: Settings, start_worker: Callable[[str], ManagedProcess], kafka_bootstrap: str
) -> None:
    from streams.replay import replay_events

    models = _one_model_per_partition(settings.topics.partitions)

    def replay(phase: tuple[int, int]) -> None:
        events = [e for p, m in models.items() for e in _stream(m, seed=p, phase=phase)]
        result = replay_events(settings, sorted(events, key=lambda e: e.timestamp), batch_size=200)
        assert result.failed == 0

    def x_drift_alerts(found: list[dict[str, Any]]) -> dict[str, list[str]]:
        statuses: dict[str, list[str]] = {model: [] for model in models.values()}
        for alert in found:
            if (alert["kind"], alert["feature"], alert["detector"]) == (
                "feature_drift",
                "x",
                "cusum",
            ):
                statuses[alert["model"]].append(alert["status"])
        return statuses

    w1 = start_worker("w1")
    replay(PHASES[0])
    fired = read_topic(
        kafka_bootstrap,
        settings.topics.alerts,
        until=lambda found: all(x_drift_alerts(found).values()),
        timeout=60,
    )
    assert all(s == ["firing"] for s in x_drift_alerts(fired).values()), (fired, w1.log_tail())
    assert wait_for(lambda: all(_x_drift_firing(w1, m) for m in models.values()), 15)
    # The CUSUM that paged has its statistic and threshold beside its alert.
    cusum = {m: f'driftline_statistic_value{{{X_DRIFT},model="{m}"}}' for m in models.values()}
    assert wait_for(lambda: all(key in scrape(w1) for key in cusum.values()), 15), scrape(w1)

    # w2 joins: the models of the sketches partitions it takes leave w1's /metrics.
    w2 = start_worker("w2")
    assert wait_for(lambda: bool(_owned_sketches(w2, settings)), 60), w2.log_tail()
    moved = {m for p, m in models.items() if p in _owned_sketches(w2, settings)}
    kept = set(models.values()) - moved
    assert moved and kept, (moved, w1.log_tail(), w2.log_tail())
    assert wait_for(lambda: not any(_series(w1, m) for m in moved), 30), w1.log_tail()
    assert all(_x_drift_firing(w1, m) for m in kept)  # a rebalance does not drop what stays

    # Before any new traffic (an idle model may send none for hours), w2 shows the moved
    # models' firing alerts from the alert ledger it recovered.
    assert wait_for(lambda: all(_x_drift_firing(w2, m) for m in moved), 30), w2.log_tail()
    assert not any(_series(w2, m) for m in kept), w2.log_tail()
    # ... and the events judged and statistics saved with the judges.
    shown = scrape(w2)
    for model in moved:
        assert shown.get(f'driftline_judged_events{{model="{model}"}}', 0) >= SHIFT_AT, shown
        assert cusum[model] in shown, (shown, w2.log_tail())

    # More drifting traffic: w2 loads the moved judges; their alerts stay firing.
    replay(PHASES[1])
    assert wait_for(lambda: all(_x_drift_firing(w2, m) for m in moved), 30), w2.log_tail()
    for model in models.values():
        exporters = [w.name for w in (w1, w2) if _series(w, model)]
        assert exporters == (["w2"] if model in moved else ["w1"]), (model, exporters)

    # w1 stops: w2 judges every model and exports every firing alert.
    w1.stop()
    replay(PHASES[2])
    assert wait_for(lambda: all(_x_drift_firing(w2, m) for m in models.values()), 45), w2.log_tail()
    final = read_topic(
        kafka_bootstrap, settings.topics.alerts, until=lambda found: False, timeout=5
    )
    # Each x drift alert was published once: w2's gauges come from the judges' state.
    assert all(s == ["firing"] for s in x_drift_alerts(final).values()), final
    assert w2.alive(), w2.log_tail()
