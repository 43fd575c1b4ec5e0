"""The closed loop with real processes: a worker and a retrainer (``python -m retrainer``) on
the real broker, MLflow as a SQLite file or as an ``mlflow server`` over HTTP.

Concept drift: the served model (version 0) goes stale at event 3 000; the worker raises a
performance alert; the retrainer trains on the labelled events since the alert window, beats
the stale model on the holdout, registers and promotes version 1 and announces it; the worker
switches its reference. The rest of the stream is then scored by the new champion (loaded from
the registry, as a serving layer would) and raises no new alert.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest
from confluent_kafka import Producer
from kafka_helpers import read_topic, scrape

from schemas.events import (
    Alert,
    AlertReference,
    AlertWindow,
    LabelEvent,
    PredictionEvent,
    to_json_bytes,
)
from schemas.settings import Settings
from streams.processes import ManagedProcess, ProcessGroup

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]
N_EVENTS, CHANGE_AT, CUT_AT = 9_000, 3_000, 6_000
Event = PredictionEvent | LabelEvent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``mlflow server`` on a free port of 127.0.0.1, SQLite behind it, artifacts on disk."""
    folder = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    log = (folder / "server.log").open("wb")
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server",
         "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
         "--default-artifact-root", (folder / "artifacts").as_uri(),
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 150
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError((folder / "server.log").read_text()[-3000:])
        time.sleep(0.5)
    yield url
    process.terminate()
    process.wait(timeout=30)
    log.close()


@pytest.fixture(params=["sqlite", "http"])
def tracking_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "http":
        url: str = request.getfixturevalue("mlflow_server")
        return url
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.fixture
def settings(kafka_env: dict[str, str], tracking_uri: str) -> Settings:
    from streams.topics import ensure_topics

    settings = Settings(mlflow={"tracking_uri": tracking_uri})
    ensure_topics(settings)
    return settings


@pytest.fixture
def start(driftline_processes: ProcessGroup, tmp_path: Path) -> Callable[..., ManagedProcess]:
    def launch(kind: str, name: str, **env: str) -> ManagedProcess:
        extra = {"DRIFTLINE_METRICS__PORT": "0", "DRIFTLINE_RETRAINER__POLL_SECONDS": "0.2", **env}
        if kind == "worker":
            return driftline_processes.worker(name, tmp_path / name, **extra)
        return driftline_processes.retrainer(name, **extra)

    return launch


def _stream(model: str = "fraud-scorer") -> tuple[list[PredictionEvent], list[LabelEvent]]:
    from streams.synthetic import generate_stream

    predictions, labels = generate_stream(
        seed=11, n_events=N_EVENTS, model=model, features=6, concept_change_at=CHANGE_AT,
        label_delay_seconds=300.0, model_version="0",
    )  # fmt: skip
    return (
        [PredictionEvent.model_validate(p) for p in predictions],
        [LabelEvent.model_validate(label) for label in labels],
    )


def replay(settings: Settings, events: list[Event]) -> None:
    from streams.replay import replay_events

    ordered = sorted(events, key=lambda event: event.timestamp)
    assert replay_events(settings, ordered, batch_size=200).failed == 0


def _rescore(
    settings: Settings, model: str, version: str, events: list[PredictionEvent]
) -> list[PredictionEvent]:
    """What a serving layer does after the promotion: the champion scores the traffic."""
    import mlflow.artifacts
    import mlflow.sklearn
    import pandas as pd
    from mlflow import MlflowClient

    uri = settings.mlflow.tracking_uri
    source = MlflowClient(uri, registry_uri=uri).get_model_version_download_uri(model, version)
    local = mlflow.artifacts.download_artifacts(artifact_uri=source, tracking_uri=uri)
    champion = mlflow.sklearn.load_model(local)
    frame = pd.DataFrame([event.features for event in events])
    proba = champion.predict_proba(frame)
    classes = [str(c) for c in champion.classes_]
    return [
        event.model_copy(update={
            "model_version": version, "prediction": int(row[classes.index("1")] >= 0.5),
            "scores": {cls: round(float(p), 6) for cls, p in zip(classes, row, strict=True)},
        })
        for event, row in zip(events, proba, strict=True)
    ]  # fmt: skip


def test_concept_drift_is_retrained_promoted_and_switches_the_worker(
    settings: Settings,
    start: Callable[..., ManagedProcess],
    kafka_bootstrap: str,
    tracking_uri: str,
) -> None:
    from mlflow import MlflowClient

    predictions, labels = _stream()
    cut = predictions[CUT_AT].timestamp
    worker = start("worker", "worker")
    phase1: list[Event] = [
        *predictions[:CUT_AT],
        *(label for label in labels if label.timestamp < cut),
    ]
    replay(settings, phase1)
    env = {"DRIFTLINE_MLFLOW__TRACKING_URI": tracking_uri}
    retrainer = start("retrainer", "retrainer", **env)

    models = read_topic(
        kafka_bootstrap, settings.topics.models, timeout=200,
        until=lambda found: any(m["type"] in ("promoted", "rejected") for m in found),
    )  # fmt: skip
    assert [m["type"] for m in models] == ["registered", "promoted"], (
        models, worker.log()[-2000:], retrainer.log()[-4000:],
    )  # fmt: skip
    promoted = models[-1]
    alerts = read_topic(
        kafka_bootstrap, settings.topics.alerts, timeout=10,
        until=lambda found: any(a["alert_id"] == promoted["trigger_alert_id"] for a in found),
    )  # fmt: skip
    trigger = Alert.model_validate(
        next(a for a in alerts if a["alert_id"] == promoted["trigger_alert_id"])
    )
    assert trigger.kind == "performance" and trigger.status == "firing"
    assert trigger.fired_at >= predictions[CHANGE_AT].timestamp
    assert not [a for a in alerts if a["kind"] in ("feature_drift", "prediction_drift")], alerts
    seconds = (datetime.fromisoformat(promoted["timestamp"]) - trigger.emitted_at).total_seconds()
    metrics = promoted["metrics"]
    print(
        f"\n[{tracking_uri.split(':')[0]}] alert -> promoted {seconds:.1f} s; holdout "
        f"{metrics['holdout_count']:.0f} rows: challenger accuracy "
        f"{metrics['challenger_accuracy']:.3f}, champion (logged) "
        f"{metrics['champion_accuracy']:.3f}"
    )
    assert metrics["challenger_accuracy"] > metrics["champion_accuracy"] + 0.2, metrics

    client = MlflowClient(tracking_uri, registry_uri=tracking_uri)
    version = client.get_model_version_by_alias("fraud-scorer", "champion")
    assert str(version.version) == promoted["version"] == "1"
    assert version.tags["trigger_alert_id"] == trigger.alert_id
    assert version.tags["window_start"] >= trigger.window.start.isoformat()
    assert float(version.tags["challenger_accuracy"]) == pytest.approx(
        metrics["challenger_accuracy"], abs=1e-6
    )
    assert version.run_id is not None
    run = client.get_run(version.run_id)
    assert run.data.params["trigger_alert_id"] == trigger.alert_id
    assert "reference_profile.json" in {a.path for a in client.list_artifacts(version.run_id)}
    assert promoted["reference"]["model_version"] == "1"

    deadline = time.monotonic() + 60
    while scrape(worker).get("driftline_reference_switches_total") != 1.0:
        assert time.monotonic() < deadline, worker.log()[-3000:]
        time.sleep(0.5)

    rescored = _rescore(settings, "fraud-scorer", "1", predictions[CUT_AT:])
    phase2: list[Event] = [*rescored, *(label for label in labels if label.timestamp >= cut)]
    replay(settings, phase2)
    deadline = time.monotonic() + 90
    while scrape(worker).get('driftline_events_received_total{source="labels"}') != len(labels):
        assert time.monotonic() < deadline, worker.log()[-3000:]
        time.sleep(0.5)
    time.sleep(5)  # the judge's last windows
    samples = scrape(worker)
    error_rate = [
        v for k, v in samples.items()
        if k.startswith("driftline_statistic_value") and 'detector="error_rate"' in k
    ]  # fmt: skip
    assert error_rate and error_rate[0] < 0.3, error_rate  # judged: the new model's windows
    final = read_topic(kafka_bootstrap, settings.topics.alerts, timeout=5, until=lambda _: False)
    # every kind, label coverage too: windows read while the labels topic lags far behind get
    # no coverage verdict (labels_behind), so a full-speed replay does not page for it
    late = [
        a for a in final
        if a["status"] == "firing" and datetime.fromisoformat(a["fired_at"]) >= cut
    ]  # fmt: skip
    assert late == [], (late, worker.log()[-3000:])
    episodes = [(a["status"], a["kind"], a["detector"], a["fingerprint"][:8]) for a in final]
    assert any(
        a["status"] == "resolved" and a["fingerprint"] == trigger.fingerprint for a in final
    ), (trigger.fingerprint[:8], episodes, worker.log()[-3000:])
    assert worker.alive() and retrainer.alive()
    outcome = re.search(
        r"outcome alert=\S+ model=fraud-scorer kind=promoted version=1 seconds=(\S+)",
        retrainer.log(),
    )
    assert outcome, retrainer.log()[-3000:]
    print(f"retrainer: {outcome.group(1)} s from taking the alert to the promotion")


def test_two_retrainers_racing_on_one_alert_make_one_version(
    kafka_env: dict[str, str], mlflow_server: str, start: Callable[..., ManagedProcess]
) -> None:
    """Two retrainer processes (two groups, so both take the alert) against one MLflow server."""
    from mlflow import MlflowClient

    from streams.topics import ensure_topics

    settings = Settings(mlflow={"tracking_uri": mlflow_server})
    ensure_topics(settings)
    model = f"race-{uuid.uuid4().hex[:8]}"
    predictions, labels = _stream(model)
    after: list[Event] = [
        *predictions[CHANGE_AT:CUT_AT],
        *(x for x in labels if x.timestamp >= predictions[CHANGE_AT].timestamp),
    ]
    replay(settings, after)
    env = {"DRIFTLINE_MLFLOW__TRACKING_URI": mlflow_server}
    racers = [
        start("retrainer", f"r{i}", DRIFTLINE_RETRAINER__GROUP_ID=f"race-{i}", **env)
        for i in (1, 2)
    ]
    start_at = predictions[CHANGE_AT].timestamp
    alert = Alert(
        alert_id=f"{model}-alert", fingerprint=f"{model}-fp", status="firing", severity="critical",
        model=model, model_version="0", kind="performance", feature=None, segment=None,
        detector="error_rate", statistic=0.5, threshold=0.3,
        window=AlertWindow(start=start_at, end=predictions[CHANGE_AT + 499].timestamp, count=500),
        reference=AlertReference(source="warmup", model_version="0", count=2000),
        fired_at=predictions[CHANGE_AT + 499].timestamp, emitted_at=datetime.now().astimezone(),
        summary="error rate rose",
    )  # fmt: skip
    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap_servers})
    producer.produce(
        settings.topics.alerts, key=alert.fingerprint.encode(), value=to_json_bytes(alert)
    )
    assert producer.flush(10) == 0

    pattern = rf"outcome alert={alert.alert_id} model={model} kind=(\w+) version=(\S+)"
    deadline = time.monotonic() + 120
    while not all(re.search(pattern, r.log()) for r in racers):
        assert time.monotonic() < deadline, [r.log()[-2000:] for r in racers]
        time.sleep(0.5)
    outcomes = sorted(found.groups() for r in racers if (found := re.search(pattern, r.log())))
    # The loser either registered and deleted its duplicate, or found the winner's version.
    assert outcomes in (
        [("duplicate", "1"), ("promoted", "1")], [("promoted", "1"), ("served", "1")],
    ), outcomes  # fmt: skip
    client = MlflowClient(mlflow_server, registry_uri=mlflow_server)
    versions = client.search_model_versions(f"name='{model}'")
    assert [(str(v.version), v.tags["trigger_alert_id"]) for v in versions] == [
        ("1", alert.alert_id)
    ]
    events = read_topic(
        settings.kafka.bootstrap_servers, settings.topics.models, timeout=5, until=lambda _: False
    )
    mine = [(e["type"], e["version"]) for e in events if e["model"] == model]
    assert mine == [("registered", "1"), ("promoted", "1")], mine
