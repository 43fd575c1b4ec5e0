"""Live pipeline on the real broker: workers run as subprocesses, results are read back with a
plain confluent-kafka consumer and the workers' /metrics endpoint."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from kafka_helpers import read_topic, scrape, shifted_x_stream, stack_dump, wait_for

from schemas.events import PredictionEvent, to_json_bytes
from schemas.settings import Settings
from streams.malloc_trim import heap_trimmer
from streams.processes import ManagedProcess
from streams.producer import PredictionProducer

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(150)]


def _prediction(index: int, x: float) -> PredictionEvent:
    return PredictionEvent(
        event_id=f"e-{index}",
        model="churn",
        timestamp=datetime(2024, 5, 1, tzinfo=UTC) + timedelta(seconds=index),
        features={"x": x, "plan": "pro"},
        prediction=0.5,
    )


FLOOD = 3_000
"""Dead letters sent in a burst by the dead-letter test: ~2.8 MiB, several full batches."""


def test_invalid_messages_go_to_the_dead_letter_topic_and_the_worker_keeps_going(
    settings: Settings, start_worker: Callable[..., ManagedProcess], kafka_bootstrap: str
) -> None:
    worker = start_worker()
    valid = to_json_bytes(_prediction(0, 1.0))
    invalid = {
        "json": b'{"event_id": "e-x", ',
        "wrong_type": valid.replace(b'"prediction":0.5', b'"prediction":[1]'),
        "unknown_field": valid.replace(b'"prediction":0.5', b'"prediction":0.5,"colour":"red"'),
        "nan": valid.replace(b'"x":1.0', b'"x":NaN'),
        "future_version": valid.replace(b'"schema_version":1', b'"schema_version":2'),
    }
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for name, payload in invalid.items():
        producer.produce(settings.topics.predictions, key=name.encode(), value=payload)
    producer.produce(settings.topics.labels, key=b"l", value=b"not json at all")
    # A flood of ~1.4 KiB dead letters fills the worker's producer batches to their cap
    # (streams.app.PRODUCER_BATCH_BYTES): the dead-letter topic keeps the broker's default
    # max.message.bytes, which bounds a whole batch, so a larger cap would lose these.
    flood = [b"[" + str(index).encode() + b"x" * 4000 for index in range(FLOOD)]
    for payload in flood:
        producer.produce(settings.topics.predictions, value=payload)
    producer.flush(10)
    with PredictionProducer(settings) as sdk:
        for index in range(1, 41):
            sdk.send(_prediction(index, float(index)))

    expected = len(invalid) + 1 + FLOOD
    decoded = read_topic(
        kafka_bootstrap,
        settings.topics.deadletter,
        until=lambda found: len(found) >= expected,
        timeout=60,
        settle=1.0,
    )
    assert len(decoded) == expected, worker.log_tail()
    payloads = {base64.b64decode(d["payload_base64"]) for d in decoded}
    assert payloads >= set(flood)
    by_payload = {base64.b64decode(d["payload_base64"]): d for d in decoded}
    for name, payload in invalid.items():
        letter = by_payload[payload]
        assert letter["source_topic"] == settings.topics.predictions, name
        assert letter["error_message"], name
    assert by_payload[invalid["json"]]["error_class"] == "json"
    assert by_payload[invalid["future_version"]]["error_class"] == "validation"
    assert by_payload[invalid["nan"]]["error_class"] == "validation"
    assert "colour" in by_payload[invalid["unknown_field"]]["error_message"]
    assert by_payload[b"not json at all"]["source_topic"] == settings.topics.labels

    def counted() -> bool:
        samples = scrape(worker)
        return samples.get('driftline_events_received_total{source="predictions"}') == 40.0

    assert wait_for(counted, timeout=30), worker.log_tail()
    samples = scrape(worker)
    invalid_total = sum(
        v for k, v in samples.items() if k.startswith("driftline_invalid_events_total")
    )
    assert invalid_total == expected
    assert worker.alive(), worker.log_tail()

    def lag_topics() -> set[str]:
        prefix = "driftline_consumer_lag_messages{"
        return {k.split('topic="')[1].split('"')[0] for k in scrape(worker) if k.startswith(prefix)}

    # Input topics only: the changelogs' "lag" (own writes, paused after recovery) read as
    # messages waiting, 19 of them in a stalled demo's report.
    topics = settings.topics
    consumed = {topics.predictions, topics.labels, topics.sketches, topics.models}
    assert wait_for(lambda: lag_topics() == consumed, timeout=30), lag_topics()


def test_malformed_sketches_messages_are_dead_lettered_by_the_judge(
    settings: Settings, start_worker: Callable[..., ManagedProcess], kafka_bootstrap: str
) -> None:
    # The topic is internal, but a stray producer or a worker of another version can write it;
    # a message without a delta used to crash the judge, again at every restart.
    worker = start_worker()
    malformed = [b"{not json", b'{"model": "churn"}', b'{"model": "churn", "type": "merge"}']
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for payload in malformed:
        producer.produce(settings.topics.sketches, key=b"churn", value=payload)
    producer.flush(10)
    with PredictionProducer(settings) as sdk:
        for index in range(40):
            sdk.send(_prediction(index, float(index)))

    letters = read_topic(
        kafka_bootstrap, settings.topics.deadletter, until=lambda found: len(found) >= 3,
        timeout=60, settle=1.0,
    )  # fmt: skip
    by_payload = {base64.b64decode(d["payload_base64"]): d for d in letters}
    assert set(by_payload) == set(malformed), worker.log_tail()
    assert {d["source_topic"] for d in letters} == {settings.topics.sketches}
    assert by_payload[malformed[0]]["error_class"] == "json"
    assert by_payload[malformed[1]]["error_message"] == "delta is missing"
    assert by_payload[malformed[2]]["error_message"] == "unknown sketches message type 'merge'"

    def judged() -> bool:  # the judge went on: it stored churn's judge (in its warm-up)
        return scrape(worker).get("driftline_judge_saves_total", 0.0) >= 1.0

    assert wait_for(judged, timeout=30), worker.log_tail()
    samples = scrape(worker)
    assert (
        samples['driftline_invalid_events_total{error_class="validation",source="sketches"}'] == 2
    )
    assert samples['driftline_invalid_events_total{error_class="json",source="sketches"}'] == 1
    assert worker.alive(), worker.log_tail()


# -- drift through the real monitor ------------------------------------------------------------

SHIFT_AT = 3_000
TOTAL = 6_000
START = datetime(2024, 5, 1, tzinfo=UTC)


def _shifted_stream(seed: int = 7) -> list[PredictionEvent]:
    """``x`` moves by 1.5 standard deviations at SHIFT_AT; ``y`` and ``plan`` never change."""
    return shifted_x_stream(
        model="churn", id_prefix="s-", seed=seed, total=TOTAL, shift_at=SHIFT_AT, start=START
    )


def _alerts(
    bootstrap: str, settings: Settings, *, want_firing: int, timeout: float, settle: float = 4.0
) -> list[dict[str, Any]]:
    def enough(found: list[dict[str, Any]]) -> bool:
        return sum(1 for alert in found if alert["status"] == "firing") >= want_firing

    return read_topic(
        bootstrap, settings.topics.alerts, until=enough, timeout=timeout, settle=settle
    )


def _assert_one_firing_for_x(
    alerts: list[dict[str, Any]], log: str, *, nothing_before_shift: bool = True
) -> None:
    firing = [a for a in alerts if a["status"] == "firing"]
    assert [(a["kind"], a["feature"]) for a in firing if a["kind"] == "feature_drift"] == [
        ("feature_drift", "x")
    ], (alerts, log)
    assert not [a for a in alerts if a["feature"] in ("y", "plan")], alerts
    shift_time = START + timedelta(seconds=SHIFT_AT)
    for alert in alerts if nothing_before_shift else []:
        assert datetime.fromisoformat(alert["fired_at"]) >= shift_time, (
            alert["kind"],
            alert["feature"],
            alert["detector"],
            alert["summary"],
        )


def test_feature_shift_fires_exactly_one_alert_for_that_feature(
    settings: Settings, start_worker: Callable[..., ManagedProcess], kafka_bootstrap: str
) -> None:
    from streams.replay import replay_events

    worker = start_worker()
    result = replay_events(settings, _shifted_stream(), batch_size=200)
    assert result.failed == 0
    alerts = _alerts(kafka_bootstrap, settings, want_firing=1, timeout=90)
    _assert_one_firing_for_x(alerts, worker.log_tail())
    assert worker.alive(), worker.log_tail()
    samples = scrape(worker)
    ks_x = [
        v
        for k, v in samples.items()
        if k.startswith("driftline_statistic_value") and 'feature="x"' in k and "ks" in k
    ]
    assert ks_x, [k for k in samples if k.startswith("driftline_statistic")]
    assert (
        samples.get(
            'driftline_alert_firing{detector="cusum",feature="x",kind="feature_drift",model="churn"}'
        )
        == 1.0
    )


def test_worker_caps_fetch_wait_freezes_objects_trims_heap_and_reports_flow_on_sigusr2(
    settings: Settings, start_worker: Callable[..., ManagedProcess]
) -> None:
    # Faust's literal 1.5 s held the busy partitions' next records behind a fetch of quiet
    # ones: alerts took seconds at 700 predictions/s (streams.app.shorten_fetch_wait).
    worker = start_worker(
        "w1", "--loglevel", "info", "--fetch-wait-seconds", "0.03",
        DRIFTLINE_MALLOC_TRIM_SECONDS="1",
    )  # fmt: skip
    applied = "consumer fetch wait: 30 ms (was 1500 ms)"
    assert wait_for(lambda: applied in worker.log(), timeout=60), worker.log_tail()
    assert "cannot set the consumer's fetch wait" not in worker.log()
    # After its startup the worker keeps its long-lived objects out of full collections
    # (streams.gc_freeze): a full collection of them stopped it for 100-165 ms every ~5 s.
    frozen = re.compile(r"(\d+) long-lived objects \(\d+ modules\) kept out of garbage")
    assert wait_for(lambda: frozen.search(worker.log()) is not None, timeout=30), worker.log_tail()
    match = frozen.search(worker.log())
    assert match is not None and int(match.group(1)) > 50_000
    # And gives the free pages malloc keeps back to the kernel (streams.malloc_trim; glibc).
    trimmed = re.compile(r"heap trimmed: \d+ KiB back to the kernel in [\d.]+ ms \(every 1 s\)")
    if heap_trimmer() is not None:
        assert wait_for(lambda: trimmed.search(worker.log()) is not None, 30), worker.log_tail()
    # SIGUSR2 logs why input may not flow (streams.flow_report); mode would open pdb and hang.
    report = stack_dump(worker, which=signal.SIGUSR2)
    assert "consumer.flow_active: True" in report, report
    assert "app.flow_control active: True" in report, report
    # Where each input partition's reading stands (position, highwater, routes to agents).
    position = re.compile(r"\.predictions\[0\]: position \d+ .* routes [1-9]")
    assert position.search(report), report
    # The fetcher's wait inside Consumer.getmany, which mode's stacks cut off.
    assert re.search(r"Consumer\.getmany: getmany \(transport/consumer\.py:\d+\)", report), report
    assert worker.alive(), worker.log_tail()


def test_worker_creates_its_changelog_topics_before_faust_subscribes(
    settings: Settings, start_worker: Callable[..., ManagedProcess]
) -> None:
    # Declared by Faust while subscribing, the last changelogs could be missing from the
    # consumer's first metadata (0 partitions): the judge crashed on its first write
    # (PartitionsMismatch) and no alert fired (streams.changelog_topics).
    from confluent_kafka.admin import AdminClient, ConfigResource  # type: ignore[attr-defined]

    start_worker("w1")  # returns once the worker printed its banner, after the creation
    admin = AdminClient({**settings.kafka.confluent_config()})
    prefix = f"{settings.topics.prefix}worker-"
    found = {
        name: len(meta.partitions)
        for name, meta in admin.list_topics(timeout=10).topics.items()
        if name.startswith(prefix)
    }
    tables = ["join-predictions", "join-labels", "ingest-progress", "judge-state", "alert-ledger"]
    assert found == {f"{prefix}{table}-changelog": 3 for table in tables}
    resources = [
        ConfigResource("topic", f"{prefix}{t}-changelog") for t in ("judge-state", "join-labels")
    ]
    judge, journal = (future.result() for future in admin.describe_configs(resources).values())
    assert judge["cleanup.policy"].value == "compact"
    assert journal["cleanup.policy"].value == "delete"
    assert journal["retention.ms"].value == str(2 * 7 * 24 * 3600 * 1000)


def test_a_changelog_with_another_partition_count_stops_the_worker_with_the_fix(
    settings: Settings, kafka_env: dict[str, str]
) -> None:
    # Topics made with another DRIFTLINE_TOPICS__PARTITIONS: Faust would crash the judge at its
    # first write; the worker refuses to start and says what to set or delete.
    import subprocess
    import sys

    from streams.topics import TopicPlan, create_missing_topics

    changelog = f"{settings.topics.prefix}worker-judge-state-changelog"
    create_missing_topics(settings.kafka, [TopicPlan(changelog, 2, {})], 1)
    run = subprocess.run(
        [sys.executable, "-m", "streams.worker", "--store", "memory://"],
        env={**os.environ, **kafka_env, "DRIFTLINE_METRICS__PORT": "0"},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 1, run.stdout + run.stderr
    assert (
        f"error: the worker's changelog topic {changelog} has 2 partitions but its table has 3 "
        f"(DRIFTLINE_TOPICS__PARTITIONS): set DRIFTLINE_TOPICS__PARTITIONS=2"
    ) in run.stderr
    assert "Traceback" not in run.stderr


def _progress_samples(samples: dict[str, float]) -> dict[str, float]:
    """The samples that say how far a worker got: events in, deltas, lag, read-backs."""
    words = ("events_received", "sketches", "delta", "lag", "read_back", "judged")
    return {name: value for name, value in samples.items() if any(w in name for w in words)}


def test_kill_9_and_restart_do_not_page_twice_nor_count_twice(
    settings: Settings, start_worker: Callable[..., ManagedProcess], kafka_bootstrap: str
) -> None:
    from streams.replay import replay_events

    stream = _shifted_stream()
    first = start_worker("w1", "--loglevel", "info")  # info: rebalances and recovery in the log
    replay_events(settings, stream[: SHIFT_AT + 2_000], batch_size=200)
    alerts = _alerts(kafka_bootstrap, settings, want_firing=1, timeout=90, settle=0.0)
    assert any(a["status"] == "firing" for a in alerts), first.log_tail()
    first.kill()  # the worker is still folding the last events it was sent
    second = start_worker("w1", "--loglevel", "info")  # same datadir: RocksDB plus changelogs
    replay_events(settings, stream[SHIFT_AT + 2_000 :], batch_size=200)
    alerts = _alerts(kafka_bootstrap, settings, want_firing=2, timeout=25)
    _assert_one_firing_for_x(alerts, second.log_tail())
    # The judge's state counts every prediction it applied: an uninterrupted run ends at
    # exactly TOTAL; a delta applied twice (redelivered or re-folded after the kill) or lost
    # would show here.
    judged = 'driftline_judged_events{model="churn"}'
    assert wait_for(lambda: scrape(second).get(judged, 0.0) >= TOTAL, timeout=60), (
        scrape(second).get(judged),
        _progress_samples(scrape(second)),
        first.log_tail(),
        second.log_tail(8000),
    )
    time.sleep(3)  # anything still in flight would push it beyond
    assert scrape(second).get(judged) == TOTAL, second.log_tail()


def test_two_workers_split_partitions_and_alert_like_one(
    settings: Settings, start_worker: Callable[..., ManagedProcess], kafka_bootstrap: str
) -> None:
    from streams.replay import replay_events

    workers = [start_worker("w1"), start_worker("w2")]

    def second_worker_owns_a_partition() -> bool:
        # Its lag gauge appears only for partitions assigned to it (every 5 s), so the group
        # has rebalanced onto two members. A rebalance *during* the stream can move a judge
        # whose changelog is behind; that case is a known limitation (see the issue note).
        return any(
            k.startswith("driftline_consumer_lag_messages")
            and f'topic="{settings.topics.predictions}"' in k
            for k in scrape(workers[1])
        )

    assert wait_for(second_worker_owns_a_partition, timeout=60), workers[1].log_tail()
    time.sleep(2)
    replay_events(settings, _shifted_stream(), batch_size=200)
    alerts = _alerts(kafka_bootstrap, settings, want_firing=1, timeout=90)
    # The worker with fewer partitions runs ahead in event time; the judge still builds its
    # warm-up reference from the earliest events of every partition, so nothing fires early.
    _assert_one_firing_for_x(alerts, workers[0].log_tail() + workers[1].log_tail())
    counts = [
        scrape(w).get('driftline_events_received_total{source="predictions"}', 0.0) for w in workers
    ]
    assert sum(counts) == TOTAL and all(count > 0 for count in counts), counts


# -- labels, and the offline backtest as the oracle ---------------------------------------------


def _generated(**changes: Any) -> tuple[list[Any], list[Any]]:
    from schemas.events import LabelEvent
    from streams.synthetic import generate_stream

    raw_predictions, raw_labels = generate_stream(seed=11, n_events=8_000, features=6, **changes)
    return (
        [PredictionEvent.model_validate(p) for p in raw_predictions],
        [LabelEvent.model_validate(label) for label in raw_labels],
    )


def _backtest_alerts(tmp_path: Path, predictions: list[Any], labels: list[Any]) -> list[Any]:
    """What `driftline backtest` decides on the same events (the same monitor, offline)."""
    from schemas.monitor_config import MonitorConfig
    from streams.cli_backtest import run_backtest

    pred_file, label_file = tmp_path / "p.jsonl", tmp_path / "l.jsonl"
    pred_file.write_bytes(b"\n".join(to_json_bytes(p) for p in predictions) + b"\n")
    label_file.write_bytes(b"\n".join(to_json_bytes(label) for label in labels) + b"\n")
    out = tmp_path / "alerts.jsonl"
    with out.open("wb") as sink:
        run_backtest(pred_file, label_file, MonitorConfig(), sink)
    return [json.loads(line) for line in out.read_text().splitlines() if line]


def _identity(alerts: list[dict[str, Any]]) -> set[tuple[str, str, str | None, str]]:
    return {(a["fingerprint"], a["kind"], a["feature"], a["status"]) for a in alerts}


def test_delayed_labels_with_a_concept_change_raise_a_performance_alert(
    settings: Settings, start_worker: Callable[..., ManagedProcess], kafka_bootstrap: str
) -> None:
    from streams.replay import replay_events

    predictions, labels = _generated(concept_change_at=4_000, label_delay_seconds=900.0)
    worker = start_worker()
    result = replay_events(
        settings, sorted([*predictions, *labels], key=lambda e: e.timestamp), batch_size=200
    )
    assert result.failed == 0 and result.labels == len(labels)

    def performance(found: list[dict[str, Any]]) -> bool:
        return any(alert["kind"] == "performance" for alert in found)

    alerts = read_topic(kafka_bootstrap, settings.topics.alerts, until=performance, timeout=90)
    fired = [a for a in alerts if a["kind"] == "performance" and a["status"] == "firing"]
    assert fired, (alerts, worker.log_tail())
    change_time = predictions[4_000].timestamp
    assert all(datetime.fromisoformat(a["fired_at"]) >= change_time for a in fired), fired
    samples = scrape(worker)
    assert samples.get('driftline_label_join_total{outcome="hit"}', 0) > 0, samples


def test_labels_that_arrive_after_the_last_prediction_are_judged(
    settings: Settings, start_worker: Callable[..., ManagedProcess], kafka_bootstrap: str
) -> None:
    # A batch-scoring model: every prediction first, its labels later. Count windows close on
    # outcomes too, so these labels are judged without waiting for the next prediction.
    from streams.replay import replay_events

    predictions, labels = _generated(concept_change_at=4_000)
    worker = start_worker()
    replay_events(settings, predictions, batch_size=200)
    received = 'driftline_events_received_total{source="predictions"}'
    assert wait_for(lambda: scrape(worker).get(received) == len(predictions), timeout=60), (
        worker.log_tail()
    )
    replay_events(settings, labels, batch_size=200)

    def performance(found: list[dict[str, Any]]) -> bool:
        return any(alert["kind"] == "performance" for alert in found)

    alerts = read_topic(kafka_bootstrap, settings.topics.alerts, until=performance, timeout=90)
    fired = [a for a in alerts if a["kind"] == "performance" and a["status"] == "firing"]
    assert [a["detector"] for a in fired] == ["error_rate"], (alerts, worker.log_tail())
    assert datetime.fromisoformat(fired[0]["fired_at"]) >= predictions[4_000].timestamp


def test_backtest_and_live_pipeline_raise_the_same_alerts(
    settings: Settings,
    start_worker: Callable[..., ManagedProcess],
    kafka_bootstrap: str,
    tmp_path: Path,
) -> None:
    from streams.replay import replay_events

    predictions, labels = _generated(shift_at=4_000, shift_sigma=1.0)
    expected = _backtest_alerts(tmp_path, predictions, labels)
    assert any(a["kind"] == "feature_drift" for a in expected), expected
    start_worker()
    replay_events(
        settings, sorted([*predictions, *labels], key=lambda e: e.timestamp), batch_size=200
    )
    want = sum(a["status"] == "firing" for a in expected)
    live = _alerts(kafka_bootstrap, settings, want_firing=want, timeout=90, settle=6.0)
    # Every kind, label coverage too: a full-speed replay reads the labels topic behind the
    # predictions, and windows read that way get no coverage verdict (``labels_behind``).
    assert _identity(live) == _identity(expected), (live, expected)


def test_promoted_model_event_switches_the_reference(
    settings: Settings, start_worker: Callable[..., ManagedProcess], kafka_bootstrap: str
) -> None:
    """After `promoted` with a profile of the shifted data, the alert resolves and the
    stationary post-change stream raises nothing new."""
    from detectors.profile_builder import profile_from_events
    from schemas.events import ModelEvent
    from streams.replay import replay_events

    stream = _shifted_stream()
    worker = start_worker()
    replay_events(settings, stream[: SHIFT_AT + 1_500], batch_size=200)
    alerts = _alerts(kafka_bootstrap, settings, want_firing=1, timeout=90, settle=0.0)
    assert any(a["feature"] == "x" and a["status"] == "firing" for a in alerts), alerts
    profile = profile_from_events(
        stream[SHIFT_AT : SHIFT_AT + 1_500], model="churn", profile_id="churn-v2"
    )
    promoted = ModelEvent(
        event_id="m-1",
        type="promoted",
        model="churn",
        version="2",
        aliases=["champion"],
        run_id=None,
        trigger_alert_id=alerts[0]["alert_id"],
        metrics={},
        reference=profile.model_dump(mode="json"),
        timestamp=datetime.now(UTC),
    )
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(settings.topics.models, key=b"churn", value=to_json_bytes(promoted))
    producer.flush(10)

    def resolved(found: list[dict[str, Any]]) -> bool:
        return any(alert["status"] == "resolved" for alert in found)

    after = read_topic(kafka_bootstrap, settings.topics.alerts, until=resolved, timeout=60)
    assert resolved(after), after
    replay_events(settings, stream[SHIFT_AT + 1_500 :], batch_size=200)
    final = _alerts(kafka_bootstrap, settings, want_firing=99, timeout=20, settle=0.0)
    drift = [a for a in final if a["kind"] == "feature_drift"]
    assert [a["status"] for a in drift] == ["firing", "resolved"], (final, worker.log_tail())
    assert scrape(worker).get("driftline_reference_switches_total") == 1.0
