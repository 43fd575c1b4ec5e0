"""Hysteresis: a firing alert resolves only after windows clearly inside the threshold."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from statistics import NormalDist

import numpy as np
import pytest

from detectors.accumulate import PartitionAccumulator
from detectors.alerting import AlertBook, Reading
from detectors.evaluate import Evaluator
from detectors.monitor import FleetMonitor
from detectors.profile_builder import profile_from_events
from schemas.events import Alert, PredictionEvent
from schemas.monitor_config import AlertingConfig, MonitorConfig, parse_monitor_config
from streams.synthetic import DEFAULT_START, generate_stream

SHIFT_ENDS = 30_000
"""Events of the hovering shift (from event 2,600 on); then the stream is back to normal."""


def _reading(statistic: float, threshold: float, center: float = 0.0, trials: int = 0) -> Reading:
    """A reading of a share over ``trials`` values (0: of any statistic)."""
    breached = statistic > threshold if center <= threshold else statistic < threshold
    return Reading(
        "data_quality", "x", None, "test", statistic, threshold, None, breached, True, 500,
        "", center, trials,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("statistic", "threshold", "center", "clear"),
    [
        (0.019, 0.02, 0.0, False),  # within the threshold, not clearly
        (0.010, 0.02, 0.0, True),
        (0.021, 0.02, 0.0, False),  # breached
        (0.24, 0.30, 0.20, True),  # an error rate near its baseline of 0.20
        (0.26, 0.30, 0.20, False),
        (0.35, 0.40, 0.80, False),  # coverage breaches below: 0.35 < 0.40
        (0.50, 0.40, 0.80, False),  # above the threshold, still far from the baseline
        (0.70, 0.40, 0.80, True),
        (0.0, 0.0, 0.0, True),  # a threshold at the no-drift value: not breached is clear
    ],
)
def test_a_window_is_clear_only_past_the_fraction_towards_the_no_drift_value(
    statistic: float, threshold: float, center: float, clear: bool
) -> None:
    assert _reading(statistic, threshold, center).clear(0.5) is clear


Z75 = NormalDist().inv_cdf(0.75)  # 0.6745: the default clear_confidence


@pytest.mark.parametrize(
    ("statistic", "threshold", "center", "trials", "clear"),
    [
        (0.008, 0.02, 0.0, 500, False),  # 4 of 500 out of range: bound 1.12 %, past 1 %
        (0.006, 0.02, 0.0, 500, True),  # 3 of 500: bound 0.88 %
        (0.0, 0.02, 0.0, 5_000, True),
        (0.62, 0.40, 0.80, 100, False),  # coverage: its lower bound (0.587) is below 0.6
        (0.62, 0.40, 0.80, 2_000, True),  # the lower bound is 0.612
    ],
)
def test_a_share_is_clear_only_when_its_confidence_bound_is(
    statistic: float, threshold: float, center: float, trials: int, clear: bool
) -> None:
    reading = _reading(statistic, threshold, center, trials)
    assert reading.clear(0.5, z=Z75) is clear
    assert reading.clear(0.5) is ((statistic - center) / (threshold - center) <= 0.5)


@pytest.mark.parametrize(
    ("outside", "trials", "clear"),
    [
        (0, 20, True),  # 0 of 20: its bound (2.2 %) could never clear, the share decides
        (0, 45, True),  # its bound 1.0009 %: still the share
        (0, 46, True),  # from 46 values on the bound decides: 0.98 % is clear
        (1, 150, False),  # 0.67 % would be clear, its bound (1.29 %) is not: the bound decides
    ],
)
def test_a_share_over_too_few_values_for_its_bound_is_judged_by_itself(
    outside: int, trials: int, clear: bool
) -> None:
    # A feature present in few rows (or a small segment) has few values per window: by the
    # bound, a page of it could never resolve however clean its windows came back.
    reading = _reading(outside / trials, 0.02, 0.0, trials)
    assert reading.clear(0.5, z=Z75) is clear


def test_a_confidence_below_one_half_names_the_field_and_the_fix() -> None:
    with pytest.raises(ValueError, match=r"clear_confidence 0\.3 .*use 0 .* or a confidence"):
        parse_monitor_config({"defaults": {"alerting": {"clear_confidence": 0.3}}})


def _episodes(counts: list[int], z: float, n: int = 500, threshold: float = 0.02) -> list[str]:
    """The alerts of an out-of-range share over windows of ``n`` values with these counts
    outside the range (default lifecycle: 2 of 3 fire, 3 clear windows resolve)."""
    book = AlertBook(k=2, m=3, resolve_after=3)
    statuses: list[str] = []
    for outside in counts:
        share = outside / n
        reading = _reading(share, threshold, trials=n)
        status = book.observe("f", reading.breached, clear=reading.clear(0.5, z=z))
        if status is not None:
            statuses.append(status)
    return statuses


def test_a_share_hovering_below_its_threshold_pages_once_with_the_bound() -> None:
    rng = np.random.default_rng(11)
    hovering = rng.binomial(500, 0.015, size=400).tolist()  # 75 % of the 2 % threshold
    back = rng.binomial(500, 0.001, size=20).tolist()  # the reference's rate, 2 / (m + 1)
    point = _episodes(hovering, z=0.0)
    assert point.count("firing") >= 3  # the share alone clears 3 windows in a row now and then
    z = NormalDist().inv_cdf(AlertingConfig().clear_confidence)
    bound = _episodes(hovering + back, z=z)
    assert bound == ["firing", "resolved"]
    windows_to_resolve = _episodes(hovering + back[:5], z=z)
    assert windows_to_resolve == ["firing", "resolved"]  # within 5 windows of the recovery


def test_windows_that_are_not_clear_restart_the_run_that_resolves() -> None:
    book = AlertBook(k=1, m=1, resolve_after=2)
    assert book.observe("f", True) == "firing"
    assert book.observe("f", False, clear=True) is None
    assert book.observe("f", False, clear=False) is None  # within, not clearly: back to 0
    assert book.observe("f", False, clear=True) is None
    assert book.observe("f", False, clear=True) == "resolved"


def _hovering_then_back() -> list[PredictionEvent]:
    """``session_seconds`` moves 1.5 sd: its out-of-range share and the score's KS hover
    around their thresholds until event ``SHIFT_ENDS``; then the stream is back to normal."""
    predictions, _ = generate_stream(
        105, SHIFT_ENDS + 8_000, features=10, label_fraction=0.0, shift_at=2_600,
        shift_feature="session_seconds", shift_sigma=1.5, shift_until=SHIFT_ENDS,
    )  # fmt: skip
    return [PredictionEvent.model_validate(row) for row in predictions]


def _alerts(
    events: list[PredictionEvent], clear_fraction: float, clear_confidence: float | None = None
) -> list[Alert]:
    alerting: dict[str, float] = {"clear_fraction": clear_fraction}
    if clear_confidence is not None:
        alerting["clear_confidence"] = clear_confidence
    config = parse_monitor_config({"defaults": {"alerting": alerting}})
    monitor = FleetMonitor(config, clock=lambda: datetime.now(UTC))
    return monitor.process(events) + monitor.finish()


def _event_index(alert: Alert) -> float:
    return (alert.window.end - DEFAULT_START).total_seconds()  # one event per second


def test_a_shift_hovering_at_its_threshold_pages_once_and_resolves_when_it_ends() -> None:
    events = _hovering_then_back()
    flapping = _alerts(events, clear_fraction=1.0, clear_confidence=0)  # no hysteresis
    episodes = Counter(a.fingerprint for a in flapping if a.status == "firing")
    assert max(episodes.values()) >= 3
    assert sum(a.status == "resolved" and _event_index(a) < SHIFT_ENDS for a in flapping) >= 2

    steady = _alerts(events, clear_fraction=0.5)
    counts = Counter((a.fingerprint, a.status) for a in steady)
    firing = {key for (key, status) in counts if status == "firing"}
    assert len(firing) >= 2  # the feature and the score it moves
    assert all(counts[(key, "firing")] == 1 for key in firing)
    assert all(counts[(key, "resolved")] == 1 for key in firing)
    resolved_at = [_event_index(a) for a in steady if a.status == "resolved"]
    # Once the stream is back: 3 clear windows of 500 events, plus the one it ends in.
    assert all(SHIFT_ENDS <= at < SHIFT_ENDS + 4 * 500 for at in resolved_at)


def test_readings_carry_their_no_drift_value_and_the_values_a_share_counts() -> None:
    t0 = datetime(2024, 5, 1, tzinfo=UTC)
    rng = np.random.default_rng(3)
    # "d" appears once in the reference: a singleton behind the unseen-category mass.
    colours = ["a"] * 1000 + ["b"] * 600 + ["c"] * 399 + ["d"]

    def events(start: int, n: int) -> list[PredictionEvent]:
        return [
            PredictionEvent(
                event_id=str(start + i), model="m", timestamp=t0 + timedelta(seconds=start + i),
                features={"x": float(rng.normal()), "colour": colours[(start + i) % 2000]},
                prediction=float(rng.random()),
            )
            for i in range(n)
        ]  # fmt: skip

    config = MonitorConfig()
    profile = profile_from_events(events(0, 2000), model="m", config=config)
    accumulator = PartitionAccumulator(config)
    accumulator.add_predictions(events(2000, 500))
    [window] = accumulator.drain()
    readings = Evaluator("m", profile, config.for_model("m"), alpha=1e-4).evaluate(
        window, baseline=None, coverage=None
    )
    center = {(r.feature, r.detector): r.center for r in readings}
    assert center[("colour", "chi_square")] == 3.0  # degrees of freedom of 4 categories
    assert center[("colour", "unseen_rate")] == pytest.approx(2 / 2001)  # (1 + 1) / (m + 1)
    assert center[("x", "ks")] == 0.0
    assert center[("x", "null_rate")] == 0.0  # the reference had no nulls
    trials = {(r.feature, r.detector): r.trials for r in readings}
    assert trials[("x", "out_of_range")] == trials[("x", "null_rate")] == 500
    assert trials[("colour", "unseen_rate")] == 500
    assert trials[("x", "ks")] == trials[("colour", "chi_square")] == 0  # not shares
