"""One alert in, one recorded outcome out: policy -> dataset -> train -> evaluate -> register
-> promote or reject -> ModelEvents. No Kafka consumer here (see ``service``), so tests and
the CLI drive it directly.

Outcomes: ``skipped`` (the policy said no), ``served`` (a version already exists for the
alert), ``rejected`` (too little data, a trainer error, or a challenger that is not better by
the margin), ``promoted``, ``duplicate`` (another retrainer registered the alert first).
Transient failures (:class:`RegistryUnavailable`, :class:`DatasetUnavailable`,
:class:`PublishError`) propagate: the service leaves the alert uncommitted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from retrainer.actions import tag_metrics
from retrainer.config import RetrainerConfig
from retrainer.dataset import LABEL, PREDICTION, Dataset, build_dataset, window_for
from retrainer.errors import AlertInProgress, RegistryUnavailable
from retrainer.evaluation import Evaluation, evaluate, logged_classes
from retrainer.policy import PolicyRules, RetrainPolicy
from retrainer.publisher import ModelEventPublisher, model_event
from retrainer.reference import challenger_profile
from retrainer.registry import CHALLENGER, CHAMPION, TAG_ALERT, Registry, RunRecord, VersionInfo
from retrainer.trainer import TrainerFn, TrainingSpec, predict
from schemas.events import Alert, LabelEvent, ModelEventType, PredictionEvent
from schemas.monitor_config import MonitorConfig
from schemas.settings import Settings

__all__ = ["Outcome", "OutcomeKind", "Reader", "Retrainer", "rules_from"]

OutcomeKind = Literal["skipped", "served", "rejected", "promoted", "duplicate"]
Reader = Callable[..., tuple[list[PredictionEvent], list[LabelEvent]]]
TAG_ANNOUNCED = "announced"
"""Set on a version once its promoted/rejected ModelEvent is acknowledged."""
log = logging.getLogger("driftline.retrainer")


@dataclass(frozen=True)
class Outcome:
    """What became of one alert."""

    alert_id: str
    model: str
    kind: OutcomeKind
    reason: str
    version: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    """Wall time spent on the alert."""
    alert_age_seconds: float | None = None
    """From the alert's ``emitted_at`` to the outcome (wall clocks of worker and retrainer)."""


def rules_from(config: RetrainerConfig) -> PolicyRules:
    return PolicyRules(
        trigger_kinds=tuple(config.trigger_kinds),
        trigger_severities=tuple(config.trigger_severities),
        cooldown_seconds=config.cooldown_seconds,
        min_labelled=config.min_labelled,
        min_holdout=config.min_holdout,
    )


class Retrainer:
    """Turns alerts into outcomes; every dependency is injected."""

    def __init__(
        self,
        settings: Settings,
        config: RetrainerConfig,
        *,
        registry: Registry,
        publisher: ModelEventPublisher,
        trainer: TrainerFn,
        clock: Callable[[], datetime],
        reader: Reader | None = None,
        monitor: MonitorConfig | None = None,
    ) -> None:
        from retrainer.dataset import read_window

        self.settings = settings
        self.config = config
        self.registry = registry
        self.publisher = publisher
        self.trainer = trainer
        module = getattr(trainer, "__module__", type(trainer).__module__)
        self.trainer_name = f"{module}:{getattr(trainer, '__qualname__', type(trainer).__name__)}"
        self.clock = clock
        self.reader: Reader = reader or read_window
        self.monitor = monitor or MonitorConfig()
        self.policy = RetrainPolicy(rules_from(config), clock=clock)
        self._seeded: set[str] = set()

    # -- the flow ----------------------------------------------------------------------------

    def handle(self, alert: Alert) -> Outcome:
        started = time.monotonic()
        outcome = self._handle(alert)
        age = (self.clock() - alert.emitted_at).total_seconds()
        outcome = replace(outcome, seconds=time.monotonic() - started, alert_age_seconds=age)
        log.info(
            "outcome alert=%s model=%s kind=%s version=%s seconds=%.2f alert_age_s=%.2f reason=%r",
            alert.alert_id,
            alert.model,
            outcome.kind,
            outcome.version,
            outcome.seconds,
            age,
            outcome.reason,
        )
        return outcome

    def _handle(self, alert: Alert) -> Outcome:
        model = alert.model
        trigger = self.policy.triggers(
            alert_id=alert.alert_id, kind=alert.kind, severity=alert.severity, status=alert.status
        )
        if not trigger.retrain:
            return Outcome(alert.alert_id, model, "skipped", trigger.reason)
        served = self.registry.served_version(model, alert.alert_id)
        if served is not None:  # a redelivery, or another retrainer got there first
            return self._resume(alert, served)
        if model not in self._seeded:  # cooldowns survive restarts and span retrainers
            self.policy.note_retrain(model, self.registry.last_retrain_time(model))
            self._seeded.add(model)
        admitted = self.policy.admit(model, alert.alert_id)
        if not admitted.retrain:
            return Outcome(alert.alert_id, model, "skipped", admitted.reason)
        self.policy.start(model, alert.alert_id)
        recorded = False
        try:
            outcome, recorded = self._retrain(alert)
        finally:
            self.policy.finish(model, trained=recorded)
        return outcome

    def _retrain(self, alert: Alert) -> tuple[Outcome, bool]:
        """The outcome, and whether it counts as a retrain (starts the cooldown)."""
        window = window_for(alert, self.config.lookback_seconds)
        predictions, labels = self.reader(
            self.settings, alert.model, window, timeout_seconds=self.config.read_timeout_seconds
        )
        settings = self.monitor.for_model(alert.model)
        data = build_dataset(
            predictions,
            labels,
            model=alert.model,
            window=window,
            holdout_fraction=self.config.holdout_fraction,
            max_rows=self.config.max_rows,
            task=settings.task,
        )
        check = self.policy.check_data(labelled=len(data.frame), holdout=data.holdout_size)
        if not check.retrain or data.task is None:
            return self._reject(alert, check.reason, metrics=_sizes(data)), False
        spec = TrainingSpec(
            task=data.task,
            label=LABEL,
            numeric=data.numeric,
            categorical=data.categorical,
            seed=self.config.seed,
        )
        try:
            fitted = self.trainer(data.model_input(data.train), spec)
            challenger = predict(fitted, data.model_input(data.holdout), spec)
        except Exception as exc:  # a plug-in may raise anything: reject, keep serving
            reason = f"trainer {self.trainer_name} failed: {type(exc).__name__}: {exc}"
            log.exception("trainer_failed alert=%s model=%s", alert.alert_id, alert.model)
            run_id = self.registry.log_run(
                alert.model,
                RunRecord(
                    self._params(alert, data),
                    _sizes(data),
                    {TAG_ALERT: alert.alert_id, "outcome": "rejected", "reason": reason[:5000]},
                    status="FAILED",
                ),
            )
            return self._reject(alert, reason, run_id=run_id, metrics=_sizes(data)), True
        champion, source = self._champion(data, spec)
        evaluation = evaluate(
            data.task,
            list(data.holdout[LABEL]),
            challenger=list(challenger.classes),
            champion=champion,
            margin=self.config.margin,
            champion_source=source,
            metric=self.config.metric,
        )
        return self._record(alert, data, spec, fitted, evaluation), True

    def _record(
        self, alert: Alert, data: Dataset, spec: TrainingSpec, fitted: Any, evaluation: Evaluation
    ) -> Outcome:
        model = alert.model
        metrics = {**evaluation.as_metrics(), **_sizes(data)}
        decision = "promote" if evaluation.promote else "reject"
        run_id = self.registry.log_run(
            model,
            RunRecord(
                self._params(alert, data),
                metrics,
                {TAG_ALERT: alert.alert_id, "outcome": decision},
                model=fitted,
            ),
            run_name=f"{model}-{alert.alert_id}"[:200],
        )
        tags = {
            TAG_ALERT: alert.alert_id,
            "window_start": _iso(data.start),
            "window_end": _iso(data.end),
            "metric": evaluation.metric,
            f"challenger_{evaluation.metric}": f"{evaluation.challenger:.6f}",
            f"champion_{evaluation.metric}": f"{evaluation.champion:.6f}",
            "champion_source": evaluation.champion_source,
            "margin": f"{evaluation.margin:g}",
            "decision": decision,
            "reason": evaluation.reason[:5000],
        }
        info, duplicate = self.registry.register(model, run_id, tags)
        if duplicate:
            reason = f"alert already served by version {info.version} (another retrainer)"
            return Outcome(alert.alert_id, model, "duplicate", reason, info.version, metrics)
        full = predict(fitted, data.model_input(), spec)
        profile = challenger_profile(
            data,
            full,
            version=info.version,
            monitor=self.monitor.for_model(model),
            max_bytes=self.config.profile_max_bytes,
        ).model_dump(mode="json")
        self.registry.log_profile(run_id, profile)
        self.registry.mark_challenger(model, info.version)
        self._publish(
            "registered", alert, info.version, [CHALLENGER], run_id, metrics, profile, None
        )
        return self._announce(alert, info.version, decision, evaluation.reason, run_id, metrics,
                              profile)  # fmt: skip

    def _announce(
        self, alert: Alert, version: str, decision: str, reason: str, run_id: str | None,
        metrics: dict[str, float], profile: dict[str, Any] | None,
    ) -> Outcome:  # fmt: skip
        """Move the aliases and publish the decision; the ``announced`` tag comes last, so a
        crash before it is finished by whoever sees the alert again."""
        if decision == "promote":
            self.registry.promote(alert.model, version)
            self._publish("promoted", alert, version, [CHAMPION], run_id, metrics, profile, reason)
        else:
            self._publish("rejected", alert, version, [CHALLENGER], run_id, metrics, None, reason)
        kind: OutcomeKind = "promoted" if decision == "promote" else "rejected"
        self.registry.set_tag(alert.model, version, TAG_ANNOUNCED, kind)
        return Outcome(alert.alert_id, alert.model, kind, reason, version, metrics)

    def _resume(self, alert: Alert, served: VersionInfo) -> Outcome:
        """The alert has a version: done, being finished elsewhere, or interrupted by a crash."""
        decision = served.tags.get("decision")
        if served.tags.get(TAG_ANNOUNCED) is not None or decision not in ("promote", "reject"):
            reason = f"alert already served by version {served.version}"
            return Outcome(alert.alert_id, alert.model, "served", reason, served.version)
        created = served.created_at or self.clock()
        age = (self.clock() - created).total_seconds()
        if age < self.config.resume_after_seconds:
            raise AlertInProgress(
                f"version {served.version} of {alert.model} was registered for alert "
                f"{alert.alert_id} {age:.0f} s ago and is not announced yet: another retrainer "
                f"is finishing it; trying again later"
            )
        profile = self.registry.reference_profile(served) if decision == "promote" else None
        reason = f"{served.tags.get('reason', decision)} (announced after an interrupted retrain)"
        return self._announce(alert, served.version, decision, reason, served.run_id,
                              tag_metrics(served), profile)  # fmt: skip

    def reject(self, alert: Alert, reason: str) -> Outcome:
        """Record ``alert`` as rejected for ``reason`` (the service's last resort on a bug)."""
        return self._reject(alert, reason)

    # -- helpers -----------------------------------------------------------------------------

    def _champion(self, data: Dataset, spec: TrainingSpec) -> tuple[list[Any], str]:
        """The champion's predictions on the holdout: the registry's model, or what it logged."""
        holdout = data.holdout
        if self.config.champion_source != "logged":
            info = self.registry.alias_version(data.model, CHAMPION)
            if info is not None:
                try:
                    loaded = self.registry.load_model(info)
                    frame = data.model_input(holdout).reindex(columns=spec.features)
                    return list(
                        _plain_list(loaded.predict(frame))
                    ), f"registry version {info.version}"
                except RegistryUnavailable:
                    raise
                except Exception:
                    log.exception(
                        "champion_unusable model=%s version=%s: using logged predictions",
                        data.model,
                        info.version,
                    )
        logged = list(holdout[PREDICTION])
        if data.task == "regression":
            return logged, "logged"
        classes = logged_classes(
            logged, list(holdout[LABEL]), score=data.prediction_format == "score"
        )
        return classes, "logged"

    def _params(self, alert: Alert, data: Dataset) -> dict[str, Any]:
        return {
            "trainer": self.trainer_name,
            "task": data.task,
            "metric": self.config.metric,
            "margin": self.config.margin,
            "holdout_fraction": self.config.holdout_fraction,
            "window_start": _iso(data.start),
            "window_end": _iso(data.end),
            "window_requested_start": data.window.start.isoformat(),
            "rows_train": len(data.train),
            "rows_holdout": data.holdout_size,
            "features": ",".join(data.feature_names.values()),
            "trigger_alert_id": alert.alert_id,
            "trigger_kind": alert.kind,
            "trigger_feature": alert.feature or "",
            "seed": self.config.seed,
            "champion_source": self.config.champion_source,
        }

    def _reject(
        self,
        alert: Alert,
        reason: str,
        *,
        run_id: str | None = None,
        metrics: dict[str, float] | None = None,
    ) -> Outcome:
        self._publish("rejected", alert, None, [], run_id, metrics or {}, None, reason)
        return Outcome(alert.alert_id, alert.model, "rejected", reason, None, metrics or {})

    def _publish(
        self,
        type: ModelEventType,
        alert: Alert,
        version: str | None,
        aliases: list[str],
        run_id: str | None,
        metrics: dict[str, float],
        reference: dict[str, Any] | None,
        reason: str | None,
    ) -> None:
        self.publisher.publish(
            model_event(
                type,
                model=alert.model,
                version=version,
                aliases=aliases,
                run_id=run_id,
                trigger_alert_id=alert.alert_id,
                metrics=metrics,
                reference=reference,
                reason=reason,
                now=self.clock(),
            )
        )


def _sizes(data: Dataset) -> dict[str, float]:
    return {
        "rows_labelled": float(len(data.frame)),
        "rows_train": float(len(data.frame) - data.holdout_size),
        "rows_holdout": float(data.holdout_size),
        "predictions_seen": float(data.predictions_seen),
    }


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value is not None else ""


def _plain_list(values: Any) -> list[Any]:
    import numpy as np

    return [v.item() if isinstance(v, np.generic) else v for v in np.asarray(values).tolist()]
