"""Cost of the monitor itself: events/s of FleetMonitor for one model with 20 numeric features.

    .venv/bin/python bench/monitor_cost.py [--events 200000] [--budget 60] [--labels]

One seeded stream of one binary classifier (20 numeric features, prediction and two class
scores; feature ``f00`` shifts by 1 sd at 60 %), built as validated PredictionEvent objects
before any timing. Each run feeds a fresh FleetMonitor (default MonitorConfig: reference =
first 2000 events, windows of 500, every test on every feature, prediction and score drift,
data quality) in batches of 1, 100, 1000 and 10000 events, in one process, and times only
``process`` + ``finish``. The columnar rows feed ``process_columns`` the same batches, turned
into ``PredictionColumns`` (``columns_of``) before timing; that conversion is its own row. A
run stops after ``--budget`` seconds and reports its rate over what it processed ("partial").
``--labels`` also feeds a label for every prediction (joined, quality judged); rates count
predictions. Also shown: the pydantic validation rate of the same events (paid by readers and
workers before the monitor; not in the monitor's rate).
Prints a table; no asserts.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from detectors.columns import PredictionColumns, columns_of
from detectors.monitor import FleetMonitor
from schemas.events import Alert, LabelEvent, PredictionEvent
from schemas.monitor_config import MonitorConfig

FEATURES = 20
GOAL = 200_000


@dataclass
class Run:
    name: str
    events: int
    seconds: float
    partial: bool = False
    note: str = ""

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


def build(seed: int, count: int, labels: bool) -> tuple[list[dict[str, object]], list[LabelEvent]]:
    """Raw prediction dicts and (optionally) label events, one per second."""
    rng = np.random.default_rng(seed)
    means, stds = rng.uniform(-50, 50, FEATURES), rng.uniform(0.5, 20, FEATURES)
    values = means + stds * rng.standard_normal((count, FEATURES))
    values[int(count * 0.6) :, 0] += stds[0]
    weights = rng.normal(0, 1, FEATURES) / np.sqrt(FEATURES)
    score = 1 / (1 + np.exp(-(((values - means) / stds) @ weights)))
    truth = rng.random(count) < score
    start = datetime(2024, 1, 1, tzinfo=UTC)
    names = [f"f{k:02d}" for k in range(FEATURES)]
    raw: list[dict[str, object]] = []
    for i in range(count):
        p = round(float(score[i]), 6)
        raw.append({
            "event_id": f"e{i}", "model": "cost", "model_version": "1",
            "timestamp": start + timedelta(seconds=i),
            "features": dict(zip(names, np.round(values[i], 4).tolist(), strict=True)),
            "prediction": int(p >= 0.5), "scores": {"0": round(1 - p, 6), "1": p},
        })  # fmt: skip
    label_events = (
        [LabelEvent(event_id=f"e{i}", model="cost", timestamp=start + timedelta(seconds=i + 300),
                    label=int(truth[i])) for i in range(count)]
        if labels else []
    )  # fmt: skip
    return raw, label_events


def feed(
    predictions: list[PredictionEvent], labels: list[LabelEvent], size: int, budget: float
) -> Run:
    wall = datetime(2030, 1, 1, tzinfo=UTC)
    monitor = FleetMonitor(MonitorConfig(), clock=lambda: wall)
    merged: list[PredictionEvent | LabelEvent] = sorted(
        [*predictions, *labels], key=lambda e: e.timestamp
    )
    batches = [
        ([e for e in part if isinstance(e, PredictionEvent)],
         [e for e in part if isinstance(e, LabelEvent)])
        for part in (merged[i : i + size] for i in range(0, len(merged), size))
    ]  # fmt: skip
    return timed(f"FleetMonitor, batch {size:,}", monitor, batches, monitor.process, len, budget)


def timed(
    name: str,
    monitor: FleetMonitor,
    batches: Sequence[tuple[Any, list[LabelEvent]]],
    process: Callable[[Any, list[LabelEvent]], list[Alert]],
    count: Callable[[Any], int],
    budget: float,
) -> Run:
    """Time ``process`` over ``batches`` (and ``finish``), stopping after ``budget`` s."""
    done, fired, partial = 0, 0, False
    started = time.perf_counter()
    for batch_predictions, batch_labels in batches:
        fired += sum(a.status == "firing" for a in process(batch_predictions, batch_labels))
        done += count(batch_predictions)
        if time.perf_counter() - started > budget:
            partial = True
            break
    else:
        fired += sum(a.status == "firing" for a in monitor.finish())
    seconds = time.perf_counter() - started
    windows = sum(judge.windows for judge in monitor.judges.values())
    return Run(name, done, seconds, partial, f"{windows} windows judged, {fired} alerts fired")


def feed_columns(
    predictions: list[PredictionEvent], labels: list[LabelEvent], size: int, budget: float
) -> tuple[Run, Run]:
    """The columnar run of a batch size, and the conversion of its batches to columns."""
    wall = datetime(2030, 1, 1, tzinfo=UTC)
    monitor = FleetMonitor(MonitorConfig(), clock=lambda: wall)
    merged: list[PredictionEvent | LabelEvent] = sorted(
        [*predictions, *labels], key=lambda e: e.timestamp
    )
    parts = [merged[i : i + size] for i in range(0, len(merged), size)]
    started = time.perf_counter()
    batches: list[tuple[list[PredictionColumns], list[LabelEvent]]] = [
        (columns_of([e for e in part if isinstance(e, PredictionEvent)]),
         [e for e in part if isinstance(e, LabelEvent)])
        for part in parts
    ]  # fmt: skip
    conversion = Run(f"PredictionColumns.from_events, batches of {size:,} (not in the rates)",
                     len(predictions), time.perf_counter() - started)  # fmt: skip
    run = timed(
        f"FleetMonitor.process_columns, batch {size:,}", monitor, batches,
        monitor.process_columns, lambda columns: sum(map(len, columns)), budget,
    )  # fmt: skip
    return run, conversion


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--budget", type=float, default=60.0, help="seconds per run at most")
    parser.add_argument("--batches", default="1,100,1000,10000")
    parser.add_argument("--columnar-batches", default="1000,10000")
    parser.add_argument("--labels", action="store_true", help="also feed a label per event")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    console = Console(width=150)

    raw, labels = build(args.seed, args.events, args.labels)
    started = time.perf_counter()
    predictions = [PredictionEvent.model_validate(item) for item in raw]
    validation = Run("pydantic validation of the events (not in the rates above)",
                     len(predictions), time.perf_counter() - started)  # fmt: skip
    console.print(
        f"{len(predictions):,} predictions of one model, {FEATURES} numeric features"
        + (f", {len(labels):,} labels" if labels else ", no labels")
    )
    runs = [feed(predictions, labels, int(size), args.budget) for size in args.batches.split(",")]
    conversions = []
    for size in filter(None, args.columnar_batches.split(",")):
        run, conversion = feed_columns(predictions, labels, int(size), args.budget)
        runs.append(run)
        conversions.append(conversion)
    extra = [validation, *conversions]

    table = Table("run", "predictions", "seconds", "predictions/s", "", "note",
                  title="monitor cost: one model, 20 numeric features, one process")  # fmt: skip
    for run in [*runs, *extra]:
        table.add_row(run.name, f"{run.events:,}", f"{run.seconds:.2f}", f"{run.rate:,.0f}",
                      "partial" if run.partial else "", run.note)  # fmt: skip
    console.print(table)
    best = max((run for run in runs if not run.name.endswith("batch 1")),
               key=lambda run: run.rate, default=None)  # fmt: skip
    if best is not None:
        verdict = "met" if best.rate >= GOAL else "NOT met"
        console.print(
            f"best batched rate {best.rate:,.0f} predictions/s ({best.name}); "
            f"goal >= {GOAL:,}/s: {verdict}"
        )


if __name__ == "__main__":
    main()
