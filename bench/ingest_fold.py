"""Live ingest without Kafka: pydantic events + ``MonitorKit.fold_partition`` vs columns.

Folds the same messages both ways, in worker batches of ``--take`` messages with dict-backed
join tables, and prints predictions/s of the whole step (parse, validate, join, fold) and of the
parse + validate step alone. Every delta's state is built, as the worker builds it to publish.
Data: the backlog benchmark's (``bench/live/backlog.py``: one model, 10 features), as SDK
envelopes and as single-event messages; the last row spreads the single events round-robin
over 4 models, the worst case for runs of one model version.

A second table replays a live worker's rounds at the sustained benchmark's shape (single
events round-robin over ``--models`` models, 700/s of event time, rounds of ``--round``
messages hashed over ``--partitions`` partitions): each partition joined and folded, the
deltas merged per model (`streams.delta_merge`) and encoded, as the ingest publishes them.
Baseline: every partition's chunk folded at once (``fold_columns(defer=False)``); against it,
the deferred fold (one fold per model and round).

A third table times the JSON parse of the prediction messages alone: ``pydantic_core.from_json``
(what the columnar split used until the 16th session) against ``streams.json_read.from_json``
(orjson, with pydantic's parser for what orjson refuses or may read differently).

    .venv/bin/python bench/ingest_fold.py  # --events 30000 --envelope 500 --repeat 3
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
import zlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pydantic_core
from prometheus_client import CollectorRegistry
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.live.backlog import _backlog_chunks
from schemas.events import PredictionBatch, PredictionEvent, to_json_bytes
from schemas.monitor_config import MonitorConfig
from streams.agent_events import dumps_compact
from streams.agents_monitor import MonitorKit
from streams.delta_merge import merge_round
from streams.fold_columns import fold_columns
from streams.ingest_columns import split_columns
from streams.json_read import from_json
from streams.metrics import WorkerMetrics
from streams.validation import RawMessage, split_messages

NOW = datetime(2024, 5, 1, tzinfo=UTC)


def _messages(events: list[PredictionEvent], per_message: int) -> list[RawMessage]:
    if per_message == 1:
        values = [to_json_bytes(event) for event in events]
    else:
        values = [
            to_json_bytes(PredictionBatch(
                batch_id=f"b-{start}", model=events[start].model,
                model_version=events[start].model_version,
                predictions=events[start : start + per_message],
            ))
            for start in range(0, len(events), per_message)
        ]  # fmt: skip
    return [RawMessage("predictions", value, "p", 0, i) for i, value in enumerate(values)]


def _events_path(batches: list[list[RawMessage]], fold: bool) -> None:
    kit, pending, early = MonitorKit(MonitorConfig()), {}, {}  # type: ignore[var-annotated]
    metrics = WorkerMetrics(registry=CollectorRegistry())
    for batch in batches:
        split = split_messages(batch, now=NOW)
        if fold:
            deltas = kit.fold_partition(pending, early, split.predictions, split.labels, metrics)
            for delta in deltas:
                delta.state  # noqa: B018  # the worker encodes every delta it publishes


def _columns_path(batches: list[list[RawMessage]], fold: bool) -> None:
    kit, pending, early = MonitorKit(MonitorConfig()), {}, {}  # type: ignore[var-annotated]
    metrics = WorkerMetrics(registry=CollectorRegistry())
    for batch in batches:
        split = split_columns(batch, now=NOW)
        if fold:
            deltas = fold_columns(
                kit, pending, early, split.predictions, split.labels, metrics,
                labels_behind=False, positions=split.positions,
            )  # fmt: skip
            for delta in deltas:
                delta.state  # noqa: B018  # folds a deferred delta, as publishing it does


def _live_rounds(
    messages: list[RawMessage], defer: bool, *, round_size: int, partitions: int
) -> None:
    """The ingest's rounds: per partition split, join and fold, then merge and encode."""
    kit = MonitorKit(MonitorConfig())
    metrics = WorkerMetrics(registry=CollectorRegistry())
    tables: list[tuple[dict[str, Any], dict[str, Any]]] = [({}, {}) for _ in range(partitions)]
    for start in range(0, len(messages), round_size):
        parts: dict[int, list[RawMessage]] = {}
        for message in messages[start : start + round_size]:
            parts.setdefault(message.partition, []).append(message)
        pairs = []
        for partition, mine in sorted(parts.items()):
            split = split_columns(mine, now=NOW)
            pending, early = tables[partition]
            deltas = fold_columns(
                kit, pending, early, split.predictions, split.labels, metrics,
                labels_behind=False, positions=split.positions, defer=defer,
            )  # fmt: skip
            origin = {"partition": partition, "batch": [start, 0, -1, -1],
                      "partitions": partitions}  # fmt: skip
            pairs += [(delta, {**origin, "index": i}) for i, delta in enumerate(deltas)]
        for delta, origins in merge_round(pairs, max_events=kit.delta_events):
            dumps_compact({"model": delta.model, "origins": origins, "delta": delta.state})


def _live_table(events: list[PredictionEvent], args: argparse.Namespace) -> Table:
    step = timedelta(seconds=1 / 700)
    paced = [
        event.model_copy(update={"model": f"m-{i % args.models:02d}",
                                 "timestamp": NOW + i * step})
        for i, event in enumerate(events)
    ]  # fmt: skip
    table = Table(title=f"live rounds: {len(paced):,} single events over {args.models} models "
                        f"at 700/s of event time, best of {args.repeat}")  # fmt: skip
    for column in ("partitions", "round", "fold per partition (before)", "deferred fold",
                   "ms per round, before / deferred", "speed-up"):  # fmt: skip
        table.add_column(column, justify="right")
    values = [to_json_bytes(event) for event in paced]
    for partitions in args.partitions:
        messages = [
            RawMessage("predictions", value, "p", zlib.crc32(event.event_id.encode()) % partitions,
                       i)
            for i, (event, value) in enumerate(zip(paced, values, strict=True))
        ]  # fmt: skip
        rates = [
            _rate(partial(_live_rounds, round_size=args.round, partitions=partitions),
                  messages, defer, len(messages), args.repeat)
            for defer in (False, True)
        ]  # fmt: skip
        per_round = [1000 * args.round / rate for rate in rates]
        table.add_row(
            str(partitions), str(args.round), f"{rates[0]:,.0f}/s", f"{rates[1]:,.0f}/s",
            f"{per_round[0]:.1f} / {per_round[1]:.1f}", f"x{rates[1] / rates[0]:.2f}",
        )  # fmt: skip
    return table


def _parse_table(cases: list[tuple[str, list[RawMessage], int]], repeat: int) -> Table:
    """Both parsers timed in alternation, so a slow spell of the box hits both: the speed-up is
    the median over the pairs of runs (best-of rates alone moved by x0.8-x2.2 between runs)."""
    table = Table(title=f"JSON parse of prediction messages only, {repeat} alternated runs each")
    for column in ("messages", "pydantic_core.from_json", "json_read.from_json",
                   "speed-up (median of pairs)"):  # fmt: skip
        table.add_column(column, justify="right" if column != "messages" else "left")
    parsers: tuple[Callable[[bytes], Any], ...] = (pydantic_core.from_json, from_json)
    for name, messages, predictions in cases:
        values = [message.value for message in messages if message.value is not None]
        seconds: list[list[float]] = [[], []]
        for _ in range(repeat):
            for parse, runs in zip(parsers, seconds, strict=True):
                started = time.perf_counter()
                for value in values:  # nothing kept: parsed values die at once, as live
                    parse(value)
                runs.append(time.perf_counter() - started)
        ratio = float(np.median([a / b for a, b in zip(*seconds, strict=True)]))
        table.add_row(
            name, f"{predictions / min(seconds[0]):,.0f}/s",
            f"{predictions / min(seconds[1]):,.0f}/s", f"x{ratio:.2f}",
        )  # fmt: skip
    return table


def _rate(run: Callable[[Any, bool], None], batches: Any, fold: bool,
          events: int, repeat: int) -> float:  # fmt: skip
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        run(batches, fold)
        best = min(best, time.perf_counter() - started)
    return events / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--envelope", type=int, default=500, help="predictions per envelope")
    parser.add_argument("--take", type=int, default=2_000, help="messages per worker batch")
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    parser.add_argument("--models", type=int, default=20, help="models in the live rounds")
    parser.add_argument("--round", type=int, default=90,
                        help="messages per live round (a 700/s worker's: ~90)")  # fmt: skip
    parser.add_argument("--partitions", type=int, nargs="+", default=[3, 12],
                        help="input partitions of the worker, one row each")  # fmt: skip
    args = parser.parse_args()
    events = [event for chunk in _backlog_chunks(args.events, 1, models=1) for event in chunk]
    spread = [event.model_copy(update={"model": f"m-{i % 4}"}) for i, event in enumerate(events)]
    table = Table(title=f"{len(events):,} predictions, 10 features, best of {args.repeat}")
    for column in ("messages", "pydantic + fold_partition", "columns + fold_columns", "speed-up",
                   "parse only: pydantic", "parse only: columns"):  # fmt: skip
        table.add_column(column, justify="right" if column != "messages" else "left")
    parsed: list[tuple[str, list[RawMessage], int]] = []
    cases = [(f"envelopes of {args.envelope}", events, args.envelope),
             ("single events", events, 1), ("single events, 4 models", spread, 1)]  # fmt: skip
    for name, data, per_message in cases:
        messages = _messages(data, per_message)
        parsed.append((name, messages, len(data)))
        batches = [messages[i : i + args.take] for i in range(0, len(messages), args.take)]
        rates = [
            _rate(run, batches, fold, len(data), args.repeat)
            for fold in (True, False)
            for run in (_events_path, _columns_path)
        ]
        cells = [f"{rate:,.0f}/s" for rate in rates]
        table.add_row(name, cells[0], cells[1], f"x{rates[1] / rates[0]:.1f}", *cells[2:])
    Console(width=120).print(table)
    Console(width=120).print(_live_table(events[: args.events // 2], args))
    gc.collect()
    gc.freeze()  # as the worker does: collections of the events held here would weigh in
    Console(width=120).print(_parse_table(parsed[:2], max(args.repeat, 9)))


if __name__ == "__main__":
    main()
