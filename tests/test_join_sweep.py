"""The join's expiry as a sweep (`streams.join_sweep`): slices of a real store in key order,
and the same deletes and counts as one expiry of the whole partition."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from schemas.events import LabelEvent, PredictionEvent
from schemas.monitor_config import MonitorConfig
from streams.agents_monitor import MonitorKit
from streams.join_batch import changes_of, deletes_of, expiry_stubs, stubs_of
from streams.join_sweep import Sweeps
from streams.journal_table import JournalTable
from streams.metrics import WorkerMetrics

NOW = datetime(2024, 5, 1, tzinfo=UTC)


def _table(store: str, tmp_path: Path, name: str) -> JournalTable:
    import faust

    app = faust.App(f"sweep-{name}", store=store, datadir=str(tmp_path), autodiscover=False)
    table = JournalTable(
        app, name=name, key_type=bytes, value_type=bytes, partitions=1, retention_seconds=60.0
    )
    table.send_changelog = lambda *args, **kwargs: None  # type: ignore[method-assign,assignment]  # no broker
    return table


@pytest.fixture
def rocksdb_table(tmp_path: Path) -> JournalTable:
    return _table("rocksdb://", tmp_path, "join")


def test_slices_come_in_key_order_past_faust_offset_key(rocksdb_table: JournalTable) -> None:
    table = rocksdb_table
    keys = [f"e-{i:03d}".encode() for i in range(25)]
    table.write_many(0, {key: b"[1]" for key in reversed(keys)})
    store: Any = table.data
    store._db_for_partition(0).put(store.offset_key, b"42")  # what Faust writes beside
    first = table.items_after(0, None, 10)
    assert [key for key, _ in first] == keys[:10]
    table.write_many(0, {keys[3]: None, keys[10]: None, keys[11]: None})  # the expiry's deletes
    second = table.items_after(0, first[-1][0], 10)
    assert [key for key, _ in second] == keys[12:22]
    assert [key for key, _ in table.items_after(0, second[-1][0], 10)] == keys[22:]
    assert table.items_after(0, keys[-1], 10) == []


def test_the_memory_store_answers_its_partition_in_one_slice(tmp_path: Path) -> None:
    table = _table("memory://", tmp_path, "join")
    table.write_many(0, {b"b": b"[2]", b"a": b"[1]"})
    assert sorted(table.items_after(0, None, 1)) == [(b"a", b"[1]"), (b"b", b"[2]")]
    assert table.items_after(0, b"a", 1) == []


def test_a_sweep_deletes_and_counts_what_one_whole_expiry_does(tmp_path: Path) -> None:
    kit = MonitorKit(MonitorConfig.model_validate({"join": {"ttl_seconds": 60}}))
    pending_entries: dict[str, Any] = {}
    early_entries: dict[str, Any] = {}
    predictions = [
        PredictionEvent(event_id=f"e-{i:03d}", model="churn", timestamp=NOW + timedelta(seconds=i),
                        features={"x": 1.0}, prediction=0.5)
        for i in range(120)
    ]  # fmt: skip
    labels = [LabelEvent(event_id=f"e-{i:03d}", model="churn", timestamp=NOW, label=1)
              for i in range(0, 120, 4)]  # fmt: skip
    labels += [LabelEvent(event_id=f"x-{i}", model="churn", timestamp=NOW + timedelta(seconds=i),
                          label=0) for i in range(0, 100, 10)]  # fmt: skip
    kit.fold_partition(pending_entries, early_entries, predictions, labels, WorkerMetrics(),
                       partition=0)  # fmt: skip
    pending, early = _table("rocksdb://", tmp_path, "p"), _table("rocksdb://", tmp_path, "e")
    pending.write_many(0, changes_of({}, pending_entries))
    early.write_many(0, changes_of({}, early_entries))
    newest = NOW + timedelta(seconds=130)
    horizon = kit.expiry_horizon_us(newest)

    def expire(pending_before: Any, early_before: Any) -> tuple[Any, ...]:
        metrics = WorkerMetrics()
        pending_now, early_now = dict(pending_before), dict(early_before)
        kit.expire(pending_now, early_now, newest, metrics)
        counts = [metrics.join_outcomes.labels(outcome)._value.get()
                  for outcome in ("orphan", "expired")]  # fmt: skip
        return deletes_of(pending_before, pending_now), deletes_of(early_before, early_now), counts

    whole = expire(expiry_stubs(pending, 0, horizon), expiry_stubs(early, 0, horizon))
    assert whole[2] == [7.0, 52.0]  # both outcomes exercised
    sweeps = Sweeps([pending, early], slice_entries=16)
    sweeps.start(0)
    deleted: list[dict[bytes, None]] = [{}, {}]
    counts = [0.0, 0.0]
    slices = 0
    while sweeps.in_progress(0):
        pending_items, early_items = sweeps.next_slices(0)
        slices += 1
        part = expire(stubs_of(pending_items, horizon), stubs_of(early_items, horizon))
        pending.write_many(0, part[0])
        early.write_many(0, part[1])
        deleted[0].update(part[0])
        deleted[1].update(part[1])
        counts = [a + b for a, b in zip(counts, part[2], strict=True)]
    assert slices == 120 // 16 + 1
    assert (deleted[0], deleted[1], counts) == whole
    sweeps.start(0)  # nothing older is left: a new sweep finds nothing to expire
    while sweeps.in_progress(0):
        items = sweeps.next_slices(0)
        assert stubs_of(items[0], horizon) == stubs_of(items[1], horizon) == {}
