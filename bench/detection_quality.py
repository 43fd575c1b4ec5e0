"""Detection quality on seeded synthetic streams: FleetMonitor vs river ADWIN vs Evidently's rule.

    .venv/bin/python bench/detection_quality.py [--seeds 5] [--jobs 2] [--stationary-events 200000]
        [--events 50000] [--change-at 20250] [--extra-config monitor.yaml] [--bench-python PATH]

Scenarios (streams.synthetic.generate_stream, 10 features: 7 numeric, 3 categorical; a label
for every prediction, ``--label-delay`` seconds later at one event per second):
stationary; a 0.5 and a 1 standard deviation mean shift of ``amount``; a reversed category mix of
``country``; a concept change (half the coefficients flip; only the labels show it).

Detectors, each fed the same stream:
- driftline FleetMonitor with the default MonitorConfig (zero configuration, labels joined);
- river ADWIN at its defaults, one per numeric feature on the raw values (alarm = detection);
- river ADWIN at its defaults on the 0/1 error stream, updated as labels arrive (the usual
  river recipe for concept drift; it sees nothing else);
- Evidently's default drift rule on our count windows (reference = first 2000 events, windows
  of 500): reference <= 1000 rows: KS p <= 0.05 (numeric), chi-square p < 0.05 (categorical);
  else normalised Wasserstein >= 0.1 (numeric), Jensen-Shannon >= 0.1 (categorical); numeric
  columns with <= 5 values are treated as categorical. Implemented here with scipy; when
  .venv-bench exists, the decisions are checked against evidently's own DataDriftPreset on a
  few windows (agreement printed). "per window" counts every flagged (window, feature) as an
  alarm, as a job that runs the report per window and alerts on drift would; "episodes" counts
  only the first of consecutive flagged windows per feature (generous to Evidently).

Scoring per seed: detection delay = events from the change (inclusive) to the first alarm for
the right feature and kind (feature_drift/data_quality of the changed feature; performance for
the concept change); missed = no such alarm before the stream ends; false alarms = alarms
before the change, plus alarms after it that the change does not explain (other features;
prediction_drift and performance count as consequences of a covariate shift: "follow-on
alarms", neither detections nor false alarms). ``--extra-config`` adds a FleetMonitor row with
that monitor configuration (e.g. smaller windows). Prints sums and means over seeds; no asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table
from scipy import stats
from scipy.spatial import distance

from streams.synthetic import DEFAULT_START, feature_specs, generate_stream

WARMUP, WINDOW, FEATURES = 2000, 500, 10
BENCH_VENV = Path(__file__).resolve().parent.parent / ".venv-bench"
HELPER = Path(__file__).resolve().parent / "baselines" / "evidently_windows.py"
Alarm = tuple[int, str, str | None]
"""(event index at which the alarm was raised, alert kind, feature or None)."""

FLEET = "driftline FleetMonitor, defaults"
ADWIN = "river ADWIN per numeric feature"
ADWIN_ERR = "river ADWIN on the error stream"
EV_WINDOW = "Evidently rule, per window"
EV_EPISODE = "Evidently rule, episodes"
DETECTORS = (FLEET, ADWIN, ADWIN_ERR, EV_WINDOW, EV_EPISODE)
_DATA_KINDS = frozenset({"feature_drift", "data_quality"})
_MODEL_KINDS = frozenset({"prediction_drift", "performance"})


@dataclass(frozen=True)
class Scenario:
    name: str
    events: int
    change_at: int | None = None
    stream: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of generate_stream that make the change."""
    target_feature: str | None = None
    target_kinds: frozenset[str] = frozenset()
    consequences: frozenset[str] = frozenset()
    """Kinds that follow from the change after it happened: neither detections nor false."""


def scenarios(stationary: int, events: int, change_at: int) -> list[Scenario]:
    shift, mix = "amount", "country"
    return [
        Scenario("stationary", stationary),
        Scenario("mean shift 0.5 sd (amount)", events, change_at,
                 {"shift_at": change_at, "shift_sigma": 0.5}, shift, _DATA_KINDS, _MODEL_KINDS),
        Scenario("mean shift 1 sd (amount)", events, change_at,
                 {"shift_at": change_at, "shift_sigma": 1.0}, shift, _DATA_KINDS, _MODEL_KINDS),
        Scenario("category mix reversed (country)", events, change_at,
                 {"categorical_shift_at": change_at}, mix, _DATA_KINDS, _MODEL_KINDS),
        Scenario("concept change (labels)", events, change_at,
                 {"concept_change_at": change_at}, None, frozenset({"performance"})),
    ]  # fmt: skip


# -- the stream ----------------------------------------------------------------------------


def _index(timestamp: str | datetime) -> int:
    """Event index of an event time (one prediction per second from DEFAULT_START)."""
    when = datetime.fromisoformat(timestamp) if isinstance(timestamp, str) else timestamp
    return int((when - DEFAULT_START).total_seconds())


def _columns(predictions: list[dict[str, Any]]) -> tuple[dict[str, np.ndarray], list[str]]:
    """Feature columns (float or str arrays) and the names of the numeric ones."""
    numeric = [s.name for s in feature_specs(FEATURES) if s.kind == "numeric"]
    columns: dict[str, np.ndarray] = {}
    for spec in feature_specs(FEATURES):
        values = [p["features"][spec.name] for p in predictions]
        columns[spec.name] = np.asarray(values, dtype=float if spec.kind == "numeric" else str)
    return columns, numeric


# -- detectors -----------------------------------------------------------------------------


def fleet_alarms(
    predictions: list[dict[str, Any]], labels: list[dict[str, Any]], config: str | None = None
) -> list[Alarm]:
    """FleetMonitor's firing alerts; ``config`` is a monitor YAML (None: the defaults)."""
    from detectors.monitor import FleetMonitor
    from schemas.events import LabelEvent, PredictionEvent
    from schemas.monitor_config import MonitorConfig, load_monitor_config

    preds = [PredictionEvent.model_validate(p) for p in predictions]
    labs = [LabelEvent.model_validate(x) for x in labels]
    merged: list[PredictionEvent | LabelEvent] = sorted(
        [*preds, *labs], key=lambda e: e.timestamp
    )  # stable: a prediction precedes a label of the same second
    wall = datetime(2030, 1, 1, tzinfo=UTC)
    settings = MonitorConfig() if config is None else load_monitor_config(config)
    monitor = FleetMonitor(settings, clock=lambda: wall)
    alerts = []
    for start in range(0, len(merged), 5000):
        part = merged[start : start + 5000]
        alerts += monitor.process(
            [e for e in part if isinstance(e, PredictionEvent)],
            [e for e in part if isinstance(e, LabelEvent)],
        )
    alerts += monitor.finish()
    return [(_index(a.fired_at), a.kind, a.feature) for a in alerts if a.status == "firing"]


def adwin_alarms(columns: dict[str, np.ndarray], numeric: list[str]) -> list[Alarm]:
    from river.drift import ADWIN

    alarms: list[Alarm] = []
    for name in numeric:
        detector = ADWIN()  # type: ignore[no-untyped-call]
        for index, value in enumerate(columns[name].tolist()):
            detector.update(value)  # type: ignore[no-untyped-call]
            if detector.drift_detected:
                alarms.append((index, "feature_drift", name))
    return alarms


def adwin_error_alarms(
    predictions: list[dict[str, Any]], labels: list[dict[str, Any]]
) -> list[Alarm]:
    """ADWIN on 1 - correct, in label arrival order; the alarm is raised at the label's time."""
    from river.drift import ADWIN

    predicted = {p["event_id"]: p["prediction"] for p in predictions}
    detector = ADWIN()  # type: ignore[no-untyped-call]
    alarms: list[Alarm] = []
    for label in labels:  # generate_stream returns labels in arrival order
        detector.update(float(predicted[label["event_id"]] != label["label"]))  # type: ignore[no-untyped-call]
        if detector.drift_detected:
            alarms.append((_index(label["timestamp"]), "performance", None))
    return alarms


def evidently_rule(
    reference: np.ndarray, current: np.ndarray, numeric: bool
) -> tuple[str, float, bool]:
    """Evidently's default column test (legacy ``_get_default_stattest``): (test, score, drift)."""
    n_values = np.unique(np.concatenate([reference, current])).size
    small = reference.size <= 1000
    if numeric and n_values > 5:
        if small:
            p = float(stats.ks_2samp(reference, current).pvalue)
            return "ks", p, p <= 0.05
        score = stats.wasserstein_distance(reference, current) / max(
            float(np.std(reference)), 0.001
        )
        return "wasserstein", float(score), score >= 0.1
    keys = np.unique(np.concatenate([reference, current]))
    ref_counts = np.array([np.sum(reference == k) for k in keys], dtype=float)
    cur_counts = np.array([np.sum(current == k) for k in keys], dtype=float)
    if not small:
        score = float(
            distance.jensenshannon(ref_counts / reference.size, cur_counts / current.size)
        )
        return "jensenshannon", score, score >= 0.1
    if n_values > 2:
        expected = ref_counts * current.size / reference.size
        p = float(stats.chisquare(cur_counts, expected).pvalue)
        return "chisquare", p, p < 0.05
    if n_values == 1:
        return "z", 1.0, False
    p1, p2 = 1 - ref_counts[0] / reference.size, 1 - cur_counts[0] / current.size
    pooled = (p1 * reference.size + p2 * current.size) / (reference.size + current.size)
    z = (p1 - p2) / np.sqrt(pooled * (1 - pooled) * (1 / reference.size + 1 / current.size))
    p = float(2 * stats.norm.sf(abs(z)))
    return "z", p, p < 0.05


def evidently_alarms(
    columns: dict[str, np.ndarray], numeric: list[str]
) -> tuple[list[Alarm], list[Alarm]]:
    """(every flagged window x feature, first flagged window of each run) at the window's end."""
    n = next(iter(columns.values())).size
    per_window: list[Alarm] = []
    episodes: list[Alarm] = []
    for name, values in columns.items():
        reference, was = values[:WARMUP], False
        for start in range(WARMUP, n - WINDOW + 1, WINDOW):
            _, _, drift = evidently_rule(reference, values[start : start + WINDOW], name in numeric)
            end = start + WINDOW - 1
            if drift:
                per_window.append((end, "feature_drift", name))
                if not was:
                    episodes.append((end, "feature_drift", name))
            was = drift
    return per_window, episodes


def run_case(
    scenario: Scenario, seed: int, label_delay: float, extra: str | None = None
) -> dict[str, Any]:
    """One (scenario, seed): every detector's alarms and the seconds each took."""
    predictions, labels = generate_stream(
        seed, scenario.events, features=FEATURES, label_delay_seconds=label_delay,
        **scenario.stream,
    )  # fmt: skip
    columns, numeric = _columns(predictions)
    alarms: dict[str, list[Alarm]] = {}
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    alarms[FLEET] = fleet_alarms(predictions, labels)
    seconds[FLEET] = time.perf_counter() - started
    started = time.perf_counter()
    alarms[ADWIN] = adwin_alarms(columns, numeric)
    seconds[ADWIN] = time.perf_counter() - started
    started = time.perf_counter()
    alarms[ADWIN_ERR] = adwin_error_alarms(predictions, labels)
    seconds[ADWIN_ERR] = time.perf_counter() - started
    if extra is not None:
        started = time.perf_counter()
        alarms[extra_name(extra)] = fleet_alarms(predictions, labels, extra)
        seconds[extra_name(extra)] = time.perf_counter() - started
    started = time.perf_counter()
    alarms[EV_WINDOW], alarms[EV_EPISODE] = evidently_alarms(columns, numeric)
    seconds[EV_WINDOW] = seconds[EV_EPISODE] = time.perf_counter() - started
    return {"scenario": scenario.name, "seed": seed, "alarms": alarms, "seconds": seconds}


def extra_name(config: str) -> str:
    return f"driftline FleetMonitor, {Path(config).name}"


# -- scoring -------------------------------------------------------------------------------


def score(alarms: Sequence[Alarm], scenario: Scenario) -> tuple[int | None, int, int]:
    """(delay in events or None when missed, false alarms, alarms that follow from the change)."""
    first, false, follow = None, 0, 0
    for index, kind, feature in sorted(alarms, key=lambda a: a[0]):
        if scenario.change_at is None or index < scenario.change_at:
            false += 1
        elif kind in scenario.target_kinds and scenario.target_feature in (None, feature):
            first = index if first is None else first
        elif kind in scenario.consequences:
            follow += 1
        else:
            false += 1
    return (None if first is None else first - (scenario.change_at or 0) + 1), false, follow


@dataclass
class Tally:
    seeds: int = 0
    delays: list[int] = field(default_factory=list)
    false: int = 0
    follow: int = 0
    events: int = 0
    seconds: float = 0.0

    @property
    def false_per_100k(self) -> float:
        return self.false / self.events * 1e5 if self.events else 0.0

    @property
    def mean_delay(self) -> float | None:
        return float(np.mean(self.delays)) if self.delays else None


# -- evidently's own decisions (in .venv-bench) -----------------------------------------------


def bench_python(given: str | None) -> Path | None:
    path = Path(given) if given else BENCH_VENV / "bin" / "python"
    return path if path.exists() else None


def agreement(python: Path, cases: list[tuple[Scenario, int]], per_case: int) -> str:
    """Run evidently's DataDriftPreset on windows around each change; compare with our rule."""
    spec: dict[str, Any] = {"cases": []}
    ours: list[dict[str, tuple[str, float, bool]]] = []
    for scenario, seed in cases:
        predictions, _ = generate_stream(
            seed, scenario.events, features=FEATURES, **scenario.stream
        )
        columns, numeric = _columns(predictions)
        spec["numerical"] = numeric
        spec["categorical"] = [name for name in columns if name not in numeric]
        case: dict[str, Any] = {"reference": {n: v[:WARMUP].tolist() for n, v in columns.items()}}
        case["windows"] = []
        middle = ((scenario.change_at or WARMUP) - WARMUP) // WINDOW
        for j in range(max(middle - per_case // 2, 0), middle + (per_case + 1) // 2):
            start = WARMUP + j * WINDOW
            window = {name: v[start : start + WINDOW] for name, v in columns.items()}
            case["windows"].append({name: w.tolist() for name, w in window.items()})
            ours.append({name: evidently_rule(columns[name][:WARMUP], w, name in numeric)
                         for name, w in window.items()})  # fmt: skip
        spec["cases"].append(case)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(spec, handle)
    try:
        done = subprocess.run(
            [str(python), str(HELPER), "decide", handle.name],
            capture_output=True, text=True, check=False, timeout=1800,
        )  # fmt: skip
    finally:
        os.unlink(handle.name)
    if done.returncode != 0:
        return f"evidently check failed (exit {done.returncode}): {done.stderr.strip()[-400:]}"
    theirs = json.loads(done.stdout)
    same = total = 0
    worst = 0.0
    for mine, their in zip(ours, theirs["windows"], strict=True):
        for name, (_, value, drift) in mine.items():
            total += 1
            same += drift == their[name]["drift"]
            worst = max(worst, abs(value - their[name]["score"]))
    return (
        f"evidently {theirs['evidently']} DataDriftPreset vs the scipy rule: {same}/{total} "
        f"(window, column) decisions agree ({100 * same / total:.1f} %), max |score difference| "
        f"{worst:.2g}, {len(ours)} windows around the changes, "
        f"{theirs['seconds_per_window']:.2f} s per window in evidently"
    )


# -- main ----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=2, help="worker processes")
    parser.add_argument("--stationary-events", type=int, default=200_000)
    parser.add_argument("--events", type=int, default=50_000, help="events of change scenarios")
    parser.add_argument("--change-at", type=int, default=20_250, help="mid-window by default")
    parser.add_argument("--label-delay", type=float, default=600.0, help="seconds (= events)")
    parser.add_argument("--agree-windows", type=int, default=12, help="per scenario checked")
    parser.add_argument("--bench-python", help="python of the baseline venv (.venv-bench)")
    parser.add_argument("--extra-config", help="monitor YAML: one more FleetMonitor row")
    args = parser.parse_args(argv)
    console = Console(width=180)
    cases = scenarios(args.stationary_events, args.events, args.change_at)
    console.print(
        f"{args.seeds} seeds x {len(cases)} scenarios; stationary {args.stationary_events:,} "
        f"events, others {args.events:,} with the change at event {args.change_at:,}; "
        f"{FEATURES} features; labels {args.label_delay:g} events late; {args.jobs} processes"
    )
    detectors = list(DETECTORS)
    if args.extra_config:
        detectors.insert(1, extra_name(args.extra_config))
    started = time.perf_counter()
    tallies = {(c.name, d): Tally() for c in cases for d in detectors}
    by_name = {c.name: c for c in cases}
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(run_case, c, seed, args.label_delay, args.extra_config)
                   for c in cases for seed in range(args.seeds)]  # fmt: skip
        for future in futures:
            result = future.result()
            scenario = by_name[result["scenario"]]
            for detector, alarms in result["alarms"].items():
                delay, false, follow = score(alarms, scenario)
                tally = tallies[scenario.name, detector]
                tally.seeds += 1
                tally.delays += [] if delay is None else [delay]
                tally.false += false
                tally.follow += follow
                tally.events += scenario.events
                tally.seconds += result["seconds"][detector]
    console.print(f"ran in {time.perf_counter() - started:.0f} s")

    table = Table(title=f"detection quality (delays in events; sums and means over {args.seeds} "
                        "seeds)")  # fmt: skip
    for name in ("scenario", "detector", "detected", "mean delay", "delay min-max",
                 "false alarms", "false / 100k events", "follow-on alarms", "CPU s"):  # fmt: skip
        table.add_column(name, no_wrap=name in ("scenario", "detector"))
    for case in cases:
        for detector in detectors:
            t = tallies[case.name, detector]
            change = case.change_at is not None
            table.add_row(
                case.name if detector == FLEET else "", detector,
                f"{len(t.delays)}/{t.seeds}" if change else "-",
                f"{t.mean_delay:,.0f}" if t.mean_delay is not None else "-",
                f"{min(t.delays):,}-{max(t.delays):,}" if t.delays else "-",
                f"{t.false}", f"{t.false_per_100k:.1f}", f"{t.follow}" if change else "-",
                f"{t.seconds:.1f}", end_section=detector == detectors[-1],
            )  # fmt: skip
    console.print(table)
    _verdicts(console, cases, tallies)

    python = bench_python(args.bench_python)
    if python is None:
        console.print(
            f"[yellow]{BENCH_VENV} is missing: evidently's own decisions were not checked. "
            "Create it with `make bench-venv` (evidently + quixstreams in their own venv).[/]"
        )
    else:
        check = [(by_name["mean shift 1 sd (amount)"], 0),
                 (by_name["category mix reversed (country)"], 0)]  # fmt: skip
        console.print(agreement(python, check, args.agree_windows))


def _verdicts(
    console: Console, cases: list[Scenario], tallies: dict[tuple[str, str], Tally]
) -> None:
    def total(detector: str) -> tuple[int, int]:
        items = [tallies[c.name, detector] for c in cases]
        return sum(t.false for t in items), sum(t.events for t in items)

    for case in cases[1:3]:
        ours, adwin = tallies[case.name, FLEET], tallies[case.name, ADWIN]
        console.print(
            f"goal 'at least ADWIN's speed' on {case.name}: FleetMonitor "
            f"{_fmt(ours.mean_delay)} vs ADWIN {_fmt(adwin.mean_delay)} events -> "
            + ("met" if ours.mean_delay is not None and adwin.mean_delay is not None
               and ours.mean_delay <= adwin.mean_delay else "NOT met")
        )  # fmt: skip
    for detector in (ADWIN, EV_WINDOW, EV_EPISODE):
        (mine, events), (theirs, _) = total(FLEET), total(detector)
        console.print(
            f"false alarms, all scenarios: FleetMonitor {mine} vs {detector} {theirs} "
            f"({mine / events * 1e5:.2f} vs {theirs / events * 1e5:.1f} per 100k events)"
        )


def _fmt(value: float | None) -> str:
    return "missed" if value is None else f"{value:,.0f}"


if __name__ == "__main__":
    main()
