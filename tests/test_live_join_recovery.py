"""The label join's state moves with its partitions: a worker on a new host (empty datadir)
rebuilds it from the join tables' changelogs, which carry one journal per partition batch."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from kafka_helpers import scrape, wait_for

from schemas.events import LabelEvent, PredictionEvent
from schemas.settings import Settings
from streams.processes import ManagedProcess

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(150)]

PREDICTIONS = 1_200
LABELLED = 900
START = datetime(2024, 5, 1, tzinfo=UTC)


def _predictions() -> list[PredictionEvent]:
    return [
        PredictionEvent(
            event_id=f"j-{i}",
            model="churn",
            timestamp=START + timedelta(seconds=i),
            features={"x": float(i % 17), "plan": "pro" if i % 3 else "free"},
            prediction=i % 2,
        )
        for i in range(PREDICTIONS)
    ]


def _labels() -> list[LabelEvent]:
    # Labels for the first LABELLED predictions, a duplicate label, and one for a prediction
    # nobody sent (held as early, never joined).
    late = START + timedelta(seconds=PREDICTIONS + 60)
    labels = [
        LabelEvent(event_id=f"j-{i}", model="churn", timestamp=late, label=(i // 2) % 2)
        for i in range(LABELLED)
    ]
    return [
        *labels,
        LabelEvent(event_id="j-0", model="churn", timestamp=late, label=1),
        LabelEvent(event_id="nobody", model="churn", timestamp=late, label=0),
    ]


def test_a_worker_with_an_empty_datadir_joins_labels_of_predictions_it_never_saw(
    settings: Settings, start_worker: Callable[..., ManagedProcess]
) -> None:
    from streams.replay import replay_events

    first = start_worker("w1")
    replay_events(settings, _predictions(), batch_size=100)
    received = 'driftline_events_received_total{source="predictions"}'
    assert wait_for(lambda: scrape(first).get(received, 0.0) >= PREDICTIONS, timeout=90), (
        scrape(first).get(received),
        first.log_tail(),
    )
    published = scrape(first).get("driftline_sketches_published_total", 0.0)
    assert wait_for(
        lambda: scrape(first).get("driftline_sketches_published_total", 0.0) == published,
        timeout=10,
    )
    first.kill()
    second = start_worker("w2")  # another datadir: only the changelogs hold the join
    replay_events(settings, _labels(), batch_size=100)

    def joined() -> float:
        return scrape(second).get('driftline_label_join_total{outcome="hit"}', 0.0)

    assert wait_for(lambda: joined() >= LABELLED, timeout=90), (
        {name: value for name, value in scrape(second).items() if "join" in name},
        second.log_tail(),
    )
    samples = scrape(second)
    assert joined() == LABELLED, samples
    assert samples.get('driftline_label_join_total{outcome="duplicate"}') == 1.0, samples
    assert samples.get('driftline_label_join_total{outcome="early"}') == 1.0, samples
