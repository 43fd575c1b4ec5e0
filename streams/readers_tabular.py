"""Column layout of tabular (CSV, Parquet) prediction and label files, for ``streams.readers``.

One column per field: ``event_id``, ``model``, ``model_version``, ``timestamp``, ``prediction``
(``label`` in a labels file), ``scores.<class>``, ``segment.<key>``; ``features.<name>`` or any
other column is a feature. Whole ``features``/``scores``/``segment`` columns may hold objects
(Parquet structs or maps, JSON text in CSV). CSV has no types, so cells are typed by looks.

>>> build, ignored, missing = plan_columns(
...     ["event_id", "model", "timestamp", "prediction", "amount", "segment.country"], "prediction")
>>> build([typed_cell(c) for c in ("7", "m", "2024-05-01T00:00:00Z", "0.5", "12", "DE")],
...       ["7", "m", "2024-05-01T00:00:00Z", "0.5", "12", "DE"])["features"], missing
({'amount': 12}, [])
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any, Final, Literal

__all__ = ["RowBuilder", "native_value", "plan_columns", "typed_cell"]

EventKind = Literal["prediction", "label"]
RowBuilder = Callable[[Sequence[Any], Sequence[Any]], dict[str, Any]]
"""(typed values, raw values) of one row -> the event as a dict, ready for validation."""

TOP_LEVEL: Final[dict[EventKind, frozenset[str]]] = {
    "prediction": frozenset(
        {"schema_version", "event_id", "model", "model_version", "timestamp", "prediction"}
    ),
    "label": frozenset({"schema_version", "event_id", "model", "timestamp", "label"}),
}
_NESTED: Final = ("features", "scores", "segment")
_TEXT_FIELDS: Final = frozenset({"event_id", "model", "model_version", "timestamp"})


def plan_columns(
    header: Sequence[str], kind: EventKind, default_model: str | None = None
) -> tuple[RowBuilder, list[str], list[str]]:
    """A row builder for ``header``, the columns it ignores and the required ones missing.

    A ``label`` column in a predictions file is ignored (it is not a feature); columns a
    labels file has beyond the label's fields are ignored too.
    """
    top = TOP_LEVEL[kind]
    plan: list[tuple[int, str, str | None]] = []  # (column index, field, key inside the field)
    ignored: list[str] = []
    for index, column in enumerate(header):
        prefix, _, key = column.partition(".")
        if column in top:
            plan.append((index, column, None))
        elif kind == "prediction" and prefix in _NESTED and key:
            plan.append((index, prefix, key))
        elif kind == "prediction" and column in _NESTED:
            plan.append((index, column, ""))
        elif kind == "prediction" and column != "label":
            plan.append((index, "features", column))
        else:
            ignored.append(column)
    present = {name for _, name, key in plan if key is None}
    required = {"event_id", "timestamp", kind} | ({"model"} if default_model is None else set())
    missing = sorted(required - present)

    def build(values: Sequence[Any], raw: Sequence[Any]) -> dict[str, Any]:
        event: dict[str, Any] = {"model": default_model} if default_model else {}
        nested: dict[str, dict[str, Any]] = {"features": {}} if kind == "prediction" else {}
        for index, name, key in plan:
            if key is None:
                value = raw[index] if name in _TEXT_FIELDS else values[index]
                if value is None or value == "":
                    continue
                event[name] = _text(value) if name in _TEXT_FIELDS else value
            elif key == "":
                for inner, value in _object(raw[index]).items():
                    _put(nested, name, inner, value)
            else:
                _put(nested, name, key, raw[index] if name == "segment" else values[index])
        event.update(nested)
        return event

    return build, ignored, missing


def _put(nested: dict[str, dict[str, Any]], name: str, key: str, value: Any) -> None:
    if name == "features":
        nested[name][key] = value
    elif value is not None and value != "":  # a missing score or segment key is left out
        nested.setdefault(name, {})[key] = _text(value) if name == "segment" else value


@lru_cache(maxsize=1 << 16)
def typed_cell(text: str) -> Any:
    """A CSV cell typed by its looks; NaN reads as null (tables cannot tell them apart).

    >>> [typed_cell(c) for c in ("", "TRUE", "3", "2.5", "nan", "DE")]
    [None, True, 3, 2.5, None, 'DE']
    """
    if text == "":
        return None
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return text
    return None if math.isnan(number) else number


def native_value(value: Any) -> Any:
    """A Parquet value as the event wants it: NaN as null, Arrow map pairs as a dict."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, list) and all(isinstance(i, tuple) and len(i) == 2 for i in value):
        return {str(key): native_value(item) for key, item in value}
    return value


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _object(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return {str(key): native_value(item) for key, item in value.items()}
    if isinstance(value, str) and value.strip().startswith("{"):
        try:
            loaded = json.loads(value)
        except ValueError:
            return {}
        return loaded if isinstance(loaded, dict) else {}
    return {}
