"""The alert lifecycle: breaches in k of the last m judged windows fire, a clean run resolves.

One firing and one resolved alert per episode, never anything in between. Identities are
deterministic, so a judge rebuilt from its state (or re-run on the same input) emits the very
same alerts:

- ``fingerprint`` = first 16 hex of sha256("model|kind|feature|segment|detector");
- ``alert_id`` = uuid5(ALERT_NAMESPACE, "fingerprint|status|episode").

>>> fingerprint("churn", "feature_drift", "age", None, "ks")
'bf43865faaf26df5'
>>> alert_id("bf43865faaf26df5", "firing", 1)
'f23f98f8-e677-5969-9fe1-b886e5a4748a'
>>> book = AlertBook(k=2, m=3, resolve_after=2)
>>> [book.observe(fingerprint("m", "feature_drift", "x", None, "ks"), breached)
...  for breached in (True, False, True, True, False, False, False)]
[None, None, 'firing', None, None, 'resolved', None]
"""

from __future__ import annotations

import hashlib
import math
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal, cast

from detectors.join import from_epoch_us
from schemas.events import Alert, AlertKind, AlertReference, AlertWindow
from schemas.monitor_config import AlertingConfig
from schemas.profile import ReferenceProfile

__all__ = [
    "ALERT_NAMESPACE",
    "AlertBook",
    "Reading",
    "Status",
    "Track",
    "alert_id",
    "build_alert",
    "fingerprint",
    "share_bound",
]

ALERT_NAMESPACE: Final = uuid.UUID("3c1f6a0e-5d2b-5b8e-9a51-6c0d2f7e8b14")
Status = Literal["firing", "resolved"]


@dataclass(slots=True)
class Reading:
    """One statistic of one window; ``decides`` marks the ones alerts follow (treat as
    read-only: not frozen because windows make hundreds and a frozen init costs 5x).

    ``describe`` is the summary or a function writing it: few readings become an alert.
    """

    kind: str
    feature: str | None
    segment: str | None
    detector: str
    statistic: float
    threshold: float
    p_value: float | None
    breached: bool
    decides: bool
    count: int
    describe: str | Callable[[], str]
    center: float = 0.0
    """The statistic's value when nothing drifted (baseline error rate, reference null rate,
    chi-square degrees of freedom...). Above the threshold for statistics that breach below
    it (label coverage)."""
    trials: int = 0
    """Values the statistic is a share of (null, out-of-range, error rate...); 0: not a
    share. A share's hysteresis judges its confidence bound, not the share itself."""

    @property
    def summary(self) -> str:
        text = self.describe
        return text if isinstance(text, str) else text()

    def clear(self, fraction: float, z: float = 0.0) -> bool:
        """Hysteresis for a firing alert: no breach, and the statistic at most ``fraction`` of
        the way from ``center`` to the threshold (1: merely within the threshold).

        A share (``trials`` > 0) is judged by its one-sided Wilson bound at ``z`` standard
        errors on the threshold's side: a share that sits near its threshold for good
        (a persistent shift) must not clear on a few windows that drew low by chance. Over
        so few values that not even a perfect window (no value counted) would clear by its
        bound, the share itself decides: a page must be able to resolve.

        >>> hovering = Reading("data_quality", "x", None, "out_of_range", 0.008, 0.02, None,
        ...     False, True, 500, "", 0.0, trials=500)
        >>> hovering.clear(0.5), hovering.clear(0.5, z=0.6745)
        (True, False)
        >>> back = Reading("data_quality", "x", None, "out_of_range", 0.002, 0.02, None,
        ...     False, True, 500, "", 0.0, trials=500)
        >>> back.clear(0.5, z=0.6745)
        True
        >>> sparse = Reading("data_quality", "x", None, "out_of_range", 0.0, 0.02, None,
        ...     False, True, 20, "", 0.0, trials=20)
        >>> sparse.clear(0.5, z=0.6745)  # the bound of 0 in 20 is 2.2 %: never clear by it
        True
        """
        if self.breached:
            return False
        span = self.threshold - self.center
        if span == 0 or not math.isfinite(span):
            return True
        statistic = self.statistic
        if z > 0 and self.trials > 0:
            upper = span > 0
            best = share_bound(0.0 if upper else 1.0, self.trials, z, upper=upper)
            if (best - self.center) / span <= fraction:  # the bound can tell, so it decides
                statistic = share_bound(statistic, self.trials, z, upper=upper)
        return (statistic - self.center) / span <= fraction


def share_bound(share: float, trials: int, z: float, *, upper: bool) -> float:
    """Wilson score bound of a share observed over ``trials`` values, ``z`` standard errors
    above it (``upper``) or below; it stays within [0, 1] and is not degenerate at 0 or 1.

    >>> round(share_bound(0.0, 500, 1.2816, upper=True), 5)
    0.00327
    >>> round(share_bound(0.5, 100, 1.96, upper=False), 4)
    0.4038
    """
    if not 0.0 <= share <= 1.0 or trials <= 0:
        return share
    z2n = z * z / trials
    center = share + z2n / 2
    spread = z * math.sqrt(share * (1 - share) / trials + z2n / (4 * trials))
    return (center + spread if upper else center - spread) / (1 + z2n)


def fingerprint(
    model: str, kind: str, feature: str | None, segment: str | None, detector: str
) -> str:
    """Stable id of what an alert is about (16 hex of sha256)."""
    text = f"{model}|{kind}|{feature or ''}|{segment or ''}|{detector}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def alert_id(fingerprint: str, status: Status, episode: int) -> str:
    """Deterministic id of one state change of one episode."""
    return str(uuid.uuid5(ALERT_NAMESPACE, f"{fingerprint}|{status}|{episode}"))


@dataclass
class Track:
    """The lifecycle state of one fingerprint."""

    history: list[bool] = field(default_factory=list)
    """Breaches of the last m judged windows, oldest first."""
    firing: bool = False
    clean: int = 0
    """Consecutive clear windows while firing."""
    episode: int = 0
    """Episodes fired so far (the current one while firing)."""
    last: dict[str, Any] = field(default_factory=dict)
    """The last reading's fields (what a resolve on a reference switch reports)."""

    def to_state(self) -> dict[str, Any]:
        return {
            "history": list(self.history),
            "firing": self.firing,
            "clean": self.clean,
            "episode": self.episode,
            "last": dict(self.last),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Track:
        return cls(
            history=[bool(b) for b in state["history"]],
            firing=bool(state["firing"]),
            clean=int(state["clean"]),
            episode=int(state["episode"]),
            last=dict(state["last"]),
        )


class AlertBook:
    """k-of-m firing and ``resolve_after`` consecutive clear windows to resolve, per fingerprint."""

    def __init__(self, *, k: int, m: int, resolve_after: int) -> None:
        if not 1 <= k <= m:
            raise ValueError(f"need 1 <= k <= m, got k={k}, m={m}")
        self.k = k
        self.m = m
        self.resolve_after = resolve_after
        self.tracks: dict[str, Track] = {}

    def observe(
        self,
        key: str,
        breached: bool,
        last: Mapping[str, Any] | None = None,
        *,
        immediate: bool = False,
        clear: bool | None = None,
    ) -> Status | None:
        """Record one judged window of ``key``; the status change it causes, if any.

        ``immediate``: one breach fires (sequential detectors confirm changes themselves).
        ``clear``: whether the window counts towards resolving a firing alert (default: it
        did not breach); a window that neither breaches nor clears restarts the count.
        """
        track = self.tracks.get(key)
        if track is None:
            if not breached:
                return None  # nothing to remember about a clean fingerprint
            track = self.tracks[key] = Track()
        if last is not None:
            track.last = dict(last)
        track.history = [*track.history, breached][-self.m :]
        if not track.firing:
            if sum(track.history) >= (1 if immediate else self.k):
                track.firing, track.clean = True, 0
                track.episode += 1
                return "firing"
            if not any(track.history) and track.episode == 0:
                del self.tracks[key]  # forget fingerprints that never fired and calmed down
            return None
        track.clean = track.clean + 1 if (not breached if clear is None else clear) else 0
        if track.clean >= self.resolve_after:
            track.firing, track.clean, track.history = False, 0, []
            return "resolved"
        return None

    def firing(self) -> list[str]:
        """Fingerprints currently firing, sorted."""
        return sorted(key for key, track in self.tracks.items() if track.firing)

    def force_resolve(self, key: str) -> bool:
        """Close a firing episode now (reference switch); False when it was not firing."""
        track = self.tracks.get(key)
        if track is None or not track.firing:
            return False
        track.firing, track.clean, track.history = False, 0, []
        return True

    def reset_windows(self) -> None:
        """Forget breach histories (a new reference), keeping episode numbers."""
        for track in self.tracks.values():
            track.history, track.clean = [], 0

    def episode(self, key: str) -> int:
        track = self.tracks.get(key)
        return 0 if track is None else track.episode

    def to_state(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "m": self.m,
            "resolve_after": self.resolve_after,
            "tracks": {key: track.to_state() for key, track in sorted(self.tracks.items())},
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> AlertBook:
        book = cls(k=int(state["k"]), m=int(state["m"]), resolve_after=int(state["resolve_after"]))
        book.tracks = {key: Track.from_state(value) for key, value in state["tracks"].items()}
        return book


def _finite(value: float | None) -> float:
    return float(value) if value is not None and math.isfinite(value) else 0.0


def build_alert(
    model: str,
    key: str,
    status: Status,
    episode: int,
    last: Mapping[str, Any],
    reference: ReferenceProfile,
    settings: AlertingConfig,
    *,
    emitted_at: datetime,
    summary: str,
) -> Alert:
    """The Alert of a state change; ``last`` holds the deciding reading and its window."""
    kind = cast(AlertKind, str(last["kind"]))
    end = from_epoch_us(int(last["end_us"]))
    p_value = last["p_value"]
    return Alert(
        alert_id=alert_id(key, status, episode), fingerprint=key, status=status,
        severity=settings.severity.get(kind, "warning"), model=model,
        model_version=last["model_version"], kind=kind, feature=last["feature"],
        segment=last["segment"], detector=last["detector"],
        statistic=_finite(last["statistic"]), threshold=_finite(last["threshold"]),
        p_value=None if p_value is None else min(max(_finite(p_value), 0.0), 1.0),
        window=AlertWindow(
            start=from_epoch_us(int(last["start_us"])), end=end, count=int(last["count"])
        ),
        reference=AlertReference(
            source=reference.source, model_version=reference.model_version,
            count=reference.count, profile_id=reference.profile_id,
        ),
        fired_at=end, emitted_at=emitted_at, summary=summary[:4096],
        runbook_url=settings.runbook_url.replace("{kind}", kind) if settings.runbook_url else None,
    )  # fmt: skip
