"""The live pipeline's agents: ingest (validate, join, fold), judge (merge, decide, alert),
models (switch references). Agents stay short: parse, call the pure monitor, emit.

Ingest consumes predictions and labels through one channel, so partition N of both topics
(co-partitioned by the assignor) and the join tables' partition N live in one worker. It folds
each batch per source partition and publishes the drained window deltas to the internal
sketches topic keyed by model *before* the batch is acknowledged; a progress table remembers
the last published offset per source partition, so a crash between publishing and committing
does not count events twice. The judge agent owns each model through the sketches key.

Per-model gauges follow the judge: the first time a worker loads a model's judge it exports
the alerts the judge's state says are firing; when a rebalance takes a model's sketches
partition away, the worker drops the model's series (the new owner exports them).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import weakref
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from schemas.events import Alert, InvalidEvent, ModelEvent, parse_event, to_json_bytes
from streams import json_read
from streams.agents_monitor import MonitorKit
from streams.agents_state import AlertLedger, JsonTableView, decoded_entries
from streams.fold_columns import fold_columns
from streams.ingest_columns import split_columns
from streams.ingest_rounds import (
    Folded,
    offset_gaps,
    offset_span,
    split_replay,
    with_read_back,
)
from streams.input_refetch import GapWatch, RefetchedEvent, read_input_range
from streams.join_batch import changes_of, deletes_of, entries_of, expiry_stubs
from streams.judge_book import Envelopes, JudgeBook
from streams.judge_record import batch_of
from streams.validation import RawMessage, Source

if TYPE_CHECKING:
    from faust.types import EventT

    Event = EventT[Any]

    from streams.app import LiveApp

    Part = tuple[int, list[Event | RefetchedEvent], list[int] | None, Event]
    """A partition's share of a round: its events, the intent it replays (or None), and a
    Faust event of it to make current."""

__all__ = ["SKETCH_FORMAT_VERSION", "install_pipeline"]

SKETCH_FORMAT_VERSION = 1
JUDGE_SAVE_SECONDS = 2.0
"""How long a judge's stored state may lag its live one (the gap is read back after a crash)."""
log = logging.getLogger("driftline.agents")


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _as_current(event: Event) -> None:
    """Make ``event`` Faust's current event: table reads and writes then use its partition.

    A ``take_events`` batch mixes partitions; we process it per partition and point Faust at
    one event of that partition first (Faust has no public setter for this).
    """
    from faust import streams

    streams._current_event.set(weakref.ref(event))


def _by_partition(events: Sequence[Event]) -> dict[int, list[Event]]:
    groups: dict[int, list[Event]] = defaultdict(list)
    for event in events:
        groups[event.message.partition].append(event)
    return groups


def install_pipeline(
    live: LiveApp,
    *,
    take_max: int,
    take_within_seconds: float,
    kit: MonitorKit | None = None,
    judge_save_seconds: float | None = None,
) -> None:
    """Declare topics, tables, agents and timers on ``live.app``."""
    app, settings, metrics = live.app, live.settings, live.metrics
    topics = settings.topics
    kit = kit or MonitorKit.from_settings(settings)

    def raw_topic(name: str, partitions: int | None = None) -> Any:
        return app.topic(
            name,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            partitions=partitions,
            internal=False,
        )

    inputs = app.topic(
        topics.predictions,
        topics.labels,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )
    sketches = raw_topic(topics.sketches)
    models = raw_topic(topics.models)
    alerts = raw_topic(topics.alerts)
    deadletter = raw_topic(topics.deadletter)

    from streams.app import drain_buffer_on_flush

    def table(name: str, help_text: str, journal_retention: float | None = None) -> Any:
        from streams.app import MAX_STATE_MESSAGE_BYTES, ROCKSDB_OPTIONS
        from streams.journal_table import JournalTable

        options = dict(ROCKSDB_OPTIONS) if app.conf.store.scheme == "rocksdb" else None
        common: dict[str, Any] = {
            "name": name,
            "key_type": bytes,
            "value_type": bytes,
            "partitions": topics.partitions,
            "help": help_text,
            "options": options,
            # A judge's state grows with the model's features (~22 KB each with the default
            # windows), a reference too: past Kafka's default 1 MB limit at ~45 features.
            "extra_topic_configs": {"max.message.bytes": str(MAX_STATE_MESSAGE_BYTES)},
        }
        if journal_retention is None:
            return app.Table(**common)
        journal = JournalTable(
            app, beacon=app.tables.beacon, retention_seconds=journal_retention, **common
        )
        return app.tables.add(journal)

    # The join writes a key per event: its tables log one journal per partition batch.
    journal_retention = 2 * kit.join_ttl_seconds
    pending_table = table(
        "join-predictions", "Predictions waiting for their label, by event_id.",
        journal_retention,
    )  # fmt: skip
    early_table = table(
        "join-labels", "Labels that arrived before their prediction.", journal_retention
    )
    progress_table = table("ingest-progress", "Last offset folded into a published delta.")
    judge_table = table("judge-state", "Per-model judge state (windows, detectors, reference).")
    ledger_table = table("alert-ledger", "Last published alert status per fingerprint.")
    progress = JsonTableView(progress_table)
    judges = JsonTableView(judge_table)
    ledger = AlertLedger(JsonTableView(ledger_table))
    source_of = {topics.predictions: "predictions", topics.labels: "labels"}

    def fold_partition(
        partition: int, events: list[Event | RefetchedEvent], anchor: Event
    ) -> Folded | None:
        """Validate, join and fold one partition's events (None: all of them folded before);
        ``anchor``: a Faust event of the partition (messages read back are not)."""
        _as_current(anchor)
        fresh: list[RawMessage] = []
        last_offsets: dict[str, int] = {}
        for event in events:
            message = event.message
            source: Source = (
                "predictions" if source_of[message.topic] == "predictions" else "labels"
            )
            key = f"{source}:{partition}"
            if key not in last_offsets:
                last_offsets[key] = int(progress.get(key, -1))
            if message.offset <= last_offsets[key]:
                continue  # already inside a published delta (replayed after a crash)
            last_offsets[key] = message.offset
            fresh.append(
                RawMessage(source, message.value, message.topic, partition, message.offset)
            )
        if not fresh:
            return None
        split = split_columns(fresh, now=_utc_now())
        metrics.messages_in.labels(source="predictions").inc(split.prediction_messages)
        metrics.messages_in.labels(source="labels").inc(split.label_messages)
        metrics.events_in.labels(source="predictions").inc(split.prediction_count)
        metrics.events_in.labels(source="labels").inc(len(split.labels))
        dead_letters.extend(split.dead_letters)
        if split.predictions and split.predictions[0].event_ids:  # one key per batch
            sample = split.predictions[0].event_ids[0]
            metrics.sample_key_placement("predictions", sample, partition, topics.partitions)
        if split.labels:
            sample = split.labels[0].event_id
            metrics.sample_key_placement("labels", sample, partition, topics.partitions)
        # The join works on the batch's entries as plain dicts; what it changed is written
        # back at once, then the partition is expired now and then (that scans the table).
        ids = [*(key for part in split.predictions for key in part.event_ids),
               *(label.event_id for label in split.labels)]  # fmt: skip
        pending_before = entries_of(pending_table, partition, ids)
        early_before = entries_of(early_table, partition, ids)
        pending_now, early_now = dict(pending_before), dict(early_before)
        newest: list[datetime] = []
        deltas = fold_columns(
            kit,
            pending_now,
            early_now,
            split.predictions,
            split.labels,
            metrics,
            labels_behind=labels_lag(partition, last_offsets) > kit.labels_lag_tolerance,
            positions=split.positions,
            on_joined=lambda _joiner, at: newest.append(at),
        )
        pending_table.write_many(partition, changes_of(pending_before, pending_now))
        early_table.write_many(partition, changes_of(early_before, early_now))
        if newest and kit.expiry_due(partition, newest[0]):
            expire_join(partition, newest[0])
        # One changelog message per join table for the whole partition batch.
        pending_table.flush_journal(partition)
        early_table.flush_journal(partition)
        span = offset_span([(message.source, message.offset) for message in fresh])
        return Folded(partition, anchor, deltas, last_offsets, batch_of(span), topics.partitions)

    def expire_join(partition: int, newest: datetime) -> None:
        """Expire ``partition``'s join: scan its own store, write back what expired."""
        pending_before = expiry_stubs(pending_table, partition)
        early_before = expiry_stubs(early_table, partition)
        pending_now, early_now = dict(pending_before), dict(early_before)
        kit.expire(pending_now, early_now, newest, metrics)
        pending_table.write_many(partition, deletes_of(pending_before, pending_now))
        early_table.write_many(partition, deletes_of(early_before, early_now))

    def labels_lag(partition: int, last_offsets: dict[str, int]) -> int:
        """Label messages of ``partition`` not read yet (0 when the broker has not said)."""
        from faust.types import TP

        key = f"labels:{partition}"
        read = last_offsets.get(key, int(progress.get(key, -1)))
        highwater = app.consumer.highwater(TP(topics.labels, partition))
        return 0 if highwater is None else max(0, int(highwater) - read - 1)

    dead_letters: list[Any] = []
    ingest_watch, judge_watch = GapWatch(), GapWatch()
    """When the agents look for input offsets Faust dropped (after a rebalance)."""

    def locate(event: Event | RefetchedEvent) -> tuple[str, int]:
        return source_of[event.message.topic], event.message.offset

    async def ingest_batch(batch: Sequence[Event]) -> None:
        """Fold every partition; publish the deltas in event-time order, then the offsets.

        A batch left unfinished by a crash (its intent is beyond the progress offsets) is
        folded again first, as the same batch, so the judge recognises its deltas. Offsets
        that never reached the ingest (see `streams.input_refetch`) are read back first.
        """
        replays: list[Part] = []
        rest: list[Part] = []
        for partition, events in sorted(_by_partition(batch).items()):
            _as_current(events[0])
            intent = progress.get(f"intent:{partition}")
            done = {
                source: int(progress.get(f"{source}:{partition}", -1))
                for source in ("predictions", "labels")
            }
            gaps = offset_gaps(events, locate, done) if ingest_watch.watching() else []
            found = await read_back(partition, gaps)
            arrived: list[Event | RefetchedEvent] = with_read_back(found, events, locate)
            again, new = split_replay(arrived, locate, intent, done)
            if again:
                replays.append((partition, again, intent, events[0]))
            if new:
                rest.append((partition, new, None, events[0]))
        for round_ in (replays, rest):
            if round_:
                await ingest_round(round_)

    async def read_back(partition: int, gaps: list[tuple[str, int, int]]) -> list[RefetchedEvent]:
        """The messages of ``partition`` in ``gaps`` (source: predictions, labels or sketches),
        read from Kafka, in offset order."""
        topic_of = {"predictions": topics.predictions, "labels": topics.labels,
                    "sketches": topics.sketches}  # fmt: skip
        found: list[RefetchedEvent] = []
        for source, low, high in gaps:
            topic = topic_of[source]
            missed = await asyncio.get_running_loop().run_in_executor(
                None, read_input_range, settings, topic, partition, low, high
            )
            log.warning("%s[%d]: offsets %d-%d never reached the worker: %d read back",
                        topic, partition, low, high - 1, len(missed))  # fmt: skip
            metrics.input_read_back.labels(source=source).inc(len(missed))
            found += missed
        return found

    async def ingest_round(parts: Sequence[Part]) -> None:
        """Intents first (flushed), then the deltas, then the progress offsets."""
        folded: list[Folded] = []
        for partition, events, intent, anchor in parts:
            result = fold_partition(partition, events, anchor)
            if result is not None:
                folded.append(result if intent is None else result.as_batch(intent))
        for letter in dead_letters:
            source_name = source_of.get(letter.source_topic, "unknown")
            metrics.invalid_events.labels(source=source_name, error_class=letter.error_class).inc()
            await deadletter.send(key=None, value=to_json_bytes(letter))
        dead_letters.clear()
        publishing = [result for result in folded if result.deltas]
        for result in publishing:
            _as_current(result.first)
            progress[f"intent:{result.partition}"] = result.batch
        if publishing:
            await app.producer.flush()  # the intents are durable before any delta is out
        ordered = sorted(
            (
                (delta, {**result.origin, "index": i})
                for result in publishing
                for i, delta in enumerate(result.deltas)
            ),
            key=lambda pair: pair[0].start,
        )
        for delta, origin in ordered:
            envelope = {
                "format": SKETCH_FORMAT_VERSION,
                "type": "delta",
                "model": delta.model,
                "origin": origin,
                "delta": delta.state,
            }
            await sketches.send(key=delta.model.encode(), value=_dumps(envelope))
            metrics.sketches_published.inc()
        for result in folded:
            _as_current(result.first)
            for key, offset in result.offsets.items():
                progress[key] = offset

    @app.agent(inputs, name="ingest")
    async def ingest(stream: Any) -> None:
        drain_buffer_on_flush(app)
        async for batch in stream.take_events(take_max, within=take_within_seconds):
            started = time.monotonic()
            await ingest_batch(batch)
            now = time.time()
            metrics.batch_duration.labels(stage="ingest").observe(time.monotonic() - started)
            newest = max(event.message.timestamp for event in batch)
            metrics.processing_latency.labels(stage="ingest").observe(max(0.0, now - newest))

    save_seconds = JUDGE_SAVE_SECONDS if judge_save_seconds is None else judge_save_seconds
    book = JudgeBook(kit, metrics, judges, save_seconds=save_seconds)
    revoked_sketches: set[int] = set()
    assigned_sketches: set[int] = set()
    sketches_seen: dict[int, int] = {}
    """Sketches partition -> last offset the judge got, since the last rebalance."""

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]  # handlers take (sender, tps)
    async def remember_revoked(sender: Any, revoked: set[Any], **_: Any) -> None:
        revoked_sketches.update(tp.partition for tp in revoked if tp.topic == topics.sketches)
        sketches_seen.clear()  # the next owner starts from the committed offsets
        book.on_revoked()

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]  # handlers take (sender, tps)
    async def forget_moved_models(sender: Any, assigned: set[Any], **_: Any) -> None:
        # Faust rebalances eagerly: every partition is revoked, then the new assignment (all
        # of it) arrives. Only the models whose partition did not come back moved away.
        kept = {tp.partition for tp in assigned if tp.topic == topics.sketches}
        assigned_sketches.clear()
        assigned_sketches.update(kept)
        ingest_watch.rearm()
        judge_watch.rearm()
        book.forget_partitions(revoked_sketches - kept)
        revoked_sketches.clear()

    @app.on_rebalance_complete.connect  # type: ignore[arg-type]  # handlers take (sender)
    async def export_alerts_moved_in(sender: Any, **_: Any) -> None:
        """Show the firing alerts of the models whose judge moved here (tables recovered):
        their judges load at the model's next delta, which an idle model may not send."""
        from streams.journal_table import partition_items

        for partition in sorted(assigned_sketches):
            raws = [raw for _, raw in partition_items(ledger_table, partition)]
            book.show_moved_in(partition, AlertLedger.firing_by_model(decoded_entries(raws)))

    async def judge_partition(events: list[Event]) -> None:
        _as_current(events[0])
        partition = events[0].message.partition
        by_model: dict[str, Envelopes] = defaultdict(list)
        for event in await with_sketches_read_back(partition, events):
            try:
                envelope = json_read.loads_own(event.message.value or b"")
                by_model[str(envelope["model"])].append((event.message.offset, envelope))
            except (ValueError, KeyError, TypeError):
                log.warning("skipping malformed sketch message at offset %s", event.message.offset)
        for model, envelopes in by_model.items():
            if not book.is_live(model):
                envelopes = await with_missed_envelopes(model, partition, envelopes)
            emitted = book.apply(model, partition, envelopes)
            for alert in emitted:
                await publish_alert(alert)
            if emitted:  # most batches change no alert: no gauge to touch
                changed = [(alert.kind, alert.feature, alert.detector) for alert in emitted]
                metrics.show_alert_states(model, changed, book.firing_identities(model))

    async def with_sketches_read_back(
        partition: int, events: list[Event]
    ) -> list[Event | RefetchedEvent]:
        """``events`` with the sketches messages since this partition's last batch that never
        reached the judge (see `streams.input_refetch`) read back from Kafka, in offset order."""
        last = sketches_seen.get(partition)
        sketches_seen[partition] = events[-1].message.offset
        if last is None or not judge_watch.watching():
            return list(events)

        def locate(event: Event | RefetchedEvent) -> tuple[str, int]:
            return "sketches", event.message.offset

        found = await read_back(partition, offset_gaps(events, locate, {"sketches": last}))
        return with_read_back(found, events, locate)

    async def with_missed_envelopes(model: str, partition: int, envelopes: Envelopes) -> Envelopes:
        """``envelopes`` preceded by the model's messages its stored state lacks (a crash
        between two saves), read back from the sketches topic."""
        from streams.sketch_catchup import read_model_envelopes

        mark = book.unsaved_mark(model)
        if mark is None or mark >= envelopes[0][0]:
            return envelopes
        missed = await asyncio.get_running_loop().run_in_executor(
            None, read_model_envelopes, settings, topics.sketches, partition, mark,
            envelopes[0][0], model,
        )  # fmt: skip
        log.info("judge of %s: %d sketches messages read back since its last save", model,
                 len(missed))  # fmt: skip
        metrics.judge_catchup_deltas.inc(len(missed))
        return [*missed, *envelopes]

    @app.timer(1.0)  # type: ignore[untyped-decorator]
    async def save_idle_judges() -> None:
        """Save the judges of models that went quiet with unsaved batches."""
        book.save_idle(write_in)

    def write_in(partition: int, key: str, value: Any) -> None:
        """A judge-table write outside any event (the timer)."""
        from streams.journal_table import put_in_partition

        put_in_partition(judge_table, partition, key.encode(), _dumps(value))

    async def publish_alert(alert: Alert) -> None:
        if not ledger.should_emit(alert.fingerprint, alert.status):
            metrics.alerts_suppressed.inc()
            return
        await alerts.send(key=alert.fingerprint.encode(), value=to_json_bytes(alert))
        identity = (alert.model, alert.kind, alert.feature, alert.detector)
        ledger.record(alert.fingerprint, alert.status, alert.alert_id, identity)
        metrics.alerts_emitted.labels(status=alert.status, severity=alert.severity).inc()

    @app.agent(sketches, name="judge")
    async def judge(stream: Any) -> None:
        drain_buffer_on_flush(app)
        async for batch in stream.take_events(take_max, within=take_within_seconds):
            started = time.monotonic()
            for _partition, events in sorted(_by_partition(batch).items()):
                await judge_partition(events)
            metrics.batch_duration.labels(stage="judge").observe(time.monotonic() - started)
            newest = max(event.message.timestamp for event in batch)
            metrics.processing_latency.labels(stage="judge").observe(max(0.0, time.time() - newest))

    @app.agent(models, name="models")
    async def model_events(stream: Any) -> None:
        async for raw in stream:
            try:
                event = parse_event(raw, ModelEvent)
            except InvalidEvent as exc:
                metrics.invalid_events.labels(source="models", error_class=exc.error_class).inc()
                log.warning("ignoring invalid model event: %s", exc)
                continue
            if event.type != "promoted" or event.reference is None:
                continue
            try:
                reference = kit.resolve_reference(event.reference)
            except (OSError, ValueError) as exc:
                log.error(
                    "cannot load the reference of %s version %s: %s",
                    event.model,
                    event.version,
                    exc,
                )
                continue
            envelope = {
                "format": SKETCH_FORMAT_VERSION,
                "type": "reference",
                "model": event.model,
                "version": event.version,
                "reference": reference,
            }
            await sketches.send(key=event.model.encode(), value=_dumps(envelope))

    @app.timer(5.0)  # type: ignore[untyped-decorator]
    async def report_lag() -> None:
        consumer = app.consumer
        assigned = list(consumer.assignment())
        for tp in assigned:
            try:
                position = await consumer.position(tp)
                highwater = consumer.highwater(tp)
            except Exception:
                continue
            if position is not None and highwater is not None:
                metrics.set_lag(tp.topic, tp.partition, max(0, highwater - position))
        # A partition that moved to another worker is that worker's to report.
        metrics.keep_lag_of({(tp.topic, tp.partition) for tp in assigned})


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()
