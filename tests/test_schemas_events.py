"""The v1 events: what is accepted, what is rejected, and that messages name the field."""

from __future__ import annotations

import base64
import json
import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas.events import (
    MAX_BATCH_BYTES,
    MAX_BATCH_PREDICTIONS,
    MAX_DEAD_LETTER_PAYLOAD_BYTES,
    MAX_EVENT_BYTES,
    MAX_FEATURES,
    MAX_ID_LENGTH,
    MAX_SEGMENT_VALUE_LENGTH,
    MAX_STRING_VALUE_LENGTH,
    Alert,
    DeadLetter,
    InvalidEvent,
    LabelEvent,
    ModelEvent,
    PredictionEvent,
    deadletter_for,
    parse_event,
    parse_label,
    parse_prediction_payload,
    to_json_bytes,
)

T0 = "2024-05-01T12:00:00Z"


def prediction(**changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "schema_version": 1,
        "event_id": "e-1",
        "model": "churn",
        "model_version": "3",
        "timestamp": T0,
        "features": {"age": 41, "spend": 12.5, "plan": "pro", "active": True, "coupon": None},
        "prediction": 0.83,
        "scores": {"0": 0.17, "1": 0.83},
        "segment": {"country": "DE"},
    }
    event.update(changes)
    return event


def alert(**changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "alert_id": "a-1",
        "fingerprint": "fp-1",
        "status": "firing",
        "severity": "warning",
        "model": "churn",
        "model_version": "3",
        "kind": "feature_drift",
        "feature": "age",
        "segment": None,
        "detector": "psi",
        "statistic": 0.31,
        "threshold": 0.2,
        "p_value": None,
        "window": {"start": T0, "end": "2024-05-01T13:00:00Z", "count": 500},
        "reference": {"source": "warmup", "model_version": "3", "count": 1000},
        "fired_at": "2024-05-01T12:59:59Z",
        "emitted_at": "2024-05-01T13:00:02+02:00",
        "summary": "age drifted: PSI 0.31 > 0.2 over the last 500 predictions.",
    }
    event.update(changes)
    return event


def model_event(**changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": "m-1",
        "type": "promoted",
        "model": "churn",
        "version": "4",
        "aliases": ["champion"],
        "run_id": "r1",
        "trigger_alert_id": "a-1",
        "metrics": {"roc_auc": 0.91, "log_loss": 0.3},
        "reference": {"features": {"age": {"edges": [0, 18, 65], "counts": [1, 2]}}},
        "timestamp": T0,
    }
    event.update(changes)
    return event


def raw(event: dict[str, Any]) -> bytes:
    return json.dumps(event).encode()


def rejected(payload: bytes) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as caught:
        parse_prediction_payload(payload)
    return caught.value


# -- predictions -----------------------------------------------------------------------------------


def test_valid_prediction_keeps_every_value_and_its_type() -> None:
    [event] = parse_prediction_payload(raw(prediction()))
    assert event.timestamp == datetime(2024, 5, 1, 12, tzinfo=UTC)
    assert event.features == {
        "age": 41,
        "spend": 12.5,
        "plan": "pro",
        "active": True,
        "coupon": None,
    }
    assert type(event.features["age"]) is int
    assert type(event.features["active"]) is bool
    assert event.scores == {"0": 0.17, "1": 0.83}
    assert event.schema_version == 1


def test_minimal_prediction_needs_no_optional_fields() -> None:
    minimal = {k: v for k, v in prediction().items() if k not in ("scores", "segment")}
    del minimal["model_version"], minimal["schema_version"]
    [event] = parse_prediction_payload(raw(minimal))
    assert event.scores is None and event.segment is None and event.model_version is None


def test_round_trip_json_model_json_is_stable() -> None:
    first = to_json_bytes(parse_prediction_payload(raw(prediction()))[0])
    [again] = parse_prediction_payload(first)
    assert to_json_bytes(again) == first
    assert json.loads(first) == prediction()
    assert b" " not in first.replace(b"Z", b"")  # compact


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"event_id": ""}, "event_id"),
        ({"event_id": 17}, "event_id"),
        ({"event_id": "x" * (MAX_ID_LENGTH + 1)}, "event_id"),
        ({"model": None}, "model"),
        ({"timestamp": "2024-05-01T12:00:00"}, "timestamp"),
        ({"timestamp": 1714564800}, "timestamp"),
        ({"timestamp": "yesterday"}, "timestamp"),
        ({"features": {"age": [1, 2]}}, "features.age"),
        ({"features": {"age": {"v": 1}}}, "features.age"),
        ({"features": {"": 1}}, "features"),
        ({"features": {"x" * 257: 1}}, "features"),
        ({"features": {"plan": "p" * (MAX_STRING_VALUE_LENGTH + 1)}}, "features.plan"),
        ({"features": {f"f{i}": i for i in range(MAX_FEATURES + 1)}}, "features"),
        ({"features": None}, "features"),
        ({"prediction": None}, "prediction"),
        ({"prediction": [0.1]}, "prediction"),
        ({"scores": {"1": True}}, "scores.1"),
        ({"scores": {"1": 1.2}}, "scores.1"),
        ({"scores": {"1": -0.1}}, "scores.1"),
        ({"scores": {"1": "0.5"}}, "scores.1"),
        ({"segment": {"country": 49}}, "segment.country"),
        ({"segment": {"country": "x" * (MAX_SEGMENT_VALUE_LENGTH + 1)}}, "segment.country"),
        ({"schema_version": 2}, "schema_version"),
        ({"schema_version": True}, "schema_version"),
        ({"schema_version": "1"}, "schema_version"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_invalid_prediction_is_rejected_naming_the_field(
    changes: dict[str, Any], field: str
) -> None:
    error = rejected(raw(prediction(**changes)))
    assert error.error_class == "validation"
    assert f"{field}:" in str(error) or f"{field}." in str(error), str(error)


@pytest.mark.parametrize("missing", ["event_id", "model", "timestamp", "features", "prediction"])
def test_missing_required_field_is_named(missing: str) -> None:
    event = prediction()
    del event[missing]
    assert f"{missing}: required field is missing" in str(rejected(raw(event)))


def test_unknown_field_message_says_what_to_do() -> None:
    assert "remove it or fix its spelling" in str(rejected(raw(prediction(colour="red"))))


@pytest.mark.parametrize(
    ("literal", "field"),
    [
        (b'"prediction": NaN', "prediction"),
        (b'"prediction": Infinity', "prediction"),
        (b'"prediction": -Infinity', "prediction"),
        (b'"features": {"age": NaN}', "features.age"),
        (b'"scores": {"1": NaN}', "scores.1"),
    ],
)
def test_nan_and_infinity_json_literals_are_rejected(literal: bytes, field: str) -> None:
    key = literal.split(b":")[0]
    event = {k: v for k, v in prediction().items() if f'"{k}"'.encode() != key}
    payload = raw(event)[:-1] + b", " + literal + b"}"
    json.loads(payload)  # Python's json module accepts these literals: the models must not
    error = rejected(payload)
    assert error.error_class == "validation"
    assert f"{field}: " in str(error) and "finite" in str(error), str(error)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nan_and_infinity_python_floats_are_rejected(bad: float) -> None:
    with pytest.raises(ValidationError, match="finite"):
        PredictionEvent.model_validate(prediction(features={"age": bad}))
    with pytest.raises(ValidationError, match="finite"):
        PredictionEvent.model_validate(prediction(prediction=bad))
    with pytest.raises(ValidationError, match="finite"):
        PredictionEvent.model_validate(prediction(scores={"1": bad}))


def test_bool_is_never_coerced_to_number_or_back() -> None:
    [event] = parse_prediction_payload(
        raw(prediction(prediction=True, features={"a": 1, "b": 1.0}))
    )
    assert event.prediction is True
    assert type(event.features["a"]) is int and type(event.features["b"]) is float
    label = parse_label(
        b'{"event_id":"e","model":"m","timestamp":"' + T0.encode() + b'","label":1}'
    )
    assert label.label == 1 and type(label.label) is int
    label = parse_label(
        b'{"event_id":"e","model":"m","timestamp":"' + T0.encode() + b'","label":"1"}'
    )
    assert label.label == "1"


def test_numpy_scalars_become_plain_python_values() -> None:
    event = PredictionEvent.model_validate(
        prediction(features={"a": np.int64(3), "b": np.float32(0.5), "c": np.bool_(True)})
    )
    assert event.features == {"a": 3, "b": 0.5, "c": True}
    assert [type(v) for v in event.features.values()] == [int, float, bool]


def test_naive_datetime_from_python_names_the_field() -> None:
    with pytest.raises(ValidationError) as caught:
        PredictionEvent.model_validate(prediction(timestamp=datetime(2024, 5, 1)))
    assert caught.value.errors()[0]["loc"] == ("timestamp",)
    assert "no zone" in str(caught.value)


def test_other_zones_are_kept_and_compare_correctly() -> None:
    [event] = parse_prediction_payload(raw(prediction(timestamp="2024-05-01T14:00:00+02:00")))
    assert event.timestamp.utcoffset() == timedelta(hours=2)
    assert event.timestamp == datetime(2024, 5, 1, 12, tzinfo=UTC)


def test_events_are_frozen() -> None:
    [event] = parse_prediction_payload(raw(prediction()))
    with pytest.raises(ValidationError):
        setattr(event, "model", "other")  # noqa: B010 (frozen models refuse assignment)


# -- payload handling ------------------------------------------------------------------------------


@pytest.mark.parametrize("payload", [b"{", b"", None, b"\xff\xfe{}", b"{'a': 1}"])
def test_bad_json_is_a_json_error(payload: bytes | None) -> None:
    error = rejected(payload)  # type: ignore[arg-type]
    assert error.error_class == "json"
    assert "JSON" in str(error)


def test_json_that_is_not_an_object_is_a_validation_error() -> None:
    error = rejected(b"[1, 2]")
    assert error.error_class == "validation" and "must be a JSON object" in str(error)


def test_single_event_over_one_mebibyte_is_oversize() -> None:
    payload = raw(prediction())[:-1] + b" " * MAX_EVENT_BYTES + b"}"
    error = rejected(payload)
    assert error.error_class == "oversize"
    assert str(MAX_EVENT_BYTES) in str(error)


def test_anything_over_sixteen_mebibytes_is_oversize_before_parsing() -> None:
    error = rejected(b"{" + b" " * MAX_BATCH_BYTES + b"}")
    assert error.error_class == "oversize"


def test_batch_envelope_returns_its_predictions_even_above_the_single_event_limit() -> None:
    events = [prediction(event_id=f"e-{i}", features={"x" * 50: i}) for i in range(8_000)]
    payload = raw(
        {"batch_id": "b-1", "model": "churn", "model_version": "3", "predictions": events}
    )
    assert MAX_EVENT_BYTES < len(payload) < MAX_BATCH_BYTES
    parsed = parse_prediction_payload(payload)
    assert [event.event_id for event in parsed] == [f"e-{i}" for i in range(8_000)]


def test_batch_of_another_model_names_the_index() -> None:
    events = [prediction(event_id="a"), prediction(event_id="b", model="fraud")]
    error = rejected(
        raw({"batch_id": "b", "model": "churn", "model_version": "3", "predictions": events})
    )
    assert "predictions[1].model is 'fraud'" in str(error)
    assert "one batch per model" in str(error)


def test_batch_with_another_model_version_names_the_index() -> None:
    events = [prediction(event_id="a", model_version="2")]
    error = rejected(
        raw({"batch_id": "b", "model": "churn", "model_version": "3", "predictions": events})
    )
    assert "predictions[0].model_version is '2'" in str(error)


def test_batch_errors_name_the_prediction_and_the_field() -> None:
    events = [prediction(event_id="a"), prediction(event_id="b", features={"age": "x" * 2000})]
    error = rejected(
        raw({"batch_id": "b", "model": "churn", "model_version": "3", "predictions": events})
    )
    assert "predictions[1].features.age:" in str(error)


@pytest.mark.parametrize("count", [0, MAX_BATCH_PREDICTIONS + 1])
def test_batch_size_is_bounded(count: int) -> None:
    event = json.dumps(prediction())
    payload = (
        '{"batch_id":"b","model":"churn","model_version":"3","predictions":['
        + ",".join([event] * count)
        + "]}"
    ).encode()
    error = rejected(payload)
    assert error.error_class == "validation" and "predictions:" in str(error)


def test_many_errors_are_summarised() -> None:
    events = [prediction(event_id="")] * 30
    error = rejected(
        raw({"batch_id": "b", "model": "churn", "model_version": "3", "predictions": events})
    )
    assert "and 20 more errors" in str(error)


# -- labels, alerts, model events, dead letters ----------------------------------------------------


def test_label_round_trip_and_rejections() -> None:
    label = parse_label(raw({"event_id": "e-1", "model": "churn", "timestamp": T0, "label": True}))
    assert label.label is True and parse_label(to_json_bytes(label)) == label
    with pytest.raises(InvalidEvent, match="label: must be a finite number"):
        parse_label(b'{"event_id":"e","model":"m","timestamp":"2024-05-01T00:00:00Z","label":NaN}')
    with pytest.raises(InvalidEvent, match="timestamp: has no zone"):
        parse_label(
            raw({"event_id": "e", "model": "m", "timestamp": "2024-05-01T00:00", "label": 1})
        )
    with pytest.raises(InvalidEvent, match="label: required field is missing"):
        parse_label(raw({"event_id": "e", "model": "m", "timestamp": T0}))


def test_alert_round_trip() -> None:
    parsed = parse_event(raw(alert()), Alert)
    assert parsed.window.count == 500
    assert parsed.emitted_at.utcoffset() == timedelta(hours=2)
    assert parsed.reference.source == "warmup" and parsed.reference.profile_id is None
    assert parse_event(to_json_bytes(parsed), Alert) == parsed


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"statistic": float("nan")}, "statistic:"),
        ({"threshold": float("inf")}, "threshold:"),
        ({"p_value": 1.5}, "p_value:"),
        ({"kind": "vibes"}, "kind:"),
        ({"status": "pending"}, "status:"),
        ({"fired_at": "2024-05-01T12:00:00"}, "fired_at:"),
        ({"window": {"start": T0, "end": "2024-05-01T11:00:00Z", "count": 1}}, "swap them"),
        ({"window": {"start": T0, "end": T0, "count": -1}}, "window.count:"),
        (
            {"reference": {"source": "yesterday", "model_version": None, "count": None}},
            "reference.source:",
        ),
        ({"summary": "s" * 5000}, "summary:"),
    ],
)
def test_invalid_alerts_name_the_field(changes: dict[str, Any], expected: str) -> None:
    payload = json.dumps(alert(**changes), allow_nan=True).encode()
    with pytest.raises(InvalidEvent) as caught:
        parse_event(payload, Alert)
    assert expected in str(caught.value), str(caught.value)


def test_model_event_reference_is_a_json_object_or_a_uri() -> None:
    event = parse_event(raw(model_event()), ModelEvent)
    assert isinstance(event.reference, dict)
    assert parse_event(to_json_bytes(event), ModelEvent) == event
    uri = parse_event(raw(model_event(reference="s3://bucket/profile.json")), ModelEvent)
    assert uri.reference == "s3://bucket/profile.json"
    rejected_one = parse_event(
        raw(model_event(type="rejected", reason="AUC 0.80 < 0.82")), ModelEvent
    )
    assert rejected_one.reason == "AUC 0.80 < 0.82"


def test_model_event_rejects_nan_deep_inside_the_reference_and_in_metrics() -> None:
    payload = raw(model_event(reference={"features": {"age": {"edges": [0, 1]}}}))
    payload = payload.replace(b"[0, 1]", b"[0, NaN]")
    with pytest.raises(InvalidEvent, match=r"reference.features.age.edges\[1\] must be a finite"):
        parse_event(payload, ModelEvent)
    with pytest.raises(InvalidEvent, match=r"metrics\.auc:"):
        parse_event(raw(model_event(metrics={"auc": 0.9})).replace(b"0.9", b"Infinity"), ModelEvent)
    with pytest.raises(ValidationError, match="which JSON cannot carry"):
        ModelEvent.model_validate(model_event(reference={"when": datetime.now(UTC)}))


def test_deadletter_keeps_the_raw_bytes_and_the_error() -> None:
    payload = b'{"event_id": NaN}'
    try:
        parse_prediction_payload(payload)
    except InvalidEvent as exc:
        error = exc
    now = datetime(2024, 5, 1, tzinfo=UTC)
    letter = deadletter_for(payload, "driftline.predictions", 3, 42, error, now)
    assert base64.b64decode(letter.payload_base64) == payload
    assert letter.error_class == "validation" and "event_id" in letter.error_message
    assert (letter.partition, letter.offset, letter.received_at) == (3, 42, now)
    assert parse_event(to_json_bytes(letter), DeadLetter) == letter


def test_deadletter_of_other_errors_tombstones_and_huge_payloads() -> None:
    now = datetime(2024, 5, 1, tzinfo=timezone(timedelta(hours=-5)))
    letter = deadletter_for(None, "t", 0, 1, KeyError("boom"), now)
    assert letter.error_class == "KeyError" and letter.payload_base64 == ""
    huge = b"x" * (MAX_DEAD_LETTER_PAYLOAD_BYTES + 10)
    letter = deadletter_for(huge, "t", 0, 1, RuntimeError("m" * 10_000), now)
    assert letter.payload_truncated
    assert len(base64.b64decode(letter.payload_base64)) == MAX_DEAD_LETTER_PAYLOAD_BYTES
    assert len(letter.error_message) <= 4096
    with pytest.raises(ValidationError, match="not valid base64"):
        DeadLetter.model_validate({**letter.model_dump(), "payload_base64": "%%%"})


# -- property: every valid event survives the wire -------------------------------------------------

names = st.text(min_size=1, max_size=20)
finite = st.floats(allow_nan=False, allow_infinity=False)
feature_values = st.one_of(st.none(), st.booleans(), st.integers(), finite, st.text(max_size=30))
outcomes = st.one_of(st.booleans(), st.integers(), finite, st.text(max_size=30))
timestamps = st.datetimes(
    min_value=datetime(1970, 1, 2),
    max_value=datetime(2200, 1, 1),
    timezones=st.sampled_from(
        [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]
    ),
)
predictions = st.builds(
    PredictionEvent,
    event_id=names,
    model=names,
    model_version=st.none() | names,
    timestamp=timestamps,
    features=st.dictionaries(names, feature_values, max_size=8),
    prediction=outcomes,
    scores=st.none() | st.dictionaries(names, st.floats(0, 1), max_size=4),
    segment=st.none() | st.dictionaries(names, st.text(max_size=10), max_size=3),
)


@settings(max_examples=150, deadline=None)
@given(predictions)
def test_generated_predictions_round_trip_through_json(event: PredictionEvent) -> None:
    wire = to_json_bytes(event)
    assert parse_prediction_payload(wire) == [event]
    [again] = parse_prediction_payload(wire)
    assert [type(v) for v in again.features.values()] == [type(v) for v in event.features.values()]
    assert to_json_bytes(again) == wire


@settings(max_examples=50, deadline=None)
@given(st.builds(LabelEvent, event_id=names, model=names, timestamp=timestamps, label=outcomes))
def test_generated_labels_round_trip_through_json(label: LabelEvent) -> None:
    assert parse_label(to_json_bytes(label)) == label
