"""The Faust application factory: settings in, a configured app with driftline's agents out.

Nothing is read from the environment here: callers pass :class:`Settings`. Every topic carries
raw bytes (agents validate with pydantic at the boundary). Tables live in RocksDB (rocksdict)
by default, backed by changelog topics named after the app id, so a restarted or rebalanced
worker recovers its state. The app id (also the consumer group) derives from the topic prefix,
so two deployments (or two tests) with different prefixes never share a group or changelogs.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from schemas.settings import Settings
from streams.topics import MAX_STATE_MESSAGE_BYTES

if TYPE_CHECKING:
    import faust

    from streams.agents_monitor import MonitorKit
    from streams.metrics import WorkerMetrics

__all__ = [
    "BATCH_SECONDS",
    "DEFAULT_STORE",
    "FETCH_WAIT_SECONDS",
    "JUDGE_BATCH_SECONDS",
    "MAX_STATE_MESSAGE_BYTES",
    "PRODUCER_BATCH_BYTES",
    "LiveApp",
    "app_id_for",
    "create_app",
    "drain_buffer_on_flush",
    "faust_credentials",
    "hold_input_while_seeking",
    "shorten_fetch_wait",
]

DEFAULT_STORE: Final = "rocksdb://"
BATCH_SECONDS: Final = 0.1
"""How long the ingest waits to fill a batch (``take_within_seconds``). A backlog fills batches
anyway; at a paced rate, waiting longer means fewer, larger rounds. Every round costs the judge
a delta per model, so since a round folds each model once, 0.1 s beats 0.05 s at 700/s with 20
models: alert p50/p99 130/200 ms against 177/316 ms over 10 minutes, 0.76 cores against 0.88
(bench/worker_throughput.py, bench/README.md, 15th session). At low rates an event may wait
up to this long before its round starts."""
JUDGE_BATCH_SECONDS: Final = 0.01
"""How long the judge agent waits to fill a batch of sketches deltas. Its batches cost little
(a delta per model and ingest round), so its wait is mostly alert latency: 0.01 s instead of
0.05 s took alert p50 from 210-246 to 156-169 ms at 700/s with 20 models (bench/README.md)."""
PRODUCER_BATCH_BYTES: Final = 512 << 10
"""Bytes of one partition's messages the producer packs into a request (Faust: 16 KiB).

aiokafka keeps one request in flight per broker, and a message that does not fit the
partition's open batch waits until that batch is on its way. Deltas of 2,000 events are
~200 KiB, so with 16 KiB every delta waited for the round trip of the one before: 1.1 s of a
3.5 s batch of 900k predictions (row b of bench/worker_throughput.py), and 10-20 % of its
throughput. Below 1 MiB because the alerts and dead-letter topics keep the broker's default
``max.message.bytes`` (1 MiB), which bounds a whole batch."""
FETCH_WAIT_SECONDS: Final = 0.02
"""How long the broker may hold a fetch that finds no new data (Kafka's ``fetch.max.wait.ms``;
Faust hard-codes 1.5 s). See :func:`shorten_fetch_wait` for why it bounds alert latency."""
# Modest RocksDB buffers: the defaults (64 MiB memtables x3, 2 GiB block cache) are sized for
# one big table, we have several small ones per partition. The block cache sizes only apply
# to a python-rocksdb store: with rocksdict every database shares one cache and write buffer
# budget (streams.rocksdb_memory).
ROCKSDB_OPTIONS: Final = {
    "write_buffer_size": 8 << 20,
    # Bits per key of the table files' bloom filters (Faust's default is 3: ~15 % false
    # positives, each a data block read). Most join lookups miss (a prediction is looked up
    # to spot a duplicate): with random event ids 10 bits halve a miss, 1.7 -> 0.9 us.
    "bloom_filter_size": 10,
    "max_write_buffer_number": 2,
    "block_cache_size": 32 << 20,
    "block_cache_compressed_size": 8 << 20,
}
log = logging.getLogger("driftline.worker")


def app_id_for(settings: Settings) -> str:
    """Consumer group and changelog prefix: ``<topic prefix>worker`` (``driftline.worker``)."""
    return f"{settings.topics.prefix}worker"


def faust_credentials(settings: Settings) -> Any:
    """Faust broker credentials matching the confluent-kafka configuration, or None."""
    import faust

    kafka = settings.kafka
    context: ssl.SSLContext | None = None
    if kafka.uses_ssl:
        context = ssl.create_default_context(
            cafile=str(kafka.ssl_cafile) if kafka.ssl_cafile else None
        )
        if kafka.ssl_certfile is not None:
            context.load_cert_chain(
                str(kafka.ssl_certfile),
                str(kafka.ssl_keyfile) if kafka.ssl_keyfile else None,
                kafka.ssl_key_password.get_secret_value() if kafka.ssl_key_password else None,
            )
    if kafka.uses_sasl:
        assert kafka.sasl_username and kafka.sasl_password and kafka.sasl_mechanism  # validated
        return faust.SASLCredentials(
            username=kafka.sasl_username,
            password=kafka.sasl_password.get_secret_value(),
            mechanism=kafka.sasl_mechanism,
            ssl_context=context,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


@dataclass
class LiveApp:
    """The app plus what the agents share with the worker (metrics, settings)."""

    app: faust.App
    settings: Settings
    metrics: WorkerMetrics


def create_app(
    settings: Settings,
    *,
    store: str = DEFAULT_STORE,
    app_id: str | None = None,
    datadir: Path | None = None,
    metrics: WorkerMetrics | None = None,
    take_max: int = 2_000,
    take_within_seconds: float = BATCH_SECONDS,
    judge_within_seconds: float = JUDGE_BATCH_SECONDS,
    judge_save_seconds: float | None = None,
    fetch_wait_seconds: float = FETCH_WAIT_SECONDS,
    install_agents: bool = True,
    monitor_kit: MonitorKit | None = None,
    **faust_options: Any,
) -> LiveApp:
    """A Faust app for driftline's live pipeline.

    ``store`` is ``"rocksdb://"`` (default; rocksdict) or ``"memory://"`` (tests, no
    persistence beyond changelogs). ``datadir`` holds the RocksDB files; several workers on one
    host need one each. ``take_max``/``take_within_seconds`` bound the batches agents fold;
    ``judge_within_seconds`` is the judge's own wait.
    ``monitor_kit`` replaces the monitor built from ``settings.monitor_config`` (tests).
    ``judge_save_seconds``: how long a judge's stored state may lag its live one.
    ``fetch_wait_seconds``: how long the broker may hold an empty fetch (see
    :func:`shorten_fetch_wait`).
    ``faust_options`` override any Faust setting.
    """
    import faust

    from streams.agent_crash import exit_on_agent_crash
    from streams.metrics import WorkerMetrics

    identity = app_id or app_id_for(settings)
    options: dict[str, Any] = {
        "broker": [
            f"kafka://{host.strip()}"
            for host in settings.kafka.bootstrap_servers.split(",")
            if host.strip()
        ],
        "store": store,
        "key_serializer": "raw",
        "value_serializer": "raw",
        "topic_partitions": settings.topics.partitions,
        "topic_replication_factor": settings.topics.replication_factor,
        "topic_disable_leader": True,
        "consumer_auto_offset_reset": "earliest",
        "web_enabled": False,
        "autodiscover": False,
        "stream_recovery_delay": 0.5,
        "broker_commit_interval": 1.0,
        # A worker killed with -9 holds its partitions until the session times out; 10 s
        # (instead of 60) lets a restarted or surviving worker take over quickly.
        "broker_session_timeout": 10.0,
        "broker_heartbeat_interval": 1.0,
        # Table writes are one changelog message per key: with Faust's default linger of 0
        # each went out in its own produce request (25k requests for 28k predictions).
        "producer_linger": 0.005,
        "producer_max_request_size": MAX_STATE_MESSAGE_BYTES,
        "producer_max_batch_size": PRODUCER_BATCH_BYTES,
        "datadir": str(datadir or Path(".driftline") / "faust" / identity),
        "table_key_index_size": 100_000,
    }
    credentials = faust_credentials(settings)
    if credentials is not None:
        options["broker_credentials"] = credentials
    options.update(faust_options)
    app = faust.App(identity, **options)
    # Faust's own handler commits the consumer's offsets, then restarts the agent in place.
    app._on_agent_error = exit_on_agent_crash()  # type: ignore[method-assign,assignment]  # before agents
    hold_input_while_seeking(app)
    shorten_fetch_wait(app, fetch_wait_seconds)
    live = LiveApp(app=app, settings=settings, metrics=metrics or WorkerMetrics())
    if app.conf.store.scheme == "rocksdb":
        from streams.rocksdb_memory import share_rocksdb_memory

        # One memory budget, however many partitions the worker holds.
        shared = share_rocksdb_memory(settings.rocksdb.cache_mib << 20)
        live.metrics.watch_rocksdb_cache(
            shared.cache.get_usage, shared.cache.get_pinned_usage, shared.cache_bytes
        )
    if install_agents:
        from streams.agents import install_pipeline

        install_pipeline(
            live, take_max=take_max, take_within_seconds=take_within_seconds, kit=monitor_kit,
            judge_within_seconds=judge_within_seconds, judge_save_seconds=judge_save_seconds,
        )  # fmt: skip
    return live


def drain_buffer_on_flush(app: faust.App) -> None:
    """Make ``app.producer.flush()`` drain Faust's send-soon buffer (table writes) fully.

    Faust commits input offsets right after ``producer.flush()``, but its buffer stops
    draining when one message takes over 0.1 s (a loaded worker): a commit could then pass
    table writes (join journals, ingest progress, judge marks) still in the buffer, and a
    crash lost them with their input already committed. Idempotent; call it once the
    producer exists (first thing in an agent).
    """
    buffer: Any = app.producer.buffer
    if getattr(buffer, "_driftline_drains", False):
        return
    flush_some = buffer.flush

    async def flush_all() -> None:
        await flush_some()
        while buffer.size:
            await flush_some()

    buffer.flush = flush_all
    buffer._driftline_drains = True


def hold_input_while_seeking(app: faust.App) -> None:
    """Keep input messages out of the agents' queues while Faust ends a rebalance.

    Once the tables are recovered, Faust resumes the input partitions, seeks them to their
    committed offsets (seconds on a loaded worker), and only then resumes flow control, which
    clears every stream queue. A message delivered during the seek sat in a queue when it
    was cleared, and the seek had passed its partition already (or found no committed offset
    to go back to): it was lost (faust-streaming issue 596; one startup in two in
    ``test_live_join_recovery`` before this hold). ``on_rebalance_complete`` is sent just
    before the resume: suspending flow control there makes the consumer wait, message in
    hand, until that clear is done. The input partitions were paused during recovery, so no
    queue holds input yet.
    """

    async def suspend_flow(sender: Any, **_: Any) -> None:
        app.flow_control.suspend()

    app.on_rebalance_complete.connect(suspend_flow)  # type: ignore[arg-type]  # takes (sender)


def shorten_fetch_wait(app: faust.App, seconds: float) -> None:
    """Let the broker hold a fetch that finds no new data for ``seconds``, not Faust's 1.5 s.

    aiokafka keeps one fetch in flight per broker, and leaves out of it every partition that
    still has unread records. So the fetch sent while the busy partitions' records are being
    delivered asks only for quiet ones (labels, models, a partition of sketches), and the
    broker holds it for ``fetch.max.wait.ms``: the busy partitions' next records wait behind
    it. At 700 predictions/s with 18 models, messages reached the agents ~1.4 s after they were
    produced and alerts took 2.6 s (p50; 3.5 s p99); with 20 ms, 56 ms and 294 ms
    (bench/worker_throughput.py ``--only s``). An idle worker pays one empty fetch per
    ``seconds``.

    Faust builds its aiokafka consumer with a literal 1.5 s, so this sets the value on the
    running fetcher when partitions are assigned (the fetcher exists by then; the fetch in
    flight keeps its old wait). The worker logs the value at info, or a warning when a
    Faust/aiokafka upgrade moved the attribute.
    """
    wait_ms = max(1, round(seconds * 1000))

    async def apply(sender: Any, assigned: Any, **_: Any) -> None:
        thread = getattr(app.consumer, "_thread", None)
        fetcher = getattr(getattr(thread, "_consumer", None), "_fetcher", None)
        current = getattr(fetcher, "_fetch_max_wait_ms", None)
        if not isinstance(current, int):
            log.warning("cannot set the consumer's fetch wait (Faust or aiokafka changed): "
                        "alerts may lag by up to 1.5 s")  # fmt: skip
        elif current != wait_ms:
            fetcher._fetch_max_wait_ms = wait_ms  # type: ignore[union-attr]  # an int, checked
            log.info("consumer fetch wait: %d ms (was %d ms)", wait_ms, current)

    app.on_partitions_assigned.connect(apply)  # type: ignore[arg-type]  # takes (sender, tps)
