"""driftline's wire contract (v1 events), their JSON Schemas, and runtime settings.

Imports nothing else of driftline; everything else imports it.
"""

from __future__ import annotations

from schemas.events import (
    MAX_BATCH_BYTES,
    MAX_BATCH_PREDICTIONS,
    MAX_EVENT_BYTES,
    Alert,
    AlertKind,
    AlertReference,
    AlertWindow,
    DeadLetter,
    InvalidEvent,
    LabelEvent,
    ModelEvent,
    ModelEventType,
    PredictionBatch,
    PredictionEvent,
    deadletter_for,
    parse_event,
    parse_label,
    parse_prediction_payload,
    to_json_bytes,
)
from schemas.export import EVENT_MODELS, export_json_schemas, json_schemas
from schemas.settings import (
    KafkaSettings,
    MetricsSettings,
    MlflowSettings,
    Settings,
    SettingsError,
    TopicSettings,
)

__all__ = [
    "EVENT_MODELS",
    "MAX_BATCH_BYTES",
    "MAX_BATCH_PREDICTIONS",
    "MAX_EVENT_BYTES",
    "Alert",
    "AlertKind",
    "AlertReference",
    "AlertWindow",
    "DeadLetter",
    "InvalidEvent",
    "KafkaSettings",
    "LabelEvent",
    "MetricsSettings",
    "MlflowSettings",
    "ModelEvent",
    "ModelEventType",
    "PredictionBatch",
    "PredictionEvent",
    "Settings",
    "SettingsError",
    "TopicSettings",
    "deadletter_for",
    "export_json_schemas",
    "json_schemas",
    "parse_event",
    "parse_label",
    "parse_prediction_payload",
    "to_json_bytes",
]
