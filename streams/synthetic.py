"""Seeded example streams with known drift: for tests, the demo and the benchmarks.

A binary classifier ("fraud-scorer") scores events with a fixed logistic model. Labels come
from the true concept, which equals the model's until ``concept_change_at``, where half of
the numeric coefficients flip sign, so accuracy falls. ``shift_at`` moves one numeric feature
by ``shift_sigma`` standard deviations (covariate shift); ``categorical_shift_at`` reverses
one categorical feature's category frequencies. The base samples are drawn before any change
is applied, so streams with the same seed differ only where a change was asked for.

>>> predictions, labels = generate_stream(seed=7, n_events=3, features=4, label_fraction=1.0)
>>> sorted(predictions[0]["features"]), predictions[0]["timestamp"]
(['account_age_days', 'amount', 'country', 'tx_count_24h'], '2024-01-01T00:00:00Z')
>>> generate_stream(seed=7, n_events=3, features=4) == (predictions, labels)
True
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np

__all__ = [
    "FORMATS",
    "FeatureSpec",
    "StreamFormat",
    "feature_specs",
    "flatten_event",
    "generate_stream",
    "write_stream",
]

StreamFormat = Literal["jsonl", "jsonl.gz", "csv", "csv.gz", "parquet"]
FORMATS: Final[tuple[StreamFormat, ...]] = ("jsonl", "jsonl.gz", "csv", "csv.gz", "parquet")
DEFAULT_START: Final = datetime(2024, 1, 1, tzinfo=UTC)

# (name, mean, std) of numeric features and (name, categories) of categorical ones; past the
# named ones, features are num_<i> / cat_<i>.
_NUMERIC: Final = (
    ("amount", 80.0, 30.0),
    ("account_age_days", 400.0, 150.0),
    ("tx_count_24h", 5.0, 2.0),
    ("distance_km", 12.0, 6.0),
    ("merchant_risk", 0.3, 0.1),
    ("session_seconds", 240.0, 90.0),
    ("device_age_days", 200.0, 80.0),
)
_CATEGORICAL: Final = (
    ("country", ("US", "DE", "FR", "GB", "BR", "IN")),
    ("channel", ("web", "app", "pos")),
    ("card_type", ("debit", "credit", "prepaid")),
)
_RESERVED: Final = frozenset(
    {"schema_version", "event_id", "model", "model_version", "timestamp", "prediction", "label"}
)


@dataclass(frozen=True)
class FeatureSpec:
    """One generated feature; ``weight`` (numeric) or ``weights`` (per category) feed the logit."""

    name: str
    kind: Literal["numeric", "categorical"]
    mean: float = 0.0
    std: float = 1.0
    categories: tuple[str, ...] = ()
    probabilities: tuple[float, ...] = ()
    weight: float = 0.0
    weights: tuple[float, ...] = ()


def feature_specs(features: int) -> list[FeatureSpec]:
    """The feature layout for ``features`` features: about 30 % categorical, the rest numeric.

    >>> [(s.name, s.kind) for s in feature_specs(3)]
    [('amount', 'numeric'), ('account_age_days', 'numeric'), ('country', 'categorical')]
    """
    if features < 1:
        raise ValueError(f"features must be at least 1, got {features}")
    n_categorical = features * 3 // 10 if features >= 4 else (1 if features >= 2 else 0)
    specs: list[FeatureSpec] = []
    for i in range(features - n_categorical):
        name, mean, std = _NUMERIC[i] if i < len(_NUMERIC) else (f"num_{i}", 0.0, 1.0)
        weight = (0.6 + 0.9 * ((i * 7) % 5) / 4) * (1 if i % 2 == 0 else -1)
        specs.append(FeatureSpec(name, "numeric", mean=mean, std=std, weight=weight))
    for j in range(n_categorical):
        categories: tuple[str, ...]
        if j < len(_CATEGORICAL):
            name, categories = _CATEGORICAL[j]
        else:
            name, categories = f"cat_{j}", tuple(f"c{k}" for k in range(4))
        raw = np.arange(len(categories), 0, -1, dtype=float) ** 1.5
        probabilities = tuple(float(p) for p in raw / raw.sum())
        weights = tuple(float(w) for w in np.linspace(-0.8, 0.8, len(categories)))
        specs.append(
            FeatureSpec(
                name,
                "categorical",
                categories=categories,
                probabilities=probabilities,
                weights=weights,
            )
        )
    return specs


def generate_stream(
    seed: int,
    n_events: int,
    model: str = "fraud-scorer",
    features: int = 10,
    shift_at: int | None = None,
    shift_feature: str | None = None,
    shift_sigma: float = 1.0,
    categorical_shift_at: int | None = None,
    concept_change_at: int | None = None,
    label_delay_seconds: float = 3600.0,
    label_fraction: float = 1.0,
    *,
    model_version: str | None = "1",
    start: datetime = DEFAULT_START,
    interval_seconds: float = 1.0,
    null_rate: float = 0.0,
    categorical_shift_feature: str | None = None,
    shift_until: int | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(predictions, labels) as v1 JSON dicts; predictions in event-time order, labels too.

    ``shift_feature`` defaults to the first numeric feature and ``categorical_shift_feature``
    to the first categorical one; the covariate shift lasts until event ``shift_until``
    (exclusive; default: the end). Each prediction gets a label with probability
    ``label_fraction``, ``label_delay_seconds`` x U(0.5, 1.5) after it.
    """
    if n_events < 0 or not 0.0 <= label_fraction <= 1.0 or not 0.0 <= null_rate < 1.0:
        raise ValueError("need n_events >= 0, label_fraction in [0, 1] and null_rate in [0, 1)")
    specs = feature_specs(features)
    numeric = [s for s in specs if s.kind == "numeric"]
    categorical = [s for s in specs if s.kind == "categorical"]
    shifted = _pick(numeric, shift_feature, "shift_feature") if shift_at is not None else None
    cat_shifted = (
        _pick(categorical, categorical_shift_feature, "categorical_shift_feature")
        if categorical_shift_at is not None
        else None
    )
    rng = np.random.default_rng(seed)
    index = np.arange(n_events)
    # Every random draw happens here, in a fixed order, before any change is applied.
    z = rng.standard_normal((n_events, len(numeric)))
    uniform_categories = rng.random((n_events, len(categorical)))
    nulls = rng.random((n_events, len(specs))) < null_rate
    label_draw, has_label, delay = rng.random(n_events), rng.random(n_events), rng.random(n_events)

    columns: dict[str, list[Any]] = {}
    model_logit = np.full(n_events, -0.5)
    true_logit = np.full(n_events, -0.5)
    changed = index >= concept_change_at if concept_change_at is not None else index < 0
    for k, spec in enumerate(numeric):
        values = spec.mean + spec.std * z[:, k]
        if spec is shifted and shift_at is not None:
            end = n_events if shift_until is None else shift_until
            during = (index >= shift_at) & (index < end)
            values = values + np.where(during, shift_sigma * spec.std, 0.0)
        scaled = (values - spec.mean) / spec.std
        model_logit += spec.weight * scaled
        flip = np.where(changed & (k % 2 == 0), -1.0, 1.0)  # the new concept
        true_logit += flip * spec.weight * scaled
        columns[spec.name] = np.round(values, 3).tolist()
    for k, spec in enumerate(categorical):
        forward = np.cumsum(spec.probabilities)
        codes = np.minimum(np.searchsorted(forward, uniform_categories[:, k]), len(forward) - 1)
        if spec is cat_shifted and categorical_shift_at is not None:
            backward = np.cumsum(spec.probabilities[::-1])
            moved = np.minimum(
                np.searchsorted(backward, uniform_categories[:, k]), len(backward) - 1
            )
            codes = np.where(index >= categorical_shift_at, moved, codes)
        weights = np.asarray(spec.weights)
        model_logit += weights[codes]
        true_logit += weights[codes]
        columns[spec.name] = [spec.categories[c] for c in codes]
    score = 1.0 / (1.0 + np.exp(-model_logit))
    truth = label_draw < 1.0 / (1.0 + np.exp(-true_logit))

    names = [spec.name for spec in specs]
    predictions: list[dict[str, Any]] = []
    labels: list[tuple[datetime, dict[str, Any]]] = []
    for i in range(n_events):
        when = start + timedelta(seconds=i * interval_seconds)
        event_id = f"{model}-{i:08d}"
        row = {name: None if nulls[i, j] else columns[name][i] for j, name in enumerate(names)}
        p = round(float(score[i]), 6)
        predictions.append(
            {
                "schema_version": 1,
                "event_id": event_id,
                "model": model,
                "model_version": model_version,
                "timestamp": _rfc3339(when),
                "features": row,
                "prediction": int(p >= 0.5),
                "scores": {"0": round(1.0 - p, 6), "1": p},
            }
        )
        if has_label[i] < label_fraction:
            seen = when + timedelta(seconds=label_delay_seconds * (0.5 + delay[i]))
            labels.append(
                (
                    seen,
                    {
                        "schema_version": 1,
                        "event_id": event_id,
                        "model": model,
                        "timestamp": _rfc3339(seen),
                        "label": int(truth[i]),
                    },
                )
            )
    labels.sort(key=lambda item: item[0])
    return predictions, [label for _, label in labels]


def _pick(specs: list[FeatureSpec], name: str | None, what: str) -> FeatureSpec:
    if not specs:
        raise ValueError(f"{what}: the stream has no feature of that kind; raise features")
    for spec in specs:
        if spec.name == (name or specs[0].name):
            return spec
    raise ValueError(f"{what}={name!r} is not one of {', '.join(s.name for s in specs)}")


def _rfc3339(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


def flatten_event(event: dict[str, Any]) -> dict[str, Any]:
    """One table row for an event dict: ``scores.<class>``, ``segment.<key>``, plain features.

    >>> flatten_event({"event_id": "e", "features": {"a": 1, "model": 2}, "scores": {"1": 0.5}})
    {'event_id': 'e', 'a': 1, 'features.model': 2, 'scores.1': 0.5}
    """
    row: dict[str, Any] = {}
    for key, value in event.items():
        if key == "features":
            for name, item in value.items():
                plain = name not in _RESERVED and "." not in name
                row[name if plain else f"features.{name}"] = item
        elif key in ("scores", "segment"):
            row.update({f"{key}.{name}": item for name, item in (value or {}).items()})
        else:
            row[key] = value
    return row


def write_stream(
    directory: Path | str,
    predictions: list[dict[str, Any]],
    labels: list[dict[str, Any]] | None = None,
    fmt: StreamFormat = "jsonl",
) -> tuple[Path, Path | None]:
    """Write ``predictions.<fmt>`` (and ``labels.<fmt>``) into ``directory``; returns the paths."""
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {', '.join(FORMATS)}, got {fmt!r}")
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for stem, events in (("predictions", predictions), ("labels", labels)):
        if events is None:
            continue
        path = folder / f"{stem}.{fmt}"
        if fmt.startswith("jsonl"):
            _write_text(path, "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in events))
        elif fmt.startswith("csv"):
            _write_csv(path, [flatten_event(e) for e in events])
        else:
            _write_parquet(path, [flatten_event(e) for e in events])
        paths.append(path)
    return paths[0], paths[1] if len(paths) > 1 else None


def _write_text(path: Path, text: str) -> None:
    if path.suffix == ".gz":
        import gzip

        with gzip.open(path, "wt", encoding="utf-8") as handle:
            handle.write(text)
    else:
        path.write_text(text, encoding="utf-8")


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    import csv
    import io

    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    _write_text(path, buffer.getvalue())


def _write_parquet(path: Path, rows: list[dict[str, Any]]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    for row in rows:  # a real timestamp column, as a data warehouse would export it
        row["timestamp"] = datetime.fromisoformat(row["timestamp"])
    pq.write_table(pa.Table.from_pylist(rows), path)
