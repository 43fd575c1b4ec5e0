"""The mean-shift CUSUM: recursion, calibration, detection delay, lifecycle, state."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from detectors.accumulate import PartitionAccumulator
from detectors.alerting import fingerprint
from detectors.cusum import (
    MeanShiftCusum,
    Standardiser,
    cusum_threshold,
    siegmund_arl,
    tilting_root,
)
from detectors.judge import ModelJudge
from detectors.monitor import FleetMonitor
from detectors.window import WindowDelta
from schemas.events import Alert, PredictionEvent
from schemas.monitor_config import MonitorConfig, MonitorConfigError, parse_monitor_config

T0 = datetime(2024, 5, 1, tzinfo=UTC)
CLOCK = datetime(2030, 1, 1, tzinfo=UTC)


def per_event_cusum(z: np.ndarray, k: float, h: float) -> tuple[list[int], list[float]]:
    """The textbook two-sided CUSUM, one value at a time: alarm indices and statistics."""
    upper = lower = 0.0
    at, values = [], []
    for i, value in enumerate(z.tolist()):
        upper = max(0.0, upper + (value - k))
        lower = max(0.0, lower + (-value - k))
        if upper > h or lower > h:
            at.append(i)
            values.append(max(upper, lower))
            upper = lower = 0.0
    return at, values


def first_alarms(
    rng: np.random.Generator, runs: int, k: float, h: float, draw: Any, limit: int
) -> np.ndarray:
    """Run lengths of ``runs`` independent one-sided CUSUMs (censored at ``limit``)."""
    s = np.zeros(runs)
    length = np.full(runs, limit)
    alive = np.ones(runs, dtype=bool)
    for t in range(limit):
        s = np.maximum(0.0, s + draw(rng, runs) - k)
        hit = alive & (s > h)
        length[hit] = t + 1
        alive &= ~hit
        if not alive.any():
            break
    return length


# -- the recursion ------------------------------------------------------------------------------


def test_batches_of_one_are_the_per_event_recursion_exactly() -> None:
    rng = np.random.default_rng(1)
    z = np.concatenate([rng.normal(0, 1, 3000), rng.normal(0.8, 1, 500), rng.normal(-1, 1, 500)])
    expected_at, expected_values = per_event_cusum(z, 0.25, 8.0)
    cusum = MeanShiftCusum(k=0.25, h=8.0)
    at, values = [], []
    for i, value in enumerate(z.tolist()):
        if cusum.update(1, value):
            at.append(i)
            values.append(cusum.alarm_statistic)
    assert len(expected_at) >= 2
    assert at == expected_at and values == expected_values


def test_batched_path_never_exceeds_the_per_event_path() -> None:
    rng = np.random.default_rng(2)
    z = rng.normal(0.1, 1, 5000)
    sizes = rng.integers(1, 80, 200)
    ends = np.minimum(np.cumsum(sizes), z.size)
    batched = MeanShiftCusum(k=0.25, h=math.inf)
    upper = lower = 0.0
    start = 0
    for end in ends.tolist():
        if end <= start:
            continue
        for value in z[start:end].tolist():
            upper = max(0.0, upper + value - 0.25)
            lower = max(0.0, lower - value - 0.25)
        batched.update(end - start, float(z[start:end].sum()))
        assert batched.upper <= upper + 1e-9 and batched.lower <= lower + 1e-9
        start = end


def test_state_round_trip_continues_identically() -> None:
    rng = np.random.default_rng(3)
    one = MeanShiftCusum(k=0.25, h=6.0)
    for _ in range(30):
        one.update(10, float(rng.normal(1.0, 3.0)))
    two = MeanShiftCusum.from_state(json.loads(json.dumps(one.to_state())))
    for _ in range(60):
        n, total = int(rng.integers(1, 20)), float(rng.normal(2.0, 4.0))
        assert one.update(n, total) == two.update(n, total)
    assert one.to_state() == two.to_state() and one.alarms > 0


# -- calibration --------------------------------------------------------------------------------


def test_siegmund_threshold_gives_the_simulated_run_length() -> None:
    k, target = 0.25, 2000.0
    h = cusum_threshold(target, k=k)
    assert h is not None and math.isclose(siegmund_arl(k, h), target, rel_tol=1e-9)
    lengths = first_alarms(
        np.random.default_rng(4), 600, k, h, lambda rng, n: rng.standard_normal(n), 40_000
    )
    simulated = float(lengths.mean())
    assert target / 2 < simulated < target * 2, simulated
    # Out of control (a 0.5 sd shift): Siegmund's delay, checked the same way.
    delay = first_alarms(
        np.random.default_rng(5), 600, k, h, lambda rng, n: rng.normal(0.5, 1, n), 5_000
    ).mean()
    assert 0.7 < delay / siegmund_arl(k, h, 0.5) < 1.4, delay


def test_skewed_features_get_their_own_threshold_and_keep_the_run_length() -> None:
    """Exponential values (a right tail): the normal h alarms far too often on the upper
    side; the tilting root's h keeps the target."""
    rng = np.random.default_rng(6)
    reference = rng.exponential(1.0, 5000)
    standardiser = Standardiser.of(reference, 1.0, 1.0)
    assert standardiser is not None
    values = standardiser.values(reference)
    k, target = 0.25, 2000.0
    theta = tilting_root(values, k)
    assert 0.2 < theta < 0.45  # 0.5 for normal values
    h = cusum_threshold(target, k=k, theta=theta)
    normal_h = cusum_threshold(target, k=k)
    assert h is not None and normal_h is not None and h > normal_h + 2

    def draw(rng: np.random.Generator, n: int) -> np.ndarray:
        return standardiser.values(rng.exponential(1.0, n))

    tilted = first_alarms(np.random.default_rng(7), 600, k, h, draw, 40_000).mean()
    naive = first_alarms(np.random.default_rng(7), 600, k, normal_h, draw, 40_000).mean()
    assert target / 2 < tilted < target * 2, tilted
    assert naive < target / 2, naive
    assert tilting_root(np.full(10, 0.1), k) == math.inf  # nothing can push it up


def test_reference_estimation_error_raises_h_and_small_references_get_none() -> None:
    plain = cusum_threshold(6e7, k=0.25)
    big = cusum_threshold(6e7, k=0.25, reference_size=2000)
    assert plain is not None and big is not None and plain < big < plain + 4
    assert cusum_threshold(6e7, k=0.25, reference_size=300) is None
    with pytest.raises(ValueError, match="arl"):
        cusum_threshold(0.5, k=0.25)


def test_batch_sums_match_numpy_with_and_without_clipping() -> None:
    rng = np.random.default_rng(8)
    reference = rng.lognormal(0, 1, 4000)
    standardiser = Standardiser.of(reference, float(reference.mean()), float(reference.std()))
    assert standardiser is not None
    u = standardiser.values(reference)
    assert abs(float(u.mean())) < 1e-12 and abs(float(u.std()) - 1) < 1e-12
    for batch in (rng.lognormal(0, 0.2, 50), rng.lognormal(0, 1, 50), np.array([1e12, 1.0])):
        got = standardiser.batch_sum(
            batch.size, float(batch.mean()), float(batch.min()), float(batch.max()), batch
        )
        assert math.isclose(got, float(standardiser.values(batch).sum()), rel_tol=1e-9)
    # one absurd value moves the CUSUM by at most the clip
    assert standardiser.batch_sum(1, 1e12, 1e12, 1e12, np.array([1e12])) < 5.0
    assert Standardiser.of(np.ones(100), 1.0, 0.0) is None
    assert Standardiser.of(np.ones(100), None, None) is None


# -- the monitor --------------------------------------------------------------------------------


def stream(
    n: int, seed: int, *, feature: str = "x", shift_sd: float = 0.0, at: int = 0
) -> list[PredictionEvent]:
    """Three numeric features (normal, lognormal, exponential) and a category, one event per
    second; ``feature`` moves by ``shift_sd`` of its standard deviation from event ``at``."""
    rng = np.random.default_rng(seed)
    columns = {
        "x": rng.normal(10, 2, n),
        "spend": rng.lognormal(3, 0.7, n),
        "wait": rng.exponential(30, n),
    }
    sd = {"x": 2.0, "spend": float(np.exp(3.245) * math.sqrt(math.expm1(0.49))), "wait": 30.0}
    columns[feature][at:] += shift_sd * sd[feature] if shift_sd else 0.0
    plan = rng.choice(["a", "b", "c"], n, p=[0.5, 0.3, 0.2]).tolist()
    lists = {name: values.tolist() for name, values in columns.items()}
    return [
        PredictionEvent.model_construct(
            event_id=f"e{i}", model="m", model_version=None, timestamp=T0 + timedelta(seconds=i),
            features={"x": lists["x"][i], "spend": lists["spend"][i], "wait": lists["wait"][i],
                      "plan": plan[i]},
            prediction=0.5, scores=None, segment=None, schema_version=1,
        )
        for i in range(n)
    ]  # fmt: skip


def fleet(events: list[PredictionEvent], config: MonitorConfig | None = None) -> list[Alert]:
    monitor = FleetMonitor(config or MonitorConfig(), clock=lambda: CLOCK)
    return monitor.process(events) + monitor.finish()


def index(alert: Alert) -> int:
    return int((alert.fired_at - T0).total_seconds())


@pytest.mark.parametrize(
    ("feature", "shift_sd", "within"),
    [("x", 1.0, 200), ("x", -1.0, 200), ("x", 0.5, 300), ("spend", 0.5, 300), ("wait", 1.0, 200)],
)
def test_fleet_monitor_pages_a_mean_shift_within_a_few_hundred_events(
    feature: str, shift_sd: float, within: int
) -> None:
    change = 5_230  # mid-window: warm-up 2000, windows of 500
    for seed in range(3):
        alerts = fleet(stream(9_000, seed, feature=feature, shift_sd=shift_sd, at=change))
        assert alerts, (feature, shift_sd, seed)
        first = alerts[0]
        assert (first.kind, first.feature, first.detector) == ("feature_drift", feature, "cusum")
        assert change <= index(first) < change + within, (seed, index(first) - change)
        assert ("up" if shift_sd > 0 else "down") in first.summary
        assert first.statistic > first.threshold > 10
        assert first.window.end == first.fired_at and first.window.count <= 500
        # one problem, one page: the window tests of the feature open no episode of their own
        drift = [a.detector for a in alerts if a.feature == feature and a.kind == "feature_drift"]
        assert drift == ["cusum"]
        assert not [a for a in alerts if a.feature not in (feature, None)]


def test_stationary_heavy_tailed_stream_raises_nothing() -> None:
    for seed in range(2):
        events = stream(40_000, 100 + seed)
        assert fleet(events) == []


def test_an_episode_fires_once_resolves_once_and_disabling_turns_it_off() -> None:
    events = stream(14_000, 9, shift_sd=1.0, at=5_230)
    back = stream(14_000, 9)
    events[8_000:] = back[8_000:]  # the shift ends at 8000
    alerts = fleet(events)
    mine = [a for a in alerts if a.feature == "x"]
    assert [(a.status, a.detector) for a in mine] == [("firing", "cusum"), ("resolved", "cusum")]
    assert mine[0].fingerprint == mine[1].fingerprint == fingerprint("m", "feature_drift", "x",
                                                                     None, "cusum")  # fmt: skip
    # resolved after 3 judged windows without an alarm: windows end at 8499, 8999, 9499
    assert 8_000 <= index(mine[1]) <= 9_499 and mine[1].window.count == 500
    assert mine[1].statistic <= mine[1].threshold
    assert "last window's mean" in mine[1].summary and "within 0.125" in mine[1].summary
    off = parse_monitor_config({"defaults": {"detectors": {"mean_shift": {"enabled": False}}}})
    assert [a.detector for a in fleet(events, off) if a.feature == "x"] == ["ks", "ks"]


def test_a_marginal_shift_that_alarms_now_and_then_pages_once() -> None:
    """0.2 sd, under the 0.5 sd the CUSUM is tuned for: alarms come seldom, windows apart.
    Without the hysteresis (clear_fraction 1: a window mean up to k = 0.25 sd is clear) the
    page resolves between two alarms and fires again; with it, one page for the shift."""
    events = stream(40_000, 2, shift_sd=0.2, at=5_230)
    lenient = parse_monitor_config({"defaults": {"alerting": {"clear_fraction": 1.0}}})
    flapping = [a.status for a in fleet(events, lenient) if a.detector == "cusum"]
    assert flapping.count("firing") >= 3
    steady = [a for a in fleet(events) if a.feature == "x"]
    assert [(a.detector, a.status) for a in steady] == [("cusum", "firing")]


def test_a_feature_already_paged_by_its_window_test_gets_no_cusum_page() -> None:
    config = MonitorConfig()
    judge = ModelJudge("m", config, clock=lambda: CLOCK)
    events = stream(6_000, 11, shift_sd=1.0, at=3_000)
    accumulator = PartitionAccumulator(config)
    accumulator.add_predictions(events[:2_000])
    for delta in accumulator.drain():
        judge.apply(delta)
    ks = fingerprint("m", "feature_drift", "x", None, "ks")
    last = {"kind": "feature_drift", "feature": "x", "segment": None, "detector": "ks"}
    judge.book.observe(ks, True, last, immediate=True)  # as if KS had fired
    alerts: list[Alert] = []
    for start in range(2_000, 6_000, 50):
        accumulator.add_predictions(events[start : start + 50])
        for delta in accumulator.drain():
            alerts += judge.apply(delta)
    assert judge.mean_shift is not None and judge.mean_shift.features["x"].cusum.alarms > 0
    assert not [a for a in alerts if a.detector == "cusum"]


def run_judge(events: list[PredictionEvent], every: int, *, round_trip: bool) -> list[Alert]:
    """The live shape: deltas of ``every`` events; optionally the judge through JSON each time."""
    config = MonitorConfig()
    judge = ModelJudge("m", config, clock=lambda: CLOCK)
    alerts: list[Alert] = []
    for start in range(0, len(events), every):
        accumulator = PartitionAccumulator(config)
        accumulator.add_predictions(events[start : start + every])
        for delta in accumulator.drain():
            if round_trip:
                delta = WindowDelta.from_state(json.loads(json.dumps(delta.to_state())))
            alerts += judge.apply(delta)
        if round_trip:
            state = json.loads(json.dumps(judge.to_state()))
            judge = ModelJudge.from_state(state, config, clock=lambda: CLOCK)
    return alerts


def test_judge_state_mid_stream_continues_with_identical_alerts() -> None:
    events = stream(12_000, 12, shift_sd=0.7, at=4_100)
    events[7_000:] = stream(12_000, 12)[7_000:]
    plain = run_judge(events, 100, round_trip=False)
    restored = run_judge(events, 100, round_trip=True)
    assert [(a.detector, a.status) for a in plain if a.feature == "x"] == [
        ("cusum", "firing"), ("cusum", "resolved"),
    ]  # fmt: skip
    assert [a.model_dump() for a in restored] == [a.model_dump() for a in plain]


def test_fleet_cuts_every_step_without_moving_windows() -> None:
    events = stream(4_000, 13)
    seen: dict[int, list[tuple[int, int]]] = {}
    for step in (50, 7):
        config = parse_monitor_config({"defaults": {"detectors": {"mean_shift": {"step": step}}}})
        monitor = FleetMonitor(config, clock=lambda: CLOCK)
        judge = monitor.judge("m")
        sizes: list[int] = []
        windows: list[tuple[int, int]] = []
        original = judge._fill

        def fill(delta: WindowDelta, sizes: list[int] = sizes, original: Any = original) -> Any:
            sizes.append(delta.count)
            return original(delta)

        judge._fill = fill  # type: ignore[method-assign]
        judge.on_point = lambda p, w=windows: w.append((p.count, index_of(p.window_end)))
        monitor.process(events)
        assert max(sizes) == step and sum(sizes) == len(events) - 2_000
        seen[step] = sorted(set(windows))
    assert seen[50] == seen[7] and seen[50][0] == (500, 2_499)


def index_of(when: datetime) -> int:
    return int((when - T0).total_seconds())


def test_config_errors_name_the_field() -> None:
    with pytest.raises(MonitorConfigError, match=r"defaults\.detectors\.mean_shift\.step"):
        parse_monitor_config({"defaults": {"detectors": {"mean_shift": {"step": 0}}}})
    with pytest.raises(MonitorConfigError, match=r"mean_shift\.shift_sd"):
        parse_monitor_config({"defaults": {"detectors": {"mean_shift": {"shift_sd": -1}}}})
    assert MonitorConfig().for_model("m").detectors.mean_shift.step == 50


def test_the_cusums_statistics_read_out_for_gauges_match_the_page() -> None:
    from detectors.judge_cusum import statistics
    from streams.agents_monitor import MonitorKit

    monitor = FleetMonitor(MonitorConfig(), clock=lambda: CLOCK)
    alerts = monitor.process(stream(6_000, 0, shift_sd=1.5, at=5_230))
    page = next(a for a in alerts if a.detector == "cusum")
    judge = monitor.judges["m"]
    assert judge.mean_shift is not None
    read = {name: (value, h) for name, value, h in statistics(judge.mean_shift)}
    assert set(read) == {"x", "spend", "wait"}  # the numeric features
    assert read["x"][1] == page.threshold < page.statistic  # h, and the alarm passed it
    assert read["x"][0] >= 0  # the CUSUM starts again after an alarm
    assert read["spend"][0] < read["spend"][1]  # untouched
    kit_read = MonitorKit.sequential_statistics(judge)
    assert [(f, d) for f, d, _, _ in kit_read] == [(f, "cusum") for f in read]
    fresh = FleetMonitor(MonitorConfig(), clock=lambda: CLOCK)
    fresh.process(stream(100, 0))  # still warming up: no reference, no CUSUM
    assert MonitorKit.sequential_statistics(fresh.judges["m"]) == []
