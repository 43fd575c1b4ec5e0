"""kcat as the non-Python client a user would reach for: it publishes hand-written JSON-line
predictions (no SDK, no schemas) to a live worker and reads the alerts and dead letters back."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from streams.partitioning import partition_for

if TYPE_CHECKING:
    from streams.processes import ProcessGroup

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(150)]

REPO = Path(__file__).resolve().parent.parent
ALERT_SCHEMA = REPO / "schemas" / "json" / "alert.v1.schema.json"
SHIFT_AT = 3_000  # after the 2000-event warm-up and two stationary windows
TOTAL = 6_000
START = datetime(2024, 5, 1, tzinfo=UTC)
MURMUR2 = "partitioner=murmur2_random"
MALFORMED = b'{"schema_version": 1, "event_id": "bad-1", "model": "churn", "features": '


def _kcat() -> str:
    path = shutil.which("kcat")
    if path is None:
        pytest.fail(
            "`kcat` is not installed: run `make tools` (Debian package `kcat`); the kcat tests "
            "never skip",
            pytrace=False,
        )
    return path


def _prediction_lines(seed: int = 7) -> list[bytes]:
    """``key|json`` lines: ``x`` moves by 1.5 standard deviations at SHIFT_AT, ``y`` and
    ``plan`` never change. Plain dicts, as any service would write them."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 1.0, TOTAL)
    x[SHIFT_AT:] += 1.5
    y = rng.normal(5.0, 2.0, TOTAL)
    plans = rng.choice(["free", "pro", "team"], TOTAL, p=[0.5, 0.3, 0.2])
    lines = []
    for i in range(TOTAL):
        event = {
            "schema_version": 1,
            "event_id": f"k-{i}",
            "model": "churn",
            "model_version": None,
            "timestamp": (START + timedelta(seconds=i)).isoformat(),
            "features": {"x": float(x[i]), "y": float(y[i]), "plan": str(plans[i])},
            "prediction": float(1 / (1 + np.exp(-y[i] + 5))),
        }
        lines.append(f"{event['event_id']}|{json.dumps(event)}".encode())
    return lines


def _consume(kcat: str, bootstrap: str, topic: str) -> list[dict[str, Any]]:
    """Every message of ``topic`` so far, as kcat's JSON envelopes (key, payload, ...)."""
    result = subprocess.run(
        [kcat, "-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-q", "-J"],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def _poll(
    read: Callable[[], list[dict[str, Any]]],
    found: Callable[[list[dict[str, Any]]], bool],
    timeout: float,
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    messages = read()
    while not found(messages) and time.monotonic() < deadline:
        time.sleep(2)
        messages = read()
    return messages


def test_kcat_publishes_predictions_and_reads_the_drift_alert_and_the_dead_letter(
    driftline_processes: ProcessGroup, kafka_env: dict[str, str], tmp_path: Path
) -> None:
    kcat = _kcat()
    bootstrap = kafka_env["DRIFTLINE_KAFKA__BOOTSTRAP_SERVERS"]
    prefix = kafka_env["DRIFTLINE_TOPICS__PREFIX"]
    # The documented names (DESIGN.md 3), as an on-call tool would configure them.
    predictions_topic = f"{prefix}predictions"
    alerts_topic = f"{prefix}alerts"
    deadletter_topic = f"{prefix}deadletter"
    worker = driftline_processes.worker("w1", tmp_path / "data-w1")  # creates the topics

    lines = _prediction_lines()
    lines.insert(1_000, b"bad-1|" + MALFORMED)
    produced = subprocess.run(
        # murmur2 like Kafka's Java clients and the driftline SDK (streams/partitioning.py).
        [kcat, "-P", "-b", bootstrap, "-t", predictions_topic, "-K", "|", "-X", MURMUR2],
        input=b"\n".join(lines) + b"\n",
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert produced.returncode == 0, produced.stderr.decode(errors="replace")

    def x_fired(messages: list[dict[str, Any]]) -> bool:
        alerts = [json.loads(m["payload"]) for m in messages]
        return any(a["status"] == "firing" and a["kind"] == "feature_drift" for a in alerts)

    _poll(lambda: _consume(kcat, bootstrap, alerts_topic), x_fired, timeout=75)
    time.sleep(3)  # anything unexpected that follows the first drift alert
    messages = _consume(kcat, bootstrap, alerts_topic)
    payloads = [json.loads(m["payload"]) for m in messages]
    # The shift may also raise a data-quality alert on x (values beyond the reference's
    # range); drift fires once, for x only, and the unchanged features stay quiet.
    drift = [a for a in payloads if a["status"] == "firing" and a["kind"] == "feature_drift"]
    assert [a["feature"] for a in drift] == ["x"], (payloads, worker.log_tail())
    assert not [a for a in payloads if a["feature"] in ("y", "plan")], payloads
    (alert,) = drift
    (message,) = [m for m in messages if json.loads(m["payload"]) == alert]
    assert message["key"] == alert["fingerprint"]  # the contract: alerts keyed by fingerprint

    # The v1 contract, read from the published JSON Schema (what a non-Python client has).
    schema = json.loads(ALERT_SCHEMA.read_text())
    assert set(schema["required"]) <= set(alert) <= set(schema["properties"]), sorted(alert)
    assert alert["schema_version"] == 1
    assert alert["model"] == "churn" and alert["severity"] in ("warning", "critical")
    assert alert["statistic"] > alert["threshold"] or (alert.get("p_value") or 1.0) < 0.05
    assert alert["window"]["count"] > 0
    assert alert["window"]["start"] <= alert["window"]["end"]
    assert alert["reference"]["source"] == "warmup" and alert["reference"]["count"] >= 2_000
    assert datetime.fromisoformat(alert["fired_at"]) >= START + timedelta(seconds=SHIFT_AT)
    assert "x" in alert["summary"]

    def malformed_letter(letters: list[dict[str, Any]]) -> bool:
        return any(
            base64.b64decode(json.loads(m["payload"])["payload_base64"]) == MALFORMED
            for m in letters
        )

    letters = _poll(
        lambda: _consume(kcat, bootstrap, deadletter_topic), malformed_letter, timeout=20
    )
    decoded = [json.loads(m["payload"]) for m in letters]
    assert len(decoded) == 1, decoded
    (letter,) = decoded
    assert base64.b64decode(letter["payload_base64"]) == MALFORMED
    assert letter["source_topic"] == predictions_topic
    assert letter["error_class"] == "json" and letter["error_message"]
    # kcat with murmur2 puts a key where the SDK (and so the label join) expects it.
    assert letter["partition"] == partition_for(
        b"bad-1", int(kafka_env["DRIFTLINE_TOPICS__PARTITIONS"])
    )
    assert worker.alive(), worker.log_tail()
