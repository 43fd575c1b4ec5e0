"""Categorical window sketches: bounded, mergeable counts per category.

>>> c = CategoricalSketch(max_categories=2)
>>> c.update(["pro", "free", None, "pro", "team", True])
>>> c.counts, c.nulls, c.total
({'pro': 2, 'free': 1, '__other__': 2}, 1, 6)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, Self

from detectors.sketches import check_state_kind

__all__ = ["OTHER", "CategoricalSketch", "category_key"]

OTHER = "__other__"
"""The category that absorbs every key beyond `max_categories`."""


def category_key(value: str | bool | int | float) -> str:
    """The str key a categorical value is counted under.

    bool is spelled as in JSON (``"true"``/``"false"``, checked before int since bool is an
    int); an integral float counts as the int (JSON does not tell 3 from 3.0).

    >>> [category_key(v) for v in ("a", True, 3, 3.0, 2.5)]
    ['a', 'true', '3', '3', '2.5']
    """
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class CategoricalSketch:
    """Counts per category (str keys, see `category_key`); None counts in `nulls`.

    At most `max_categories` distinct keys are kept; later new keys fold into ``"__other__"``.
    """

    def __init__(self, max_categories: int = 1000) -> None:
        if max_categories < 1:
            raise ValueError(f"max_categories must be >= 1, got {max_categories}")
        self.max_categories = max_categories
        self.reset()

    def reset(self) -> None:
        """Forget everything seen (keeps max_categories)."""
        self.counts: dict[str, int] = {}
        self.nulls = 0

    @property
    def total(self) -> int:
        """Every value seen, null included."""
        return sum(self.counts.values()) + self.nulls

    def update(self, values: Sequence[str | bool | int | float | None]) -> None:
        """Fold a batch of values."""
        raw: Counter[Any] = Counter(values)
        self.nulls += raw.pop(None, 0)
        if all(isinstance(k, str) for k in raw):
            self._add(raw)
        else:
            # Counter keys compare True == 1; recount through category_key so they stay apart.
            self._add(Counter(category_key(v) for v in values if v is not None))

    def merge(self, other: CategoricalSketch) -> None:
        """Fold another sketch into this one (in place); keeps this sketch's max_categories."""
        if not isinstance(other, CategoricalSketch):
            raise TypeError(f"cannot merge {type(other).__name__} into CategoricalSketch")
        self.nulls += other.nulls
        self._add(other.counts)

    def copy(self) -> Self:
        """An independent copy."""
        return self.from_state(self.to_state())

    def _add(self, counts: Mapping[str, int]) -> None:
        own = self.counts
        for key, n in counts.items():
            if key in own:
                own[key] += n
            elif key != OTHER and len(own) - (OTHER in own) < self.max_categories:
                own[key] = n
            else:
                own[OTHER] = own.get(OTHER, 0) + n

    def to_state(self) -> dict[str, Any]:
        return {
            "kind": "categorical",
            "max_categories": self.max_categories,
            "counts": dict(self.counts),
            "nulls": self.nulls,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Self:
        check_state_kind(state, "categorical")
        sketch = cls(max_categories=int(state["max_categories"]))
        sketch.counts = {str(k): int(v) for k, v in state["counts"].items()}
        sketch.nulls = int(state["nulls"])
        return sketch

    def __repr__(self) -> str:
        return f"CategoricalSketch(categories={len(self.counts)}, total={self.total})"
