"""JSON Schema export of the v1 events: ``driftline schemas export schemas/json``.

The files are committed; a test fails when a model changes and the files were not regenerated.

>>> sorted(EVENT_MODELS)
['alert', 'dead_letter', 'label_event', 'model_event', 'prediction_batch', 'prediction_event']
>>> json_schemas()["label_event"]["$id"]
'urn:driftline:schema:label_event:v1'
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

from pydantic import BaseModel

from schemas.events import (
    Alert,
    DeadLetter,
    LabelEvent,
    ModelEvent,
    PredictionBatch,
    PredictionEvent,
)

__all__ = [
    "EVENT_MODELS",
    "JSON_SCHEMA_DIALECT",
    "SCHEMA_VERSION",
    "export_json_schemas",
    "json_schemas",
    "render_json_schema",
    "schema_file_name",
]

SCHEMA_VERSION: Final = 1
JSON_SCHEMA_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"
EVENT_MODELS: Final[dict[str, type[BaseModel]]] = {
    "prediction_event": PredictionEvent,
    "prediction_batch": PredictionBatch,
    "label_event": LabelEvent,
    "alert": Alert,
    "model_event": ModelEvent,
    "dead_letter": DeadLetter,
}


def schema_file_name(stem: str) -> str:
    """``prediction_event`` -> ``prediction_event.v1.schema.json``."""
    return f"{stem}.v{SCHEMA_VERSION}.schema.json"


def json_schemas() -> dict[str, dict[str, Any]]:
    """File stem -> JSON Schema (draft 2020-12) of what a producer may send."""
    schemas: dict[str, dict[str, Any]] = {}
    for stem, model in EVENT_MODELS.items():
        schema = model.model_json_schema(mode="validation")
        schema["$schema"] = JSON_SCHEMA_DIALECT
        schema["$id"] = f"urn:driftline:schema:{stem}:v{SCHEMA_VERSION}"
        schema["title"] = model.__name__
        schemas[stem] = schema
    return schemas


def render_json_schema(schema: dict[str, Any]) -> str:
    """The committed text form: sorted keys, two-space indent, trailing newline."""
    return json.dumps(schema, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def export_json_schemas(directory: Path) -> list[Path]:
    """Write ``<stem>.v1.schema.json`` for every event into ``directory``; returns the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for stem, schema in json_schemas().items():
        path = directory / schema_file_name(stem)
        path.write_text(render_json_schema(schema), encoding="utf-8")
        written.append(path)
    return written
