"""Wall time of ``driftline backtest`` against Evidently's per-window drift reports, same file.

    .venv/bin/python bench/backtest_vs_evidently.py [--events 1000000] [--evidently-windows 100]
                                                    [--with-labels] [--regenerate]

The file: a seeded stream (streams.synthetic.generate_stream: 10 features, 7 numeric and 3
categorical; a 1 sd shift of ``amount`` half-way) written once as JSONL under
``.driftline/bench/`` (git-ignored; reused while its parameters match).

- driftline: ``streams.cli_backtest.run_backtest`` (what ``driftline backtest`` runs) with the
  default MonitorConfig, timed from opening the file to the last alert: it reads and validates
  every event, and per window of 500 (reference = first 2000 events) runs KS, PSI, Wasserstein
  and Jensen-Shannon on every numeric feature, chi-square, PSI, JS and unseen rate on every
  categorical one, prediction and score drift and the data-quality checks. Predictions only by
  default (the same input Evidently gets); ``--with-labels`` adds a run with the labels joined.
- Evidently (in .venv-bench, ``make bench-venv``): the same file read through pandas
  (``read_json(lines=True)``, features to columns), the first 2000 rows as the reference and
  one ``Report([DataDriftPreset()])`` per window of 500 rows. Evidently is slow per window,
  so only the first ``--evidently-windows`` windows are timed and the time of all windows is
  extrapolated linearly from their mean (stated in the table). Evidently computes one test per
  column per window, far less than driftline does.

Prints one table and the speed ratio; no asserts.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
BENCH_VENV = ROOT / ".venv-bench"
HELPER = ROOT / "bench" / "baselines" / "evidently_windows.py"
WARMUP, WINDOW = 2000, 500


@dataclass
class Row:
    name: str
    events: int
    seconds: float
    note: str

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


def stream_file(events: int, seed: int, regenerate: bool, console: Console) -> Path:
    """predictions.jsonl (and labels.jsonl) under .driftline/bench/, generated when needed."""
    from streams.synthetic import generate_stream, write_stream

    folder = ROOT / ".driftline" / "bench" / f"backtest-{events}-seed{seed}"
    params = {"events": events, "seed": seed, "shift_at": events // 2, "shift_sigma": 1.0,
              "label_delay_seconds": 600.0, "features": 10}  # fmt: skip
    marker = folder / "params.json"
    predictions = folder / "predictions.jsonl"
    if (
        not regenerate
        and predictions.exists()
        and marker.exists()
        and json.loads(marker.read_text()) == params
    ):
        console.print(f"reusing {predictions} ({predictions.stat().st_size / 1e6:,.0f} MB)")
        return predictions
    started = time.perf_counter()
    preds, labels = generate_stream(
        seed, events, features=10, shift_at=events // 2, shift_sigma=1.0,
        label_delay_seconds=600.0,
    )  # fmt: skip
    write_stream(folder, preds, labels, "jsonl")
    marker.write_text(json.dumps(params))
    console.print(
        f"wrote {predictions} ({predictions.stat().st_size / 1e6:,.0f} MB) and labels in "
        f"{time.perf_counter() - started:.0f} s"
    )
    return predictions


class _TimedMonitor:
    """FleetMonitor with the seconds spent inside it (the rest of a backtest is reading)."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.seconds = inner, 0.0

    def process(self, predictions: Any, labels: Any = ()) -> Any:
        started = time.perf_counter()
        try:
            return self.inner.process(predictions, labels)
        finally:
            self.seconds += time.perf_counter() - started

    def process_columns(self, columns: Any, labels: Any = ()) -> Any:
        started = time.perf_counter()  # the columnar path run_backtest takes by default
        try:
            return self.inner.process_columns(columns, labels)
        finally:
            self.seconds += time.perf_counter() - started

    def finish(self) -> Any:
        started = time.perf_counter()
        try:
            return self.inner.finish()
        finally:
            self.seconds += time.perf_counter() - started

    def set_reference(self, model: str, profile: Any) -> None:
        self.inner.set_reference(model, profile)


def driftline(predictions: Path, with_labels: bool) -> list[Row]:
    from detectors.monitor import FleetMonitor
    from schemas.monitor_config import MonitorConfig
    from streams.cli_backtest import run_backtest

    monitors: list[_TimedMonitor] = []

    def factory(config: Any, **kwargs: Any) -> _TimedMonitor:
        monitors.append(_TimedMonitor(FleetMonitor(config, **kwargs)))
        return monitors[-1]

    labels = predictions.with_name("labels.jsonl") if with_labels else None
    started = time.perf_counter()
    result = run_backtest(predictions, labels, MonitorConfig(), io.BytesIO(),
                          monitor_factory=factory)  # fmt: skip
    seconds = time.perf_counter() - started
    inside = monitors[0].seconds
    fired = sum(alert.status == "firing" for alert in result.alerts)
    what = "predictions + labels" if with_labels else "predictions"
    return [
        Row(f"driftline backtest ({what})", result.predictions, seconds,
            f"run_backtest: read + validate + monitor; {result.labels:,} labels; "
            f"{fired} alerts fired; {result.invalid_predictions} invalid rows"),
        Row("  of which FleetMonitor.process", result.predictions, inside,
            f"reading + validation took the other {seconds - inside:.1f} s"),
    ]  # fmt: skip


def evidently(python: Path, predictions: Path, windows: int) -> tuple[list[Row], dict[str, Any]]:
    done = subprocess.run(
        [str(python), str(HELPER), "time-file", str(predictions), "--warmup", str(WARMUP),
         "--window", str(WINDOW), "--windows", str(windows)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"evidently helper failed: {done.stderr.strip()[-600:]}")
    timing: dict[str, Any] = json.loads(done.stdout)
    per_window = sum(timing["window_seconds"]) / max(timing["windows_timed"], 1)
    all_windows = per_window * timing["windows_total"]
    read = timing["read_seconds"] + timing["setup_seconds"]
    rows = [
        Row(
            f"Evidently {timing['evidently']} DataDriftPreset per window (extrapolated)",
            timing["rows"],
            read + all_windows,
            f"{timing['windows_timed']} of {timing['windows_total']:,} windows timed, "
            f"{per_window:.3f} s each, x {timing['windows_total']:,} = {all_windows:,.0f} s "
            f"(linear extrapolation) + pandas read {read:.1f} s",
        ),
        Row(
            "  of which the reports alone (extrapolated)",
            timing["rows"],
            all_windows,
            f"{timing['drifted_column_windows']} drifted (window, column) pairs in the "
            f"timed windows; import {timing['import_seconds']:.1f} s not counted",
        ),
    ]
    return rows, timing


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--evidently-windows", type=int, default=100, help="windows timed")
    parser.add_argument("--with-labels", action="store_true", help="also run with labels")
    parser.add_argument("--regenerate", action="store_true", help="rewrite the input file")
    parser.add_argument("--bench-python", help="python of the baseline venv (.venv-bench)")
    args = parser.parse_args(argv)
    console = Console(width=170)
    predictions = stream_file(args.events, args.seed, args.regenerate, console)

    rows = driftline(predictions, with_labels=False)
    ours = rows[0]
    console.print(f"driftline done in {ours.seconds:.0f} s")
    if args.with_labels:
        rows += driftline(predictions, with_labels=True)
    python = Path(args.bench_python) if args.bench_python else BENCH_VENV / "bin" / "python"
    evidently_rate = None
    if python.exists():
        theirs, _ = evidently(python, predictions, args.evidently_windows)
        rows += theirs
        evidently_rate = theirs[0].rate
    else:
        console.print(
            f"[yellow]{BENCH_VENV} is missing, so Evidently was not timed: create it with "
            "`make bench-venv` (evidently + quixstreams in their own venv) and rerun.[/]"
        )

    table = Table("run", "events", "seconds", "events/s", "note",
                  title=f"backtest of {args.events:,} prediction events (JSONL), windows of "
                        f"{WINDOW} vs the first {WARMUP}")  # fmt: skip
    for row in rows:
        table.add_row(row.name, f"{row.events:,}", f"{row.seconds:,.1f}", f"{row.rate:,.0f}",
                      row.note)  # fmt: skip
    console.print(table)
    if evidently_rate:
        ratio = ours.rate / evidently_rate
        verdict = "met" if ratio >= 50 else "NOT met"
        console.print(
            f"driftline backtest (predictions) is {ratio:,.1f}x faster than Evidently "
            f"per-window reports, reading included (goal >= 50x: {verdict})"
        )


if __name__ == "__main__":
    main()
