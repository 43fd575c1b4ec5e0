"""Registry changes made by hand (``driftline models promote|rollback``), announced like the
retrainer's own: the workers switch their reference on the ``promoted`` event.

A rollback publishes ``rolled_back`` for the demoted version, then ``promoted`` for the
restored one with its logged profile, so workers switch back without knowing about rollbacks.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from retrainer.publisher import ModelEventPublisher, model_event
from retrainer.registry import Registry, VersionInfo
from schemas.events import ModelEvent

__all__ = ["promote_version", "rollback_model", "tag_metrics"]

log = logging.getLogger("driftline.retrainer")


def tag_metrics(info: VersionInfo) -> dict[str, float]:
    """The metrics a version was registered with (its ``challenger_*``/``champion_*`` tags).

    >>> tag_metrics(VersionInfo("m", "1", None, tags={"challenger_accuracy": "0.8", "x": "y"}))
    {'challenger_accuracy': 0.8}
    """
    out: dict[str, float] = {}
    for key, value in info.tags.items():
        if key.startswith(("challenger_", "champion_")):
            try:
                out[key] = float(value)
            except ValueError:
                continue
    return out


def _promoted(registry: Registry, info: VersionInfo, reason: str, now: datetime) -> ModelEvent:
    profile: dict[str, Any] | None = registry.reference_profile(info)
    if profile is None:
        log.warning(
            "no reference profile logged with %s version %s: workers keep their reference",
            info.model, info.version,
        )  # fmt: skip
    current = registry.version(info.model, info.version)
    return model_event(
        "promoted", model=info.model, version=info.version, aliases=list(current.aliases),
        run_id=info.run_id, trigger_alert_id=None, metrics=tag_metrics(info),
        reference=profile, reason=reason, now=now,
    )  # fmt: skip


def promote_version(
    registry: Registry,
    publisher: ModelEventPublisher | None,
    model: str,
    version: str,
    *,
    now: datetime,
    reason: str | None = None,
) -> ModelEvent:
    """Make ``version`` the champion (the old one becomes ``previous_champion``)."""
    info = registry.version(model, version)
    registry.promote(model, version)
    event = _promoted(registry, info, reason or "promoted by hand", now)
    if publisher is not None:
        publisher.publish(event)
    return event


def rollback_model(
    registry: Registry, publisher: ModelEventPublisher | None, model: str, *, now: datetime
) -> list[ModelEvent]:
    """``champion`` back to ``previous_champion``; returns the events (published if asked)."""
    demoted, restored = registry.rollback(model)
    gone = registry.version(model, demoted)
    events = [
        model_event(
            "rolled_back", model=model, version=demoted, aliases=list(gone.aliases),
            run_id=gone.run_id, trigger_alert_id=None, metrics=tag_metrics(gone),
            reference=None, reason=f"rolled back to version {restored}", now=now,
        ),
        _promoted(
            registry, registry.version(model, restored),
            f"restored by a rollback from version {demoted}", now,
        ),
    ]  # fmt: skip
    if publisher is not None:
        for event in events:
            publisher.publish(event)
    return events
