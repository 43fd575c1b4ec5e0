"""``driftline report --from-kafka`` on the real broker: a shifted stream published through the
SDK, live alerts and model events on their topics; the statistics must be the ones a file
backtest of the same events computes (the same monitor code)."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from html import escape
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from typer.testing import CliRunner

from schemas.events import (
    Alert,
    AlertReference,
    AlertWindow,
    LabelEvent,
    ModelEvent,
    PredictionEvent,
    to_json_bytes,
)
from schemas.settings import Settings

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(120)]
MODEL = "fraud-scorer"
N, SHIFT_AT, V2_AT = 8_000, 3_000, 6_000
LIVE_SUMMARY = "feature 'amount' drifted (published live by a worker)"


def _stream() -> tuple[list[PredictionEvent], list[LabelEvent]]:
    """``amount`` shifts by 1.5 sigma at SHIFT_AT; version 2 serves from V2_AT on."""
    from streams.synthetic import generate_stream

    raw_predictions, raw_labels = generate_stream(
        seed=5, n_events=N, features=6, shift_at=SHIFT_AT, shift_feature="amount",
        shift_sigma=1.5, label_delay_seconds=600,
    )  # fmt: skip
    for index, raw in enumerate(raw_predictions):
        raw["model_version"] = "2" if index >= V2_AT else "1"
    return (
        [PredictionEvent.model_validate(p) for p in raw_predictions],
        [LabelEvent.model_validate(label) for label in raw_labels],
    )


def _alert(status: str, at: datetime) -> Alert:
    return Alert(
        alert_id=f"live-{status}", fingerprint="fp-amount-ks", status=status,  # type: ignore[arg-type]
        severity="warning", model=MODEL, model_version="1", kind="feature_drift",
        feature="amount", segment=None, detector="ks", statistic=0.31, threshold=0.12,
        window=AlertWindow(start=at - timedelta(seconds=500), end=at, count=500),
        reference=AlertReference(source="warmup", model_version="1", count=1000),
        fired_at=at, emitted_at=datetime.now(UTC), summary=LIVE_SUMMARY,
    )  # fmt: skip


def _model_event(
    event_type: str, reference: dict[str, Any] | None, version: str = "2"
) -> ModelEvent:
    return ModelEvent(
        event_id=f"m-{event_type}-{version}", type=event_type, model=MODEL, version=version,  # type: ignore[arg-type]
        aliases=["champion"] if event_type == "promoted" else [], run_id="run-2",
        trigger_alert_id="live-firing", metrics={"accuracy": 0.87}, reference=reference,
        timestamp=datetime.now(UTC),  # wall clock, far from the replayed event time
    )  # fmt: skip


def _publish(settings: Settings, bootstrap: str) -> tuple[Any, list[Any], list[Any]]:
    """Everything the live system would have on its topics; returns (profile, preds, labels)."""
    from detectors.profile_builder import profile_from_events
    from streams.replay import replay_events

    predictions, labels = _stream()
    profile = profile_from_events(predictions[V2_AT:], model=MODEL, profile_id="fraud-v2")
    assert profile.model_version == "2"
    result = replay_events(
        settings, sorted([*predictions, *labels], key=lambda e: e.timestamp), batch_size=100
    )
    assert result.failed == 0
    raw = Producer({"bootstrap.servers": bootstrap})
    raw.produce(settings.topics.predictions, key=b"bad", value=b'{"event_id": "x", ')
    raw.produce(settings.topics.labels, key=b"bad", value=b"not json")
    for alert in (
        _alert("firing", predictions[SHIFT_AT + 700].timestamp),
        _alert("resolved", predictions[V2_AT].timestamp),
    ):
        raw.produce(
            settings.topics.alerts, key=alert.fingerprint.encode(), value=to_json_bytes(alert)
        )
    for event in (
        _model_event("registered", None),
        _model_event("promoted", profile.model_dump(mode="json")),
        _model_event("promoted", {"model": MODEL}, version="3"),  # the workers skip it too
    ):
        raw.produce(settings.topics.models, key=MODEL.encode(), value=to_json_bytes(event))
    assert raw.flush(15) == 0
    return profile, predictions, labels


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def test_report_from_topics_matches_a_file_backtest(
    settings: Settings, kafka_bootstrap: str, tmp_path: Path
) -> None:
    from schemas.monitor_config import MonitorConfig
    from streams.cli_backtest import run_backtest
    from streams.report_kafka import read_topics, report_from_topics

    profile, predictions, labels = _publish(settings, kafka_bootstrap)
    switch_time = predictions[V2_AT].timestamp

    out = tmp_path / "live.html"
    summary = report_from_topics(settings, out, progress=False)
    assert (summary.predictions, summary.labels) == (N, N)
    assert (summary.alerts, summary.model_events, summary.switches) == (2, 3, 1)
    assert summary.invalid == {"predictions": 1, "labels": 1} and summary.points > 100
    html = out.read_text(encoding="utf-8")
    assert 'aria-label="amount - ks"' in html and escape(LIVE_SUMMARY) in html
    assert html.count('class="marker firing"') >= 1 and html.count('class="marker resolved"') >= 1
    assert 'class="marker promoted"' in html and "(reference switched here)" in html
    assert "reference switched (event time)" in html and _stamp(switch_time) in html
    assert f"{MODEL} version 2: {N - V2_AT:,} predictions" in html
    assert "2 invalid messages (labels: 1, predictions: 1)" in html
    assert (
        "model event m-promoted-3 (fraud-scorer version 3): its reference is not a usable" in html
    )

    # The same events through the file backtest, its switch at the first version-2 prediction.
    pred_file, label_file = tmp_path / "p.jsonl", tmp_path / "l.jsonl"
    pred_file.write_bytes(b"".join(to_json_bytes(p) + b"\n" for p in predictions))
    label_file.write_bytes(b"".join(to_json_bytes(e) + b"\n" for e in labels))
    expected: list[Any] = []
    backtest = run_backtest(
        pred_file, label_file, MonitorConfig(), io.BytesIO(), on_point=expected.append,
        switches=[(switch_time, MODEL, profile)],
    )  # fmt: skip
    assert backtest.switches == 1
    snapshot = read_topics(settings)
    assert len(snapshot.points) == summary.points == len(expected)
    assert snapshot.points == expected
    decided = [(a.fingerprint, a.status, a.fired_at) for a in snapshot.offline_alerts]
    assert decided == [(a.fingerprint, a.status, a.fired_at) for a in backtest.alerts]
    amount = [a for a in backtest.alerts if a.feature == "amount" and a.kind == "feature_drift"]
    assert [a.status for a in amount] == ["firing", "resolved"], [a.summary for a in amount]
    assert "reference switched to profile fraud-v2" in amount[1].summary
    assert SHIFT_AT <= _index_of(predictions, amount[0].fired_at) < V2_AT
    assert snapshot.switched_at == {"m-promoted-2": switch_time}


def _index_of(predictions: list[PredictionEvent], moment: datetime) -> int:
    return max(i for i, p in enumerate(predictions) if p.timestamp <= moment)


def test_cli_report_modes_and_model_filter(
    settings: Settings, kafka_bootstrap: str, tmp_path: Path
) -> None:
    import typer

    from streams.cli_report import report_command

    app = typer.Typer()
    app.command()(report_command)
    runner = CliRunner()
    neither = runner.invoke(app, ["--out", str(tmp_path / "r.html")])
    assert neither.exit_code == 2 and "--from-kafka" in neither.output
    both = runner.invoke(app, ["--out", "r.html", "--from-kafka", "--alerts", "a.jsonl"])
    assert both.exit_code == 2 and "drop --alerts" in both.output
    stray = runner.invoke(
        app, ["--out", "r.html", "--alerts", "a", "--points", "p", "--model", "m"]
    )
    assert stray.exit_code == 2 and "--model only apply with --from-kafka" in stray.output

    from streams.replay import replay_events

    predictions, labels = _stream()
    other = [p.model_copy(update={"model": "other", "event_id": "o" + p.event_id})
             for p in predictions[:1500]]  # fmt: skip
    replay_events(settings, sorted([*predictions[:3000], *labels[:2000], *other],
                                   key=lambda e: e.timestamp), batch_size=50)  # fmt: skip
    out = tmp_path / "only.html"
    result = runner.invoke(app, ["--out", str(out), "--from-kafka", "--model", MODEL])
    assert result.exit_code == 0, result.output
    assert "3,000 predictions, 2,000 labels" in result.output
    html = out.read_text(encoding="utf-8")
    assert 'id="model-fraud-scorer"' in html and 'id="model-other"' not in html
