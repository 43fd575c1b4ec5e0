"""The per-model judge: merges window deltas, judges closed windows, runs the alert lifecycle.

One judge per model (live: one per sketches-topic key; offline: inside ``FleetMonitor``).
Its whole state is plain JSON (``to_state``/``from_state``), so any worker can rebuild it and
continue exactly where it was.

Reference: with ``reference.source: warmup`` the first ``warmup_events`` events of the model
version become the reference (whole deltas: a delta that crosses the boundary belongs to the
warm-up). A new model_version takes over, with its own warm-up, once it has sent
``warmup_events`` events and twice as many as the other versions since it appeared (a canary
does not take over, a rollout does); until then the current version is judged. With
``source: profile`` the reference is the configured file or the profile of a ``promoted``
model event (`set_reference`); deltas of other versions are ignored. `set_reference` resolves
every firing alert (one ``resolved`` each, returned by the next `apply` or `flush`), then
starts the windows and k-of-m histories afresh against the new profile.

Mean shifts of numeric features page within events, before any window closes: every delta
feeds the CUSUMs of ``detectors.judge_cusum``.

Performance baseline: the reference's quality when it summarises >= ``baseline_labels``
outcomes; else the outcomes joined after the warm-up accumulate (those windows' performance is
not judged) until they do.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from statistics import NormalDist
from typing import Any, Final

from detectors.alerting import AlertBook, Reading, Status, build_alert, fingerprint
from detectors.calibration import NullThresholds, per_test_alpha
from detectors.evaluate import Evaluator, StatisticPoint, count_decisions
from detectors.judge_cusum import MeanShiftMonitor, on_delta, on_window, suppresses
from detectors.judge_state import Baseline, Coverage
from detectors.profile_builder import profile_from_delta
from detectors.sequential import SequentialDetector
from detectors.window import WindowDelta, time_step_end
from schemas.events import Alert
from schemas.monitor_config import ModelMonitorConfig, MonitorConfig
from schemas.profile import ReferenceProfile, load_profile

__all__ = ["JUDGE_FORMAT", "MAX_CANDIDATES", "TAKEOVER_SHARE", "ModelJudge", "StatisticPoint"]

JUDGE_FORMAT: Final = 2
"""2: the reference's samples and the deltas' arrays are packed; format 1 states still load."""
TAKEOVER_SHARE: Final = 2
"""A new version takes over once it sent this many times the events of the others since it
appeared (two thirds of the traffic): a canary does not, a rollout does."""
MAX_CANDIDATES: Final = 3
"""New model versions warmed up at once; beyond, the oldest candidate is dropped."""
Clock = Callable[[], datetime]


def _finite(value: float | None) -> float:
    return float(value) if value is not None and math.isfinite(value) else 0.0


def _joined(target: WindowDelta | None, delta: WindowDelta) -> WindowDelta:
    if target is None:
        return delta  # the judge owns the deltas it is given
    delta.model_version = target.model_version  # accepted deltas count for the judged version
    target.merge_later(delta)  # merged once the window is read (closed, saved): in one go
    return target


class ModelJudge:
    """Merges one model's window deltas and turns closed windows into alerts."""

    def __init__(
        self,
        model: str,
        config: MonitorConfig,
        *,
        clock: Clock,
        on_point: Callable[[StatisticPoint], None] | None = None,
        profile_loader: Callable[[Path], ReferenceProfile] | None = load_profile,
        report_all_statistics: bool = True,
    ) -> None:
        self.model = model
        self.config = config
        self.settings: ModelMonitorConfig = config.for_model(model)
        self.clock = clock
        self.on_point = on_point
        self.report_all_statistics = report_all_statistics
        """False: ``on_point`` gets the deciding statistics only, and the ones only reported
        (PSI, JS, Wasserstein by default) and their simulated thresholds are never computed:
        a live worker exports gauges, and those thresholds dominated a fresh judge's cost."""
        settings = self.settings.alerting
        self.book = AlertBook(k=settings.k, m=settings.m, resolve_after=settings.resolve_after)
        confidence = settings.clear_confidence
        self._clear_z = NormalDist().inv_cdf(confidence) if confidence > 0.5 else 0.0
        """Standard errors of a share's hysteresis bound (`Reading.clear`)."""
        self.reference: ReferenceProfile | None = None
        self.version: str | None = None
        """The model version being judged."""
        self.candidates: dict[str, dict[str, Any]] = {}
        """Version ("" for none) -> its warm-up delta and the other versions' events since."""
        self.current: WindowDelta | None = None
        """The (sub-)window being filled."""
        self.recent: list[WindowDelta] = []
        """Closed sub-windows of a sliding window."""
        self.baseline = Baseline()
        self.coverage = Coverage()
        self.sequential: SequentialDetector | None = None
        self.mean_shift: MeanShiftMonitor | None = None
        """The CUSUMs of numeric features (``detectors.judge_cusum``), once a reference exists."""
        self.known_new: set[str] = set()
        self.queued: list[Alert] = []
        self.windows = 0
        """Windows judged against the current reference."""
        self.ignored = 0
        """Prediction events of versions not judged."""
        self._evaluator: Evaluator | None = None
        self._fingerprints: dict[tuple[str, str | None, str | None, str], str] = {}
        self._reference_state: dict[str, Any] | None = None
        reference = self.settings.reference
        if reference.source == "profile" and reference.path is not None and profile_loader:
            self._use(profile_loader(reference.path))

    # -- reference -------------------------------------------------------------------------

    @property
    def alpha(self) -> float | None:
        """The per-test significance of the current reference (None before one exists)."""
        return None if self._evaluator is None else self._evaluator.alpha

    def _use(self, profile: ReferenceProfile, *, packed: dict[str, Any] | None = None) -> None:
        settings = self.settings.alerting
        # The reference as the state stores it, kept while the reference stays (the state of
        # a live judge is written after every batch; the profile never changes in between).
        self._reference_state = packed
        decisions = count_decisions(profile, self.settings)
        alpha = settings.alpha or per_test_alpha(
            settings.target_run_length, decisions, k=settings.k, m=settings.m,
            independent=settings.assume_independent_windows,
        )  # fmt: skip
        self.reference = profile
        if profile.model_version is not None or self.version is None:
            self.version = profile.model_version
        self._evaluator = Evaluator(
            self.model, profile, self.settings, alpha=alpha, thresholds=NullThresholds()
        )
        self.baseline = Baseline.start(profile, self.settings)
        self.coverage = Coverage()
        kind = self.settings.detectors.sequential.kind
        params = self.settings.detectors.sequential.params
        extra: dict[str, Any] = dict(params)
        self.sequential = SequentialDetector(kind, **extra) if kind is not None else None
        self.mean_shift = MeanShiftMonitor.build(profile, self.settings)
        self.known_new = set()
        self.candidates, self.current, self.recent = {}, None, []
        self.windows = 0
        self.book.reset_windows()

    def set_reference(self, profile: ReferenceProfile) -> None:
        """Switch to ``profile``; firing alerts resolve (returned by `flush` or the next
        `apply`), windows and k-of-m histories start afresh."""
        self._resolve_all(f"the reference switched to profile {profile.profile_id}")
        self._use(profile)

    def _resolve_all(self, reason: str) -> None:
        for key in self.book.firing():
            self.book.force_resolve(key)
            last = self.book.tracks[key].last
            self.queued.append(self._alert(key, "resolved", last, f"resolved: {reason}"))

    # -- deltas ----------------------------------------------------------------------------

    def apply(self, delta: WindowDelta) -> list[Alert]:
        """Fold one delta of this model; the alerts its closed windows (if any) caused.

        The judge takes ownership of ``delta`` (it may keep and grow it): pass a fresh one.
        """
        if delta.model != self.model:
            raise ValueError(
                f"judge of model {self.model!r} got a delta of {delta.model!r}: "
                f"route deltas by model"
            )
        alerts, self.queued = self.queued, []
        if self.reference is None:
            if self.settings.reference.source == "warmup":
                alerts += self._candidate(delta)
            else:
                self.ignored += delta.count
            return alerts
        version = delta.model_version
        if version != self.version:
            if self.reference.source == "profile" and self.reference.model_version is not None:
                self.ignored += delta.count
                return alerts
            if self.reference.source == "warmup":
                return alerts + self._candidate(delta)
        for candidate in self.candidates.values():
            candidate["others"] += delta.count
        alerts += self._fill(delta)
        return alerts

    def _candidate(self, delta: WindowDelta) -> list[Alert]:
        """Warm up ``delta``'s version; it becomes the reference once it has enough events
        (and, when another version is being judged, most of the traffic since appearing)."""
        key = delta.model_version or ""
        entry = self.candidates.get(key)
        if entry is None:
            if len(self.candidates) >= MAX_CANDIDATES:
                del self.candidates[next(iter(self.candidates))]
            entry = self.candidates[key] = {"delta": None, "others": 0}
        for other, candidate in self.candidates.items():
            if other != key:
                candidate["others"] += delta.count
        entry["delta"] = _joined(entry["delta"], delta)
        warm: WindowDelta = entry["delta"]
        if warm.count < self.settings.reference.warmup_events:
            return []
        if self.reference is not None:
            if warm.count < TAKEOVER_SHARE * entry["others"]:
                return []
            self._resolve_all(
                f"model version {delta.model_version} replaced version {self.version}"
            )
        alerts, self.queued = self.queued, []
        self.version = delta.model_version
        self._use(profile_from_delta(warm, self.settings, source="warmup"))
        self.baseline.absorb_warmup(warm)
        return alerts

    def _fill(self, delta: WindowDelta) -> list[Alert]:
        window = self.settings.window
        alerts: list[Alert] = []
        if self.mean_shift is not None:  # sequential: pages before the window closes
            alerts += on_delta(self, self.mean_shift, delta)
        if window.step_us is not None:
            # A time window closes when the first delta beyond its end arrives.
            current = self.current
            if (
                current is not None
                and current.start_us is not None
                and delta.start_us is not None
                and delta.start_us >= time_step_end(current.start_us, window.step_us)
            ):
                self.current = None
                alerts += self._close(current)
            self.current = _joined(self.current, delta)
            return alerts
        current = self.current = _joined(self.current, delta)
        step = int(window.slide or window.size)
        if current.count >= step or current.outcomes - current.count >= step:
            if current.count < step:  # labels outran predictions: its coverage says nothing
                current.labels_behind = True
            self.current = None
            alerts += self._close(current)
        return alerts

    def _close(self, current: WindowDelta) -> list[Alert]:
        """A (sub-)window is complete: judge the window it completes, if any."""
        window = self.settings.window
        length = window.size if window.type == "count" else (window.time_seconds or 0.0)
        parts = max(round(length / (window.slide or length)), 1)
        self.recent.append(current)
        if len(self.recent) < parts:
            return []
        judged = self.recent[0].copy() if parts > 1 else current
        for part in self.recent[1:]:
            judged.merge(part)
        self.recent = self.recent[1:] if parts > 1 else []
        if judged.count < window.min_count:
            # Too few predictions to judge drift: they roll into the next window. Enough
            # outcomes (traffic stopped, labels still arrive) are judged on their own.
            if judged.outcomes < self.settings.quality.min_labels:
                if parts == 1:
                    self.current = judged
                return []
            predictions, outcomes = judged.split()
            if parts == 1:
                self.current = predictions
            return self._judge(outcomes)
        return self._judge(judged)

    # -- judging ---------------------------------------------------------------------------

    def _judge(self, window: WindowDelta) -> list[Alert]:
        assert self._evaluator is not None and self.reference is not None
        self.windows += 1
        baseline = self.baseline.current
        # Coverage read while labels lag far behind predictions measures the reader, not the
        # label source: no verdict, and the window does not shape the coverage baseline.
        coverage = None if window.labels_behind else self.coverage.rate()
        readings = self._evaluator.evaluate(
            window, baseline=baseline, coverage=coverage,
            new_features=frozenset(self.known_new),
            everything=self.on_point is not None and self.report_all_statistics,
        )  # fmt: skip
        sequential_readings, sequential_basis = self._sequential(readings)
        readings += sequential_readings
        self.baseline.observe(window, self.settings)
        self.coverage.observe(
            window, readings, active=baseline is not None and not window.labels_behind
        )
        start, end = window.start, window.end
        assert start is not None and end is not None
        # A window of outcomes alone says nothing about the features' means.
        mean_shift = self.mean_shift if window.count > 0 else None
        alerts = [] if mean_shift is None else on_window(self, mean_shift, window)
        on_point, book, fingerprints = self.on_point, self.book, self._fingerprints
        sequential = self.sequential.kind if self.sequential is not None else None
        clear_fraction = self.settings.alerting.clear_fraction
        clear_z = self._clear_z
        for reading in readings:
            if on_point is not None:
                on_point(StatisticPoint(
                    self.model, reading.kind, reading.feature, reading.detector,
                    reading.statistic, reading.threshold, reading.p_value, reading.breached,
                    start, end, reading.count, reading.segment,
                ))  # fmt: skip
            if not reading.decides:
                continue
            if reading.detector == "new_feature" and reading.breached and reading.feature:
                self.known_new.add(reading.feature)
            what = (reading.kind, reading.feature, reading.segment, reading.detector)
            key = fingerprints.get(what)
            if key is None:
                key = fingerprints[what] = fingerprint(self.model, *what)
            if not reading.breached and key not in book.tracks:
                continue  # a clean fingerprint with no history: nothing to record
            if self.mean_shift is not None and suppresses(self, reading, key):
                continue  # its feature's CUSUM is paging: one problem, one page
            last = {
                "kind": reading.kind, "feature": reading.feature, "segment": reading.segment,
                "detector": reading.detector, "statistic": reading.statistic,
                "threshold": reading.threshold, "p_value": reading.p_value,
                "summary": reading.summary, "model_version": window.model_version,
                "start_us": window.start_us, "end_us": window.end_us, "count": window.count,
            }  # fmt: skip
            immediate = reading.detector == sequential
            # A sequential detector flags a change, not a level: once it has adapted to a
            # persistent drift it stays quiet, so its page clears only when the window's own
            # test of that statistic is clear (by the same band), not when the detector is.
            basis = sequential_basis if immediate and sequential_basis is not None else reading
            clear = basis.clear(clear_fraction, clear_z)
            status = book.observe(key, reading.breached, last, immediate=immediate, clear=clear)
            if status is not None:
                summary = reading.summary if status == "firing" else self._resolved(reading, basis)
                alerts.append(self._alert(key, status, last, summary))
        return alerts

    def _resolved(self, reading: Reading, basis: Reading) -> str:
        """``basis``: the reading whose clear windows resolved it (``reading`` itself, or for
        a sequential detector the window's test of the statistic it watches)."""
        what = reading.feature or reading.kind.replace("_", " ")
        test = "" if basis is reading else f": {basis.detector}"
        return (
            f"resolved: {reading.detector} on {what} of model {self.model!r}{test} clear of "
            f"its threshold for {self.settings.alerting.resolve_after} windows "
            f"({basis.statistic:.4g} vs {basis.threshold:.4g})"
        )

    def _sequential(self, readings: list[Reading]) -> tuple[list[Reading], Reading | None]:
        """The sequential detector's reading of this window, and the window's reading of the
        statistic it watches (its page clears by that one)."""
        detector = self.sequential
        if detector is None:
            return [], None
        for reading in readings:
            if reading.kind == "performance" and reading.segment is None:
                baseline = self.baseline.current
                reference = (baseline.error_rate if reading.detector == "error_rate"
                             else baseline.mae) if baseline is not None else None  # fmt: skip
                reference = _finite(reference)
                value = reading.statistic
                if detector.kind in ("ddm", "eddm", "hddm_a", "hddm_w"):
                    value = float(value > reference)
                fired = detector.update(value) and reading.statistic > reference
                return [Reading(
                    "performance", None, None, detector.kind, reading.statistic, reference,
                    None, fired, True, reading.count,
                    f"{detector.kind} detected a change of the {reading.detector} of model "
                    f"{self.model!r} (now {reading.statistic:.4g}, baseline {reference:.4g})",
                )], reading  # fmt: skip
        return [], None

    def _alert(self, key: str, status: Status, last: dict[str, Any], summary: str) -> Alert:
        assert self.reference is not None
        return build_alert(
            self.model, key, status, self.book.episode(key), last, self.reference,
            self.settings.alerting, emitted_at=self.clock(), summary=summary,
        )  # fmt: skip

    # -- offline helpers -------------------------------------------------------------------

    def events_until_decision(self) -> int | None:
        """Prediction events that complete the warm-up or the current (sub-)window."""
        if self.reference is None:
            if self.settings.reference.source != "warmup":
                return None
            warmed = max((e["delta"].count for e in self.candidates.values()), default=0)
            return self.settings.reference.warmup_events - warmed
        window = self.settings.window
        if window.type != "count":
            return None
        step = int(window.slide or window.size)
        return step - (self.current.count if self.current else 0)

    def labels_until_decision(self) -> int | None:
        """Joined outcomes that complete the current count (sub-)window when no prediction
        comes (None when outcomes close no window: warm-up, time windows)."""
        window = self.settings.window
        if self.reference is None or window.type != "count":
            return None
        current = self.current
        excess = 0 if current is None else current.outcomes - current.count
        return max(int(window.slide or window.size) - excess, 1)

    def events_until_step(self) -> int | None:
        """Prediction events until the next offline CUSUM update (None without CUSUMs)."""
        return None if self.mean_shift is None else self.mean_shift.events_until_step()

    def time_of_decision(self, next_event_us: int) -> int | None:
        """Event time (epoch us) from which events belong to the next time window."""
        step = self.settings.window.step_us
        if self.reference is None or step is None:
            return None
        current = self.current
        if current is not None and current.start_us is not None:
            end = time_step_end(current.start_us, step)
            if next_event_us < end:
                return end
        return time_step_end(next_event_us, step)  # the next event closes the open window

    def firing_identities(self) -> list[tuple[str, str | None, str]]:
        """(kind, feature, detector) of every firing alert, sorted and unique: what a worker
        that takes the model over re-exports (segments share their feature's identity)."""
        found = {
            (str(last["kind"]), last.get("feature"), str(last["detector"]))
            for last in (self.book.tracks[key].last for key in self.book.firing())
            if "kind" in last and "detector" in last  # a track always has them; never crash
        }
        return sorted(found, key=lambda what: (what[0], what[1] or "", what[2]))

    def flush(self) -> list[Alert]:
        """Alerts waiting for the next `apply` (the resolves of a reference switch)."""
        alerts, self.queued = self.queued, []
        return alerts

    # -- state -----------------------------------------------------------------------------

    def evaluator_cache(self) -> dict[str, Any]:
        return {} if self._evaluator is None else dict(self._evaluator.cache_state())

    def load_evaluator_cache(self, state: dict[str, Any]) -> None:
        if self._evaluator is not None:
            self._evaluator.load_cache(state)

    def reference_state(self) -> dict[str, Any] | None:
        """The reference as JSON, its samples packed (``judge_state.pack_profile``)."""
        if self.reference is None:
            return None
        if self._reference_state is None:
            from detectors.judge_state import pack_profile

            self._reference_state = pack_profile(self.reference)
        return self._reference_state

    def to_state(self) -> dict[str, Any]:
        """Plain JSON: everything needed to continue exactly (thresholds are recomputed)."""
        from detectors.judge_state import judge_to_state

        state = judge_to_state(self)
        if self.mean_shift is not None:
            state["mean_shift"] = self.mean_shift.to_state()
        return state

    @classmethod
    def from_state(
        cls,
        state: dict[str, Any],
        config: MonitorConfig,
        *,
        clock: Clock,
        on_point: Callable[[StatisticPoint], None] | None = None,
        report_all_statistics: bool = True,
    ) -> ModelJudge:
        from detectors.judge_state import judge_from_state

        judge = cls(str(state["model"]), config, clock=clock, on_point=on_point,
                    profile_loader=None, report_all_statistics=report_all_statistics)  # fmt: skip
        judge_from_state(judge, state)
        if judge.mean_shift is not None and state.get("mean_shift") is not None:
            judge.mean_shift.load_state(state["mean_shift"])
        return judge
