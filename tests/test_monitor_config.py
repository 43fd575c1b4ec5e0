"""Monitor configuration (YAML, errors naming fields and allowed values) and profile schema."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from schemas.monitor_config import (
    MonitorConfig,
    MonitorConfigError,
    load_monitor_config,
    parse_monitor_config,
)
from schemas.profile import FeatureProfile, ReferenceProfile, load_profile


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "monitor.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_an_empty_file_gives_the_documented_defaults(tmp_path: Path) -> None:
    config = load_monitor_config(write(tmp_path, ""))
    assert config == MonitorConfig()
    model = config.for_model("anything")
    assert (model.reference.source, model.reference.warmup_events) == ("warmup", 2000)
    assert (model.window.type, model.window.size) == ("count", 500)
    assert (model.alerting.target_run_length, model.alerting.k, model.alerting.m) == (
        10_000, 2, 3,
    )  # fmt: skip
    assert model.alerting.resolve_after == 3 and model.quality.min_labels == 200
    assert model.detectors.numeric.decide == "ks"
    assert model.detectors.categorical.decide == "chi_square"
    assert config.join.ttl_seconds == 7 * 24 * 3600


def test_the_documented_configuration_is_the_default() -> None:
    text = (Path(__file__).resolve().parents[1] / "docs" / "monitoring.md").read_text("utf-8")
    block = text.split("## Configuration reference")[1].split("```yaml\n")[1].split("```")[0]
    assert parse_monitor_config(yaml.safe_load(block)) == MonitorConfig()


def test_model_overrides_merge_over_the_defaults(tmp_path: Path) -> None:
    config = load_monitor_config(
        write(
            tmp_path,
            """
defaults:
  window: {size: 1000, min_count: 200}
  features: {zip: categorical}
  alerting: {severity: {feature_drift: critical}}
models:
  churn:
    window: {size: 250}
    features: {age: numeric}
    alerting: {k: 1, m: 1}
""",
        )
    )
    churn, other = config.for_model("churn"), config.for_model("fraud")
    assert (churn.window.size, churn.window.min_count) == (250, 200)
    assert churn.features == {"zip": "categorical", "age": "numeric"}
    assert (churn.alerting.k, churn.alerting.m, churn.alerting.resolve_after) == (1, 1, 3)
    assert churn.alerting.severity["feature_drift"] == "critical"
    assert churn.alerting.severity["performance"] == "critical"  # other keys kept
    assert other.window.size == 1000 and other.features == {"zip": "categorical"}
    assert config.for_model("churn") is churn  # resolved once


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "defaults: {window: {type: hourly}}",
            "defaults.window.type: must be one of 'count', 'time' (got 'hourly')",
        ),
        (
            "models: {churn: {window: {sise: 10}}}",
            "models.churn.window.sise: unknown field; allowed fields here: min_count, size, "
            "slide, time_seconds, type",
        ),
        (
            "defaults: {detectors: {numeric: {tests: [ks, t_test]}}}",
            "defaults.detectors.numeric.tests[1]: must be one of 'ks', 'psi', 'wasserstein', "
            "'jensen_shannon' (got 't_test')",
        ),
        (
            "defaults: {features: {age: number}}",
            "defaults.features.age: must be one of 'numeric', 'categorical' (got 'number')",
        ),
        (
            "defaults: {alerting: {severity: {performance: page}}}",
            "defaults.alerting.severity.performance: must be one of 'warning', 'critical'",
        ),
        (
            "defaults: {detectors: {sequential: {kind: cusum}}}",
            "defaults.detectors.sequential.kind: must be one of 'adwin', 'page_hinkley', 'ddm'",
        ),
        ("defaults: {alerting: {k: 4}}", "defaults.alerting: k (4) must not exceed m (3)"),
        ("defaults: {window: {type: time}}", "type 'time' needs time_seconds"),
        ("defaults: {window: {size: 10}}", "defaults.window.size: Input should be greater"),
        ("windows: {size: 10}", "windows: unknown field; allowed fields here: defaults, join"),
    ],
)
def test_errors_name_the_field_and_the_allowed_values(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(MonitorConfigError) as caught:
        load_monitor_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: invalid monitor configuration: ")
    assert expected in message


def test_unreadable_and_malformed_files_say_what_to_fix(tmp_path: Path) -> None:
    with pytest.raises(MonitorConfigError, match="cannot read the monitor configuration"):
        load_monitor_config(tmp_path / "missing.yaml")
    with pytest.raises(MonitorConfigError, match="not valid YAML"):
        load_monitor_config(write(tmp_path, "defaults: {window: [}"))
    with pytest.raises(MonitorConfigError, match=r"must be a YAML mapping .* got a list"):
        load_monitor_config(write(tmp_path, "- a\n- b\n"))


def test_several_errors_are_reported_together() -> None:
    with pytest.raises(MonitorConfigError) as caught:
        parse_monitor_config({"defaults": {"window": {"type": "x", "size": 1}}})
    assert "defaults.window.type" in str(caught.value)
    assert "defaults.window.size" in str(caught.value)


def test_profiles_round_trip_and_validate(tmp_path: Path) -> None:
    profile = ReferenceProfile(
        model="churn", model_version="4", profile_id="p", source="profile", count=3,
        features={
            "age": FeatureProfile(
                kind="numeric", count=3, edges=[30.0], counts=[2, 1], sample=[20.0, 25.0, 40.0],
                min=20.0, max=40.0, mean=28.3, std=8.5,
            ),
        },
    )  # fmt: skip
    path = tmp_path / "profile.json"
    path.write_text(profile.model_dump_json(), encoding="utf-8")
    assert load_profile(path) == profile
    with pytest.raises(ValueError, match="counts has 3 bins but 1 edges make 2"):
        FeatureProfile(kind="numeric", count=3, edges=[1.0], counts=[1, 1, 1])
    with pytest.raises(ValueError, match="finite"):
        FeatureProfile(kind="numeric", count=1, mean=float("nan"))
    path.write_text("{", encoding="utf-8")
    with pytest.raises(ValueError, match="is not valid JSON"):
        load_profile(path)
