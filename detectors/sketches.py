"""Bounded, mergeable, JSON-able window sketches: the state a window keeps instead of raw rows.

`NumericSketch` keeps exact moments (count, mean, std, min, max; Chan's parallel merge) and a
bounded reservoir for KS / Wasserstein / histograms. `CategoricalSketch` keeps counts per
category. Both merge in place, so partitions summarise separately and a model merges them.

>>> import numpy as np
>>> a, b = NumericSketch(capacity=100), NumericSketch(capacity=100)
>>> a.update(np.array([1.0, 2.0, np.nan]))
>>> b.update([3.0, None, float("inf")])
>>> a.merge(b)
>>> (a.count, a.nulls, a.nans, a.infs, a.total, a.mean, a.min, a.max)
(3, 1, 1, 1, 6, 2.0, 1.0, 3.0)
>>> a.histogram(np.array([1.5, 2.5])).tolist()
[1.0, 1.0, 1.0]
>>> c = CategoricalSketch(max_categories=2)
>>> c.update(["pro", "free", None, "pro", "team", True])
>>> c.counts, c.nulls, c.total
({'pro': 2, 'free': 1, '__other__': 2}, 1, 6)
"""

from __future__ import annotations

import math
import zlib
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, Final, Self

import numpy as np
import numpy.typing as npt

__all__ = [
    "OTHER",
    "CategoricalSketch",
    "NumericSketch",
    "bottom_k",
    "category_key",
    "uniform_keys",
]

FloatArray = npt.NDArray[np.float64]

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


def _check_kind(state: Mapping[str, Any], kind: str) -> None:
    if state.get("kind") != kind:
        raise ValueError(
            f"state has kind {state.get('kind')!r}, expected {kind!r}: pass a state produced "
            f"by the matching class's to_state()"
        )


_MASK64: Final = (1 << 64) - 1
_GOLDEN: Final = np.uint64(0x9E3779B97F4A7C15)
_MIX1: Final = np.uint64(0xBF58476D1CE4E5B9)
_MIX2: Final = np.uint64(0x94D049BB133111EB)


def _splitmix(z: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    z = z ^ (z >> np.uint64(30))
    z = z * _MIX1
    z = z ^ (z >> np.uint64(27))
    z = z * _MIX2
    return z ^ (z >> np.uint64(31))


def uniform_keys(seed: int, start: int, data: bytes, n: int) -> FloatArray:
    """`n` pseudo-random keys in [0, 1) for stream positions start..start+n-1.

    SplitMix64 of (seed, position, CRC32 of the batch's bytes): reproducible without any
    generator state to save, cheap per call, and different for different data.

    >>> keys = uniform_keys(0, 10, b"batch", 3)
    >>> keys.shape, bool(((keys >= 0) & (keys < 1)).all())
    ((3,), True)
    """
    salt = (((seed & 0xFFFFFFFF) << 32) | zlib.crc32(data)) * 0xD1B54A32D192ED03 & _MASK64
    positions = np.arange(start, start + n, dtype=np.uint64)
    bits = _splitmix(positions * _GOLDEN + np.uint64(salt))
    return (bits >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def bottom_k(
    own: FloatArray, new: FloatArray, capacity: int, cut: float = math.inf
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Indices of the `own` and `new` keys a bottom-k reservoir keeps, in arrival order.

    Keys above `cut` are dropped (see `NumericSketch`), then the `capacity` smallest stay.

    >>> bottom_k(np.array([0.5, 0.1]), np.array([0.3, 0.9]), capacity=2)
    (array([1]), array([0]))
    """
    own_max = float(own.max()) if own.size else -math.inf
    if own.size >= capacity:
        cut = min(cut, own_max)  # full: larger keys cannot survive
    keep_own = np.arange(own.size) if own_max <= cut else np.flatnonzero(own <= cut)
    keep_new = np.flatnonzero(new <= cut)
    if keep_own.size + keep_new.size > capacity:
        kept_own, kept_new = own[keep_own], new[keep_new]
        # The capacity-th smallest key; a mask (not a sort) keeps arrival order.
        keys = np.concatenate([kept_own, kept_new])
        limit = np.partition(keys, capacity - 1)[capacity - 1]
        own_in, new_in = kept_own <= limit, kept_new <= limit
        if int(own_in.sum() + new_in.sum()) > capacity:
            # Equal keys at the limit (a sketch merged with its own copy): pick exactly.
            chosen = np.zeros(keys.size, dtype=bool)
            chosen[np.argpartition(keys, capacity - 1)[:capacity]] = True
            own_in, new_in = chosen[: kept_own.size], chosen[kept_own.size :]
        keep_own, keep_new = keep_own[own_in], keep_new[new_in]
    return keep_own, keep_new


class NumericSketch:
    """Exact moments plus a bounded uniform reservoir of the finite values.

    The reservoir is a bottom-k sample: every finite value gets a pseudo-random key in [0, 1)
    and the `capacity` values with the smallest keys are kept. While ``count <= capacity`` it
    holds every value (in arrival order). Beyond, it is a uniform sample without replacement,
    and the merge of two sketches (bottom-k of the union of keys, below both sides' cut-offs
    when their capacities differ) is a uniform sample of the union, each side weighted by its
    count automatically. Keys come from a generator seeded
    with (seed, values seen so far, CRC32 of the batch), so results are reproducible and two
    partitions with the same seed still draw independent keys for different data.

    None is counted in `nulls`, NaN in `nans`, +/-inf in `infs`; none of them is stored.
    `std` is the population standard deviation (ddof=0, as numpy). `mean`, `std`, `min`,
    `max` are None while no finite value has been seen.
    """

    def __init__(self, capacity: int = 4096, seed: int = 0) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}: use e.g. 4096")
        self.capacity = capacity
        self.seed = seed
        self.reset()

    def reset(self) -> None:
        """Forget everything seen (keeps capacity and seed)."""
        self.count = 0
        self.nulls = 0
        self.nans = 0
        self.infs = 0
        self._mean = 0.0
        self._m2 = 0.0
        self._min = math.inf
        self._max = -math.inf
        self._sample: FloatArray = np.empty(0, dtype=np.float64)
        self._keys: FloatArray = np.empty(0, dtype=np.float64)

    # -- reading ---------------------------------------------------------------------------
    @property
    def total(self) -> int:
        """Every value seen: finite, null, NaN and inf."""
        return self.count + self.nulls + self.nans + self.infs

    @property
    def mean(self) -> float | None:
        return self._mean if self.count else None

    @property
    def std(self) -> float | None:
        return math.sqrt(max(self._m2, 0.0) / self.count) if self.count else None

    @property
    def min(self) -> float | None:
        return self._min if self.count else None

    @property
    def max(self) -> float | None:
        return self._max if self.count else None

    def values(self) -> FloatArray:
        """A copy of the reservoir (all finite values while count <= capacity)."""
        return self._sample.copy()

    def histogram(self, edges: npt.ArrayLike) -> FloatArray:
        """Counts over (-inf, e1], (e1, e2], ..., (ek, inf), from the reservoir scaled to count.

        Exact while count <= capacity; ``len(edges) + 1`` bins.
        """
        inner = np.asarray(edges, dtype=np.float64)
        if inner.ndim != 1 or (inner.size > 1 and np.any(np.diff(inner) <= 0)):
            raise ValueError("edges must be a 1-d strictly increasing array (see quantile_edges)")
        bins = np.searchsorted(inner, self._sample, side="left")
        counts = np.bincount(bins, minlength=inner.size + 1).astype(np.float64)
        if self._sample.size and self._sample.size != self.count:
            counts *= self.count / self._sample.size
        return counts

    # -- updating --------------------------------------------------------------------------
    def update(self, values: npt.NDArray[Any] | Sequence[float | None]) -> None:
        """Fold a batch of values (a numpy array is the fast path; None marks a null)."""
        arr, nulls = self._as_float_array(values)
        self.nulls += nulls
        if arr.size == 0:
            return
        finite = np.isfinite(arr)
        if not finite.all():
            nan = np.isnan(arr)
            self.nans += int(nan.sum())
            self.infs += int(arr.size - finite.sum() - nan.sum())
            arr = arr[finite]
            if arr.size == 0:
                return
        total = float(np.add.reduce(arr))
        # ufunc reductions directly: ndarray.mean()/min() wrappers cost more than the work here.
        batch_mean = (
            total / arr.size if math.isfinite(total) else float(np.add.reduce(arr / arr.size))
        )
        dev = arr - batch_mean
        lo, hi = float(np.minimum.reduce(arr)), float(np.maximum.reduce(arr))
        self._combine_moments(arr.size, batch_mean, float(np.dot(dev, dev)), lo, hi)
        keys = uniform_keys(self.seed, self.count, arr.tobytes(), arr.size)
        if self._sample.size >= self.capacity and not (keys <= self._keys.max()).any():
            self.count += arr.size  # full, and no key is small enough to enter
            return
        cut = self._cutoff()  # before counting the batch in
        self.count += arr.size
        self._keep_smallest(arr, keys, cut)

    def merge(self, other: NumericSketch) -> None:
        """Fold another sketch into this one (in place); keeps this sketch's capacity."""
        if not isinstance(other, NumericSketch):
            raise TypeError(f"cannot merge {type(other).__name__} into NumericSketch")
        self.nulls += other.nulls
        self.nans += other.nans
        self.infs += other.infs
        if other.count == 0:
            return
        self._combine_moments(other.count, other._mean, other._m2, other._min, other._max)
        cut = min(self._cutoff(), other._cutoff())
        self.count += other.count
        self._keep_smallest(other._sample, other._keys, cut)

    def copy(self) -> Self:
        """An independent copy."""
        return self.from_state(self.to_state())

    def _combine_moments(self, n: int, mean: float, m2: float, lo: float, hi: float) -> None:
        # Chan et al. parallel update: exact up to floating point, order-independent.
        if self.count == 0:
            self._mean, self._m2 = mean, m2
        else:
            share = n / (self.count + n)
            delta = mean - self._mean
            self._mean += delta * share
            self._m2 += m2 + delta * delta * self.count * share
        self._min = min(self._min, lo)
        self._max = max(self._max, hi)

    def _cutoff(self) -> float:
        """The reservoir holds exactly the values whose key is <= this (inf: all values).

        A truncated reservoir (count > size) keeps every key up to its largest kept key, and
        nothing above. Merging keeps the smaller cut-off of the two sides, so a side with a
        smaller capacity never lets the other side's values in at a higher rate.
        """
        truncated = self.count > self._sample.size > 0
        return float(self._keys.max()) if truncated else math.inf

    def _keep_smallest(self, values: FloatArray, keys: FloatArray, cut: float) -> None:
        own, new = bottom_k(self._keys, keys, self.capacity, cut)
        if new.size == 0 and own.size == self._keys.size:
            return  # the common case once full: nothing enters
        self._sample = np.concatenate([self._sample[own], values[new]])
        self._keys = np.concatenate([self._keys[own], keys[new]])

    @staticmethod
    def _as_float_array(
        values: npt.NDArray[Any] | Sequence[float | None],
    ) -> tuple[FloatArray, int]:
        """(finite-or-not float64 values, number of None); raises before any state changes."""
        if isinstance(values, np.ndarray) and values.dtype != object:
            if values.dtype.kind not in "biuf":
                raise TypeError(
                    f"NumericSketch takes numbers, got an array of dtype {values.dtype}: "
                    "count strings with CategoricalSketch"
                )
            return np.asarray(values, dtype=np.float64).ravel(), 0
        items: list[Any] = (
            values.ravel().tolist() if isinstance(values, np.ndarray) else list(values)
        )
        nulls = items.count(None)
        if nulls:
            items = [v for v in items if v is not None]
        try:
            arr = np.asarray(items, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"NumericSketch takes numbers or None, got {exc}: count strings with "
                "CategoricalSketch"
            ) from None
        return arr.ravel(), nulls

    # -- state -----------------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        """JSON-able state (floats are finite; min/max are None while empty)."""
        return {
            "kind": "numeric",
            "capacity": self.capacity,
            "seed": self.seed,
            "count": self.count,
            "nulls": self.nulls,
            "nans": self.nans,
            "infs": self.infs,
            "mean": self._mean,
            "m2": self._m2,
            "min": self.min,
            "max": self.max,
            "sample": self._sample.tolist(),
            "keys": self._keys.tolist(),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Self:
        _check_kind(state, "numeric")
        sketch = cls(capacity=int(state["capacity"]), seed=int(state["seed"]))
        sketch.count = int(state["count"])
        sketch.nulls = int(state["nulls"])
        sketch.nans = int(state["nans"])
        sketch.infs = int(state["infs"])
        sketch._mean = float(state["mean"])
        sketch._m2 = float(state["m2"])
        sketch._min = math.inf if state["min"] is None else float(state["min"])
        sketch._max = -math.inf if state["max"] is None else float(state["max"])
        sketch._sample = np.asarray(state["sample"], dtype=np.float64)
        sketch._keys = np.asarray(state["keys"], dtype=np.float64)
        if sketch._sample.shape != sketch._keys.shape:
            raise ValueError("numeric sketch state has sample and keys of different lengths")
        return sketch

    def __repr__(self) -> str:
        return (
            f"NumericSketch(count={self.count}, nulls={self.nulls}, nans={self.nans}, "
            f"infs={self.infs}, mean={self.mean}, std={self.std}, reservoir={self._sample.size})"
        )


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
        _check_kind(state, "categorical")
        sketch = cls(max_categories=int(state["max_categories"]))
        sketch.counts = {str(k): int(v) for k, v in state["counts"].items()}
        sketch.nulls = int(state["nulls"])
        return sketch

    def __repr__(self) -> str:
        return f"CategoricalSketch(categories={len(self.counts)}, total={self.total})"
