"""The judge's shortcuts give exactly what the plain computations give (bench/judge_cost.py).

Cached packed texts of reservoirs and class scores, the reference side of the categorical
statistics, and the Wasserstein null threshold computed in blocks of rows.
"""

from __future__ import annotations

import json
import math
import zlib
from typing import Any

import numpy as np
import pytest
from scipy import stats

from detectors.calibration import NullThresholds, lognormal_quantile
from detectors.kernels import categorical_reference, categorical_statistics
from detectors.quality import ClassificationSketch
from detectors.reservoir import pack_floats, unpack_floats
from detectors.sketches import NumericSketch

RNG = np.random.default_rng(2024)


def _json(state: dict[str, Any]) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(json.dumps(state))
    return loaded


def _classification(n: int, *, classes: tuple[str, ...] = ("0", "1")) -> ClassificationSketch:
    sketch = ClassificationSketch(capacity=300)
    labels = RNG.integers(0, len(classes), n).tolist()
    probs = RNG.dirichlet(np.ones(len(classes)), n)
    scores = [dict(zip(classes, row.tolist(), strict=True)) for row in probs]
    predicted = [classes[int(np.argmax(row))] for row in probs]
    sketch.update(predicted, [classes[i] for i in labels], scores)
    return sketch


def test_a_loaded_reservoir_writes_the_text_it_was_read_from_until_it_changes() -> None:
    sketch = NumericSketch(capacity=100)
    sketch.update(RNG.normal(size=60))
    state = _json(sketch.to_state())
    loaded = NumericSketch.from_state(state)
    assert loaded.to_state()["sample"] is state["sample"]  # reused, not packed again
    assert loaded.to_state() == state
    other = NumericSketch(capacity=100)
    other.update(RNG.normal(size=70))  # 130 > 100: the merge selects by key
    loaded.merge(other)
    sketch.merge(other)
    assert loaded.to_state() == sketch.to_state()
    assert unpack_floats(loaded.to_state()["sample"]).tobytes() == loaded.values().tobytes()
    copied = loaded.copy()
    copied.update([1.5, 2.5])
    assert copied.to_state()["sample"] == pack_floats(copied.values())
    assert loaded.to_state() == sketch.to_state()  # the copy's change left it alone


@pytest.mark.parametrize("classes", [("0", "1"), ("cat", "dog", "emu")])
def test_loaded_class_scores_round_trip_and_repack_after_a_change(
    classes: tuple[str, ...],
) -> None:
    sketch = _classification(120, classes=classes)
    state = _json(sketch.to_state())
    assert isinstance(state["scores"], dict) and state["scores"]["classes"] == list(classes)
    loaded = ClassificationSketch.from_state(state)
    assert loaded.to_state() == state
    assert loaded._scores == sketch._scores
    more = _classification(40, classes=classes)
    loaded.merge(more)  # grows the scores list in place
    sketch.merge(more)
    assert loaded.to_state() == sketch.to_state()
    rows = unpack_floats(loaded.to_state()["scores"]["values"]).reshape(-1, len(classes))
    assert rows.tolist() == [[s[c] for c in classes] for s in loaded._scores]
    big = _classification(400, classes=classes)  # beyond capacity: the list is replaced
    loaded.merge(big)
    sketch.merge(big)
    assert loaded.to_state() == sketch.to_state()
    assert len(loaded._scores) == 300


def test_scores_with_classes_in_different_orders_stay_a_list() -> None:
    sketch = ClassificationSketch()
    sketch.update([1, 0], [1, 1], [{"0": 0.2, "1": 0.8}, {"1": 0.3, "0": 0.7}])
    state = _json(sketch.to_state())
    assert state["scores"] == [{"0": 0.2, "1": 0.8}, {"1": 0.3, "0": 0.7}]
    assert ClassificationSketch.from_state(state).to_state() == state


def test_packed_scores_of_repeated_classes_are_not_reused_as_written() -> None:
    sketch = _classification(10)
    state = _json(sketch.to_state())
    state["scores"]["classes"] = ["1", "1"]  # hand-made: both columns collapse into "1"
    loaded = ClassificationSketch.from_state(state)
    rewritten = loaded.to_state()["scores"]
    assert rewritten["classes"] == ["1"] and len(unpack_floats(rewritten["values"])) == 10


def _psi_js(ref: np.ndarray, cur: np.ndarray) -> tuple[float, float]:
    p, q = ref / ref.sum(), cur / cur.sum()
    p_s, q_s = p + 1e-4, q + 1e-4
    p_s, q_s = p_s / p_s.sum(), q_s / q_s.sum()
    psi = float(np.sum((q_s - p_s) * np.log(q_s / p_s)))
    mid = (p + q) / 2
    return psi, float(stats.entropy(p, mid, base=2) + stats.entropy(q, mid, base=2))


@pytest.mark.parametrize(
    "cur",
    [
        {"US": 180, "DE": 100, "FR": 70, "BR": 50},  # every category known, one absent
        {"US": 180, "DE": 100, "XX": 9, "FR": 70},  # a category the reference lacks
        {},
    ],
)
def test_categorical_statistics_with_a_cached_reference_are_the_same(cur: dict[str, int]) -> None:
    ref = {"US": 700, "DE": 400, "FR": 300, "GB": 3, "BR": 200}
    plain = categorical_statistics(ref, cur)
    cached = categorical_statistics(ref, cur, categorical_reference(ref))
    assert repr(cached) == repr(plain)  # bit for bit (repr: NaN == NaN for an empty window)
    if cur:
        keys = sorted(set(ref) | set(cur))
        r = np.array([ref.get(k, 0) for k in keys], dtype=float)
        c = np.array([cur.get(k, 0) for k in keys], dtype=float)
        psi, kl_sum = _psi_js(r, c)  # PSI; KL(p || mid) + KL(q || mid) in bits
        assert cached["psi"][0] == pytest.approx(psi, rel=1e-9)
        assert cached["jensen_shannon"][0] == pytest.approx(math.sqrt(kl_sum / 2), rel=1e-9)


def _plain_wasserstein(sample_in: np.ndarray, n: int, alpha: float, draws: int) -> float:
    """`NullThresholds.wasserstein` written plainly: whole batches, no blocks, no reuse."""
    thresholds = NullThresholds(wasserstein_draws=draws)
    m = sample_in.size
    sample = np.sort(sample_in)
    rng = thresholds._rng(("wasserstein", zlib.crc32(sample.tobytes()), n, m, alpha))
    scale = float(sample.std()) or 1.0
    size = max(n, m)
    grid = (np.arange(size) + 0.5) / size
    at_ref, at_cur = (grid * m).astype(np.int64), (grid * n).astype(np.int64)
    out = np.empty(draws)
    chunk = max(1, 1_000_000 // size)
    for start in range(0, draws, chunk):
        rows = min(chunk, draws - start)
        ref = np.sort(sample[rng.integers(0, m, size=(rows, m))], axis=1)
        cur = np.sort(sample[rng.integers(0, m, size=(rows, n))], axis=1)
        distance = np.abs(ref[:, at_ref] - cur[:, at_cur]).mean(axis=1)
        stds = ref.std(axis=1)
        out[start : start + rows] = distance / np.where(stds > 0, stds, scale)
    return lognormal_quantile(out, alpha)


@pytest.mark.parametrize(
    ("m", "n", "draws"),
    [(2000, 500, 120), (2000, 490, 67), (300, 4000, 90), (150, 100, 500), (40, 600_000, 3)],
)
def test_the_blocked_wasserstein_threshold_equals_the_plain_bootstrap(
    m: int, n: int, draws: int
) -> None:
    sample = np.round(RNG.exponential(size=m) * 10, 1)  # skewed, with ties
    alpha = 1e-4
    expected = _plain_wasserstein(sample, n, alpha, draws)
    got = NullThresholds(wasserstein_draws=draws).wasserstein(sample, n=n, alpha=alpha, key="x")
    assert got == expected  # the same draws, reduced in the same order
