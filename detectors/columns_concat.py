"""Rows of several `PredictionColumns` of one model version as one (pure).

The ingest joins each partition on its own but folds a model's rows of a whole round at once
(`detectors.accumulate_deferred`), and folds the rows of one chunk per model version
(`streams.fold_columns`): both concatenate columns built from different messages, whose
features may be represented differently.

>>> import numpy as np
>>> a = PredictionColumns.from_arrays(model="m", event_ids=["a"], times_us=np.array([1]),
...     features={"x": np.array([1.0])}, prediction=[0])
>>> b = PredictionColumns.from_arrays(model="m", event_ids=["b"], times_us=np.array([2]),
...     features={"x": np.array([2.0]), "plan": ["pro"]}, prediction=[1])
>>> both = concat_columns([a, b])  # a has no "plan": absent in its rows
>>> both.event_ids, both.features["x"].values.tolist(), both.features["plan"]
(['a', 'b'], [1.0, 2.0], [ABSENT, 'pro'])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from detectors.columns import ABSENT, FeatureColumn, NumericColumn, PredictionColumns

__all__ = ["concat_columns"]


def concat_columns(parts: Sequence[PredictionColumns]) -> PredictionColumns:
    """The rows of ``parts`` in one `PredictionColumns` (folds as the rows in one go do).

    A numeric feature of one part that another part has as a list becomes a list of floats:
    the fold reads ints and their floats alike (both count as numbers and as the same
    category), so the representation may change, the delta does not.
    """
    if len(parts) == 1:
        return parts[0]
    sizes = [len(part) for part in parts]
    names = dict.fromkeys(name for part in parts for name in part.features)
    features = {
        name: _concat_feature([part.features.get(name) for part in parts], sizes) for name in names
    }
    prediction = _concat_predictions(parts)
    classes = dict.fromkeys(c for part in parts if part.scores for c in part.scores)
    scores = {
        c: np.concatenate([
            part.scores[c] if part.scores and c in part.scores else np.full(size, np.nan)
            for part, size in zip(parts, sizes, strict=True)
        ])
        for c in classes
    } or None  # fmt: skip
    segments = (
        None if all(part.segments is None for part in parts)
        else [s for part, size in zip(parts, sizes, strict=True)
              for s in (part.segments if part.segments is not None else [None] * size)]
    )  # fmt: skip
    first = parts[0]
    return PredictionColumns(
        first.model, first.model_version, [i for part in parts for i in part.event_ids],
        np.concatenate([part.times_us for part in parts]), features, prediction, scores,
        segments,
    )  # fmt: skip


def _concat_predictions(parts: Sequence[PredictionColumns]) -> Any:
    """One array when every part has an array of one dtype (all floats, or all ints from the
    native lane); else a list, each value as sent (ints and floats together stay apart).

    >>> ints = PredictionColumns("m", None, ["a"], np.array([1]), {}, np.array([1]))
    >>> floats = PredictionColumns("m", None, ["b"], np.array([2]), {}, np.array([0.5]))
    >>> _concat_predictions([ints, ints]), _concat_predictions([ints, floats])
    (array([1, 1]), [1, 0.5])
    """
    arrays = [part.prediction for part in parts if isinstance(part.prediction, np.ndarray)]
    if len(arrays) == len(parts) and len({array.dtype for array in arrays}) == 1:
        return np.concatenate(arrays)
    return [value for part in parts for value in part.prediction_list()]


def _concat_feature(columns: list[FeatureColumn | None], sizes: list[int]) -> FeatureColumn:
    """One feature over the parts (None: a part without the feature)."""
    plain = [
        column.values
        for column in columns
        if isinstance(column, NumericColumn) and column.nulls is None and column.absent is None
    ]
    if len(plain) == len(columns):  # the common case: numbers in every row of every part
        return NumericColumn(np.concatenate(plain), None, None)
    if all(column is None or isinstance(column, NumericColumn) for column in columns):
        values, nulls, absent = [], [], []
        for column, size in zip(columns, sizes, strict=True):
            if column is None:
                values.append(np.zeros(size))
                nulls.append(np.zeros(size, dtype=bool))
                absent.append(np.ones(size, dtype=bool))
                continue
            assert isinstance(column, NumericColumn)
            values.append(column.values)
            nulls.append(np.zeros(size, bool) if column.nulls is None else column.nulls)
            absent.append(np.zeros(size, bool) if column.absent is None else column.absent)
        null_mask, absent_mask = np.concatenate(nulls), np.concatenate(absent)
        return NumericColumn(
            np.concatenate(values),
            null_mask if null_mask.any() else None,
            absent_mask if absent_mask.any() else None,
        )
    out: list[Any] = []
    for column, size in zip(columns, sizes, strict=True):
        if column is None:
            out += [ABSENT] * size
        elif isinstance(column, NumericColumn):
            out += column.python()
        else:
            out += column
    return out
