"""Fold `PredictionColumns` into a window delta: ``PartitionAccumulator.add_columns``.

The same sketches, in the same order, as ``detectors.accumulate.fold_predictions`` on the
equivalent events (a test compares the states), without touching one event object: numeric
features go to their sketches as one 2-d block, nulls and absent values are counted from masks.

>>> import numpy as np
>>> from detectors.columns import PredictionColumns
>>> from detectors.window import WindowDelta
>>> from schemas.monitor_config import MonitorConfig
>>> cols = PredictionColumns.from_arrays(model="m", event_ids=["a", "b", "c"],
...     times_us=np.array([1, 2, 3]), features={"x": np.array([1.0, 2.0, 3.0])},
...     prediction=[0, 1, 1])
>>> delta = WindowDelta("m", None)
>>> fold_columns(delta, cols, MonitorConfig().for_model("m"))
>>> delta.count, delta.slices[""].numeric["x"].mean, delta.slices[""].types.counts
(3, 2.0, {'x': {'number': 3}})
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from detectors.accumulate import _fold_column, _segments, _split, fold_prediction
from detectors.categorical import CategoricalSketch, category_key
from detectors.columns import ABSENT, NumericColumn, PredictionColumns
from detectors.sketches import NumericSketch, update_rows
from detectors.window import ALL_TRAFFIC, SliceDelta, WindowDelta
from schemas.monitor_config import ModelMonitorConfig

__all__ = ["fold_columns"]

_ABSENT_TYPE = type(ABSENT)


def fold_columns(
    delta: WindowDelta, columns: PredictionColumns, config: ModelMonitorConfig
) -> None:
    """Fold one model version's columns into ``delta`` (as ``fold_predictions`` does)."""
    n = len(columns)
    if n == 0:
        return
    times = columns.times_us
    delta.see_time(int(np.minimum.reduce(times)), int(np.maximum.reduce(times)))
    delta.count += n
    _fold_slice(delta.slice(ALL_TRAFFIC), columns, config)
    if config.segments.keys and columns.segments is not None:
        for key, where in _segments(columns.segments, config).items():
            rows = np.array(where, dtype=np.intp)
            _fold_slice(delta.slice(key), columns.take(rows), config)


def _fold_slice(part: SliceDelta, columns: PredictionColumns, config: ModelMonitorConfig) -> None:
    n = len(columns)
    part.count += n
    part.types.add_rows(n)
    ignore = set(config.ignore)
    block_names: list[str] = []
    for name in sorted(columns.features):
        if name in ignore:
            continue
        column = columns.features[name]
        declared = config.features.get(name)
        if isinstance(column, NumericColumn):
            if column.nulls is None and column.absent is None and declared != "categorical":
                part.types._add(name, "number", n)
                block_names.append(name)  # folded together below
            else:
                _fold_numeric(part, name, column, declared, n)
        else:
            _fold_values(part, name, column, declared)
    if block_names:
        sketches = [part.numeric.get(name) or NumericSketch() for name in block_names]
        part.numeric.update(zip(block_names, sketches, strict=True))
        block = np.empty((len(block_names), n), dtype=np.float64)
        for i, name in enumerate(block_names):
            column = columns.features[name]
            assert isinstance(column, NumericColumn)
            block[i] = column.values
        update_rows(sketches, block)
    if config.detectors.prediction:
        _fold_prediction(part, columns.prediction)
    if config.detectors.scores and columns.scores is not None:
        _fold_scores(part, columns.scores)


def _fold_numeric(
    part: SliceDelta, name: str, column: NumericColumn, declared: str | None, n: int
) -> None:
    keep = np.ones(n, dtype=bool)
    nulls = absent = 0
    if column.nulls is not None:
        nulls = int(np.count_nonzero(column.nulls))
        keep &= ~column.nulls
    if column.absent is not None:
        absent = int(np.count_nonzero(column.absent))
        keep &= ~column.absent
    numbers = n - nulls - absent
    for kind, count in (("number", numbers), ("null", nulls)):
        if count:
            part.types._add(name, kind, count)
    values = column.values[keep]
    if declared == "categorical":
        if values.size:
            keys = [category_key(v) for v in values.tolist()]
            _categorical(part, name).update(keys)
        return
    if values.size:
        sketch = part.numeric.get(name)
        if sketch is None:
            sketch = part.numeric[name] = NumericSketch()
        sketch.update(values)


def _fold_values(part: SliceDelta, name: str, column: list[Any], declared: str | None) -> None:
    kinds = set(map(type, column))
    if _ABSENT_TYPE in kinds:  # the marker is a singleton: its type says whether it is here
        column = [v for v in column if v is not ABSENT]
        if not column:
            return
        part.types.update_column(name, column)
        # The event path folds absent values as None: dropped by `_split` as nulls are.
        _fold_column(part, name, column, declared)
        return
    part.types.update_column(name, column, kinds=kinds)
    _fold_column(part, name, column, declared, kinds)


def _categorical(part: SliceDelta, name: str) -> CategoricalSketch:
    sketch = part.categorical.get(name)
    if sketch is None:
        sketch = part.categorical[name] = CategoricalSketch()
    return sketch


def _fold_prediction(
    part: SliceDelta, prediction: npt.NDArray[np.float64 | np.int64] | list[Any]
) -> None:
    numeric: npt.NDArray[np.float64] | None
    categorical: list[Any]
    if isinstance(prediction, np.ndarray):  # floats, or ints alone (class ids): numbers
        numeric, categorical = prediction.astype(np.float64, copy=False), []
    else:
        numeric, categorical = _split(prediction, None)
    fold_prediction(part, numeric, categorical)


def _fold_scores(part: SliceDelta, scores: dict[str, npt.NDArray[np.float64]]) -> None:
    classes = sorted(scores)
    block = np.array([scores[c] for c in classes], dtype=np.float64)
    present = ~np.isnan(block)
    if present.all():
        sketches = [part.scores.get(cls) or NumericSketch() for cls in classes]
        part.scores.update(zip(classes, sketches, strict=True))
        update_rows(sketches, block)
        return
    for i, cls in enumerate(classes):
        if not present[i].any():
            continue  # no event scored this class: the event path never saw it
        sketch = part.scores.get(cls)
        if sketch is None:
            sketch = part.scores[cls] = NumericSketch()
        sketch.update(block[i][present[i]])
