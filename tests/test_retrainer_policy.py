"""The retrain policy is pure: an injected clock, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from retrainer.config import RetrainerConfig
from retrainer.errors import ConfigError
from retrainer.pipeline import rules_from
from retrainer.policy import PolicyRules, RetrainPolicy

T0 = datetime(2024, 5, 1, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def _decide(policy: RetrainPolicy, alert_id: str = "a1", **changes: str) -> tuple[bool, str]:
    fields = {
        "model": "churn",
        "alert_id": alert_id,
        "kind": "performance",
        "severity": "critical",
        "status": "firing",
        **changes,
    }
    decision = policy.decide(**fields)
    return decision.retrain, decision.reason


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_only_firing_alerts_of_trigger_kinds_and_severities_retrain(clock: Clock) -> None:
    policy = RetrainPolicy(
        PolicyRules(trigger_kinds=("performance",), trigger_severities=("critical",)), clock=clock
    )
    assert _decide(policy)[0] is True
    assert _decide(policy, status="resolved") == (
        False,
        "alert a1 is resolved, only firing alerts retrain",
    )
    assert _decide(policy, kind="feature_drift") == (
        False,
        "feature_drift alerts do not trigger a retrain",
    )
    assert _decide(policy, severity="warning") == (False, "warning alerts do not trigger a retrain")


def test_default_kinds_exclude_data_quality_coverage_and_traffic(clock: Clock) -> None:
    policy = RetrainPolicy(PolicyRules(), clock=clock)
    retrains = {
        kind: _decide(policy, kind=kind)[0]
        for kind in (
            "performance",
            "feature_drift",
            "prediction_drift",
            "data_quality",
            "label_coverage",
            "traffic",
        )
    }
    assert retrains == {
        "performance": True,
        "feature_drift": True,
        "prediction_drift": True,
        "data_quality": False,
        "label_coverage": False,
        "traffic": False,
    }


def test_a_burst_for_one_model_is_one_retrain_and_other_models_are_independent(
    clock: Clock,
) -> None:
    policy = RetrainPolicy(PolicyRules(cooldown_seconds=600), clock=clock)
    assert _decide(policy, "a1")[0]
    policy.start("churn", "a1")
    burst = [_decide(policy, f"a{i}", kind="feature_drift") for i in range(2, 6)]
    assert all(not retrain for retrain, _ in burst)
    assert all(r == "coalesced into the retrain of churn for alert a1" for _, r in burst)
    assert _decide(policy, "b1", model="fraud")[0] is True  # another model is not blocked
    assert policy.finish("churn", trained=True) == ["a2", "a3", "a4", "a5"]
    clock.advance(1)
    retrain, reason = _decide(policy, "a6")
    assert not retrain and reason.startswith("churn is cooling down until 2024-05-01T00:10:00")


def test_cooldown_ends_after_its_seconds_and_starts_only_after_training(clock: Clock) -> None:
    policy = RetrainPolicy(PolicyRules(cooldown_seconds=600), clock=clock)
    policy.start("churn", "a1")
    policy.finish("churn", trained=False)  # e.g. too few labels: no cooldown
    assert _decide(policy, "a2")[0] is True
    policy.start("churn", "a2")
    policy.finish("churn", trained=True)
    clock.advance(599.9)
    assert _decide(policy, "a3")[0] is False
    clock.advance(0.1)
    assert _decide(policy, "a3")[0] is True


def test_cooldown_seeded_from_the_registry_keeps_the_latest_time(clock: Clock) -> None:
    policy = RetrainPolicy(PolicyRules(cooldown_seconds=60), clock=clock)
    policy.note_retrain("churn", T0 - timedelta(seconds=30))
    policy.note_retrain("churn", T0 - timedelta(seconds=300))  # older: ignored
    policy.note_retrain("churn", None)
    assert _decide(policy)[0] is False
    assert policy.triggers(alert_id="a1", kind="performance", severity="warning",
                           status="firing").retrain  # fmt: skip
    clock.advance(30)
    assert _decide(policy)[0] is True


def test_only_one_retrain_in_flight_per_model(clock: Clock) -> None:
    policy = RetrainPolicy(PolicyRules(), clock=clock)
    policy.start("churn", "a1")
    policy.start("churn", "a1")  # the same alert again is fine
    with pytest.raises(RuntimeError, match="in flight"):
        policy.start("churn", "a2")


def test_data_checks_name_the_missing_amount_and_the_setting(clock: Clock) -> None:
    policy = RetrainPolicy(PolicyRules(min_labelled=500, min_holdout=100), clock=clock)
    too_few = policy.check_data(labelled=499, holdout=150)
    assert not too_few.retrain
    assert "only 499 labelled events since the change, need 500" in too_few.reason
    assert "DRIFTLINE_RETRAINER__MIN_LABELLED" in too_few.reason
    small_holdout = policy.check_data(labelled=600, holdout=99)
    assert not small_holdout.retrain and "holdout has 99" in small_holdout.reason
    assert policy.check_data(labelled=500, holdout=100).retrain


def test_rules_reject_impossible_numbers() -> None:
    with pytest.raises(ValueError, match="cooldown_seconds"):
        PolicyRules(cooldown_seconds=-1)
    with pytest.raises(ValueError, match="at least 1"):
        PolicyRules(min_labelled=0)


def test_config_from_environment_feeds_the_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFTLINE_RETRAINER__TRIGGER_KINDS", '["performance"]')
    monkeypatch.setenv("DRIFTLINE_RETRAINER__COOLDOWN_SECONDS", "5")
    monkeypatch.setenv("DRIFTLINE_RETRAINER__MIN_LABELLED", "50")
    rules = rules_from(RetrainerConfig())
    assert list(rules.trigger_kinds) == ["performance"]
    assert rules.cooldown_seconds == 5.0 and rules.min_labelled == 50
    monkeypatch.setenv("DRIFTLINE_RETRAINER__TRIGGER_KINDS", '["drift"]')
    with pytest.raises(ConfigError, match="DRIFTLINE_RETRAINER__TRIGGER_KINDS"):
        RetrainerConfig()
