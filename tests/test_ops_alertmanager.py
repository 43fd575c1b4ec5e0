"""The Alertmanager bridge: the pure mapping, the HTTP client, and the bridge against a real
Alertmanager (Debian's ``prometheus-alertmanager``) that notifies a webhook served here."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal, get_args

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from detectors.alerting import alert_id, fingerprint
from schemas.events import Alert, AlertKind, AlertReference, AlertWindow, to_json_bytes
from schemas.settings import Settings
from streams.alertmanager import ALERTNAMES, FiringSet, to_alertmanager
from streams.alertmanager_bridge import AlertmanagerBridge, BridgeConfig, BridgeStats
from streams.alertmanager_client import (
    AlertmanagerClient,
    AlertmanagerRejected,
    AlertmanagerUnavailable,
    BridgeError,
    alerts_endpoint,
)
from streams.topics import ensure_topics

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
REPO = Path(__file__).resolve().parent.parent


def make_alert(
    status: Literal["firing", "resolved"] = "firing",
    *,
    model: str = "churn",
    feature: str | None = "age",
    segment: str | None = "country=DE",
    model_version: str | None = "3",
    fired_at: datetime = T0,
    emitted_at: datetime | None = None,
    runbook_url: str | None = "https://runbooks.example/drift",
) -> Alert:
    fp = fingerprint(model, "feature_drift", feature, segment, "psi")
    return Alert(
        alert_id=alert_id(fp, status, 1), fingerprint=fp, status=status, severity="critical",
        model=model, model_version=model_version, kind="feature_drift", feature=feature,
        segment=segment, detector="psi", statistic=0.31 if status == "firing" else 0.05,
        threshold=0.2, p_value=None,
        window=AlertWindow(start=fired_at - timedelta(hours=1), end=fired_at, count=500),
        reference=AlertReference(source="warmup", model_version=model_version, count=2000),
        fired_at=fired_at, emitted_at=emitted_at or fired_at + timedelta(seconds=2),
        summary=f"age drifted for churn ({status})", runbook_url=runbook_url,
    )  # fmt: skip


# -- the pure mapping ------------------------------------------------------------------------


def test_firing_alert_maps_to_bounded_labels_and_descriptive_annotations() -> None:
    alert = make_alert()
    until = T0 + timedelta(minutes=4)
    posted = to_alertmanager(alert, generator_url="http://grafana/d/x", firing_until=until)
    assert posted["labels"] == {
        "alertname": "DriftlineFeatureDrift",
        "model": "churn",
        "model_version": "3",
        "kind": "feature_drift",
        "feature": "age",
        "segment": "country=DE",
        "detector": "psi",
        "severity": "critical",
        "fingerprint": alert.fingerprint,
    }
    assert alert.alert_id not in posted["labels"].values()  # ids live in annotations
    notes = posted["annotations"]
    assert notes["summary"] == alert.summary
    assert notes["alert_id"] == alert.alert_id
    assert notes["runbook_url"] == "https://runbooks.example/drift"
    assert notes["description"].startswith("psi = 0.31 > threshold 0.2 over 500 events from ")
    assert "2024-05-01T11:00:00Z to 2024-05-01T12:00:00Z" in notes["description"]
    assert posted["startsAt"] == "2024-05-01T12:00:00Z"
    assert posted["endsAt"] == "2024-05-01T12:04:00Z"
    assert posted["generatorURL"] == "http://grafana/d/x"
    assert "endsAt" not in to_alertmanager(alert, generator_url=None)  # resolve_timeout applies


def test_resolved_alert_closes_the_episode_alertmanager_holds() -> None:
    opened = make_alert(model_version="3")
    resolved_at = T0 + timedelta(hours=2)
    # The model was promoted meanwhile: the resolve must still hit the labels that fired.
    resolved = make_alert("resolved", model_version="4", fired_at=resolved_at)
    posted = to_alertmanager(resolved, generator_url=None, opened_by=opened)
    assert posted["labels"]["model_version"] == "3"
    assert posted["labels"] == to_alertmanager(opened, generator_url=None)["labels"]
    assert posted["startsAt"] == "2024-05-01T12:00:00Z"
    assert posted["endsAt"] == "2024-05-01T14:00:02Z"  # emitted_at: Alertmanager's clock
    assert " <= threshold 0.2 " in posted["annotations"]["description"]
    assert posted["annotations"]["alert_id"] == resolved.alert_id
    alone = to_alertmanager(resolved, generator_url=None)
    assert alone["labels"]["model_version"] == "4"
    assert alone["startsAt"] == "2024-05-01T14:00:00Z"


def test_null_feature_segment_and_version_are_omitted_and_times_stay_ordered() -> None:
    alert = make_alert(feature=None, segment=None, model_version=None, runbook_url=None)
    posted = to_alertmanager(alert, generator_url=None)
    assert set(posted["labels"]) == {
        "alertname", "model", "kind", "detector", "severity", "fingerprint"
    }  # fmt: skip
    assert "runbook_url" not in posted["annotations"] and "generatorURL" not in posted
    assert all(value for value in posted["labels"].values())
    # Event time ahead of the wall clock (a synthetic stream): start when it was published.
    ahead = make_alert("resolved", fired_at=T0 + timedelta(days=1), emitted_at=T0)
    posted = to_alertmanager(ahead, generator_url=None)
    assert posted["startsAt"] == posted["endsAt"] == "2024-05-01T12:00:00Z"
    assert set(ALERTNAMES) == set(get_args(AlertKind))
    assert len(set(ALERTNAMES.values())) == len(ALERTNAMES)


def test_firing_set_keeps_the_opener_and_forgets_revoked_partitions() -> None:
    firing = FiringSet()
    first = make_alert()
    again = make_alert(fired_at=T0 + timedelta(minutes=5))
    other = make_alert(model="fraud")
    assert firing.apply(first, partition=0) is first
    assert firing.apply(again, partition=0) is first
    assert firing.apply(other, partition=2) is other
    [episode, _] = firing.episodes()
    assert (episode.opened_by, episode.latest) == (first, again)
    tentative = firing.copy()
    assert tentative.apply(make_alert("resolved"), partition=0) is first
    assert (len(tentative), len(firing)) == (1, 2)
    assert firing.drop_partitions([2, 5]) == 1
    assert [e.opened_by for e in firing.episodes()] == [first]
    assert firing.apply(make_alert("resolved", model="unknown"), partition=1) is None


# -- the HTTP client -------------------------------------------------------------------------


class Recorder:
    """A local HTTP server answering each POST with the next programmed status."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.bodies: list[Any] = []
        self.statuses = list(statuses or [])
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                recorder.bodies.append(json.loads(self.rfile.read(length)))
                status = recorder.statuses.pop(0) if recorder.statuses else 200
                body = b"" if status == 200 else b'"start time must be before end time"'
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    server = Recorder()
    yield server
    server.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_client_posts_json_and_classifies_failures(recorder: Recorder) -> None:
    client = AlertmanagerClient(recorder.url + "/", timeout_seconds=5)
    assert client.endpoint == recorder.url + "/api/v2/alerts"
    payload = [to_alertmanager(make_alert(), generator_url=None)]
    client.post(payload)
    assert recorder.bodies == [payload]
    recorder.statuses = [400, 503, 404]
    with pytest.raises(AlertmanagerRejected, match='HTTP 400: "start time must be before'):
        client.post(payload)
    with pytest.raises(AlertmanagerUnavailable, match="HTTP 503"):
        client.post(payload)
    with pytest.raises(AlertmanagerUnavailable, match=r"HTTP 404.*check --url"):
        client.post(payload)
    closed = AlertmanagerClient(f"http://127.0.0.1:{free_port()}", timeout_seconds=5)
    with pytest.raises(AlertmanagerUnavailable, match=r"cannot reach http://127\.0\.0\.1:"):
        closed.post(payload)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://am.example", "https://am.example/api/v2/alerts"),
        ("http://10.0.0.5:9093/alertmanager/", "http://10.0.0.5:9093/alertmanager/api/v2/alerts"),
        ("127.0.0.1:9093", "must start with http"),
        ("http://127.0.0.1:9093/api/v2/alerts", "base URL, not an API path"),
        ("http:///x", "name a host"),
    ],
)
def test_alerts_endpoint_validates_the_url(url: str, expected: str) -> None:
    if expected.startswith("http"):
        assert alerts_endpoint(url) == expected
    else:
        with pytest.raises(BridgeError, match=expected):
            alerts_endpoint(url)


# -- a real Alertmanager ---------------------------------------------------------------------


def alertmanager_binary() -> str:
    found = shutil.which("prometheus-alertmanager")
    if found is None:
        pytest.fail(
            "prometheus-alertmanager is not installed: run `make tools` (Debian package "
            "prometheus-alertmanager); these tests never skip",
            pytrace=False,
        )
    return found


class AlertmanagerProcess:
    """One Alertmanager on 127.0.0.1:``port``, notifying ``webhook`` for every fingerprint."""

    def __init__(self, workdir: Path, port: int, webhook: str) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        config = workdir / "alertmanager.yml"
        config.write_text(
            "route:\n  receiver: hook\n  group_by: [fingerprint]\n  group_wait: 0s\n"
            "  group_interval: 1s\n  repeat_interval: 1h\n"
            f"receivers:\n  - name: hook\n    webhook_configs:\n      - url: {webhook}\n"
            "        send_resolved: true\n"
        )
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = workdir / "alertmanager.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    alertmanager_binary(),
                    f"--config.file={config}",
                    f"--storage.path={workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--cluster.listen-address=",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for(self._ready, 30, lambda: f"Alertmanager not ready:\n{self.log_tail()}")

    def _ready(self) -> bool:
        assert self.process.poll() is None, f"Alertmanager exited:\n{self.log_tail()}"
        try:
            with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def alerts(self) -> list[dict[str, Any]]:
        """What GET /api/v2/alerts lists: alerts not yet resolved."""
        with urllib.request.urlopen(self.url + "/api/v2/alerts", timeout=5) as response:
            found: list[dict[str, Any]] = json.loads(response.read())
            return found

    def ours(self, fp: str) -> list[dict[str, Any]]:
        return [a for a in self.alerts() if a["labels"].get("fingerprint") == fp]

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@pytest.fixture
def start_alertmanager(
    tmp_path: Path, recorder: Recorder
) -> Iterator[Callable[[int], AlertmanagerProcess]]:
    alertmanager_binary()
    started: list[AlertmanagerProcess] = []

    def start(port: int) -> AlertmanagerProcess:
        am = AlertmanagerProcess(tmp_path / f"am-{len(started)}", port, recorder.url + "/hook")
        started.append(am)
        return am

    yield start
    for am in started:
        am.stop()


def wait_for(check: Callable[[], bool], timeout: float, describe: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(describe())


def publish(settings: Settings, *payloads: bytes | Alert) -> list[tuple[int, int]]:
    """Publish to the alerts topic, keyed by fingerprint; returns (partition, offset) each."""
    delivered: list[tuple[int, int]] = []

    def on_delivery(error: Any, message: Any) -> None:
        assert error is None, error
        delivered.append((message.partition(), message.offset()))

    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap_servers})
    for payload in payloads:
        if isinstance(payload, Alert):
            key, value = payload.fingerprint.encode(), to_json_bytes(payload)
        else:
            key, value = b"garbage", payload
        producer.produce(settings.topics.alerts, key=key, value=value, on_delivery=on_delivery)
    assert producer.flush(15) == 0
    return delivered


def notifications(recorder: Recorder, fp: str, status: str) -> list[dict[str, Any]]:
    """Alerts of ours that Alertmanager's webhook notifications carried with ``status``."""
    return [
        alert
        for body in recorder.bodies
        for alert in body.get("alerts", [])
        if alert["labels"].get("fingerprint") == fp and alert["status"] == status
    ]


@pytest.mark.kafka
@pytest.mark.timeout(120)
def test_cli_bridge_forwards_firing_then_resolved_to_alertmanager(
    kafka_env: dict[str, str],
    start_alertmanager: Callable[[int], AlertmanagerProcess],
    recorder: Recorder,
    tmp_path: Path,
) -> None:
    settings = Settings()
    ensure_topics(settings)
    am = start_alertmanager(free_port())
    now = datetime.now(UTC)
    firing = make_alert(fired_at=now - timedelta(minutes=10), emitted_at=now)
    publish(settings, b"{not json", firing)
    log_path = tmp_path / "bridge.log"
    with log_path.open("wb") as log:
        bridge = subprocess.Popen(
            [str(Path(sys.executable).parent / "driftline"), "alertmanager-bridge",
             "--url", am.url, "--group", f"{settings.topics.prefix}bridge", "--resend-seconds",
             "1", "--generator-url", "http://dashboards.example/churn"],
            cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        bridge_log = lambda: f"bridge log:\n{log_path.read_text()[-3000:]}"  # noqa: E731
        wait_for(lambda: bool(am.ours(firing.fingerprint)), 40, bridge_log)
        [active] = am.ours(firing.fingerprint)
        assert active["status"]["state"] == "active"
        assert active["labels"] == to_alertmanager(firing, generator_url=None)["labels"]
        assert active["annotations"]["summary"] == firing.summary
        assert active["generatorURL"] == "http://dashboards.example/churn"
        wait_for(
            lambda: bool(notifications(recorder, firing.fingerprint, "firing")), 20, bridge_log
        )
        [notified] = notifications(recorder, firing.fingerprint, "firing")[:1]
        assert notified["labels"]["alertname"] == "DriftlineFeatureDrift"
        assert notified["labels"]["segment"] == "country=DE"
        # Re-posted every second: Alertmanager's copy is refreshed while the episode lasts.
        updated = active["updatedAt"]
        wait_for(lambda: am.ours(firing.fingerprint)[0]["updatedAt"] != updated, 20, bridge_log)

        resolved = make_alert("resolved", fired_at=now, emitted_at=datetime.now(UTC))
        publish(settings, resolved)
        wait_for(lambda: not am.ours(firing.fingerprint), 30, bridge_log)
        wait_for(
            lambda: bool(notifications(recorder, firing.fingerprint, "resolved")), 20, bridge_log
        )
    finally:
        bridge.send_signal(signal.SIGTERM)
        code = bridge.wait(timeout=30)
    text = log_path.read_text()
    assert code == 0, text[-3000:]
    first_line = text.splitlines()[0]
    assert first_line.startswith(f"driftline alertmanager-bridge: url={am.url}/api/v2/alerts ")
    assert "invalid_alert partition=" in text
    assert "stopped: firing=1 resolved=1 invalid=1 rejected=0 failed_posts=0" in text


def committed_offsets(settings: Settings, group: str) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": settings.kafka.bootstrap_servers, "group.id": group})
    try:
        partitions = [TopicPartition(settings.topics.alerts, p) for p in range(3)]
        return {tp.partition: tp.offset for tp in consumer.committed(partitions, timeout=10)}
    finally:
        consumer.close()


class BridgeThread:
    def __init__(self, settings: Settings, config: BridgeConfig) -> None:
        self.bridge = AlertmanagerBridge(settings, config)
        self.stop = threading.Event()
        self.result: list[BridgeStats | BaseException] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.result.append(self.bridge.run(self.stop))
        except BaseException as exc:
            self.result.append(exc)

    def join(self) -> BridgeStats:
        self.stop.set()
        self.thread.join(timeout=30)
        [outcome] = self.result
        assert isinstance(outcome, BridgeStats), outcome
        return outcome


@pytest.mark.kafka
@pytest.mark.timeout(120)
def test_bridge_retries_until_alertmanager_listens_and_rebuilds_after_restart(
    kafka_env: dict[str, str],
    start_alertmanager: Callable[[int], AlertmanagerProcess],
) -> None:
    settings = Settings()
    ensure_topics(settings)
    group = f"{settings.topics.prefix}bridge"
    port = free_port()
    config = BridgeConfig(
        url=f"http://127.0.0.1:{port}", group=group, resend_seconds=1.0, poll_seconds=0.2,
        backoff_seconds=0.2, backoff_max_seconds=1.0,
    )  # fmt: skip
    now = datetime.now(UTC)
    firing = make_alert(fired_at=now, emitted_at=now)
    [(partition, offset)] = publish(settings, firing)
    first = BridgeThread(settings, config)
    try:
        wait_for(lambda: first.bridge.stats.failed_posts >= 2, 30, lambda: "no failed post")
        # Nothing committed while Alertmanager was down: a restart would read it again.
        assert all(o < 0 for o in committed_offsets(settings, group).values())
        am = start_alertmanager(port)
        wait_for(lambda: bool(am.ours(firing.fingerprint)), 30, lambda: "alert never arrived")
        wait_for(
            lambda: committed_offsets(settings, group)[partition] == offset + 1,
            20,
            lambda: f"not committed: {committed_offsets(settings, group)}",
        )
    finally:
        stats = first.join()
    assert (stats.firing, stats.resolved, stats.rebuilt) == (1, 0, 0)
    am.stop()

    # A new Alertmanager knows nothing; the restarted bridge rebuilds the episode from the
    # topic (its offset is committed, so only the rebuild can know it) and re-posts it.
    fresh = start_alertmanager(free_port())
    second = BridgeThread(settings, BridgeConfig(**{**config.__dict__, "url": fresh.url}))
    try:
        wait_for(lambda: bool(fresh.ours(firing.fingerprint)), 30, lambda: "not re-posted")
    finally:
        stats = second.join()
    assert (stats.firing, stats.rebuilt, stats.failed_posts) == (0, 1, 0)
    assert stats.resent >= 1
    assert committed_offsets(settings, group)[partition] == offset + 1


@pytest.mark.kafka
@pytest.mark.timeout(60)
def test_bridge_skips_and_commits_what_alertmanager_refuses(
    kafka_env: dict[str, str], recorder: Recorder
) -> None:
    settings = Settings()
    ensure_topics(settings)
    group = f"{settings.topics.prefix}bridge"
    recorder.statuses = [400]  # the first post is refused, later ones accepted
    firing = make_alert()
    delivered = publish(settings, firing, make_alert("resolved", fired_at=T0 + timedelta(hours=1)))
    [(partition, _), (_, last)] = delivered
    bridge = BridgeThread(
        settings, BridgeConfig(url=recorder.url, group=group, resend_seconds=60, poll_seconds=0.2)
    )
    try:
        wait_for(
            lambda: committed_offsets(settings, group)[partition] == last + 1,
            30,
            lambda: f"not committed: {committed_offsets(settings, group)}",
        )
    finally:
        stats = bridge.join()
    assert (stats.rejected, stats.firing, stats.failed_posts) == (1, 0, 0)
    assert len(bridge.bridge.firing) == 0
    final = [
        a
        for body in recorder.bodies
        for a in body
        if a["labels"]["fingerprint"] == firing.fingerprint
    ][-1]
    assert final["endsAt"] == "2024-05-01T13:00:02Z"  # the episode ends resolved either way
