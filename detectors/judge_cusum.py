"""The judge's mean-shift detector: one CUSUM per numeric feature of all traffic.

Every delta of the judged version updates the CUSUMs (``on_delta``) before it joins its
window, so an alarm pages at once (kind ``feature_drift``, detector ``cusum``) instead of
after k of m windows. The page resolves after ``alerting.resolve_after`` judged windows without
another alarm of that feature (``on_window``). One problem, one page: a feature whose window
test (KS by default) is firing gets no CUSUM page, and while its CUSUM page fires its window
tests open no episode (``suppresses``).

Budget: each CUSUM side gets the in-control ARL ``target_run_length`` x events per judged
window x (2 x features), the window tests' budget split Bonferroni-style over the CUSUM tests;
see ``detectors.cusum`` for how h follows from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from detectors.alerting import Reading, fingerprint
from detectors.cusum import MeanShiftCusum, Standardiser, cusum_threshold, tilting_root
from detectors.evaluate import StatisticPoint
from detectors.window import ALL_TRAFFIC, WindowDelta
from schemas.events import Alert
from schemas.monitor_config import ModelMonitorConfig
from schemas.profile import ReferenceProfile

if TYPE_CHECKING:
    from detectors.judge import ModelJudge

__all__ = [
    "DETECTOR",
    "FeatureCusum",
    "MeanShiftMonitor",
    "on_delta",
    "on_window",
    "statistics",
    "suppresses",
]

DETECTOR = "cusum"


@dataclass
class FeatureCusum:
    standardiser: Standardiser
    cusum: MeanShiftCusum


class MeanShiftMonitor:
    """The CUSUMs of one model's reference, and which features alarmed in the open window."""

    def __init__(self, features: dict[str, FeatureCusum], step: int) -> None:
        self.features = features
        self.step = step
        self.seen = 0
        """Events folded since the reference was set (offline chunks are cut every ``step``)."""
        self.alarmed: set[str] = set()
        """Features that alarmed since the last judged window."""
        self.peaks: dict[str, float] = {}
        """Highest CUSUM per feature since the last judged window (the value that alarmed,
        before the restart): what a report charts against h."""
        self.sums: dict[str, tuple[int, float]] = {}
        """(values, sum of their standardised values) per feature since the last judged
        window: whether a firing page's shift is still there (`on_window`)."""

    @classmethod
    def build(
        cls, profile: ReferenceProfile, settings: ModelMonitorConfig
    ) -> MeanShiftMonitor | None:
        """The CUSUMs of every numeric reference feature that can have one; None when off."""
        config = settings.detectors.mean_shift
        if not config.enabled:
            return None
        k = config.shift_sd / 2.0
        window = settings.window
        per_window = int(window.slide or window.size) if window.type == "count" else window.size
        standardisers = {}
        for name, feature in sorted(profile.features.items()):
            if feature.kind != "numeric" or feature.count < settings.detectors.min_count:
                continue
            standardiser = Standardiser.of(feature.sample, feature.mean, feature.std)
            if standardiser is not None and len(feature.sample) >= settings.detectors.min_count:
                standardisers[name] = (standardiser, len(feature.sample))
        arl = settings.alerting.target_run_length * per_window * 2 * max(len(standardisers), 1)
        features = {}
        for name, (standardiser, size) in standardisers.items():
            values = standardiser.values(profile.features[name].sample)
            sides = [
                cusum_threshold(arl, k=k, theta=tilting_root(side, k), reference_size=size)
                for side in (values, -values)
            ]
            if None in sides:
                continue  # too few reference values for this budget: the window tests remain
            h = max(side for side in sides if side is not None)
            features[name] = FeatureCusum(standardiser, MeanShiftCusum(k, h))
        return cls(features, config.step) if features else None

    def events_until_step(self) -> int:
        return self.step - self.seen % self.step

    def update(self, delta: WindowDelta) -> list[tuple[str, int]]:
        """Fold ``delta``; the (feature, direction) of each alarm it raised."""
        self.seen += delta.count
        part = delta.slices.get(ALL_TRAFFIC)
        if part is None:
            return []
        alarms = []
        for name, entry in self.features.items():
            sketch = part.numeric.get(name)
            if sketch is None or not sketch.count:
                continue
            mean, low, high = sketch.mean, sketch.min, sketch.max
            assert mean is not None and low is not None and high is not None
            total = entry.standardiser.batch_sum(sketch.count, mean, low, high, sketch.reservoir)
            count, summed = self.sums.get(name, (0, 0.0))
            self.sums[name] = (count + sketch.count, summed + total)
            direction = entry.cusum.update(sketch.count, total)
            value = entry.cusum.alarm_statistic if direction else entry.cusum.statistic
            self.peaks[name] = max(value, self.peaks.get(name, 0.0))
            if direction:
                alarms.append((name, direction))
                self.alarmed.add(name)
        return alarms

    def to_state(self) -> dict[str, Any]:
        return {
            "seen": self.seen,
            "alarmed": sorted(self.alarmed),
            "peaks": dict(sorted(self.peaks.items())),
            "sums": {name: list(value) for name, value in sorted(self.sums.items())},
            "cusums": {name: entry.cusum.to_state() for name, entry in self.features.items()},
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Continue from ``to_state`` output (the standardisers come from the same reference)."""
        self.seen = int(state["seen"])
        self.alarmed = set(state["alarmed"])
        self.peaks = {name: float(v) for name, v in state.get("peaks", {}).items()}  # 29th+
        self.sums = {  # 36th session on
            name: (int(count), float(total))
            for name, (count, total) in state.get("sums", {}).items()
        }
        for name, cusum in state["cusums"].items():
            if name in self.features:
                self.features[name].cusum = MeanShiftCusum.from_state(cusum)


def _key(judge: ModelJudge, feature: str) -> str:
    return fingerprint(judge.model, "feature_drift", feature, None, DETECTOR)


def _window_test_firing(judge: ModelJudge, feature: str) -> bool:
    for key in judge.book.firing():
        last = judge.book.tracks[key].last
        if (last.get("kind"), last.get("feature"), last.get("segment")) == (
            "feature_drift", feature, None,
        ) and last.get("detector") != DETECTOR:  # fmt: skip
            return True
    return False


def statistics(monitor: MeanShiftMonitor) -> list[tuple[str, float, float]]:
    """``(feature, statistic, h)`` of every feature's CUSUM now, for gauges: the CUSUMs page
    between windows, so the window readings (``ModelJudge.on_point``) do not carry them."""
    return [
        (name, entry.cusum.statistic, entry.cusum.h) for name, entry in monitor.features.items()
    ]


def on_delta(judge: ModelJudge, monitor: MeanShiftMonitor, delta: WindowDelta) -> list[Alert]:
    """Update the CUSUMs with a delta of the judged version (before it joins the window)."""
    alerts: list[Alert] = []
    for name, direction in monitor.update(delta):
        key = _key(judge, name)
        track = judge.book.tracks.get(key)
        if (track is not None and track.firing) or _window_test_firing(judge, name):
            continue  # already paged (by this CUSUM or a window test of the feature)
        cusum = monitor.features[name].cusum
        current = judge.current
        start_us, end_us, count = delta.start_us, delta.end_us, delta.count
        if current is not None and current.start_us is not None:
            start_us = current.start_us if start_us is None else min(start_us, current.start_us)
            count += current.count
        shift = cusum.alarm_shift
        summary = (
            f"feature {name!r} of model {judge.model!r}: its mean shifted "
            f"{'up' if direction > 0 else 'down'} by about {abs(shift):.2g} reference standard "
            f"deviations (cusum {cusum.alarm_statistic:.4g} > {cusum.h:.4g})"
        )
        last = {
            "kind": "feature_drift", "feature": name, "segment": None, "detector": DETECTOR,
            "statistic": cusum.alarm_statistic, "threshold": cusum.h, "p_value": None,
            "summary": summary, "model_version": delta.model_version,
            "start_us": start_us, "end_us": end_us, "count": count,
        }  # fmt: skip
        status = judge.book.observe(key, True, last, immediate=True)
        if status is not None:
            alerts.append(judge._alert(key, status, last, summary))
    return alerts


def on_window(judge: ModelJudge, monitor: MeanShiftMonitor, window: WindowDelta) -> list[Alert]:
    """A judged window closed: record, per paging CUSUM, whether it alarmed again."""
    alerts: list[Alert] = []
    alarmed, monitor.alarmed = monitor.alarmed, set()
    peaks, monitor.peaks = monitor.peaks, {}
    sums, monitor.sums = monitor.sums, {}
    if judge.on_point is not None and judge.report_all_statistics:
        _report(judge, monitor, window, peaks, alarmed)
    clear_fraction = judge.settings.alerting.clear_fraction
    for name, entry in monitor.features.items():
        key = _key(judge, name)
        track = judge.book.tracks.get(key)
        if track is None or not track.firing:
            continue
        last = {
            **track.last, "statistic": entry.cusum.statistic, "model_version": window.model_version,
            "start_us": window.start_us, "end_us": window.end_us, "count": window.count,
        }  # fmt: skip
        alarm, mean = name in alarmed, _window_mean(sums.get(name))
        band = clear_fraction * entry.cusum.k
        clear = not alarm and (mean is None or abs(mean) <= band)
        if judge.book.observe(key, alarm, last, immediate=True, clear=clear) == "resolved":
            summary = (
                f"resolved: no mean shift of feature {name!r} of model {judge.model!r} in "
                f"{judge.settings.alerting.resolve_after} windows (cusum "
                f"{entry.cusum.statistic:.4g} <= {entry.cusum.h:.4g}; last window's mean "
                + ("without values" if mean is None else f"{mean:+.3g} sd, within {band:.3g}")
                + ")"
            )
            alerts.append(judge._alert(key, "resolved", last, summary))
    return alerts


def _window_mean(summed: tuple[int, float] | None) -> float | None:
    """A window's mean standardised value (None without values): the hysteresis of a CUSUM
    page. A window clears only with it within ``clear_fraction`` x k of the reference's: a
    shift that persists but alarms only now and then (the CUSUM restarts at 0 after each
    alarm) keeps its window means near the shift, and the page would otherwise resolve
    between two alarms.

    >>> _window_mean((500, 100.0)), _window_mean((0, 0.0))
    (0.2, None)
    """
    if summed is None or summed[0] <= 0:
        return None
    count, total = summed
    return total / count


def _report(
    judge: ModelJudge, monitor: MeanShiftMonitor, window: WindowDelta,
    peaks: dict[str, float], alarmed: set[str],
) -> None:  # fmt: skip
    """One point per CUSUM that saw values in the window: its peak against h (reports chart
    the detector that paged; live gauges follow the CUSUMs after every delta instead)."""
    assert judge.on_point is not None
    start, end = window.start, window.end
    if start is None or end is None:
        return
    for name, peak in sorted(peaks.items()):
        entry = monitor.features.get(name)
        if entry is not None:
            judge.on_point(StatisticPoint(
                judge.model, "feature_drift", name, DETECTOR, peak, entry.cusum.h, None,
                name in alarmed, start, end, window.count,
            ))  # fmt: skip


def suppresses(judge: ModelJudge, reading: Reading, key: str) -> bool:
    """True for a breached window test of a feature whose CUSUM page is firing (unless that
    test's own episode is): one problem, one page. Its history stays as if not judged."""
    if not reading.breached or reading.kind != "feature_drift" or reading.segment is not None:
        return False
    if reading.detector == DETECTOR or reading.feature is None:
        return False
    own = judge.book.tracks.get(key)
    if own is not None and own.firing:
        return False
    track = judge.book.tracks.get(_key(judge, reading.feature))
    return track is not None and track.firing
