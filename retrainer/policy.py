"""When an alert becomes a retrain: a pure policy with an injected clock.

Rules, in order: only ``firing`` alerts of the trigger kinds and severities (``triggers``);
then, per model (``admit``), one retrain in flight (alerts arriving meanwhile are coalesced
into it) and, after a retrain that trained, a cooldown of ``cooldown_seconds``: a burst of
alerts for one model is one retrain. Too little data does not start the cooldown: the next
alert may bring the labels that were missing.

>>> from datetime import UTC, datetime, timedelta
>>> now = [datetime(2024, 5, 1, tzinfo=UTC)]
>>> policy = RetrainPolicy(PolicyRules(cooldown_seconds=600), clock=lambda: now[0])
>>> policy.decide(model="churn", alert_id="a1", kind="performance", severity="critical",
...               status="firing")
Decision(retrain=True, reason='performance alert a1 (critical) on churn')
>>> policy.start("churn", "a1")
>>> policy.decide(model="churn", alert_id="a2", kind="feature_drift", severity="warning",
...               status="firing").reason
'coalesced into the retrain of churn for alert a1'
>>> policy.finish("churn", trained=True)  # the alert ids coalesced into it
['a2']
>>> now[0] += timedelta(seconds=60)
>>> policy.decide(model="churn", alert_id="a3", kind="performance", severity="warning",
...               status="firing").reason
'churn is cooling down until 2024-05-01T00:10:00+00:00 after its last retrain'
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta

__all__ = ["DEFAULT_TRIGGER_KINDS", "Decision", "PolicyRules", "RetrainPolicy"]

DEFAULT_TRIGGER_KINDS: tuple[str, ...] = ("performance", "feature_drift", "prediction_drift")


@dataclass(frozen=True)
class PolicyRules:
    """The numbers of the policy (``RetrainerConfig`` holds the user-facing versions)."""

    trigger_kinds: Collection[str] = DEFAULT_TRIGGER_KINDS
    trigger_severities: Collection[str] = ("warning", "critical")
    cooldown_seconds: float = 3600.0
    min_labelled: int = 500
    min_holdout: int = 100

    def __post_init__(self) -> None:
        if self.cooldown_seconds < 0:
            raise ValueError(f"cooldown_seconds must be >= 0, got {self.cooldown_seconds}")
        if self.min_labelled < 1 or self.min_holdout < 1:
            raise ValueError("min_labelled and min_holdout must be at least 1")


@dataclass(frozen=True)
class Decision:
    retrain: bool
    reason: str


@dataclass
class _ModelState:
    in_flight: str | None = None
    """alert_id of the retrain running for the model."""
    last_retrain: datetime | None = None
    coalesced: list[str] = field(default_factory=list)


class RetrainPolicy:
    """Decides per alert; remembers what is in flight and when each model last retrained."""

    def __init__(self, rules: PolicyRules, *, clock: Callable[[], datetime]) -> None:
        self.rules = rules
        self.clock = clock
        self._models: dict[str, _ModelState] = {}

    def _state(self, model: str) -> _ModelState:
        return self._models.setdefault(model, _ModelState())

    def triggers(self, *, alert_id: str, kind: str, severity: str, status: str) -> Decision:
        """Whether this kind of alert may start a retrain at all (no state involved)."""
        if status != "firing":
            return Decision(False, f"alert {alert_id} is {status}, only firing alerts retrain")
        if kind not in self.rules.trigger_kinds:
            return Decision(False, f"{kind} alerts do not trigger a retrain")
        if severity not in self.rules.trigger_severities:
            return Decision(False, f"{severity} alerts do not trigger a retrain")
        return Decision(True, f"{kind} alert {alert_id} ({severity})")

    def admit(self, model: str, alert_id: str) -> Decision:
        """Whether ``model`` may retrain now: nothing in flight, not cooling down."""
        state = self._state(model)
        if state.in_flight is not None:
            state.coalesced.append(alert_id)
            return Decision(
                False, f"coalesced into the retrain of {model} for alert {state.in_flight}"
            )
        if state.last_retrain is not None:
            until = state.last_retrain + timedelta(seconds=self.rules.cooldown_seconds)
            if self.clock() < until:
                return Decision(
                    False,
                    f"{model} is cooling down until {until.isoformat()} after its last retrain",
                )
        return Decision(True, f"{model} may retrain")

    def decide(
        self, *, model: str, alert_id: str, kind: str, severity: str, status: str
    ) -> Decision:
        """``triggers`` then ``admit``."""
        trigger = self.triggers(alert_id=alert_id, kind=kind, severity=severity, status=status)
        if not trigger.retrain:
            return trigger
        admitted = self.admit(model, alert_id)
        if not admitted.retrain:
            return admitted
        return Decision(True, f"{trigger.reason} on {model}")

    def start(self, model: str, alert_id: str) -> None:
        """A retrain of ``model`` for ``alert_id`` begins."""
        state = self._state(model)
        if state.in_flight is not None and state.in_flight != alert_id:
            raise RuntimeError(
                f"a retrain of {model} for alert {state.in_flight} is in flight; "
                f"call finish() before starting another"
            )
        state.in_flight, state.coalesced = alert_id, []

    def finish(self, model: str, *, trained: bool) -> list[str]:
        """The retrain ended; ``trained``: a model was fitted (or the trainer failed), so the
        cooldown starts. Returns the alert ids coalesced into it."""
        state = self._state(model)
        coalesced, state.in_flight, state.coalesced = state.coalesced, None, []
        if trained:
            state.last_retrain = self.clock()
        return coalesced

    def note_retrain(self, model: str, when: datetime | None) -> None:
        """Seed the cooldown from the registry (a retrain by an earlier or another process)."""
        state = self._state(model)
        if when is not None and (state.last_retrain is None or when > state.last_retrain):
            state.last_retrain = when

    def check_data(self, *, labelled: int, holdout: int) -> Decision:
        """Whether a dataset is big enough to train and judge a challenger."""
        if labelled < self.rules.min_labelled:
            return Decision(
                False,
                f"only {labelled} labelled events since the change, need "
                f"{self.rules.min_labelled}: wait for more labels or lower "
                f"DRIFTLINE_RETRAINER__MIN_LABELLED",
            )
        if holdout < self.rules.min_holdout:
            return Decision(
                False,
                f"the holdout has {holdout} labelled events, need {self.rules.min_holdout}: "
                f"raise DRIFTLINE_RETRAINER__HOLDOUT_FRACTION or lower "
                f"DRIFTLINE_RETRAINER__MIN_HOLDOUT",
            )
        return Decision(True, f"{labelled} labelled events, {holdout} in the holdout")
