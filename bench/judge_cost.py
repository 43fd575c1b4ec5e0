"""Cost of the live judge per window delta, next to the ingest's cost of publishing one.

    .venv/bin/python bench/judge_cost.py [--events 30000] [--repeats 3] [--profile]
        [--delta-events 250] [--save FILE] [--baseline FILE]

Deltas are built as the live worker builds them (``MonitorKit.fold_partition``): seeded
``streams.synthetic.generate_stream`` events (one model, 10 features: 7 numeric, 3
categorical, a label per prediction about an hour later), validated before any timing, folded
by a ``PartitionAccumulator`` (labels joined by a ``LabelJoiner``) and drained every 250
predictions (``--delta-events``: a worker judging many models publishes far smaller deltas);
each delta's ``to_state()`` goes through a JSON round trip, as over Kafka.
Then, side by side in one process (default ``MonitorConfig``; the judge has an ``on_point``
callback, like the worker's, so every statistic is computed):

a. ``WindowDelta.from_state`` + ``ModelJudge.apply`` per delta (what the judge agent does
   per sketches message), with a fresh judge: the warm-up, then windows whose null
   thresholds (Wasserstein bootstrap, PSI/JS, data-quality and error-rate quantiles) are
   computed once per reference and window size, then cached (and kept in the judge state);
a2. the next ``--events`` predictions' deltas through the judge of (a): the steady state of a
   long-running judge (thresholds cached; a window with a new number of labels still
   computes its error-rate threshold);
b. ``judge.to_state()`` + ``json.dumps`` of it (without the reference, stored apart), once
   per N deltas (N = 1, 10), as after each judge batch; per delta and per call;
c. the ingest's ``delta.to_state()`` + ``json.dumps`` per drained delta.

Times are CPU time of the process (``time.process_time``: less sensitive to a shared box
than wall time), best of ``--repeats`` passes. The alerts and every statistic point
are hashed: equal digests before and after a change mean the same decisions. ``--save``
writes the numbers as JSON; ``--baseline FILE`` prints such numbers as a "before" column.
``--profile`` cProfiles the apply path (a) and prints the top 15 functions by own time and by
cumulative time. No asserts.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import json
import pstats
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from detectors.accumulate import PartitionAccumulator
from detectors.calibration import NullThresholds
from detectors.evaluate_checks import CheckContext
from detectors.join import LabelJoiner
from detectors.judge import ModelJudge, StatisticPoint
from detectors.window import WindowDelta
from schemas.events import Alert, LabelEvent, PredictionEvent
from schemas.monitor_config import MonitorConfig
from streams.synthetic import generate_stream

clock = time.process_time
"""CPU seconds of this process: on a shared box, less noisy than wall time."""
DELTA_EVENTS = 250
MODEL = "fraud-scorer"
FIXED_NOW = datetime(2030, 1, 1, tzinfo=UTC)
THRESHOLDS: tuple[tuple[Any, str], ...] = (
    (NullThresholds, "wasserstein"),
    (NullThresholds, "histogram"),
    (CheckContext, "null_threshold"),
    (CheckContext, "range_threshold"),
    (CheckContext, "unseen_threshold"),
    (CheckContext, "error_threshold"),
)
"""The threshold computations (cached by the judge: these calls include the cache hits)."""


@dataclass
class Built:
    states: list[dict[str, Any]]
    """Delta states after a JSON round trip, in publishing order."""
    events: int
    ingest_seconds: float
    """delta.to_state() + json.dumps, summed over every delta."""
    ingest_bytes: int


def build(seed: int, events: int, labels: bool, delta_events: int = DELTA_EVENTS) -> Built:
    raw_predictions, raw_labels = generate_stream(
        seed, events, MODEL, features=10, label_fraction=1.0 if labels else 0.0
    )
    predictions = [PredictionEvent.model_validate(p) for p in raw_predictions]
    label_events = [LabelEvent.model_validate(item) for item in raw_labels]
    config = MonitorConfig()
    joiner = LabelJoiner({}, {}, ttl_seconds=config.join.ttl_seconds)
    accumulator = PartitionAccumulator(config)
    states: list[dict[str, Any]] = []
    seconds, size, next_label = 0.0, 0, 0
    for start in range(0, len(predictions), delta_events):
        chunk = predictions[start : start + delta_events]
        accumulator.add_predictions(chunk)
        accumulator.add_outcomes(joiner.add_predictions(chunk))
        # The labels read by the time of the chunk's last prediction (real-time reading).
        until = chunk[-1].timestamp
        stop = next_label
        while stop < len(label_events) and label_events[stop].timestamp <= until:
            stop += 1
        if stop > next_label:
            accumulator.add_outcomes(joiner.add_labels(label_events[next_label:stop]))
            next_label = stop
        for delta in accumulator.drain():
            began = clock()
            text = json.dumps(delta.to_state(), separators=(",", ":"))
            seconds += clock() - began
            size += len(text)
            states.append(json.loads(text))
    return Built(states, len(predictions), seconds, size)


class Digest:
    """The alerts and statistic points of a pass (decisions and what they were made of)."""

    def __init__(self) -> None:
        self.points: list[StatisticPoint] = []
        self.point = self.points.append  # the judge's on_point: as cheap as possible
        self.alerts: list[Alert] = []

    def summary(self) -> dict[str, str]:
        alerts = hashlib.sha256()
        for alert in self.alerts:
            alerts.update(repr((
                alert.fingerprint, alert.status, alert.statistic, alert.threshold, alert.p_value,
                alert.window, alert.fired_at, alert.summary,
            )).encode())  # fmt: skip
        points = hashlib.sha256(repr(self.points).encode())
        return {
            "alerts": f"{len(self.alerts)} alerts {alerts.hexdigest()[:16]}",
            "points": f"{len(self.points)} points {points.hexdigest()[:16]}",
        }


@contextmanager
def timing_thresholds(total: list[float]) -> Iterator[None]:
    """Adds the time spent in threshold computations to ``total[0]`` while active."""
    originals = [(owner, name, getattr(owner, name)) for owner, name in THRESHOLDS]

    def timed(method: Callable[..., float]) -> Callable[..., float]:
        def call(*args: Any, **kwargs: Any) -> float:
            began = clock()
            try:
                return method(*args, **kwargs)
            finally:
                total[0] += clock() - began

        return call

    for owner, name, method in originals:
        setattr(owner, name, timed(method))
    try:
        yield
    finally:
        for owner, name, method in originals:
            setattr(owner, name, method)


@dataclass
class Pass:
    load: float = 0.0
    apply: float = 0.0
    dump: float = 0.0
    dumps: int = 0
    dumped_bytes: int = 0


def run(
    judge: ModelJudge, states: list[dict[str, Any]], digest: Digest, state_every: int | None
) -> Pass:
    out = Pass()
    for i, state in enumerate(states, 1):
        t0 = clock()
        delta = WindowDelta.from_state(state)
        t1 = clock()
        alerts = judge.apply(delta)
        t2 = clock()
        out.load, out.apply = out.load + t1 - t0, out.apply + t2 - t1
        digest.alerts.extend(alerts)
        if state_every is not None and (i % state_every == 0 or i == len(states)):
            t3 = clock()
            judged = judge.to_state()
            judged.pop("reference", None)  # the worker stores it under its own key
            text = json.dumps(judged, separators=(",", ":"))
            out.dump += clock() - t3
            out.dumps += 1
            out.dumped_bytes += len(text)
    return out


def new_judge(digest: Digest) -> ModelJudge:
    return ModelJudge(MODEL, MonitorConfig(), clock=lambda: FIXED_NOW, on_point=digest.point)


def profile_apply(states: list[dict[str, Any]]) -> None:
    judge = new_judge(Digest())
    profiler = cProfile.Profile()
    profiler.enable()
    for state in states:
        judge.apply(WindowDelta.from_state(state))
    profiler.disable()
    for order in ("tottime", "cumulative"):
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).strip_dirs().sort_stats(order).print_stats(15)
        text = out.getvalue()
        print(f"\n--- from_state + apply (a), top 15 by {order} ---")
        print(text[text.find("   ncalls") :].rstrip())


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-labels", action="store_true", help="predictions only")
    parser.add_argument(
        "--delta-events", type=int, default=DELTA_EVENTS,
        help="predictions per delta (a worker with many models publishes small ones)",
    )  # fmt: skip
    parser.add_argument("--profile", action="store_true", help="cProfile the apply path")
    parser.add_argument("--save", type=Path, help="write the numbers as JSON")
    parser.add_argument("--baseline", type=Path, help="JSON of --save: print it as 'before'")
    args = parser.parse_args()

    built = build(args.seed, 2 * args.events, not args.no_labels, args.delta_events)
    half = len(built.states) // 2
    states, later = built.states[:half], built.states[half:]
    n = len(states)
    print(f"{built.events:,} predictions -> {len(built.states)} deltas of <= {args.delta_events} "
          f"predictions (labels {'off' if args.no_labels else 'on'}), one model, 10 "
          f"features: (a) the first {n}, (a2) the next {len(later)}; best of "
          f"{args.repeats}")  # fmt: skip

    # Rows: name -> (seconds per delta, events per delta).
    rows: dict[str, tuple[float, float]] = {}
    per_delta = built.events / len(built.states)
    fresh: list[Pass] = []
    again: list[Pass] = []
    thresholds: list[float] = []
    thresholds_later: list[float] = []
    digests: dict[str, str] = {}
    for _ in range(args.repeats):
        digest = Digest()
        judge = new_judge(digest)
        spent = [0.0, 0.0]
        with timing_thresholds(spent):
            fresh.append(run(judge, states, digest, None))
            digests = digest.summary()
            spent[1], spent[0] = spent[0], 0.0
            again.append(run(judge, later, digest, None))
        thresholds.append(spent[1])
        thresholds_later.append(spent[0])
    best = min(fresh, key=lambda p: p.load + p.apply)
    rows["a. from_state + apply, fresh judge"] = ((best.load + best.apply) / n, per_delta)
    rows["   of which from_state"] = (best.load / n, per_delta)
    rows["   of which apply"] = (best.apply / n, per_delta)
    rows["   of which thresholds"] = (min(thresholds) / n, per_delta)
    best = min(again, key=lambda p: p.load + p.apply)
    steady = len(later)
    rows["a2. from_state + apply, steady state"] = (
        (best.load + best.apply) / steady, per_delta,
    )  # fmt: skip
    rows["   of which from_state (a2)"] = (best.load / steady, per_delta)
    rows["   of which apply (a2)"] = (best.apply / steady, per_delta)
    rows["   of which thresholds (a2)"] = (min(thresholds_later) / steady, per_delta)
    state_bytes = 0.0
    for every in (1, 10):
        passes = [run(new_judge(Digest()), states, Digest(), every) for _ in range(args.repeats)]
        best = min(passes, key=lambda p: p.dump)
        plural = "s" if every > 1 else ""
        rows[f"b. judge to_state + dumps, every {every} delta{plural}"] = (
            best.dump / n, per_delta,
        )  # fmt: skip
        rows[f"   per call (N={every}, {best.dumps} calls)"] = (best.dump / best.dumps, 0.0)
        state_bytes = state_bytes or best.dumped_bytes / best.dumps
    rows["c. ingest delta.to_state + dumps"] = (
        built.ingest_seconds / len(built.states), per_delta,
    )  # fmt: skip

    before: dict[str, list[float]] = {}
    if args.baseline is not None:
        before = json.loads(args.baseline.read_text())["rows"]
    header = f"{'':46} {'ms/delta':>9} {'events/s':>12}"
    if before:
        header += f" {'before ms':>10} {'speed-up':>9}"
    print(header)
    for name, (seconds, events) in rows.items():
        ms = seconds * 1e3
        rate = f"{events / seconds:12,.0f}" if events and seconds else f"{'':12}"
        line = f"{name:46} {ms:9.3f} {rate}"
        if name in before:
            old = before[name][0] * 1e3
            line += f" {old:10.3f} {old / ms:8.2f}x"
        print(line)
    print(f"judge state (without reference): {state_bytes / 1e3:.1f} kB per dump (N=1); "
          f"ingest delta state: {built.ingest_bytes / len(built.states) / 1e3:.1f} kB")  # fmt: skip
    for name, text in digests.items():
        print(f"digest of the {name} of (a): {text}")
    if args.save is not None:
        args.save.write_text(json.dumps({"rows": rows, "digests": digests, "deltas": n}))
    if args.profile:
        profile_apply(states)


if __name__ == "__main__":
    main()
