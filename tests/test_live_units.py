"""Live pipeline pieces that need no broker: boundary, tables as mappings, ledger, factory, CLI."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

import pytest
import typer
from typer.testing import CliRunner

from schemas.events import PredictionEvent, to_json_bytes
from schemas.settings import Settings
from streams.agents_monitor import DeltaOut, MonitorKit
from streams.agents_state import AlertLedger, JsonTableView
from streams.metrics import WorkerMetrics
from streams.replay import parse_speed
from streams.rocksdb_memory import IndexPlacement, SharedRocksDBMemory
from streams.validation import RawMessage, split_messages

NOW = datetime(2024, 5, 1, tzinfo=UTC)


def _event(event_id: str = "e-1") -> PredictionEvent:
    return PredictionEvent(
        event_id=event_id, model="churn", timestamp=NOW, features={"x": 1.0}, prediction=0.5
    )


def test_split_messages_keeps_valid_events_and_dead_letters_the_rest() -> None:
    valid = to_json_bytes(_event())
    messages = [
        RawMessage("predictions", valid, "p", 0, 1),
        RawMessage("predictions", b"{", "p", 0, 2),
        RawMessage("predictions", valid.replace(b'"x":1.0', b'"x":NaN'), "p", 1, 3),
        RawMessage("labels", b'{"event_id": "e-1"}', "l", 2, 4),
        RawMessage("predictions", None, "p", 0, 5),
    ]
    split = split_messages(messages, now=NOW)
    assert [e.event_id for e in split.predictions] == ["e-1"]
    assert split.labels == []
    assert [(d.error_class, d.offset) for d in split.dead_letters] == [
        ("json", 2),
        ("validation", 3),
        ("validation", 4),
        ("json", 5),
    ]
    assert base64.b64decode(split.dead_letters[0].payload_base64) == b"{"
    assert split.dead_letters[2].source_topic == "l"
    assert (split.prediction_messages, split.label_messages) == (4, 1)


def test_json_table_view_round_trips_and_deletes() -> None:
    raw: dict[bytes, bytes] = {}
    view = JsonTableView(raw)
    view["a"] = {"n": [1, 2]}
    view["b"] = 3
    del view["b"]
    assert dict(view) == {"a": {"n": [1, 2]}}
    assert view.get("missing", "d") == "d"
    with pytest.raises(KeyError):
        view["b"]


def test_alert_ledger_emits_each_state_change_once() -> None:
    ledger = AlertLedger(JsonTableView({}))
    assert not ledger.should_emit("f", "resolved")  # never fired: nothing to resolve
    assert ledger.should_emit("f", "firing")
    ledger.record("f", "firing", "a1")
    assert not ledger.should_emit("f", "firing")
    assert ledger.should_emit("f", "resolved")
    ledger.record("f", "resolved", "a2")
    assert ledger.should_emit("f", "firing")  # a new episode


@pytest.mark.parametrize("text", ["0", "-2", "fast", ""])
def test_parse_speed_rejects_nonsense(text: str) -> None:
    with pytest.raises(ValueError, match="speed must be"):
        parse_speed(text)


def test_statistic_series_are_capped() -> None:
    metrics = WorkerMetrics(max_statistic_series=2)
    assert metrics.set_statistic("m", "feature_drift", "a", "psi", 1.0, 2.0)
    assert metrics.set_statistic("m", "feature_drift", "b", "psi", 1.0, 2.0)
    assert not metrics.set_statistic("m", "feature_drift", "c", "psi", 1.0, 2.0)
    assert metrics.set_statistic("m", "feature_drift", "a", "psi", 3.0, 2.0)
    text = metrics.exposition().decode()
    assert 'feature="c"' not in text
    assert (
        'driftline_statistic_value{detector="psi",feature="a",kind="feature_drift",'
        'model="m"} 3.0' in text
    )


def test_forget_model_drops_its_series_and_frees_the_cap() -> None:
    metrics = WorkerMetrics(max_statistic_series=3)
    assert metrics.set_statistic("m", "feature_drift", "a", "psi", 1.0, 2.0)
    assert metrics.set_statistic("m", "performance", None, "error_rate", 0.3, 0.2)
    assert metrics.set_statistic("other", "feature_drift", "a", "psi", 0.5, 2.0)
    assert not metrics.set_statistic("third", "feature_drift", "z", "psi", 1.0, 2.0)  # capped
    metrics.set_alert_state("m", "feature_drift", "a", "psi", True)
    metrics.set_alert_state("m", "performance", None, "error_rate", False)
    metrics.set_alert_state("other", "feature_drift", "a", "psi", True)

    assert metrics.forget_model("m") == 4
    text = metrics.exposition().decode()
    assert 'model="m"' not in text
    for name in ("statistic_value", "statistic_threshold", "alert_firing"):
        assert (
            f'driftline_{name}{{detector="psi",feature="a",kind="feature_drift",model="other"}}'
            in text
        )
    assert metrics.forget_model("m") == 0  # nothing left, no error
    # The two series "m" held are free again; the third is still taken by "other".
    assert metrics.set_statistic("third", "feature_drift", "z", "psi", 1.0, 2.0)
    assert metrics.set_statistic("third", "feature_drift", "y", "psi", 1.0, 2.0)
    assert not metrics.set_statistic("third", "feature_drift", "x", "psi", 1.0, 2.0)
    # A model forgotten and judged again exports afresh.
    metrics.set_alert_state("m", "feature_drift", "a", "psi", True)
    assert (
        'driftline_alert_firing{detector="psi",feature="a",kind="feature_drift",model="m"} 1.0'
        in metrics.exposition().decode()
    )


def test_a_judges_next_owner_shows_its_saved_gauges_before_its_next_delta() -> None:
    """A worker that takes a model's judge over exports the events judged and the statistics
    saved with the judge at once (an idle model may send no delta for hours); a saved value
    that does not read back is skipped."""
    from streams.judge_book import JudgeBook, gauges_key, saved_gauges
    from streams.judge_record import JudgeRecord

    class _StateKit:
        def judge_state(self, judge: Any) -> dict[str, Any]:
            return {"windows": 3}

    raw: dict[bytes, bytes] = {}
    first = WorkerMetrics()
    first.set_statistic("m", "feature_drift", "x", "cusum", 7.5, 5.0)
    first.set_statistic("m", "performance", None, "error_rate", 0.3, 0.2)
    first.set_statistic("other", "feature_drift", "x", "psi", 0.1, 0.25)
    JudgeBook(_StateKit(), first, JsonTableView(raw), save_seconds=60.0).save(  # type: ignore[arg-type]
        "m", object(), JudgeRecord(events=1_234), JsonTableView(raw).__setitem__
    )
    raw[gauges_key("broken").encode()] = b'{"events": "many"}'

    second = WorkerMetrics(max_statistic_series=2)
    book = JudgeBook(_StateKit(), second, JsonTableView({}), save_seconds=60.0)  # type: ignore[arg-type]
    book.show_moved_in(0, {}, saved_gauges(raw.items()))
    text = second.exposition().decode()
    assert 'driftline_judged_events{model="m"} 1234.0' in text
    assert (
        'driftline_statistic_value{detector="cusum",feature="x",kind="feature_drift",model="m"} 7.5'
        in text
    )
    error_rate = 'detector="error_rate",feature="",kind="performance",model="m"'
    assert f"driftline_statistic_threshold{{{error_rate}}} 0.2" in text
    assert 'model="other"' not in text and 'model="broken"' not in text
    assert book.judged_at == {"m": 0, "broken": 0}
    # Its live judge's own exports replace them; a move away drops them again.
    second.set_statistic("m", "feature_drift", "x", "cusum", 1.0, 5.0)
    assert second.statistics_of("m")[0] == ("feature_drift", "x", "cusum", 1.0, 5.0)
    book.forget_partitions({0})
    assert 'model="m"' not in second.exposition().decode()


class _NoMonitor(MonitorKit):
    def __init__(self) -> None:
        from schemas.monitor_config import MonitorConfig

        super().__init__(MonitorConfig())

    def fold_partition(self, *args: Any, **kwargs: Any) -> list[DeltaOut]:
        return []


def test_factory_derives_group_and_changelogs_from_the_topic_prefix(tmp_path: Path) -> None:
    from streams.app import create_app

    settings = Settings(topics={"prefix": "unit.", "partitions": 4})
    live = create_app(settings, store="memory://", datadir=tmp_path, monitor_kit=_NoMonitor())
    app = live.app
    assert app.conf.id == "unit.worker"
    assert app.conf.topic_partitions == 4
    assert app.conf.web_enabled is False
    assert set(app.tables.keys()) == {
        "join-predictions",
        "join-labels",
        "ingest-progress",
        "judge-state",
        "alert-ledger",
    }
    join_log = app.tables["join-predictions"].changelog_topic
    assert join_log.get_topic_name() == "unit.worker-join-predictions-changelog"
    # Journals have unique keys: time retention (2 x the join TTL), not compaction.
    assert (join_log.compacting, join_log.deleting) == (False, True)
    assert join_log.retention == 2 * 7 * 24 * 3600
    assert app.tables["judge-state"].changelog_topic.compacting is True
    agent_topics = {
        name: set(agent.channel.topics)
        for name, agent in ((a.name.rsplit(".", 1)[-1], a) for a in app.agents.values())
    }
    assert agent_topics["ingest"] == {"unit.predictions", "unit.labels"}
    assert agent_topics["judge"] == {"unit.sketches"}
    assert agent_topics["models"] == {"unit.models"}


def test_changelog_plans_match_what_faust_declares(tmp_path: Path) -> None:
    from streams.app import create_app
    from streams.changelog_topics import changelog_plans

    settings = Settings(topics={"prefix": "unit.", "partitions": 4})
    live = create_app(settings, store="memory://", datadir=tmp_path, monitor_kit=_NoMonitor())
    plans = {plan.name: plan for plan in changelog_plans(live.app)}
    assert set(plans) == {f"unit.worker-{name}-changelog" for name in live.app.tables}
    assert {plan.partitions for plan in plans.values()} == {4}
    judge = plans["unit.worker-judge-state-changelog"].config
    assert judge == {"cleanup.policy": "compact", "max.message.bytes": str(32 << 20)}
    journal = plans["unit.worker-join-labels-changelog"].config
    assert journal["cleanup.policy"] == "delete"
    assert journal["retention.ms"] == str(2 * 7 * 24 * 3600 * 1000)


def test_an_agent_crash_logs_and_ends_the_worker(caplog: pytest.LogCaptureFixture) -> None:
    from streams.agent_crash import AGENT_CRASH_EXIT_CODE, exit_on_agent_crash

    codes: list[int] = []

    def record(code: int) -> NoReturn:
        codes.append(code)
        raise SystemExit(code)

    class Agent:
        name = "streams.judge_agent.judge"

    handler = exit_on_agent_crash(record)
    with caplog.at_level(logging.CRITICAL), pytest.raises(SystemExit):
        asyncio.run(handler(Agent(), RuntimeError("table write failed")))
    assert codes == [AGENT_CRASH_EXIT_CODE] == [70]
    assert "agent streams.judge_agent.judge crashed: RuntimeError('table write failed')" in (
        caplog.text
    )


def test_reference_resolution_reads_file_uris(tmp_path: Path) -> None:
    profile = tmp_path / "profile.json"
    profile.write_text('{"model": "churn"}')
    assert MonitorKit.resolve_reference(profile.as_uri()) == {"model": "churn"}
    assert MonitorKit.resolve_reference({"inline": True}) == {"inline": True}
    with pytest.raises(ValueError, match="scheme"):
        MonitorKit.resolve_reference("s3://bucket/profile.json")


def test_live_commands_have_help() -> None:
    from streams.cli_live import alerts_tail_command, replay_command, worker_command

    cli = typer.Typer()
    cli.command("worker")(worker_command)
    cli.command("replay")(replay_command)
    cli.command("tail")(alerts_tail_command)
    runner = CliRunner()
    for command, flag in (("worker", "--datadir"), ("replay", "--speed"), ("tail", "--json")):
        result = runner.invoke(cli, [command, "--help"])
        assert result.exit_code == 0, result.output
        assert flag in result.output
    bad = runner.invoke(cli, ["replay", "--predictions", "nope.jsonl", "--speed", "0"])
    assert bad.exit_code == 2
    for option, value in (
        ("--event-loop", "gevent"),
        ("--batch-seconds", "0"),
        ("--fetch-wait-seconds", "0"),
        ("--judge-save-seconds", "0"),
        ("--judge-batch-seconds", "-0.01"),
    ):
        bad = runner.invoke(cli, ["worker", option, value])
        assert bad.exit_code == 2, bad.output
        assert option in bad.output


def test_worker_command_defaults_to_the_apps_batch_and_fetch_waits() -> None:
    import inspect

    from streams.app import BATCH_SECONDS, FETCH_WAIT_SECONDS, JUDGE_BATCH_SECONDS
    from streams.cli_live import worker_command

    parameters = inspect.signature(worker_command).parameters
    assert parameters["batch_seconds"].default == BATCH_SECONDS
    assert parameters["judge_batch_seconds"].default == JUDGE_BATCH_SECONDS
    assert parameters["fetch_wait_seconds"].default == FETCH_WAIT_SECONDS


def test_run_worker_names_a_wrong_event_loop_or_batch_wait() -> None:
    from schemas.settings import Settings
    from streams.worker import run_worker

    with pytest.raises(ValueError, match="event_loop must be one of uvloop, asyncio"):
        run_worker(Settings(), event_loop="gevent", create_topics=False)
    with pytest.raises(ValueError, match="batch_seconds must be positive"):
        run_worker(Settings(), batch_seconds=0.0, create_topics=False)
    with pytest.raises(ValueError, match="fetch_wait_seconds must be positive"):
        run_worker(Settings(), fetch_wait_seconds=-1.0, create_topics=False)
    with pytest.raises(ValueError, match=r"judge_save_seconds must be positive, e\.g\. 2\.0"):
        run_worker(Settings(), judge_save_seconds=0.0, create_topics=False)
    with pytest.raises(ValueError, match=r"^judge_batch_seconds must be positive"):
        run_worker(Settings(), judge_batch_seconds=0.0, create_topics=False)


def test_live_join_expiry_counts_orphans_and_unlabelled_predictions() -> None:
    from datetime import timedelta

    from schemas.events import LabelEvent
    from schemas.monitor_config import MonitorConfig

    kit = MonitorKit(MonitorConfig.model_validate({"join": {"ttl_seconds": 60}}))
    metrics = WorkerMetrics()
    pending: dict[str, Any] = {}
    early: dict[str, Any] = {}

    def prediction(event_id: str, at: datetime) -> PredictionEvent:
        return PredictionEvent(
            event_id=event_id, model="churn", timestamp=at, features={"x": 1.0}, prediction=0.5
        )

    old = [prediction(f"e-{i}", NOW) for i in range(20)]
    joined = LabelEvent(event_id="e-0", model="churn", timestamp=NOW, label=1)
    orphan = LabelEvent(event_id="never-predicted", model="churn", timestamp=NOW, label=1)
    kit.fold_partition(pending, early, old, [joined, orphan], metrics, partition=0)
    assert len(pending) == 20 and "never-predicted" in early  # within the TTL: all kept
    fresh = prediction("e-new", NOW + timedelta(seconds=61))
    kit.fold_partition(pending, early, [fresh], [], metrics, partition=0)
    assert set(pending) == {"e-new"} and not early
    samples = metrics.exposition().decode()
    assert 'driftline_label_join_total{outcome="orphan"} 1.0' in samples
    assert 'driftline_label_join_total{outcome="expired"} 19.0' in samples  # e-0 was joined


def test_join_expiry_on_stubs_deletes_and_counts_what_it_does_on_whole_entries() -> None:
    from datetime import timedelta

    from schemas.events import LabelEvent
    from schemas.monitor_config import MonitorConfig
    from streams import json_read, json_write
    from streams.join_batch import changes_of, deletes_of, expiry_stubs

    kit = MonitorKit(MonitorConfig.model_validate({"join": {"ttl_seconds": 60}}))
    pending: dict[str, Any] = {}
    early: dict[str, Any] = {}
    predictions = [
        PredictionEvent(event_id=f"e-{i}", model="churn", timestamp=NOW + timedelta(seconds=i),
                        features={"x": 1.0}, prediction=0.5, segment={"plan": "pro"})
        for i in range(100)
    ]  # fmt: skip
    labels = [
        LabelEvent(event_id=f"e-{i}", model="churn", timestamp=NOW, label=1)
        for i in range(0, 100, 3)
    ] + [LabelEvent(event_id=f"x-{i}", model="churn", timestamp=NOW, label=0) for i in range(5)]
    kit.fold_partition(pending, early, predictions, labels, WorkerMetrics(), partition=0)

    class Store:
        def __init__(self, entries: dict[str, Any]) -> None:
            self.raw = [(key.encode(), json_write.dumps(value)) for key, value in entries.items()]

        def read_many(self, partition: int, keys: list[bytes]) -> dict[bytes, bytes]:
            raise AssertionError("an expiry scans, it does not look up")

        def items_in(self, partition: int) -> list[tuple[bytes, bytes]]:
            return self.raw

    def expire(
        read: Any, write: Any
    ) -> tuple[dict[bytes, bytes | None], dict[bytes, bytes | None], dict[str, float]]:
        metrics = WorkerMetrics()
        stores = Store(pending), Store(early)
        before = [read(store) for store in stores]
        after = [dict(entries) for entries in before]
        kit.expire(after[0], after[1], NOW + timedelta(seconds=110), metrics)
        counts = {outcome: metrics.join_outcomes.labels(outcome)._value.get()
                  for outcome in ("orphan", "expired")}  # fmt: skip
        return write(before[0], after[0]), write(before[1], after[1]), counts

    def whole(store: Store) -> dict[str, Any]:
        return {key.decode(): json_read.loads(raw) for key, raw in store.items_in(0)}

    by_stubs = expire(lambda store: expiry_stubs(store, 0), deletes_of)
    assert by_stubs == expire(whole, changes_of)  # what the worker did before the stubs
    horizon = kit.expiry_horizon_us(NOW + timedelta(seconds=110))
    only_old = expiry_stubs(Store(pending), 0, older_than=horizon)
    assert len(only_old) == 50 < len(pending)  # the scan keeps what expires, nothing else
    assert expire(lambda store: expiry_stubs(store, 0, older_than=horizon), deletes_of) == by_stubs
    pending_writes, early_writes, counts = by_stubs
    assert set(pending_writes.values()) == {None} and len(pending_writes) == 50  # 0..49 are old
    assert len(early_writes) == 5 and counts == {"orphan": 5.0, "expired": 33.0}


@pytest.mark.parametrize("store", ["memory://", "rocksdb://"])
def test_journal_table_scans_one_partition_whatever_partitioner_placed_its_keys(
    store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A producer with librdkafka's default partitioner (CRC32) puts ``e-1`` elsewhere than
    murmur2 would: the expiry of the partition it landed on must still see it."""
    import faust

    from streams.journal_table import JournalTable, decode_journal
    from streams.partitioning import partition_for

    app = faust.App("journal-scan", store=store, datadir=str(tmp_path), autodiscover=False)
    table = JournalTable(
        app, name="join", key_type=bytes, value_type=bytes, partitions=2, retention_seconds=60.0
    )
    sent: list[tuple[int, bytes]] = []

    def send_changelog(partition: int, key: Any, value: bytes, **_: Any) -> None:
        sent.append((partition, value))  # no broker here: the journals are read back

    monkeypatch.setattr(table, "send_changelog", send_changelog)
    keys = [f"e-{i}".encode() for i in range(12)]
    assert table.holds_any(0) is (store == "memory://")  # RocksDB knows it holds nothing
    on_0 = {key: b"[1]" for key in keys[:6]}
    on_1 = {key: b"[2]" for key in keys[6:]}
    assert {partition_for(key, 2) for key in on_0} == {0, 1}  # some "belong" to the other one
    table.write_many(0, dict(on_0))
    table.write_many(1, dict(on_1))
    assert dict(table.items_in(0)) == on_0
    assert dict(table.items_in(1)) == on_1
    table.write_many(0, {keys[0]: None})
    assert dict(table.items_in(0)) == {key: b"[1]" for key in keys[1:6]}
    assert table.holds_any(0) and table.holds_any(1)
    table.write_many(1, dict.fromkeys(on_1))  # every key deleted: empty again
    assert table.holds_any(1) is (store == "memory://")
    assert table.flush_journals() == 2  # both partitions' writes reach their own changelog
    journals = {partition: decode_journal(raw) for partition, raw in sent}
    assert journals == {0: {**on_0, keys[0]: None}, 1: {**on_1, **dict.fromkeys(on_1)}}


def test_producer_flush_drains_the_whole_send_soon_buffer() -> None:
    """Faust's buffer flush gives up after one slow message; commits must not pass writes."""
    import asyncio
    from types import SimpleNamespace

    from streams.app import drain_buffer_on_flush

    class SlowBuffer:
        def __init__(self) -> None:
            self.size = 5
            self.calls = 0

        async def flush(self) -> None:  # Faust's: returns after one message timed out
            self.calls += 1
            self.size -= 1

    buffer = SlowBuffer()
    app = SimpleNamespace(producer=SimpleNamespace(buffer=buffer))
    drain_buffer_on_flush(app)  # type: ignore[arg-type]
    drain_buffer_on_flush(app)  # type: ignore[arg-type]  # idempotent: wrapped once
    asyncio.run(buffer.flush())
    assert (buffer.size, buffer.calls) == (0, 5)


def test_a_stalled_demo_says_where_the_workers_pipeline_stands() -> None:
    """The demo's "no promotion" problem names the worker's counters, read over real HTTP."""
    import re
    from types import SimpleNamespace

    from streams.demo import _worker_progress
    from streams.metrics import serve_metrics

    metrics = WorkerMetrics()
    metrics.events_in.labels(source="predictions").inc(6000)
    metrics.events_in.labels(source="labels").inc(1900)
    metrics.join_outcomes.labels(outcome="hit").inc(1800)
    metrics.judged_events.labels(model="fraud-scorer").set(5750)
    identity = {
        "model": "fraud-scorer",
        "kind": "performance",
        "feature": "",
        "detector": "error_rate",
    }
    metrics.statistic_value.labels(**identity).set(0.21)
    metrics.statistic_threshold.labels(**identity).set(0.274)
    server = serve_metrics(metrics, "127.0.0.1", 0)
    try:
        url = f"http://127.0.0.1:{server.port}/metrics"
        worker = SimpleNamespace(banner=re.match(r"(.*)", url))
        text = _worker_progress(worker)  # type: ignore[arg-type]
    finally:
        server.close()
    assert "read 6,000 predictions and 1,900 labels, joined 1,800" in text, text
    assert "judge applied 5,750 events and published 0 alert changes" in text, text
    assert text.endswith("; performance: error_rate 0.21 (threshold 0.274)"), text
    dead = SimpleNamespace(banner=re.match(r"(.*)", url))  # the server is gone now
    assert "did not answer" in _worker_progress(dead)  # type: ignore[arg-type]


def test_the_freezer_frees_garbage_first_and_freezes_again_after_new_imports() -> None:
    import gc
    import sys
    import types
    import weakref

    from streams.gc_freeze import ModuleFreezer

    class Node:
        def __init__(self) -> None:
            self.me = self  # a cycle: only the collector frees it

    garbage = Node()
    gone = weakref.ref(garbage)
    del garbage
    freezer = ModuleFreezer()
    try:
        assert freezer.maybe_freeze()
        assert gone() is None  # collected, not frozen for the life of the process
        first = gc.get_freeze_count()
        assert first > 1000  # the interpreter's own objects at least
        assert not freezer.maybe_freeze()  # nothing imported since
        sys.modules["driftline_test_fresh_module"] = types.ModuleType("fresh")
        kept = [object() for _ in range(10)], {"a": [1]}
        assert freezer.maybe_freeze()
        assert gc.get_freeze_count() > first
        assert kept
    finally:
        sys.modules.pop("driftline_test_fresh_module", None)
        gc.unfreeze()


def test_the_judge_reports_how_late_each_window_verdict_is() -> None:
    from detectors.accumulate import PartitionAccumulator
    from detectors.window import WindowDelta
    from schemas.events import PredictionEvent
    from schemas.monitor_config import MonitorConfig
    from streams.agents_monitor import MonitorKit
    from streams.metrics import WorkerMetrics
    from streams.synthetic import generate_stream

    raw, _ = generate_stream(3, 6000, "m", features=4, label_fraction=0.0)
    predictions = [PredictionEvent.model_validate(item) for item in raw]
    verdict_time = predictions[-1].timestamp + timedelta(seconds=2)
    kit = MonitorKit(MonitorConfig(), clock=lambda: verdict_time)
    metrics = WorkerMetrics()
    judge = kit.load_judge("m", None, metrics)
    accumulator = PartitionAccumulator(kit.config)
    ends: list[datetime] = []
    for start in range(0, len(predictions), 250):
        accumulator.add_predictions(predictions[start : start + 250])
        for delta in accumulator.drain():
            before = judge.windows
            kit.apply_delta(judge, WindowDelta.from_state(delta.to_state()).to_state())
            if judge.windows > before:
                ends.append(predictions[min(start + 249, len(predictions) - 1)].timestamp)
    registry = metrics.registry
    count = registry.get_sample_value("driftline_decision_latency_seconds_count")
    total = registry.get_sample_value("driftline_decision_latency_seconds_sum")
    assert judge.windows >= 3  # after the warm-up
    assert count == judge.windows  # once per window, not once per statistic
    expected = sum((verdict_time - end).total_seconds() for end in ends)
    assert total == pytest.approx(expected)  # each window: the clock minus its last event


def test_windows_ending_at_one_instant_each_get_a_verdict_latency() -> None:
    # A burst stamped with one second: consecutive windows share their window_end.
    from schemas.events import PredictionEvent
    from schemas.monitor_config import MonitorConfig
    from streams.agents_monitor import MonitorKit
    from streams.metrics import WorkerMetrics
    from streams.synthetic import generate_stream

    raw, _ = generate_stream(5, 4000, "m", features=3, label_fraction=0.0)
    instant = PredictionEvent.model_validate(raw[0]).timestamp
    predictions = [PredictionEvent.model_validate({**item, "timestamp": instant}) for item in raw]
    kit = MonitorKit(MonitorConfig(), clock=lambda: instant + timedelta(seconds=1))
    metrics = WorkerMetrics()
    judge = kit.load_judge("m", None, metrics)
    for delta in kit.fold_partition({}, {}, predictions, [], metrics):
        kit.apply_delta(judge, delta.state)
    count = metrics.registry.get_sample_value("driftline_decision_latency_seconds_count")
    assert judge.windows >= 3
    assert count == judge.windows


def _budgeted_store(
    budget: SharedRocksDBMemory, path: Path, *, bloom_bits: int = 10, write_buffer: int = 0
) -> Any:
    """A raw-mode rocksdict store at ``path`` opened within ``budget`` (``write_buffer``:
    its own memtable limit, RocksDB's default when 0)."""
    import rocksdict

    options = rocksdict.Options(raw_mode=True)
    options.create_if_missing(True)
    if write_buffer:
        options.set_write_buffer_size(write_buffer)
    return rocksdict.Rdict(str(path), options=budget.apply(options, bloom_bits=bloom_bits))


def test_all_rocksdb_stores_share_one_memory_budget(tmp_path: Path) -> None:
    import os

    budget = SharedRocksDBMemory(cache_bytes=16 << 20, memtable_bytes=8 << 20)
    # 4 tables or partitions, 4 x 2.4 MB written: more than the budget
    stores = [
        _budgeted_store(budget, tmp_path / f"db{i}", bloom_bits=3, write_buffer=4 << 20)
        for i in range(4)
    ]
    for store in stores:
        for k in range(20_000):
            store[f"key-{k}".encode()] = os.urandom(100)
    # The budget makes RocksDB flush early; the flush itself runs in the background (CI once
    # read 10.0 MB here, all four memtables still held), so the check waits for it. Without
    # the budget no memtable would flush (2.4 MB each, under its own 4 MiB).
    limit, deadline = (8 << 20) * 1.05, time.monotonic() + 20.0
    while (memtables := budget.write_buffers.get_usage()) > limit and time.monotonic() < deadline:
        time.sleep(0.05)
    assert 0 < memtables <= limit  # flushed early: all memtables within the budget
    assert budget.cache.get_usage() >= memtables  # and charged to the one shared cache
    for store in stores:
        values = [store[f"key-{k}".encode()] for k in range(0, 20_000, 97)]
        assert all(isinstance(v, bytes) and len(v) == 100 for v in values)  # none lost
        store.close()
    with pytest.raises(ValueError, match=r"memtable_bytes .* at most cache_bytes"):
        SharedRocksDBMemory(cache_bytes=1 << 20, memtable_bytes=2 << 20)


def test_stores_faust_opens_write_without_a_write_ahead_log(tmp_path: Path) -> None:
    """The changelog is a store's log: RocksDB's own WAL stays empty, and a closed store
    keeps every write (the memtables are flushed at close)."""
    import faust.stores.rocksdb as faust_rocksdb

    from streams.rocksdb_memory import share_rocksdb_memory

    share_rocksdb_memory()
    store = faust_rocksdb.RocksDBOptions().open(tmp_path / "db")
    for k in range(5_000):
        store[f"key-{k}".encode()] = b"v" * 100
    logs = list((tmp_path / "db").glob("*.log"))
    assert logs and all(log.stat().st_size == 0 for log in logs)
    store.close()
    reopened = faust_rocksdb.RocksDBOptions().open(tmp_path / "db")
    assert sum(1 for _ in reopened.items()) == 5_000
    reopened.close()


def test_a_sweep_reads_a_store_without_filling_the_block_cache(tmp_path: Path) -> None:
    """The expiry sweep reads every block of a store: with `scan_reads` those blocks do not
    push the lookups' blocks out of the shared cache (a plain scan does fill it)."""
    import os

    import rocksdict

    from streams.rocksdb_memory import scan_reads

    budget = SharedRocksDBMemory(cache_bytes=64 << 20, memtable_bytes=8 << 20)
    store = _budgeted_store(budget, tmp_path / "db")
    for start in range(0, 50_000, 5_000):
        batch = rocksdict.WriteBatch(raw_mode=True)
        for k in range(start, start + 5_000):
            batch.put(f"key-{k:06d}".encode(), os.urandom(100))
        store.write(batch)
    store.flush()  # ~6 MB of table files: the scans below read them, not the memtable
    before = budget.cache.get_usage()
    assert sum(1 for _ in store.items(read_opt=scan_reads())) == 50_000
    swept = budget.cache.get_usage()
    assert sum(1 for _ in store.items()) == 50_000
    filled = budget.cache.get_usage()
    store.close()
    assert swept - before < 256 << 10
    assert filled - swept > 4 << 20


@pytest.mark.parametrize("placement", ["partitioned", "whole", "beside"])
def test_index_and_filter_blocks_are_held_in_the_shared_cache(
    tmp_path: Path, placement: IndexPlacement
) -> None:
    import os

    budget = SharedRocksDBMemory(
        cache_bytes=16 << 20, memtable_bytes=8 << 20, index_placement=placement
    )
    store = _budgeted_store(budget, tmp_path / "db")
    values = {f"key-{k}".encode(): os.urandom(100) for k in range(50_000)}
    for key, value in values.items():
        store[key] = value
    store.flush()  # a table file, whose index and filter every lookup needs
    assert all(store[key] == values[key] for key in list(values)[::997])
    assert all(store.get(f"absent-{k}".encode()) is None for k in range(1_000))
    outside = store.property_int_value("rocksdb.estimate-table-readers-mem")
    assert outside is not None
    files = int(store.property_value("rocksdb.num-files-at-level0") or 0)
    store.close()
    # 50k keys: a ~60 KiB bloom filter plus the index, beside the cache unless held in it
    # (a file's reader keeps ~2 KiB of its own either way).
    assert files >= 1
    assert (outside > 60 << 10) if placement == "beside" else (outside < files * (4 << 10))


def test_a_rocksdb_worker_app_opens_its_stores_with_the_shared_budget(tmp_path: Path) -> None:
    import faust.stores.rocksdb as faust_rocksdb

    from streams.app import create_app
    from streams.rocksdb_memory import share_rocksdb_memory

    live = create_app(Settings(), store="rocksdb://", datadir=tmp_path, monitor_kit=_NoMonitor())
    options = faust_rocksdb.RocksDBOptions(use_rocksdict=True)
    assert type(options).__name__ == "SharedMemoryOptions"
    db = options.open(tmp_path / "probe")
    db[b"k"] = b"v" * 1000
    assert share_rocksdb_memory().write_buffers.get_usage() > 0  # its memtable is counted
    registry = live.metrics.registry
    cache = {
        kind: registry.get_sample_value("driftline_rocksdb_cache_bytes", {"kind": kind})
        for kind in ("usage", "pinned", "capacity")
    }
    db.close()
    # Read at the scrape: the memtable just written is charged to the cache.
    assert cache["capacity"] == share_rocksdb_memory().cache_bytes
    assert 0 < (cache["usage"] or 0) <= cache["capacity"]


def test_the_cache_setting_sizes_a_worker_apps_rocksdb_budget(tmp_path: Path) -> None:
    """``DRIFTLINE_ROCKSDB__CACHE_MIB`` reaches the shared budget, memtables half of it (a
    fresh process: the budget is set once per process)."""
    import os
    import subprocess
    import sys

    script = (
        "import sys; from pathlib import Path\n"
        "from schemas.settings import Settings\n"
        "from streams.app import create_app\n"
        "from streams.rocksdb_memory import share_rocksdb_memory\n"
        "create_app(Settings(), store='rocksdb://', datadir=Path(sys.argv[1]))\n"
        "shared = share_rocksdb_memory()\n"
        "print(shared.cache_bytes, shared.write_buffers.get_buffer_size())\n"
    )
    env = {**os.environ, "DRIFTLINE_ROCKSDB__CACHE_MIB": "48"}
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True,
        check=True, env=env, cwd=Path(__file__).resolve().parent.parent,
    )  # fmt: skip
    cache_bytes, memtable_bytes = (int(word) for word in done.stdout.split())
    assert (cache_bytes, memtable_bytes) == (48 << 20, 24 << 20)


_FIRST_JUDGING = """
import json, sys
from datetime import timedelta
from streams.agents_monitor import MonitorKit, import_monitor_modules
from streams.fold_columns import fold_columns
from streams.ingest_columns import split_columns
from streams.metrics import WorkerMetrics
from streams.synthetic import generate_stream
from streams.validation import RawMessage
from schemas.monitor_config import MonitorConfig

import_monitor_modules()
before = set(sys.modules)
predictions, labels = generate_stream(
    1, 4000, "m", features=6, shift_at=2500, concept_change_at=2500, label_delay_seconds=5
)
messages = [RawMessage("predictions", json.dumps(p).encode(), p["event_id"], 0, i)
            for i, p in enumerate(predictions)]
messages += [RawMessage("labels", json.dumps(l).encode(), l["event_id"], 0, i)
             for i, l in enumerate(labels)]
kit, metrics = MonitorKit(MonitorConfig()), WorkerMetrics()
now = predictions[-1]["timestamp"]
split = split_columns(messages, now=None)
deltas = fold_columns(kit, {}, {}, split.predictions, split.labels, metrics,
                      labels_behind=False, positions=split.positions)
judge = kit.load_judge("m", None, metrics)
alerts = [a for d in deltas for a in kit.apply_delta(judge, json.loads(json.dumps(d.state)))]
judge = kit.load_judge("m", json.loads(json.dumps(kit.judge_state(judge))), metrics)
print(json.dumps({"alerts": len(alerts), "imported": sorted(set(sys.modules) - before)}))
"""


def test_a_worker_imports_nothing_more_once_it_judges() -> None:
    """`import_monitor_modules` (run before a worker says Ready) covers every module the
    ingest and the judge import on first use: a lazy import of river stopped the event loop
    ~2.5 s at the first delta, in a fresh process (hence the subprocess)."""
    import json
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _FIRST_JUDGING], capture_output=True, text=True, check=True,
        cwd=Path(__file__).resolve().parent.parent,
    )  # fmt: skip
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome["alerts"] > 0  # the judge decided something, down to its alerts
    assert outcome["imported"] == []
