"""The ingest publishes one delta per model and round (`streams.delta_merge`): pure checks
on deltas folded from real prediction messages."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry
from state_helpers import batching_free

from detectors.accumulate_deferred import DeferredDelta
from detectors.window import WindowDelta
from schemas.monitor_config import MonitorConfig
from streams.agents_monitor import DeltaOut, MonitorKit
from streams.delta_merge import MERGE_GAP_US, merge_round
from streams.fold_columns import fold_columns
from streams.ingest_columns import split_columns
from streams.judge_record import JudgeRecord
from streams.metrics import WorkerMetrics
from streams.validation import RawMessage
from streams.warmup_order import route_delta

ROW = (
    '{{"event_id": "p{p}-{i}", "model": "{model}", "model_version": "{version}", '
    '"timestamp": "2024-05-01T00:{minute:02d}:{second:02d}.{micro:06d}Z", '
    '"features": {{"x": {x}, "country": "{country}"}}, "prediction": {score}}}'
)


def _fold(
    partition: int,
    count: int,
    *,
    model: str = "churn",
    version: str = "1",
    minute: int = 0,
    kit: MonitorKit | None = None,
) -> list[DeltaOut]:
    """``count`` predictions of one partition, folded as the ingest folds them."""
    rows = [
        ROW.format(
            **{"p": partition, "i": i, "model": model, "version": version, "minute": minute},
            second=(i // 10) % 60,
            micro=(i % 10) * 1000 + partition,
            x=i * 0.5 + partition,
            country="DE" if i % 3 else "FR",
            score=(i % 7) / 7,
        )
        for i in range(count)
    ]
    messages = [
        RawMessage("predictions", row.encode(), "predictions", partition, i)
        for i, row in enumerate(rows)
    ]
    split = split_columns(messages, now=datetime(2024, 5, 1, 1, tzinfo=UTC))
    assert not split.dead_letters
    kit = kit or MonitorKit(MonitorConfig())
    return fold_columns(
        kit, {}, {}, split.predictions, split.labels, WorkerMetrics(CollectorRegistry()),
        labels_behind=False, positions=split.positions,
    )  # fmt: skip


def _folded(out: DeltaOut) -> WindowDelta:
    """The window of a freshly folded delta (its columns folded now)."""
    assert isinstance(out.window, DeferredDelta)
    return out.window.fold()


def _origin(partition: int) -> dict[str, object]:
    return {"partition": partition, "batch": [0, 9, -1, -1], "index": 0, "partitions": 3}


def test_one_round_of_three_partitions_becomes_one_delta_holding_all_of_it() -> None:
    parts = [(delta, _origin(p)) for p in range(3) for delta in _fold(p, 40)]
    # The same partitions folded one by one and merged as folded deltas.
    expected = _folded(_fold(0, 40)[0])
    for p in (1, 2):
        expected.merge(_folded(_fold(p, 40)[0]))
    ends = [part.window.end_us for part, _ in parts]

    merged = merge_round(parts, max_events=250)

    assert len(merged) == 1
    delta, origins = merged[0]
    assert [origin["partition"] for origin in origins] == [0, 1, 2]
    assert batching_free(delta.state) == batching_free(expected.to_state())
    assert delta.state != expected.to_state()  # the round's rows drew their keys in one run
    assert delta.state["count"] == 120
    assert delta.state["slices"][""]["numeric"]["x"]["count"] == 120
    # Each origin keeps its own part's last event time (the warm-up's clock per partition).
    assert [origin["end_us"] for origin in origins] == ends


def test_the_folds_cut_versions_and_far_apart_partitions_are_kept() -> None:
    kit = MonitorKit(MonitorConfig(), delta_events=50)
    round_ = [
        *[(delta, _origin(0)) for delta in _fold(0, 40, kit=kit)],
        *[(delta, _origin(1)) for delta in _fold(1, 40, kit=kit)],  # 80 > 50: apart
        *[(delta, _origin(2)) for delta in _fold(2, 5, version="2", kit=kit)],  # other version
        *[(delta, _origin(2)) for delta in _fold(2, 5, minute=30, kit=kit)],  # 30 min later
    ]
    merged = merge_round(round_, max_events=kit.delta_events)
    assert [(delta.state["model_version"], delta.state["count"], len(origins))
            for delta, origins in merged] == [("1", 40, 1), ("1", 40, 1), ("2", 5, 1),
                                              ("1", 5, 1)]  # fmt: skip
    assert sum(delta.state["count"] for delta, _ in merged) == 90
    starts = [delta.start for delta, _ in merged]
    assert starts == sorted(starts)  # the judge applies them in event-time order
    # The half-hour-later part of version 1 is beyond the gap from version 1's earlier ones.
    late_start, early_end = merged[-1][0].window.start_us, merged[1][0].window.end_us
    assert late_start is not None and early_end is not None
    late = late_start - early_end
    assert late > MERGE_GAP_US


def test_a_merged_delta_moves_the_warm_up_clock_of_every_partition_it_holds() -> None:
    parts = [(delta, _origin(p)) for p in range(3) for delta in _fold(p, 10)]
    ((delta, origins),) = merge_round(parts, max_events=250)
    record = JudgeRecord()
    assert route_delta(record, delta.state, origins, warming_up=True, warmup_events=2000) == []
    # Partition 2's part ends last: the others may still send events before that end.
    ends = {str(origin["partition"]): origin["end_us"] for origin in origins}
    assert record.watermarks == ends and max(ends.values()) == delta.state["end_us"]
    # The next round of all three passes it: released first, in event-time order.
    later = [(d, _origin(p)) for p in range(3) for d in _fold(p, 10, minute=1)]
    ((after, after_origins),) = merge_round(later, max_events=250)
    released = route_delta(record, after.state, after_origins, warming_up=True,
                           warmup_events=2000)  # fmt: skip
    assert released == [delta.state]
    assert record.parked == {"0": [after.state]}


def _kit(config: dict[str, object]) -> MonitorKit:
    from schemas.monitor_config import parse_monitor_config

    return MonitorKit(parse_monitor_config(config))


def test_a_models_delta_cap_follows_its_window_and_warm_up() -> None:
    from schemas.monitor_config import parse_monitor_config
    from streams.agents_monitor import delta_events_of

    def cap(model_settings: dict[str, Any]) -> int:
        return delta_events_of(parse_monitor_config({"defaults": model_settings}).for_model("m"))

    assert cap({}) == 250  # 500-event windows, a 2000-event warm-up: as before
    assert cap({"window": {"size": 100}}) == 50  # at most one delta over the window's size
    assert cap({"window": {"size": 1000, "slide": 200}}) == 100  # the slide is the step
    assert cap({"window": {"size": 20000}}) == 250  # the default warm-up bounds it
    big = {"window": {"size": 20000}, "reference": {"warmup_events": 20000}}
    assert cap(big) == 2500  # an eighth of the warm-up
    huge = {"window": {"size": 100_000}, "reference": {"warmup_events": 100_000}}
    assert cap(huge) == 4000  # MAX_DELTA_EVENTS: within a window sketch's reservoir
    assert cap({"window": {"type": "time", "time_seconds": 60}}) == 250


def test_a_batch_is_cut_at_the_smallest_cap_of_its_models() -> None:
    kit = _kit({
        "defaults": {"window": {"size": 20000}, "reference": {"warmup_events": 20000}},
        "models": {"small": {"window": {"size": 100}}},
    })  # fmt: skip
    assert kit.delta_events == 50  # labels are cut by the smallest configured cap
    assert kit.delta_events_for(["churn"]) == 2500
    assert kit.delta_events_for(iter(["churn", "small"])) == 50
    assert [delta.state["count"] for delta in _fold(0, 5500, kit=kit)] == [2500, 2500, 500]
    fixed = MonitorKit(MonitorConfig(), delta_events=7)
    assert fixed.delta_events_for(["churn"]) == 7 == fixed.delta_events
