"""A judge's stored state lags its live one by up to a few seconds (saving hundreds of KB per
batch was the judge's largest cost). After a crash in between, the next owner reads the missing
sketches messages back from Kafka: every prediction is judged exactly once."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial

import numpy as np
import pytest
from kafka_helpers import scrape, wait_for

from schemas.events import PredictionEvent
from schemas.settings import Settings
from streams.processes import ManagedProcess

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(150)]

FIRST, SECOND = 3_000, 1_000
JUDGED = 'driftline_judged_events{model="steady"}'
CAUGHT_UP = "driftline_judge_catchup_messages_total"


def _steady_stream() -> list[PredictionEvent]:
    rng = np.random.default_rng(11)
    start = datetime(2024, 5, 1, tzinfo=UTC)
    return [
        PredictionEvent(
            event_id=f"s-{i}",
            model="steady",
            timestamp=start + timedelta(seconds=i),
            features={"x": float(rng.normal()), "y": float(rng.normal())},
            prediction=float(rng.random() > 0.5),
        )
        for i in range(FIRST + SECOND)
    ]


def _judged_at_least(worker: ManagedProcess, count: float) -> bool:
    return scrape(worker).get(JUDGED, 0.0) >= count


def test_a_crash_between_two_saves_loses_and_repeats_nothing(
    settings: Settings, start_worker: Callable[..., ManagedProcess]
) -> None:
    from streams.replay import replay_events

    stream = _steady_stream()
    # Saves only when a model first appears (or alerts): everything after is unsaved.
    saving_rarely = ("--judge-save-seconds", "600")
    first = start_worker("w1", *saving_rarely)
    # At least two judge batches: the second is not saved. (While the judge warms up, the
    # newest deltas of a partition wait for the other partitions: the counts lag behind.)
    for end, judged in ((FIRST // 2, 1_000.0), (FIRST, 2_500.0)):
        replay_events(settings, stream[end - FIRST // 2 : end], batch_size=100)
        assert wait_for(partial(_judged_at_least, first, judged), timeout=90), (
            scrape(first).get(JUDGED),
            first.log_tail(),
        )
    time.sleep(3)  # Faust commits the sketches offsets (every second): they are not redelivered
    saves = scrape(first).get("driftline_judge_saves_total", 0.0)
    assert saves == 1.0, "only the new model's first batch should have been saved"
    first.kill()
    second = start_worker("w2", *saving_rarely)  # empty datadir: judge table from its changelog
    replay_events(settings, stream[FIRST:], batch_size=100)
    total = FIRST + SECOND
    assert wait_for(lambda: scrape(second).get(JUDGED, 0.0) >= total, timeout=90), (
        scrape(second).get(JUDGED),
        second.log_tail(),
    )
    samples = scrape(second)
    assert samples.get(CAUGHT_UP, 0.0) > 0, samples.get(CAUGHT_UP)
    assert samples.get(JUDGED) == total
