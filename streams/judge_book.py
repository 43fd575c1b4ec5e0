"""The judges one worker runs: loaded from the judge table, fed sketches envelopes, stored now
and then, and the per-model gauges that follow them. The judge agent (`streams.judge_agent`)
reads Kafka and publishes alerts; this keeps the state between its batches.

A judge's state is hundreds of KB: it is saved every ``save_seconds``, at once for a new model,
an alert or a reference switch. In between, a small mark under `unsaved_key` says from which
sketches offset the stored state is behind, so whoever loads it next reads those messages back
(`streams.sketch_catchup`). Only the owner of a model's sketches partition writes its state,
so the live judges kept in memory stay right until a rebalance.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, MutableMapping
from functools import partial
from typing import TYPE_CHECKING, Any

from schemas.events import Alert
from streams.agents_state import decoded_entries
from streams.judge_record import JudgeRecord, origins_of
from streams.warmup_order import release_parked, route_delta

if TYPE_CHECKING:
    from streams.agents_monitor import MonitorKit
    from streams.metrics import AlertIdentity, WorkerMetrics

__all__ = [
    "Envelopes",
    "JudgeBook",
    "gauges_key",
    "reference_key",
    "saved_gauges",
    "sketch_problem",
    "unsaved_key",
]

Envelopes = list[tuple[int, dict[str, Any]]]
"""A model's sketches messages of one batch: (offset, decoded envelope), in offset order."""
Write = Callable[[str, Any], None]
"""``write(key, JSON value)`` into the judge table (None deletes)."""


def sketch_problem(envelope: object) -> str | None:
    """Why a decoded sketches message cannot be applied, or None when it can.

    Only workers write the topic, but a worker of another version or a stray producer can. A
    message without the fields `JudgeBook.apply` reads would raise in the judge agent: the
    worker would exit (`streams.agent_crash`) and meet the same message at every restart.
    """
    if not isinstance(envelope, dict):
        return "a sketches message must be a JSON object"
    if not isinstance(envelope.get("model"), str) or not envelope["model"]:
        return "a sketches message needs a model name"
    kind = envelope.get("type", "delta")
    if kind == "reference":
        return None if isinstance(envelope.get("reference"), dict) else "reference is missing"
    if kind != "delta":
        return f"unknown sketches message type {str(kind)[:40]!r}"
    return None if isinstance(envelope.get("delta"), dict) else "delta is missing"


def reference_key(model: str) -> str:
    """The judge table key of a model's reference (beside the model's own key)."""
    return f"{model}\x00reference"


def gauges_key(model: str) -> str:
    """The judge table key of what a model's judge last exported (events judged, the
    statistics and thresholds), saved with the judge for its next owner to show at once."""
    return f"{model}\x00gauges"


_GAUGES_SUFFIX = gauges_key("").encode()


def saved_gauges(items: Iterable[tuple[bytes, bytes | None]]) -> dict[str, dict[str, Any]]:
    """Model -> its saved gauges, from the raw items of a judge table partition (values that
    do not decode are skipped: a rebalance handler reads them).

    >>> saved_gauges([(b"m\\x00gauges", b'{"events":5,"statistics":[]}'), (b"m", b"{}"),
    ...               (b"n\\x00gauges", b"oops")])
    {'m': {'events': 5, 'statistics': []}}
    """
    found: dict[str, dict[str, Any]] = {}
    for key, raw in items:
        if not key.endswith(_GAUGES_SUFFIX):
            continue
        for value in decoded_entries([raw]):
            if isinstance(value, dict):
                found[key[: -len(_GAUGES_SUFFIX)].decode("utf-8", "replace")] = value
    return found


def unsaved_key(model: str) -> str:
    """The judge table key of the offset from which the stored state of a model is behind."""
    return f"{model}\x00unsaved"


class JudgeBook:
    """The live judges of one worker and what it exports of them."""

    def __init__(
        self,
        kit: MonitorKit,
        metrics: WorkerMetrics,
        judges: MutableMapping[str, Any],
        *,
        save_seconds: float,
    ) -> None:
        self.kit = kit
        self.metrics = metrics
        self.judges = judges
        """The judge table as JSON values, written through the current event's partition."""
        self.save_seconds = save_seconds
        self.live: dict[str, tuple[Any, JudgeRecord]] = {}
        """Model -> its judge and record as this worker last stored them; they spare every
        batch decoding and rebuilding the whole judge."""
        self.judged_at: dict[str, int] = {}
        """Model -> sketches partition it came from, for the models whose gauges this worker
        exports (judged here since it started or took them over)."""
        self.exported_windows: dict[str, int] = {}
        """Model -> the judge's window count when its CUSUM gauges were last set."""
        self.unsaved: dict[str, float] = {}
        """Model -> monotonic time of its first batch not in the stored state."""

    # -- loading and applying ------------------------------------------------------------------

    def is_live(self, model: str) -> bool:
        return model in self.live

    def unsaved_mark(self, model: str) -> int | None:
        """The sketches offset from which ``model``'s stored state is behind (None: it is not)."""
        mark = self.judges.get(unsaved_key(model))
        return None if mark is None else int(mark)

    def apply(self, model: str, partition: int, envelopes: Envelopes) -> list[Alert]:
        """Apply one model's sketches messages; store its judge now and then; the alerts.

        If this raises, the model's live judge is dropped (half-applied): the table has the
        last good state.
        """
        try:
            return self._apply(model, partition, envelopes)
        except BaseException:
            self.live.pop(model, None)
            raise

    def firing_identities(self, model: str) -> list[AlertIdentity]:
        """(kind, feature, detector) of ``model``'s firing alerts (its judge is live)."""
        judge, _ = self.live[model]
        identities: list[AlertIdentity] = judge.firing_identities()
        return identities

    def _apply(self, model: str, partition: int, envelopes: Envelopes) -> list[Alert]:
        kit, metrics = self.kit, self.metrics
        stored = model in self.live
        if stored:
            judge, record = self.live[model]
        else:
            record = JudgeRecord.load(self.judges.get(model))
            stored = record.judge is not None
            if record.judge is not None and record.judge.get("reference") is None:
                record.judge["reference"] = self.judges.get(reference_key(model))
            judge = self._load(model, partition, record)
        emitted: list[Alert] = []
        first_applied: int | None = None
        switched = False
        for offset, envelope in envelopes:
            if record.seen(offset):
                metrics.duplicate_deltas.labels(reason="redelivered").inc()
                continue  # applied before the worker restarted (offset not committed)
            record.sketches_offset = offset
            first_applied = offset if first_applied is None else first_applied
            if envelope.get("type") == "reference":
                emitted.extend(kit.switch_reference(judge, envelope["reference"]))
                metrics.reference_switches.inc()
                switched = True
            elif record.accept_all(origins := origins_of(envelope)):
                reference = judge.settings.reference
                for state in route_delta(
                    record, envelope["delta"], origins,
                    warming_up=judge.reference is None and reference.source == "warmup",
                    warmup_events=reference.warmup_events,
                ):  # fmt: skip
                    emitted.extend(kit.apply_delta(judge, state))
                    record.events += int(state.get("count", 0))
            else:
                metrics.duplicate_deltas.labels(reason="replayed_batch").inc()
        if record.parked and judge.reference is not None:
            # The warm-up just ended: apply what it parked now, not when (if) traffic resumes.
            for state in release_parked(record):
                emitted.extend(kit.apply_delta(judge, state))
                record.events += int(state.get("count", 0))
        self.live[model] = (judge, record)
        metrics.judged_events.labels(model=model).set(record.events)
        if judge.windows != self.exported_windows.get(model):
            # The CUSUMs page between windows, outside the window readings: their gauges
            # follow once per judged window.
            self.exported_windows[model] = judge.windows
            for feature, detector, value, threshold in kit.sequential_statistics(judge):
                metrics.set_statistic(model, "feature_drift", feature, detector, value, threshold)
        if first_applied is None:
            return emitted  # nothing new
        now = time.monotonic()
        if (
            not stored
            or emitted
            or switched
            or now - self.unsaved.get(model, now) >= (self.save_seconds)
        ):
            self.save(model, judge, record, self.judges.__setitem__)
        elif model not in self.unsaved:
            self.unsaved[model] = now
            self.judges[unsaved_key(model)] = first_applied
        return emitted

    def _load(self, model: str, partition: int, record: JudgeRecord) -> Any:
        judge = self.kit.load_judge(model, record.judge, self.metrics)
        # Alerts only set the gauge when they change state: re-export those still firing.
        self._adopt(model, partition, judge.firing_identities())
        return judge

    def _adopt(self, model: str, partition: int, firing: Iterable[AlertIdentity]) -> None:
        """This worker exports ``model``'s gauges from now on; the first time, show its
        ``firing`` alerts (nothing else would until one changes state)."""
        if model not in self.judged_at:
            for kind, feature, detector in sorted(firing, key=str):
                self.metrics.set_alert_state(model, kind, feature, detector, True)
        self.judged_at[model] = partition

    # -- storing -------------------------------------------------------------------------------

    def save(self, model: str, judge: Any, record: JudgeRecord, write: Write) -> None:
        """Store the judge through ``write``."""
        state = self.kit.judge_state(judge)
        # The reference (a sample per feature) changes only when the model's does: it is
        # stored under its own key, so a save writes only what changed.
        reference = state.pop("reference", None)
        if reference is not None and reference.get("profile_id") != record.reference_id:
            write(reference_key(model), reference)
            record.reference_id = reference.get("profile_id")
        record.judge = state
        write(model, record.dump())
        statistics = self.metrics.statistics_of(model)
        write(gauges_key(model), {"events": record.events, "statistics": statistics})
        if self.unsaved.pop(model, None) is not None:
            write(unsaved_key(model), None)
        self.metrics.judge_saves.inc()

    def save_idle(self, write_in: Callable[[int, str, Any], None]) -> None:
        """Save the judges of models that went quiet with unsaved batches, through
        ``write_in(partition, key, value)`` (there is no current event)."""
        now = time.monotonic()
        for model, since in list(self.unsaved.items()):
            if now - since < self.save_seconds or model not in self.live:
                continue
            judge, record = self.live[model]
            self.save(model, judge, record, partial(write_in, self.judged_at[model]))

    # -- rebalances ----------------------------------------------------------------------------

    def on_revoked(self) -> None:
        """Partitions are being revoked: live judges may be written by their next owner."""
        self.live.clear()
        self.unsaved.clear()  # their marks stay in the table: whoever loads them catches up

    def forget_partitions(self, lost: set[int]) -> None:
        """Drop the gauges of the models whose sketches partition moved to another worker."""
        for model, partition in list(self.judged_at.items()):
            if partition in lost:
                del self.judged_at[model]
                self.exported_windows.pop(model, None)
                self.metrics.forget_model(model)

    def show_moved_in(
        self,
        partition: int,
        firing: dict[str, set[AlertIdentity]],
        gauges: dict[str, dict[str, Any]],
    ) -> None:
        """Export the firing alerts (from the alert ledger) and the saved gauges (`gauges_key`:
        events judged, statistics, thresholds) of the models of ``partition`` whose judges are
        not loaded here yet: an idle model may send no delta for hours. The saved gauges are
        the judge's at its last save; its next delta brings them up to date."""
        for model in sorted(firing.keys() | gauges.keys()):
            if model not in self.judged_at:
                self._show_saved(model, gauges.get(model))
            self._adopt(model, partition, firing.get(model, set()))

    def _show_saved(self, model: str, saved: dict[str, Any] | None) -> None:
        if saved is None:
            return
        try:
            events = int(saved["events"])
            statistics = [
                (str(kind), None if feature is None else str(feature), str(detector),
                 float(value), float(threshold))
                for kind, feature, detector, value, threshold in saved["statistics"]
            ]  # fmt: skip
        except (KeyError, TypeError, ValueError):
            return  # not what `save` writes: the judge's next delta exports them
        self.metrics.judged_events.labels(model=model).set(events)
        for kind, feature, detector, value, threshold in statistics:
            self.metrics.set_statistic(model, kind, feature, detector, value, threshold)
