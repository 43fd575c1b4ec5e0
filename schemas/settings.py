"""Runtime settings from ``DRIFTLINE_*`` environment variables (``__`` separates nested names).

Nothing is read at import time: callers construct :class:`Settings` (and may pass overrides).

>>> settings = Settings(kafka={"bootstrap_servers": "kafka-1:9092"}, topics={"prefix": "dev."})
>>> settings.topics.predictions
'dev.predictions'
>>> settings.kafka.confluent_config()["bootstrap.servers"]
'kafka-1:9092'
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "ENV_PREFIX",
    "KafkaSettings",
    "MetricsSettings",
    "MlflowSettings",
    "SecurityProtocol",
    "Settings",
    "SettingsError",
    "TopicSettings",
    "env_var",
    "unknown_variables",
]

ENV_PREFIX = "DRIFTLINE_"
SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
_SEVEN_DAYS_MS = 7 * 24 * 3600 * 1000


SCRIPT_VARIABLES = frozenset({
    "DRIFTLINE_KAFKA_DOCKER", "DRIFTLINE_KAFKA_HEAP", "DRIFTLINE_KAFKA_HOME",
    "DRIFTLINE_KAFKA_LIB", "DRIFTLINE_KAFKA_PORT_BASE", "DRIFTLINE_KAFKA_TIMEOUT",
})  # fmt: skip
"""Read by ``deploy/kafka/kafka.sh``, not by Python."""
OTHER_SECTIONS = frozenset({"RETRAINER"})
"""Sections with their own settings class (``retrainer.config``), checked there."""


def unknown_variables(
    environ: Mapping[str, str], known: Iterable[str], *, prefix: str = ENV_PREFIX
) -> list[str]:
    """``prefix`` variables that set nothing, each with a guess at what was meant.

    ``known`` are the variables that do set something (or whole sections, ending in ``__``).

    >>> environ = {"DRIFTLINE_MONITOR_CONFG": "x", "HOME": "/", "DRIFTLINE_KAFKA__X": "y"}
    >>> unknown_variables(environ, ["DRIFTLINE_MONITOR_CONFIG", "DRIFTLINE_KAFKA__"])
    ['DRIFTLINE_MONITOR_CONFG (did you mean DRIFTLINE_MONITOR_CONFIG?)']
    """
    known = list(known)
    sections = tuple(name for name in known if name.endswith("__"))
    unknown = []
    for name in sorted(environ):
        if not name.startswith(prefix) or name in known or name.startswith(sections):
            continue
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.8)
        unknown.append(f"{name} (did you mean {close[0]}?)" if close else name)
    return unknown


def _settings_variables() -> list[str]:
    """What ``Settings`` reads: top-level variables and section prefixes (pydantic names
    unknown fields inside a section itself)."""
    names = []
    for field, info in Settings.model_fields.items():
        nested = isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel)
        names.append(env_var(field) + ("__" if nested else ""))
    names += [f"{ENV_PREFIX}{section}__" for section in OTHER_SECTIONS]
    return [*names, *SCRIPT_VARIABLES]


def env_var(*path: str) -> str:
    """The environment variable of a setting: ``env_var("kafka", "sasl_username")``.

    >>> env_var("kafka", "sasl_username")
    'DRIFTLINE_KAFKA__SASL_USERNAME'
    """
    return ENV_PREFIX + "__".join(part.upper() for part in path)


class SettingsError(ValueError):
    """The configuration is invalid; the message names each setting, its variable and the fix."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class KafkaSettings(_Section):
    """How to reach the Kafka cluster."""

    bootstrap_servers: Annotated[str, Field(min_length=1)] = "127.0.0.1:9092"
    """Comma-separated host:port list."""
    client_id: Annotated[str, Field(min_length=1)] = "driftline"
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_key_password: SecretStr | None = None

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    @property
    def uses_ssl(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @model_validator(mode="after")
    def _consistent_security(self) -> Self:
        if self.uses_sasl:
            missing = [
                env_var("kafka", name)
                for name in ("sasl_mechanism", "sasl_username", "sasl_password")
                if getattr(self, name) is None
            ]
            if missing:
                raise ValueError(
                    f"security_protocol {self.security_protocol} needs SASL credentials: set "
                    f"{', '.join(missing)} (mechanism one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)"
                )
        files = ("ssl_cafile", "ssl_certfile", "ssl_keyfile")
        for name in files:
            path: Path | None = getattr(self, name)
            if path is None:
                continue
            if not self.uses_ssl:
                raise ValueError(
                    f"{name} is set but security_protocol is {self.security_protocol}: set "
                    f"{env_var('kafka', 'security_protocol')}=SSL (or SASL_SSL), or unset "
                    f"{env_var('kafka', name)}"
                )
            if not path.is_file():
                raise ValueError(
                    f"{name} {str(path)!r} is not a readable file: point "
                    f"{env_var('kafka', name)} at an existing PEM file"
                )
        return self

    def confluent_config(self) -> dict[str, str]:
        """librdkafka configuration for confluent-kafka Producer, Consumer and AdminClient."""
        config = {
            "bootstrap.servers": self.bootstrap_servers,
            "client.id": self.client_id,
            "security.protocol": self.security_protocol,
        }
        if self.uses_sasl:
            assert self.sasl_mechanism and self.sasl_username and self.sasl_password  # validated
            config["sasl.mechanism"] = self.sasl_mechanism
            config["sasl.username"] = self.sasl_username
            config["sasl.password"] = self.sasl_password.get_secret_value()
        if self.uses_ssl:
            for name, key in (
                ("ssl_cafile", "ssl.ca.location"),
                ("ssl_certfile", "ssl.certificate.location"),
                ("ssl_keyfile", "ssl.key.location"),
            ):
                path: Path | None = getattr(self, name)
                if path is not None:
                    config[key] = str(path)
            if self.ssl_key_password is not None:
                config["ssl.key.password"] = self.ssl_key_password.get_secret_value()
        return config


class TopicSettings(_Section):
    """Topic names (``prefix`` + role) and how ``driftline topics create`` makes them."""

    prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]*$", max_length=200)] = "driftline."
    """Prepended to every topic name; Kafka allows letters, digits, '.', '_' and '-'."""
    partitions: Annotated[int, Field(ge=1)] = 6
    """Partitions of the predictions and labels topics (the same count: the label join)."""
    replication_factor: Annotated[int, Field(ge=1)] = 1
    retention_ms: Annotated[int, Field(ge=-1)] = _SEVEN_DAYS_MS
    """-1 keeps messages forever."""

    @property
    def predictions(self) -> str:
        return self.prefix + "predictions"

    @property
    def labels(self) -> str:
        return self.prefix + "labels"

    @property
    def alerts(self) -> str:
        return self.prefix + "alerts"

    @property
    def models(self) -> str:
        return self.prefix + "models"

    @property
    def deadletter(self) -> str:
        return self.prefix + "deadletter"

    @property
    def sketches(self) -> str:
        """Internal: per-partition window sketches on their way to the per-model judge."""
        return self.prefix + "sketches"


class MlflowSettings(_Section):
    tracking_uri: Annotated[str, Field(min_length=1)] = "sqlite:///.driftline/mlflow.db"
    """Any MLflow tracking URI; the default is an embedded SQLite file."""


class MetricsSettings(_Section):
    """Where each process serves Prometheus ``/metrics``."""

    host: str = "127.0.0.1"
    """Bind address; use 0.0.0.0 to let a Prometheus server on another host scrape it."""
    port: Annotated[int, Field(ge=0, le=65535)] = 9108
    """0 picks a free port."""


class RocksDBSettings(_Section):
    """The memory budget of a worker's RocksDB stores (``rocksdb://``), shared by all of them."""

    cache_mib: Annotated[int, Field(ge=16, le=1 << 20)] = 128
    """Block cache for all tables and partitions the worker holds: data blocks, the table
    files' index and bloom filter blocks, and the memtables (half of it at most). A join of N
    entries needs ~1.25 N bytes of filters to stay warm."""


class Settings(BaseSettings):
    """All runtime settings; ``Settings()`` reads ``DRIFTLINE_*`` variables when constructed."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        use_attribute_docstrings=True,
    )

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)
    mlflow: MlflowSettings = Field(default_factory=MlflowSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    rocksdb: RocksDBSettings = Field(default_factory=RocksDBSettings)
    monitor_config: Path | None = None
    """YAML file with the monitor configuration (detectors, windows, thresholds)."""
    native_ingest: bool = True
    """Read SDK envelopes with the native (Rust) lane where it is built; false: Python only
    (same results, slower; to rule the lane out or to measure without it)."""
    fixed_malloc_thresholds: bool = False
    """Fix glibc's mmap and trim thresholds in workers so freed buffers go back to the
    kernel (``streams.malloc_thresholds``): slower growth of memory, ~20 % less top
    throughput; false: glibc's adaptive defaults."""
    malloc_trim_seconds: Annotated[float, Field(ge=0)] = 10.0
    """How often a worker gives the heap's free pages back to the kernel (glibc's
    ``malloc_trim``, ``streams.malloc_trim``; a few ms on a helper thread); 0: never."""

    def __init__(self, *args: Any, **values: Any) -> None:
        # pydantic-settings ignores a misspelt top-level variable: a silent default is worse.
        unknown = unknown_variables(os.environ, _settings_variables())
        if unknown:
            raise SettingsError(
                "invalid driftline settings:\n"
                + "\n".join(
                    f"  {name}: unknown variable: remove it or fix its spelling" for name in unknown
                )
            )
        # One error type whose message names the environment variable to fix.
        try:
            super().__init__(*args, **values)
        except ValidationError as exc:
            raise SettingsError(_describe(exc)) from None

    @model_validator(mode="after")
    def _monitor_config_exists(self) -> Self:
        if self.monitor_config is not None and not self.monitor_config.is_file():
            raise ValueError(
                f"monitor_config {str(self.monitor_config)!r} is not a file: point "
                f"{env_var('monitor_config')} at a YAML file, or unset it for the defaults"
            )
        return self


def _describe(exc: ValidationError) -> str:
    lines = ["invalid driftline settings:"]
    for error in exc.errors(include_url=False):
        loc = [str(part) for part in error["loc"]]
        where = ".".join(loc) if loc else "settings"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown setting: remove it or fix its spelling"
        if isinstance(error["input"], dict) or not loc:
            # A whole section failed; the message itself names the variables to set.
            lines.append(f"  {where}: {message}")
            continue
        quiet = error["type"] in ("missing", "extra_forbidden") or "password" in loc[-1]
        got = "" if quiet else f", got {error['input']!r}"  # never echo a secret
        lines.append(f"  {where} ({env_var(*loc)}): {message}{got}")
    return "\n".join(lines)
