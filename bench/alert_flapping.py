"""Alert flapping on persistent shifts: the alert lifecycle with and without hysteresis.

    .venv/bin/python bench/alert_flapping.py [--seeds 3] [--sigmas 0.5,1.0,1.5]
        [--shift-events 30000] [--after 8000] [--clear-fraction F] [--clear-confidence C]

Scenarios (``streams.synthetic.generate_stream``, 10 features, no labels, one event per
second): each of the 7 numeric features in turn moves by ``sigma`` standard deviations from
event 2,600 (after the warm-up and one window) to ``--shift-events``; the same seed without
the shift continues for ``--after`` events. A shift that persists is one problem: ideally one
page per fingerprint it moves, resolved once the stream is back.

Rows, each fed the same streams through ``FleetMonitor`` (default configuration otherwise):
- ``clear_fraction 1.0``, ``clear_confidence 0``: a window within its threshold counts towards
  resolving (the rule before hysteresis; a CUSUM page's window mean may reach k);
- ``--clear-fraction`` (the default, 0.5), ``clear_confidence 0``: shares (out-of-range, null
  rate...) judged by their value (the rule before the 36th session);
- ``--clear-fraction`` and ``--clear-confidence`` (both default to the monitor's defaults):
  shares judged by their confidence bound.

Columns: firing alerts; fingerprints paged more than once (re-fired); resolves while the shift
still lasted (each one a page that will come back); episodes still open at the end of the
stream (a recovery never announced); and the delay from the end of the shift to each resolve
of an episode open at that moment (events, median and max). No asserts.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from detectors.monitor import FleetMonitor
from schemas.events import Alert, PredictionEvent
from schemas.monitor_config import AlertingConfig, parse_monitor_config
from streams.synthetic import DEFAULT_START, feature_specs, generate_stream

SHIFT_STARTS = 2_600


@dataclass
class Tally:
    """One row's counts over every scenario."""

    firing: int = 0
    refired: int = 0
    refired_by: Counter[str] = field(default_factory=Counter)
    """Re-fired fingerprints per detector (out_of_range, ks...)."""
    resolved_during_shift: int = 0
    open_at_end: int = 0
    resolve_delays: list[float] = field(default_factory=list)
    seconds: float = 0.0


def scenario(
    seed: int, feature: str, sigma: float, shift_ends: int, after: int
) -> list[PredictionEvent]:
    predictions, _ = generate_stream(
        seed, shift_ends + after, features=10, label_fraction=0.0, shift_at=SHIFT_STARTS,
        shift_feature=feature, shift_sigma=sigma, shift_until=shift_ends,
    )  # fmt: skip
    return [PredictionEvent.model_validate(row) for row in predictions]


def _index(alert: Alert) -> float:
    return (alert.window.end - DEFAULT_START).total_seconds()


def _open(alerts: list[Alert]) -> set[str]:
    """Fingerprints whose last alert among ``alerts`` (in event-time order) is a firing one."""
    last = {alert.fingerprint: alert.status for alert in alerts}
    return {key for key, status in last.items() if status == "firing"}


def tally(alerts: list[Alert], shift_ends: int, into: Tally) -> None:
    """Add one scenario's alerts to a row."""
    alerts = sorted(alerts, key=_index)
    firing = Counter(a.fingerprint for a in alerts if a.status == "firing")
    into.firing += sum(firing.values())
    into.refired += sum(1 for n in firing.values() if n > 1)
    detector_of = {a.fingerprint: a.detector for a in alerts}
    into.refired_by.update(detector_of[key] for key, n in firing.items() if n > 1)
    during = [a for a in alerts if _index(a) < shift_ends]
    into.resolved_during_shift += sum(1 for a in during if a.status == "resolved")
    open_at_shift_end = _open(during)
    after = alerts[len(during) :]
    # The first resolve of each fingerprint once the shift ended (reversed: earlier ones win).
    resolves = {a.fingerprint: _index(a) for a in reversed(after) if a.status == "resolved"}
    into.resolve_delays += [
        resolves[key] - shift_ends for key in open_at_shift_end if key in resolves
    ]
    into.open_at_end += len(_open(alerts))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--sigmas", default="0.5,1.0,1.5", help="comma-separated shift sizes")
    parser.add_argument("--shift-events", type=int, default=30_000, help="event the shift ends")
    parser.add_argument("--after", type=int, default=8_000, help="events after the shift")
    defaults = AlertingConfig()
    parser.add_argument("--clear-fraction", type=float, default=defaults.clear_fraction)
    parser.add_argument("--clear-confidence", type=float, default=defaults.clear_confidence)
    args = parser.parse_args(argv)
    sigmas = [float(s) for s in args.sigmas.split(",")]
    numeric = [s.name for s in feature_specs(10) if s.kind == "numeric"]
    rules = [(1.0, 0.0), (args.clear_fraction, 0.0), (args.clear_fraction, args.clear_confidence)]
    rows = {(sigma, rule): Tally() for sigma in sigmas for rule in rules}
    cases = [(seed, f, s) for s in sigmas for seed in range(args.seeds) for f in numeric]
    with Progress() as progress:
        task = progress.add_task("scenarios", total=len(cases))
        for seed, feature, sigma in cases:
            events = scenario(1_000 + seed, feature, sigma, args.shift_events, args.after)
            gc.collect()
            gc.freeze()  # else a full collection scanning the 38k events lands in either row
            for fraction, confidence in rules:
                alerting = {"clear_fraction": fraction, "clear_confidence": confidence}
                config = parse_monitor_config({"defaults": {"alerting": alerting}})
                started = time.process_time()
                monitor = FleetMonitor(config, clock=lambda: datetime.now(UTC))
                alerts = monitor.process(events) + monitor.finish()
                row = rows[(sigma, (fraction, confidence))]
                row.seconds += time.process_time() - started
                tally(alerts, args.shift_events, row)
            gc.unfreeze()
            progress.advance(task)
    table = Table(
        title=f"{args.seeds} seeds x {len(numeric)} features per shift size; shift from event "
        f"{SHIFT_STARTS:,} to {args.shift_events:,}, then {args.after:,} events without it"
    )
    for column in ("shift", "clear_fraction", "clear_confidence", "firing",
                   "re-fired fingerprints", "re-fired by detector", "resolved during the shift",
                   "open at the end", "resolve delay (median / max)", "CPU s"):  # fmt: skip
        table.add_column(column, justify="right")
    for (sigma, (fraction, confidence)), row in rows.items():
        delays = row.resolve_delays
        delay = f"{statistics.median(delays):,.0f} / {max(delays):,.0f}" if delays else "-"
        table.add_row(
            f"{sigma} sd", f"{fraction}{' (before)' if fraction == 1.0 else ''}", f"{confidence}",
            str(row.firing), str(row.refired),
            ", ".join(f"{name} {n}" for name, n in row.refired_by.most_common()) or "-",
            str(row.resolved_during_shift), str(row.open_at_end), delay, f"{row.seconds:.1f}",
        )  # fmt: skip
    Console(width=150).print(table)


if __name__ == "__main__":
    main()
