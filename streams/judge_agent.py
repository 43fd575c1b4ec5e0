"""The judge agent: one judge per model, fed by the sketches topic (keyed by model), merges
the window deltas of every ingest partition, decides, and publishes alerts.

Each alert goes out once per episode: the alert ledger (a table keyed by fingerprint) says what
was published last, also across restarts and rebalances. Judge states are saved to the judge
table every few seconds (`streams.judge_book`); a judge whose stored state is behind after a
crash reads the missing sketches messages back (`streams.sketch_catchup`). Per-model gauges
follow the judge: a rebalance that takes a model's sketches partition away drops its series,
and the new owner exports the alerts its ledger says are firing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from schemas.events import Alert, InvalidEvent, deadletter_for, to_json_bytes
from streams import json_read
from streams.agent_events import as_current, by_partition, dumps_compact
from streams.agents_monitor import MonitorKit
from streams.agents_state import AlertLedger, JsonTableView, decoded_entries
from streams.channel_batches import BATCH_BYTES, channel_batches
from streams.ingest_rounds import offset_gaps, with_read_back
from streams.input_refetch import GapWatch, RefetchedEvent
from streams.input_rewind import IngestPulse, install_input_rewind
from streams.judge_book import Envelopes, JudgeBook, saved_gauges, sketch_problem
from streams.publish_check import confirm_published

if TYPE_CHECKING:
    from faust.types import EventT

    Event = EventT[Any]

    from streams.app import LiveApp

__all__ = ["JUDGE_SAVE_SECONDS", "ReadBack", "install_judge"]

JUDGE_SAVE_SECONDS = 2.0
"""How long a judge's stored state may lag its live one (the gap is read back after a crash)."""
log = logging.getLogger("driftline.agents")

ReadBack = Callable[[int, list[tuple[str, int, int]]], Awaitable[list[RefetchedEvent]]]
"""Reads ``(source, low, high)`` offset ranges of a partition back from Kafka."""


def install_judge(
    live: LiveApp,
    kit: MonitorKit,
    *,
    sketches: Any,
    alerts: Any,
    deadletter: Any,
    judge_table: Any,
    ledger_table: Any,
    read_back: ReadBack,
    take_max: int,
    take_within_seconds: float,
    judge_save_seconds: float | None = None,
) -> None:
    """Declare the judge agent, its rebalance handlers and its save timer on ``live.app``."""
    from streams.app import drain_buffer_on_flush

    app, settings, metrics = live.app, live.settings, live.metrics
    topics = settings.topics
    judges = JsonTableView(judge_table)
    ledger = AlertLedger(JsonTableView(ledger_table))
    judge_watch = GapWatch()
    """When the judge looks for sketches offsets Faust dropped (after a rebalance)."""
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
        judge_watch.rearm()
        book.forget_partitions(revoked_sketches - kept)
        revoked_sketches.clear()

    @app.on_rebalance_complete.connect  # type: ignore[arg-type]  # handlers take (sender)
    async def export_alerts_moved_in(sender: Any, **_: Any) -> None:
        """Show the firing alerts and saved gauges of the models whose judge moved here
        (tables recovered): their judges load at the model's next delta, which an idle model
        may not send."""
        from streams.journal_table import partition_items

        for partition in sorted(assigned_sketches):
            raws = [raw for _, raw in partition_items(ledger_table, partition)]
            firing = AlertLedger.firing_by_model(decoded_entries(raws))
            book.show_moved_in(
                partition, firing, saved_gauges(partition_items(judge_table, partition))
            )

    async def judge_partition(events: list[Event]) -> None:
        as_current(events[0])
        partition = events[0].message.partition
        by_model: dict[str, Envelopes] = defaultdict(list)
        for event in await with_sketches_read_back(partition, events):
            try:
                envelope = json_read.loads_own(event.message.value or b"")
            except ValueError as exc:
                await reject_sketch(event, InvalidEvent("json", f"not JSON: {exc}"))
                continue
            problem = sketch_problem(envelope)
            if problem is not None:
                await reject_sketch(event, InvalidEvent("validation", problem))
                continue
            by_model[envelope["model"]].append((event.message.offset, envelope))
        for model, envelopes in by_model.items():
            if not book.is_live(model):
                envelopes = await with_missed_envelopes(model, partition, envelopes)
            emitted = book.apply(model, partition, envelopes)
            for alert in emitted:
                await publish_alert(alert)
            if emitted:  # most batches change no alert: no gauge to touch
                changed = [(alert.kind, alert.feature, alert.detector) for alert in emitted]
                metrics.show_alert_states(model, changed, book.firing_identities(model))

    async def reject_sketch(event: Event | RefetchedEvent, error: InvalidEvent) -> None:
        """A sketches message the judge cannot apply goes to the dead-letter topic."""
        message = event.message
        log.warning("malformed sketches message at partition %s offset %s: %s",
                    message.partition, message.offset, error)  # fmt: skip
        letter = deadletter_for(
            message.value, topics.sketches, message.partition, message.offset, error,
            datetime.now(UTC),
        )  # fmt: skip
        metrics.invalid_events.labels(source="sketches", error_class=error.error_class).inc()
        value = to_json_bytes(letter)
        future = await deadletter.send(key=None, value=value)
        where = f"{topics.sketches}[{message.partition}] offset {message.offset}"
        await confirm_published([(f"the dead letter of {where}", len(value), future)])

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

        put_in_partition(judge_table, partition, key.encode(), dumps_compact(value))

    async def publish_alert(alert: Alert) -> None:
        if not ledger.should_emit(alert.fingerprint, alert.status):
            metrics.alerts_suppressed.inc()
            return
        value = to_json_bytes(alert)
        future = await alerts.send(key=alert.fingerprint.encode(), value=value)
        what = f"the {alert.status} alert {alert.fingerprint} of model {alert.model!r}"
        await confirm_published([(what, len(value), future)])  # recorded only once it is out
        identity = (alert.model, alert.kind, alert.feature, alert.detector)
        ledger.record(alert.fingerprint, alert.status, alert.alert_id, identity)
        metrics.alerts_emitted.labels(status=alert.status, severity=alert.severity).inc()

    pulse = IngestPulse()
    """What the judge has in hand, for `streams.input_rewind`."""
    install_input_rewind(
        app, metrics, pulse, {topics.sketches: "sketches"},
        lambda _source, partition: sketches_seen.get(partition, -1), agent="judge",
    )  # fmt: skip

    @app.agent(sketches, name="judge")
    async def judge(stream: Any) -> None:
        drain_buffer_on_flush(app)
        pulse.queue = stream.channel.queue
        batches = channel_batches(
            app, stream.channel.queue, max_events=take_max, within=take_within_seconds,
            max_bytes=BATCH_BYTES,
        )  # fmt: skip
        async for batch in batches:
            pulse.taken += 1
            started = time.monotonic()
            for _partition, events in sorted(by_partition(batch).items()):
                await judge_partition(events)
            pulse.finished += 1
            metrics.batch_duration.labels(stage="judge").observe(time.monotonic() - started)
            newest = max(event.message.timestamp for event in batch)
            metrics.processing_latency.labels(stage="judge").observe(max(0.0, time.time() - newest))
