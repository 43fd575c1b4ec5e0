"""The v1 wire contract: every event driftline reads from or writes to Kafka.

Field names are public (external producers, replay files and on-call tooling depend on them):
extend, never rename. All events are frozen, reject unknown fields, carry ``schema_version``,
require aware timestamps and finite numbers.

>>> from datetime import UTC, datetime
>>> event = PredictionEvent(
...     event_id="e-1", model="churn", timestamp=datetime(2024, 5, 1, tzinfo=UTC),
...     features={"age": 41, "plan": "pro", "active": True, "spend": None}, prediction=0.83,
... )
>>> to_json_bytes(event)[:60]
b'{"schema_version":1,"event_id":"e-1","model":"churn","model_'
>>> parse_prediction_payload(to_json_bytes(event)) == [event]
True
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Annotated, Any, Final, Literal, Self, TypeVar

import pydantic_core
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from schemas.fields import (
    MAX_ALIASES,
    MAX_BATCH_BYTES,
    MAX_BATCH_PREDICTIONS,
    MAX_EVENT_BYTES,
    MAX_FEATURE_NAME_LENGTH,
    MAX_FEATURES,
    MAX_ID_LENGTH,
    MAX_METRICS,
    MAX_NAME_LENGTH,
    MAX_SCORES,
    MAX_SEGMENT_KEYS,
    MAX_SEGMENT_VALUE_LENGTH,
    MAX_STRING_VALUE_LENGTH,
    MAX_TEXT_LENGTH,
    MAX_TOPIC_LENGTH,
    MAX_URL_LENGTH,
    Base64Text,
    FeatureName,
    FeatureValues,
    FiniteFloat,
    Identifier,
    JsonDocument,
    Name,
    NonNegativeInt,
    Outcome,
    Probability,
    SegmentKey,
    SegmentValue,
    Text,
    Timestamp,
    Url,
)

__all__ = [
    "MAX_ALIASES",
    "MAX_BATCH_BYTES",
    "MAX_BATCH_PREDICTIONS",
    "MAX_DEAD_LETTER_PAYLOAD_BYTES",
    "MAX_EVENT_BYTES",
    "MAX_FEATURES",
    "MAX_FEATURE_NAME_LENGTH",
    "MAX_ID_LENGTH",
    "MAX_METRICS",
    "MAX_NAME_LENGTH",
    "MAX_SCORES",
    "MAX_SEGMENT_KEYS",
    "MAX_SEGMENT_VALUE_LENGTH",
    "MAX_STRING_VALUE_LENGTH",
    "MAX_TEXT_LENGTH",
    "MAX_TOPIC_LENGTH",
    "MAX_URL_LENGTH",
    "Alert",
    "AlertKind",
    "AlertReference",
    "AlertWindow",
    "DeadLetter",
    "ErrorClass",
    "InvalidEvent",
    "LabelEvent",
    "ModelEvent",
    "ModelEventType",
    "PredictionBatch",
    "PredictionEvent",
    "deadletter_for",
    "parse_event",
    "parse_label",
    "parse_prediction_payload",
    "to_json_bytes",
]

AlertKind = Literal[
    "feature_drift", "prediction_drift", "performance", "data_quality", "label_coverage", "traffic"
]
ModelEventType = Literal["registered", "promoted", "rejected", "rolled_back"]


def _exact_int(value: Any) -> Any:
    # Literal[1] alone would also take true and 1.0.
    if type(value) is not int:
        raise PydanticCustomError(
            "schema_version",
            "must be the integer 1 in v1, got {value}",
            {"value": repr(value)},
        )
    return value


SchemaVersion = Annotated[Literal[1], BeforeValidator(_exact_int)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


class _Event(_Frozen):
    schema_version: SchemaVersion = 1
    """Version of the wire contract; bumped only for breaking changes."""


class PredictionEvent(_Event):
    """One prediction of one model (topic ``driftline.predictions``, key ``event_id``)."""

    event_id: Identifier
    """Unique per prediction; the key labels are joined on."""
    model: Name
    """Registered model name."""
    model_version: Identifier | None = None
    timestamp: Timestamp
    """Event time of the prediction."""
    features: FeatureValues
    """Feature name -> finite number, string, boolean or null."""
    prediction: Outcome
    """Score, class or value."""
    scores: Annotated[dict[Name, Probability], Field(max_length=MAX_SCORES)] | None = None
    """Class -> probability in [0, 1]."""
    segment: (
        Annotated[dict[SegmentKey, SegmentValue], Field(max_length=MAX_SEGMENT_KEYS)] | None
    ) = None
    """Short strings that slice monitoring, e.g. {"country": "DE"}."""


class PredictionBatch(_Event):
    """Many predictions of one model in one message (what the SDK's ``send_batch`` publishes)."""

    batch_id: Identifier
    model: Name
    model_version: Identifier | None = None
    predictions: Annotated[
        list[PredictionEvent], Field(min_length=1, max_length=MAX_BATCH_PREDICTIONS)
    ]
    """Every prediction has the batch's ``model`` and ``model_version``."""

    @model_validator(mode="after")
    def _one_model_per_batch(self) -> Self:
        for index, prediction in enumerate(self.predictions):
            if prediction.model != self.model:
                raise PydanticCustomError(
                    "batch_model_mismatch",
                    "predictions[{index}].model is {found} but the batch is for model "
                    "{expected}: send one batch per model",
                    {"index": index, "found": repr(prediction.model), "expected": repr(self.model)},
                )
            if prediction.model_version != self.model_version:
                raise PydanticCustomError(
                    "batch_model_mismatch",
                    "predictions[{index}].model_version is {found} but the batch has "
                    "model_version {expected}: send one batch per model version",
                    {
                        "index": index,
                        "found": repr(prediction.model_version),
                        "expected": repr(self.model_version),
                    },
                )
        return self


class LabelEvent(_Event):
    """The ground truth of an earlier prediction (topic ``driftline.labels``, key ``event_id``)."""

    event_id: Identifier
    """``event_id`` of the prediction this label belongs to."""
    model: Name
    timestamp: Timestamp
    """When the truth was observed."""
    label: Outcome


class AlertWindow(_Frozen):
    """The window of events a decision was made on, in event time."""

    start: Timestamp
    end: Timestamp
    count: NonNegativeInt
    """Events in the window."""

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.end < self.start:
            raise PydanticCustomError(
                "window_order",
                "end ({end}) is before start ({start}): swap them",
                {"end": self.end.isoformat(), "start": self.start.isoformat()},
            )
        return self


class AlertReference(_Frozen):
    """What the window was compared with."""

    source: Literal["warmup", "profile"]
    """``warmup``: the first events of a model version; ``profile``: a training-data profile."""
    model_version: Identifier | None
    count: NonNegativeInt | None
    """Events the reference summarises, when known."""
    profile_id: Identifier | None = None


class Alert(_Event):
    """A state change of one alert (topic ``driftline.alerts``, key ``fingerprint``)."""

    alert_id: Identifier
    """Unique per state change."""
    fingerprint: Identifier
    """Stable for model + kind + feature + segment + detector."""
    status: Literal["firing", "resolved"]
    severity: Literal["warning", "critical"]
    model: Name
    model_version: Identifier | None
    kind: AlertKind
    feature: FeatureName | None
    segment: Annotated[str, Strict(), Field(max_length=MAX_STRING_VALUE_LENGTH)] | None
    """The segment the window covers, rendered as text (e.g. "country=DE"), or null for all."""
    detector: Name
    statistic: FiniteFloat
    threshold: FiniteFloat
    p_value: Annotated[FiniteFloat, Field(ge=0.0, le=1.0)] | None = None
    window: AlertWindow
    reference: AlertReference
    fired_at: Timestamp
    """Event time of the last event the decision saw (not wall clock)."""
    emitted_at: Timestamp
    """Wall clock when the alert was published."""
    summary: Text
    """One human sentence."""
    runbook_url: Url | None = None


class ModelEvent(_Event):
    """A retrainer outcome or registry change (topic ``driftline.models``, key ``model``)."""

    event_id: Identifier
    type: ModelEventType
    model: Name
    version: Identifier | None
    aliases: Annotated[list[Name], Field(max_length=MAX_ALIASES)]
    """Registry aliases this version holds after the event, e.g. ["champion"]."""
    run_id: Identifier | None
    trigger_alert_id: Identifier | None
    """``alert_id`` of the alert that triggered the retrain, if any."""
    metrics: Annotated[dict[Name, FiniteFloat], Field(max_length=MAX_METRICS)]
    reference: JsonDocument | Url | None
    """The new baseline profile as a JSON object (see ``schemas.profile``), or a URI to it."""
    reason: Text | None = None
    """Why a challenger was rejected (or rolled back)."""
    timestamp: Timestamp
    """When it happened."""


class DeadLetter(_Event):
    """A message that could not be processed (topic ``driftline.deadletter``)."""

    payload_base64: Base64Text
    """The raw message bytes, base64 (standard alphabet, padded)."""
    payload_truncated: bool = False
    """True when the payload was cut to ``MAX_DEAD_LETTER_PAYLOAD_BYTES`` to fit in Kafka."""
    source_topic: Annotated[str, Strict(), Field(min_length=1, max_length=MAX_TOPIC_LENGTH)]
    partition: Annotated[int, Strict(), Field(ge=-1)]
    """-1 when the message did not come from Kafka (e.g. a replay file)."""
    offset: Annotated[int, Strict(), Field(ge=-1)]
    """Kafka offset, or the line number for files; -1 when unknown."""
    error_class: Name
    """``json``, ``oversize``, ``validation``, or an exception class name."""
    error_message: Text
    received_at: Timestamp


# -- parsing at the boundary ---------------------------------------------------------------------

ErrorClass = Literal["json", "oversize", "validation"]
MAX_DEAD_LETTER_PAYLOAD_BYTES: Final = 512 << 10
"""Dead letters keep at most 512 KiB of the payload, so they fit Kafka's default 1 MB limit."""
MAX_REPORTED_ERRORS: Final = 10
_EventT = TypeVar("_EventT", bound=BaseModel)
_FRIENDLIER = {
    "missing": "required field is missing",
    "extra_forbidden": "unknown field, not in the v1 contract: remove it or fix its spelling",
}


class InvalidEvent(ValueError):
    """A message that is not a valid v1 event; ``error_class`` is json, oversize or validation."""

    def __init__(self, error_class: ErrorClass, message: str) -> None:
        super().__init__(message)
        self.error_class: ErrorClass = error_class


def _location(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _describe(exc: ValidationError, what: str) -> str:
    errors = exc.errors(include_url=False)
    parts = []
    for error in errors[:MAX_REPORTED_ERRORS]:
        message = _FRIENDLIER.get(error["type"], error["msg"]).removeprefix("Value error, ")
        where = _location(error["loc"])
        parts.append(f"{where}: {message}" if where else message)
    if len(errors) > MAX_REPORTED_ERRORS:
        parts.append(f"... and {len(errors) - MAX_REPORTED_ERRORS} more errors")
    return f"invalid {what}: " + "; ".join(parts)


def _load_object(raw: bytes | str | None, what: str, limit: int) -> dict[str, Any]:
    data = raw.encode() if isinstance(raw, str) else (raw or b"")
    if len(data) > limit:
        raise InvalidEvent(
            "oversize",
            f"{what} is {len(data)} bytes, more than the limit of {limit} bytes: "
            f"send smaller events or split the batch",
        )
    if not data:
        raise InvalidEvent("json", f"{what} is empty: expected a JSON object")
    try:
        loaded = pydantic_core.from_json(data)  # NaN/Infinity parse here; fields reject them
    except ValueError as exc:
        raise InvalidEvent("json", f"{what} is not valid JSON: {exc}") from None
    if not isinstance(loaded, dict):
        raise InvalidEvent(
            "validation", f"{what} must be a JSON object, got {type(loaded).__name__}"
        )
    return loaded


def _validate(event_type: type[_EventT], data: dict[str, Any], what: str) -> _EventT:
    try:
        return event_type.model_validate(data)
    except ValidationError as exc:
        raise InvalidEvent("validation", _describe(exc, what)) from None


def parse_event(raw: bytes | str | None, event_type: type[_EventT]) -> _EventT:
    """Parse one JSON message of ``event_type`` (<= ``MAX_EVENT_BYTES``) or raise InvalidEvent."""
    what = f"{event_type.__name__} message"
    return _validate(event_type, _load_object(raw, what, MAX_EVENT_BYTES), what)


def parse_prediction_payload(raw: bytes | str | None) -> list[PredictionEvent]:
    """A single PredictionEvent or a PredictionBatch envelope (it has ``predictions``).

    >>> parse_prediction_payload(b'{"event_id": "e", "model": "m", "features": {},'
    ...     b' "prediction": NaN, "timestamp": "2024-05-01T00:00:00Z"}')
    Traceback (most recent call last):
    ...
    schemas.events.InvalidEvent: invalid prediction event: prediction: must be a finite number...
    """
    data = _load_object(raw, "prediction payload", MAX_BATCH_BYTES)
    if "predictions" in data:
        return list(_validate(PredictionBatch, data, "prediction batch").predictions)
    size = len(raw.encode() if isinstance(raw, str) else (raw or b""))
    if size > MAX_EVENT_BYTES:
        raise InvalidEvent(
            "oversize",
            f"prediction event is {size} bytes, more than the limit of "
            f"{MAX_EVENT_BYTES} bytes for a single event: send smaller events",
        )
    return [_validate(PredictionEvent, data, "prediction event")]


def parse_label(raw: bytes | str | None) -> LabelEvent:
    """Parse one LabelEvent message or raise InvalidEvent."""
    return _validate(LabelEvent, _load_object(raw, "label event", MAX_EVENT_BYTES), "label event")


def to_json_bytes(event: BaseModel) -> bytes:
    """Compact UTF-8 JSON, the form every driftline message has on the wire."""
    return pydantic_core.to_json(event)


def deadletter_for(
    raw: bytes | None,
    topic: str,
    partition: int,
    offset: int,
    error: BaseException,
    now: datetime,
) -> DeadLetter:
    """The dead letter for a message that failed with ``error``; ``now`` is the wall clock."""
    payload = raw or b""
    error_class = error.error_class if isinstance(error, InvalidEvent) else type(error).__name__
    message = str(error) or type(error).__name__
    if len(message) > MAX_TEXT_LENGTH:
        message = message[: MAX_TEXT_LENGTH - 3] + "..."
    return DeadLetter(
        payload_base64=base64.b64encode(payload[:MAX_DEAD_LETTER_PAYLOAD_BYTES]).decode("ascii"),
        payload_truncated=len(payload) > MAX_DEAD_LETTER_PAYLOAD_BYTES,
        source_topic=topic,
        partition=partition,
        offset=offset,
        error_class=error_class[:MAX_NAME_LENGTH],
        error_message=message,
        received_at=now,
    )
