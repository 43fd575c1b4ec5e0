"""A two-sided CUSUM for a mean shift of one numeric feature, fed by batch moments.

Values are standardised against the reference (``Standardiser``: z = (x - mean) / std,
winsorised at ``WINSOR_SD`` and re-centred and re-scaled so that the reference's winsorised
values have mean 0 and variance 1). A batch enters as its count ``n`` and the sum of its
standardised values (Lindley recursion per batch)::

    S+ = max(0, S+ + (sum_z - k n))        S- = max(0, S- + (-sum_z - k n))

and an alarm is raised when either exceeds ``h``; both restart from 0 after an alarm. ``k`` is
half the smallest shift worth detecting (in reference standard deviations). A batch of one is
the per-event recursion exactly; larger batches clip at 0 only at their ends, so their path
never exceeds the per-event one: batching can only delay an alarm, never add one.

``h`` comes from a target in-control average run length (ARL, in events) per side:
Siegmund's approximation ARL = (e^(theta b) - theta b - 1) / (theta k), b = h + 1.166, with
theta = 2k for normal increments (the textbook formula), or the root of E[e^(theta (z - k))] = 1
over the reference's standardised values (exponential tilting; skewed features get their own,
larger h). The reference mean is itself an estimate from m values; averaged over that error the
false-alarm rate grows by e^(2 b^2 / m), and ``cusum_threshold`` solves for h with it included.

>>> h = cusum_threshold(1e6, k=0.25)
>>> round(h, 2), round(siegmund_arl(0.25, h))
(22.31, 1000000)
>>> cusum = MeanShiftCusum(k=0.25, h=2.9)
>>> [cusum.update(1, z) for z in (1.0, 1.0, 1.0, 1.0, -0.5)]
[0, 0, 0, 1, 0]
>>> cusum.alarm_statistic, cusum.alarm_shift
(3.0, 1.0)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

__all__ = [
    "OVERSHOOT",
    "WINSOR_SD",
    "MeanShiftCusum",
    "Standardiser",
    "cusum_threshold",
    "siegmund_arl",
    "tilting_root",
]

OVERSHOOT: Final = 1.166
"""Siegmund's correction (2 x 0.583) of h for unit-variance increments."""
WINSOR_SD: Final = 4.0
"""Standardised values are clipped to +-this: a single extreme value cannot raise an alarm, and
the increments of heavy-tailed features get a finite moment generating function."""
FloatArray = npt.NDArray[np.float64]


def siegmund_arl(k: float, h: float, shift: float = 0.0, *, theta: float | None = None) -> float:
    """Siegmund's ARL (events) of the one-sided CUSUM max(0, S + z - k) > h for unit-variance
    z of mean ``shift``; ``theta`` (in control only) replaces the normal tilting root 2k."""
    b = h + OVERSHOOT
    if theta is not None:
        x = theta * b
        return (math.expm1(x) - x) / (theta * k) if x < 700 else math.inf
    drift = shift - k
    if abs(drift) < 1e-12:
        return b * b
    x = -2.0 * drift * b
    if x > 700:
        return math.inf
    return (math.expm1(x) - x) / (2.0 * drift * drift)


def tilting_root(values: npt.ArrayLike, k: float) -> float:
    """theta > 0 with mean(exp(theta (values - k))) = 1 (inf when no value exceeds k: that
    side of the CUSUM cannot rise). 2k for standard normal values."""
    steps = np.asarray(values, dtype=np.float64) - k
    if steps.size == 0 or float(steps.max()) <= 0.0:
        return math.inf
    top = float(steps.max())

    def log_mgf(theta: float) -> tuple[float, float]:
        """log mean exp(theta steps) and its derivative (stable: shifted by the top step)."""
        weights = np.exp(theta * (steps - top))
        total = float(weights.sum())
        return theta * top + math.log(total / steps.size), float(weights @ steps) / total

    # log_mgf is convex, 0 at 0 with slope mean(steps) < 0: Newton from a point right of the
    # root decreases monotonically onto it.
    theta = 1.0
    while log_mgf(theta)[0] < 0.0:
        theta *= 2.0
        if theta > 1e6:
            return math.inf
    for _ in range(100):
        value, slope = log_mgf(theta)
        step = value / slope
        theta -= step
        if step < 1e-12 * theta:
            break
    return theta


def cusum_threshold(
    arl: float,
    *,
    k: float,
    theta: float | None = None,
    reference_size: int | None = None,
) -> float | None:
    """The h whose in-control ARL per side is ``arl`` events (Siegmund's approximation).

    ``theta``: the tilting root of the increments (default 2k, normal). ``reference_size``:
    the reference's values; the false-alarm rate is then averaged over its mean's estimation
    error (factor e^(2 b^2 / m)). None when no h reaches ``arl`` (a reference too small).
    """
    if arl <= 1 or k <= 0:
        raise ValueError(f"need arl > 1 and k > 0, got arl={arl}, k={k}")
    if theta is not None and math.isinf(theta):
        return 0.0  # this side never rises
    root = theta if theta is not None else 2.0 * k

    def log_arl(h: float) -> float:
        b = h + OVERSHOOT
        value = math.log(max(siegmund_arl(k, h, theta=root), 1e-300))
        return value - (2.0 * b * b / reference_size if reference_size else 0.0)

    target = math.log(arl)
    lo = 0.0
    if reference_size:  # log_arl rises, then falls: search below its peak
        hi = max(root * reference_size / 4.0 - OVERSHOOT, 0.0)
        if log_arl(hi) < target:
            return None
    else:
        hi = 1.0
        while log_arl(hi) < target:
            hi *= 2.0
    for _ in range(100):
        mid = (lo + hi) / 2.0
        if log_arl(mid) < target:
            lo = mid
        else:
            hi = mid
    return hi


@dataclass(frozen=True, slots=True)
class Standardiser:
    """Reference-standardised, winsorised values: u = (clip((x - mean) / std) - centre) / scale.

    ``centre`` and ``scale`` are the mean and std of the clipped reference sample, so the
    reference's u have mean 0 and variance 1 even for skewed features.
    """

    mean: float
    std: float
    centre: float
    scale: float
    clip: float = WINSOR_SD

    @classmethod
    def of(
        cls, sample: npt.ArrayLike, mean: float | None, std: float | None, clip: float = WINSOR_SD
    ) -> Standardiser | None:
        """From the reference's values, mean and std; None when they cannot standardise."""
        values = np.asarray(sample, dtype=np.float64)
        if mean is None or std is None or not (math.isfinite(mean) and std > 0) or values.size < 2:
            return None
        clipped = np.clip((values - mean) / std, -clip, clip)
        scale = float(clipped.std())
        if not scale > 0:
            return None
        return cls(float(mean), float(std), float(clipped.mean()), scale, clip)

    def values(self, x: npt.ArrayLike) -> FloatArray:
        """The standardised values of ``x``."""
        z = np.clip((np.asarray(x, dtype=np.float64) - self.mean) / self.std, -self.clip, self.clip)
        out: FloatArray = (z - self.centre) / self.scale
        return out

    def batch_sum(
        self, count: int, mean: float, low: float, high: float, sample: FloatArray
    ) -> float:
        """Sum of the standardised values of a batch of ``count`` finite values.

        From the moments alone when no value needs clipping (``low``/``high``: the batch's
        min and max); else from ``sample`` (all values, or a uniform sample scaled to count).
        """
        if count <= 0:
            return 0.0
        std, clip = self.std, self.clip
        if (low - self.mean) / std >= -clip and (high - self.mean) / std <= clip:
            clipped_sum = count * (mean - self.mean) / std
        elif sample.size:
            z = np.clip((sample - self.mean) / std, -clip, clip)
            clipped_sum = float(z.sum()) * (count / sample.size)
        else:
            clipped_sum = count * min(max((mean - self.mean) / std, -clip), clip)
        return (clipped_sum - count * self.centre) / self.scale


class MeanShiftCusum:
    """Two-sided CUSUM over batches of standardised values (count, sum).

    ``update`` returns +1 (upward alarm), -1 (downward) or 0; after an alarm
    ``alarm_statistic`` holds the CUSUM that crossed ``h`` and ``alarm_shift`` the estimated
    shift (k + S / events since S left 0, in reference standard deviations, signed).
    """

    def __init__(self, k: float, h: float) -> None:
        if not (k > 0 and h >= 0):
            raise ValueError(f"need k > 0 and h >= 0, got k={k}, h={h}: see cusum_threshold")
        self.k = k
        self.h = h
        self.upper = 0.0
        self.lower = 0.0
        self.upper_run = 0
        """Events since ``upper`` was last 0."""
        self.lower_run = 0
        self.count = 0
        """Events seen."""
        self.alarms = 0
        self.alarm_statistic = 0.0
        self.alarm_shift = 0.0

    @property
    def statistic(self) -> float:
        return max(self.upper, self.lower)

    def update(self, n: int, total: float) -> int:
        """Fold a batch of ``n`` standardised values summing to ``total``."""
        if n <= 0:
            return 0
        self.count += n
        drift = self.k * n
        self.upper = max(0.0, self.upper + (total - drift))
        self.lower = max(0.0, self.lower + (-total - drift))
        self.upper_run = self.upper_run + n if self.upper > 0.0 else 0
        self.lower_run = self.lower_run + n if self.lower > 0.0 else 0
        if self.upper <= self.h and self.lower <= self.h:
            return 0
        direction = 1 if self.upper >= self.lower else -1
        value, run = (self.upper, self.upper_run) if direction > 0 else (self.lower, self.lower_run)
        self.alarm_statistic = value
        self.alarm_shift = direction * (self.k + value / max(run, 1))
        self.alarms += 1
        self.upper = self.lower = 0.0
        self.upper_run = self.lower_run = 0
        return direction

    def to_state(self) -> dict[str, Any]:
        return {
            "k": self.k, "h": self.h, "upper": self.upper, "lower": self.lower,
            "upper_run": self.upper_run, "lower_run": self.lower_run, "count": self.count,
            "alarms": self.alarms, "alarm_statistic": self.alarm_statistic,
            "alarm_shift": self.alarm_shift,
        }  # fmt: skip

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> MeanShiftCusum:
        cusum = cls(float(state["k"]), float(state["h"]))
        cusum.upper, cusum.lower = float(state["upper"]), float(state["lower"])
        cusum.upper_run, cusum.lower_run = int(state["upper_run"]), int(state["lower_run"])
        cusum.count, cusum.alarms = int(state["count"]), int(state["alarms"])
        cusum.alarm_statistic = float(state["alarm_statistic"])
        cusum.alarm_shift = float(state["alarm_shift"])
        return cusum
