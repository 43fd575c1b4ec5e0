"""Constrained field types and size limits shared by the v1 events.

Every limit is a module constant so producers can check before sending and tests can probe the
edges. Numbers must be finite everywhere, ``bool`` is never coerced to a number (nor back), and
timestamps must carry a zone.

>>> from pydantic import TypeAdapter
>>> TypeAdapter(FeatureValue).validate_python(3)
3
>>> TypeAdapter(FeatureValue).validate_python(float("nan"))
Traceback (most recent call last):
...
pydantic_core._pydantic_core.ValidationError: 1 validation error for ...
  must be a finite number (NaN and infinity are not allowed), got nan...
"""

from __future__ import annotations

import base64
import binascii
import math
import numbers
from datetime import datetime
from typing import Annotated, Any, Final

from pydantic import (
    AfterValidator,
    AllowInfNan,
    BeforeValidator,
    Field,
    Strict,
    StrictBool,
    StrictInt,
    StringConstraints,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WithJsonSchema,
    WrapValidator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

__all__ = [
    "MAX_ALIASES",
    "MAX_BATCH_BYTES",
    "MAX_BATCH_PREDICTIONS",
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
    "Base64Text",
    "FeatureName",
    "FeatureValue",
    "FeatureValues",
    "FiniteFloat",
    "Identifier",
    "JsonDocument",
    "Name",
    "NonNegativeInt",
    "Outcome",
    "Probability",
    "SegmentKey",
    "SegmentValue",
    "Text",
    "Timestamp",
    "Url",
]

MAX_ID_LENGTH: Final = 256
"""event_id, batch_id, alert_id, fingerprint, versions, run ids."""
MAX_NAME_LENGTH: Final = 256
"""Model names, detector names, class names, metric names, aliases."""
MAX_FEATURE_NAME_LENGTH: Final = 256
MAX_STRING_VALUE_LENGTH: Final = 1024
"""String feature values, string predictions and labels."""
MAX_SEGMENT_VALUE_LENGTH: Final = 128
"""Segment keys and values are short on purpose: they become metric and alert dimensions."""
MAX_SEGMENT_KEYS: Final = 16
MAX_FEATURES: Final = 1_000
MAX_SCORES: Final = 1_000
MAX_METRICS: Final = 1_000
MAX_ALIASES: Final = 64
MAX_TEXT_LENGTH: Final = 4_096
"""Human sentences: alert summaries, error messages, reasons."""
MAX_URL_LENGTH: Final = 2_048
MAX_TOPIC_LENGTH: Final = 249
"""Kafka's own limit on topic names."""
MAX_BATCH_PREDICTIONS: Final = 10_000
MAX_EVENT_BYTES: Final = 1 << 20
"""A single event message larger than 1 MiB is rejected as oversize."""
MAX_BATCH_BYTES: Final = 16 << 20
"""A batch envelope larger than 16 MiB is rejected as oversize."""


def _bounded(max_length: int, min_length: int = 0) -> StringConstraints:
    return StringConstraints(min_length=min_length, max_length=max_length)


Identifier = Annotated[str, Strict(), _bounded(MAX_ID_LENGTH, min_length=1)]
Name = Annotated[str, Strict(), _bounded(MAX_NAME_LENGTH, min_length=1)]
FeatureName = Annotated[str, Strict(), _bounded(MAX_FEATURE_NAME_LENGTH, min_length=1)]
SegmentKey = Annotated[str, Strict(), _bounded(MAX_SEGMENT_VALUE_LENGTH, min_length=1)]
SegmentValue = Annotated[str, Strict(), _bounded(MAX_SEGMENT_VALUE_LENGTH)]
Text = Annotated[str, Strict(), _bounded(MAX_TEXT_LENGTH)]
Url = Annotated[str, Strict(), _bounded(MAX_URL_LENGTH, min_length=1)]
FiniteFloat = Annotated[float, Strict(), AllowInfNan(False)]
Probability = Annotated[float, Strict(), AllowInfNan(False), Field(ge=0.0, le=1.0)]
NonNegativeInt = Annotated[int, Strict(), Field(ge=0)]


def _is_numpy_bool(value: Any) -> bool:
    kind = type(value)
    return kind.__module__ == "numpy" and kind.__name__ in ("bool", "bool_")


_PLAIN = frozenset({bool, int, float, str, type(None)})


def _plain_python(value: Any) -> Any:
    """numpy (or other) scalars as the plain Python scalar they stand for; others unchanged."""
    if type(value) in _PLAIN:
        return value
    if isinstance(value, bool) or _is_numpy_bool(value):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return value


def _scalar_problem(value: Any, *, nullable: bool) -> PydanticCustomError:
    """One readable error instead of one per union member."""
    if isinstance(value, str):
        return PydanticCustomError(
            "string_too_long",
            "string of {length} characters is longer than the limit of {limit}",
            {"length": len(value), "limit": MAX_STRING_VALUE_LENGTH},
        )
    if isinstance(value, float) and not math.isfinite(value):
        return PydanticCustomError(
            "finite_number",
            "must be a finite number (NaN and infinity are not allowed), got {value}",
            {"value": value},
        )
    allowed = "a number, string, boolean or null" if nullable else "a number, string or boolean"
    return PydanticCustomError(
        "scalar_type",
        "must be {allowed}, got {kind}",
        {"allowed": allowed, "kind": type(value).__name__},
    )


# Strict union members, validated in Rust: the fast path. Python only runs on failures.
_ScalarText = Annotated[str, Strict(), StringConstraints(max_length=MAX_STRING_VALUE_LENGTH)]
_Scalar = StrictBool | StrictInt | FiniteFloat | _ScalarText
_UNION_MEMBER_TAGS = frozenset({"bool", "int", "float", "str", "constrained-str"})
_FEATURE_VALUE_SCHEMA = {
    "type": ["boolean", "number", "string", "null"],
    "maxLength": MAX_STRING_VALUE_LENGTH,
}
_OUTCOME_SCHEMA = {"type": ["boolean", "number", "string"], "maxLength": MAX_STRING_VALUE_LENGTH}


def _retry_as_plain(value: Any, handler: ValidatorFunctionWrapHandler, nullable: bool) -> Any:
    # Strict float would take numpy ints and bools as floats: convert those to Python first.
    plain = _plain_python(value)
    try:
        return handler(plain)
    except ValidationError:
        raise _scalar_problem(plain, nullable=nullable) from None


def _feature_value(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    return _retry_as_plain(value, handler, nullable=True)


def _outcome(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    return _retry_as_plain(value, handler, nullable=False)


def _feature_values(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    if isinstance(value, dict) and not all(type(item) in _PLAIN for item in value.values()):
        # numpy and other scalars: strict float would take numpy ints and bools as floats.
        value = {key: _plain_python(item) for key, item in value.items()}
    try:
        return handler(value)
    except ValidationError as exc:
        error = exc
    details: list[InitErrorDetails] = []
    reported: set[Any] = set()
    for line in error.errors():
        loc = line["loc"]
        if len(loc) == 2 and loc[1] in _UNION_MEMBER_TAGS and isinstance(value, dict):
            if loc[0] not in reported:  # collapse the four union-member errors into one
                reported.add(loc[0])
                item = value.get(loc[0])
                details.append(
                    {"type": _scalar_problem(item, nullable=True), "loc": loc[:1], "input": item}
                )
        else:
            detail: InitErrorDetails = {"type": line["type"], "loc": loc, "input": line["input"]}
            if "ctx" in line:
                detail["ctx"] = line["ctx"]
            details.append(detail)
    raise ValidationError.from_exception_data(error.title, details) from None


FeatureValue = Annotated[
    _Scalar | None, WrapValidator(_feature_value), WithJsonSchema(_FEATURE_VALUE_SCHEMA)
]
"""A feature's value: finite number, string (<= 1024 characters), boolean or null."""

FeatureValues = Annotated[
    dict[FeatureName, Annotated[_Scalar | None, WithJsonSchema(_FEATURE_VALUE_SCHEMA)]],
    Field(max_length=MAX_FEATURES),
    WrapValidator(_feature_values),
]
"""Feature name -> value; one Python call per event, not per feature, on the valid path."""

Outcome = Annotated[_Scalar, WrapValidator(_outcome), WithJsonSchema(_OUTCOME_SCHEMA)]
"""A prediction or a label: finite number (score, value), string (class) or boolean."""


def _timestamp_input(value: Any) -> Any:
    # Lax datetime parsing would also take epoch numbers; the contract says RFC 3339 text.
    if isinstance(value, datetime | str):
        return value
    raise PydanticCustomError(
        "timestamp_type",
        "must be an RFC 3339 date-time with a zone, e.g. '2024-05-01T12:00:00Z', got {kind}",
        {"kind": type(value).__name__},
    )


def _require_zone(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise PydanticCustomError(
            "timezone_aware",
            "has no zone: add one, e.g. 'Z' or '+02:00' (RFC 3339), or pass an aware "
            "datetime such as datetime.now(UTC)",
        )
    return value


Timestamp = Annotated[datetime, BeforeValidator(_timestamp_input), AfterValidator(_require_zone)]
"""An aware date-time (RFC 3339 with a zone on the wire)."""


def _require_json_document(value: dict[str, Any]) -> dict[str, Any]:
    """The reference profile must survive JSON: str keys, finite numbers, plain containers."""
    pending: list[tuple[str, Any]] = [("reference", value)]
    while pending:
        path, item = pending.pop()
        if isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str):
                    raise PydanticCustomError(
                        "json_document",
                        "{path} has a non-string key {key}",
                        {"path": path, "key": repr(key)},
                    )
                pending.append((f"{path}.{key}", child))
        elif isinstance(item, list | tuple):
            pending.extend((f"{path}[{index}]", child) for index, child in enumerate(item))
        elif isinstance(item, float) and not math.isfinite(item):
            raise PydanticCustomError(
                "finite_number",
                "{path} must be a finite number, got {value}",
                {"path": path, "value": item},
            )
        elif not (item is None or isinstance(item, bool | int | float | str)):
            raise PydanticCustomError(
                "json_document",
                "{path} is a {kind}, which JSON cannot carry",
                {"path": path, "kind": type(item).__name__},
            )
    return value


JsonDocument = Annotated[dict[str, Any], AfterValidator(_require_json_document)]
"""A JSON object: string keys, finite numbers, lists, strings, booleans, nulls."""


def _require_base64(value: str) -> str:
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise PydanticCustomError(
            "base64", "payload_base64 is not valid base64: {error}", {"error": str(exc)}
        ) from None
    return value


Base64Text = Annotated[str, Strict(), AfterValidator(_require_base64)]
