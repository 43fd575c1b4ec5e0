"""Creates driftline's topics, idempotently, with the partitioning the label join relies on."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Final

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourceType,
)

from schemas.settings import KafkaSettings, Settings

__all__ = [
    "MAX_STATE_MESSAGE_BYTES",
    "TopicPlan",
    "TopicsError",
    "create_missing_topics",
    "delete_topics_with_prefix",
    "ensure_topics",
    "plan_topics",
    "raise_message_limits",
    "set_topic_config",
    "topic_config",
    "topic_partitions",
]

MAX_STATE_MESSAGE_BYTES: Final = 32 << 20
"""Largest message a worker writes: a table value (a judge of a model with hundreds of
features) or a delta on the sketches topic (250 events of 450 features are ~1.3 MB). The
brokers' ``message.max.bytes`` (1 MB by default) does not apply: those topics carry
``max.message.bytes`` themselves."""
MESSAGE_LIMIT: Final = "max.message.bytes"

MIN_DELETE_PREFIX = 8
"""Shortest prefix ``delete_topics_with_prefix`` accepts: it is for throwaway prefixes."""


class TopicsError(RuntimeError):
    """A topic exists in a shape driftline cannot work with."""


@dataclass(frozen=True)
class TopicPlan:
    name: str
    partitions: int
    config: dict[str, str]


def plan_topics(settings: Settings) -> list[TopicPlan]:
    """Every topic driftline uses. Predictions and labels share one partition count (the join)."""
    topics = settings.topics
    retention = {"retention.ms": str(topics.retention_ms)}
    keep_latest = {"cleanup.policy": "compact,delete", "retention.ms": str(topics.retention_ms)}
    return [
        TopicPlan(topics.predictions, topics.partitions, retention),
        TopicPlan(topics.labels, topics.partitions, retention),
        TopicPlan(topics.alerts, topics.partitions, retention),
        TopicPlan(topics.models, 1, keep_latest),
        TopicPlan(topics.deadletter, topics.partitions, retention),
        TopicPlan(
            topics.sketches,
            topics.partitions,
            {**retention, MESSAGE_LIMIT: str(MAX_STATE_MESSAGE_BYTES)},
        ),
    ]


def _existing_partitions(admin: AdminClient, names: list[str]) -> dict[str, int]:
    metadata = admin.list_topics(timeout=10)
    return {
        name: len(metadata.topics[name].partitions)
        for name in names
        if name in metadata.topics and metadata.topics[name].error is None
    }


def topic_partitions(kafka: KafkaSettings, names: list[str]) -> dict[str, int]:
    """Partition count of each of ``names`` that exists."""
    return _existing_partitions(AdminClient({**kafka.confluent_config()}), names)


def create_missing_topics(
    kafka: KafkaSettings,
    plans: list[TopicPlan],
    replication_factor: int,
    timeout_seconds: float = 30.0,
) -> dict[str, str]:
    """Create the planned topics that do not exist; returns name -> "created" | "exists"."""
    admin = AdminClient({**kafka.confluent_config()})
    existing = _existing_partitions(admin, [plan.name for plan in plans])
    outcome = {plan.name: "exists" for plan in plans if plan.name in existing}
    missing = [plan for plan in plans if plan.name not in existing]
    if not missing:
        return outcome
    futures = admin.create_topics(
        [
            NewTopic(
                plan.name,
                num_partitions=plan.partitions,
                replication_factor=replication_factor,
                config=plan.config,
            )
            for plan in missing
        ],
        operation_timeout=timeout_seconds,
        request_timeout=timeout_seconds,
    )
    for name, future in futures.items():
        try:
            future.result()
            outcome[name] = "created"
        except KafkaException as exc:
            error = exc.args[0]
            if isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                outcome[name] = "exists"
            else:
                raise TopicsError(f"could not create topic {name!r}: {error}") from exc
    return outcome


def ensure_topics(settings: Settings, timeout_seconds: float = 30.0) -> dict[str, str]:
    """Create missing topics; returns name -> "created" | "exists". Safe to run again."""
    plans = plan_topics(settings)
    outcome = create_missing_topics(
        settings.kafka, plans, settings.topics.replication_factor, timeout_seconds
    )
    existing = [plan for plan in plans if outcome.get(plan.name) == "exists"]
    raise_message_limits(settings.kafka, existing, timeout_seconds)
    counts = topic_partitions(settings.kafka, [settings.topics.predictions, settings.topics.labels])
    if len(set(counts.values())) > 1:
        raise TopicsError(
            f"predictions and labels topics must have the same partition count for the label "
            f"join, found {counts}; recreate one of them or add partitions to match"
        )
    expected = settings.topics.partitions
    wrong = {name: count for name, count in counts.items() if count != expected}
    if wrong:
        # The workers' tables and the join's placement assume the configured count; topics
        # auto-created by a producer get the broker's default instead.
        found = next(iter(wrong.values()))
        raise TopicsError(
            f"{', '.join(sorted(wrong))} {'has' if len(wrong) == 1 else 'have'} {found} "
            f"partitions but DRIFTLINE_TOPICS__PARTITIONS is {expected}: set "
            f"DRIFTLINE_TOPICS__PARTITIONS={found}, or recreate the topics with "
            f"`driftline topics create` before anything produces to them"
        )
    return outcome


def topic_config(
    kafka: KafkaSettings, names: list[str], key: str, timeout_seconds: float = 30.0
) -> dict[str, str | None]:
    """Each topic's value of the config ``key`` (None: not set)."""
    admin = AdminClient({**kafka.confluent_config()})
    described = admin.describe_configs(
        [ConfigResource(ResourceType.TOPIC, name) for name in names],
        request_timeout=timeout_seconds,
    )
    values: dict[str, str | None] = {}
    for resource, future in described.items():
        entry = future.result().get(key)
        values[resource.name] = None if entry is None else entry.value
    return values


def set_topic_config(
    kafka: KafkaSettings, name: str, key: str, value: str, timeout_seconds: float = 30.0
) -> None:
    """Set the config ``key`` of topic ``name`` (others unchanged); raises `KafkaException`."""
    entry = ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)
    resource = ConfigResource(ResourceType.TOPIC, name, incremental_configs=[entry])
    admin = AdminClient({**kafka.confluent_config()})
    for future in admin.incremental_alter_configs(
        [resource], request_timeout=timeout_seconds
    ).values():
        future.result()


def raise_message_limits(
    kafka: KafkaSettings, plans: list[TopicPlan], timeout_seconds: float = 30.0
) -> list[str]:
    """Raise ``max.message.bytes`` of the existing topics whose plan sets a larger one (topics
    created before it was planned); returns their names."""
    wanted = {plan.name: int(plan.config[MESSAGE_LIMIT]) for plan in plans
              if MESSAGE_LIMIT in plan.config}  # fmt: skip
    if not wanted:
        return []
    found = topic_config(kafka, list(wanted), MESSAGE_LIMIT, timeout_seconds)
    low = [name for name, value in found.items() if value is None or int(value) < wanted[name]]
    for name in low:
        try:
            set_topic_config(kafka, name, MESSAGE_LIMIT, str(wanted[name]), timeout_seconds)
        except KafkaException as exc:
            raise TopicsError(
                f"topic {name!r} needs {MESSAGE_LIMIT}={wanted[name]} (deltas of wide models "
                f"exceed the broker's default) and driftline could not set it: "
                f"{exc.args[0]}. Set it with kafka-configs.sh --alter --entity-type topics "
                f"--entity-name {name} --add-config {MESSAGE_LIMIT}={wanted[name]}"
            ) from exc
    return low


def delete_topics_with_prefix(
    kafka: KafkaSettings, prefix: str, timeout_seconds: float = 30.0
) -> int:
    """Delete every topic named ``prefix``* (with a run's topic prefix, that includes its
    workers' changelog topics); returns how many. For the unique prefixes of tests and
    benchmarks: a broker that keeps thousands of their topics starts slowly.

    Returns once the broker's metadata no longer lists them (the controller answers the
    delete before its brokers forget the topics, and a caller that recreates or lists them
    at once would see them still). Best effort: a topic that fails to go is left behind
    (harmless), and after ``timeout_seconds`` the function returns without waiting further.
    """
    if len(prefix) < MIN_DELETE_PREFIX or prefix == "driftline.":
        raise ValueError(
            f"refusing to delete the topics of prefix {prefix!r}: only unique throwaway prefixes "
            f"of at least {MIN_DELETE_PREFIX} characters (tests, benchmarks)"
        )
    admin = AdminClient({**kafka.confluent_config()})
    names = [name for name in admin.list_topics(timeout=10).topics if name.startswith(prefix)]
    if not names:
        return 0
    deadline = time.monotonic() + timeout_seconds
    deleted: set[str] = set()
    for name, future in admin.delete_topics(names, operation_timeout=timeout_seconds).items():
        with contextlib.suppress(KafkaException):
            future.result()
            deleted.add(name)
    while deleted & set(admin.list_topics(timeout=10).topics) and time.monotonic() < deadline:
        time.sleep(0.1)
    return len(names)
