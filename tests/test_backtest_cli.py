"""driftline backtest / report / generate through typer's CliRunner, on seeded streams."""

from __future__ import annotations

import io
import itertools
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from schemas.events import Alert, AlertReference, AlertWindow, LabelEvent, PredictionEvent
from streams.cli_backtest import backtest_command, generate_command, run_backtest
from streams.cli_report import report_command
from streams.synthetic import generate_stream, write_stream

app = typer.Typer()
app.command("backtest")(backtest_command)
app.command("report")(report_command)
app.command("generate")(generate_command)
runner = CliRunner()
SHIFT_AT = 6000


def _alerts(path: Path) -> list[Alert]:
    return [Alert.model_validate_json(line) for line in path.read_text().splitlines() if line]


@pytest.fixture(scope="module")
def shifted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    predictions, labels = generate_stream(
        seed=21, n_events=9000, shift_at=SHIFT_AT, shift_feature="amount", shift_sigma=1.0,
        label_delay_seconds=600,
    )  # fmt: skip
    pred_path, label_path = write_stream(tmp_path_factory.mktemp("shifted"), predictions, labels)
    assert label_path is not None
    return pred_path, label_path


def test_backtest_alerts_on_the_shifted_feature_only(
    tmp_path: Path, shifted: tuple[Path, Path]
) -> None:
    predictions, labels = shifted
    alerts_out, report, points = tmp_path / "a.jsonl", tmp_path / "r.html", tmp_path / "p.jsonl"
    result = runner.invoke(app, [
        "backtest", "--predictions", str(predictions), "--labels", str(labels),
        "--alerts-out", str(alerts_out), "--report", str(report), "--points-out", str(points),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    alerts = _alerts(alerts_out)
    drift = [a for a in alerts if a.kind == "feature_drift" and a.status == "firing"]
    assert {a.feature for a in drift} == {"amount"}, [a.summary for a in alerts]
    first = min(drift, key=lambda a: a.fired_at)
    shift_time = json.loads(predictions.read_text().splitlines()[SHIFT_AT])["timestamp"]
    assert first.fired_at.isoformat().replace("+00:00", "Z") >= shift_time
    assert "9,000 predictions, 9,000 labels" in result.output and "amount" in result.output
    html = report.read_text(encoding="utf-8")
    assert "<svg" in html and 'class="marker firing"' in html and "<script" not in html
    rebuilt = tmp_path / "again.html"
    again = runner.invoke(app, [
        "report", "--alerts", str(alerts_out), "--points", str(points), "--out", str(rebuilt),
    ])  # fmt: skip
    assert again.exit_code == 0, again.output
    assert rebuilt.read_text(encoding="utf-8").count("<svg") == html.count("<svg")


def test_backtest_is_quiet_on_the_same_stream_without_shift(tmp_path: Path) -> None:
    predictions, labels = generate_stream(seed=21, n_events=9000, label_delay_seconds=600)
    pred_path, label_path = write_stream(tmp_path, predictions, labels, "csv")
    alerts_out = tmp_path / "a.jsonl"
    result = runner.invoke(app, [
        "backtest", "--predictions", str(pred_path), "--labels", str(label_path),
        "--alerts-out", str(alerts_out),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert [a.summary for a in _alerts(alerts_out) if a.kind == "feature_drift"] == []


def test_backtest_rejects_a_file_without_a_single_valid_row(tmp_path: Path) -> None:
    bad = tmp_path / "p.jsonl"
    bad.write_text('{"event_id": "e"}\nnot json\n')
    result = runner.invoke(app, [
        "backtest", "--predictions", str(bad), "--alerts-out", str(tmp_path / "a.jsonl"),
    ])  # fmt: skip
    assert result.exit_code == 2
    assert f"{bad}: no valid prediction event: 2 invalid rows" in result.output
    assert f"{bad}:1: invalid prediction event" in result.output


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("p.txt", "x", "unknown file type .txt"),
        ("p.csv", "event_id,prediction\n1,2\n", "missing column(s) model, timestamp"),
        ("absent.jsonl", None, "no such file"),
    ],
)
def test_backtest_names_the_unreadable_file_and_exits_2(
    tmp_path: Path, name: str, content: str | None, problem: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    result = runner.invoke(app, [
        "backtest", "--predictions", str(path), "--alerts-out", str(tmp_path / "a.jsonl"),
    ])  # fmt: skip
    assert result.exit_code == 2
    assert str(path) in result.output and problem in result.output


def test_backtest_rejects_an_invalid_config(tmp_path: Path, shifted: tuple[Path, Path]) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("defaults:\n  window:\n    type: hourly\n")
    result = runner.invoke(app, [
        "backtest", "--predictions", str(shifted[0]), "--config", str(config),
        "--alerts-out", str(tmp_path / "a.jsonl"),
    ])  # fmt: skip
    assert result.exit_code == 2
    assert str(config) in result.output and "defaults.window.type" in result.output


def test_report_names_a_bad_alert_line(tmp_path: Path) -> None:
    alerts, points = tmp_path / "a.jsonl", tmp_path / "p.jsonl"
    alerts.write_text('{"alert_id": "x"}\n')
    points.write_text("")
    result = runner.invoke(app, [
        "report", "--alerts", str(alerts), "--points", str(points), "--out", str(tmp_path / "r"),
    ])  # fmt: skip
    assert result.exit_code == 2 and f"{alerts}:1: invalid Alert message" in result.output


def test_generate_writes_a_readable_stream(tmp_path: Path) -> None:
    result = runner.invoke(app, [
        "generate", str(tmp_path), "--events", "50", "--seed", "3", "--format", "csv",
        "--shift-at", "25",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (tmp_path / "predictions.csv").read_text().count("\n") == 51
    bad = runner.invoke(app, ["generate", str(tmp_path), "--format", "xml"])
    assert bad.exit_code == 2 and "--format" in bad.output


class _RecordingMonitor:
    """Stands in for FleetMonitor: records its input, fires at the 1000th prediction."""

    def __init__(self, config: Any, *, clock: Callable[[], datetime], on_point: Any) -> None:
        self.config, self.clock = config, clock
        self.batches: list[tuple[list[PredictionEvent], list[LabelEvent]]] = []
        self.seen = 0

    def _alert(self, status: str, at: datetime) -> Alert:
        return Alert(
            alert_id=status, fingerprint="fp", status=status, severity="warning",  # type: ignore[arg-type]
            model="fraud-scorer", model_version="1", kind="traffic", feature=None, segment=None,
            detector="count", statistic=1.0, threshold=0.5,
            window=AlertWindow(start=at, end=at, count=1),
            reference=AlertReference(source="warmup", model_version="1", count=1),
            fired_at=at, emitted_at=self.clock(), summary=status,
        )  # fmt: skip

    def process(self, predictions: list[PredictionEvent], labels: list[LabelEvent]) -> list[Alert]:
        self.batches.append((predictions, labels))
        before, self.seen = self.seen, self.seen + len(predictions)
        return (
            [self._alert("firing", predictions[0].timestamp)] if before < 1000 <= self.seen else []
        )

    def finish(self) -> list[Alert]:
        predictions, labels = self.batches[-1]
        last = max([e.timestamp for e in predictions] + [e.timestamp for e in labels])
        return [self._alert("resolved", last)]


def test_run_backtest_feeds_the_monitor_in_event_time_order(shifted: tuple[Path, Path]) -> None:
    monitors: list[_RecordingMonitor] = []

    def factory(config: Any, **kwargs: Any) -> _RecordingMonitor:
        monitors.append(_RecordingMonitor(config, **kwargs))
        return monitors[-1]

    sink = io.BytesIO()
    wall = datetime(2030, 1, 1, tzinfo=UTC)
    result = run_backtest(shifted[0], shifted[1], "config", sink, chunk_rows=700,
                          clock=lambda: wall, monitor_factory=factory)  # fmt: skip
    (monitor,) = monitors
    assert monitor.config == "config" and (result.predictions, result.labels) == (9000, 9000)
    events: list[PredictionEvent | LabelEvent] = []
    for ps, ls in monitor.batches:
        events += sorted([*ps, *ls], key=lambda e: e.timestamp)
    assert len(events) == 18000 and len({(type(e), e.event_id) for e in events}) == 18000
    assert all(a.timestamp <= b.timestamp for a, b in itertools.pairwise(events))
    written = [Alert.model_validate_json(line) for line in sink.getvalue().splitlines()]
    assert written == result.alerts and [a.status for a in written] == ["firing", "resolved"]
    assert written[0].emitted_at == wall and result.out_of_order == 0


def test_a_promotion_switches_the_reference_at_its_event_time(
    tmp_path: Path, shifted: tuple[Path, Path]
) -> None:
    from detectors.profile_builder import profile_from_events
    from schemas.events import ModelEvent, to_json_bytes

    lines = shifted[0].read_text().splitlines()
    after = [PredictionEvent.model_validate_json(line) for line in lines[SHIFT_AT + 500 :]]
    profile = profile_from_events(after, model="fraud-scorer", profile_id="post-shift")
    promoted_at = after[1500].timestamp
    models = tmp_path / "models.jsonl"
    models.write_bytes(to_json_bytes(ModelEvent(
        event_id="m1", type="promoted", model="fraud-scorer", version="2", aliases=["champion"],
        run_id=None, trigger_alert_id=None, metrics={}, timestamp=promoted_at,
        reference=profile.model_dump(mode="json"),
    )) + b"\n")  # fmt: skip
    alerts_out, report = tmp_path / "a.jsonl", tmp_path / "r.html"
    result = runner.invoke(app, [
        "backtest", "--predictions", str(shifted[0]), "--labels", str(shifted[1]),
        "--models", str(models), "--alerts-out", str(alerts_out), "--report", str(report),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "1 reference switch(es) applied" in result.output
    amount = [a for a in _alerts(alerts_out) if a.feature == "amount"]
    assert [a.status for a in amount] == ["firing", "resolved"]
    assert "reference switched" in amount[1].summary
    assert 'class="marker promoted"' in report.read_text(encoding="utf-8")


def test_a_promotion_without_a_usable_profile_exits_2(
    tmp_path: Path, shifted: tuple[Path, Path]
) -> None:
    from schemas.events import ModelEvent, to_json_bytes

    models = tmp_path / "models.jsonl"
    models.write_bytes(to_json_bytes(ModelEvent(
        event_id="m1", type="promoted", model="fraud-scorer", version="2", aliases=[],
        run_id=None, trigger_alert_id=None, metrics={}, timestamp=datetime(2024, 1, 1, tzinfo=UTC),
        reference={"model": "fraud-scorer"},
    )) + b"\n")  # fmt: skip
    result = runner.invoke(app, [
        "backtest", "--predictions", str(shifted[0]), "--models", str(models),
        "--alerts-out", str(tmp_path / "a.jsonl"),
    ])  # fmt: skip
    assert result.exit_code == 2
    assert f"{models}: model event m1: its reference is not a usable ReferenceProfile" in (
        result.output
    )
