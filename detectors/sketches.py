"""Bounded, mergeable, JSON-able window sketches: the state a window keeps instead of raw rows.

`NumericSketch` keeps exact moments (count, mean, std, min, max; Chan's parallel merge) and a
bounded reservoir for KS / Wasserstein / histograms; categorical values are counted by
``detectors.categorical``. Sketches merge in place, so partitions summarise separately and a
model merges them.

>>> import numpy as np
>>> a, b = NumericSketch(capacity=100), NumericSketch(capacity=100)
>>> a.update(np.array([1.0, 2.0, np.nan]))
>>> b.update([3.0, None, float("inf")])
>>> a.merge(b)
>>> (a.count, a.nulls, a.nans, a.infs, a.total, a.mean, a.min, a.max)
(3, 1, 1, 1, 6, 2.0, 1.0, 3.0)
>>> a.histogram(np.array([1.5, 2.5])).tolist()
[1.0, 1.0, 1.0]
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Self

import numpy as np
import numpy.typing as npt

from detectors.reservoir import (
    KeyRun,
    bottom_k,
    joined_runs,
    keys_from_state,
    keys_size,
    keys_to_state,
    pack_floats,
    run_keys,
    runs_keys,
    uniform_keys,
    unpack_floats,
)

__all__ = [
    "NUMERIC_STATE_FORMAT",
    "NumericSketch",
    "bottom_k",
    "check_state_kind",
    "pack_floats",
    "uniform_keys",
    "unpack_floats",
    "update_rows",
]

FloatArray = npt.NDArray[np.float64]

_EMPTY: Final = np.empty(0, dtype=np.float64)
_EMPTY.flags.writeable = False
NUMERIC_STATE_FORMAT: Final = 2
"""`NumericSketch.to_state` layout: 2 = base64 arrays and key runs; 1 (lists) still loads."""


def check_state_kind(state: Mapping[str, Any], kind: str) -> None:
    """Raise when ``state`` was exported by another class (its ``kind`` differs)."""
    if state.get("kind") != kind:
        raise ValueError(
            f"state has kind {state.get('kind')!r}, expected {kind!r}: pass a state produced "
            f"by the matching class's to_state()"
        )


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
        # Arrays are replaced, never changed in place, so copies may share them.
        self._sample: FloatArray = _EMPTY
        # The update batches whose keys are the reservoir's keys, in order (None once a
        # selection dropped some): the state stores these instead of the keys, and the keys
        # themselves are only computed when a selection needs them (None until then).
        self._runs: list[KeyRun] | None = []
        self._keys: FloatArray | None = None
        # The reservoir array and its `pack_floats` text, once packed or unpacked: a state
        # written again before the reservoir changes (a loaded delta the judge keeps as its
        # open window) reuses the text. Valid while ``_packed[0] is _sample``.
        self._packed: tuple[FloatArray, str] | None = None

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

    @property
    def reservoir(self) -> FloatArray:
        """The reservoir itself, without a copy (for hot paths): read it, never change it."""
        return self._sample

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
        arr = np.ascontiguousarray(arr)
        total = float(np.add.reduce(arr))
        # ufunc reductions directly: ndarray.mean()/min() wrappers cost more than the work here.
        lo, hi = float(np.minimum.reduce(arr)), float(np.maximum.reduce(arr))
        self._fold_finite(
            arr, total, lo, hi, (self.seed, self.count, zlib.crc32(arr.data), arr.size)
        )

    def _fold_finite(
        self, arr: FloatArray, total: float, lo: float, hi: float, run: KeyRun
    ) -> None:
        """Count a batch of finite values with their sum and extremes; ``run``: their keys."""
        n = arr.size
        if n == 1:  # one value: its own mean, no spread (what the general path computes)
            self._combine_moments(1, total, 0.0, lo, hi)
        else:
            batch_mean = total / n if math.isfinite(total) else float(np.add.reduce(arr / n))
            dev = arr - batch_mean
            self._combine_moments(n, batch_mean, float(np.dot(dev, dev)), lo, hi)
        size = self._sample.size
        if self.count == size and size + n <= self.capacity:
            # Not truncated and everything fits: bottom-k keeps every value, in arrival order.
            self.count += n
            self._append(arr, [run], lambda: run_keys(run))
            return
        keys = run_keys(run)
        if size >= self.capacity and not (keys <= self._key_array().max()).any():
            self.count += n  # full, and no key is small enough to enter
            return
        cut = self._cutoff()  # before counting the batch in
        self.count += n
        self._keep_smallest(arr, keys, cut, [run])

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
        size, other_size = self._sample.size, other._sample.size
        if self.count == size and other.count == other_size and size + other_size <= self.capacity:
            self.count += other.count  # neither side truncated and both fit: keep everything
            self._append(other._sample, other._runs, other._key_array)
            return
        cut = min(self._cutoff(), other._cutoff())
        self.count += other.count
        self._keep_smallest(other._sample, other._key_array(), cut, other._runs)

    def merge_many(self, others: Sequence[NumericSketch]) -> None:
        """`merge` each of ``others`` in order, choosing the reservoir once for all of them
        (a judge closing a window of many deltas): the same sketch as merging them one by one
        while no side was truncated below what it saw, ~half the cost for eight deltas."""
        if len(others) == 1:
            self.merge(others[0])
            return
        live: list[NumericSketch] = []
        for other in others:
            if not isinstance(other, NumericSketch):
                raise TypeError(f"cannot merge {type(other).__name__} into NumericSketch")
            self.nulls += other.nulls
            self.nans += other.nans
            self.infs += other.infs
            if other.count:
                live.append(other)
        if not live:
            return
        whole = self.count == self._sample.size and all(o.count == o._sample.size for o in live)
        fits = self._sample.size + sum(o._sample.size for o in live) <= self.capacity
        cut = min([self._cutoff(), *(other._cutoff() for other in live)])
        for other in live:  # in order, as one-by-one merges combine them
            self._combine_moments(other.count, other._mean, other._m2, other._min, other._max)
            self.count += other.count
        if whole and fits:
            for other in live:
                self._append(other._sample, other._runs, other._key_array)
            return
        runs = None if any(other._runs is None for other in live) else [
            run for other in live for run in other._runs or ()
        ]  # fmt: skip
        self._keep_smallest(
            np.concatenate([other._sample for other in live]),
            np.concatenate([other._key_array() for other in live]),
            cut,
            runs,
        )

    def copy(self) -> Self:
        """An independent copy."""
        clone = type(self)(capacity=self.capacity, seed=self.seed)
        clone.count, clone.nulls, clone.nans, clone.infs = (
            self.count, self.nulls, self.nans, self.infs,
        )  # fmt: skip
        clone._mean, clone._m2, clone._min, clone._max = self._mean, self._m2, self._min, self._max
        clone._sample, clone._keys = self._sample, self._keys  # never changed in place
        clone._packed = self._packed
        clone._runs = None if self._runs is None else list(self._runs)
        return clone

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
        return float(self._key_array().max()) if truncated else math.inf

    def _key_array(self) -> FloatArray:
        """The reservoir's keys (computed from the key runs on first use)."""
        if self._keys is None:
            assert self._runs is not None  # keys are only left out while runs describe them
            self._keys = runs_keys(self._runs)
        return self._keys

    def _append(
        self, values: FloatArray, runs: list[KeyRun] | None, keys: Callable[[], FloatArray]
    ) -> None:
        """Keep every value of a batch; ``keys()`` gives their keys if runs cannot."""
        if values.size == 0:
            return
        if self._runs is not None and runs is not None:
            self._runs.extend(runs)  # every sketch owns its list of runs
            self._keys = None
        else:
            self._keys = np.concatenate([self._key_array(), keys()])
            self._runs = None
        self._sample = np.concatenate([self._sample, values])
        self._packed = None  # the text of the previous reservoir: let it go

    def _keep_smallest(
        self, values: FloatArray, keys: FloatArray, cut: float, runs: list[KeyRun] | None
    ) -> None:
        own_keys = self._key_array()
        own, new = bottom_k(own_keys, keys, self.capacity, cut)
        whole = own.size == own_keys.size
        if new.size == 0 and whole:
            return  # the common case once full: nothing enters
        self._sample = np.concatenate([self._sample[own], values[new]])
        self._packed = None  # the text of the previous reservoir: let it go
        self._keys = np.concatenate([own_keys[own], keys[new]])
        self._runs = joined_runs(self._runs, runs) if whole and new.size == keys.size else None

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
        """JSON-able state (floats are finite; min/max are None while empty).

        The reservoir is base64 of little-endian float64 (`pack_floats`); its keys are the
        update batches they came from (``[seed, start, crc32, length]`` each, regenerated on
        load) while that is shorter, else packed like the values.
        """
        return {
            "kind": "numeric",
            "format": NUMERIC_STATE_FORMAT,
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
            "sample": self._packed_sample(),
            "keys": keys_to_state(self._key_array, self._runs, self._sample.size),
        }

    def _packed_sample(self) -> str:
        packed = self._packed
        if packed is None or packed[0] is not self._sample:
            packed = self._packed = (self._sample, pack_floats(self._sample))
        return packed[1]

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Self:
        check_state_kind(state, "numeric")
        sketch = cls(capacity=int(state["capacity"]), seed=int(state["seed"]))
        sketch.count = int(state["count"])
        sketch.nulls = int(state["nulls"])
        sketch.nans = int(state["nans"])
        sketch.infs = int(state["infs"])
        sketch._mean = float(state["mean"])
        sketch._m2 = float(state["m2"])
        sketch._min = math.inf if state["min"] is None else float(state["min"])
        sketch._max = -math.inf if state["max"] is None else float(state["max"])
        sample = state["sample"]
        if isinstance(sample, str):
            sketch._sample = unpack_floats(sample)
            sketch._packed = (sketch._sample, sample)
        else:  # format 1 stored plain lists
            sketch._sample = np.asarray(sample, np.float64)
        sketch._keys, sketch._runs = keys_from_state(state["keys"], lazy=True)
        if keys_size(sketch._keys, sketch._runs) != sketch._sample.size:
            raise ValueError("numeric sketch state has sample and keys of different lengths")
        return sketch

    def __repr__(self) -> str:
        return (
            f"NumericSketch(count={self.count}, nulls={self.nulls}, nans={self.nans}, "
            f"infs={self.infs}, mean={self.mean}, std={self.std}, reservoir={self._sample.size})"
        )


def update_rows(sketches: Sequence[NumericSketch], block: npt.NDArray[Any]) -> None:
    """``sketches[i].update(block[i])`` for every row of a 2-d numeric block, with the work
    shared across rows (one finiteness check, one key generation): exactly the same results.

    >>> a, b = NumericSketch(), NumericSketch()
    >>> update_rows([a, b], np.array([[1.0, 2.0], [3.0, 5.0]]))
    >>> (a.count, a.mean, b.max)
    (2, 1.5, 5.0)
    """
    rows = np.ascontiguousarray(block, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[0] != len(sketches):
        raise ValueError(f"need one row per sketch, got a block of shape {rows.shape}")
    n = rows.shape[1]
    if n == 0 or not sketches:
        return
    if not np.isfinite(rows).all():
        for sketch, row in zip(sketches, rows, strict=True):
            sketch.update(row)
        return
    totals = np.add.reduce(rows, axis=1).tolist()  # per row, bitwise as a 1-d reduce
    lows = np.minimum.reduce(rows, axis=1).tolist()
    highs = np.maximum.reduce(rows, axis=1).tolist()
    if _fill_fresh(sketches, rows, totals, lows, highs):
        return
    for i, sketch in enumerate(sketches):
        run = (sketch.seed, sketch.count, zlib.crc32(rows[i].data), n)
        sketch._fold_finite(rows[i], totals[i], lows[i], highs[i], run)


def _fill_fresh(
    sketches: Sequence[NumericSketch],
    rows: FloatArray,
    totals: list[float],
    lows: list[float],
    highs: list[float],
) -> bool:
    """`update_rows` into empty sketches that keep every value (a fresh delta's, the common
    case): what `NumericSketch._fold_finite` would set, with the deviations computed for all
    rows at once. False (nothing changed) when any sketch is not such a one."""
    n = rows.shape[1]
    for sketch in sketches:
        if type(sketch) is not NumericSketch or sketch.count or sketch.capacity < n:
            return False
    if not all(map(math.isfinite, totals)):
        return False
    rows = rows.copy()  # the sketches keep rows of it: never the caller's array
    if n == 1:
        means, m2s = totals, [0.0] * len(sketches)
    else:
        means = [total / n for total in totals]
        dev = rows - np.array(means)[:, None]
        m2s = [float(np.dot(row, row)) for row in dev]
    for i, sketch in enumerate(sketches):
        row = rows[i]
        sketch.count = n
        sketch._mean, sketch._m2, sketch._min, sketch._max = means[i], m2s[i], lows[i], highs[i]
        sketch._sample = row
        sketch._runs = [(sketch.seed, 0, zlib.crc32(row.data), n)]
        sketch._keys = None
    return True
