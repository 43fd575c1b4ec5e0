"""Retrainer settings from ``DRIFTLINE_RETRAINER__*`` environment variables.

We chose environment variables (pydantic-settings), like every other driftline setting: one
mechanism for containers and CI, and nothing read at import time. Lists are JSON, e.g.
``DRIFTLINE_RETRAINER__TRIGGER_KINDS='["performance"]'``. Kafka, topics and the MLflow tracking
URI come from :class:`schemas.settings.Settings` (``DRIFTLINE_KAFKA__*``, ``DRIFTLINE_TOPICS__*``,
``DRIFTLINE_MLFLOW__TRACKING_URI``).

>>> config = RetrainerConfig(margin=0.02, cooldown_seconds=0)
>>> config.trainer, config.margin, config.group_for("driftline.")
('retrainer.trainer:default_trainer', 0.02, 'driftline.retrainer')
>>> RetrainerConfig(trainer="no_colon")
Traceback (most recent call last):
...
retrainer.errors.ConfigError: invalid retrainer settings:
  trainer (DRIFTLINE_RETRAINER__TRAINER): Value error, trainer must look like \
'package.module:function', got 'no_colon'
"""

from __future__ import annotations

import os
import re
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from retrainer.errors import ConfigError
from schemas.events import AlertKind
from schemas.settings import unknown_variables

__all__ = ["ENV_PREFIX", "ChampionSource", "MetricName", "RetrainerConfig", "Severity"]

ENV_PREFIX = "DRIFTLINE_RETRAINER__"
MetricName = Literal["auto", "accuracy", "f1", "mae", "rmse"]
ChampionSource = Literal["auto", "logged"]
Severity = Literal["warning", "critical"]
_TRAINER_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def _default_kinds() -> list[AlertKind]:
    return ["performance", "feature_drift", "prediction_drift"]


def _default_severities() -> list[Severity]:
    return ["warning", "critical"]


class RetrainerConfig(BaseSettings):
    """What triggers a retrain, how the dataset is cut, how the challenger is judged."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="forbid", use_attribute_docstrings=True, frozen=True
    )

    trainer: str = "retrainer.trainer:default_trainer"
    """``module:function`` taking (DataFrame, TrainingSpec) and returning a fitted model."""
    experiment: Annotated[str, Field(min_length=1)] = "driftline-retrainer"
    """MLflow experiment the runs go to (created when missing)."""
    artifact_root: str | None = None
    """Artifact location of a new experiment; default: ``mlartifacts`` next to a SQLite
    store, the server's choice for an HTTP tracking URI."""
    group_id: str | None = None
    """Kafka consumer group; default ``<topic prefix>retrainer``."""
    trigger_kinds: list[AlertKind] = Field(default_factory=_default_kinds)
    """Alert kinds that start a retrain (data quality, coverage and traffic never do)."""
    trigger_severities: list[Severity] = Field(default_factory=_default_severities)
    cooldown_seconds: Annotated[float, Field(ge=0)] = 3600.0
    """After a retrain of a model, its alerts are skipped for this long (wall clock)."""
    min_labelled: Annotated[int, Field(ge=10)] = 500
    """Labelled events since the change needed to train; fewer gives a ``rejected`` outcome."""
    min_holdout: Annotated[int, Field(ge=10)] = 100
    """Labelled events the holdout needs at least."""
    holdout_fraction: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.3
    """The most recent share of the labelled events, kept for challenger vs champion."""
    lookback_seconds: Annotated[float, Field(ge=0)] = 0.0
    """The dataset starts this long before the alert window's start (event time)."""
    max_rows: Annotated[int, Field(ge=100)] = 200_000
    """At most this many labelled events (the most recent) are used."""
    metric: MetricName = "auto"
    """``auto``: accuracy for classifiers, rmse for regressors."""
    margin: Annotated[float, Field(ge=0)] = 0.01
    """The challenger must beat the champion by this much (in the metric's units)."""
    champion_source: ChampionSource = "auto"
    """``auto``: the registry's ``champion`` when there is one (and it loads), else the serving
    model's logged predictions; ``logged``: always the logged predictions."""
    resume_after_seconds: Annotated[float, Field(ge=0)] = 120.0
    """A version registered for an alert but not yet announced belongs to a retrainer at work;
    after this long it is taken as crashed and its outcome is announced by whoever sees it."""
    mlflow_attempts: Annotated[int, Field(ge=1)] = 5
    """Attempts per MLflow call before the alert is left uncommitted and retried later."""
    backoff_seconds: Annotated[float, Field(ge=0)] = 0.5
    """First delay between attempts; it doubles up to ``backoff_max_seconds``."""
    backoff_max_seconds: Annotated[float, Field(ge=0)] = 30.0
    poll_seconds: Annotated[float, Field(gt=0)] = 1.0
    read_timeout_seconds: Annotated[float, Field(gt=0)] = 120.0
    """Reading the dataset back from Kafka gives up after this long."""
    max_poll_interval_seconds: Annotated[int, Field(ge=10)] = 1800
    """Longest expected retrain; beyond it Kafka hands the alert to another retrainer."""
    seed: int = 0
    """Passed to the trainer for reproducible fits."""
    profile_max_bytes: Annotated[int, Field(ge=10_000, le=1_000_000)] = 900_000
    """Largest reference profile put inline in a ModelEvent (samples shrink to fit)."""

    def __init__(self, **values: Any) -> None:
        # pydantic-settings ignores unknown variables: a misspelt one would silently default.
        known = [ENV_PREFIX + name.upper() for name in type(self).model_fields]
        unknown = unknown_variables(os.environ, known, prefix=ENV_PREFIX)
        if unknown:
            raise ConfigError(
                "invalid retrainer settings:\n"
                + "\n".join(
                    f"  {name}: unknown variable: remove it or fix its spelling" for name in unknown
                )
            )
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise ConfigError(_describe(exc)) from None

    @field_validator("trainer")
    @classmethod
    def _trainer_path(cls, value: str) -> str:
        if not _TRAINER_PATH.match(value):
            raise ValueError(f"trainer must look like 'package.module:function', got {value!r}")
        return value

    def group_for(self, topic_prefix: str) -> str:
        """The consumer group of the retrainer for a topic prefix."""
        return self.group_id or f"{topic_prefix}retrainer"


def _describe(exc: ValidationError) -> str:
    lines = ["invalid retrainer settings:"]
    for error in exc.errors(include_url=False):
        where = ".".join(str(part) for part in error["loc"]) or "settings"
        variable = ENV_PREFIX + str(error["loc"][0]).upper() if error["loc"] else ENV_PREFIX
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown setting: remove it or fix its spelling"
        lines.append(f"  {where} ({variable}): {message}")
    return "\n".join(lines)
