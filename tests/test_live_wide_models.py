"""A model with many features: its judge state outgrows Kafka's default 1 MB message limit
(the reference keeps a sample per feature), and the worker must still store and recover it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from kafka_helpers import scrape, wait_for

from schemas.events import PredictionEvent
from schemas.settings import Settings
from streams.processes import ManagedProcess

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(150)]

FEATURES = 80
EVENTS = 3_000
JUDGED = 'driftline_judged_events{model="wide"}'


def _wide_stream() -> list[PredictionEvent]:
    rng = np.random.default_rng(5)
    values = rng.normal(size=(EVENTS, FEATURES)).round(6)
    start = datetime(2024, 5, 1, tzinfo=UTC)
    return [
        PredictionEvent(
            event_id=f"w-{i}",
            model="wide",
            timestamp=start + timedelta(seconds=i),
            features={f"f{k:02d}": float(values[i, k]) for k in range(FEATURES)},
            prediction=float(values[i, 0] > 0),
        )
        for i in range(EVENTS)
    ]


def test_a_judge_state_over_one_megabyte_is_stored_and_recovered(
    settings: Settings, start_worker: Callable[..., ManagedProcess]
) -> None:
    from streams.replay import replay_events

    stream = _wide_stream()
    first = start_worker("w1")
    replay_events(settings, stream[:2_500], batch_size=250)
    assert wait_for(lambda: scrape(first).get(JUDGED, 0.0) >= 2_500, timeout=90), (
        scrape(first).get(JUDGED),
        first.log_tail(),
    )
    assert first.alive(), first.log_tail()
    first.kill()
    # A fresh data directory: the judge state can only come back from its changelog topic.
    second = start_worker("w2")
    replay_events(settings, stream[2_500:], batch_size=250)
    assert wait_for(lambda: scrape(second).get(JUDGED, 0.0) >= EVENTS, timeout=90), (
        scrape(second).get(JUDGED),
        second.log_tail(),
    )
    assert second.alive() and scrape(second).get(JUDGED) == EVENTS, second.log_tail()
