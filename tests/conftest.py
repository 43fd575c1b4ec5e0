"""Shared fixtures. Tests that need Kafka use `kafka_bootstrap`: it FAILS when no broker answers.

`make test` starts a broker first; run `make kafka-up` before calling pytest by hand.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from schemas.settings import Settings
    from streams.processes import ManagedProcess, ProcessGroup

BOOTSTRAP_ENV = "DRIFTLINE_KAFKA__BOOTSTRAP_SERVERS"
REPO = Path(__file__).resolve().parent.parent


def _broker_answers(bootstrap: str) -> bool:
    from confluent_kafka.admin import AdminClient

    try:
        AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=5)
    except Exception:
        return False
    return True


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    bootstrap = os.environ.get(BOOTSTRAP_ENV, "127.0.0.1:9092")
    if not _broker_answers(bootstrap):
        pytest.fail(
            f"no Kafka broker answers at {bootstrap}: run `make kafka-up` (or `make test`, which "
            f"starts one); tests that need Kafka never skip",
            pytrace=False,
        )
    return bootstrap


@pytest.fixture
def topic_prefix() -> str:
    """A unique topic prefix per test, so tests never see each other's events."""
    return f"t{uuid.uuid4().hex[:10]}."


@pytest.fixture
def kafka_env(
    kafka_bootstrap: str, topic_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """Environment for a driftline process pointed at the test broker with unique topics."""
    values = {
        BOOTSTRAP_ENV: kafka_bootstrap,
        "DRIFTLINE_TOPICS__PREFIX": topic_prefix,
        "DRIFTLINE_TOPICS__PARTITIONS": "3",
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    yield values
    # After the test's processes stopped (they depend on this fixture): a dev broker that kept
    # every test's topics grew to thousands and then started slowly.
    from schemas.settings import KafkaSettings
    from streams.topics import delete_topics_with_prefix

    delete_topics_with_prefix(KafkaSettings(bootstrap_servers=kafka_bootstrap), topic_prefix)


@pytest.fixture
def driftline_processes(kafka_env: dict[str, str], tmp_path: Path) -> Iterator[ProcessGroup]:
    """Start ``driftline`` workers/retrainers as subprocesses on the test's topics; all are
    stopped (SIGTERM, then SIGKILL) when the test ends. Logs are in ``tmp_path/*.log``."""
    from streams.processes import ProcessGroup

    with ProcessGroup(env=kafka_env, log_dir=tmp_path, cwd=REPO) as group:
        yield group


@pytest.fixture
def start_worker(
    driftline_processes: ProcessGroup, tmp_path: Path
) -> Callable[..., ManagedProcess]:
    """``start_worker(name="w1", *options, **env)``: a worker with its own datadir (reused when
    a name is started again, like a restarted host); ``options`` go to ``python -m
    streams.worker``."""

    def start(name: str = "w1", *options: str, **env: str) -> ManagedProcess:
        return driftline_processes.worker(name, tmp_path / f"data-{name}", *options, **env)

    return start


@pytest.fixture
def settings(kafka_env: dict[str, str]) -> Settings:
    """Settings of the test's unique topics, created with the test's partition count."""
    from schemas.settings import Settings
    from streams.topics import ensure_topics

    settings = Settings()
    ensure_topics(settings)
    return settings
