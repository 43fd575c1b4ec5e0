"""A model with many features: its judge state outgrows Kafka's default 1 MB message limit
(the reference keeps a sample per feature), and the worker must still store and recover it;
with hundreds of features each published delta does too, and must still reach the judge."""

from __future__ import annotations

import time
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


def _wide_stream(
    events: int = EVENTS, features: int = FEATURES, model: str = "wide"
) -> list[PredictionEvent]:
    rng = np.random.default_rng(5)
    values = rng.normal(size=(events, features)).round(6)
    start = datetime(2024, 5, 1, tzinfo=UTC)
    return [
        PredictionEvent(
            event_id=f"w-{i}",
            model=model,
            timestamp=start + timedelta(seconds=i),
            features={f"f{k:03d}": float(values[i, k]) for k in range(features)},
            prediction=float(values[i, 0] > 0),
        )
        for i in range(events)
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


def _set_message_limit(settings: Settings, topic: str, limit: int) -> None:
    from streams.topics import set_topic_config

    set_topic_config(settings.kafka, topic, "max.message.bytes", str(limit))


def test_a_refused_delta_ends_the_worker_and_a_restart_publishes_it(
    settings: Settings, start_worker: Callable[..., ManagedProcess]
) -> None:
    """450 features: a delta of 250 events is ~1.3 MB of JSON. With the sketches topic back
    at the broker's default limit (as topics created before driftline set its own are), the
    broker refuses it: the worker must exit (70) instead of recording the input as done, and
    a restart must raise the limit again and publish what was refused. Before, every delta
    was dropped with a warning and the model was never judged."""
    from streams.agent_crash import AGENT_CRASH_EXIT_CODE
    from streams.replay import replay_events

    stream = _wide_stream(2_500, 450, "very-wide")  # past the warm-up: every delta is judged
    judged = 'driftline_judged_events{model="very-wide"}'
    first = start_worker("w1")
    _set_message_limit(settings, settings.topics.sketches, 1_048_588)  # Kafka's default
    replay_events(settings, stream, batch_size=100)
    assert wait_for(lambda: not first.alive(), timeout=60), first.log_tail()
    assert first.process.returncode == AGENT_CRASH_EXIT_CODE, first.log_tail()
    assert "was not published" in first.log() and "MessageSizeTooLarge" in first.log()
    second = start_worker("w1")  # same data directory: a restarted host
    assert wait_for(lambda: scrape(second).get(judged, 0.0) >= len(stream), timeout=100), (
        scrape(second).get(judged),
        second.log_tail(),
    )
    time.sleep(3)  # a delta published twice would be judged twice
    assert scrape(second).get(judged) == len(stream), second.log_tail()
    assert second.alive(), second.log_tail()


def test_ensure_topics_raises_the_sketches_limit_of_an_older_topic(settings: Settings) -> None:
    from streams.topics import MAX_STATE_MESSAGE_BYTES, ensure_topics, topic_config

    def limit(topic: str) -> int:
        return int(topic_config(settings.kafka, [topic], "max.message.bytes")[topic] or 0)

    assert limit(settings.topics.sketches) == MAX_STATE_MESSAGE_BYTES  # created with it
    _set_message_limit(settings, settings.topics.sketches, 1_048_588)
    ensure_topics(settings)
    assert limit(settings.topics.sketches) == MAX_STATE_MESSAGE_BYTES
    assert limit(settings.topics.predictions) < MAX_STATE_MESSAGE_BYTES  # the others as they were
