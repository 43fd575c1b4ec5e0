"""Events per second of FleetMonitor against hand-rolled per-event monitors, in the same run.

    .venv/bin/python bench/monitor_throughput.py [--events 200000] [--budget 60]

One seeded stream (10 features: 7 numeric, 3 categorical; labels for every prediction; a
shift at 60 %), validated up front, then fed in event-time order to:
- FleetMonitor (default MonitorConfig: every detector on every feature, quality once labels
  join) with batches of 1, 100 and 5000 events;
- a naive monitor: per event, per numeric feature, scipy.stats.ks_2samp of a rolling deque of
  the last 500 values against the first 2000 (what a typical hand-rolled monitor does);
- river ADWIN per numeric feature per event (if river imports).
Also times reading + validating the stream from JSONL (streams.readers). Each run stops at
``--budget`` seconds and reports its rate over what it processed ("partial"). Rates count
predictions, warm-up included; FleetMonitor also processes the labels. Prints a table; no
asserts.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table
from scipy import stats

from schemas.events import LabelEvent, PredictionEvent
from streams.readers import read_labels, read_predictions
from streams.synthetic import generate_stream, write_stream

WARMUP, WINDOW = 2000, 500


@dataclass
class Run:
    name: str
    predictions: int
    seconds: float
    partial: bool
    note: str = ""

    @property
    def rate(self) -> float:
        return self.predictions / self.seconds if self.seconds > 0 else 0.0


def _batches(
    merged: list[PredictionEvent | LabelEvent], size: int
) -> Iterator[tuple[list[PredictionEvent], list[LabelEvent]]]:
    for start in range(0, len(merged), size):
        part = merged[start : start + size]
        yield (
            [e for e in part if isinstance(e, PredictionEvent)],
            [e for e in part if isinstance(e, LabelEvent)],
        )


def fleet_monitor(merged: list[PredictionEvent | LabelEvent], size: int, budget: float) -> Run:
    from detectors.monitor import FleetMonitor
    from schemas.monitor_config import MonitorConfig

    wall = datetime(2030, 1, 1, tzinfo=UTC)
    monitor = FleetMonitor(MonitorConfig(), clock=lambda: wall)
    done, alerts, partial = 0, 0, False
    started = time.perf_counter()
    for predictions, labels in _batches(merged, size):
        alerts += sum(a.status == "firing" for a in monitor.process(predictions, labels))
        done += len(predictions)
        if time.perf_counter() - started > budget:
            partial = True
            break
    else:
        alerts += sum(a.status == "firing" for a in monitor.finish())
    seconds = time.perf_counter() - started
    return Run(f"FleetMonitor, batch {size}", done, seconds, partial, f"{alerts} alerts fired")


def _per_event(
    name: str,
    predictions: list[PredictionEvent],
    numeric: list[str],
    budget: float,
    step: Callable[[list[float], int], bool],
) -> Run:
    done, detections = 0, 0
    started = time.perf_counter()
    for index, event in enumerate(predictions):
        values = [event.features[name] for name in numeric]
        detections += step([float(v) for v in values if v is not None], index)
        done += 1
        if done % 256 == 0 and time.perf_counter() - started > budget:
            break
    seconds = time.perf_counter() - started
    return Run(name, done, seconds, done < len(predictions), f"{detections} detections")


def naive_ks(predictions: list[PredictionEvent], numeric: list[str], budget: float) -> Run:
    reference: list[list[float]] = [[] for _ in numeric]
    windows: list[deque[float]] = [deque(maxlen=WINDOW) for _ in numeric]
    frozen: list[np.ndarray] = []

    def step(values: list[float], index: int) -> bool:
        drifted = False
        for k, value in enumerate(values):
            if index < WARMUP:
                reference[k].append(value)
                continue
            if len(frozen) < len(numeric):
                frozen.append(np.asarray(reference[len(frozen)]))
            windows[k].append(value)
            if len(windows[k]) == WINDOW:
                drifted |= bool(stats.ks_2samp(frozen[k], np.asarray(windows[k])).pvalue < 1e-3)
        return drifted

    return _per_event("naive ks_2samp per event (deque 500)", predictions, numeric, budget, step)


def river_adwin(predictions: list[PredictionEvent], numeric: list[str], budget: float) -> Run:
    from river.drift import ADWIN

    detectors = [ADWIN() for _ in numeric]  # type: ignore[no-untyped-call]

    def step(values: list[float], index: int) -> bool:
        drifted = False
        for detector, value in zip(detectors, values, strict=False):
            detector.update(value)  # type: ignore[no-untyped-call]
            drifted |= detector.drift_detected
        return drifted

    return _per_event("river ADWIN per feature per event", predictions, numeric, budget, step)


def read_jsonl(raw_predictions: list[dict[str, Any]], raw_labels: list[dict[str, Any]]) -> Run:
    with tempfile.TemporaryDirectory() as folder:
        pred_path, label_path = write_stream(Path(folder), raw_predictions, raw_labels, "jsonl")
        assert label_path is not None
        started = time.perf_counter()
        count = sum(len(chunk) for chunk in read_predictions(pred_path))
        labels = sum(len(chunk) for chunk in read_labels(label_path))
        seconds = time.perf_counter() - started
    return Run("read + validate JSONL (readers)", count, seconds, False, f"+ {labels:,} labels")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--budget", type=float, default=60.0, help="seconds per run at most")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    console = Console(width=150)

    started = time.perf_counter()
    raw_predictions, raw_labels = generate_stream(
        args.seed, args.events, shift_at=int(args.events * 0.6), label_delay_seconds=600
    )
    predictions = [PredictionEvent.model_validate(p) for p in raw_predictions]
    labels = [LabelEvent.model_validate(x) for x in raw_labels]
    merged: list[PredictionEvent | LabelEvent] = sorted(
        [*predictions, *labels], key=lambda e: e.timestamp
    )
    numeric = [k for k, v in predictions[0].features.items() if isinstance(v, float)]
    console.print(
        f"{len(predictions):,} predictions + {len(labels):,} labels, {len(numeric)} numeric "
        f"features; generated and validated in {time.perf_counter() - started:.1f} s"
    )

    runs = [read_jsonl(raw_predictions, raw_labels)]
    for size in (1, 100, 5000):
        try:
            runs.append(fleet_monitor(merged, size, args.budget))
        except ImportError as exc:
            runs.append(Run(f"FleetMonitor, batch {size}", 0, 0.0, True, f"missing: {exc}"))
    runs.append(naive_ks(predictions, numeric, args.budget))
    try:
        runs.append(river_adwin(predictions, numeric, args.budget))
    except ImportError:
        runs.append(Run("river ADWIN per feature per event", 0, 0.0, True, "river missing"))

    table = Table("run", "predictions", "seconds", "predictions/s", "", "note",
                  title=f"monitor throughput, {args.events:,}-event stream")  # fmt: skip
    for run in runs:
        table.add_row(
            run.name, f"{run.predictions:,}", f"{run.seconds:.2f}", f"{run.rate:,.0f}",
            "partial" if run.partial else "", run.note,
        )  # fmt: skip
    console.print(table)


if __name__ == "__main__":
    main()
