"""The clients driftline uses work against the broker `make kafka-up` starts (Kafka 4.x).

Kafka 4.0 removed old protocol versions (KIP-896), so each client is driven through what driftline
needs from it: aiokafka (Faust's driver) producing, consuming and committing in a group;
confluent-kafka producing and consuming; a real Faust worker process with an agent and a table
whose changelog topic it creates; kcat listing the broker. Every test uses its own topics and
fails (never skips) when no broker answers at DRIFTLINE_KAFKA__BOOTSTRAP_SERVERS.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

pytestmark = pytest.mark.kafka

PARTITIONS = 3


def _unique(name: str) -> str:
    return f"infra-{name}-{uuid.uuid4().hex[:10]}"


def _create_topics(bootstrap: str, *names: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=PARTITIONS, replication_factor=1) for name in names]
    )
    for future in futures.values():
        future.result(timeout=30)


def _consume(
    bootstrap: str, topic: str, expected: int, timeout: float = 30.0
) -> list[tuple[bytes, bytes]]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": _unique("reader"),
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    received: list[tuple[bytes, bytes]] = []
    deadline = time.monotonic() + timeout
    try:
        while len(received) < expected and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            assert message.error() is None, f"consume error: {message.error()}"
            key, value = message.key(), message.value()
            assert key is not None and value is not None
            received.append((key, value))
    finally:
        consumer.close()
    return received


def test_aiokafka_produces_consumes_and_commits_in_a_group(kafka_bootstrap: str) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    topic = _unique("aiokafka")
    _create_topics(kafka_bootstrap, topic)
    sent = {f"k{i}".encode(): f"v{i}".encode() for i in range(30)}

    async def scenario() -> dict[int, int | None]:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
        await producer.start()
        try:
            for key, value in sent.items():
                await producer.send_and_wait(topic, value, key=key)
        finally:
            await producer.stop()

        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=kafka_bootstrap,
            group_id=_unique("group"),
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            received: dict[bytes, bytes] = {}
            deadline = time.monotonic() + 30
            while len(received) < len(sent) and time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=500)
                for messages in batches.values():
                    for message in messages:
                        assert message.key is not None and message.value is not None
                        received[message.key] = message.value
            assert received == sent
            await consumer.commit()
            return {
                partition: await consumer.committed(TopicPartition(topic, partition))
                for partition in range(PARTITIONS)
            }
        finally:
            await consumer.stop()

    committed = asyncio.run(scenario())
    # The committed offsets cover every message: they sum to the number produced.
    assert sum(offset or 0 for offset in committed.values()) == len(sent)


def test_confluent_kafka_produces_and_consumes(kafka_bootstrap: str) -> None:
    topic = _unique("confluent")
    _create_topics(kafka_bootstrap, topic)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "acks": "all"})
    delivered: list[str] = []

    def on_delivery(error: object, message: object) -> None:
        delivered.append("ok" if error is None else str(error))

    for i in range(20):
        producer.produce(
            topic, key=f"k{i}".encode(), value=f"v{i}".encode(), on_delivery=on_delivery
        )
    assert producer.flush(30) == 0, "messages still queued after 30 s"
    assert delivered == ["ok"] * 20

    received = _consume(kafka_bootstrap, topic, expected=20)
    assert sorted(received) == sorted((f"k{i}".encode(), f"v{i}".encode()) for i in range(20))


# A complete Faust app run as `python app.py worker`: counts values per key in a memory-store
# table (which gives it a changelog topic) and forwards "<value>:<count>" to a sink topic.
FAUST_APP = textwrap.dedent(
    """
    import sys

    import faust

    app_id, bootstrap, source_name, sink_name, datadir = sys.argv[1:6]
    app = faust.App(
        app_id,
        broker=f"kafka://{bootstrap}",
        store="memory://",
        datadir=datadir,
        topic_partitions=3,
        topic_replication_factor=1,
        web_enabled=False,
    )
    raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw",
           "value_serializer": "raw"}
    source = app.topic(source_name, **raw)
    sink = app.topic(sink_name, **raw)
    counts = app.Table("counts", default=int, partitions=3)


    @app.agent(source)
    async def count(stream):
        async for key, value in stream.items():
            counts[key.decode()] += 1
            await sink.send(key=key, value=b"%s:%d" % (value, counts[key.decode()]))


    if __name__ == "__main__":
        sys.argv = [sys.argv[0], "worker", "--loglevel", "info"]
        app.main()
    """
)


@pytest.fixture
def faust_worker(kafka_bootstrap: str, tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    """A running Faust worker process; yields (app id, source topic, sink topic)."""
    app_id = _unique("faust")
    source, sink = f"{app_id}-in", f"{app_id}-out"
    # Faust creates its internal topics (changelog, assignor) but not user topics, as in driftline.
    _create_topics(kafka_bootstrap, source, sink)
    script = tmp_path / "compat_app.py"
    script.write_text(FAUST_APP)
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                str(script),
                app_id,
                kafka_bootstrap,
                source,
                sink,
                str(tmp_path / "data"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while "[^Worker]: Ready" not in log_path.read_text(errors="replace"):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"Faust worker not ready:\n{log_path.read_text()[-4000:]}")
            time.sleep(0.2)
        yield app_id, source, sink
        errors = [line for line in log_path.read_text().splitlines() if "[ERROR]" in line]
        assert not errors, "Faust worker logged errors:\n" + "\n".join(errors[:10])
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def test_faust_worker_runs_agent_and_table_with_changelog(
    kafka_bootstrap: str, faust_worker: tuple[str, str, str]
) -> None:
    app_id, source, sink = faust_worker
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for i in range(20):
        producer.produce(source, key=f"k{i % 4}".encode(), value=f"v{i}".encode())
    assert producer.flush(30) == 0

    received = _consume(kafka_bootstrap, sink, expected=20, timeout=45)
    assert len(received) == 20
    # Per key the table counted 1..5 in order: the table state is applied message by message.
    counts_by_key: dict[bytes, list[int]] = {}
    for key, value in received:
        counts_by_key.setdefault(key, []).append(int(value.rsplit(b":", 1)[1]))
    assert counts_by_key == {f"k{k}".encode(): [1, 2, 3, 4, 5] for k in range(4)}

    changelog = f"{app_id}-counts-changelog"
    metadata = AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=10)
    assert changelog in metadata.topics, f"{changelog} missing: {sorted(metadata.topics)}"
    assert len(metadata.topics[changelog].partitions) == PARTITIONS
    assert len(_consume(kafka_bootstrap, changelog, expected=20)) == 20


def test_kcat_lists_the_broker(kafka_bootstrap: str) -> None:
    kcat = shutil.which("kcat")
    assert kcat, "kcat is missing: install the Debian package `kcat` (make tools)"
    result = subprocess.run(
        [kcat, "-b", kafka_bootstrap, "-L", "-m", "10"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "broker 1 at 127.0.0.1:" in result.stdout or "broker 1 at localhost:" in result.stdout
