"""The producer SDK against the real broker: everything sent is read back by a plain consumer."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from datetime import UTC, datetime

import pytest
from confluent_kafka import Consumer

from schemas.events import LabelEvent, PredictionBatch, PredictionEvent
from schemas.settings import Settings
from streams.partitioning import partition_for
from streams.producer import DeliveryFailure, LabelProducer, PredictionProducer
from streams.topics import ensure_topics

pytestmark = pytest.mark.kafka


def _read_all(
    bootstrap: str, topic: str, expected: int, timeout: float = 60.0
) -> list[tuple[bytes, bytes, int]]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    records: list[tuple[bytes, bytes, int]] = []
    deadline = time.monotonic() + timeout
    try:
        while len(records) < expected and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=1000, timeout=1.0):
                assert message.error() is None, message.error()
                key, value, partition = message.key(), message.value(), message.partition()
                assert key is not None and value is not None and partition is not None
                records.append((key, value, partition))
    finally:
        consumer.close()
    return records


def _event(i: int, model: str = "churn") -> PredictionEvent:
    return PredictionEvent(
        event_id=f"e-{i}-{uuid.uuid4().hex[:6]}",
        model=model,
        timestamp=datetime.now(UTC),
        features={"age": 20 + i % 50, "plan": "pro" if i % 3 else "free", "active": i % 2 == 0},
        prediction=(i % 100) / 100,
        scores={"1": (i % 100) / 100, "0": 1 - (i % 100) / 100},
    )


def test_sdk_publishes_10000_predictions_and_a_plain_consumer_reads_them(
    kafka_env: dict[str, str],
) -> None:
    settings = Settings()
    ensure_topics(settings)
    events = [_event(i) for i in range(10_000)]
    with PredictionProducer(settings) as producer:
        for event in events:
            assert producer.send(event)
    assert producer.stats.delivered == 10_000 and producer.stats.failed == 0
    records = _read_all(settings.kafka.bootstrap_servers, settings.topics.predictions, 10_000)
    assert len(records) == 10_000
    by_key = {key.decode(): json.loads(value) for key, value, _ in records}
    for event in events[::97]:
        assert by_key[event.event_id] == json.loads(event.model_dump_json())
    partitions = settings.topics.partitions
    for key, _, partition in records[:500]:
        # murmur2, like Java clients and Faust, so labels meet predictions in one partition.
        assert partition == partition_for(key, partitions)


def test_batch_envelopes_land_in_the_partition_of_their_event_ids(
    kafka_env: dict[str, str],
) -> None:
    settings = Settings()
    ensure_topics(settings)
    events = [_event(i) for i in range(600)]
    with PredictionProducer(settings) as producer:
        envelopes = producer.send_batch(events, max_batch=100)
    assert envelopes >= settings.topics.partitions
    records = _read_all(settings.kafka.bootstrap_servers, settings.topics.predictions, envelopes)
    seen: list[str] = []
    for _, value, partition in records:
        batch = PredictionBatch.model_validate_json(value)
        for prediction in batch.predictions:
            assert (
                partition_for(prediction.event_id.encode(), settings.topics.partitions) == partition
            )
            seen.append(prediction.event_id)
    assert sorted(seen) == sorted(event.event_id for event in events)


def test_label_producer_keys_labels_by_event_id(kafka_env: dict[str, str]) -> None:
    settings = Settings()
    ensure_topics(settings)
    with LabelProducer(settings) as producer:
        assert producer.label(event_id="abc", model="churn", label=1)
    records = _read_all(settings.kafka.bootstrap_servers, settings.topics.labels, 1)
    assert records[0][0] == b"abc"
    assert LabelEvent.model_validate_json(records[0][1]).label == 1


def test_topics_create_twice_is_harmless(kafka_env: dict[str, str]) -> None:
    settings = Settings()
    first = ensure_topics(settings)
    second = ensure_topics(settings)
    assert set(first.values()) == {"created"}
    assert set(second.values()) == {"exists"}
    assert first.keys() == second.keys()


def test_topics_of_a_throwaway_prefix_are_deleted(kafka_env: dict[str, str]) -> None:
    from confluent_kafka.admin import AdminClient

    from streams.topics import delete_topics_with_prefix

    settings = Settings()
    created = ensure_topics(settings)
    assert delete_topics_with_prefix(settings.kafka, settings.topics.prefix) == len(created)
    left = AdminClient({**settings.kafka.confluent_config()}).list_topics(timeout=10).topics
    assert not [name for name in left if name.startswith(settings.topics.prefix)]


def test_topic_deletion_refuses_short_and_production_prefixes() -> None:
    from schemas.settings import KafkaSettings
    from streams.topics import delete_topics_with_prefix

    for prefix in ("t1.", "driftline."):
        with pytest.raises(ValueError, match="only unique throwaway prefixes"):
            delete_topics_with_prefix(KafkaSettings(), prefix)


def test_topics_with_another_partition_count_are_refused_with_the_fix(
    kafka_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from streams.topics import TopicsError

    ensure_topics(Settings())  # 3 partitions (kafka_env), as a producer's auto-create would
    monkeypatch.setenv("DRIFTLINE_TOPICS__PARTITIONS", "6")
    with pytest.raises(TopicsError, match=r"have 3 partitions but DRIFTLINE_TOPICS__PARTITIONS "
                       r"is 6: set DRIFTLINE_TOPICS__PARTITIONS=3"):  # fmt: skip
        ensure_topics(Settings())


def test_unreachable_broker_reports_failures_within_timeout_and_never_hangs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DRIFTLINE_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:1")
    failures: list[DeliveryFailure] = []
    producer = PredictionProducer(
        Settings(),
        delivery_timeout_seconds=2,
        on_failure=failures.append,
        queue_max_messages=50,
        on_full="wait",
        max_block_seconds=0.01,
    )
    started = time.monotonic()
    sent = [producer.send(_event(i)) for i in range(80)]
    send_seconds = time.monotonic() - started
    remaining = producer.close(timeout_seconds=10)
    assert send_seconds < 5, "sending must not block the caller"
    assert remaining == 0
    assert sent.count(False) == 30 and producer.stats.dropped == 30
    assert producer.stats.failed == 50 and producer.stats.delivered == 0
    assert len(failures) == 80
    assert sum(f.dropped_locally for f in failures) == 30


def test_kcat_reads_what_the_sdk_wrote(kafka_env: dict[str, str]) -> None:
    """A non-Python client sees the SDK's messages: same keys, plain JSON payloads."""
    kcat = shutil.which("kcat")
    assert kcat, "kcat is missing: install the Debian package `kcat` (make tools)"
    settings = Settings()
    ensure_topics(settings)
    events = [_event(i) for i in range(50)]
    with PredictionProducer(settings) as producer:
        for event in events:
            producer.send(event)
    assert producer.stats.delivered == len(events)
    read = subprocess.run(
        [
            kcat,
            "-b",
            kafka_env["DRIFTLINE_KAFKA__BOOTSTRAP_SERVERS"],
            "-C",
            "-t",
            settings.topics.predictions,
            "-o",
            "beginning",
            "-e",
            "-q",
            "-f",
            "%k\t%s\n",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    rows = [line.split("\t", 1) for line in read.stdout.splitlines() if line]
    assert sorted(key for key, _ in rows) == sorted(event.event_id for event in events)
    for key, payload in rows:
        assert json.loads(payload)["event_id"] == key
