"""Compact state: packed float arrays and key runs, exact round trips, old formats still load."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from detectors.accumulate import PartitionAccumulator
from detectors.join import LabelJoiner
from detectors.judge import JUDGE_FORMAT, ModelJudge
from detectors.judge_state import pack_profile, unpack_profile
from detectors.quality import ClassificationSketch
from detectors.reservoir import (
    FEW_KEYS,
    KeyRun,
    keys_from_state,
    pack_floats,
    run_keys,
    runs_keys,
    unpack_floats,
)
from detectors.sketches import NumericSketch, update_rows
from detectors.window import DELTA_FORMAT, WindowDelta
from schemas.events import LabelEvent, PredictionEvent
from schemas.monitor_config import MonitorConfig

RNG = np.random.default_rng(77)
T0 = datetime(2024, 5, 1, tzinfo=UTC)


def _json(state: dict[str, Any]) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(json.dumps(state, allow_nan=False))
    return loaded


def _plain_keys(value: Any) -> list[float]:
    keys, _ = keys_from_state(value)
    assert keys is not None
    return list(keys.tolist())


def downgrade(state: Any) -> Any:
    """A format-2 state rewritten the way format 1 stored it (plain lists everywhere)."""
    if isinstance(state, list):
        return [downgrade(item) for item in state]
    if not isinstance(state, dict):
        return state
    out = {key: downgrade(value) for key, value in state.items()}
    if out.get("kind") in ("numeric", "classification") and "keys" in out:  # sketches
        out.pop("format", None)
        out["keys"] = _plain_keys(state["keys"])
        if out["kind"] == "numeric":
            out["sample"] = unpack_floats(state["sample"]).tolist()
        elif isinstance(state["scores"], dict):
            names = state["scores"]["classes"]
            rows = unpack_floats(state["scores"]["values"]).reshape(-1, len(names)).tolist()
            out["scores"] = [dict(zip(names, row, strict=True)) for row in rows]
    if out.get("format") in (DELTA_FORMAT, JUDGE_FORMAT) and "slices" in out:
        out["format"] = 1
    return out


def test_packed_floats_are_exact_and_plain_json() -> None:
    values = np.array([0.0, -0.0, 1e-310, -1.5e308, math.pi, 2.0**-1074])
    text = pack_floats(values)
    assert isinstance(json.loads(json.dumps(text)), str)
    back = unpack_floats(text)
    assert back.tobytes() == values.tobytes()  # bit for bit, signed zero included
    with pytest.raises(ValueError, match="multiple of 8"):
        unpack_floats(pack_floats(values)[:-4] + "AA==")
    with pytest.raises(ValueError, match="pack_floats"):
        unpack_floats("not base64!")


def test_whole_batches_store_key_runs_and_regenerate_the_same_keys() -> None:
    sketch = NumericSketch(capacity=1000, seed=3)
    for size in (100, 250, 7):
        sketch.update(RNG.normal(size=size))
    state = _json(sketch.to_state())
    assert state["format"] == 2 and isinstance(state["sample"], str)
    assert [run[3] for run in state["keys"]] == [100, 250, 7]  # three runs, not 357 keys
    restored = NumericSketch.from_state(state)
    assert np.array_equal(restored._key_array(), sketch._key_array())
    starts = [0, 100, 350]
    for run, start in zip(state["keys"], starts, strict=True):
        assert run[1] == start
        assert np.array_equal(run_keys(tuple(run)), sketch._key_array()[start : start + run[3]])


def test_a_truncated_reservoir_stores_its_keys_and_continues_identically() -> None:
    live = NumericSketch(capacity=200, seed=1)
    for _ in range(5):
        live.update(RNG.normal(size=120))
    state = _json(live.to_state())
    assert isinstance(state["keys"], str)  # a selection happened: runs cannot say which
    restored = NumericSketch.from_state(state)
    more = RNG.normal(size=300)
    live.update(more)
    restored.update(more)
    assert restored.to_state() == live.to_state()


def test_update_rows_equals_one_update_per_row() -> None:
    for capacity in (1, 50, 4096):
        block = RNG.normal(size=(4, 120)) * 100
        block[2, 5] = np.nan  # a non-finite row takes the per-row path
        one = [NumericSketch(capacity=capacity, seed=s) for s in range(4)]
        two = [NumericSketch(capacity=capacity, seed=s) for s in range(4)]
        for _ in range(3):
            update_rows(one, block)
            for sketch, row in zip(two, block, strict=True):
                sketch.update(row)
        assert [s.to_state() for s in one] == [s.to_state() for s in two]
    with pytest.raises(ValueError, match="one row per sketch"):
        update_rows(one, block[:2])


def test_old_list_states_load_to_the_same_sketches() -> None:
    numeric = NumericSketch(capacity=300)
    for _ in range(4):
        numeric.update(RNG.normal(size=100))
    old = downgrade(numeric.to_state())
    assert isinstance(old["sample"], list) and isinstance(old["keys"][0], float)
    assert NumericSketch.from_state(_json(old)).to_state() == numeric.to_state()

    labels = RNG.integers(0, 2, 300).tolist()
    probs = RNG.random(300).tolist()
    classification = ClassificationSketch(capacity=100)
    classification.update(probs, labels, [{"0": 1 - p, "1": p} for p in probs])
    state = classification.to_state()
    assert isinstance(state["scores"], dict) and isinstance(state["keys"], str)
    old = downgrade(state)
    assert isinstance(old["scores"], list)
    assert ClassificationSketch.from_state(_json(old)).to_state() == state


def _stream(n: int) -> tuple[list[PredictionEvent], list[LabelEvent]]:
    predictions, labels = [], []
    for i in range(n):
        at = T0 + timedelta(seconds=i)
        x = float(RNG.normal())
        predictions.append(PredictionEvent(
            event_id=f"e{i}", model="m", timestamp=at, prediction=float(1 / (1 + math.exp(-x))),
            features={**{f"n{k}": float(RNG.normal(k, 1 + k)) for k in range(6)},
                      "plan": str(RNG.choice(["a", "b", "c"])), "mobile": bool(i % 3),
                      "k": int(RNG.poisson(2)), "country": str(RNG.choice(["DE", "FR"]))},
        ))  # fmt: skip
        if i % 5:
            labels.append(LabelEvent(event_id=f"e{i}", model="m", timestamp=at, label=int(x > 0)))
    return predictions, labels


def _delta(predictions: list[PredictionEvent], labels: list[LabelEvent]) -> WindowDelta:
    accumulator = PartitionAccumulator(MonitorConfig())
    accumulator.add_predictions(predictions)
    joiner = LabelJoiner({}, {}, ttl_seconds=3600)
    accumulator.add_outcomes(joiner.add_predictions(predictions) + joiner.add_labels(labels))
    [delta] = accumulator.drain()
    return delta


def test_a_live_sized_delta_is_compact_plain_json_and_round_trips() -> None:
    predictions, labels = _stream(500)
    first, second = _delta(predictions[:250], labels[:200]), _delta(predictions[250:], labels[200:])
    state = _json(first.to_state())
    size, old_size = len(json.dumps(state)), len(json.dumps(downgrade(state)))
    assert state["format"] == DELTA_FORMAT and size < 0.4 * old_size
    restored = WindowDelta.from_state(state)
    assert restored.to_state() == first.to_state()
    # An old (format 1) state merges exactly like the new one (its keys stay explicit).
    old = WindowDelta.from_state(_json(downgrade(state)))
    restored.merge(second)
    old.merge(second)
    assert downgrade(old.to_state()) == downgrade(restored.to_state())


def test_judge_state_packs_the_reference_and_old_judge_states_still_load() -> None:
    predictions, labels = _stream(2600)
    config = MonitorConfig()
    judge = ModelJudge("m", config, clock=lambda: T0)
    judge.apply(_delta(predictions[:2000], labels[:1600]))
    assert judge.reference is not None
    packed = pack_profile(judge.reference)
    assert unpack_profile(_json(packed)) == judge.reference
    plain = judge.reference.model_dump(mode="json")
    assert len(json.dumps(packed)) < 0.7 * len(json.dumps(plain))

    state = _json(judge.to_state())
    assert state["format"] == JUDGE_FORMAT
    old_state = {**downgrade(state), "format": 1, "reference": plain}
    rest = _delta(predictions[2000:], labels[1600:])
    follow = [ModelJudge.from_state(s, config, clock=lambda: T0) for s in (state, old_state)]
    for restored in follow:
        assert restored.reference == judge.reference
        restored.apply(WindowDelta.from_state(_json(rest.to_state())))
    assert follow[0].windows == follow[1].windows == 1
    assert _json(follow[0].to_state()) == _json(follow[1].to_state())


@given(
    runs=st.lists(
        st.tuples(
            st.integers(-(2**40), 2**40),  # seeds: only their low 32 bits count
            st.integers(0, 2**63),
            st.integers(0, 2**32 - 1),
            st.integers(1, FEW_KEYS // 4),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_few_keys_are_the_vectorised_keys_bit_for_bit(runs: list[KeyRun]) -> None:
    # Up to FEW_KEYS keys are computed in plain integers; a long run appended sends the same
    # runs through numpy, and the common prefix must agree to the last bit.
    few = runs_keys(runs)
    assert few.size <= FEW_KEYS
    vectorised = runs_keys([*runs, (1, 5, 9, FEW_KEYS + 1)])[: few.size]
    assert few.tobytes() == vectorised.tobytes()
    assert run_keys(runs[0]).tobytes() == vectorised[: runs[0][3]].tobytes()
