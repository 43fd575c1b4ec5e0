"""driftline alerts as Alertmanager v2 postable alerts (pure: no I/O, no clock).

One Alertmanager alert per driftline episode. Labels are the bounded identity Alertmanager
routes, groups and deduplicates on: ``alertname`` (one per kind, e.g. ``DriftlineFeatureDrift``),
``model``, ``model_version``, ``kind``, ``feature`` and ``segment`` (omitted when null),
``detector``, ``severity`` and driftline's ``fingerprint``, the only id among them: it names
the episode, so firing and resolved posts land on the same Alertmanager alert. Per-state-change
values (``alert_id``, statistic, window) go to annotations.

Times: ``startsAt`` is the episode's ``fired_at`` (event time), capped at its ``emitted_at``
(an alert cannot start after it was published; replayed or synthetic streams may run ahead of
the wall clock). A resolved alert ends at its ``emitted_at`` (wall clock): Alertmanager closes
an alert when ``endsAt`` is before its own clock, and event time may lag or lead it by hours.
A firing alert ends at ``firing_until`` when given (the bridge re-posts before then, as
Prometheus does); without it Alertmanager applies its ``resolve_timeout``.

>>> from datetime import UTC, datetime
>>> from schemas.events import Alert, AlertReference, AlertWindow
>>> t = datetime(2024, 5, 1, tzinfo=UTC)
>>> alert = Alert(alert_id="a1", fingerprint="f1", status="firing", severity="critical",
...     model="churn", model_version="3", kind="feature_drift", feature="age", segment=None,
...     detector="psi", statistic=0.31, threshold=0.2, window=AlertWindow(start=t, end=t, count=5),
...     reference=AlertReference(source="warmup", model_version="3", count=100), fired_at=t,
...     emitted_at=t, summary="age drifted")
>>> posted = to_alertmanager(alert, generator_url=None)
>>> posted["labels"]["alertname"], posted["labels"]["fingerprint"], "segment" in posted["labels"]
('DriftlineFeatureDrift', 'f1', False)
>>> posted["startsAt"], "endsAt" in posted
('2024-05-01T00:00:00Z', False)
>>> posted["annotations"]["description"]  # doctest: +ELLIPSIS
'psi = 0.31 > threshold 0.2 over 5 events from 2024-05-01T00:00:00Z to ..., compared with the...'
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from schemas.events import Alert, AlertKind

__all__ = ["ALERTNAMES", "Episode", "FiringSet", "rfc3339", "to_alertmanager"]

ALERTNAMES: Final[dict[AlertKind, str]] = {
    "feature_drift": "DriftlineFeatureDrift",
    "prediction_drift": "DriftlinePredictionDrift",
    "performance": "DriftlinePerformance",
    "data_quality": "DriftlineDataQuality",
    "label_coverage": "DriftlineLabelCoverage",
    "traffic": "DriftlineTraffic",
}
"""``alertname`` per kind: a fixed, small set that Alertmanager routes and silences can name."""


def rfc3339(moment: datetime) -> str:
    """UTC, ``Z`` suffix, microseconds only when present (Alertmanager parses both).

    >>> from datetime import timedelta, timezone
    >>> rfc3339(datetime(2024, 5, 1, 2, 0, 0, 500, tzinfo=timezone(timedelta(hours=2))))
    '2024-05-01T00:00:00.000500Z'
    """
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _labels(alert: Alert) -> dict[str, str]:
    labels = {
        "alertname": ALERTNAMES[alert.kind],
        "model": alert.model,
        "model_version": alert.model_version,
        "kind": alert.kind,
        "feature": alert.feature,
        "segment": alert.segment,
        "detector": alert.detector,
        "severity": alert.severity,
        "fingerprint": alert.fingerprint,
    }
    # Alertmanager drops empty labels anyway; omitting them keeps the label set unambiguous.
    return {name: value for name, value in labels.items() if value}


def _description(alert: Alert) -> str:
    comparison = ">" if alert.status == "firing" else "<="
    p_value = f" (p = {alert.p_value:.3g})" if alert.p_value is not None else ""
    window = alert.window
    reference = alert.reference
    source = "the warm-up" if reference.source == "warmup" else "the training profile"
    version = f" of version {reference.model_version}" if reference.model_version else ""
    count = f" ({reference.count} events)" if reference.count is not None else ""
    return (
        f"{alert.detector} = {alert.statistic:.4g} {comparison} threshold {alert.threshold:.4g}"
        f"{p_value} over {window.count} events from {rfc3339(window.start)} to "
        f"{rfc3339(window.end)}, compared with {source}{version}{count}"
    )


def to_alertmanager(
    alert: Alert,
    *,
    generator_url: str | None,
    opened_by: Alert | None = None,
    firing_until: datetime | None = None,
) -> dict[str, Any]:
    """One postable alert (an element of the body of ``POST /api/v2/alerts``).

    ``opened_by`` is the firing alert that opened the episode, when known: its labels and start
    are used, so a resolve (or a re-fire after a model version change) updates the very alert
    Alertmanager already holds. ``firing_until`` sets ``endsAt`` of a firing alert.
    """
    opener = opened_by or alert
    starts_at = min(opener.fired_at, opener.emitted_at)
    annotations = {
        "summary": alert.summary,
        "description": _description(alert),
        "alert_id": alert.alert_id,
        "statistic": f"{alert.statistic:.6g}",
        "threshold": f"{alert.threshold:.6g}",
    }
    if alert.runbook_url:
        annotations["runbook_url"] = alert.runbook_url
    posted: dict[str, Any] = {
        "labels": _labels(opener),
        "annotations": annotations,
        "startsAt": rfc3339(starts_at),
    }
    if alert.status == "resolved":
        posted["endsAt"] = rfc3339(max(alert.emitted_at, starts_at))
    elif firing_until is not None:
        posted["endsAt"] = rfc3339(max(firing_until, starts_at))
    if generator_url:
        posted["generatorURL"] = generator_url
    return posted


@dataclass(frozen=True)
class Episode:
    """A fingerprint that is firing: the alert that opened it and the latest one seen."""

    opened_by: Alert
    latest: Alert
    partition: int
    """Kafka partition it was read from, so a revoked partition's episodes can be dropped."""


class FiringSet:
    """The episodes currently firing, by fingerprint, folded from the alerts in topic order.

    >>> from datetime import UTC, datetime
    >>> from schemas.events import AlertReference, AlertWindow
    >>> t = datetime(2024, 5, 1, tzinfo=UTC)
    >>> def alert(status):
    ...     return Alert(alert_id=status, fingerprint="f1", status=status, severity="warning",
    ...         model="m", model_version=None, kind="traffic", feature=None, segment=None,
    ...         detector="rate", statistic=3.0, threshold=2.0,
    ...         window=AlertWindow(start=t, end=t, count=1),
    ...         reference=AlertReference(source="warmup", model_version=None, count=None),
    ...         fired_at=t, emitted_at=t, summary="s")
    >>> firing = FiringSet()
    >>> firing.apply(alert("firing"), partition=0).alert_id, len(firing)
    ('firing', 1)
    >>> firing.apply(alert("resolved"), partition=0).alert_id, len(firing)
    ('firing', 0)
    """

    def __init__(self, episodes: dict[str, Episode] | None = None) -> None:
        self._episodes: dict[str, Episode] = dict(episodes or {})

    def __len__(self) -> int:
        return len(self._episodes)

    def copy(self) -> FiringSet:
        return FiringSet(self._episodes)

    def episodes(self) -> list[Episode]:
        return list(self._episodes.values())

    def apply(self, alert: Alert, *, partition: int) -> Alert | None:
        """Fold one alert in; returns the alert that opened its episode (None when unknown)."""
        known = self._episodes.get(alert.fingerprint)
        if alert.status == "resolved":
            self._episodes.pop(alert.fingerprint, None)
            return known.opened_by if known else None
        opened_by = known.opened_by if known else alert
        self._episodes[alert.fingerprint] = Episode(opened_by, alert, partition)
        return opened_by

    def drop_partitions(self, partitions: Iterable[int]) -> int:
        """Forget the episodes of partitions this process no longer owns; returns how many."""
        gone = set(partitions)
        dropped = [fp for fp, episode in self._episodes.items() if episode.partition in gone]
        for fingerprint in dropped:
            del self._episodes[fingerprint]
        return len(dropped)
