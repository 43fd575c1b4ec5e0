"""`streams.join_batch.BatchJoin`: predictions that meet nothing in the join skip the joiner and
are written as the native parse encoded them; the tables, deltas and join counts come out as
when the joiner pends every prediction itself."""

from __future__ import annotations

import json
import os
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from join_store import DictJoinStore
from prometheus_client import CollectorRegistry

from schemas.events import LabelEvent
from schemas.monitor_config import MonitorConfig
from streams.agents_monitor import MonitorKit
from streams.fold_columns import fold_columns
from streams.ingest_columns import split_columns
from streams.ingest_native import NATIVE
from streams.join_batch import BatchJoin
from streams.metrics import WorkerMetrics
from streams.validation import RawMessage

# Under CI the native lane must be built (tests/test_ingest_native.py fails without it): this
# test then never skips.
pytestmark = pytest.mark.skipif(
    NATIVE is None and not os.environ.get("CI"), reason="the native lane encodes the entries"
)

START = datetime(2024, 5, 1, tzinfo=UTC)


def _row(i: int, rng: random.Random) -> dict[str, Any]:
    return {
        "event_id": f"e-{i}", "model": "m", "model_version": "1",
        "timestamp": (START + timedelta(seconds=i)).isoformat(),
        "features": {"x": rng.gauss(0, 1), "plan": rng.choice(["a", "b"])},
        "prediction": rng.random(), "scores": {"no": 0.5, "yes": 0.5},
        "segment": {"region": "eu"} if i % 3 else None,
    }  # fmt: skip


def _batches(seed: int) -> list[list[RawMessage]]:
    """Envelopes with labels: late, in the same batch as their prediction, early (before
    it), duplicated, and predictions sent twice, in some batches only."""
    rng = random.Random(seed)
    batches: list[list[RawMessage]] = []
    offset = 0
    for b in range(30):
        ids = list(range(b * 40, b * 40 + 40))
        if b % 7 == 3:
            ids[5] = ids[5] - 40  # a prediction of the batch before, sent again
        if b % 11 == 4:
            ids[9] = ids[8]  # an event_id twice in one envelope
        rows = [_row(i, rng) for i in ids]
        envelope = {"batch_id": f"b-{b}", "model": "m", "model_version": "1", "predictions": rows}
        messages = [RawMessage("predictions", json.dumps(envelope).encode(), "p", 0, offset)]
        offset += 1
        labelled: list[int] = []
        if b % 2:
            labelled += rng.sample(range(max(0, b * 40 - 200), b * 40), 10)  # late
        if b % 5 == 2:
            labelled.append(b * 40 + 3)  # in the same batch
        if b % 6 == 1:
            labelled.append(b * 40 + 45)  # early: its prediction comes with the next batch
        if b == 29:
            labelled.append(10**6)  # a label whose prediction never comes
        if b % 4 == 3 and labelled:
            labelled.append(labelled[0])  # a duplicate label
        for i in labelled:
            label = {"event_id": f"e-{i}", "model": "m", "label": rng.randint(0, 1),
                     "timestamp": (START + timedelta(seconds=i + 60)).isoformat()}  # fmt: skip
            messages.append(RawMessage("labels", json.dumps(label).encode(), "l", 0, offset))
            offset += 1
        batches.append(messages)
    return batches


def _run(seed: int, *, parsed_entries: bool) -> tuple[Any, ...]:
    kit = MonitorKit(MonitorConfig(), delta_events=50)
    metrics = WorkerMetrics(CollectorRegistry())
    pending, early = DictJoinStore(), DictJoinStore()
    deltas: list[str] = []
    skipped = 0
    for batch in _batches(seed):
        split = split_columns(batch, now=START)
        assert split.all_join_entries() is not None, "the native lane read every envelope"
        labels: list[LabelEvent] = split.labels
        join = BatchJoin.read(
            pending, early, 0, [i for part in split.predictions for i in part.event_ids],
            [label.event_id for label in labels],
            split.all_join_entries() if parsed_entries else None,
        )  # fmt: skip
        skipped += join.pended is not None
        out = fold_columns(
            kit, join.pending_now, join.early_now, split.predictions, labels, metrics,
            labels_behind=False, positions=split.positions,
            join_predictions=join.pended is None,
        )  # fmt: skip
        join.write(pending, early, 0)
        deltas += [json.dumps([d.model, d.start, d.state], sort_keys=True) for d in out]
    counts = {
        outcome: metrics.registry.get_sample_value(
            "driftline_label_join_total", {"outcome": outcome}
        )
        for outcome in ("hit", "early", "duplicate")
    }
    return pending.decoded(), early.decoded(), deltas, counts, skipped


@pytest.mark.parametrize("seed", [0, 1])
def test_predictions_written_as_parsed_leave_the_join_as_the_joiner_does(seed: int) -> None:
    *parsed, skipped = _run(seed, parsed_entries=True)
    *joined, none_skipped = _run(seed, parsed_entries=False)
    assert parsed == joined
    assert none_skipped == 0
    # Both paths ran: most batches meet nothing; a repeat, an early or a same-batch label
    # sends a batch through the joiner.
    assert 10 < skipped < 30
    pending, early, _, counts = joined
    assert counts["hit"] and counts["early"] and counts["duplicate"]
    assert b"e-1000000" in early, "the label whose prediction never came waits"
    assert any(len(entry) == 1 for entry in pending.values())  # joined: tombstones


def test_a_prediction_already_waiting_goes_to_the_joiner() -> None:
    pending, early = DictJoinStore(), DictJoinStore()
    pending.held[b"e-1"] = b'[1,"m",null,0.5,null,null]'
    join = BatchJoin.read(pending, early, 0, ["e-1", "e-2"], [], [[b"[2]", b"[3]"]])
    assert join.pended is None
    assert join.pending_now == {"e-1": [1, "m", None, 0.5, None, None]}
    clean = BatchJoin.read(pending, early, 0, ["e-2", "e-3"], ["e-1"], [[b"[2]", b"[3]"]])
    assert clean.pended == {b"e-2": b"[2]", b"e-3": b"[3]"}
    assert clean.pending_now == {"e-1": [1, "m", None, 0.5, None, None]}  # the label's only
