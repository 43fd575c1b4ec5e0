"""SequentialDetector: known change points, exact restore through JSON state, errors."""

from __future__ import annotations

import json
from typing import Any, get_args

import numpy as np
import pytest

from detectors.sequential import (
    BINARY_KINDS,
    DETECTOR_FACTORIES,
    SequentialDetector,
    SequentialKind,
)

KINDS: list[SequentialKind] = list(get_args(SequentialKind))


def _stream(kind: str, seed: int = 42) -> tuple[list[float], list[int]]:
    """A seeded stream with known change points (returned as the second element)."""
    rng = np.random.default_rng(seed)
    if kind in BINARY_KINDS:
        rates, sizes = [0.05, 0.45, 0.05], [2000, 1500, 1500]
        errors = [rng.random(n) < p for p, n in zip(rates, sizes, strict=True)]
        values = [float(v) for v in np.concatenate(errors)]
    else:
        means, sizes = [0.0, 2.0, 0.0], [2000, 1500, 1500]
        parts = [rng.normal(m, 1.0, n) for m, n in zip(means, sizes, strict=True)]
        values = [float(v) for v in np.concatenate(parts)]
    return values, [2000, 3500]


def _params(kind: str) -> dict[str, Any]:
    return {"page_hinkley": {"threshold": 50.0}, "adwin": {"delta": 0.002}}.get(kind, {})


def _json(state: dict[str, Any]) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(json.dumps(state, allow_nan=False))
    return loaded


def test_every_kind_is_registered() -> None:
    assert set(KINDS) == set(DETECTOR_FACTORIES)
    assert set(KINDS) > BINARY_KINDS


@pytest.mark.parametrize("kind", KINDS)
def test_detects_the_known_change_and_not_the_stationary_prefix(kind: SequentialKind) -> None:
    values, changes = _stream(kind)
    detector = SequentialDetector(kind, **_params(kind))
    hits = detector.update_many(values)
    assert detector.n_seen == len(values) and detector.n_detections == len(hits)
    first_change = changes[0]
    # at most one early false alarm on the stationary prefix, then a hit soon after the change
    assert sum(h < first_change for h in hits) <= 1, hits
    assert any(first_change <= h < first_change + 600 for h in hits), hits


@pytest.mark.parametrize("kind", KINDS)
def test_restore_from_json_state_continues_with_the_same_change_points(
    kind: SequentialKind,
) -> None:
    values, _ = _stream(kind, seed=7)
    live = SequentialDetector(kind, **_params(kind))
    hits = live.update_many(values)
    assert hits, "the stream must produce detections for this test to mean anything"
    cuts = sorted({1, 1000, 2000, hits[0], hits[0] + 1, hits[-1], len(values) - 1})
    for cut in cuts:
        head = SequentialDetector(kind, **_params(kind))
        head_hits = head.update_many(values[:cut])
        restored = SequentialDetector.from_state(_json(head.to_state()))
        assert restored.history_is_exact
        assert restored.n_detections == head.n_detections
        assert restored.drift_detected == head.drift_detected
        tail_hits = [cut + i for i in restored.update_many(values[cut:])]
        assert head_hits + tail_hits == hits, (kind, cut)
        assert restored.n_detections == live.n_detections
        assert restored.warning_detected == live.warning_detected


@pytest.mark.parametrize("kind", ["adwin", "page_hinkley", "hddm_w"])
def test_truncated_history_equals_a_detector_started_max_history_values_ago(
    kind: SequentialKind,
) -> None:
    values, _ = _stream(kind, seed=3)
    cut, keep = 1500, 300  # stationary part, no detection since the start
    head = SequentialDetector(kind, max_history=keep)
    assert head.update_many(values[:cut]) == []
    assert not head.history_is_exact
    state = _json(head.to_state())
    assert len(state["history"]) == keep
    restored = SequentialDetector.from_state(state)
    assert restored.n_seen == cut and not restored.history_is_exact
    late = SequentialDetector(kind)
    late.update_many(values[cut - keep : cut])
    continued = restored.update_many(values[cut:])
    assert continued and continued == late.update_many(values[cut:])


def test_state_is_small_json_and_binary_history_stores_ints() -> None:
    detector = SequentialDetector("ddm", warm_start=10, drift_threshold=2.5)
    detector.update_many([0, 1, 0, 0])
    state = _json(detector.to_state())
    assert state["history"] == [0, 1, 0, 0]
    assert state["params"] == {"warm_start": 10, "drift_threshold": 2.5}
    assert SequentialDetector.from_state(state).params == detector.params


def test_reset_forgets_everything() -> None:
    values, _ = _stream("adwin")
    detector = SequentialDetector("adwin")
    detector.update_many(values)
    detector.reset()
    assert (detector.n_seen, detector.n_detections, detector.drift_detected) == (0, 0, False)
    assert detector.to_state()["history"] == []
    fresh = SequentialDetector("adwin")
    assert detector.update_many(values) == fresh.update_many(values)


def test_errors_say_what_to_do() -> None:
    with pytest.raises(ValueError, match="use one of"):
        SequentialDetector("cusum")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="bad parameters"):
        SequentialDetector("adwin", nonsense=1.0)
    with pytest.raises(ValueError, match="bad parameters"):
        SequentialDetector("page_hinkley", mode="sideways")
    with pytest.raises(ValueError, match="0/1"):
        SequentialDetector("ddm").update(0.5)
    with pytest.raises(ValueError, match="finite"):
        SequentialDetector("adwin").update(float("nan"))
    with pytest.raises(ValueError, match="to_state"):
        SequentialDetector.from_state({"kind": "numeric"})
    with pytest.raises(ValueError, match="max_history"):
        SequentialDetector("adwin", max_history=0)
    with pytest.raises(TypeError, match="JSON scalar"):
        SequentialDetector("adwin", delta=[0.1])  # type: ignore[arg-type]
