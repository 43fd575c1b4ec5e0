"""The judge's smaller parts (performance baseline, label-coverage baseline) and its JSON state."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from detectors.alerting import AlertBook, Reading
from detectors.profile_builder import infer_task, quality_baseline
from detectors.quality import ClassificationSketch
from detectors.regression import RegressionSketch
from detectors.reservoir import pack_floats, unpack_floats
from detectors.sequential import SequentialDetector
from detectors.window import ALL_TRAFFIC, SliceDelta, WindowDelta
from schemas.events import Alert
from schemas.monitor_config import ModelMonitorConfig, Task
from schemas.profile import QualityBaseline, ReferenceProfile, load_profile

if TYPE_CHECKING:
    from detectors.judge import ModelJudge

__all__ = [
    "COVERAGE_WINDOWS",
    "Baseline",
    "Coverage",
    "judge_from_state",
    "judge_to_state",
    "pack_profile",
    "unpack_profile",
]

COVERAGE_WINDOWS: Final = 3
"""Judged windows with labels before label coverage has a baseline."""


def _outcomes_only(part: SliceDelta) -> SliceDelta:
    """A copy of the outcome sketches of ``part`` (what a performance baseline needs)."""
    out = SliceDelta()
    out.outcomes = part.outcomes
    out.label_kinds = dict(part.label_kinds)
    if part.classification is not None:
        out.classification = ClassificationSketch.from_state(part.classification.to_state())
    if part.regression is not None:
        out.regression = RegressionSketch.from_state(part.regression.to_state())
    return out


@dataclass
class Baseline:
    """The performance baseline in use, or the outcomes accumulating towards one."""

    current: QualityBaseline | None = None
    pending: SliceDelta | None = None
    task: Task | None = None

    @classmethod
    def start(cls, profile: ReferenceProfile, settings: ModelMonitorConfig) -> Baseline:
        quality = profile.quality
        enough = (
            settings.quality.baseline_labels if profile.source == "warmup"
            else settings.quality.min_labels
        )  # fmt: skip
        if quality is not None and quality.count >= enough:
            return cls(current=quality, task=quality.task)
        return cls(pending=SliceDelta(), task=settings.task or profile.task)

    def absorb_warmup(self, warm: WindowDelta) -> None:
        """Count the warm-up's outcomes towards a pending baseline."""
        if self.pending is not None and ALL_TRAFFIC in warm.slices:
            self.pending = _outcomes_only(warm.slices[ALL_TRAFFIC])

    def observe(self, window: WindowDelta, settings: ModelMonitorConfig) -> None:
        """Fold a judged window's outcomes while the baseline is pending."""
        if self.pending is None or ALL_TRAFFIC not in window.slices:
            return
        self.pending.merge(_outcomes_only(window.slices[ALL_TRAFFIC]))
        pending = self.pending
        classes = len(pending.classification.classes) if pending.classification else 0
        task = self.task or infer_task(pending.label_kinds, classes)
        baseline = quality_baseline(task, pending.classification, pending.regression)
        if baseline is not None and baseline.count >= settings.quality.baseline_labels:
            self.current, self.pending, self.task = baseline, None, baseline.task

    def to_state(self) -> dict[str, Any]:
        return {
            "current": None if self.current is None else self.current.model_dump(mode="json"),
            "pending": None if self.pending is None else self.pending.to_state(),
            "task": self.task,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Baseline:
        current = state["current"]
        pending = state["pending"]
        return cls(
            current=None if current is None else QualityBaseline.model_validate(current),
            pending=None if pending is None else SliceDelta.from_state(pending),
            task=state["task"],
        )


@dataclass
class Coverage:
    """Joined labels per prediction over judged windows, once labels flow."""

    outcomes: int = 0
    predictions: int = 0
    windows: int = 0

    def rate(self) -> float | None:
        if self.windows < COVERAGE_WINDOWS or self.predictions == 0:
            return None
        return self.outcomes / self.predictions

    def observe(self, window: WindowDelta, readings: list[Reading], *, active: bool) -> None:
        if not active:
            return
        if any(r.kind == "label_coverage" and r.breached for r in readings):
            return  # a window with lost labels does not lower the baseline
        self.outcomes += window.outcomes
        self.predictions += window.count
        self.windows += 1

    def to_state(self) -> dict[str, Any]:
        return {"outcomes": self.outcomes, "predictions": self.predictions, "windows": self.windows}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Coverage:
        return cls(int(state["outcomes"]), int(state["predictions"]), int(state["windows"]))


def _delta_state(delta: WindowDelta | None) -> dict[str, Any] | None:
    return None if delta is None else delta.to_state()


def _delta(state: dict[str, Any] | None) -> WindowDelta | None:
    return None if state is None else WindowDelta.from_state(state)


def _packed_samples(part: dict[str, Any]) -> dict[str, Any]:
    """A slice profile's JSON with each feature's sample packed (`pack_floats`)."""
    out = dict(part)
    for field in ("features", "scores"):
        out[field] = {name: _packed(feature) for name, feature in part[field].items()}
    if part["prediction"] is not None:
        out["prediction"] = _packed(part["prediction"])
    return out


def _packed(feature: dict[str, Any]) -> dict[str, Any]:
    return {**feature, "sample": pack_floats(feature["sample"])} if feature["sample"] else feature


def _unpacked_samples(part: dict[str, Any]) -> dict[str, Any]:
    out = dict(part)
    for field in ("features", "scores"):
        if field in part:
            out[field] = {name: _unpacked(feature) for name, feature in part[field].items()}
    if part.get("prediction") is not None:
        out["prediction"] = _unpacked(part["prediction"])
    return out


def _unpacked(feature: dict[str, Any]) -> dict[str, Any]:
    sample = feature.get("sample")
    return (
        {**feature, "sample": unpack_floats(sample).tolist()}
        if isinstance(sample, str)
        else feature
    )


def pack_profile(profile: ReferenceProfile) -> dict[str, Any]:
    """The profile's JSON with every numeric sample as packed float64 (about 40 % smaller than
    a list of numbers, and much faster to encode); `unpack_profile` restores it exactly."""
    state = _packed_samples(profile.model_dump(mode="json"))
    state["segments"] = {key: _packed_samples(part) for key, part in state["segments"].items()}
    return state


def unpack_profile(state: dict[str, Any]) -> ReferenceProfile:
    """The ReferenceProfile of `pack_profile` output (plain profile JSON loads too)."""
    data = _unpacked_samples(state)
    data["segments"] = {
        key: _unpacked_samples(part) for key, part in state.get("segments", {}).items()
    }
    return ReferenceProfile.model_validate(data)


def judge_to_state(judge: ModelJudge) -> dict[str, Any]:
    from detectors.judge import JUDGE_FORMAT

    return {
        "format": JUDGE_FORMAT,
        "model": judge.model,
        "reference": judge.reference_state(),
        "version": judge.version,
        "candidates": {
            version: {"delta": _delta_state(entry["delta"]), "others": entry["others"]}
            for version, entry in judge.candidates.items()
        },
        "current": _delta_state(judge.current),
        "recent": [delta.to_state() for delta in judge.recent],
        "baseline": judge.baseline.to_state(),
        "coverage": judge.coverage.to_state(),
        "sequential": None if judge.sequential is None else judge.sequential.to_state(),
        "book": judge.book.to_state(),
        "known_new": sorted(judge.known_new),
        "queued": [alert.model_dump(mode="json") for alert in judge.queued],
        "windows": judge.windows,
        "ignored": judge.ignored,
        "thresholds": judge.evaluator_cache(),
    }


def judge_from_state(judge: ModelJudge, state: dict[str, Any]) -> None:
    from detectors.judge import JUDGE_FORMAT

    if state.get("format") not in (1, JUDGE_FORMAT):
        raise ValueError(
            f"judge state has format {state.get('format')!r}, expected 1 or {JUDGE_FORMAT}: it "
            f"was written by another driftline version; drop it to start the model afresh"
        )
    reference = state["reference"]
    settings = judge.settings.reference
    if reference is not None:
        packed = reference if state["format"] == JUDGE_FORMAT else None  # reused by to_state
        judge._use(unpack_profile(reference), packed=packed)
    elif settings.source == "profile" and settings.path is not None:
        judge._use(load_profile(settings.path))
    judge.version = state["version"]
    judge.candidates = {
        version: {"delta": _delta(entry["delta"]), "others": int(entry["others"])}
        for version, entry in state["candidates"].items()
    }
    judge.current = _delta(state["current"])
    judge.recent = [WindowDelta.from_state(item) for item in state["recent"]]
    judge.baseline = Baseline.from_state(state["baseline"])
    judge.coverage = Coverage.from_state(state["coverage"])
    sequential = state["sequential"]
    judge.sequential = None if sequential is None else SequentialDetector.from_state(sequential)
    book = AlertBook.from_state(state["book"])
    alerting = judge.settings.alerting
    book.k, book.m, book.resolve_after = alerting.k, alerting.m, alerting.resolve_after
    judge.book = book
    judge.known_new = set(state["known_new"])
    judge.queued = [Alert.model_validate(item) for item in state["queued"]]
    judge.windows = int(state["windows"])
    judge.ignored = int(state["ignored"])
    judge.load_evaluator_cache(state.get("thresholds") or {})
