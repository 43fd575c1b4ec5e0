"""JSON Schemas of the v1 contract: committed files match the models; field names never change."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import BaseModel

import schemas
from schemas.events import (
    Alert,
    DeadLetter,
    LabelEvent,
    ModelEvent,
    PredictionBatch,
    PredictionEvent,
)
from schemas.export import (
    EVENT_MODELS,
    export_json_schemas,
    json_schemas,
    render_json_schema,
    schema_file_name,
)

COMMITTED = Path(schemas.__file__).parent / "json"
REGENERATE = "run `driftline schemas export schemas/json` and commit the result"


def test_committed_schema_files_match_the_models() -> None:
    expected = {schema_file_name(stem): render_json_schema(s) for stem, s in json_schemas().items()}
    found = {path.name: path.read_text(encoding="utf-8") for path in COMMITTED.glob("*.json")}
    assert sorted(found) == sorted(expected), f"schema files differ from the models: {REGENERATE}"
    for name, text in expected.items():
        assert found[name] == text, f"{name} is out of date with the model: {REGENERATE}"


def test_export_writes_one_stable_file_per_event(tmp_path: Path) -> None:
    paths = export_json_schemas(tmp_path / "out")
    assert sorted(path.name for path in paths) == sorted(
        f"{stem}.v1.schema.json" for stem in EVENT_MODELS
    )
    for path in paths:
        text = path.read_text(encoding="utf-8")
        schema = json.loads(text)
        assert text.endswith("}\n") and text == render_json_schema(schema)  # sorted, indent 2
        stem = path.name.removesuffix(".v1.schema.json")
        assert schema["$id"] == f"urn:driftline:schema:{stem}:v1"
        assert schema["title"] == EVENT_MODELS[stem].__name__
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["additionalProperties"] is False
    assert export_json_schemas(tmp_path / "out") == paths  # idempotent


@pytest.mark.parametrize(
    "stem",
    ["prediction_event", "prediction_batch", "label_event", "alert", "model_event", "dead_letter"],
)
def test_every_event_schema_pins_schema_version_1(stem: str) -> None:
    assert json_schemas()[stem]["properties"]["schema_version"]["const"] == 1


# Public names: external producers and on-call tooling depend on them. Extend, never rename.
CONTRACT: dict[type[BaseModel], set[str]] = {
    PredictionEvent: {
        "schema_version",
        "event_id",
        "model",
        "model_version",
        "timestamp",
        "features",
        "prediction",
        "scores",
        "segment",
    },
    PredictionBatch: {"schema_version", "batch_id", "model", "model_version", "predictions"},
    LabelEvent: {"schema_version", "event_id", "model", "timestamp", "label"},
    Alert: {
        "schema_version",
        "alert_id",
        "fingerprint",
        "status",
        "severity",
        "model",
        "model_version",
        "kind",
        "feature",
        "segment",
        "detector",
        "statistic",
        "threshold",
        "p_value",
        "window",
        "reference",
        "fired_at",
        "emitted_at",
        "summary",
        "runbook_url",
    },
    ModelEvent: {
        "schema_version",
        "event_id",
        "type",
        "model",
        "version",
        "aliases",
        "run_id",
        "trigger_alert_id",
        "metrics",
        "reference",
        "reason",
        "timestamp",
    },
    DeadLetter: {
        "schema_version",
        "payload_base64",
        "payload_truncated",
        "source_topic",
        "partition",
        "offset",
        "error_class",
        "error_message",
        "received_at",
    },
}


@pytest.mark.parametrize("model", list(CONTRACT), ids=lambda model: model.__name__)
def test_v1_field_names_are_only_ever_extended(model: type[BaseModel]) -> None:
    names = set(model.model_fields)
    assert CONTRACT[model] <= names, f"renamed or removed v1 fields: {CONTRACT[model] - names}"


def test_alert_enumerations_are_the_contract() -> None:
    properties = json_schemas()["alert"]["properties"]
    kinds = set(properties["kind"]["enum"])
    assert kinds == {
        "feature_drift",
        "prediction_drift",
        "performance",
        "data_quality",
        "label_coverage",
        "traffic",
    }
    assert set(properties["status"]["enum"]) == {"firing", "resolved"}
    assert set(properties["severity"]["enum"]) == {"warning", "critical"}


def test_package_exports_are_importable() -> None:
    for name in schemas.__all__:
        assert getattr(schemas, name) is not None
