"""The registry against a real MLflow (SQLite store), read back with MLflow's own client."""

from __future__ import annotations

import socket
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from retrainer.errors import RegistryError, RegistryUnavailable
from retrainer.registry import (
    CHALLENGER,
    CHAMPION,
    PREVIOUS_CHAMPION,
    PROFILE_ARTIFACT,
    Registry,
    RunRecord,
)
from retrainer.trainer import TrainingSpec, default_trainer

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture
def registry(tracking_uri: str) -> Registry:
    return Registry(tracking_uri, experiment="registry-tests", attempts=2, backoff_seconds=0.01)


@pytest.fixture(scope="module")
def fitted() -> tuple[Any, pd.DataFrame]:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=200), "plan": rng.choice(["a", "b"], 200)})
    frame["label"] = (frame["x"] > 0).astype(int)
    spec = TrainingSpec("binary", "label", ("x",), ("plan",))
    return default_trainer(frame, spec), frame


def _model_name() -> str:
    return f"m-{uuid.uuid4().hex[:8]}"


def _register(registry: Registry, model: str, fitted: Any, alert: str) -> tuple[str, bool]:
    run_id = registry.log_run(
        model,
        RunRecord({"trainer": "default"}, {"challenger_accuracy": 0.9}, {"trigger_alert_id": alert},
                  profile={"profile_id": alert}, model=fitted),
    )  # fmt: skip
    info, duplicate = registry.register(model, run_id, {"trigger_alert_id": alert, "metric": "x"})
    return info.version, duplicate


def test_a_run_and_version_carry_params_metrics_profile_and_tags(
    registry: Registry, fitted: tuple[Any, pd.DataFrame], tracking_uri: str, tmp_path: Path
) -> None:
    from mlflow import MlflowClient

    model = _model_name()
    version, duplicate = _register(registry, model, fitted[0], "alert-1")
    assert (version, duplicate) == ("1", False)
    client = MlflowClient(tracking_uri, registry_uri=tracking_uri)
    mv = client.get_model_version(model, version)
    assert (
        mv.tags["trigger_alert_id"] == "alert-1" and mv.tags["created_by"] == "driftline-retrainer"
    )
    assert mv.run_id is not None
    run = client.get_run(mv.run_id)
    assert run.data.params["trainer"] == "default"
    assert run.data.metrics["challenger_accuracy"] == 0.9
    assert run.info.status == "FINISHED"
    artifacts = {a.path for a in client.list_artifacts(mv.run_id)}
    assert {PROFILE_ARTIFACT, "model"} <= artifacts
    served = registry.served_version(model, "alert-1")
    assert served is not None and served.version == "1" and served.run_id == mv.run_id
    assert registry.served_version(model, "alert-2") is None
    assert registry.reference_profile(served) == {"profile_id": "alert-1"}
    assert served.created_at is not None
    assert registry.last_retrain_time(model) == served.created_at
    loaded = registry.load_model(served)
    frame = fitted[1][["x", "plan"]]
    np.testing.assert_array_equal(loaded.predict(frame), fitted[0].predict(frame))


def test_a_second_version_for_the_same_alert_deletes_itself(
    registry: Registry, fitted: tuple[Any, pd.DataFrame]
) -> None:
    model = _model_name()
    assert _register(registry, model, fitted[0], "alert-x") == ("1", False)
    # A racing retrainer that missed the lookup registers too, then finds it lost.
    assert _register(registry, model, fitted[0], "alert-x") == ("1", True)
    assert [v.version for v in registry.versions(model)] == ["1"]
    quoted = "it's-an-alert"  # not safe in a filter string: looked up client-side
    assert _register(registry, model, fitted[0], quoted) == ("3", False)
    found = registry.served_version(model, quoted)
    assert found is not None and found.version == "3"


def test_promote_keeps_the_previous_champion_and_rollback_restores_it(
    registry: Registry, fitted: tuple[Any, pd.DataFrame]
) -> None:
    model = _model_name()
    for alert in ("a1", "a2"):
        _register(registry, model, fitted[0], alert)
    registry.mark_challenger(model, "1")
    assert registry.promote(model, "1") is None
    assert registry.aliases(model) == {CHAMPION: "1"}  # the challenger alias moved on
    registry.mark_challenger(model, "2")
    assert registry.promote(model, "2") == "1"
    assert registry.aliases(model) == {CHAMPION: "2", PREVIOUS_CHAMPION: "1"}
    champion = registry.alias_version(model, CHAMPION)
    assert champion is not None and champion.aliases == (CHAMPION,)
    assert "promoted_at" in champion.tags
    assert registry.rollback(model) == ("2", "1")
    assert registry.aliases(model) == {CHAMPION: "1"}
    assert "rolled_back_at" in registry.version(model, "2").tags
    with pytest.raises(RegistryError, match="no previous_champion alias"):
        registry.rollback(model)
    with pytest.raises(RegistryError, match="has no version 9"):
        registry.promote(model, "9")
    assert registry.alias_version(model, CHALLENGER) is None
    assert registry.aliases("never-registered") == {}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_an_unreachable_server_is_retried_with_backoff_then_reported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    delays: list[float] = []
    registry = Registry(
        f"http://127.0.0.1:{_free_port()}", attempts=4, backoff_seconds=0.25, sleep=delays.append
    )
    with pytest.raises(RegistryUnavailable, match="failed to search versions 4 times"):
        registry.served_version("churn", "alert-1")
    assert delays == [0.25, 0.5, 1.0]
