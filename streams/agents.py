"""The live pipeline's agents: ingest (validate, join, fold) and models (switch references)
here, the judge (merge, decide, alert) in `streams.judge_agent`. Agents stay short: parse,
call the pure monitor, emit.

Ingest consumes predictions and labels through one channel, so partition N of both topics
(co-partitioned by the assignor) and the join tables' partition N live in one worker. It folds
each batch per source partition and publishes the drained window deltas (merged per model
across its partitions, `streams.delta_merge`) to the internal sketches topic keyed by model
*before* the batch is acknowledged; a progress table remembers the last published offset per
source partition, so a crash between publishing and committing does not count events twice.
The judge agent owns each model through the sketches key.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from schemas.events import InvalidEvent, ModelEvent, parse_event, to_json_bytes
from streams.agent_events import as_current, by_partition, dumps_compact
from streams.agents_monitor import DeltaOut, MonitorKit
from streams.agents_state import JsonTableView
from streams.channel_batches import BATCH_BYTES, ack_batch, channel_batches
from streams.delta_merge import merge_round
from streams.faust_delivery import quicken_faust_delivery, raw_bytes_schema
from streams.fold_columns import fold_columns
from streams.ingest_columns import split_columns
from streams.ingest_prepare import Parsed, PrepareAhead, Prepared, helper_thread, parsed_ahead
from streams.ingest_rounds import (
    Folded,
    offset_gaps,
    offset_span,
    replay_tail,
    split_replay,
    with_read_back,
)
from streams.input_refetch import GapWatch, RefetchedEvent, read_input_range
from streams.input_rewind import IngestPulse, install_input_rewind
from streams.join_batch import BatchJoin, deletes_of, stubs_of
from streams.join_sweep import Sweeps
from streams.judge_agent import install_judge
from streams.judge_record import batch_of
from streams.publish_check import confirm_published
from streams.validation import RawMessage

if TYPE_CHECKING:
    from faust.types import EventT

    Event = EventT[Any]

    from streams.app import LiveApp

    Part = tuple[int, list[Event | RefetchedEvent], list[int] | None, Event]
    """A partition's share of a round: its events, the intent it replays (or None), and a
    Faust event of it to make current."""

__all__ = ["SKETCH_FORMAT_VERSION", "install_pipeline"]

SKETCH_FORMAT_VERSION = 1
log = logging.getLogger("driftline.agents")


def _utc_now() -> datetime:
    return datetime.now(UTC)


def install_pipeline(
    live: LiveApp,
    *,
    take_max: int,
    take_within_seconds: float,
    judge_within_seconds: float,
    kit: MonitorKit | None = None,
    judge_save_seconds: float | None = None,
) -> None:
    """Declare topics, tables, agents and timers on ``live.app``. The ingest waits
    ``take_within_seconds`` to fill a batch, the judge ``judge_within_seconds``."""
    app, settings, metrics = live.app, live.settings, live.metrics
    topics = settings.topics
    kit = kit or MonitorKit.from_settings(settings)

    def raw_topic(name: str, partitions: int | None = None) -> Any:
        return app.topic(name, schema=raw_bytes_schema(), partitions=partitions, internal=False)

    inputs = app.topic(topics.predictions, topics.labels, schema=raw_bytes_schema())
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
    sweeps = Sweeps([pending_table, early_table])
    """The join expiries in progress, a slice per ingest batch of their partition."""
    prepare_ahead = PrepareAhead()
    parse_helper = helper_thread("driftline-parse")
    source_of = {topics.predictions: "predictions", topics.labels: "labels"}

    def fresh_of(
        partition: int, events: list[Event | RefetchedEvent], anchor: Event
    ) -> tuple[list[RawMessage], dict[str, int]]:
        """``events`` not folded into a published delta before (a crash replays them), and
        the last offset per source among them; ``anchor``: a Faust event of the partition
        (messages read back are not)."""
        as_current(anchor)
        fresh: list[RawMessage] = []
        last_offsets: dict[str, int] = {}
        for message in raw_messages(partition, events):
            key = f"{message.source}:{partition}"
            if key not in last_offsets:
                last_offsets[key] = int(progress.get(key, -1))
            if message.offset <= last_offsets[key]:
                continue  # already inside a published delta (replayed after a crash)
            last_offsets[key] = message.offset
            fresh.append(message)
        return fresh, last_offsets

    def raw_messages(partition: int, events: Sequence[Event | RefetchedEvent]) -> list[RawMessage]:
        return [
            RawMessage(
                "predictions" if source_of[message.topic] == "predictions" else "labels",
                message.value, message.topic, partition, message.offset,
            )
            for message in (event.message for event in events)
        ]  # fmt: skip

    def parse_batch(batch: Sequence[Event]) -> dict[int, Parsed]:
        """Each partition's messages of ``batch``, parsed. Touches no Faust context: it runs
        on the parse helper while the batch before is folded."""
        parsed: dict[int, Parsed] = {}
        for partition, events in by_partition(batch).items():
            messages = raw_messages(partition, events)
            split = split_columns(messages, now=_utc_now(), native=settings.native_ingest)
            parsed[partition] = Parsed.of(messages, split)
        return parsed

    def prepare(partition: int, fresh: list[RawMessage], parsed: Parsed | None) -> Prepared:
        """Parse ``fresh`` (unless ``parsed`` holds them) and read the join entries of its
        event_ids. Touches only ``partition``'s stores and no Faust context: it may run on the
        helper thread."""
        split = None if parsed is None else parsed.split_of(fresh)
        if split is None:
            split = split_columns(fresh, now=_utc_now(), native=settings.native_ingest)
        # The join works on the batch's entries as plain dicts; predictions that meet nothing
        # in the join (the common case) skip the joiner: their entries, encoded by the
        # native parse, are written as they are.
        join = BatchJoin.read(
            pending_table, early_table, partition,
            [key for part in split.predictions for key in part.event_ids],
            [label.event_id for label in split.labels], split.all_join_entries(),
        )  # fmt: skip
        return Prepared(split, join)

    def fold_partition(
        partition: int,
        anchor: Event,
        fresh: list[RawMessage],
        last_offsets: dict[str, int],
        prepared: Prepared,
    ) -> Folded:
        """Count, join and fold one partition's ``fresh`` messages (``prepared``), write back
        what the batch changed in the join; ``anchor``: a Faust event of the partition."""
        as_current(anchor)
        split, join = prepared.split, prepared.join
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
        # What the join changed is written back at once, then the partition is expired now
        # and then (that scans the table).
        newest: list[datetime] = []
        deltas = fold_columns(
            kit,
            join.pending_now,
            join.early_now,
            split.predictions,
            split.labels,
            metrics,
            labels_behind=labels_lag(partition, last_offsets) > kit.labels_lag_tolerance,
            positions=split.positions,
            on_joined=lambda _joiner, at: newest.append(at),
            join_predictions=join.pended is None,
        )
        join.write(pending_table, early_table, partition)
        if newest:
            if not sweeps.in_progress(partition) and kit.expiry_due(partition, newest[0]):
                sweeps.start(partition)
            if sweeps.in_progress(partition):
                expire_join(partition, newest[0])
        # One changelog message per join table for the whole partition batch.
        pending_table.flush_journal(partition)
        early_table.flush_journal(partition)
        span = offset_span([(message.source, message.offset) for message in fresh])
        return Folded(partition, anchor, deltas, last_offsets, batch_of(span), topics.partitions)

    def expire_join(partition: int, newest: datetime) -> None:
        """Expire the next slice of ``partition``'s join (`streams.join_sweep`): read it from
        its own store, write back what expired."""
        horizon = kit.expiry_horizon_us(newest)
        pending_items, early_items = sweeps.next_slices(partition)
        pending_before = stubs_of(pending_items, older_than=horizon)
        early_before = stubs_of(early_items, older_than=horizon)
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
    ingest_watch = GapWatch()
    """When the ingest looks for input offsets Faust dropped (after a rebalance)."""

    def locate(event: Event | RefetchedEvent) -> tuple[str, int]:
        return source_of[event.message.topic], event.message.offset

    async def ingest_batch(batch: Sequence[Event], parsed: dict[int, Parsed]) -> None:
        """Fold every partition; publish the deltas in event-time order, then the offsets.

        A batch left unfinished by a crash (its intent is beyond the progress offsets) is
        folded again first, as the same batch, so the judge recognises its deltas. Offsets
        that never reached the ingest (see `streams.input_refetch`) are read back first.
        ``parsed``: each partition's messages of the batch, parsed ahead.
        """
        replays: list[Part] = []
        rest: list[Part] = []
        for partition, events in sorted(by_partition(batch).items()):
            as_current(events[0])
            intent = progress.get(f"intent:{partition}")
            done = {
                source: int(progress.get(f"{source}:{partition}", -1))
                for source in ("predictions", "labels")
            }
            gaps = offset_gaps(events, locate, done) if ingest_watch.watching() else []
            tail = replay_tail(events, locate, intent, done)
            found = await read_back(partition, gaps) + await read_back(partition, tail, "tail")
            arrived: list[Event | RefetchedEvent] = with_read_back(found, events, locate)
            again, new = split_replay(arrived, locate, intent, done)
            if again:
                replays.append((partition, again, intent, events[0]))
            if new:
                rest.append((partition, new, None, events[0]))
        for round_ in (replays, rest):
            if round_:
                await ingest_round(round_, parsed)

    async def read_back(
        partition: int, gaps: list[tuple[str, int, int]], why: str = "gap"
    ) -> list[RefetchedEvent]:
        """The messages of ``partition`` in ``gaps`` (source: predictions, labels or sketches),
        read from Kafka, in offset order. ``why``: "gap" (offsets Faust dropped) or "tail"
        (the rest of a crashed batch, not fetched yet)."""
        topic_of = {"predictions": topics.predictions, "labels": topics.labels,
                    "sketches": topics.sketches}  # fmt: skip
        found: list[RefetchedEvent] = []
        for source, low, high in gaps:
            topic = topic_of[source]
            missed = await asyncio.get_running_loop().run_in_executor(
                None, read_input_range, settings, topic, partition, low, high
            )
            if why == "tail":
                log.info("%s[%d]: offsets %d-%d of the batch a crash left unfinished read "
                         "ahead: %d", topic, partition, low, high - 1, len(missed))  # fmt: skip
            else:
                log.warning("%s[%d]: offsets %d-%d never reached the worker: %d read back",
                            topic, partition, low, high - 1, len(missed))  # fmt: skip
            metrics.input_read_back.labels(source=source).inc(len(missed))
            found += missed
        return found

    async def ingest_round(parts: Sequence[Part], parsed: dict[int, Parsed]) -> None:
        """Intents first (flushed), then the deltas, then the progress offsets."""
        folded: list[Folded] = []
        todo = [
            (partition, anchor, intent, *fresh_of(partition, events, anchor))
            for partition, events, intent, anchor in parts
        ]
        todo = [part for part in todo if part[3]]  # none fresh: all folded before
        # Partition N+1 is parsed and looked up on the helper thread while N is folded.
        jobs = [
            partial(prepare, partition, messages, parsed.get(partition))
            for partition, _, _, messages, _ in todo
        ]
        for (partition, anchor, intent, messages, last_offsets), prepared in zip(
            todo, prepare_ahead.in_order(jobs), strict=True
        ):
            result = fold_partition(partition, anchor, messages, last_offsets, prepared)
            folded.append(result if intent is None else result.as_batch(intent))
        # Dead letters are confirmed with the deltas: one refused (too large for its topic)
        # must not pass unnoticed while its input is recorded as done.
        sent = []
        for letter in dead_letters:
            source_name = source_of.get(letter.source_topic, "unknown")
            metrics.invalid_events.labels(source=source_name, error_class=letter.error_class).inc()
            value = to_json_bytes(letter)
            future = await deadletter.send(key=None, value=value)
            where = f"{letter.source_topic}[{letter.partition}] offset {letter.offset}"
            sent.append((f"the dead letter of {where}", len(value), future))
        dead_letters.clear()
        publishing = [result for result in folded if result.deltas]
        for result in publishing:
            as_current(result.first)
            progress[f"intent:{result.partition}"] = result.batch
        # The intents are durable before any delta is out; the deltas' JSON is built while
        # the broker takes them (row b waited a fifth of each round for this flush).
        flushing = asyncio.ensure_future(app.producer.flush()) if publishing else None
        pairs = [
            (delta, {**result.origin, "index": i})
            for result in publishing
            for i, delta in enumerate(result.deltas)
        ]
        if any(intent is not None for *_, intent, _anchor in parts):
            # A replay publishes its batches part by part, as the crashed round may have.
            by_start = sorted(pairs, key=lambda pair: pair[0].start)
            ordered = [(delta, [origin]) for delta, origin in by_start]
        else:
            cap = kit.delta_events_for(delta.model for delta, _origin in pairs)
            ordered = merge_round(pairs, max_events=cap, time_step_us=kit.time_step_us)
        try:
            encoded = await encode_deltas(ordered, flushing)
        finally:
            if flushing is not None:  # awaited also when an envelope failed: none left behind
                await flushing
        for model, value in encoded:
            future = await sketches.send(key=model.encode(), value=value)
            sent.append((f"a delta of model {model!r}", len(value), future))
            metrics.sketches_published.inc()
        await confirm_published(sent)  # before the input is recorded as done
        for result in folded:
            as_current(result.first)
            for key, offset in result.offsets.items():
                progress[key] = offset

    async def encode_deltas(
        ordered: Sequence[tuple[DeltaOut, list[dict[str, Any]]]],
        flushing: asyncio.Future[Any] | None,
    ) -> list[tuple[str, bytes]]:
        """(model, envelope bytes) of each delta, in order; yields to the event loop between
        deltas while ``flushing`` is not done, so the producer's tasks move it along."""
        encoded: list[tuple[str, bytes]] = []
        for delta, origins in ordered:
            envelope = {
                "format": SKETCH_FORMAT_VERSION,
                "type": "delta",
                "model": delta.model,
                **({"origin": origins[0]} if len(origins) == 1 else {"origins": origins}),
                "delta": delta.state,
            }
            encoded.append((delta.model, dumps_compact(envelope)))
            if flushing is not None and not flushing.done():
                await asyncio.sleep(0)
        return encoded

    pulse = IngestPulse()
    """What the ingest has in hand, for `streams.input_rewind`."""

    async def counted(batches: AsyncIterator[list[Event]]) -> AsyncIterator[list[Event]]:
        async for batch in batches:
            pulse.taken += 1
            yield batch

    install_input_rewind(
        app, metrics, pulse, source_of,
        lambda source, partition: int(progress.get(f"{source}:{partition}", -1)),
    )  # fmt: skip

    @app.agent(inputs, name="ingest")
    async def ingest(stream: Any) -> None:
        drain_buffer_on_flush(app)
        quicken_faust_delivery(app)
        pulse.queue = stream.channel.queue
        batches = counted(channel_batches(
            app, stream.channel.queue, max_events=take_max, within=take_within_seconds,
            ack_when_next=False, on_first=lambda: log.info("input flowing: first message taken"),
            max_bytes=BATCH_BYTES,
        ))  # fmt: skip
        # The next batch is parsed on the parse helper while this one is folded.
        async for batch, parsed in parsed_ahead(batches, parse_batch, parse_helper):
            started = time.monotonic()
            await ingest_batch(batch, parsed)
            ack_batch(batch)
            pulse.finished += 1
            now = time.time()
            metrics.batch_duration.labels(stage="ingest").observe(time.monotonic() - started)
            newest = max(event.message.timestamp for event in batch)
            metrics.processing_latency.labels(stage="ingest").observe(max(0.0, now - newest))

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]  # handlers take (sender, tps)
    async def watch_for_dropped_input(sender: Any, assigned: set[Any], **_: Any) -> None:
        ingest_watch.rearm()

    install_judge(
        live, kit, sketches=sketches, alerts=alerts, deadletter=deadletter, judge_table=judge_table,
        ledger_table=ledger_table, read_back=read_back, take_max=take_max,
        take_within_seconds=judge_within_seconds, judge_save_seconds=judge_save_seconds,
    )  # fmt: skip

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
            value = dumps_compact(envelope)
            future = await sketches.send(key=event.model.encode(), value=value)
            what = f"the reference of model {event.model!r} version {event.version}"
            await confirm_published([(what, len(value), future)])

    # Faust also assigns the tables' changelog partitions, read only during recovery and
    # paused after it: their "lag" is the worker's own writes since, not input waiting.
    consumed_topics = {topics.predictions, topics.labels, topics.sketches, topics.models}

    @app.timer(5.0)  # type: ignore[untyped-decorator]
    async def report_lag() -> None:
        consumer = app.consumer
        assigned = [tp for tp in consumer.assignment() if tp.topic in consumed_topics]
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
