"""The monitor configuration: windows, references, detectors, false-alarm budget, per model.

Every field has a default, so an empty file (or no file) is a working configuration. Values in
``defaults`` apply to every model; ``models.<name>`` overrides only what it sets.

>>> config = parse_monitor_config({"models": {"churn": {"window": {"size": 1000}}}})
>>> config.for_model("churn").window.size, config.for_model("other").window.size
(1000, 500)
>>> parse_monitor_config({"defaults": {"window": {"type": "hourly"}}})
Traceback (most recent call last):
...
schemas.monitor_config.MonitorConfigError: invalid monitor configuration: defaults.window.type: \
must be one of 'count', 'time' (got 'hourly')
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Self, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from schemas.events import AlertKind

__all__ = [
    "AlertingConfig",
    "CategoricalDetectors",
    "CategoricalTest",
    "DataQualityConfig",
    "DetectorsConfig",
    "FeatureKind",
    "JoinConfig",
    "MeanShiftConfig",
    "ModelMonitorConfig",
    "MonitorConfig",
    "MonitorConfigError",
    "NumericDetectors",
    "NumericTest",
    "QualityConfig",
    "ReferenceConfig",
    "SegmentsConfig",
    "SequentialConfig",
    "SequentialKind",
    "Severity",
    "Task",
    "WindowConfig",
    "load_monitor_config",
    "parse_monitor_config",
]

FeatureKind = Literal["numeric", "categorical"]
Task = Literal["binary", "multiclass", "regression"]
NumericTest = Literal["ks", "psi", "wasserstein", "jensen_shannon"]
CategoricalTest = Literal["chi_square", "psi", "jensen_shannon", "unseen_rate"]
SequentialKind = Literal["adwin", "page_hinkley", "ddm", "eddm", "hddm_a", "hddm_w"]
Severity = Literal["warning", "critical"]
_ALL_NUMERIC: list[NumericTest] = ["ks", "psi", "wasserstein", "jensen_shannon"]
_ALL_CATEGORICAL: list[CategoricalTest] = ["chi_square", "psi", "jensen_shannon", "unseen_rate"]


class MonitorConfigError(ValueError):
    """The monitor configuration is invalid; the message names each field and what it allows."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class ReferenceConfig(_Section):
    """What windows are compared with."""

    source: Literal["warmup", "profile"] = "warmup"
    """``warmup``: the first ``warmup_events`` events of a model version; ``profile``: a
    training-data profile (``path``, or the one a ``promoted`` model event carries)."""
    warmup_events: Annotated[int, Field(ge=50)] = 2000
    path: Path | None = None
    """JSON file of a ReferenceProfile (``source: profile``); without it the judge waits for a
    ``promoted`` model event and judges nothing until then."""
    sample_size: Annotated[int, Field(ge=100, le=100_000)] = 2000
    """Reference values kept per numeric feature for KS and Wasserstein."""
    bins: Annotated[int, Field(ge=2, le=100)] = 10
    """Quantile bins of numeric features for PSI and Jensen-Shannon."""


class WindowConfig(_Section):
    """How events are grouped into the windows that are judged."""

    type: Literal["count", "time"] = "count"
    size: Annotated[int, Field(ge=50)] = 500
    """Events per window (count windows)."""
    time_seconds: Annotated[float, Field(gt=0)] | None = None
    """Event-time length of a window (time windows)."""
    slide: Annotated[float, Field(gt=0)] | None = None
    """Step between evaluations in the window's unit (events or seconds); must divide the
    window; ``None`` for tumbling windows."""
    min_count: Annotated[int, Field(ge=1)] = 100
    """A window with fewer events is not judged for drift; its events roll into the next
    window (its outcomes are judged on their own when they reach ``quality.min_labels``)."""

    @property
    def step_us(self) -> int | None:
        """Event time (µs) between a time window's verdicts (``slide``, else the window);
        None for count windows. Time windows step on a grid of it from the Unix epoch.

        >>> WindowConfig(type="time", time_seconds=3600, slide=600).step_us
        600000000
        """
        if self.type != "time":
            return None
        return max(1, int((self.slide or self.time_seconds or 0.0) * 1e6))

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.type == "time" and self.time_seconds is None:
            raise ValueError("type 'time' needs time_seconds (e.g. 3600): set it")
        length = self.size if self.type == "count" else (self.time_seconds or 0.0)
        if self.slide is not None and (self.slide > length or (length / self.slide) % 1):
            raise ValueError(
                f"slide {self.slide} must divide the window length {length}: e.g. {length / 5:g}"
            )
        return self


class NumericDetectors(_Section):
    """Two-sample tests of numeric features (and numeric predictions and scores)."""

    tests: list[NumericTest] = Field(default_factory=lambda: list(_ALL_NUMERIC))
    """Computed and reported every window."""
    decide: NumericTest = "ks"
    """The one test whose breach counts towards an alert."""


class CategoricalDetectors(_Section):
    """Two-sample tests of categorical features (and class predictions)."""

    tests: list[CategoricalTest] = Field(default_factory=lambda: list(_ALL_CATEGORICAL))
    decide: CategoricalTest = "chi_square"


class SequentialConfig(_Section):
    """An optional sequential detector over the per-window error rate (or MAE)."""

    kind: SequentialKind | None = None
    """Off by default: its false-alarm rate is not calibrated by the budget below."""
    params: dict[str, float] = Field(default_factory=dict)


class MeanShiftConfig(_Section):
    """A CUSUM per numeric feature (all traffic) that pages on a mean shift within events."""

    enabled: bool = True
    shift_sd: Annotated[float, Field(gt=0, le=10)] = 0.5
    """Smallest mean shift worth detecting, in reference standard deviations (CUSUM k is half of
    it); larger shifts are still detected, smaller ones slowly or not at all."""
    step: Annotated[int, Field(ge=1, le=100_000)] = 50
    """Offline (``driftline backtest``): events between CUSUM updates (live: every delta)."""


class DetectorsConfig(_Section):
    numeric: NumericDetectors = NumericDetectors()
    categorical: CategoricalDetectors = CategoricalDetectors()
    sequential: SequentialConfig = SequentialConfig()
    mean_shift: MeanShiftConfig = MeanShiftConfig()
    """Sequential mean-shift detection (CUSUM) of numeric features, beside the window tests."""
    prediction: bool = True
    """Test the distribution of ``prediction`` (kind ``prediction_drift``)."""
    scores: bool = True
    """Test the distribution of each class score (kind ``prediction_drift``)."""
    min_count: Annotated[int, Field(ge=10)] = 100
    """Fewest non-null values in a window for a drift test of that feature."""


def _default_severity() -> dict[AlertKind, Severity]:
    return {
        "feature_drift": "warning",
        "prediction_drift": "warning",
        "performance": "critical",
        "data_quality": "warning",
        "label_coverage": "warning",
        "traffic": "warning",
    }


class AlertingConfig(_Section):
    """The false-alarm budget and the alert lifecycle (see docs/monitoring.md)."""

    target_run_length: Annotated[float, Field(ge=10)] = 10_000
    """Expected judged windows per model between two false alarms on a stationary stream."""
    alpha: Annotated[float, Field(gt=0, lt=0.5)] | None = None
    """Per-test significance; overrides the one derived from ``target_run_length``."""
    assume_independent_windows: bool = False
    """Credit k-of-m with the power of independent windows (larger alpha). Off: windows share
    the reference, so the budget is a union bound that holds under any dependence."""
    k: Annotated[int, Field(ge=1)] = 2
    """Breaches among the last ``m`` judged windows that fire an alert."""
    m: Annotated[int, Field(ge=1)] = 3
    resolve_after: Annotated[int, Field(ge=1)] = 3
    """Consecutive clear windows that resolve a firing alert."""
    clear_fraction: Annotated[float, Field(gt=0, le=1)] = 0.5
    """Hysteresis: while an alert fires, a window is clear only when its statistic is within
    this fraction of the way from its no-drift value to the threshold. 1 = merely within the
    threshold, which lets a shift hovering at the threshold resolve and fire again."""
    clear_confidence: Annotated[float, Field(ge=0, lt=1)] = 0.75
    """Hysteresis of shares (null, out-of-range, unseen, type-change and error rates, label
    coverage): a window is clear only when this one-sided confidence bound of its share is,
    so a share that stays near its threshold does not resolve on windows that drew low by
    chance. 0: the share itself, as other statistics."""
    severity: dict[AlertKind, Severity] = Field(default_factory=_default_severity)
    runbook_url: str | None = None
    """Put in every alert; ``{kind}`` is replaced by the alert kind."""

    @field_validator("severity", mode="after")
    @classmethod
    def _all_kinds(cls, value: dict[AlertKind, Severity]) -> dict[AlertKind, Severity]:
        return {**_default_severity(), **value}  # kinds not named keep their default

    @field_validator("clear_confidence", mode="after")
    @classmethod
    def _confidence(cls, value: float) -> float:
        if 0 < value < 0.5:
            raise ValueError(
                f"clear_confidence {value} is below 0.5, a bound below the share itself: "
                "use 0 to judge the share itself, or a confidence such as 0.75"
            )
        return value

    @model_validator(mode="after")
    def _k_of_m(self) -> Self:
        if self.k > self.m:
            raise ValueError(f"k ({self.k}) must not exceed m ({self.m}): lower k or raise m")
        return self


class QualityConfig(_Section):
    """Performance once labels join, and label coverage."""

    min_labels: Annotated[int, Field(ge=10)] = 200
    """Joined outcomes a window needs before its performance is judged."""
    baseline_labels: Annotated[int, Field(ge=10)] = 500
    """Outcomes behind the performance baseline when the reference has none."""
    min_effect: Annotated[float, Field(ge=0)] = 0.1
    """Smallest relative degradation (error rate or MAE) that may breach, on top of the test."""
    threshold: Annotated[float, Field(gt=0, lt=1)] = 0.5
    """Decision threshold of a binary classifier whose prediction is a score."""
    label_coverage: bool = True
    """Alert when joined labels per prediction fall below ``coverage_floor`` of the baseline."""
    coverage_floor: Annotated[float, Field(gt=0, lt=1)] = 0.5


class DataQualityConfig(_Section):
    """Checks of the inputs themselves (kind ``data_quality``)."""

    enabled: bool = True
    null_rate_increase: Annotated[float, Field(gt=0, le=1)] = 0.05
    """Smallest absolute rise of a feature's null rate that may breach."""
    out_of_range_rate: Annotated[float, Field(gt=0, le=1)] = 0.02
    """Smallest share of values outside the reference [min, max] that may breach."""
    type_change_rate: Annotated[float, Field(gt=0, le=1)] = 0.01
    """Smallest share of values of a type the reference never had that breaches."""
    missing_features: bool = True
    new_features: bool = True


class SegmentsConfig(_Section):
    """Slices judged on their own, by keys of the events' ``segment``."""

    keys: list[str] = Field(default_factory=list)
    max_values: Annotated[int, Field(ge=1, le=1000)] = 20
    """Values per key profiled in the reference (the most frequent)."""
    min_count: Annotated[int, Field(ge=10)] = 200
    """Events of a segment in the warm-up (to profile it) and in a window (to judge it)."""


class JoinConfig(_Section):
    ttl_seconds: Annotated[float, Field(gt=0)] = 7 * 24 * 3600.0
    """How long a prediction waits for its label (and an early label for its prediction)."""


class ModelMonitorConfig(_Section):
    """Everything that can differ between models."""

    task: Task | None = None
    """``None``: inferred from the first labels (0/1 or bool or strings -> classification)."""
    features: dict[str, FeatureKind] = Field(default_factory=dict)
    """Feature kinds; features not named here are inferred (numbers -> numeric)."""
    ignore: list[str] = Field(default_factory=list)
    """Features never monitored."""
    reference: ReferenceConfig = ReferenceConfig()
    window: WindowConfig = WindowConfig()
    detectors: DetectorsConfig = DetectorsConfig()
    alerting: AlertingConfig = AlertingConfig()
    quality: QualityConfig = QualityConfig()
    data_quality: DataQualityConfig = DataQualityConfig()
    segments: SegmentsConfig = SegmentsConfig()


class MonitorConfig(_Section):
    """The whole monitor configuration: ``defaults`` plus ``models`` overrides."""

    defaults: ModelMonitorConfig = ModelMonitorConfig()
    models: dict[str, ModelMonitorConfig] = Field(default_factory=dict)
    join: JoinConfig = JoinConfig()
    _resolved: dict[str, ModelMonitorConfig] = PrivateAttr(default_factory=dict)

    def for_model(self, name: str) -> ModelMonitorConfig:
        """``defaults`` deep-merged with what ``models[name]`` sets explicitly."""
        cached = self._resolved.get(name)
        if cached is not None:
            return cached
        override = self.models.get(name)
        if override is None:
            resolved = self.defaults
        else:
            merged = _deep_merge(
                self.defaults.model_dump(), override.model_dump(exclude_unset=True)
            )
            resolved = ModelMonitorConfig.model_validate(merged)
        self._resolved[name] = resolved
        return resolved


def _deep_merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


# -- loading with readable errors -----------------------------------------------------------------


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside ``annotation`` (through Optional and Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (dict, list):
        return None
    for arg in get_args(annotation):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def _container_args(annotation: Any) -> tuple[Any, ...]:
    """Arguments of the dict or list inside ``annotation`` (through Optional)."""
    if get_origin(annotation) in (dict, list):
        return get_args(annotation)
    for arg in get_args(annotation):
        found = _container_args(arg)
        if found:
            return found
    return ()


def _walk(loc: tuple[int | str, ...]) -> tuple[type[BaseModel] | None, Any]:
    """The model at ``loc`` (or None) and the annotation of the field ``loc`` points at."""
    model: type[BaseModel] | None = MonitorConfig
    annotation: Any = None
    for part in loc:
        args = _container_args(annotation) if model is None else ()
        if args:  # a dict key or list index: step into the values
            annotation = args[-1]
        elif model is not None and str(part) in model.model_fields:
            annotation = model.model_fields[str(part)].annotation
        else:
            return None, None
        model = _model_of(annotation)
    return model, annotation


def _allowed_values(annotation: Any) -> list[Any]:
    if get_origin(annotation) is Literal:
        return list(get_args(annotation))
    values: list[Any] = []
    for arg in get_args(annotation):
        values.extend(_allowed_values(arg))
    return values


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        where = (
            "".join(
                f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc
            ).removeprefix(".")
            or "(top level)"
        )
        kind = error["type"]
        if kind == "extra_forbidden":
            holder, _ = _walk(loc[:-1])
            allowed = ", ".join(sorted(holder.model_fields)) if holder else "?"
            parts.append(f"{where}: unknown field; allowed fields here: {allowed}")
        elif kind in ("literal_error", "enum"):
            _, annotation = _walk(loc)
            values = _allowed_values(annotation) or [error.get("ctx", {}).get("expected", "?")]
            shown = ", ".join(repr(value) for value in dict.fromkeys(values))
            parts.append(f"{where}: must be one of {shown} (got {error['input']!r})")
        else:
            message = str(error["msg"]).removeprefix("Value error, ")
            got = "" if isinstance(error["input"], dict) else f" (got {error['input']!r})"
            parts.append(f"{where}: {message}{got}")
    return "invalid monitor configuration: " + "; ".join(parts)


def parse_monitor_config(data: Mapping[str, Any] | None) -> MonitorConfig:
    """Validate a configuration mapping, raising MonitorConfigError with readable messages."""
    try:
        return MonitorConfig.model_validate(dict(data or {}))
    except ValidationError as exc:
        raise MonitorConfigError(_describe(exc)) from None


def load_monitor_config(path: str | Path | None) -> MonitorConfig:
    """Read a YAML monitor configuration file (an empty file, or no file, gives the defaults)."""
    if path is None:
        return MonitorConfig()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise MonitorConfigError(
            f"cannot read the monitor configuration {str(path)!r}: {exc.strerror or exc}"
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise MonitorConfigError(f"{path}: not valid YAML: {exc}") from None
    if data is not None and not isinstance(data, Mapping):
        raise MonitorConfigError(
            f"{path}: must be a YAML mapping with keys defaults, models, join; "
            f"got a {type(data).__name__}"
        )
    try:
        return parse_monitor_config(data)
    except MonitorConfigError as exc:
        raise MonitorConfigError(f"{path}: {exc}") from None
