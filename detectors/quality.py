"""Mergeable quality accumulators over joined outcomes (prediction, scores, label, latency).

Classification lives here; regression errors in ``detectors.regression``, label latency in
``detectors.latency``.

Classification labels and predictions may be bool, int, str or float; they are compared as
str class keys (`class_key`: a bool is the 0/1 class, 1.0 is "1"). A float prediction in
[0, 1] with a 0/1 label is a probability of class "1" (the predicted class is "1" when it is
>= 0.5). Metrics follow scikit-learn: binary precision/recall/F1 for the positive class,
macro averages when more than two classes are seen; None where a metric is undefined.

>>> q = ClassificationSketch()
>>> q.update([1, 0, 1, 1], [True, False, False, True])
>>> q.accuracy, q.precision, q.recall
(0.75, 0.6666666666666666, 1.0)
"""

from __future__ import annotations

import math
import zlib
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from itertools import repeat
from typing import Any, Final, Literal, Self

import numpy as np
import numpy.typing as npt
from scipy.stats import rankdata

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
    unpack_floats,
)
from detectors.sketches import check_state_kind

__all__ = [
    "CLASSIFICATION_STATE_FORMAT",
    "ClassificationSketch",
    "class_key",
]

Label = str | bool | int | float
Scores = Mapping[str, float]
FloatArray = npt.NDArray[np.float64]

CLASSIFICATION_STATE_FORMAT: Final = 2
"""`ClassificationSketch.to_state` layout: 2 packs scores and keys; 1 (lists) still loads."""
_LOG_EPS: Final = float(np.finfo(np.float64).eps)  # the clipping scikit-learn's log_loss uses
_ZERO_ONE: Final = frozenset({"0", "1"})
_BINARY_KEYS: Final[dict[Label, str]] = {0: "0", 1: "1"}
"""`class_key` of 0/1 labels (also False/True, 0.0/1.0: equal keys), looked up not computed."""
_POSITIVE_NAMES: Final = ("1", "true", "True", "TRUE", "yes", "positive")
_NEGATIVE_TO_POSITIVE: Final = {"0": "1", "false": "true", "False": "True", "no": "yes"}


def class_key(value: Label) -> str:
    """The str class key of a label or predicted class.

    >>> [class_key(v) for v in (True, False, 1, 1.0, "cat", 2.5)]
    ['1', '0', '1', '1', 'cat', '2.5']
    """
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class ClassificationSketch:
    """Confusion counts, a bounded (label, scores) reservoir for ROC AUC, and log-loss sums.

    `positive_class` fixes the positive class of a binary task; by default it is "1" / "true"
    when seen (or implied by "0" / "false"), else the second of the two sorted classes.
    `average` "auto" is binary for at most two classes and macro beyond. ROC AUC is binary
    only; it is exact while the scored outcomes fit in `capacity` and otherwise computed on a
    uniform (bottom-k, seeded) sample that stays uniform under merge. Log loss is exact.
    """

    def __init__(
        self,
        *,
        positive_class: str | None = None,
        average: Literal["auto", "binary", "macro"] = "auto",
        capacity: int = 4096,
        seed: int = 0,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        if average not in ("auto", "binary", "macro"):
            raise ValueError(f"average must be 'auto', 'binary' or 'macro', got {average!r}")
        self.positive_class = positive_class
        self.average = average
        self.capacity = capacity
        self.seed = seed
        self.reset()

    def reset(self) -> None:
        """Forget every outcome (keeps the constructor arguments)."""
        self.confusion: dict[tuple[str, str], int] = {}  # (predicted, actual) -> count
        self.count = 0
        self.log_loss_sum = 0.0
        self.log_loss_count = 0
        self._labels: list[str] = []
        self._scores: list[dict[str, float]] = []
        # As in NumericSketch: the key runs are stored instead of the keys, and the keys are
        # computed only when a selection needs them (None until then).
        self._runs: list[KeyRun] | None = []
        self._keys: FloatArray | None = None
        # (the scores list, its length, classes, packed values) of the last packing or
        # unpacking: a state written again before the scores change reuses it. The list only
        # ever grows in place or is replaced, so identity and length tell it is unchanged.
        self._packed: tuple[list[dict[str, float]], int, list[str], str] | None = None

    # -- updating --------------------------------------------------------------------------
    def update(
        self,
        predictions: Sequence[Label],
        labels: Sequence[Label],
        scores: Sequence[Scores | None] | None = None,
    ) -> None:
        """Fold joined outcomes: predicted class (or probability), true label, class scores."""
        if len(predictions) != len(labels) or (scores is not None and len(scores) != len(labels)):
            raise ValueError("predictions, labels and scores must have one entry per outcome")
        pairs: list[tuple[str, str]] = []
        scored_labels: list[str] = []
        scored: list[dict[str, float]] = []
        given_scores = scores if scores is not None else repeat(None)
        for prediction, label, given in zip(predictions, labels, given_scores, strict=False):
            actual = label if type(label) is str else _BINARY_KEYS.get(label) or class_key(label)
            if type(prediction) is float and actual in _ZERO_ONE and 0.0 <= prediction <= 1.0:
                predicted = "1" if prediction >= 0.5 else "0"
                given = given or {"1": prediction}
            else:
                predicted = (
                    prediction if type(prediction) is str
                    else _BINARY_KEYS.get(prediction) or class_key(prediction)
                )  # fmt: skip
            pairs.append((predicted, actual))
            if given:
                scored_labels.append(actual)
                scored.append(dict(zip(given, map(float, given.values()), strict=True)))
        for pair, n in Counter(pairs).items():
            self.confusion[pair] = self.confusion.get(pair, 0) + n
        self.count += len(pairs)
        if scored:
            p_true = np.array(
                [_probability(s, y) for s, y in zip(scored, scored_labels, strict=True)]
            )
            self.log_loss_sum -= float(np.log(np.clip(p_true, _LOG_EPS, 1.0 - _LOG_EPS)).sum())
            data = p_true.tobytes() + "\x1f".join(scored_labels).encode()
            run = (self.seed, self.log_loss_count, zlib.crc32(data), len(scored))
            cut = self._cutoff()  # before counting the batch in
            self.log_loss_count += len(scored)
            self._keep_smallest(scored_labels, scored, lambda: run_keys(run), cut, [run])

    def merge(self, other: ClassificationSketch) -> None:
        """Fold another sketch into this one (in place)."""
        if not isinstance(other, ClassificationSketch):
            raise TypeError(f"cannot merge {type(other).__name__} into ClassificationSketch")
        for pair, n in other.confusion.items():
            self.confusion[pair] = self.confusion.get(pair, 0) + n
        self.count += other.count
        self.log_loss_sum += other.log_loss_sum
        cut = min(self._cutoff(), other._cutoff())  # as NumericSketch.merge: stay uniform
        self.log_loss_count += other.log_loss_count
        self._keep_smallest(other._labels, other._scores, other._key_array, cut, other._runs)

    def copy(self) -> Self:
        """An independent copy."""
        clone = type(self)(
            positive_class=self.positive_class, average=self.average, capacity=self.capacity,
            seed=self.seed,
        )  # fmt: skip
        clone.confusion = dict(self.confusion)
        clone.count, clone.log_loss_sum = self.count, self.log_loss_sum
        clone.log_loss_count = self.log_loss_count
        clone._labels, clone._scores = list(self._labels), list(self._scores)
        clone._keys = self._keys  # arrays are replaced, never changed in place
        clone._runs = None if self._runs is None else list(self._runs)
        return clone

    def _cutoff(self) -> float:
        truncated = self.log_loss_count > len(self._labels) > 0
        return float(self._key_array().max()) if truncated else math.inf

    def _key_array(self) -> FloatArray:
        if self._keys is None:
            assert self._runs is not None  # keys are only left out while runs describe them
            self._keys = runs_keys(self._runs)
        return self._keys

    def _keep_smallest(
        self,
        labels: list[str],
        scores: list[dict[str, float]],
        keys: Callable[[], FloatArray],
        cut: float,
        runs: list[KeyRun] | None,
    ) -> None:
        if cut == math.inf and len(self._labels) + len(labels) <= self.capacity:
            # Nothing truncated and everything fits: bottom-k keeps it all, in arrival order.
            if not labels:
                return
            if self._runs is not None and runs is not None:
                self._runs.extend(runs)  # every sketch owns its list of runs
                self._keys = None
            else:
                self._keys, self._runs = np.concatenate([self._key_array(), keys()]), None
            self._labels += labels
            self._scores += scores
            return
        own_keys, new_keys = self._key_array(), keys()
        own, new = bottom_k(own_keys, new_keys, self.capacity, cut)
        if new.size == 0 and own.size == own_keys.size:
            return  # the common case once full: nothing enters
        whole = own.size == own_keys.size and new.size == new_keys.size
        self._runs = joined_runs(self._runs, runs) if whole else None
        if own.size < own_keys.size:
            self._labels = [self._labels[i] for i in own]
            self._scores = [self._scores[i] for i in own]
        self._labels += [labels[i] for i in new]
        self._scores += [scores[i] for i in new]
        self._keys = np.concatenate([own_keys[own], new_keys[new]])

    # -- reading ---------------------------------------------------------------------------
    @property
    def classes(self) -> list[str]:
        """Sorted union of the predicted and true classes seen."""
        return sorted({c for pair in self.confusion for c in pair})

    @property
    def positive(self) -> str | None:
        """The positive class of a binary task (None when it cannot be told)."""
        if self.positive_class is not None:
            return self.positive_class
        classes = self.classes
        for name in _POSITIVE_NAMES:
            if name in classes:
                return name
        for negative, positive in _NEGATIVE_TO_POSITIVE.items():
            if negative in classes:
                return positive
        return classes[1] if len(classes) == 2 else None

    @property
    def is_binary(self) -> bool:
        if self.average != "auto":
            return self.average == "binary"
        return len(self.classes) <= 2

    @property
    def accuracy(self) -> float | None:
        if not self.count:
            return None
        hits = sum(n for (predicted, actual), n in self.confusion.items() if predicted == actual)
        return hits / self.count

    def _class_counts(self, cls: str) -> tuple[int, int, int]:
        tp = fp = fn = 0
        for (predicted, actual), n in self.confusion.items():
            if predicted == cls and actual == cls:
                tp += n
            elif predicted == cls:
                fp += n
            elif actual == cls:
                fn += n
        return tp, fp, fn

    def _metric(self, which: Literal["precision", "recall", "f1"]) -> float | None:
        if not self.count:
            return None
        if self.is_binary:
            positive = self.positive
            return None if positive is None else _ratio(which, *self._class_counts(positive))
        # Macro: mean over classes where the metric is defined (sklearn zero_division=nan).
        values = [_ratio(which, *self._class_counts(c)) for c in self.classes]
        defined = [v for v in values if v is not None]
        return sum(defined) / len(defined) if defined else None

    @property
    def precision(self) -> float | None:
        return self._metric("precision")

    @property
    def recall(self) -> float | None:
        return self._metric("recall")

    @property
    def f1(self) -> float | None:
        return self._metric("f1")

    @property
    def log_loss(self) -> float | None:
        """Mean negative log-likelihood of the true class over scored outcomes."""
        return self.log_loss_sum / self.log_loss_count if self.log_loss_count else None

    @property
    def roc_auc(self) -> float | None:
        """Binary ROC AUC of the positive-class score (None for multiclass or one class)."""
        positive = self.positive
        if not self.is_binary or positive is None:
            return None
        pairs = [
            (label == positive, score)
            for label, probs in zip(self._labels, self._scores, strict=True)
            if (score := _positive_score(probs, positive)) is not None
        ]
        is_pos = np.array([p for p, _ in pairs], dtype=bool)
        n_pos, n_neg = int(is_pos.sum()), int((~is_pos).sum())
        if n_pos == 0 or n_neg == 0:
            return None
        ranks = rankdata(np.array([s for _, s in pairs], dtype=np.float64))
        # Mann-Whitney U with midranks for ties, as sklearn's trapezoidal AUC.
        return float((ranks[is_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))

    # -- state -----------------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        return {
            "kind": "classification",
            "positive_class": self.positive_class,
            "average": self.average,
            "capacity": self.capacity,
            "seed": self.seed,
            "count": self.count,
            "confusion": [[p, a, n] for (p, a), n in self.confusion.items()],
            "log_loss_sum": self.log_loss_sum,
            "log_loss_count": self.log_loss_count,
            "labels": list(self._labels),
            "scores": self._scores_state(),
            "keys": keys_to_state(self._key_array, self._runs, len(self._labels)),
            "format": CLASSIFICATION_STATE_FORMAT,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Self:
        check_state_kind(state, "classification")
        sketch = cls(
            positive_class=state["positive_class"],
            average=state["average"],
            capacity=int(state["capacity"]),
            seed=int(state["seed"]),
        )
        sketch.count = int(state["count"])
        sketch.confusion = {(str(p), str(a)): int(n) for p, a, n in state["confusion"]}
        sketch.log_loss_sum = float(state["log_loss_sum"])
        sketch.log_loss_count = int(state["log_loss_count"])
        sketch._labels = list(map(str, state["labels"]))
        sketch._scores = _scores_from_state(state["scores"])
        sketch._keys, sketch._runs = keys_from_state(state["keys"], lazy=True)
        size = keys_size(sketch._keys, sketch._runs)
        if not len(sketch._labels) == len(sketch._scores) == size:
            raise ValueError("classification state has labels, scores and keys of unequal length")
        scores = state["scores"]
        if isinstance(scores, dict) and sketch._scores:
            classes = [str(c) for c in scores["classes"]]
            if len(set(classes)) == len(classes):  # then packing the dicts gives this back
                sketch._packed = (sketch._scores, len(sketch._scores), classes, scores["values"])
        return sketch

    def _scores_state(self) -> list[dict[str, float]] | dict[str, Any]:
        scores, packed = self._scores, self._packed
        if packed is None or packed[0] is not scores or packed[1] != len(scores):
            state = _scores_state(scores)
            if not isinstance(state, dict):
                return state
            packed = self._packed = (scores, len(scores), state["classes"], state["values"])
        return {"classes": list(packed[2]), "values": packed[3]}


def _scores_state(scores: list[dict[str, float]]) -> list[dict[str, float]] | dict[str, Any]:
    """Scores of the same classes (in the same order): the classes and one packed matrix."""
    names = list(scores[0]) if scores else []
    if not names or any(list(s) != names for s in scores):
        return [dict(s) for s in scores]
    return {"classes": names, "values": pack_floats([s[c] for s in scores for c in names])}


def _scores_from_state(state: Any) -> list[dict[str, float]]:
    if isinstance(state, dict):  # format 2, packed
        names = [str(c) for c in state["classes"]]
        values = unpack_floats(state["values"])
        if not names or values.size % len(names):
            raise ValueError("classification state has packed scores that do not fit its classes")
        rows = values.reshape(-1, len(names)).tolist()
        if len(names) == 2:  # binary scores, the common case: a dict display is 5x faster
            first, second = names
            return [{first: a, second: b} for a, b in rows]
        return [dict(zip(names, row, strict=True)) for row in rows]
    return [{str(k): float(v) for k, v in s.items()} for s in state]


def _ratio(which: str, tp: int, fp: int, fn: int) -> float | None:
    denominator = {"precision": tp + fp, "recall": tp + fn, "f1": 2 * tp + fp + fn}[which]
    numerator = 2 * tp if which == "f1" else tp
    return numerator / denominator if denominator else None


def _probability(probs: Mapping[str, float], cls: str) -> float:
    """P(cls) from a scores dict; a one-entry dict of a 0/1 task implies the other class."""
    if cls in probs:
        return probs[cls]
    if len(probs) == 1:
        ((only, p),) = probs.items()
        if {only, cls} in ({"0", "1"}, {"false", "true"}):
            return 1.0 - p
    return 0.0


def _positive_score(probs: Mapping[str, float], positive: str) -> float | None:
    if positive in probs:
        return probs[positive]
    if len(probs) == 1:
        return 1.0 - next(iter(probs.values()))  # the score of the only other class
    if len(probs) == 2:
        return 1.0 - sum(v for k, v in probs.items() if k != positive)
    return None
