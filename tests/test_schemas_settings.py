"""Settings: environment variables (nested with __), secrets, and errors that say what to fix."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from schemas.settings import Settings, SettingsError, TopicSettings, env_var


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Tests see only the DRIFTLINE_* variables they set."""
    for name in list(os.environ):
        if name.upper().startswith("DRIFTLINE_"):
            monkeypatch.delenv(name)
    yield


def test_defaults_need_no_environment() -> None:
    settings = Settings()
    assert settings.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert settings.kafka.security_protocol == "PLAINTEXT"
    assert settings.topics.partitions == 6 and settings.topics.replication_factor == 1
    assert settings.topics.retention_ms == 7 * 24 * 3600 * 1000
    assert settings.mlflow.tracking_uri == "sqlite:///.driftline/mlflow.db"
    assert (settings.metrics.host, settings.metrics.port) == ("127.0.0.1", 9108)
    assert settings.monitor_config is None
    assert settings.kafka.confluent_config() == {
        "bootstrap.servers": "127.0.0.1:9092",
        "client.id": "driftline",
        "security.protocol": "PLAINTEXT",
    }


def test_topic_names_follow_the_prefix() -> None:
    topics = TopicSettings(prefix="t1.")
    names = [
        topics.predictions,
        topics.labels,
        topics.alerts,
        topics.models,
        topics.deadletter,
        topics.sketches,
    ]
    assert names == [
        "t1.predictions",
        "t1.labels",
        "t1.alerts",
        "t1.models",
        "t1.deadletter",
        "t1.sketches",
    ]


def test_nested_environment_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "monitor.yaml"
    config.write_text("{}\n")
    monkeypatch.setenv("DRIFTLINE_KAFKA__BOOTSTRAP_SERVERS", "k1:9092,k2:9092")
    monkeypatch.setenv("DRIFTLINE_TOPICS__PREFIX", "staging.")
    monkeypatch.setenv("DRIFTLINE_TOPICS__PARTITIONS", "12")
    monkeypatch.setenv("DRIFTLINE_METRICS__PORT", "9200")
    monkeypatch.setenv("DRIFTLINE_ROCKSDB__CACHE_MIB", "512")
    monkeypatch.setenv("DRIFTLINE_MLFLOW__TRACKING_URI", "http://mlflow:5000")
    monkeypatch.setenv("DRIFTLINE_MONITOR_CONFIG", str(config))
    settings = Settings()
    assert settings.kafka.confluent_config()["bootstrap.servers"] == "k1:9092,k2:9092"
    assert settings.topics.predictions == "staging.predictions"
    assert settings.topics.partitions == 12
    assert settings.metrics.port == 9200
    assert settings.rocksdb.cache_mib == 512
    assert settings.mlflow.tracking_uri == "http://mlflow:5000"
    assert settings.monitor_config == config


def test_environment_is_read_when_constructed_not_at_import(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DRIFTLINE_TOPICS__PARTITIONS", "not a number")
    imported = subprocess.run(
        [sys.executable, "-c", "import schemas, schemas.settings, schemas.events"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert imported.returncode == 0, imported.stderr
    with pytest.raises(SettingsError):
        Settings()
    monkeypatch.setenv("DRIFTLINE_TOPICS__PARTITIONS", "3")
    assert Settings().topics.partitions == 3


def test_sasl_password_is_secret_but_reaches_librdkafka(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFTLINE_KAFKA__SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("DRIFTLINE_KAFKA__SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("DRIFTLINE_KAFKA__SASL_USERNAME", "svc")
    monkeypatch.setenv("DRIFTLINE_KAFKA__SASL_PASSWORD", "hunter2-secret")
    settings = Settings()
    for shown in (repr(settings), str(settings), settings.model_dump_json(), repr(settings.kafka)):
        assert "hunter2-secret" not in shown
    config = settings.kafka.confluent_config()
    assert config["sasl.password"] == "hunter2-secret"
    assert config["sasl.mechanism"] == "SCRAM-SHA-512" and config["sasl.username"] == "svc"
    assert config["security.protocol"] == "SASL_PLAINTEXT"
    assert not any(key.startswith("ssl.") for key in config)


def test_sasl_without_credentials_names_the_variables_to_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DRIFTLINE_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("DRIFTLINE_KAFKA__SASL_USERNAME", "svc")
    with pytest.raises(SettingsError) as caught:
        Settings()
    message = str(caught.value)
    assert "DRIFTLINE_KAFKA__SASL_MECHANISM" in message
    assert "DRIFTLINE_KAFKA__SASL_PASSWORD" in message
    assert "DRIFTLINE_KAFKA__SASL_USERNAME" not in message


def test_bad_value_names_field_variable_and_input(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFTLINE_TOPICS__PARTITIONS", "0")
    monkeypatch.setenv("DRIFTLINE_KAFKA__SECURITY_PROTOCOL", "TLS")
    with pytest.raises(SettingsError) as caught:
        Settings()
    message = str(caught.value)
    assert "topics.partitions (DRIFTLINE_TOPICS__PARTITIONS): " in message and "got '0'" in message
    assert "kafka.security_protocol (DRIFTLINE_KAFKA__SECURITY_PROTOCOL): " in message
    assert "SASL_SSL" in message  # the allowed values are listed
    assert isinstance(caught.value, ValueError)


def test_a_rocksdb_cache_too_small_for_its_memtables_names_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DRIFTLINE_ROCKSDB__CACHE_MIB", "8")
    with pytest.raises(SettingsError, match=r"rocksdb.cache_mib \(DRIFTLINE_ROCKSDB__CACHE_MIB\)"):
        Settings()


def test_misspelled_nested_variable_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFTLINE_KAFKA__BOOTSTRAP_SERVER", "k:9092")
    with pytest.raises(
        SettingsError, match=r"DRIFTLINE_KAFKA__BOOTSTRAP_SERVER\): unknown setting"
    ):
        Settings()


def test_ssl_files_must_exist_and_need_an_ssl_protocol(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    with pytest.raises(SettingsError, match="DRIFTLINE_KAFKA__SSL_CAFILE at an existing PEM"):
        Settings(kafka={"security_protocol": "SSL", "ssl_cafile": ca})
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    with pytest.raises(SettingsError, match="DRIFTLINE_KAFKA__SECURITY_PROTOCOL=SSL"):
        Settings(kafka={"ssl_cafile": ca})
    settings = Settings(kafka={"security_protocol": "SSL", "ssl_cafile": ca})
    assert settings.kafka.confluent_config()["ssl.ca.location"] == str(ca)


def test_missing_monitor_config_file_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFTLINE_MONITOR_CONFIG", "/nonexistent/monitor.yaml")
    with pytest.raises(SettingsError, match="DRIFTLINE_MONITOR_CONFIG at a YAML file"):
        Settings()


def test_env_var_names() -> None:
    assert env_var("topics", "prefix") == "DRIFTLINE_TOPICS__PREFIX"
    assert env_var("monitor_config") == "DRIFTLINE_MONITOR_CONFIG"


def test_a_misspelt_variable_is_an_error_naming_it_and_the_likely_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DRIFTLINE_MONITOR_CONFG", "monitor.yaml")
    with pytest.raises(SettingsError, match=r"DRIFTLINE_MONITOR_CONFG \(did you mean "
                       r"DRIFTLINE_MONITOR_CONFIG\?\): unknown variable"):  # fmt: skip
        Settings()
    monkeypatch.delenv("DRIFTLINE_MONITOR_CONFG")
    # the Kafka script's own variables and the retrainer's section are not ours to judge
    monkeypatch.setenv("DRIFTLINE_KAFKA_HEAP", "1G")
    monkeypatch.setenv("DRIFTLINE_RETRAINER__MARGIN", "0.05")
    assert Settings().kafka.bootstrap_servers


def test_a_misspelt_retrainer_variable_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from retrainer.config import RetrainerConfig
    from retrainer.errors import ConfigError

    monkeypatch.setenv("DRIFTLINE_RETRAINER__MARGN", "0.05")
    with pytest.raises(ConfigError, match=r"MARGN \(did you mean DRIFTLINE_RETRAINER__MARGIN"):
        RetrainerConfig()
    monkeypatch.delenv("DRIFTLINE_RETRAINER__MARGN")
    monkeypatch.setenv("DRIFTLINE_RETRAINER__MARGIN", "0.05")
    assert RetrainerConfig().margin == 0.05
