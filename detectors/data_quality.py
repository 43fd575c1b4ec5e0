"""Data-quality signals: observed value types per feature, null / non-finite / out-of-range
rates, type changes and missing or new features against the reference.

>>> tracker = FeatureTypeTracker()
>>> tracker.update([{"age": 41, "plan": "pro"}, {"age": None, "plan": "free", "vip": True}])
>>> tracker.counts["age"], tracker.rows, tracker.absent("vip")
({'number': 1, 'null': 1}, 2, 1)
>>> type_changes({"age": {"number": 90, "null": 10}}, {"age": {"number": 3, "string": 1}})
{'age': 0.25}
>>> missing_features(["age", "plan"], ["age"]), new_features(["age"], ["age", "zip"])
(['plan'], ['zip'])
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence, Set
from numbers import Number
from typing import Any, Final, Self

import numpy as np

from detectors.categorical import CategoricalSketch
from detectors.sketches import NumericSketch

__all__ = [
    "VALUE_TYPES",
    "FeatureTypeTracker",
    "missing_features",
    "new_features",
    "non_finite_rate",
    "null_rate",
    "out_of_range_rate",
    "type_changes",
    "value_type",
]

VALUE_TYPES: Final = ("number", "string", "bool", "null", "other")
"""The type names a tracker counts; "other" only for values outside the wire contract."""

_BY_PYTHON_TYPE: Final[dict[type, str]] = {
    int: "number",
    float: "number",
    str: "string",
    bool: "bool",
    type(None): "null",
    np.bool_: "bool",
}


def value_type(value: object) -> str:
    """The type name of one feature value (bool is not a number here).

    >>> [value_type(v) for v in (1, 2.5, "x", True, None, [1])]
    ['number', 'number', 'string', 'bool', 'null', 'other']
    """
    name = _BY_PYTHON_TYPE.get(type(value))
    if name is not None:
        return name
    if isinstance(value, bool | np.bool_):
        return "bool"
    if isinstance(value, Number):
        return "number"
    return "string" if isinstance(value, str) else "other"


class FeatureTypeTracker:
    """Counts per observed type (number / string / bool / null) per feature; mergeable.

    `rows` counts events given to `update`; a feature missing from an event is *absent*
    (``rows - seen``), which is not the same as a null value.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.counts: dict[str, dict[str, int]] = {}
        self.rows = 0

    def update(self, rows: Sequence[Mapping[str, object]]) -> None:
        """Fold a batch of events' feature mappings."""
        seen: Counter[tuple[str, type]] = Counter(
            (name, type(value)) for row in rows for name, value in row.items()
        )
        for (name, kind), n in seen.items():
            self._add(name, _type_name(kind), n)
        self.rows += len(rows)

    def update_column(
        self, name: str, values: Sequence[object], *, kinds: Set[type] | None = None
    ) -> None:
        """Fold one feature's values (does not count rows: pair with `add_rows`).

        ``kinds``: the set of Python types in ``values``, when the caller has it already.
        """
        if kinds is not None and len(names := {_type_name(kind) for kind in kinds}) == 1:
            self._add(name, names.pop(), len(values))  # one type name: no need to count
            return
        for kind, n in Counter(map(type, values)).items():
            self._add(name, _type_name(kind), n)

    def add_rows(self, n: int) -> None:
        """Count `n` events fed column by column through `update_column`."""
        self.rows += n

    def _add(self, name: str, kind: str, n: int) -> None:
        per_type = self.counts.setdefault(name, {})
        per_type[kind] = per_type.get(kind, 0) + n

    def merge(self, other: FeatureTypeTracker) -> None:
        if not isinstance(other, FeatureTypeTracker):
            raise TypeError(f"cannot merge {type(other).__name__} into FeatureTypeTracker")
        for name, per_type in other.counts.items():
            for kind, n in per_type.items():
                self._add(name, kind, n)
        self.rows += other.rows

    @property
    def features(self) -> list[str]:
        """Sorted names of the features seen."""
        return sorted(self.counts)

    def seen(self, name: str) -> int:
        """Values seen for a feature, null included."""
        return sum(self.counts.get(name, {}).values())

    def absent(self, name: str) -> int:
        """Events without the feature at all."""
        return max(self.rows - self.seen(name), 0)

    def dominant_type(self, name: str) -> str | None:
        """The most frequent non-null type (ties by name); None when only nulls were seen."""
        per_type = {k: n for k, n in self.counts.get(name, {}).items() if k != "null" and n}
        return min(per_type, key=lambda k: (-per_type[k], k)) if per_type else None

    def to_state(self) -> dict[str, Any]:
        return {
            "kind": "types",
            "rows": self.rows,
            "counts": {k: dict(v) for k, v in self.counts.items()},
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Self:
        if state.get("kind") != "types":
            raise ValueError(
                f"state has kind {state.get('kind')!r}, expected 'types': pass "
                "FeatureTypeTracker.to_state()"
            )
        tracker = cls()
        tracker.rows = int(state["rows"])
        tracker.counts = {
            str(name): {str(k): int(n) for k, n in per_type.items()}
            for name, per_type in state["counts"].items()
        }
        return tracker


def _type_name(kind: type) -> str:
    return _BY_PYTHON_TYPE.get(kind) or _slow_type(kind)


def _slow_type(kind: type) -> str:
    if issubclass(kind, bool | np.bool_):
        return "bool"
    if issubclass(kind, Number):
        return "number"
    return "string" if issubclass(kind, str) else "other"


def null_rate(sketch: NumericSketch | CategoricalSketch) -> float | None:
    """Share of null values (None) among all values seen; None when nothing was seen."""
    return sketch.nulls / sketch.total if sketch.total else None


def non_finite_rate(sketch: NumericSketch) -> float | None:
    """Share of NaN and +/-inf among all values seen; None when nothing was seen."""
    return (sketch.nans + sketch.infs) / sketch.total if sketch.total else None


def out_of_range_rate(
    sketch: NumericSketch, ref_min: float | None, ref_max: float | None
) -> float | None:
    """Share of finite values outside [ref_min, ref_max] (either bound may be None = open).

    Exact while the sketch holds every value (count <= capacity), else estimated on its
    uniform reservoir. None when no finite value was seen.
    """
    if sketch.count == 0:
        return None
    values = sketch.values()
    outside = np.zeros(values.size, dtype=bool)
    if ref_min is not None:
        outside |= values < ref_min
    if ref_max is not None:
        outside |= values > ref_max
    return float(outside.mean())


def type_changes(
    ref_types: Mapping[str, Mapping[str, int]], cur_types: Mapping[str, Mapping[str, int]]
) -> dict[str, float]:
    """Per feature in both: the share of the window's non-null values whose type the
    reference never had (e.g. strings in a numeric feature); only features with a share > 0.
    """
    changes: dict[str, float] = {}
    for name in sorted(set(ref_types) & set(cur_types)):
        known = {k for k, n in ref_types[name].items() if n > 0}
        current = {k: n for k, n in cur_types[name].items() if k != "null" and n > 0}
        total = sum(current.values())
        new = sum(n for k, n in current.items() if k not in known)
        if total and new:
            changes[name] = new / total
    return changes


def missing_features(ref_names: Iterable[str], cur_names: Iterable[str]) -> list[str]:
    """Reference features the window never saw, sorted."""
    return sorted(set(ref_names) - set(cur_names))


def new_features(ref_names: Iterable[str], cur_names: Iterable[str]) -> list[str]:
    """Window features the reference never had, sorted."""
    return sorted(set(cur_names) - set(ref_names))
