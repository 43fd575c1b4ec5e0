"""The retrainer service in-process against the real broker and a real MLflow (SQLite): one
version per alert, champion vs challenger through the registry, rollback through the CLI,
and the failure modes (MLflow unreachable, a trainer that raises, too little data)."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from retrainer.config import RetrainerConfig
from retrainer.service import RetrainerService, build_retrainer
from schemas.events import Alert, LabelEvent, PredictionEvent, to_json_bytes
from schemas.settings import Settings

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(240)]
FAST = {"cooldown_seconds": 0, "poll_seconds": 0.2, "backoff_seconds": 0.05}


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture
def settings(kafka_env: dict[str, str], tracking_uri: str) -> Settings:
    from streams.topics import ensure_topics

    settings = Settings(mlflow={"tracking_uri": tracking_uri})
    ensure_topics(settings)
    return settings


@pytest.fixture
def model() -> str:
    return f"scorer-{uuid.uuid4().hex[:8]}"


def load_stream(settings: Settings, model: str, *, n: int = 2_400, seed: int = 3) -> datetime:
    """A stream whose concept already changed (the served model is stale); returns its start."""
    from streams.replay import replay_events
    from streams.synthetic import generate_stream

    raw_predictions, raw_labels = generate_stream(
        seed=seed, n_events=n, model=model, features=6, concept_change_at=0,
        label_delay_seconds=60.0, model_version="0",
    )  # fmt: skip
    events: list[PredictionEvent | LabelEvent] = [
        PredictionEvent.model_validate(p) for p in raw_predictions
    ]
    events += [LabelEvent.model_validate(label) for label in raw_labels]
    result = replay_events(settings, sorted(events, key=lambda e: e.timestamp), batch_size=200)
    assert result.failed == 0
    return events[0].timestamp


def send_alert(
    settings: Settings, model: str, alert_id: str, start: datetime, **changes: Any
) -> Alert:
    fields: dict[str, Any] = {
        "alert_id": alert_id, "fingerprint": f"{model}-performance", "status": "firing",
        "severity": "critical", "model": model, "model_version": "0", "kind": "performance",
        "feature": None, "segment": None, "detector": "error_rate", "statistic": 0.55,
        "threshold": 0.3, "window": {"start": start, "end": start + timedelta(seconds=499),
                                     "count": 500},
        "reference": {"source": "warmup", "model_version": "0", "count": 2000},
        "fired_at": start + timedelta(seconds=499), "emitted_at": datetime.now(UTC),
        "summary": "error rate rose", **changes,
    }  # fmt: skip
    alert = Alert(**fields)
    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap_servers})
    producer.produce(
        settings.topics.alerts, key=alert.fingerprint.encode(), value=to_json_bytes(alert)
    )
    assert producer.flush(10) == 0
    return alert


class Running:
    """A RetrainerService on a thread until ``stop()``."""

    def __init__(self, settings: Settings, config: RetrainerConfig, trainer: Any = None) -> None:
        self.service = RetrainerService(
            settings, config, build_retrainer(settings, config, trainer=trainer)
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self.service.run, args=(self._stop,), daemon=True)
        self._thread.start()

    def wait(self, predicate: Callable[[RetrainerService], bool], timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._thread.is_alive():
            if predicate(self.service):
                return
            time.sleep(0.2)
        raise AssertionError(f"timed out; outcomes so far: {self.service.outcomes}")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
        assert not self._thread.is_alive()


@pytest.fixture
def running() -> Iterator[Callable[..., Running]]:
    started: list[Running] = []

    def start(settings: Settings, config: RetrainerConfig, trainer: Any = None) -> Running:
        started.append(Running(settings, config, trainer))
        return started[-1]

    yield start
    for item in started:
        item.stop()


def committed(settings: Settings, group: str) -> int:
    """Alerts the group has committed (sum of committed offsets over the partitions)."""
    consumer = Consumer({"bootstrap.servers": settings.kafka.bootstrap_servers, "group.id": group})
    try:
        parts = [TopicPartition(settings.topics.alerts, p) for p in range(3)]
        return sum(max(tp.offset, 0) for tp in consumer.committed(parts, timeout=10))
    finally:
        consumer.close()


def model_events(settings: Settings, *, want: int, timeout: float = 20) -> list[dict[str, Any]]:
    consumer = Consumer(
        {"bootstrap.servers": settings.kafka.bootstrap_servers,
         "group.id": f"reader-{uuid.uuid4().hex}", "enable.auto.commit": False}
    )  # fmt: skip
    consumer.assign([TopicPartition(settings.topics.models, 0, OFFSET_BEGINNING)])
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and len(found) < want:
            message = consumer.poll(0.2)
            if message is not None and message.error() is None:
                found.append(json.loads(message.value() or b"null"))
        end = time.monotonic() + 1.0  # anything unexpected after the wanted ones
        while time.monotonic() < end:
            message = consumer.poll(0.2)
            if message is not None and message.error() is None:
                found.append(json.loads(message.value() or b"null"))
    finally:
        consumer.close()
    return found


def test_a_redelivered_alert_and_a_burst_make_one_version(
    settings: Settings, model: str, running: Callable[..., Running]
) -> None:
    from retrainer.registry import Registry

    start = load_stream(settings, model)
    first = send_alert(settings, model, "alert-dup", start)
    send_alert(settings, model, "alert-dup", start)  # at-least-once delivery
    send_alert(settings, model, "alert-burst", start, kind="feature_drift", feature="amount")
    send_alert(settings, model, "alert-dq", start, kind="data_quality", feature="amount")
    service = running(settings, RetrainerConfig(poll_seconds=0.2))  # default cooldown: 1 h
    service.wait(lambda s: len(s.outcomes) == 4)
    assert [(o.kind, o.version) for o in service.service.outcomes] == [
        ("promoted", "1"), ("served", "1"), ("skipped", None), ("skipped", None),
    ]  # fmt: skip
    promoted, _, burst, quality = service.service.outcomes
    assert promoted.metrics["challenger_accuracy"] > promoted.metrics["champion_accuracy"] + 0.2
    assert burst.reason.startswith(f"{model} is cooling down until")
    assert quality.reason == "data_quality alerts do not trigger a retrain"
    registry = Registry(settings.mlflow.tracking_uri, experiment="driftline-retrainer")
    versions = registry.versions(model)
    assert [(v.version, v.trigger_alert_id, v.aliases) for v in versions] == [
        ("1", first.alert_id, ("champion",))
    ]
    assert versions[0].tags["window_start"] == start.isoformat()
    assert versions[0].tags["champion_source"] == "logged"
    events = model_events(settings, want=2)
    assert [(e["type"], e["version"], e["aliases"]) for e in events] == [
        ("registered", "1", ["challenger"]), ("promoted", "1", ["champion"]),
    ]  # fmt: skip
    assert events[1]["reference"]["model_version"] == "1"
    assert events[1]["event_id"] == "alert-dup:promoted"
    service.wait(lambda s: committed(settings, s.group) == 4, timeout=20)


def test_worse_challenger_is_rejected_and_rollback_moves_the_champion_back(
    settings: Settings, model: str, running: Callable[..., Running], monkeypatch: pytest.MonkeyPatch
) -> None:
    from sklearn.dummy import DummyClassifier
    from typer.testing import CliRunner

    from retrainer.cli import models_app
    from retrainer.registry import Registry
    from retrainer.trainer import default_trainer

    def weak(frame: Any, spec: Any) -> Any:  # the majority class: better than a stale model
        return DummyClassifier(strategy="most_frequent").fit(frame[spec.features], frame["label"])

    plan = [weak, default_trainer, weak]

    def planned(frame: Any, spec: Any) -> Any:
        return plan.pop(0)(frame, spec)

    start = load_stream(settings, model, seed=4)
    for index in range(3):
        send_alert(settings, model, f"alert-{index}", start)
    service = running(settings, RetrainerConfig(**FAST), trainer=planned)
    service.wait(lambda s: len(s.outcomes) == 3)
    kinds = [(o.kind, o.version) for o in service.service.outcomes]
    assert kinds == [("promoted", "1"), ("promoted", "2"), ("rejected", "3")]
    second, third = service.service.outcomes[1:]
    assert "champion (registry version 1)" in second.reason
    assert "does not beat champion (registry version 2)" in third.reason
    assert third.metrics["challenger_accuracy"] < third.metrics["champion_accuracy"]
    registry = Registry(settings.mlflow.tracking_uri, experiment="driftline-retrainer")
    assert registry.aliases(model) == {
        "champion": "2", "previous_champion": "1", "challenger": "3",
    }  # fmt: skip

    monkeypatch.setenv("DRIFTLINE_MLFLOW__TRACKING_URI", settings.mlflow.tracking_uri)
    cli = CliRunner()
    shown = cli.invoke(models_app, ["show", model])
    assert shown.exit_code == 0, shown.output
    assert "v3  [challenger]" in shown.output and "decision=reject" in shown.output
    rolled = cli.invoke(models_app, ["rollback", model])
    assert rolled.exit_code == 0, rolled.output
    assert f"{model}: champion is version 1 again (was 2)" in rolled.output
    assert registry.aliases(model) == {"champion": "1", "challenger": "3"}
    again = cli.invoke(models_app, ["rollback", model])
    assert again.exit_code == 1 and "no previous_champion alias" in again.output
    events = model_events(settings, want=8)
    assert [(e["type"], e["version"]) for e in events] == [
        ("registered", "1"), ("promoted", "1"), ("registered", "2"), ("promoted", "2"),
        ("registered", "3"), ("rejected", "3"), ("rolled_back", "2"), ("promoted", "1"),
    ]  # fmt: skip
    assert events[-1]["reference"]["model_version"] == "1"  # workers switch back
    listed = cli.invoke(models_app, ["list", "--json"])
    assert {"model": model, "aliases": {"champion": "1", "challenger": "3"}, "versions": 3} in (
        json.loads(listed.output)
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_unreachable_mlflow_leaves_the_alert_uncommitted_until_it_answers(
    settings: Settings, model: str, running: Callable[..., Running], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    start = load_stream(settings, model, n=1_200)
    send_alert(settings, model, "alert-down", start)
    down = settings.model_copy(update={"mlflow": settings.mlflow.model_copy(
        update={"tracking_uri": f"http://127.0.0.1:{_free_port()}"})})  # fmt: skip
    config = RetrainerConfig(**FAST, mlflow_attempts=2, backoff_max_seconds=0.2, min_labelled=300)
    first = running(down, config)
    first.wait(lambda s: s.uncommitted >= 3, timeout=60)
    assert first.service.outcomes == []
    assert first.service.retrainer.registry.retrying.failures >= 6  # 2 attempts per try
    first.stop()
    assert committed(settings, first.service.group) == 0
    assert model_events(settings, want=1, timeout=2) == []
    # MLflow is back (here: the SQLite store): the same group gets the same alert again.
    second = running(settings, config)
    second.wait(lambda s: len(s.outcomes) == 1)
    assert second.service.outcomes[0].kind == "promoted"
    second.wait(lambda s: committed(settings, s.group) == 1, timeout=20)


def test_a_trainer_that_raises_is_rejected_and_the_service_goes_on(
    settings: Settings,
    model: str,
    running: Callable[..., Running],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from retrainer.registry import Registry

    (tmp_path / "exploding_trainer.py").write_text(
        "def explode(frame, spec):\n    raise RuntimeError('boom: singular matrix')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    start = load_stream(settings, model, n=1_200)
    small = f"{model}-small"
    small_start = load_stream(settings, small, n=200)
    send_alert(settings, model, "alert-boom", start)
    send_alert(settings, small, "alert-small", small_start, fingerprint=f"{model}-performance")
    send_alert(settings, model, "alert-resolved", start, status="resolved",
               fingerprint=f"{model}-performance")  # fmt: skip
    config = RetrainerConfig(**FAST, trainer="exploding_trainer:explode", min_labelled=300)
    service = running(settings, config)
    service.wait(lambda s: len(s.outcomes) == 3)
    boom, too_small, resolved = service.service.outcomes
    assert boom.kind == "rejected" and boom.version is None
    assert boom.reason == (
        "trainer exploding_trainer:explode failed: RuntimeError: boom: singular matrix"
    )
    assert too_small.kind == "rejected"
    assert too_small.reason.startswith("only 200 labelled events since the change, need 300")
    assert resolved.kind == "skipped" and "resolved" in resolved.reason
    events = model_events(settings, want=2)
    assert [(e["type"], e["model"], e["trigger_alert_id"]) for e in events] == [
        ("rejected", model, "alert-boom"), ("rejected", small, "alert-small"),
    ]  # fmt: skip
    assert "RuntimeError: boom" in events[0]["reason"]
    registry = Registry(settings.mlflow.tracking_uri, experiment="driftline-retrainer")
    assert registry.versions(model) == []  # nothing registered for a failed trainer
    experiment = registry.client.get_experiment_by_name("driftline-retrainer")
    [run] = registry.client.search_runs(
        [experiment.experiment_id], "tags.trigger_alert_id = 'alert-boom'"
    )
    assert run.info.status == "FAILED" and run.data.tags["outcome"] == "rejected"
    service.wait(lambda s: committed(settings, s.group) == 3, timeout=20)


def test_an_interrupted_retrain_is_announced_when_its_alert_comes_back(
    settings: Settings, model: str
) -> None:
    """A crash after registering, before announcing: the redelivered alert finishes the job,
    but only once the version is old enough not to belong to a retrainer still at work."""
    from retrainer.errors import AlertInProgress
    from retrainer.registry import Registry, RunRecord

    registry = Registry(settings.mlflow.tracking_uri, experiment="driftline-retrainer")
    run_id = registry.log_run(
        model, RunRecord({}, {}, {"trigger_alert_id": "alert-crash"}, profile={"profile_id": "p"})
    )
    tags = {
        "trigger_alert_id": "alert-crash",
        "decision": "promote",
        "reason": "challenger accuracy 0.8 beats champion",
        "challenger_accuracy": "0.8",
    }
    registry.register(model, run_id, tags)
    alert = send_alert(settings, model, "alert-crash", datetime.now(UTC))
    busy = build_retrainer(settings, RetrainerConfig(resume_after_seconds=3600))
    with pytest.raises(AlertInProgress, match="not announced yet"):
        busy.handle(alert)
    assert registry.aliases(model) == {}
    late = build_retrainer(settings, RetrainerConfig(resume_after_seconds=0))
    outcome = late.handle(alert)
    assert (outcome.kind, outcome.version) == ("promoted", "1")
    assert outcome.reason.endswith("(announced after an interrupted retrain)")
    assert registry.aliases(model) == {"champion": "1"}
    assert registry.version(model, "1").tags["announced"] == "promoted"
    [event] = model_events(settings, want=1)
    assert (event["type"], event["reference"], event["metrics"]) == (
        "promoted", {"profile_id": "p"}, {"challenger_accuracy": 0.8},
    )  # fmt: skip
    assert late.handle(alert).kind == "served"  # announced now: nothing more to do
