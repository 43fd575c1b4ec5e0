"""Sequential change detectors (river's ADWIN, Page-Hinkley and the DDM family) behind one
small interface, with JSON state.

>>> import random
>>> rng = random.Random(7)
>>> detector = SequentialDetector("page_hinkley", threshold=50.0)
>>> stream = [rng.gauss(0, 1) for _ in range(500)] + [rng.gauss(3, 1) for _ in range(100)]
>>> [i for i, x in enumerate(stream) if detector.update(x)]
[516]
>>> restored = SequentialDetector.from_state(detector.to_state())
>>> restored.n_detections == detector.n_detections
True

State: river's detectors are not JSON-able (ADWIN's window lives in Rust and cannot even be
pickled), but every one of them restarts from scratch on the update after a detection, so its
state is a pure function of the values seen since then. `to_state` therefore stores the kind,
the constructor parameters and those values (at most `max_history` of them); `from_state`
builds a fresh detector and replays them. The restored detector is *exactly* the live one
whenever at most `max_history` values arrived since the last detection (or creation). Beyond,
it equals a detector started `max_history` values ago; for a stationary stream that only
forgets old evidence, and the counters (`n_detections`, `n_seen`, `drift_detected`) are
restored exactly either way. Feed per-window aggregates (one value per window) to stay exact.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, Literal, Self

from river import drift
from river.drift import binary

__all__ = ["BINARY_KINDS", "DETECTOR_FACTORIES", "SequentialDetector", "SequentialKind"]

SequentialKind = Literal["adwin", "page_hinkley", "ddm", "eddm", "hddm_a", "hddm_w"]
Param = bool | int | float | str

DETECTOR_FACTORIES: Final[dict[str, Callable[..., Any]]] = {
    "adwin": drift.ADWIN,
    "page_hinkley": drift.PageHinkley,
    "ddm": binary.DDM,
    "eddm": binary.EDDM,
    "hddm_a": binary.HDDMA,
    "hddm_w": binary.HDDMW,
}
"""Detector kind -> river class (the only place river types appear)."""

BINARY_KINDS: Final = frozenset({"ddm", "eddm", "hddm_a", "hddm_w"})
"""Kinds that take 0/1 (error / no error) values rather than real numbers."""

DEFAULT_MAX_HISTORY: Final = 10_000


class SequentialDetector:
    """One river drift detector: `update(x)` returns True on a new drift, then read properties.

    `params` go to the river constructor under their own names (e.g. ``delta`` for ADWIN,
    ``threshold`` for Page-Hinkley, ``drift_threshold`` for DDM); they must be JSON scalars.
    The one parameter not passed to river, ``max_history`` (default 10,000), bounds the
    replayed history kept for `to_state` (see the module doc).
    """

    def __init__(self, kind: SequentialKind, **params: Param) -> None:
        if kind not in DETECTOR_FACTORIES:
            raise ValueError(
                f"unknown sequential detector kind {kind!r}: "
                f"use one of {sorted(DETECTOR_FACTORIES)}"
            )
        max_history = params.pop("max_history", DEFAULT_MAX_HISTORY)
        if isinstance(max_history, bool) or not isinstance(max_history, int) or max_history < 1:
            raise ValueError(f"max_history must be an int >= 1, got {max_history!r}")
        for name, value in params.items():
            if not isinstance(value, bool | int | float | str):
                raise TypeError(f"parameter {name}={value!r} must be a JSON scalar")
        self.kind: SequentialKind = kind
        self.params: dict[str, Param] = dict(params)
        self.max_history = max_history
        self._make()  # fail now, not at the first update, on a bad parameter
        self.reset()

    def _make(self) -> Any:
        try:
            return DETECTOR_FACTORIES[self.kind](**self.params)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"bad parameters {self.params} for {self.kind!r} ({exc}): see the river "
                f"documentation of {DETECTOR_FACTORIES[self.kind].__name__}"
            ) from None

    def reset(self) -> None:
        """Start over: a fresh detector, no history, counters at zero."""
        self._detector = self._make()
        self._history: deque[float] = deque(maxlen=self.max_history)
        self._since_restart = 0  # values since river last restarted (may exceed the history)
        self.n_seen = 0
        self.n_detections = 0
        self._drift = False

    @property
    def drift_detected(self) -> bool:
        """Whether the last update detected a drift."""
        return self._drift

    @property
    def warning_detected(self) -> bool:
        """The DDM family's warning zone (always False for ADWIN and Page-Hinkley)."""
        return bool(getattr(self._detector, "warning_detected", False))

    @property
    def history_is_exact(self) -> bool:
        """Whether the replay history covers every value since the last restart."""
        return self._since_restart <= self.max_history

    def update(self, x: float) -> bool:
        """Fold one value; True when it completes a new drift detection."""
        self._drift = self._feed(self._check(x))
        self.n_seen += 1
        if self._drift:
            self.n_detections += 1
        return self._drift

    def _feed(self, value: float) -> bool:
        if self._drift or self._detector.drift_detected:
            # river restarts on the update after a detection; do it here so history matches.
            self._detector = self._make()
            self._history.clear()
            self._since_restart = 0
            self._drift = False
        self._history.append(value)
        self._since_restart += 1
        self._detector.update(bool(value) if self.kind in BINARY_KINDS else value)
        return bool(self._detector.drift_detected)

    def update_many(self, values: Iterable[float]) -> list[int]:
        """Fold values in order; the positions (within `values`) that detected a drift."""
        return [i for i, x in enumerate(values) if self.update(x)]

    def _check(self, x: float) -> float:
        value = float(x)
        if not math.isfinite(value):
            raise ValueError(f"{self.kind} takes finite values, got {x!r}: drop NaN/inf first")
        if self.kind in BINARY_KINDS and value not in (0.0, 1.0):
            raise ValueError(f"{self.kind} takes 0/1 (1 = error), got {x!r}: use adwin instead")
        return value

    def to_state(self) -> dict[str, Any]:
        """JSON-able state: kind, params and the values since the last restart (bounded)."""
        binary_values = self.kind in BINARY_KINDS
        return {
            "kind": "sequential",
            "detector": self.kind,
            "params": dict(self.params),
            "max_history": self.max_history,
            "history": [int(v) if binary_values else v for v in self._history],
            "since_restart": self._since_restart,
            "n_seen": self.n_seen,
            "n_detections": self.n_detections,
            "drift_detected": self._drift,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Self:
        """Rebuild the detector by replaying the stored history (see the module doc)."""
        if state.get("kind") != "sequential" or state.get("detector") not in DETECTOR_FACTORIES:
            raise ValueError(
                f"not a SequentialDetector state (kind={state.get('kind')!r}, "
                f"detector={state.get('detector')!r}): pass SequentialDetector.to_state()"
            )
        params = {**state["params"], "max_history": int(state["max_history"])}
        detector = cls(state["detector"], **params)
        for value in state["history"]:
            detector._feed(float(value))  # exact replay never detects before the last value
        detector._since_restart = int(state["since_restart"])
        detector.n_seen = int(state["n_seen"])
        detector.n_detections = int(state["n_detections"])
        detector._drift = bool(state["drift_detected"])
        return detector

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return (
            f"SequentialDetector({self.kind!r}{', ' if params else ''}{params}, "
            f"n_seen={self.n_seen}, n_detections={self.n_detections})"
        )
