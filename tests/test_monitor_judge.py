"""ModelJudge behaviours: reference switches, versions, windows, segments, data quality,
quality checks, statistic points."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from detectors.evaluate import StatisticPoint, count_decisions
from detectors.monitor import FleetMonitor
from detectors.profile_builder import profile_from_events
from schemas.events import Alert, LabelEvent, PredictionEvent
from schemas.monitor_config import MonitorConfig, parse_monitor_config

T0 = datetime(2024, 5, 1, tzinfo=UTC)
Row = dict[str, Any]


def small_config(**overrides: Any) -> MonitorConfig:
    """Warm-up 1000, windows of 250: fast, still calibrated."""
    defaults: dict[str, Any] = {
        "reference": {"warmup_events": 1000},
        "window": {"size": 250},
        "quality": {"min_labels": 100, "baseline_labels": 300},
    }
    for key, value in overrides.items():
        defaults[key] = {**defaults.get(key, {}), **value}
    return parse_monitor_config({"defaults": defaults})


def rows(n: int, seed: int, make: Callable[[int, np.random.Generator], Row]) -> list[Row]:
    rng = np.random.default_rng(seed)
    return [make(i, rng) for i in range(n)]


def base(i: int, rng: np.random.Generator) -> Row:
    x = float(rng.normal())
    return {
        "features": {"x": x, "y": float(rng.normal(5, 2)), "c": str(rng.choice(["a", "b", "c"]))},
        "prediction": float(1 / (1 + np.exp(-x))),
    }


def events(
    rows_: list[Row], *, start: int = 0, model: str = "m", version: str | None = None
) -> list[PredictionEvent]:
    return [
        PredictionEvent(
            event_id=f"{model}-{start + i}", model=model, model_version=version,
            timestamp=T0 + timedelta(seconds=start + i), **row,
        )
        for i, row in enumerate(rows_)
    ]  # fmt: skip


def labels_for(
    predictions: list[PredictionEvent], truth: Callable[[PredictionEvent], Any]
) -> list[LabelEvent]:
    return [
        LabelEvent(event_id=p.event_id, model=p.model, timestamp=p.timestamp, label=truth(p))
        for p in predictions
    ]


def shifted(i: int, rng: np.random.Generator) -> Row:
    row = base(i, rng)
    row["features"]["x"] += 1.0
    return row


def keys(alerts: list[Alert]) -> list[tuple[str, str, str | None, str, str | None]]:
    return [(a.status, a.kind, a.feature, a.detector, a.segment) for a in alerts]


def test_set_reference_resolves_firing_alerts_exactly_once_and_starts_afresh() -> None:
    config = small_config()
    monitor = FleetMonitor(config, clock=lambda: T0)
    drifting = events(rows(1000, 1, base)) + events(rows(1000, 2, shifted), start=1000)
    alerts = monitor.process(drifting)
    assert ("firing", "feature_drift", "x", "cusum", None) in keys(alerts)  # mean-shift CUSUM
    # The retrainer promotes a model whose profile matches the drifted data.
    profile = profile_from_events(
        events(rows(1000, 3, shifted), start=5000), model="m", config=config
    )
    monitor.set_reference("m", profile)
    judge = monitor.judges["m"]
    assert judge.windows == 0 and judge.reference is profile
    later = monitor.process(events(rows(1000, 4, shifted), start=2000))
    resolved = [a for a in later if a.status == "resolved"]
    assert {(a.kind, a.feature) for a in resolved} == {
        (a.kind, a.feature) for a in alerts if a.status == "firing"
    }
    assert all(profile.profile_id in a.summary for a in resolved)
    assert [a for a in later if a.status == "firing"] == []  # shifted data is the new normal
    assert monitor.finish() == []
    assert judge.windows == 4


def test_resolves_of_a_switch_wait_for_finish_when_no_delta_follows() -> None:
    monitor = FleetMonitor(small_config(), clock=lambda: T0)
    monitor.process(events(rows(1000, 1, base)) + events(rows(750, 2, shifted), start=1000))
    profile = profile_from_events(events(rows(1000, 3, shifted)), model="m")
    monitor.set_reference("m", profile)
    assert [a.status for a in monitor.finish()] == ["resolved"]


def test_a_new_version_takes_over_only_when_it_dominates() -> None:
    monitor = FleetMonitor(small_config(), clock=lambda: T0)
    monitor.process(events(rows(1500, 1, base), version="1"))
    judge = monitor.judges["m"]
    assert judge.version == "1"
    # 50/50 canary of version 2: it never outnumbers version 1, so 1 stays the reference.
    mixed = [
        e
        for pair in zip(
            events(rows(1500, 2, base), start=2000, version="1"),
            events(rows(1500, 3, shifted), start=2000, version="2"),
            strict=True,
        )
        for e in pair
    ]
    assert monitor.process(mixed) == []
    assert judge.version == "1"
    # Full rollout: version 2 warms up and becomes the reference; no alert about its shift.
    assert monitor.process(events(rows(2500, 4, shifted), start=6000, version="2")) == []
    assert judge.version == "2" and judge.reference is not None
    assert judge.reference.model_version == "2"


def test_profile_references_from_a_file_ignore_other_versions(tmp_path: Path) -> None:
    profile = profile_from_events(events(rows(1000, 1, base), version="7"), model="m")
    path = tmp_path / "ref.json"
    path.write_text(profile.model_dump_json(), encoding="utf-8")
    config = small_config(reference={"source": "profile", "path": str(path)})
    monitor = FleetMonitor(config, clock=lambda: T0)
    alerts = monitor.process(events(rows(1000, 2, shifted), version="8"))
    assert alerts == [] and monitor.judges["m"].ignored == 1000
    alerts = monitor.process(events(rows(1000, 3, shifted), start=2000, version="7"))
    assert ("firing", "feature_drift", "x", "cusum", None) in keys(alerts)
    assert {a.reference.source for a in alerts} == {"profile"}
    # Without a path the judge waits for a promoted model event.
    waiting = FleetMonitor(small_config(reference={"source": "profile"}), clock=lambda: T0)
    assert waiting.process(events(rows(600, 4, shifted))) == []
    assert waiting.judges["m"].reference is None


def test_time_windows_close_at_steps_of_the_epoch() -> None:
    config = small_config(window={"type": "time", "time_seconds": 400})
    monitor = FleetMonitor(config, clock=lambda: T0)
    points: list[StatisticPoint] = []
    monitor.on_point = points.append
    monitor.process(events(rows(3000, 1, base)))  # one event a second from T0
    assert T0.timestamp() % 400 == 0  # so the windows end at T0 + 400 k
    judge = monitor.judges["m"]
    # The warm-up ends at T0+1000: its window is the rest of its step, 1000..1199 (200 events
    # >= min_count), then 1200..1599, ..., 2400..2799; 2800.. is still open.
    assert judge.windows == 5
    ks = [p for p in points if p.detector == "ks" and p.feature == "x"]
    assert [(p.window_start - T0).total_seconds() for p in ks] == [1000, 1200, 1600, 2000, 2400]
    assert [(p.window_end - p.window_start).total_seconds() for p in ks] == [199] + [399] * 4
    assert [p.count for p in ks] == [200] + [400] * 4


def test_sliding_windows_judge_every_slide() -> None:
    config = small_config(window={"size": 500, "slide": 250})
    points: list[StatisticPoint] = []
    monitor = FleetMonitor(config, clock=lambda: T0, on_point=points.append)
    monitor.process(events(rows(3000, 1, base)))
    ks = [p for p in points if p.detector == "ks" and p.feature == "x"]
    assert [p.count for p in ks] == [500] * 7  # 2000 events after the warm-up, every 250
    assert ks[1].window_start < ks[0].window_end  # overlapping


def test_segments_are_judged_on_their_own() -> None:
    def make(i: int, rng: np.random.Generator, drift: bool) -> Row:
        row = base(i, rng)
        country = "DE" if i % 3 == 0 else "FR"
        row["segment"] = {"country": country}
        if drift and country == "DE":
            row["features"]["y"] += 3.0
        return row

    config = small_config(window={"size": 600}, segments={"keys": ["country"], "min_count": 150})
    monitor = FleetMonitor(config, clock=lambda: T0)
    alerts = monitor.process(
        events(rows(1200, 1, lambda i, r: make(i, r, False)))
        + events(rows(2400, 2, lambda i, r: make(i, r, True)), start=1200)
    )
    segment_alerts = [a for a in alerts if a.segment is not None]
    assert ("firing", "feature_drift", "y", "ks", "country=DE") in keys(segment_alerts)
    assert not [a for a in segment_alerts if a.segment == "country=FR"]
    judge = monitor.judges["m"]
    assert judge.reference is not None
    assert sorted(judge.reference.segments) == ["country=DE", "country=FR"]


def test_data_quality_problems_alert_as_data_quality() -> None:
    def broken(i: int, rng: np.random.Generator) -> Row:
        row = base(i, rng)
        features = row["features"]
        features["y"] = None if i % 4 == 0 else features["y"]  # null rate 0% -> 25%
        features["c"] = 3 if i % 5 == 0 else features["c"]  # numbers in a string feature
        del features["x"]  # missing feature
        features["new"] = 1.0  # new feature
        return row

    monitor = FleetMonitor(small_config(), clock=lambda: T0)
    alerts = monitor.process(events(rows(1000, 1, base)) + events(rows(750, 2, broken), start=1000))
    fired = {(a.feature, a.detector) for a in alerts if a.kind == "data_quality"}
    assert fired == {
        ("y", "null_rate"), ("c", "type_change"), ("x", "missing_feature"),
        ("new", "new_feature"),
    }  # fmt: skip
    assert not [a for a in alerts if a.kind == "feature_drift" and a.feature == "x"]


def test_quality_alerts_for_label_coverage_and_regression_error() -> None:
    def regression(i: int, rng: np.random.Generator) -> Row:
        x = float(rng.normal())
        return {"features": {"x": x}, "prediction": 2 * x}

    predictions = events(rows(3000, 1, regression))
    noise = np.random.default_rng(9).normal(size=3000)

    def truth(p: PredictionEvent) -> float:
        i = int(p.event_id.split("-")[1])
        scale = 0.5 if i < 2000 else 1.5  # the model gets worse at event 2000
        return float(p.prediction) + scale * float(noise[i])

    labels = [label for label in labels_for(predictions, truth)]
    kept = [lab for lab in labels if int(lab.event_id.split("-")[1]) < 2600]  # labels stop
    config = small_config()  # the task is inferred: numeric labels -> regression
    monitor = FleetMonitor(config, clock=lambda: T0)
    alerts = monitor.process(predictions, kept)
    fired = [(a.kind, a.detector) for a in alerts if a.status == "firing"]
    assert ("performance", "mae") in fired
    assert ("label_coverage", "label_coverage") in fired
    baseline = monitor.judges["m"].baseline.current
    assert baseline is not None and baseline.task == "regression"
    assert baseline.mae == pytest.approx(0.5 * np.sqrt(2 / np.pi), rel=0.1)


def _judged_with_label_gap(*, behind: bool) -> list[Alert]:
    """Labels stop at event 2600; the live worker marks its deltas ``labels_behind`` when it
    is reading the labels topic far behind the predictions (a catch-up, a fast replay)."""
    from detectors.accumulate import PartitionAccumulator
    from detectors.join import LabelJoiner
    from detectors.judge import ModelJudge
    from detectors.window import WindowDelta

    config = small_config()
    predictions = events(rows(3000, 1, base))
    labels = labels_for(predictions, lambda p: int(float(p.prediction) >= 0.5))
    joiner = LabelJoiner({}, {}, ttl_seconds=86_400)
    judge = ModelJudge("m", config, clock=lambda: T0)
    alerts: list[Alert] = []
    for start in range(0, 3000, 125):
        accumulator = PartitionAccumulator(config)
        chunk = predictions[start : start + 125]
        accumulator.add_predictions(chunk)
        accumulator.add_outcomes(joiner.add_predictions(chunk))
        accumulator.add_outcomes(joiner.add_labels(labels[start : min(start + 125, 2600)]))
        for delta in accumulator.drain():
            delta.labels_behind = behind and start >= 2600
            alerts += judge.apply(WindowDelta.from_state(delta.to_state()))
    return alerts


def test_windows_read_while_labels_lag_get_no_label_coverage_verdict() -> None:
    lost = [a for a in _judged_with_label_gap(behind=False) if a.kind == "label_coverage"]
    assert [a.status for a in lost] == ["firing"]  # the labels really stopped: page
    lagging = [a for a in _judged_with_label_gap(behind=True) if a.kind == "label_coverage"]
    assert lagging == []  # the reader was behind, not the label source: no page


def labels_wrong_at(
    predictions: list[PredictionEvent], wrong_rate: Callable[[int], float]
) -> list[LabelEvent]:
    """Labels that contradict the i-th prediction's class with probability wrong_rate(i)."""
    rng = np.random.default_rng(2)

    def truth(p: PredictionEvent) -> int:
        right = int(float(p.prediction) >= 0.5)
        wrong = rng.random() < wrong_rate(int(p.event_id.split("-")[1]))
        return 1 - right if wrong else right

    return labels_for(predictions, truth)


def page_hinkley_monitor() -> FleetMonitor:
    # One value per window: Page-Hinkley must not wait for its default 30 instances.
    params = {"threshold": 0.5, "min_instances": 3}
    config = small_config(detectors={"sequential": {"kind": "page_hinkley", "params": params}})
    return FleetMonitor(config, clock=lambda: T0)


def test_a_sequential_detector_can_add_performance_alerts() -> None:
    predictions = events(rows(4000, 1, base))
    labels = labels_wrong_at(predictions, lambda i: 0.1 if i < 2500 else 0.5)
    alerts = page_hinkley_monitor().process(predictions, labels)
    fired = {a.detector for a in alerts if a.kind == "performance" and a.status == "firing"}
    assert fired == {"error_rate", "page_hinkley"}


def test_a_sequential_page_holds_while_the_drift_lasts_and_resolves_once_it_ends() -> None:
    # Page-Hinkley flags the rise of the error rate, then adapts and stays quiet; its page
    # resolved after `resolve_after` quiet windows while the error rate was still 50 %.
    predictions = events(rows(14000, 1, base))
    labels = labels_wrong_at(predictions, lambda i: 0.5 if 2500 <= i < 8000 else 0.1)
    monitor = page_hinkley_monitor()

    def paged(alerts: list[Alert]) -> list[str]:
        return [a.status for a in alerts if a.detector == "page_hinkley"]

    assert paged(monitor.process(predictions[:8000], labels[:8000])) == ["firing"]
    after = monitor.process(predictions[8000:], labels[8000:])
    assert paged(after) == ["resolved"]
    resolved = next(a for a in after if a.detector == "page_hinkley")
    assert ": error_rate clear of its threshold for 3 windows" in resolved.summary


def test_points_describe_every_statistic_and_the_decisions_are_counted() -> None:
    points: list[StatisticPoint] = []
    config = small_config()
    monitor = FleetMonitor(config, clock=lambda: T0, on_point=points.append)
    monitor.process(events(rows(1250, 1, base)))
    judge = monitor.judges["m"]
    assert judge.reference is not None
    # x, y numeric (drift, null rate, range), c categorical (drift, null rate), prediction,
    # performance, label coverage
    assert count_decisions(judge.reference, config.for_model("m")) == 3 + 3 + 2 + 1 + 1 + 1
    assert judge.alpha == pytest.approx(1 / (10_000 * 11))
    by_detector = {(p.feature, p.detector) for p in points}
    assert {("x", "ks"), ("x", "psi"), ("x", "wasserstein"), ("x", "jensen_shannon"),
            ("c", "chi_square"), ("c", "unseen_rate"), (None, "ks"),
            ("y", "null_rate"), ("y", "out_of_range")} <= by_detector  # fmt: skip
    assert all(p.model == "m" and p.count > 0 and p.window_end > p.window_start for p in points)
    assert not [p for p in points if p.breached and p.detector in ("ks", "chi_square")]


def test_class_scores_drift_as_prediction_drift() -> None:
    def scored(shift: float) -> Callable[[int, np.random.Generator], Row]:
        def make(i: int, rng: np.random.Generator) -> Row:
            row = base(i, rng)
            p = float(1 / (1 + np.exp(-(row["features"]["x"] + shift))))
            row["prediction"] = "yes" if p >= 0.5 else "no"
            row["scores"] = {"yes": p, "no": 1 - p}
            return row

        return make

    monitor = FleetMonitor(small_config(), clock=lambda: T0)
    alerts = monitor.process(
        events(rows(1000, 1, scored(0.0))) + events(rows(750, 2, scored(1.0)), start=1000)
    )
    fired = {(a.feature, a.detector) for a in alerts if a.kind == "prediction_drift"}
    # "no" is 1 - "yes": one complementary score is tested, not both (one alert, not two)
    assert fired == {("score:yes", "ks"), (None, "chi_square")}
    assert not [a for a in alerts if a.kind == "feature_drift"]


def test_firing_identities_are_the_alerts_still_firing_and_survive_the_state() -> None:
    from detectors.judge import ModelJudge

    def make(i: int, rng: np.random.Generator, drift: bool) -> Row:
        row = shifted(i, rng) if drift else base(i, rng)
        row["segment"] = {"country": "DE" if i % 3 == 0 else "FR"}
        return row

    config = small_config(window={"size": 600}, segments={"keys": ["country"], "min_count": 150})
    monitor = FleetMonitor(config, clock=lambda: T0)
    alerts = monitor.process(
        events(rows(1200, 1, lambda i, r: make(i, r, False)))
        + events(rows(2400, 2, lambda i, r: make(i, r, True)), start=1200)
    )
    # Independent bookkeeping: the last status of each fingerprint, from the alerts themselves.
    last_status = {a.fingerprint: a for a in alerts}
    firing = [a for a in last_status.values() if a.status == "firing"]
    assert {a.segment for a in firing} >= {None, "country=DE"}  # segments share an identity
    expected = sorted(
        {(a.kind, a.feature, a.detector) for a in firing},
        key=lambda what: (what[0], what[1] or "", what[2]),
    )
    judge = monitor.judges["m"]
    assert ("feature_drift", "x", "ks") in expected
    assert judge.firing_identities() == expected
    restored = ModelJudge.from_state(judge.to_state(), config, clock=lambda: T0)
    assert restored.firing_identities() == expected  # what a worker taking the model over sees
    profile = profile_from_events(events(rows(1000, 3, shifted), start=9000), model="m")
    restored.set_reference(profile)
    assert restored.firing_identities() == []
    assert {(a.kind, a.feature, a.detector) for a in restored.flush()} == set(expected)


def test_judges_reporting_only_deciding_statistics_alert_the_same() -> None:
    """The live worker's judges skip the report-only statistics (and their simulated
    thresholds): same alerts, and every point they hand out is a deciding one."""
    stream = events(rows(1500, 3, base) + rows(1500, 4, shifted))
    outcomes = {}
    for report_all in (True, False):
        points: list[StatisticPoint] = []
        monitor = FleetMonitor(small_config(), clock=lambda: T0, on_point=points.append)
        alerts = monitor.process(stream[:10])
        monitor.judges["m"].report_all_statistics = report_all
        alerts += monitor.process(stream[10:])
        outcomes[report_all] = (keys(alerts), {p.detector for p in points})
    assert outcomes[True][0] == outcomes[False][0]
    assert ("firing", "feature_drift", "x", "cusum", None) in outcomes[False][0]
    assert {"psi", "wasserstein", "jensen_shannon"} <= outcomes[True][1]
    assert not {"psi", "wasserstein", "jensen_shannon"} & outcomes[False][1]
    assert {"ks", "chi_square"} <= outcomes[False][1]


def _labels_after_traffic(
    n: int = 2000, *, labelled: int = 1500
) -> tuple[FleetMonitor, list[Alert]]:
    """``n`` predictions, the first ``labelled`` labelled in time with 10 % errors; the labels
    of the rest (50 % errors) arrive after the last prediction, in batches like a worker's."""
    predictions = events(rows(n, 1, base))
    rng = np.random.default_rng(2)

    def truth(p: PredictionEvent) -> int:
        right = int(float(p.prediction) >= 0.5)
        wrong = rng.random() < (0.1 if int(p.event_id.split("-")[1]) < 1500 else 0.5)
        return 1 - right if wrong else right

    labels = labels_for(predictions, truth)
    monitor = FleetMonitor(small_config(), clock=lambda: T0)
    alerts = monitor.process(predictions, labels[:labelled])
    late = [label.model_copy(update={"timestamp": T0 + timedelta(hours=1)}) for label in labels]
    for start in range(labelled, len(labels), 100):
        alerts += monitor.process([], late[start : start + 100])
    return monitor, alerts


def test_labels_that_arrive_after_the_traffic_stopped_are_judged() -> None:
    # Before: a count window closed on predictions only, so these 500 labels sat in the open
    # window until the model's next prediction, and the error rate was never judged.
    monitor, alerts = _labels_after_traffic()
    fired = [a for a in alerts if a.kind == "performance" and a.status == "firing"]
    assert [a.detector for a in fired] == ["error_rate"]
    current = monitor.judges["m"].current
    assert current is None or current.outcomes - current.count < 250
    # Windows of outcomes alone: no drift, data quality or label coverage verdicts.
    assert {a.kind for a in alerts} == {"performance"}


def test_a_window_of_outcomes_alone_leaves_its_few_predictions_for_the_next_window() -> None:
    # Warm-up 1000, 4 windows of 250, 50 predictions left (fewer than window.min_count); 550
    # late labels: 300 close a window (250 beyond its 50 predictions), 250 wait for more.
    monitor, _ = _labels_after_traffic(2050)
    judge = monitor.judges["m"]
    assert judge.windows == 4 + 1
    assert judge.current is not None and judge.current.count == 50  # kept for drift tests
    assert judge.current.outcomes == 250
    monitor.process(events(rows(200, 3, base), start=2050))
    assert judge.windows == 6 and judge.current is None  # 50 + 200 predictions: one window
